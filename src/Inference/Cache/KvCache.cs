using PiServe.Inference.Kernels;

namespace PiServe.Inference.Cache;

/// <summary>
/// Keys (after rotation) and values of one sequence, per layer head-major [kvHead][position][headDim]
/// in f32, in native memory that grows by doubling. Head-major keeps one head's keys contiguous, so
/// attention streams them sequentially instead of striding across the other heads. Memory is accounted exactly: BytesPerToken is what
/// every cached position costs, AllocatedBytes what is reserved now.
/// </summary>
public sealed unsafe class KvCache : IDisposable
{
    private readonly NativeBuffer[] _keys;
    private readonly NativeBuffer[] _values;

    public KvCache(int layers, int kvHeads, int headDim, int initialCapacity = 64)
    {
        Layers = layers;
        KvHeads = kvHeads;
        HeadDim = headDim;
        KvDim = kvHeads * headDim;
        Capacity = Math.Max(1, initialCapacity);
        _keys = new NativeBuffer[layers];
        _values = new NativeBuffer[layers];
        for (int l = 0; l < layers; l++)
        {
            _keys[l] = new NativeBuffer((long)Capacity * KvDim);
            _values[l] = new NativeBuffer((long)Capacity * KvDim);
        }
    }

    public int Layers { get; }
    public int KvHeads { get; }
    public int HeadDim { get; }
    public int KvDim { get; }
    /// <summary>Floats between the same position of consecutive kv heads.</summary>
    public long HeadStride => (long)Capacity * HeadDim;
    public int Capacity { get; private set; }
    /// <summary>Positions [0, Length) hold valid keys and values.</summary>
    public int Length { get; set; }

    /// <summary>Keys and values of every layer, f32: 2 · layers · kvHeads · headDim · 4 bytes.</summary>
    public long BytesPerToken => 2L * Layers * KvDim * sizeof(float);
    public long AllocatedBytes => Capacity * BytesPerToken;
    public long UsedBytes => Length * BytesPerToken;

    public static long BytesPerTokenFor(Checkpoints.ModelConfig c) => 2L * c.NumLayers * c.KvDim * sizeof(float);

    public void EnsureCapacity(int positions)
    {
        if (positions <= Capacity) return;
        int cap = Capacity;
        while (cap < positions) cap = (int)Math.Min(int.MaxValue, cap * 2L);
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
        var b = new NativeBuffer((long)capacity * KvDim);
        long bytes = (long)Length * HeadDim * sizeof(float);
        for (int h = 0; h < KvHeads; h++)
            Buffer.MemoryCopy(old.Ptr + h * HeadStride, b.Ptr + (long)h * capacity * HeadDim, bytes, bytes);
        old.Dispose();
        return b;
    }

    /// <summary>Key row of a head at a position.</summary>
    public float* KeyRow(int layer, int head, int position) => _keys[layer].Ptr + head * HeadStride + (long)position * HeadDim;
    public float* ValueRow(int layer, int head, int position) => _values[layer].Ptr + head * HeadStride + (long)position * HeadDim;

    public float* Keys(int layer) => _keys[layer].Ptr;
    public float* Values(int layer) => _values[layer].Ptr;

    public void Dispose()
    {
        foreach (var b in _keys) b.Dispose();
        foreach (var b in _values) b.Dispose();
    }
}
