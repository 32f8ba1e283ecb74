using PiServe.Inference.Checkpoints;
using PiServe.Inference.Kernels;

namespace PiServe.Inference.Cache;

/// <summary>
/// Keys (after rotation) and values of one sequence, per layer head-major [kvHead][position][headDim],
/// in native memory that grows by doubling. Head-major keeps one head's keys contiguous, so attention
/// streams them sequentially instead of striding across the other heads. Elements are f32 (exact) or
/// f16/bf16 (half the memory and half the bytes attention reads per step; written rounded to nearest
/// even, read back widened, accumulated in f32). Memory is accounted exactly: BytesPerToken is what
/// every cached position costs, AllocatedBytes what is reserved now.
/// </summary>
public sealed unsafe class KvCache : IDisposable
{
    private readonly NativeBuffer[] _keys;
    private readonly NativeBuffer[] _values;

    public KvCache(int layers, int kvHeads, int headDim, int initialCapacity = 64, DType elementType = DType.F32)
        : this(layers, kvHeads, headDim, initialCapacity, elementType, hostLayers: layers)
    {
        for (int l = 0; l < layers; l++)
        {
            _keys[l] = Allocate(Capacity);
            _values[l] = Allocate(Capacity);
        }
    }

    /// <summary>
    /// A cache whose elements live in a device engine's memory (<see cref="IDeviceKvStorage"/>): this
    /// object keeps the length, capacity and byte accounting, the device owns the keys and values, and
    /// host access (<see cref="Write"/>, <see cref="Layer"/>, <see cref="Key"/>) is refused.
    /// </summary>
    public KvCache(int layers, int kvHeads, int headDim, int initialCapacity, DType elementType, Func<int, IDeviceKvStorage> device)
        : this(layers, kvHeads, headDim, initialCapacity, elementType, hostLayers: 0)
    {
        Device = device(Capacity);
    }

    /// <summary>The shape and element type both kinds of cache share; host buffers for <paramref name="hostLayers"/> layers.</summary>
    private KvCache(int layers, int kvHeads, int headDim, int initialCapacity, DType elementType, int hostLayers)
    {
        Layers = layers;
        KvHeads = kvHeads;
        HeadDim = headDim;
        KvDim = kvHeads * headDim;
        ElementType = elementType;
        ElementSize = DTypes.SizeOf(elementType);
        Capacity = Math.Max(1, initialCapacity);
        _keys = new NativeBuffer[hostLayers];
        _values = new NativeBuffer[hostLayers];
    }

    /// <summary>The device storage of a device engine's cache; null for a host cache.</summary>
    public IDeviceKvStorage? Device { get; }

    private void RequireHost()
    {
        if (Device is not null) throw new InvalidOperationException("this KV cache lives in device memory; the device engine reads and writes it");
    }

    public int Layers { get; }
    public int KvHeads { get; }
    public int HeadDim { get; }
    public int KvDim { get; }
    /// <summary>The stored element type: F32, F16 or BF16.</summary>
    public DType ElementType { get; }
    public int ElementSize { get; }
    /// <summary>Elements between the same position of consecutive kv heads.</summary>
    public long HeadStride => (long)Capacity * HeadDim;
    public int Capacity { get; private set; }
    /// <summary>
    /// Whether any f16 element written so far is an infinity or NaN (an f32 beyond ±65504 overflows
    /// to infinity). Until one is, attention widens the cache with the cheaper finite-only conversion.
    /// </summary>
    public bool HoldsNonFinite { get; private set; }
    /// <summary>Positions [0, Length) hold valid keys and values.</summary>
    public int Length { get; set; }

    /// <summary>Keys and values of every layer: 2 · layers · kvHeads · headDim · element size.</summary>
    public long BytesPerToken => 2L * Layers * KvDim * ElementSize;
    public long AllocatedBytes => Capacity * BytesPerToken;
    public long UsedBytes => Length * BytesPerToken;

    public static long BytesPerTokenFor(ModelConfig c, DType elementType = DType.F32) => 2L * c.NumLayers * c.KvDim * DTypes.SizeOf(elementType);

    /// <summary>The element types a cache can hold.</summary>
    public static DType ParseElementType(string name) => name.ToLowerInvariant() switch
    {
        "f32" or "float32" => DType.F32,
        "f16" or "float16" => DType.F16,
        "bf16" or "bfloat16" => DType.BF16,
        _ => throw new ArgumentException($"KV cache dtype '{name}' is not one of f32, f16, bf16"),
    };

    private NativeBuffer Allocate(int capacity) =>
        new(((long)capacity * KvDim * ElementSize + sizeof(float) - 1) / sizeof(float));

    public void EnsureCapacity(int positions)
    {
        if (positions <= Capacity) return;
        int cap = Capacity;
        while (cap < positions) cap = (int)Math.Min(int.MaxValue, cap * 2L);
        if (Device is not null)
        {
            Device.Resize(cap, Length);
            Capacity = cap;
            return;
        }
        for (int l = 0; l < Layers; l++)
        {
            _keys[l] = Relayout(_keys[l], cap);
            _values[l] = Relayout(_values[l], cap);
        }
        Capacity = cap;
    }

    /// <summary>A buffer for the new capacity holding each head's first Length positions.</summary>
    private NativeBuffer Relayout(NativeBuffer old, int capacity)
    {
        var b = Allocate(capacity);
        long bytes = (long)Length * HeadDim * ElementSize;
        for (int h = 0; h < KvHeads; h++)
            Buffer.MemoryCopy((byte*)old.Ptr + h * HeadStride * ElementSize, (byte*)b.Ptr + (long)h * capacity * HeadDim * ElementSize, bytes, bytes);
        old.Dispose();
        return b;
    }

    /// <summary>Stores one head's key and value (f32, headDim each) at a position, rounding to the element type.</summary>
    public void Write(int layer, int head, int position, float* key, float* value)
    {
        RequireHost();
        long offset = (head * HeadStride + (long)position * HeadDim) * ElementSize;
        Store(key, (byte*)_keys[layer].Ptr + offset);
        Store(value, (byte*)_values[layer].Ptr + offset);
    }

    private void Store(float* src, byte* dst)
    {
        switch (ElementType)
        {
            case DType.F32:
                Buffer.MemoryCopy(src, dst, HeadDim * 4L, HeadDim * 4L);
                break;
            case DType.F16:
                System.Numerics.Tensors.TensorPrimitives.ConvertToHalf(new ReadOnlySpan<float>(src, HeadDim), new Span<Half>(dst, HeadDim));
                if (!HoldsNonFinite)
                    for (int i = 0; i < HeadDim; i++)
                        if ((((ushort*)dst)[i] & 0x7C00) == 0x7C00) { HoldsNonFinite = true; break; }
                break;
            default:
                for (int i = 0; i < HeadDim; i++) ((ushort*)dst)[i] = DTypes.ToBf16(src[i]);
                break;
        }
    }

    /// <summary>
    /// Copies positions [start, start + count) of every layer and head out to <paramref name="dst"/>,
    /// laid out [layer][keys, values][kvHead][count][headDim] (count · BytesPerToken bytes), as stored
    /// (no conversion). Returns whether that span holds an f16 infinity or NaN (see <see cref="HoldsNonFinite"/>).
    /// </summary>
    public bool CopyOut(int start, int count, byte* dst)
    {
        if (start < 0 || count < 0 || start + count > Length) throw new ArgumentOutOfRangeException(nameof(start), $"positions [{start}, {start + count}) are not all in the cache (length {Length})");
        long row = (long)count * HeadDim * ElementSize;
        for (int l = 0; l < Layers; l++)
            foreach (var buffer in (ReadOnlySpan<NativeBuffer>)[_keys[l], _values[l]])
                for (int h = 0; h < KvHeads; h++, dst += row)
                    Buffer.MemoryCopy((byte*)buffer.Ptr + (h * HeadStride + (long)start * HeadDim) * ElementSize, dst, row, row);
        if (ElementType != DType.F16 || !HoldsNonFinite) return false;
        var halves = new ReadOnlySpan<ushort>(dst - count * BytesPerToken, checked((int)(count * BytesPerToken / 2)));
        foreach (ushort u in halves)
            if ((u & 0x7C00) == 0x7C00) return true;
        return false;
    }

    /// <summary>
    /// Appends <paramref name="count"/> positions at <see cref="Length"/> from <paramref name="src"/>, laid out as
    /// <see cref="CopyOut"/> writes it (by a cache of the same shape and element type), and advances Length.
    /// </summary>
    public void CopyIn(int count, byte* src, bool nonFinite)
    {
        int start = Length;
        EnsureCapacity(start + count);
        long row = (long)count * HeadDim * ElementSize;
        for (int l = 0; l < Layers; l++)
            foreach (var buffer in (ReadOnlySpan<NativeBuffer>)[_keys[l], _values[l]])
                for (int h = 0; h < KvHeads; h++, src += row)
                    Buffer.MemoryCopy(src, (byte*)buffer.Ptr + (h * HeadStride + (long)start * HeadDim) * ElementSize, row, row);
        HoldsNonFinite |= nonFinite;
        Length = start + count;
    }

    /// <summary>One layer's keys and values as attention reads them.</summary>
    public KvLayer Layer(int layer) => Device is null ? new((byte*)_keys[layer].Ptr, (byte*)_values[layer].Ptr, HeadStride, ElementType, finite: !HoldsNonFinite) : throw new InvalidOperationException("this KV cache lives in device memory");

    /// <summary>Key of a head at a position, widened to f32 (tests and diagnostics).</summary>
    public float Key(int layer, int head, int position, int i) { RequireHost(); return Element(_keys[layer], head, position, i); }
    public float Value(int layer, int head, int position, int i) { RequireHost(); return Element(_values[layer], head, position, i); }

    private float Element(NativeBuffer b, int head, int position, int i)
    {
        byte* row = (byte*)b.Ptr + (head * HeadStride + (long)position * HeadDim) * ElementSize;
        return ElementType switch
        {
            DType.F32 => ((float*)row)[i],
            DType.F16 => (float)((Half*)row)[i],
            _ => BitConverter.UInt32BitsToSingle((uint)((ushort*)row)[i] << 16),
        };
    }

    public void Dispose()
    {
        foreach (var b in _keys) b.Dispose();
        foreach (var b in _values) b.Dispose();
        Device?.Dispose();
    }
}

/// <summary>A device engine's memory for one <see cref="KvCache"/> (see <see cref="Model.IForwardEngine"/>).</summary>
public interface IDeviceKvStorage : IDisposable
{
    /// <summary>Grows to capacity positions, keeping each head's first length positions; throws OutOfMemoryException when the device is full.</summary>
    void Resize(int capacity, int length);
}
