namespace PiServe.Inference.Kernels;

/// <summary>
/// The operations the forward pass is made of. The CPU backend implements them with SIMD and a
/// persistent worker pool. All activations are float32 row-major [tokens, features] in host memory;
/// weights stay in their stored dtype. This is the CPU engine's op seam; the device seam sits one
/// level up (<see cref="Model.IForwardEngine"/>: a GPU engine owns its weights, KV caches and
/// activations and runs the whole forward pass, see Gpu/IlgpuLlamaModel).
/// </summary>
public unsafe interface IComputeBackend
{
    string Name { get; }

    /// <summary>
    /// y[t, r] = Σ_c w[r, c]·x[t, c] (+ bias[r]) for t in [0, n). <paramref name="precision"/>: how a
    /// model multiplies (Bf16 rounds the activations for bf16 weights where the CPU has AVX512-BF16).
    /// </summary>
    void MatMul(WeightMatrix w, float* x, int n, float* y, float* bias, MatmulPrecision precision = MatmulPrecision.Exact);

    /// <summary>
    /// Several products of one input at once (Q, K and V): for each projection p, p.Y = p.W·x (+ p.Bias).
    /// One parallel region for all of them instead of one per matrix.
    /// </summary>
    void MatMul(float* x, int n, ReadOnlySpan<Projection> projections, MatmulPrecision precision = MatmulPrecision.Exact);

    /// <summary>
    /// The SwiGLU MLP's first half in one region: y = silu(gate·x + gateBias) ⊙ (up·x + upBias),
    /// with upOut [n, rows] as the second product's buffer.
    /// </summary>
    void MatMulSwiGlu(WeightMatrix gate, WeightMatrix up, float* x, int n, float* y, float* upOut, float* gateBias, float* upBias,
                      MatmulPrecision precision = MatmulPrecision.Exact);

    /// <summary>y[t] = x[t] / sqrt(mean(x[t]²) + eps) · weight, per row of length <paramref name="dim"/>.</summary>
    void RmsNorm(float* x, float* weight, int n, int dim, float eps, float* y);

    /// <summary>
    /// HF rotate_half RoPE in place on the first rotaryDim dims of every head of every row:
    /// x1' = x1·cos − x2·sin, x2' = x2·cos + x1·sin. cos/sin rows are [n, rotaryDim/2].
    /// </summary>
    void ApplyRope(float* x, int n, int heads, int headDim, int rotaryDim, float* cos, float* sin);

    /// <summary>
    /// Causal attention for each segment: its N queries at positions StartPos.. over keys/values
    /// [0, StartPos + N) of its layer of the cache, query head h reading kv head h / (heads/kvHeads);
    /// with a window W a query at i sees keys j with i − j &lt; W. Caches are head-major (see
    /// <see cref="KvLayer"/>). The segments of a step (one per sequence) are one call, so a backend can
    /// spread all of them over its threads at once.
    /// </summary>
    void Attention(ReadOnlySpan<AttentionSegment> segments, int heads, int kvHeads, int headDim, int? window);

    /// <summary>gate = silu(gate)·up, elementwise over count values.</summary>
    void SwiGlu(float* gate, float* up, long count);

    /// <summary>x += y, elementwise.</summary>
    void Add(float* x, float* y, long count);

    /// <summary>Rows of the embedding matrix for the tokens, widened to f32.</summary>
    void Embed(WeightMatrix embeddings, ReadOnlySpan<int> tokens, float* output);
}

/// <summary>One product of a fused <see cref="IComputeBackend.MatMul(float*, int, ReadOnlySpan{Projection})"/>: Y [n, W.Rows] = W·x (+ Bias, may be null).</summary>
public readonly unsafe struct Projection(WeightMatrix w, float* y, float* bias)
{
    public WeightMatrix W { get; } = w;
    public float* Y { get; } = y;
    public float* Bias { get; } = bias;
}

/// <summary>
/// One layer of a KV cache as attention reads it: head-major, the key of kv head g at position j is
/// element g·HeadStride + j·headDim of Keys (values likewise), elements of type ElementType (F32, F16, BF16).
/// Finite: no stored element is an infinity or NaN (lets f16 be widened with fewer operations).
/// </summary>
/// <summary>One sequence's queries in an <see cref="IComputeBackend.Attention"/> call: N rows of Q from position StartPos, their outputs, and its cache layer.</summary>
public readonly unsafe struct AttentionSegment(float* q, KvLayer kv, float* output, int n, int startPos)
{
    public float* Q { get; } = q;
    public KvLayer Kv { get; } = kv;
    public float* Output { get; } = output;
    public int N { get; } = n;
    public int StartPos { get; } = startPos;
}

public readonly unsafe struct KvLayer(byte* keys, byte* values, long headStride, Checkpoints.DType elementType, bool finite = false)
{
    public bool Finite { get; } = finite;
    public byte* Keys { get; } = keys;
    public byte* Values { get; } = values;
    public long HeadStride { get; } = headStride;
    public Checkpoints.DType ElementType { get; } = elementType;
}
