using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;
using PiServe.Inference.Cache;
using PiServe.Inference.Checkpoints;
using PiServe.Inference.Kernels;
using PiServe.Inference.Model;
using PiServe.Inference.Rope;

namespace PiServe.Inference.Gpu;

/// <summary>
/// <see cref="LlamaModel"/>'s forward pass on an ILGPU device (CUDA, or ILGPU's CPU accelerator in
/// CI). The weights are uploaded once in their stored dtype (bf16/f16/f32, widened in the kernels'
/// registers); KV caches (f32/f16/bf16, head-major as on the CPU) and activations live in device
/// memory; every op of the forward pass runs on the device. Per forward the host sends the token ids
/// and the cos/sin rows of the positions used — filled by the same double-precision
/// <see cref="RopeTable"/> as the CPU path, so every rope family, regime switch and cache policy
/// behaves identically — and receives the final hidden rows; <see cref="Logits"/> runs the LM head on
/// the device and copies the logits back for sampling.
/// </summary>
public sealed unsafe class IlgpuLlamaModel : IForwardEngine
{
    /// <summary>At most this many tokens per forward use the GEMV kernel (decode, small batches); more use the tiled GEMM.</summary>
    public const int GemvMaxTokens = 4;

    private readonly LlamaModel _model;
    private readonly ModelConfig _c;
    private readonly IlgpuDevice _device;
    private readonly IlgpuKernelSet _k;
    private readonly AcceleratorStream _stream;
    private readonly object _lock;
    private readonly List<IDisposable> _weights = [];
    private readonly DeviceMatrix _embeddings, _lmHead;
    private readonly DeviceBuffer<float> _finalNorm, _noBias;
    private readonly DeviceLayer[] _layers;
    private Activations? _act;
    private DeviceBuffer<float>? _logitIn, _logitOut;
    private bool _disposed;

    private sealed record DeviceMatrix(DeviceBuffer<ushort> Data, int Rows, int Cols, DType DType);

    private sealed class DeviceLayer
    {
        public required DeviceMatrix Wq, Wk, Wv, Wo, WGate, WUp, WDown;
        public required DeviceBuffer<float> AttentionNorm, MlpNorm;
        public DeviceBuffer<float>? Bq, Bk, Bv, Bo, BGate, BUp, BDown, QNorm, KNorm;
    }

    /// <summary>Builds the engine on <paramref name="model"/>'s weights and attaches it (the model disposes it).</summary>
    public static IlgpuLlamaModel Attach(LlamaModel model, BackendKind kind)
    {
        var engine = new IlgpuLlamaModel(model, IlgpuDevice.Get(kind));
        model.AttachEngine(engine);
        return engine;
    }

    private IlgpuLlamaModel(LlamaModel model, IlgpuDevice device)
    {
        _model = model;
        _c = model.Config;
        _device = device;
        _k = device.Kernels;
        _lock = device.LaunchLockFor(new object());
        device.Bind();
        _stream = device.Accelerator.CreateStream();
        try
        {
            _noBias = _device.Allocate<float>(1, "a placeholder bias");
            _weights.Add(_noBias);
            _noBias.Buffer.MemSetToZero(_stream);
            _embeddings = Matrix(model.Embeddings, "model.embed_tokens.weight");
            _lmHead = model.LmHead.Data == model.Embeddings.Data ? _embeddings : Matrix(model.LmHead, "lm_head.weight");
            _finalNorm = Vector(model.FinalNorm, _c.HiddenSize, "model.norm.weight")!;
            _layers = new DeviceLayer[_c.NumLayers];
            for (int l = 0; l < _c.NumLayers; l++)
            {
                var w = model.Layers[l];
                string p = $"layer {l} ";
                _layers[l] = new DeviceLayer
                {
                    Wq = Matrix(w.Wq, p + "q_proj"), Wk = Matrix(w.Wk, p + "k_proj"), Wv = Matrix(w.Wv, p + "v_proj"),
                    Wo = Matrix(w.Wo, p + "o_proj"),
                    WGate = Matrix(w.WGate, p + "gate_proj"), WUp = Matrix(w.WUp, p + "up_proj"), WDown = Matrix(w.WDown, p + "down_proj"),
                    AttentionNorm = Vector(w.AttentionNorm, _c.HiddenSize, p + "input_layernorm")!,
                    MlpNorm = Vector(w.MlpNorm, _c.HiddenSize, p + "post_attention_layernorm")!,
                    Bq = Vector(w.Bq, _c.QueryDim, p + "q bias"), Bk = Vector(w.Bk, _c.KvDim, p + "k bias"), Bv = Vector(w.Bv, _c.KvDim, p + "v bias"),
                    Bo = Vector(w.Bo, _c.HiddenSize, p + "o bias"),
                    BGate = Vector(w.BGate, _c.IntermediateSize, p + "gate bias"), BUp = Vector(w.BUp, _c.IntermediateSize, p + "up bias"),
                    BDown = Vector(w.BDown, _c.HiddenSize, p + "down bias"),
                    QNorm = Vector(w.QNorm, _c.HeadDim, p + "q_norm"), KNorm = Vector(w.KNorm, _c.HeadDim, p + "k_norm"),
                };
            }
            _stream.Synchronize();
        }
        catch
        {
            ReleaseAll();
            throw;
        }
    }

    public string Name => _device.Kind.Name();
    public IlgpuDevice Device => _device;
    /// <summary>Device bytes the weights take (stored dtype; tied embeddings counted once).</summary>
    public long WeightDeviceBytes => _weights.Sum(w => w is DeviceBuffer<ushort> u ? u.Bytes : ((DeviceBuffer<float>)w).Bytes);

    private DeviceMatrix Matrix(WeightMatrix w, string name)
    {
        long words = (long)w.Rows * w.Cols * DTypes.SizeOf(w.DType) / 2;
        var b = _device.Allocate<ushort>(words, name);
        _weights.Add(b);
        b.Buffer.View.CopyFromCPU(_stream, ref Unsafe.AsRef<ushort>(w.Data), words);
        return new DeviceMatrix(b, w.Rows, w.Cols, w.DType);
    }

    private DeviceBuffer<float>? Vector(NativeBuffer? v, int length, string name)
    {
        if (v is null) return null;
        var b = _device.Allocate<float>(length, name);
        _weights.Add(b);
        b.Buffer.View.CopyFromCPU(_stream, ref Unsafe.AsRef<float>(v.Ptr), length);
        return b;
    }

    // ---- KV caches in device memory ------------------------------------------------------------

    public KvCache CreateCache(int initialCapacity)
    {
        var type = _model.KvCacheType;
        return new KvCache(_c.NumLayers, _c.NumKvHeads, _c.HeadDim, initialCapacity, type, capacity => new DeviceKv(this, type, capacity));
    }

    /// <summary>
    /// One sequence's keys and values in one device buffer of 16-bit words: per layer the keys, then
    /// the values, each head-major [kvHead][capacity][headDim] in the cache's element type.
    /// </summary>
    private sealed class DeviceKv : IDeviceKvStorage
    {
        private readonly IlgpuLlamaModel _e;
        public IlgpuLlamaModel Owner => _e;
        public DType Type { get; }
        public int Capacity { get; private set; }
        public DeviceBuffer<ushort> Data { get; private set; }
        private readonly int _words; // 16-bit words per element

        public DeviceKv(IlgpuLlamaModel e, DType type, int capacity)
        {
            _e = e;
            Type = type;
            _words = DTypes.SizeOf(type) / 2;
            Capacity = capacity;
            Data = Allocate(capacity);
        }

        private DeviceBuffer<ushort> Allocate(int capacity) =>
            _e._device.Allocate<ushort>(2L * _e._c.NumLayers * _e._c.KvDim * capacity * _words, $"a KV cache of {capacity} positions");

        /// <summary>Element offset of layer l's keys (kind 0) or values (kind 1).</summary>
        public long Base(int layer, int kind) => (2L * layer + kind) * _e._c.KvDim * Capacity;

        public void Resize(int capacity, int length)
        {
            var next = Allocate(capacity);
            lock (_e._lock)
            {
                _e._device.Bind();
                int hd = _e._c.HeadDim, kvHeads = _e._c.NumKvHeads;
                long run = (long)length * hd * _words;
                if (run > 0)
                    for (int block = 0; block < 2 * _e._c.NumLayers; block++)
                        for (int g = 0; g < kvHeads; g++)
                        {
                            long src = ((long)block * kvHeads * Capacity + (long)g * Capacity) * hd * _words;
                            long dst = ((long)block * kvHeads * capacity + (long)g * capacity) * hd * _words;
                            Data.Buffer.View.SubView(src, run).CopyTo(_e._stream, next.Buffer.View.SubView(dst, run));
                        }
                _e._stream.Synchronize();
            }
            Data.Dispose();
            Data = next;
            Capacity = capacity;
        }

        public void Dispose() => Data.Dispose();
    }

    // ---- the forward pass ------------------------------------------------------------------------

    /// <summary>Activation buffers on the device for up to Tokens tokens per forward.</summary>
    private sealed class Activations : IDisposable
    {
        public required int Tokens;
        public required DeviceBuffer<float> X, Xb, Q, K, V, Att, Gate, Up, Hidden, Cos, Sin;
        public required DeviceBuffer<int> Ids;
        public void Dispose()
        {
            foreach (var b in new[] { X, Xb, Q, K, V, Att, Gate, Up, Hidden, Cos, Sin }) b.Dispose();
            Ids.Dispose();
        }
    }

    private Activations EnsureActivations(int n)
    {
        if (_act is { } a && a.Tokens >= n) return a;
        _act?.Dispose();
        _act = null;
        var c = _c;
        int half = Math.Max(1, c.RotaryDim / 2);
        DeviceBuffer<float> F(long count) => _device.Allocate<float>(count, $"activations for {n} tokens");
        var made = new List<IDisposable>();
        try
        {
            DeviceBuffer<float> T(long count) { var b = F(count); made.Add(b); return b; }
            var ids = _device.Allocate<int>(n, $"activations for {n} tokens");
            made.Add(ids);
            _act = new Activations
            {
                Tokens = n,
                X = T((long)n * c.HiddenSize), Xb = T((long)n * c.HiddenSize), Q = T((long)n * c.QueryDim),
                K = T((long)n * c.KvDim), V = T((long)n * c.KvDim), Att = T((long)n * c.QueryDim),
                Gate = T((long)n * c.IntermediateSize), Up = T((long)n * c.IntermediateSize),
                Hidden = T((long)n * c.HiddenSize), Cos = T((long)n * half), Sin = T((long)n * half), Ids = ids,
            };
            return _act;
        }
        catch
        {
            foreach (var b in made) b.Dispose();
            throw;
        }
    }

    public void Forward(ReadOnlySpan<int> tokens, ReadOnlySpan<LlamaModel.Segment> segments, ForwardScratch s)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _device.Bind();
            var c = _c;
            int n = tokens.Length;
            int hidden = c.HiddenSize, half = c.RotaryDim / 2;
            float eps = (float)c.RmsNormEps;
            s.EnsureTokens(n);
            var a = EnsureActivations(n);

            foreach (var seg in segments)
                if (seg.Cache.Device is not DeviceKv { Owner: var owner } || !ReferenceEquals(owner, this))
                    throw new ArgumentException("a KV cache of this forward was not created by this model's device engine (create caches with LlamaModel.CreateCache after the engine is attached)", nameof(segments));

            // The rope rows of the positions used, from the CPU path's double-precision tables.
            int row = 0;
            foreach (var seg in segments)
            {
                seg.Cache.EnsureCapacity(seg.StartPos + seg.Count);
                RopeTable.Fill(seg.Rope, seg.StartPos, seg.Count, s.Cos + (long)row * half, s.Sin + (long)row * half);
                row += seg.Count;
            }
            Upload(a.Ids, tokens);
            if (half > 0)
            {
                Upload(a.Cos, s.Cos, (long)n * half);
                Upload(a.Sin, s.Sin, (long)n * half);
            }
            Embed(_embeddings, a.Ids, n, a.X);

            for (int l = 0; l < c.NumLayers; l++)
            {
                var w = _layers[l];

                // attention: x += Wo · attn(rope(Wq·norm(x)), rope(Wk·norm(x)), Wv·norm(x))
                RmsNorm(a.X, w.AttentionNorm, n, hidden, eps, a.Xb);
                MatMul(w.Wq, a.Xb, n, a.Q, w.Bq);
                MatMul(w.Wk, a.Xb, n, a.K, w.Bk);
                MatMul(w.Wv, a.Xb, n, a.V, w.Bv);
                if (w.QNorm is not null)
                {
                    // Qwen3: each head's query and key RMS-normed over head_dim before rotation.
                    RmsNorm(a.Q, w.QNorm, n * c.NumHeads, c.HeadDim, eps, a.Q);
                    RmsNorm(a.K, w.KNorm!, n * c.NumKvHeads, c.HeadDim, eps, a.K);
                }
                ApplyRope(a.Q, n, c.NumHeads, a.Cos, a.Sin);
                ApplyRope(a.K, n, c.NumKvHeads, a.Cos, a.Sin);
                if (s.Observer is not null) Observe(s, l, a, n);
                row = 0;
                foreach (var seg in segments)
                {
                    // Append this segment's keys and values to its (head-major) cache, then attend over it.
                    var kv = (DeviceKv)seg.Cache.Device!;
                    WriteKv(a.K, a.V, kv, l, row, seg.StartPos, seg.Count);
                    Attention(a.Q, kv, l, a.Att, row, seg.Count, seg.StartPos, c.SlidingWindowFor(l));
                    row += seg.Count;
                }
                MatMul(w.Wo, a.Att, n, a.Xb, w.Bo);
                Add(a.X, a.Xb, (long)n * hidden);

                // MLP: x += Wdown · (silu(Wgate·norm(x)) ⊙ Wup·norm(x))
                RmsNorm(a.X, w.MlpNorm, n, hidden, eps, a.Xb);
                MatMul(w.WGate, a.Xb, n, a.Gate, w.BGate);
                MatMul(w.WUp, a.Xb, n, a.Up, w.BUp);
                SwiGlu(a.Gate, a.Up, (long)n * c.IntermediateSize);
                MatMul(w.WDown, a.Gate, n, a.Xb, w.BDown);
                Add(a.X, a.Xb, (long)n * hidden);
            }

            RmsNorm(a.X, _finalNorm, n, hidden, eps, a.Hidden);
            Download(a.Hidden, s.Hidden, (long)n * hidden);
            foreach (var seg in segments) seg.Cache.Length = seg.StartPos + seg.Count;
        }
    }

    public void Logits(float* hidden, int n, float* logits)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _device.Bind();
            int vocab = _c.VocabSize;
            if (_logitIn is null || _logitIn.Length < (long)n * _c.HiddenSize)
            {
                _logitIn?.Dispose(); _logitIn = null;
                _logitIn = _device.Allocate<float>((long)n * _c.HiddenSize, "LM head input");
            }
            if (_logitOut is null || _logitOut.Length < (long)n * vocab)
            {
                _logitOut?.Dispose(); _logitOut = null;
                _logitOut = _device.Allocate<float>((long)n * vocab, "logits");
            }
            Upload(_logitIn, hidden, (long)n * _c.HiddenSize);
            MatMul(_lmHead, _logitIn, n, _logitOut, null);
            Download(_logitOut, logits, (long)n * vocab);
        }
    }

    /// <summary>Diagnostics (attention-score evals): the layer's rotated queries and keys, copied to the host.</summary>
    private void Observe(ForwardScratch s, int layer, Activations a, int n)
    {
        Download(a.Q, s.Q, (long)n * _c.QueryDim);
        Download(a.K, s.K, (long)n * _c.KvDim);
        s.Observer!(layer, s.Q, s.K, n);
    }

    // ---- one launch per op -----------------------------------------------------------------------

    private void Embed(DeviceMatrix table, DeviceBuffer<int> ids, int n, DeviceBuffer<float> x)
    {
        var kernel = table.DType switch { DType.BF16 => _k.EmbedBf16, DType.F16 => _k.EmbedF16, _ => _k.EmbedF32 };
        kernel(_stream, Extent((long)n * table.Cols), table.Data.View, ids.View, x.View, table.Cols);
    }

    private void RmsNorm(DeviceBuffer<float> x, DeviceBuffer<float> weight, int rows, int dim, float eps, DeviceBuffer<float> y)
    {
        int g = _device.GroupSize;
        _k.RmsNorm(_stream, new KernelConfig(rows, g, SharedMemoryConfig.RequestDynamic<float>(g)), x.View, weight.View, y.View, dim, eps);
    }

    private void MatMul(DeviceMatrix w, DeviceBuffer<float> x, int n, DeviceBuffer<float> y, DeviceBuffer<float>? bias)
    {
        var shape = new MatMulShape { Rows = w.Rows, Cols = w.Cols, N = n, HasBias = bias is null ? 0 : 1, TileK = _device.TileK };
        var b = (bias ?? _noBias).View;
        if (n <= GemvMaxTokens)
        {
            int g = _device.GroupSize;
            var config = new KernelConfig(new Index2D(w.Rows, (n + 3) / 4), new Index2D(g, 1), SharedMemoryConfig.RequestDynamic<float>(4 * g));
            var kernel = w.DType switch { DType.BF16 => _k.GemvBf16, DType.F16 => _k.GemvF16, _ => _k.GemvF32 };
            kernel(_stream, config, w.Data.View, x.View, y.View, b, shape);
        }
        else
        {
            int tx = _device.TileX, ty = _device.TileY;
            var config = new KernelConfig(new Index2D((w.Rows + tx - 1) / tx, (n + ty - 1) / ty), new Index2D(tx, ty), SharedMemoryConfig.RequestDynamic<float>((tx + ty) * (_device.TileK + 1)));
            var kernel = w.DType switch { DType.BF16 => _k.GemmBf16, DType.F16 => _k.GemmF16, _ => _k.GemmF32 };
            kernel(_stream, config, w.Data.View, x.View, y.View, b, shape);
        }
    }

    private void ApplyRope(DeviceBuffer<float> x, int n, int heads, DeviceBuffer<float> cos, DeviceBuffer<float> sin)
    {
        int half = _c.RotaryDim / 2;
        if (half == 0) return;
        _k.Rope(_stream, Extent((long)n * heads * half), x.View, cos.View, sin.View, heads, _c.HeadDim, half);
    }

    private void WriteKv(DeviceBuffer<float> k, DeviceBuffer<float> v, DeviceKv kv, int layer, int row, int startPos, int count)
    {
        var kernel = kv.Type switch { DType.BF16 => _k.WriteKvBf16, DType.F16 => _k.WriteKvF16, _ => _k.WriteKvF32 };
        kernel(_stream, Extent((long)count * _c.KvDim), k.View, v.View, kv.Data.View, kv.Base(layer, 0), kv.Base(layer, 1),
            row, startPos, _c.KvDim, _c.HeadDim, kv.Capacity);
    }

    private void Attention(DeviceBuffer<float> q, DeviceKv kv, int layer, DeviceBuffer<float> output, int row, int count, int startPos, int? window)
    {
        int hd = _c.HeadDim, g = _device.GroupSize;
        // Key tile: as many keys as fit beside q and the output accumulator in shared memory, at most 32.
        long sharedFloats = Math.Min(_device.Accelerator.MaxSharedMemoryPerGroup, 48 * 1024) / sizeof(float);
        int tile = (int)Math.Clamp((sharedFloats - 2 * hd) / (2 * hd + 1), 1, 32);
        var shape = new AttentionShape
        {
            Heads = _c.NumHeads, KvHeads = _c.NumKvHeads, HeadDim = hd, StartPos = startPos, Window = window ?? -1, Tile = tile,
            Capacity = kv.Capacity, QueryRow = row, KeyBase = kv.Base(layer, 0), ValueBase = kv.Base(layer, 1),
            Scale = 1f / MathF.Sqrt(hd),
        };
        var config = new KernelConfig(new Index2D(count, _c.NumHeads), new Index2D(g, 1), SharedMemoryConfig.RequestDynamic<float>(2 * hd + 2 * tile * hd + tile));
        var kernel = kv.Type switch { DType.BF16 => _k.AttentionBf16, DType.F16 => _k.AttentionF16, _ => _k.AttentionF32 };
        kernel(_stream, config, q.View, kv.Data.View, output.View, shape);
    }

    private void SwiGlu(DeviceBuffer<float> gate, DeviceBuffer<float> up, long count) => _k.SwiGlu(_stream, Extent(count), gate.View, up.View);

    private void Add(DeviceBuffer<float> x, DeviceBuffer<float> y, long count) => _k.Add(_stream, Extent(count), x.View, y.View);

    /// <summary>An elementwise launch's extent (ILGPU grids are 32-bit; a forward chunk is far below that).</summary>
    private static Index1D Extent(long count) => count <= int.MaxValue ? (int)count : throw new ArgumentOutOfRangeException(nameof(count), $"{count} elements in one launch");

    // ---- transfers -------------------------------------------------------------------------------

    private void Upload(DeviceBuffer<int> dst, ReadOnlySpan<int> src) =>
        dst.Buffer.View.SubView(0, src.Length).CopyFromCPU(_stream, ref Unsafe.AsRef(in src[0]), src.Length);

    private void Upload(DeviceBuffer<float> dst, float* src, long count) =>
        dst.Buffer.View.SubView(0, count).CopyFromCPU(_stream, ref Unsafe.AsRef<float>(src), count);

    private void Download(DeviceBuffer<float> src, float* dst, long count)
    {
        src.Buffer.View.SubView(0, count).CopyToCPU(_stream, ref Unsafe.AsRef<float>(dst), count);
        _stream.Synchronize();
    }

    private void ReleaseAll()
    {
        _act?.Dispose();
        _act = null;
        _logitIn?.Dispose();
        _logitOut?.Dispose();
        foreach (var b in _weights) b.Dispose();
        _weights.Clear();
        _stream.Dispose();
    }

    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
            _device.Bind();
            ReleaseAll();
        }
    }
}
