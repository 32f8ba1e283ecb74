using System.Runtime.InteropServices;

namespace PiServe.Inference.Kernels;

/// <summary>
/// A 64-byte aligned float array in native memory: activations and KV caches live here so the
/// kernels work on stable pointers (no pinning, no GC moves) and big caches stay off the managed heap.
/// </summary>
public sealed unsafe class NativeBuffer : IDisposable
{
    public float* Ptr { get; private set; }
    public long Length { get; private set; }

    public NativeBuffer(long length)
    {
        Length = length;
        Ptr = (float*)NativeMemory.AlignedAlloc((nuint)Math.Max(1, length) * sizeof(float), 64);
        new Span<byte>(Ptr, 0).Clear();
    }

    public long Bytes => Length * sizeof(float);

    public Span<float> AsSpan(long start, int length)
    {
        if (start < 0 || start + length > Length) throw new ArgumentOutOfRangeException(nameof(start));
        return new Span<float>(Ptr + start, length);
    }

    /// <summary>Grows to at least <paramref name="length"/>, keeping the first <paramref name="keep"/> elements.</summary>
    public void Grow(long length, long keep)
    {
        if (length <= Length) return;
        var p = (float*)NativeMemory.AlignedAlloc((nuint)length * sizeof(float), 64);
        Buffer.MemoryCopy(Ptr, p, length * sizeof(float), Math.Min(keep, Length) * sizeof(float));
        NativeMemory.AlignedFree(Ptr);
        Ptr = p;
        Length = length;
    }

    public void Dispose()
    {
        if (Ptr != null) NativeMemory.AlignedFree(Ptr);
        Ptr = null;
        Length = 0;
        GC.SuppressFinalize(this);
    }

    ~NativeBuffer() { if (Ptr != null) NativeMemory.AlignedFree(Ptr); }
}
