using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using PiServe.Inference.Checkpoints;

namespace PiServe.Inference.Kernels;

/// <summary>bf16/f16 → f32 conversion of one row, in registers and a small per-thread buffer.</summary>
public static unsafe class Widen
{
    public static void Row(byte* src, DType dtype, float* dst, int n)
    {
        switch (dtype)
        {
            case DType.F32:
                Buffer.MemoryCopy(src, dst, (long)n * 4, (long)n * 4);
                break;
            case DType.F16:
                TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>(src, n), new Span<float>(dst, n));
                break;
            default:
                Bf16((ushort*)src, dst, n);
                break;
        }
    }

    /// <summary>bf16 is the top half of an f32: widen each 16-bit lane and shift it into place.</summary>
    public static void Bf16(ushort* src, float* dst, int n)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i + 32 <= n; i += 32)
            {
                var (lo, hi) = Vector512.Widen(Vector512.Load(src + i));
                Vector512.ShiftLeft(lo, 16).AsSingle().Store(dst + i);
                Vector512.ShiftLeft(hi, 16).AsSingle().Store(dst + i + 16);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            for (; i + 16 <= n; i += 16)
            {
                var (lo, hi) = Vector256.Widen(Vector256.Load(src + i));
                Vector256.ShiftLeft(lo, 16).AsSingle().Store(dst + i);
                Vector256.ShiftLeft(hi, 16).AsSingle().Store(dst + i + 8);
            }
        }
        for (; i < n; i++) dst[i] = BitConverter.UInt32BitsToSingle((uint)src[i] << 16);
    }

    public static float Bf16ToSingle(ushort b) => BitConverter.UInt32BitsToSingle((uint)b << 16);
}
