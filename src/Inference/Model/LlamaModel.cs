using System.Text.Json.Nodes;
using PiServe.Inference.Cache;
using PiServe.Inference.Checkpoints;
using PiServe.Inference.Kernels;
using PiServe.Inference.Rope;

namespace PiServe.Inference.Model;

/// <summary>One decoder layer's weights: matrices memory-mapped as stored, norms and biases widened to f32.</summary>
public sealed class LayerWeights
{
    public required WeightMatrix Wq, Wk, Wv, Wo, WGate, WUp, WDown;
    public required NativeBuffer AttentionNorm, MlpNorm;
    public NativeBuffer? Bq, Bk, Bv, Bo, BGate, BUp, BDown;
    /// <summary>Qwen3's per-head RMSNorm weights for queries and keys ([head_dim] each).</summary>
    public NativeBuffer? QNorm, KNorm;
}

/// <summary>
/// A Llama-family decoder (Llama 1/2/3, Mistral, TinyLlama, Phi-3, Qwen2/2.5, Qwen3): embeddings, per
/// layer RMSNorm → GQA attention with HF rotate_half RoPE → residual → RMSNorm → SwiGLU MLP →
/// residual, final RMSNorm, lm_head (or the tied embeddings). The families differ only where
/// <see cref="ModelConfig"/> says: Qwen2's q/k/v biases, Qwen3's q/k norms, Phi-3's fused tensors
/// (sliced here, so the forward pass never sees them), which layers slide. Float32 activations and accumulation.
/// </summary>
public sealed unsafe class LlamaModel : IForwardEngine
{
    private readonly Checkpoint _checkpoint;
    private readonly List<NativeBuffer> _owned = [];

    public ModelConfig Config { get; }
    public IComputeBackend Backend { get; }
    /// <summary>The checkpoint's own rope scaling; requests may override it (<see cref="ResolveRope"/>).</summary>
    public RopeScaling Rope { get; }
    public LayerWeights[] Layers { get; }
    public WeightMatrix Embeddings { get; }
    public WeightMatrix LmHead { get; }
    public NativeBuffer FinalNorm { get; }
    public string Directory => _checkpoint.Directory;
    public DType WeightDType { get; }
    public long ParameterCount { get; }
    public long WeightBytes => _checkpoint.WeightBytes;

    /// <summary>
    /// The device engine that runs <see cref="Forward(ReadOnlySpan{int}, ReadOnlySpan{Segment}, ForwardScratch)"/>,
    /// <see cref="Logits"/> and <see cref="CreateCache"/> for this model (weights, KV caches and
    /// activations in its memory); null: the CPU forward pass below runs them.
    /// </summary>
    public IForwardEngine? Engine { get; private set; }

    /// <summary>"cpu", or the attached engine's name ("cuda", "ilgpu-cpu").</summary>
    public string Name => Engine?.Name ?? "cpu";

    /// <summary>Hands the forward pass to a device engine built on this model's weights; the model disposes it.</summary>
    public void AttachEngine(IForwardEngine engine)
    {
        if (Engine is not null) throw new InvalidOperationException($"the model already runs on {Engine.Name}");
        Engine = engine;
    }

    private LlamaModel(Checkpoint checkpoint, IComputeBackend backend)
    {
        _checkpoint = checkpoint;
        Config = checkpoint.Config;
        Backend = backend;
        var c = Config;
        Rope = RopeScalingFactory.Create(c, c.RopeScaling);

        var embed = checkpoint.Require("model.embed_tokens.weight", c.VocabSize, c.HiddenSize);
        Embeddings = WeightMatrix.From(embed);
        WeightDType = embed.DType;
        // Tied models have no lm_head tensor; some untied exports still omit it when tying was on.
        LmHead = c.TieWordEmbeddings && !checkpoint.Has("lm_head.weight")
            ? Embeddings
            : WeightMatrix.From(checkpoint.Require("lm_head.weight", c.VocabSize, c.HiddenSize));
        FinalNorm = Vector("model.norm.weight", c.HiddenSize);

        Layers = new LayerWeights[c.NumLayers];
        for (int l = 0; l < c.NumLayers; l++)
        {
            string p = $"model.layers.{l}.";
            WeightMatrix wq, wk, wv, wGate, wUp;
            if (c.FusedProjections)
            {
                // Phi-3: qkv_proj holds the rows of q, k and v one after another, gate_up_proj those
                // of gate and up (HF splits the outputs the same way); views, not copies.
                var qkv = Matrix(p + "self_attn.qkv_proj.weight", c.QueryDim + 2 * c.KvDim, c.HiddenSize);
                (wq, wk, wv) = (qkv.RowSlice(0, c.QueryDim), qkv.RowSlice(c.QueryDim, c.KvDim), qkv.RowSlice(c.QueryDim + c.KvDim, c.KvDim));
                var gateUp = Matrix(p + "mlp.gate_up_proj.weight", 2 * c.IntermediateSize, c.HiddenSize);
                (wGate, wUp) = (gateUp.RowSlice(0, c.IntermediateSize), gateUp.RowSlice(c.IntermediateSize, c.IntermediateSize));
            }
            else
            {
                wq = Matrix(p + "self_attn.q_proj.weight", c.QueryDim, c.HiddenSize);
                wk = Matrix(p + "self_attn.k_proj.weight", c.KvDim, c.HiddenSize);
                wv = Matrix(p + "self_attn.v_proj.weight", c.KvDim, c.HiddenSize);
                wGate = Matrix(p + "mlp.gate_proj.weight", c.IntermediateSize, c.HiddenSize);
                wUp = Matrix(p + "mlp.up_proj.weight", c.IntermediateSize, c.HiddenSize);
            }
            Layers[l] = new LayerWeights
            {
                Wq = wq, Wk = wk, Wv = wv,
                Wo = Matrix(p + "self_attn.o_proj.weight", c.HiddenSize, c.QueryDim),
                WGate = wGate, WUp = wUp,
                WDown = Matrix(p + "mlp.down_proj.weight", c.HiddenSize, c.IntermediateSize),
                AttentionNorm = Vector(p + "input_layernorm.weight", c.HiddenSize),
                MlpNorm = Vector(p + "post_attention_layernorm.weight", c.HiddenSize),
                Bq = c.AttentionBias ? Vector(p + "self_attn.q_proj.bias", c.QueryDim) : null,
                Bk = c.AttentionBias ? Vector(p + "self_attn.k_proj.bias", c.KvDim) : null,
                Bv = c.AttentionBias ? Vector(p + "self_attn.v_proj.bias", c.KvDim) : null,
                Bo = c.OutputBias ? Vector(p + "self_attn.o_proj.bias", c.HiddenSize) : null,
                BGate = c.MlpBias ? Vector(p + "mlp.gate_proj.bias", c.IntermediateSize) : null,
                BUp = c.MlpBias ? Vector(p + "mlp.up_proj.bias", c.IntermediateSize) : null,
                BDown = c.MlpBias ? Vector(p + "mlp.down_proj.bias", c.HiddenSize) : null,
                QNorm = c.QkNorm ? Vector(p + "self_attn.q_norm.weight", c.HeadDim) : null,
                KNorm = c.QkNorm ? Vector(p + "self_attn.k_norm.weight", c.HeadDim) : null,
            };
        }
        ParameterCount = checkpoint.Tensors.Values.Sum(t => t.ElementCount);
    }

    /// <summary>Loads the checkpoint in <paramref name="directory"/>; with <paramref name="confineTo"/>, every file's real path must lie inside that root (see <see cref="Checkpoint.Open"/>).</summary>
    public static LlamaModel Load(string directory, IComputeBackend? backend = null, ConfinementRoot? confineTo = null)
    {
        var checkpoint = Checkpoint.Open(directory, confineTo);
        try
        {
            return new LlamaModel(checkpoint, backend ?? new CpuBackend());
        }
        catch
        {
            checkpoint.Dispose();
            throw;
        }
    }

    private WeightMatrix Matrix(string name, int rows, int cols) => WeightMatrix.From(_checkpoint.Require(name, rows, cols));

    /// <summary>Norm weights and biases are tiny: widened once to f32 so the kernels take one type.</summary>
    private NativeBuffer Vector(string name, int length)
    {
        var t = _checkpoint.Require(name, length);
        var buffer = new NativeBuffer(length);
        Widen.Row(t.Data, t.DType, buffer.Ptr, length);
        _owned.Add(buffer);
        return buffer;
    }

    /// <summary>
    /// The rope scaling for a request: the checkpoint's own, or an override that replaces rope_scaling
    /// entirely on this loaded model (same weights). Throws <see cref="RopeScalingException"/>.
    /// </summary>
    public RopeScaling ResolveRope(JsonObject? ropeScalingOverride) =>
        ropeScalingOverride is null ? Rope : RopeScalingFactory.CreateOverride(Config, ropeScalingOverride);

    /// <summary>
    /// The element type of the KV caches this model creates: F32 (default, exact) or F16/BF16 (half the
    /// memory and attention traffic; the accuracy cost is in docs/PERFORMANCE.md).
    /// </summary>
    public DType KvCacheType
    {
        get => _kvCacheType;
        set => _kvCacheType = value is DType.F32 or DType.F16 or DType.BF16 ? value : throw new ArgumentException($"KV cache dtype {value} is not one of F32, F16, BF16");
    }
    private DType _kvCacheType = DType.F32;

    /// <summary>
    /// How this model's matmuls multiply (<see cref="Kernels.MatmulPrecision"/>): Exact by default;
    /// Bf16 rounds the activations to bf16 for every bf16 weight matrix (projections and lm_head) where
    /// the CPU has AVX512-BF16, in prefill and decode alike, so a token's results still do not depend
    /// on how it was batched or chunked. Elsewhere it changes nothing.
    /// </summary>
    public MatmulPrecision MatmulPrecision { get; set; }

    /// <summary>What the matmuls actually run at: Bf16 only for bf16 weights on the CPU engine where the native bf16 kernel loaded.</summary>
    public MatmulPrecision EffectiveMatmulPrecision =>
        MatmulPrecision == MatmulPrecision.Bf16 && Engine is null && WeightDType == DType.BF16 && NativeKernels.HasBf16Dot
            ? MatmulPrecision.Bf16 : MatmulPrecision.Exact;

    /// <summary>Bytes each cached position costs with this model's KV cache type.</summary>
    public long KvBytesPerToken => KvCache.BytesPerTokenFor(Config, KvCacheType);

    public KvCache CreateCache(int initialCapacity = 64) => Engine is { } e ? e.CreateCache(initialCapacity) : new(Config.NumLayers, Config.NumKvHeads, Config.HeadDim, initialCapacity, KvCacheType);

    /// <summary>
    /// Runs tokens at positions [startPos, startPos + n) through the decoder with the given rope
    /// frequencies, appending their keys and values to the cache (which must hold exactly startPos
    /// positions), and leaves the final-normed hidden states in s.Hidden.
    /// </summary>
    public void Forward(ReadOnlySpan<int> tokens, int startPos, KvCache cache, RopeFrequencies rope, ForwardScratch s) =>
        Forward(tokens, [new Segment(cache, startPos, tokens.Length, rope)], s);

    /// <summary>A run of consecutive tokens of one sequence inside a batched forward.</summary>
    public readonly record struct Segment(KvCache Cache, int StartPos, int Count, RopeFrequencies Rope);

    /// <summary>
    /// One forward over several sequences at once: the tokens are the segments' tokens back to back.
    /// Every matmul reads the weights once for all rows (batched decode is B segments of one token;
    /// prefill is one segment of n; a mixed step is both); attention runs per segment over its own cache.
    /// </summary>
    public void Forward(ReadOnlySpan<int> tokens, ReadOnlySpan<Segment> segments, ForwardScratch s)
    {
        var c = Config;
        var be = Backend;
        int n = tokens.Length;
        int hidden = c.HiddenSize, kvDim = c.KvDim, half = c.RotaryDim / 2;
        int total = 0;
        foreach (var seg in segments)
        {
            if (seg.Cache.Length != seg.StartPos) throw new InvalidOperationException($"cache holds {seg.Cache.Length} positions, forward starts at {seg.StartPos}");
            total += seg.Count;
        }
        if (total != n) throw new ArgumentException($"segments cover {total} tokens, {n} given", nameof(segments));
        foreach (int t in tokens)
            if ((uint)t >= (uint)c.VocabSize) throw new ArgumentOutOfRangeException(nameof(tokens), $"token id {t} is outside the vocabulary [0, {c.VocabSize})");
        if (Engine is not null)
        {
            Engine.Forward(tokens, segments, s);
            return;
        }
        s.EnsureTokens(n);
        float eps = (float)c.RmsNormEps;
        var precision = EffectiveMatmulPrecision;

        int row = 0;
        foreach (var seg in segments)
        {
            seg.Cache.EnsureCapacity(seg.StartPos + seg.Count);
            RopeTable.Fill(seg.Rope, seg.StartPos, seg.Count, s.Cos + (long)row * half, s.Sin + (long)row * half);
            row += seg.Count;
        }
        be.Embed(Embeddings, tokens, s.X);
        // A step's sequences: on the stack up to a large batch (decode allocates nothing).
        Span<AttentionSegment> attention = segments.Length <= 256 ? stackalloc AttentionSegment[segments.Length] : new AttentionSegment[segments.Length];

        for (int l = 0; l < c.NumLayers; l++)
        {
            var w = Layers[l];

            // attention: x += Wo · attn(rope(Wq·norm(x)), rope(Wk·norm(x)), Wv·norm(x)); Q, K, V in one parallel region
            be.RmsNorm(s.X, w.AttentionNorm.Ptr, n, hidden, eps, s.Xb);
            be.MatMul(s.Xb, n, [new(w.Wq, s.Q, Ptr(w.Bq)), new(w.Wk, s.K, Ptr(w.Bk)), new(w.Wv, s.V, Ptr(w.Bv))], precision);
            if (w.QNorm is not null)
            {
                // Qwen3: each head's query and key RMS-normed over head_dim before rotation.
                be.RmsNorm(s.Q, w.QNorm.Ptr, n * c.NumHeads, c.HeadDim, eps, s.Q);
                be.RmsNorm(s.K, w.KNorm!.Ptr, n * c.NumKvHeads, c.HeadDim, eps, s.K);
            }
            be.ApplyRope(s.Q, n, c.NumHeads, c.HeadDim, c.RotaryDim, s.Cos, s.Sin);
            be.ApplyRope(s.K, n, c.NumKvHeads, c.HeadDim, c.RotaryDim, s.Cos, s.Sin);
            s.Observer?.Invoke(l, s.Q, s.K, n);
            // Append each segment's keys and values to its (head-major) cache; then every segment
            // attends over its own cache, all in one call.
            row = 0;
            for (int i = 0; i < segments.Length; i++)
            {
                var seg = segments[i];
                for (int t = 0; t < seg.Count; t++)
                    for (int g = 0; g < c.NumKvHeads; g++)
                    {
                        long src = (long)(row + t) * kvDim + (long)g * c.HeadDim;
                        seg.Cache.Write(l, g, seg.StartPos + t, s.K + src, s.V + src);
                    }
                attention[i] = new AttentionSegment(s.Q + (long)row * c.QueryDim, seg.Cache.Layer(l), s.Att + (long)row * c.QueryDim, seg.Count, seg.StartPos);
                row += seg.Count;
            }
            be.Attention(attention, c.NumHeads, c.NumKvHeads, c.HeadDim, c.SlidingWindowFor(l));
            be.MatMul(w.Wo, s.Att, n, s.Xb, Ptr(w.Bo), precision);
            be.Add(s.X, s.Xb, (long)n * hidden);

            // MLP: x += Wdown · (silu(Wgate·norm(x)) ⊙ Wup·norm(x)); gate, up and SwiGLU in one parallel region
            be.RmsNorm(s.X, w.MlpNorm.Ptr, n, hidden, eps, s.Xb);
            be.MatMulSwiGlu(w.WGate, w.WUp, s.Xb, n, s.Gate, s.Up, Ptr(w.BGate), Ptr(w.BUp), precision);
            be.MatMul(w.WDown, s.Gate, n, s.Xb, Ptr(w.BDown), precision);
            be.Add(s.X, s.Xb, (long)n * hidden);
        }
        foreach (var seg in segments) seg.Cache.Length = seg.StartPos + seg.Count;

        be.RmsNorm(s.X, FinalNorm.Ptr, n, hidden, eps, s.Hidden);
    }

    /// <summary>logits[t] = lm_head · hidden[t] for n rows.</summary>
    public void Logits(float* hidden, int n, float* logits)
    {
        if (Engine is not null) Engine.Logits(hidden, n, logits);
        else Backend.MatMul(LmHead, hidden, n, logits, null, EffectiveMatmulPrecision);
    }

    private static float* Ptr(NativeBuffer? b) => b is null ? null : b.Ptr;

    public void Dispose()
    {
        Engine?.Dispose();
        Engine = null;
        foreach (var b in _owned) b.Dispose();
        _owned.Clear();
        _checkpoint.Dispose();
    }
}

/// <summary>Activation buffers for a forward of up to <see cref="Tokens"/> tokens, reused across calls.</summary>
public sealed unsafe class ForwardScratch(ModelConfig config) : IDisposable
{
    private readonly List<NativeBuffer> _buffers = [];
    public int Tokens { get; private set; }
    public float* X, Xb, Q, K, V, Att, Gate, Up, Hidden, Cos, Sin;

    /// <summary>Receives one layer's rotated queries [rows, heads·headDim] and keys [rows, kvHeads·headDim].</summary>
    public delegate void QueryKeyObserver(int layer, float* queries, float* keys, int rows);

    /// <summary>
    /// Diagnostics only (attention-score evals): when set, every layer hands its rotated queries and
    /// keys to it before attention. Null on the serving path, where it costs one null check per layer.
    /// </summary>
    public QueryKeyObserver? Observer { get; set; }

    public void EnsureTokens(int n)
    {
        if (n <= Tokens) return;
        foreach (var b in _buffers) b.Dispose();
        _buffers.Clear();
        var c = config;
        X = Alloc((long)n * c.HiddenSize);
        Xb = Alloc((long)n * c.HiddenSize);
        Q = Alloc((long)n * c.QueryDim);
        K = Alloc((long)n * c.KvDim);
        V = Alloc((long)n * c.KvDim);
        Att = Alloc((long)n * c.QueryDim);
        Gate = Alloc((long)n * c.IntermediateSize);
        Up = Alloc((long)n * c.IntermediateSize);
        Hidden = Alloc((long)n * c.HiddenSize);
        Cos = Alloc((long)n * Math.Max(1, c.RotaryDim / 2));
        Sin = Alloc((long)n * Math.Max(1, c.RotaryDim / 2));
        Tokens = n;
    }

    private float* Alloc(long length)
    {
        var b = new NativeBuffer(length);
        _buffers.Add(b);
        return b.Ptr;
    }

    public void Dispose()
    {
        foreach (var b in _buffers) b.Dispose();
        _buffers.Clear();
        Tokens = 0;
    }
}
