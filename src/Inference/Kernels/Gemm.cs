using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using PiServe.Inference.Checkpoints;

namespace PiServe.Inference.Kernels;

/// <summary>
/// y[t, r] = Σ_k W[r, k]·x[t, k] over weights in their stored dtype.
/// Decode (one token) is memory-bound: <see cref="Gemv"/> streams each weight row once, widening
/// bf16/f16 in registers, eight rows at a time sharing every load of x. Prefill is compute-bound:
/// <see cref="GemmTile"/> widens four rows once per 64-token tile into a small f32 panel and runs a
/// 4 rows × 4 tokens register micro-kernel (16 accumulators) over it, so each weight byte is read
/// from memory once per tile and each x vector feeds four FMAs.
/// </summary>
public static unsafe class Gemm
{
    /// <summary>Tokens per tile: 64 tokens of x (64 × K floats) stay in L2 while all rows pass.</summary>
    public const int TokenTile = 64;

    /// <summary>Rows [r0, r1) of y for n tokens.</summary>
    public static void Rows(WeightMatrix w, float* x, int n, float* y, float* bias, int r0, int r1, float* panel)
    {
        if (n < 4)
        {
            for (int t = 0; t < n; t++) Gemv(w, x + (long)t * w.Cols, y + (long)t * w.Rows, 1, bias, r0, r1);
            return;
        }
        for (int t0 = 0; t0 < n; t0 += TokenTile)
            GemmTile(w, x, Math.Min(TokenTile, n - t0), t0, y, bias, r0, r1, panel);
    }

    /// <summary>Floats of f32 panel a thread needs for <see cref="Rows"/>.</summary>
    public static int PanelFloats(int cols) => 4 * cols;

    /// <summary>One token: y[r·stride] for rows [r0, r1). Dispatches once on the dtype so the inner loops are specialised.</summary>
    public static void Gemv(WeightMatrix w, float* x, float* y, int yStride, float* bias, int r0, int r1)
    {
        switch (w.DType)
        {
            case DType.BF16: Gemv<Bf16Rows>(w, x, y, yStride, bias, r0, r1); break;
            case DType.F16: Gemv<F16Rows>(w, x, y, yStride, bias, r0, r1); break;
            default: Gemv<F32Rows>(w, x, y, yStride, bias, r0, r1); break;
        }
    }

    private static void Gemv<T>(WeightMatrix w, float* x, float* y, int yStride, float* bias, int r0, int r1) where T : struct, IRowLoader
    {
        int k = w.Cols;
        int r = r0;
        for (; r + 8 <= r1; r += 8)
        {
            Dot8<T>(w, r, x, k, out var a0, out var a1, out var a2, out var a3, out var a4, out var a5, out var a6, out var a7);
            y[(long)(r + 0) * yStride] = a0 + (bias == null ? 0 : bias[r + 0]);
            y[(long)(r + 1) * yStride] = a1 + (bias == null ? 0 : bias[r + 1]);
            y[(long)(r + 2) * yStride] = a2 + (bias == null ? 0 : bias[r + 2]);
            y[(long)(r + 3) * yStride] = a3 + (bias == null ? 0 : bias[r + 3]);
            y[(long)(r + 4) * yStride] = a4 + (bias == null ? 0 : bias[r + 4]);
            y[(long)(r + 5) * yStride] = a5 + (bias == null ? 0 : bias[r + 5]);
            y[(long)(r + 6) * yStride] = a6 + (bias == null ? 0 : bias[r + 6]);
            y[(long)(r + 7) * yStride] = a7 + (bias == null ? 0 : bias[r + 7]);
        }
        for (; r < r1; r++)
            y[(long)r * yStride] = Dot1<T>(w, r, x, k) + (bias == null ? 0 : bias[r]);
    }

    private static void Dot8<T>(WeightMatrix w, int r, float* x, int k,
        out float a0, out float a1, out float a2, out float a3, out float a4, out float a5, out float a6, out float a7) where T : struct, IRowLoader
    {
        var s0 = Vector512<float>.Zero; var s1 = s0; var s2 = s0; var s3 = s0; var s4 = s0; var s5 = s0; var s6 = s0; var s7 = s0;
        int i = 0;
        byte* p0 = w.Row(r), p1 = w.Row(r + 1), p2 = w.Row(r + 2), p3 = w.Row(r + 3), p4 = w.Row(r + 4), p5 = w.Row(r + 5), p6 = w.Row(r + 6), p7 = w.Row(r + 7);
        for (; i + 16 <= k; i += 16)
        {
            var xv = Vector512.Load(x + i);
            s0 = Vector512.FusedMultiplyAdd(T.Load16(p0, i), xv, s0);
            s1 = Vector512.FusedMultiplyAdd(T.Load16(p1, i), xv, s1);
            s2 = Vector512.FusedMultiplyAdd(T.Load16(p2, i), xv, s2);
            s3 = Vector512.FusedMultiplyAdd(T.Load16(p3, i), xv, s3);
            s4 = Vector512.FusedMultiplyAdd(T.Load16(p4, i), xv, s4);
            s5 = Vector512.FusedMultiplyAdd(T.Load16(p5, i), xv, s5);
            s6 = Vector512.FusedMultiplyAdd(T.Load16(p6, i), xv, s6);
            s7 = Vector512.FusedMultiplyAdd(T.Load16(p7, i), xv, s7);
        }
        a0 = Vector512.Sum(s0); a1 = Vector512.Sum(s1); a2 = Vector512.Sum(s2); a3 = Vector512.Sum(s3);
        a4 = Vector512.Sum(s4); a5 = Vector512.Sum(s5); a6 = Vector512.Sum(s6); a7 = Vector512.Sum(s7);
        for (; i < k; i++)
        {
            float xi = x[i];
            a0 += T.Scalar(p0, i) * xi; a1 += T.Scalar(p1, i) * xi; a2 += T.Scalar(p2, i) * xi; a3 += T.Scalar(p3, i) * xi;
            a4 += T.Scalar(p4, i) * xi; a5 += T.Scalar(p5, i) * xi; a6 += T.Scalar(p6, i) * xi; a7 += T.Scalar(p7, i) * xi;
        }
    }

    private static float Dot1<T>(WeightMatrix w, int r, float* x, int k) where T : struct, IRowLoader
    {
        byte* p = w.Row(r);
        var s0 = Vector512<float>.Zero;
        var s1 = s0;
        int i = 0;
        for (; i + 32 <= k; i += 32)
        {
            s0 = Vector512.FusedMultiplyAdd(T.Load16(p, i), Vector512.Load(x + i), s0);
            s1 = Vector512.FusedMultiplyAdd(T.Load16(p, i + 16), Vector512.Load(x + i + 16), s1);
        }
        for (; i + 16 <= k; i += 16)
            s0 = Vector512.FusedMultiplyAdd(T.Load16(p, i), Vector512.Load(x + i), s0);
        float a = Vector512.Sum(s0 + s1);
        for (; i < k; i++) a += T.Scalar(p, i) * x[i];
        return a;
    }

    /// <summary>
    /// Tokens [t0, t0 + tn) × rows [r0, r1): rows in blocks of four widened into the panel once,
    /// tokens in blocks of four through the 4×4 micro-kernel.
    /// </summary>
    private static void GemmTile(WeightMatrix w, float* xAll, int tn, int t0, float* y, float* bias, int r0, int r1, float* panel)
    {
        int k = w.Cols, rows = w.Rows;
        float* x = xAll + (long)t0 * k;
        int r = r0;
        for (; r + 4 <= r1; r += 4)
        {
            for (int j = 0; j < 4; j++) Widen.Row(w.Row(r + j), w.DType, panel + (long)j * k, k);
            int t = 0;
            for (; t + 4 <= tn; t += 4)
                Micro4x4(panel, k, x + (long)t * k, y + (long)(t0 + t) * rows + r, rows, bias == null ? null : bias + r);
            for (; t < tn; t++)
                for (int j = 0; j < 4; j++)
                    y[(long)(t0 + t) * rows + r + j] = DotF32(panel + (long)j * k, x + (long)t * k, k) + (bias == null ? 0 : bias[r + j]);
        }
        for (; r < r1; r++)
        {
            Widen.Row(w.Row(r), w.DType, panel, k);
            for (int t = 0; t < tn; t++)
                y[(long)(t0 + t) * rows + r] = DotF32(panel, x + (long)t * k, k) + (bias == null ? 0 : bias[r]);
        }
    }

    /// <summary>4 rows (panel) × 4 tokens: 16 independent accumulators, each x and w vector used four times.</summary>
    private static void Micro4x4(float* w, int k, float* x, float* y, int yStride, float* bias)
    {
        float* w0 = w, w1 = w + k, w2 = w + 2L * k, w3 = w + 3L * k;
        float* x0 = x, x1 = x + k, x2 = x + 2L * k, x3 = x + 3L * k;
        var c00 = Vector512<float>.Zero; var c01 = c00; var c02 = c00; var c03 = c00;
        var c10 = c00; var c11 = c00; var c12 = c00; var c13 = c00;
        var c20 = c00; var c21 = c00; var c22 = c00; var c23 = c00;
        var c30 = c00; var c31 = c00; var c32 = c00; var c33 = c00;
        int i = 0;
        for (; i + 16 <= k; i += 16)
        {
            var a0 = Vector512.Load(w0 + i); var a1 = Vector512.Load(w1 + i); var a2 = Vector512.Load(w2 + i); var a3 = Vector512.Load(w3 + i);
            var b = Vector512.Load(x0 + i);
            c00 = Vector512.FusedMultiplyAdd(a0, b, c00); c10 = Vector512.FusedMultiplyAdd(a1, b, c10);
            c20 = Vector512.FusedMultiplyAdd(a2, b, c20); c30 = Vector512.FusedMultiplyAdd(a3, b, c30);
            b = Vector512.Load(x1 + i);
            c01 = Vector512.FusedMultiplyAdd(a0, b, c01); c11 = Vector512.FusedMultiplyAdd(a1, b, c11);
            c21 = Vector512.FusedMultiplyAdd(a2, b, c21); c31 = Vector512.FusedMultiplyAdd(a3, b, c31);
            b = Vector512.Load(x2 + i);
            c02 = Vector512.FusedMultiplyAdd(a0, b, c02); c12 = Vector512.FusedMultiplyAdd(a1, b, c12);
            c22 = Vector512.FusedMultiplyAdd(a2, b, c22); c32 = Vector512.FusedMultiplyAdd(a3, b, c32);
            b = Vector512.Load(x3 + i);
            c03 = Vector512.FusedMultiplyAdd(a0, b, c03); c13 = Vector512.FusedMultiplyAdd(a1, b, c13);
            c23 = Vector512.FusedMultiplyAdd(a2, b, c23); c33 = Vector512.FusedMultiplyAdd(a3, b, c33);
        }
        Span<float> s = stackalloc float[16];
        s[0] = Vector512.Sum(c00); s[1] = Vector512.Sum(c10); s[2] = Vector512.Sum(c20); s[3] = Vector512.Sum(c30);
        s[4] = Vector512.Sum(c01); s[5] = Vector512.Sum(c11); s[6] = Vector512.Sum(c21); s[7] = Vector512.Sum(c31);
        s[8] = Vector512.Sum(c02); s[9] = Vector512.Sum(c12); s[10] = Vector512.Sum(c22); s[11] = Vector512.Sum(c32);
        s[12] = Vector512.Sum(c03); s[13] = Vector512.Sum(c13); s[14] = Vector512.Sum(c23); s[15] = Vector512.Sum(c33);
        for (; i < k; i++)
        {
            float a0 = w0[i], a1 = w1[i], a2 = w2[i], a3 = w3[i];
            float b0 = x0[i], b1 = x1[i], b2 = x2[i], b3 = x3[i];
            s[0] += a0 * b0; s[1] += a1 * b0; s[2] += a2 * b0; s[3] += a3 * b0;
            s[4] += a0 * b1; s[5] += a1 * b1; s[6] += a2 * b1; s[7] += a3 * b1;
            s[8] += a0 * b2; s[9] += a1 * b2; s[10] += a2 * b2; s[11] += a3 * b2;
            s[12] += a0 * b3; s[13] += a1 * b3; s[14] += a2 * b3; s[15] += a3 * b3;
        }
        for (int t = 0; t < 4; t++)
            for (int j = 0; j < 4; j++)
                y[(long)t * yStride + j] = s[t * 4 + j] + (bias == null ? 0 : bias[j]);
    }

    /// <summary>Σ a[i]·b[i] over k floats (Vector512, scalar tail).</summary>
    internal static float DotF32(float* a, float* b, int k)
    {
        var s = Vector512<float>.Zero;
        int i = 0;
        for (; i + 16 <= k; i += 16) s = Vector512.FusedMultiplyAdd(Vector512.Load(a + i), Vector512.Load(b + i), s);
        float r = Vector512.Sum(s);
        for (; i < k; i++) r += a[i] * b[i];
        return r;
    }

    /// <summary>Loads weights of one stored dtype widened to f32; a struct type argument so each dtype gets its own compiled loop.</summary>
    private interface IRowLoader
    {
        static abstract Vector512<float> Load16(byte* row, int i);
        static abstract float Scalar(byte* row, int i);
    }

    private readonly struct Bf16Rows : IRowLoader
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Load16(byte* row, int i) =>
            Vector512.ShiftLeft(Vector512.WidenLower(Vector256.Load((ushort*)row + i).ToVector512Unsafe()), 16).AsSingle();
        public static float Scalar(byte* row, int i) => BitConverter.UInt32BitsToSingle((uint)((ushort*)row)[i] << 16);
    }

    private readonly struct F16Rows : IRowLoader
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Load16(byte* row, int i) => HalfToSingle(Vector256.Load((ushort*)row + i));
        public static float Scalar(byte* row, int i) => (float)((Half*)row)[i];
    }

    private readonly struct F32Rows : IRowLoader
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Load16(byte* row, int i) => Vector512.Load((float*)row + i);
        public static float Scalar(byte* row, int i) => ((float*)row)[i];
    }

    /// <summary>
    /// IEEE half → single for 16 lanes without F16C (not exposed by .NET): place exponent and
    /// mantissa 13 bits up and multiply by 2^112, which rescales the exponent bias and turns
    /// subnormal halves into the right normal singles; infinities and NaNs get an all-ones exponent.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> HalfToSingle(Vector256<ushort> h)
    {
        var u = Vector512.WidenLower(h.ToVector512Unsafe());
        var sign = Vector512.ShiftLeft(u & Vector512.Create(0x8000u), 16);
        var em = u & Vector512.Create(0x7FFFu);
        var scaled = Vector512.ShiftLeft(em, 13).AsSingle() * Vector512.Create(5.192296858534828e33f); // 2^112
        var infNan = Vector512.GreaterThanOrEqual(em, Vector512.Create(0x7C00u));
        var special = Vector512.ShiftLeft(em, 13) | Vector512.Create(0x7F800000u);
        return (Vector512.ConditionalSelect(infNan, special, scaled.AsUInt32()) | sign).AsSingle();
    }

}
