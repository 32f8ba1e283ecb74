using PiServe.Inference.Kernels;

namespace PiServe.Inference.Cache;

/// <summary>
/// Keys (after rotation) and values of one sequence, per layer [position, kvHeads·headDim] in f32,
/// in native memory that grows by doubling. Memory is accounted exactly: BytesPerToken is what
/// every cached position costs, AllocatedBytes what is reserved now.
/// </summary>
public sealed unsafe class KvCache : IDisposable
{
    private readonly NativeBuffer[] _keys;
    private readonly NativeBuffer[] _values;

    public KvCache(int layers, int kvDim, int initialCapacity = 64)
    {
        Layers = layers;
        KvDim = kvDim;
        Capacity = Math.Max(1, initialCapacity);
        _keys = new NativeBuffer[layers];
        _values = new NativeBuffer[layers];
        for (int l = 0; l < layers; l++)
        {
            _keys[l] = new NativeBuffer((long)Capacity * kvDim);
            _values[l] = new NativeBuffer((long)Capacity * kvDim);
        }
    }

    public int Layers { get; }
    public int KvDim { get; }
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
            _keys[l].Grow((long)cap * KvDim, (long)Length * KvDim);
            _values[l].Grow((long)cap * KvDim, (long)Length * KvDim);
        }
        Capacity = cap;
    }

    public float* Keys(int layer) => _keys[layer].Ptr;
    public float* Values(int layer) => _values[layer].Ptr;

    public void Dispose()
    {
        foreach (var b in _keys) b.Dispose();
        foreach (var b in _values) b.Dispose();
    }
}
