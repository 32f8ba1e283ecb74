using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace PiServe.Inference.Kernels;

/// <summary>
/// SIMD CPU kernels: rows split over the threads of a persistent <see cref="WorkerPool"/> (static
/// partition in 16-row blocks, one region per operation or per fused group of operations), vector
/// math via TensorPrimitives and width-generic kernels (Vector512 with AVX-512, Vector256 with AVX2). Small problems run on the calling thread,
/// where a region would cost more than the work. Each kind of region is a reusable
/// <see cref="ParallelWork"/> object per calling thread, so a decode step allocates nothing.
/// </summary>
public sealed unsafe class CpuBackend : IComputeBackend
{
    private const long SequentialWork = 1 << 16;
    /// <summary>Rows per partition block: 16 floats = one 64-byte cache line of each output row.</summary>
    private const int RowBlock = 16;
    private readonly WorkerPool _pool;

    public CpuBackend(int threads = 0)
    {
        Threads = threads > 0 ? threads : Environment.ProcessorCount;
        _pool = WorkerPool.Shared(Threads);
    }

    public string Name => "cpu";
    public int Threads { get; }

    [ThreadStatic] private static float[]? t_scratch;
    // The region objects of the calling thread: several threads may call one backend at once.
    [ThreadStatic] private static MatMulWork? t_matMul;
    [ThreadStatic] private static SwiGluWork? t_swiGlu;
    [ThreadStatic] private static AttentionWork? t_attention;

    /// <summary>
    /// The calling thread's scratch of at least <paramref name="length"/> floats, 64-byte aligned (the
    /// kernels load and store whole vectors of it; an unaligned one splits every access across two
    /// cache lines). Allocated on the pinned heap and kept by the thread-static reference, so the
    /// pointer stays valid until the next, larger request on the same thread: allocated once per
    /// thread and size in steady state.
    /// </summary>
    private static float* Scratch(int length)
    {
        var s = t_scratch;
        if (s is null || s.Length < length + 16) t_scratch = s = GC.AllocateUninitializedArray<float>(Math.Max(length, 4096) + 16, pinned: true);
        nint p = (nint)System.Runtime.CompilerServices.Unsafe.AsPointer(ref System.Runtime.InteropServices.MemoryMarshal.GetArrayDataReference(s));
        return (float*)((p + 63) & ~(nint)63);
    }

    /// <summary>Runs the region on the pool, or on the calling thread when it is too small to split.</summary>
    private void Parallel(ParallelWork work, long totalWork)
    {
        if (Threads == 1 || totalWork < SequentialWork) work.Run(0, 1);
        else _pool.Run(work);
    }

    public void MatMul(WeightMatrix w, float* x, int n, float* y, float* bias, MatmulPrecision precision = MatmulPrecision.Exact) =>
        MatMul(x, n, [new Projection(w, y, bias)], precision);

    public void MatMul(float* x, int n, ReadOnlySpan<Projection> projections, MatmulPrecision precision = MatmulPrecision.Exact)
    {
        var work = t_matMul ??= new MatMulWork();
        if (projections.Length > work.Projections.Length) throw new ArgumentException($"at most {work.Projections.Length} projections per region", nameof(projections));
        long total = 0;
        int blocks = 0;
        for (int i = 0; i < projections.Length; i++)
        {
            var p = projections[i];
            if (p.W.Cols != projections[0].W.Cols) throw new ArgumentException("projections of one input share its width", nameof(projections));
            work.Projections[i] = p;
            blocks += (p.W.Rows + RowBlock - 1) / RowBlock;
            total += (long)p.W.Rows * p.W.Cols * n;
        }
        work.Count = projections.Length;
        work.Blocks = blocks;
        work.X = x;
        work.N = n;
        work.Precision = precision;
        Parallel(work, total);
    }

    /// <summary>
    /// A part's scratch: the GEMM panel (<see cref="Gemm.PanelFloats"/>) and, for bf16 matmuls, room
    /// after it for the n × cols activations rounded to bf16 (<paramref name="xb"/>, 64-byte aligned).
    /// </summary>
    private static float* PartScratch(int cols, int n, MatmulPrecision precision, out ushort* xb)
    {
        int panel = Gemm.PanelFloats(cols);
        int rounded = precision == MatmulPrecision.Bf16 && NativeKernels.HasBf16Dot ? checked((int)(((long)n * cols + 1) / 2 + 16)) : 0;
        float* s = Scratch(panel + rounded);
        xb = rounded > 0 ? (ushort*)(((nint)(s + panel) + 63) & ~(nint)63) : null;
        return s;
    }

    /// <summary>
    /// Rows [r0, r1) of y = w·x: through VDPBF16PS when the model asks for bf16 and the weights are
    /// bf16 (x rounded to bf16 into <paramref name="xb"/> by the first such product of the part), else
    /// the exact kernels.
    /// </summary>
    private static void Product(WeightMatrix w, float* x, int n, float* y, float* bias, int r0, int r1, float* panel,
                                ushort* xb, ref bool rounded)
    {
        if (xb != null && w.DType == Checkpoints.DType.BF16)
        {
            if (!rounded) NativeKernels.ToBf16(x, xb, (long)n * w.Cols);
            rounded = true;
            NativeKernels.GemmBf16Dot((ushort*)w.Data, w.Cols, r0, r1, xb, n, y, w.Rows, bias);
        }
        else Gemm.Rows(w, x, n, y, bias, r0, r1, panel);
    }

    /// <summary>Projections of one input as one row space, cut into 16-row blocks, a contiguous run of blocks per part.</summary>
    private sealed class MatMulWork : ParallelWork
    {
        public readonly Projection[] Projections = new Projection[4];
        public int Count, Blocks, N;
        public float* X;
        public MatmulPrecision Precision;

        public override void Run(int part, int parts)
        {
            var (b0, b1) = Slice(Blocks, part, parts);
            float* panel = PartScratch(Projections[0].W.Cols, N, Precision, out ushort* xb);
            bool rounded = false;
            int blockBase = 0;
            for (int i = 0; i < Count && blockBase < b1; i++)
            {
                var p = Projections[i];
                int pBlocks = (p.W.Rows + RowBlock - 1) / RowBlock;
                int from = Math.Max(b0, blockBase) - blockBase, to = Math.Min(b1, blockBase + pBlocks) - blockBase;
                if (from < to)
                    Product(p.W, X, N, p.Y, p.Bias, from * RowBlock, Math.Min(p.W.Rows, to * RowBlock), panel, xb, ref rounded);
                blockBase += pBlocks;
            }
        }
    }

    public void RmsNorm(float* x, float* weight, int n, int dim, float eps, float* y)
    {
        var w = new ReadOnlySpan<float>(weight, dim);
        for (int t = 0; t < n; t++)
        {
            var row = new ReadOnlySpan<float>(x + (long)t * dim, dim);
            var outRow = new Span<float>(y + (long)t * dim, dim);
            float scale = 1f / MathF.Sqrt(TensorPrimitives.SumOfSquares(row) / dim + eps);
            TensorPrimitives.Multiply(row, scale, outRow);
            TensorPrimitives.Multiply(outRow, w, outRow);
        }
    }

    public void ApplyRope(float* x, int n, int heads, int headDim, int rotaryDim, float* cos, float* sin)
    {
        switch (Simd.Best)
        {
            case SimdWidth.V512: ApplyRope<Simd512, Vector512<float>>(x, n, heads, headDim, rotaryDim, cos, sin); break;
            case SimdWidth.V256: ApplyRope<Simd256, Vector256<float>>(x, n, heads, headDim, rotaryDim, cos, sin); break;
            default: ApplyRope<Simd128, Vector128<float>>(x, n, heads, headDim, rotaryDim, cos, sin); break;
        }
    }

    private static void ApplyRope<S, V>(float* x, int n, int heads, int headDim, int rotaryDim, float* cos, float* sin)
        where S : struct, ISimd<V> where V : struct
    {
        int half = rotaryDim / 2, lanes = S.Lanes;
        for (int t = 0; t < n; t++)
        {
            float* c = cos + (long)t * half, s = sin + (long)t * half;
            for (int h = 0; h < heads; h++)
            {
                float* x1 = x + ((long)t * heads + h) * headDim, x2 = x1 + half;
                int i = 0;
                for (; i + lanes <= half; i += lanes)
                {
                    var a = S.Load(x1 + i);
                    var b = S.Load(x2 + i);
                    var cc = S.Load(c + i);
                    var ss = S.Load(s + i);
                    S.Store(S.Subtract(S.Multiply(a, cc), S.Multiply(b, ss)), x1 + i);
                    S.Store(S.Add(S.Multiply(b, cc), S.Multiply(a, ss)), x2 + i);
                }
                for (; i < half; i++)
                {
                    float a = x1[i], b = x2[i];
                    x1[i] = a * c[i] - b * s[i];
                    x2[i] = b * c[i] + a * s[i];
                }
            }
        }
    }

    /// <summary>Keys per attention tile: scores for a tile stay in L1; memory is O(tile), never O(n²).</summary>
    private const int KeyTile = 64;

    /// <summary>
    /// Tiled online-softmax (flash-attention style) causal attention. A work item is a block of up to
    /// <see cref="QueryBlock"/> consecutive query tokens × one kv head: each tile of keys and values is
    /// widened once into f32 (in the pair layout for f16/bf16 caches, see <see cref="Gemm"/>) and
    /// shared by every query of the block and every query head of the GQA group, and the softmax is
    /// accumulated tile by tile (running max and sum, rescaling the partial output), so no score row
    /// longer than a tile is ever materialised: memory is O(block · tile), never O(n²). Tiles start at
    /// absolute positions and every query runs the same operations on the same widened rows whatever
    /// block it is in, so a query's result does not depend on how many tokens the forward processes
    /// (cached decoding stays bit-identical to a full recompute).
    /// </summary>
    public void Attention(ReadOnlySpan<AttentionSegment> segments, int heads, int kvHeads, int headDim, int? window)
    {
        if (segments.IsEmpty) return;
        var work = t_attention ??= new AttentionWork();
        long total = 0;
        foreach (var seg in segments) total += (long)seg.N * kvHeads * (seg.StartPos + seg.N) * headDim * 2 * (heads / kvHeads);
        fixed (AttentionSegment* p = segments)
        {
            work.Segments = p; work.Count = segments.Length;
            (work.Heads, work.KvHeads, work.HeadDim, work.Window) = (heads, kvHeads, headDim, window ?? -1);
            try { Parallel(work, total); }
            finally { work.Segments = null; }
        }
    }

    /// <summary>Query tokens per attention work item in prefill: each widened key/value tile serves all of them.</summary>
    private const int QueryBlock = 32;

    /// <summary>
    /// Work items are (segment, query block, kv head) triples over all the segments of a step, dealt
    /// out cyclically (item p, p + parts, ...): under the causal mask later blocks cost more, so
    /// contiguous slices would be unbalanced in prefill, and a decode step's sequences (a block each)
    /// share one parallel region instead of one region apiece.
    /// </summary>
    private sealed class AttentionWork : ParallelWork
    {
        public AttentionSegment* Segments;
        public int Count, Heads, KvHeads, HeadDim, Window;

        public override void Run(int part, int parts)
        {
            switch (Simd.Best)
            {
                case SimdWidth.V512: Run<Simd512, Vector512<float>>(part, parts); break;
                case SimdWidth.V256: Run<Simd256, Vector256<float>>(part, parts); break;
                default: Run<Simd128, Vector128<float>>(part, parts); break;
            }
        }

        private void Run<S, V>(int part, int parts) where S : struct, ISimd<V> where V : struct
        {
            int states = QueryBlock * (Heads / KvHeads), headDim = HeadDim;
            float* scratch = Scratch(states * (KeyTile + 2 * headDim + 2) + 2 * KeyTile * headDim);
            int seg = 0, segBase = 0, segItems = Items(Segments[0]);
            for (int item = part; ; item += parts)
            {
                while (seg < Count && item >= segBase + segItems)
                {
                    segBase += segItems;
                    if (++seg < Count) segItems = Items(Segments[seg]);
                }
                if (seg == Count) return;
                int local = item - segBase;
                ref readonly var sg = ref Segments[seg];
                switch (sg.Kv.ElementType)
                {
                    case Checkpoints.DType.BF16: Item<Bf16Rows, PairedF32Rows, S, V>(sg, local / KvHeads, local % KvHeads, scratch); break;
                    case Checkpoints.DType.F16 when sg.Kv.Finite: Item<FiniteF16Rows, PairedF32Rows, S, V>(sg, local / KvHeads, local % KvHeads, scratch); break;
                    case Checkpoints.DType.F16: Item<F16Rows, PairedF32Rows, S, V>(sg, local / KvHeads, local % KvHeads, scratch); break;
                    default: Item<F32Rows, F32Rows, S, V>(sg, local / KvHeads, local % KvHeads, scratch); break;
                }
            }
        }

        private int Items(in AttentionSegment sg) => (sg.N + QueryBlock - 1) / QueryBlock * KvHeads;

        /// <summary>
        /// Query block b of a segment against kv head g. T: the cache's stored rows; W: the widened
        /// tile's rows (pair-layout f32 for f16/bf16, the cache itself for f32).
        /// </summary>
        private void Item<T, W, S, V>(in AttentionSegment sg, int b, int g, float* scratch)
            where T : struct, IRowLoader where W : struct, IRowLoader where S : struct, ISimd<V> where V : struct
        {
            var kv = sg.Kv;
            float* qp = sg.Q, op = sg.Output;
            long headStride = kv.HeadStride;
            int startPos = sg.StartPos, heads = Heads, headDim = HeadDim, group = heads / KvHeads, lanes = S.Lanes;
            int window = Window;
            float scale = 1f / MathF.Sqrt(headDim);
            int states = QueryBlock * group;
            bool paired = T.Paired; // f32 caches are read in place
            float* scores = scratch, acc = scores + states * KeyTile, qs = acc + states * headDim, m = qs + states * headDim, l = m + states;
            float* kWide = l + states, vWide = kWide + KeyTile * headDim;
            long rowBytes = (long)headDim * T.Size, wideRowBytes = (long)headDim * W.Size;
            int t0 = b * QueryBlock, tn = Math.Min(QueryBlock, sg.N - t0);
            int iFirst = startPos + t0, iLast = iFirst + tn - 1;
            int jFirst = window >= 0 ? Math.Max(0, iFirst - window + 1) : 0; // the first key any query of the block sees
            for (int x = 0; x < tn * group; x++) { m[x] = float.NegativeInfinity; l[x] = 0; }
            new Span<float>(acc, tn * group * headDim).Clear();
            for (int t = 0; t < tn; t++)
                for (int h = 0; h < group; h++)
                {
                    float* q = qp + ((long)(t0 + t) * heads + g * group + h) * headDim;
                    float* dst = qs + (long)(t * group + h) * headDim;
                    if (T.Paired) Gemm.ToPairLayout(q, dst, headDim, lanes);
                    else Buffer.MemoryCopy(q, dst, headDim * 4L, headDim * 4L);
                }
            byte* kg = kv.Keys + g * headStride * T.Size, vg = kv.Values + g * headStride * T.Size;
            // Widening a tile pays off when several (query, head) pairs read it; a lone decode
            // query of a non-GQA model reads the cache directly (same values, same order).
            bool widen = paired && tn * group >= 4;
            // Read in place, a finite f16 cache converts with F16C natively (the same bits; .NET has no VCVTPH2PS).
            bool nativeF16 = !widen && typeof(T) == typeof(FiniteF16Rows) && lanes == 16 && NativeKernels.HasAttentionF16;

            // Tiles aligned to absolute positions (multiples of KeyTile); each query clips them to its [j0, i].
            for (int tileStart = jFirst / KeyTile * KeyTile; tileStart <= iLast; tileStart += KeyTile)
            {
                int tileFrom = Math.Max(tileStart, jFirst), tileTo = Math.Min(tileStart + KeyTile - 1, iLast);
                byte* kTile, vTile;
                if (widen)
                {
                    for (int j = tileFrom; j <= tileTo; j++)
                    {
                        Gemm.WidenPairs<T, S, V>(kg + j * rowBytes, kWide + (long)(j - tileFrom) * headDim, headDim);
                        Gemm.WidenPairs<T, S, V>(vg + j * rowBytes, vWide + (long)(j - tileFrom) * headDim, headDim);
                    }
                    kTile = (byte*)kWide; vTile = (byte*)vWide;
                }
                else { kTile = kg + tileFrom * rowBytes; vTile = vg + tileFrom * rowBytes; }
                long stride = widen ? wideRowBytes : rowBytes;

                for (int t = 0; t < tn; t++)
                {
                    int i = iFirst + t, j0 = window >= 0 ? Math.Max(0, i - window + 1) : 0;
                    int from = Math.Max(tileFrom, j0), to = Math.Min(tileTo, i), count = to - from + 1;
                    if (count <= 0) continue;
                    byte* kr = kTile + (from - tileFrom) * stride, vr = vTile + (from - tileFrom) * stride;
                    for (int h = 0; h < group; h++)
                    {
                        int x = t * group + h;
                        float* sc = scores + x * KeyTile, a = acc + (long)x * headDim;
                        if (widen) Scores<W, S, V>(kr, stride, count, qs + (long)x * headDim, headDim, scale, sc);
                        else if (nativeF16) NativeKernels.ScoresF16((ushort*)kr, stride / 2, count, qs + (long)x * headDim, headDim, scale, sc);
                        else Scores<T, S, V>(kr, stride, count, qs + (long)x * headDim, headDim, scale, sc);
                        float correction = SoftmaxTile<S, V>(sc, count, ref m[x], ref l[x]);
                        if (correction != 1f)
                        {
                            var av = new Span<float>(a, headDim);
                            TensorPrimitives.Multiply(av, correction, av);
                        }
                        if (widen) AccumulateValues<W, S, V>(vr, stride, count, sc, a, headDim);
                        else if (nativeF16) NativeKernels.AccumulateF16((ushort*)vr, stride / 2, count, sc, a, headDim);
                        else AccumulateValues<T, S, V>(vr, stride, count, sc, a, headDim);
                    }
                }
            }
            for (int t = 0; t < tn; t++)
                for (int h = 0; h < group; h++)
                {
                    int x = t * group + h;
                    float* o = op + ((long)(t0 + t) * heads + g * group + h) * headDim;
                    var av = new Span<float>(acc + (long)x * headDim, headDim);
                    TensorPrimitives.Multiply(av, 1f / l[x], av);
                    if (T.Paired) Gemm.FromPairLayout(acc + (long)x * headDim, o, headDim, lanes);
                    else av.CopyTo(new Span<float>(o, headDim));
                }
        }
    }

    /// <summary>
    /// One tile's step of the online softmax for one (query, head): the running maximum m takes the
    /// tile's scores in, each score becomes exp(score − m), and the running sum l is rescaled and
    /// extended. Returns exp(m_old − m_new), the factor the partial output must be rescaled by (0 on
    /// the first tile, 1 when the maximum did not move). One pass for the maximum and one for the
    /// exponentials and their sum (lane-wise, then Sum's tree), with <see cref="Simd.ExpNonPositive"/>.
    /// </summary>
    [SkipLocalsInit]
    private static float SoftmaxTile<S, V>(float* scores, int count, ref float m, ref float l)
        where S : struct, ISimd<V> where V : struct
    {
        int lanes = S.Lanes, i = 0;
        float* lane = stackalloc float[lanes];
        var vmax = S.Broadcast(float.NegativeInfinity);
        for (; i + lanes <= count; i += lanes) vmax = S.Max(vmax, S.Load(scores + i));
        S.Store(vmax, lane);
        float mNew = m;
        for (int k = 0; k < lanes; k++) mNew = Math.Max(mNew, lane[k]);
        for (int k = i; k < count; k++) mNew = Math.Max(mNew, scores[k]);

        var shift = S.Broadcast(mNew);
        var sum = S.Zero;
        for (i = 0; i + lanes <= count; i += lanes)
        {
            var e = Simd.ExpNonPositive<S, V>(S.Subtract(S.Load(scores + i), shift));
            S.Store(e, scores + i);
            sum = S.Add(sum, e);
        }
        if (i < count)
        {
            // The tail through the same vector code, padded with −∞ (whose exponential is 0).
            int rest = count - i;
            for (int k = 0; k < lanes; k++) lane[k] = k < rest ? scores[i + k] : float.NegativeInfinity;
            var e = Simd.ExpNonPositive<S, V>(S.Subtract(S.Load(lane), shift));
            S.Store(e, lane);
            for (int k = 0; k < rest; k++) scores[i + k] = lane[k];
            sum = S.Add(sum, e);
        }
        float correction = MathF.Exp(m - mNew); // 0 on the first tile (m = −∞)
        l = l * correction + S.Sum(sum);
        m = mNew;
        return correction;
    }

    /// <summary>
    /// scores[j] = scale · q·key_j for the count keys of a tile; each key's sum is formed exactly as
    /// <see cref="Gemm.Dot1"/> forms it (lane-wise FMA chain, then Sum's tree). When head_dim has no
    /// scalar tail, Lanes keys at a time (eight accumulation chains in flight) leave their partial
    /// vectors to <see cref="ISimd{V}.SumEach"/>: one transposing reduction instead of a horizontal sum
    /// and a lane extraction per key (those cost about as much as the products at head_dim 64). The
    /// keys left over go four at a time through <see cref="ISimd{V}.Sum4"/>, the last ones one by one.
    /// </summary>
    [SkipLocalsInit]
    internal static void Scores<T, S, V>(byte* keys, long rowBytes, int count, float* q, int headDim, float scale, float* scores)
        where T : struct, IRowLoader where S : struct, ISimd<V> where V : struct
    {
        int jj = 0, lanes = S.Lanes;
        if (headDim % lanes == 0 && count >= lanes)
        {
            float* partial = stackalloc float[lanes * lanes];
            var vscale = S.Broadcast(scale);
            for (; jj + lanes <= count; jj += lanes)
            {
                if (lanes >= 8)
                    for (int k = 0; k < lanes; k += 8) Partial8<T, S, V>(keys + (jj + k) * rowBytes, rowBytes, q, headDim, partial + k * lanes);
                else
                {
                    Partial4<T, S, V>(keys + jj * rowBytes, rowBytes, q, headDim, out var s0, out var s1, out var s2, out var s3);
                    S.Store(s0, partial); S.Store(s1, partial + lanes); S.Store(s2, partial + 2 * lanes); S.Store(s3, partial + 3 * lanes);
                }
                S.Store(S.Multiply(S.SumEach(partial), vscale), scores + jj);
            }
        }
        for (; jj + 4 <= count; jj += 4)
        {
            byte* r0 = keys + jj * rowBytes, r1 = r0 + rowBytes, r2 = r1 + rowBytes, r3 = r2 + rowBytes;
            int i = Partial4<T, S, V>(r0, rowBytes, q, headDim, out var s0, out var s1, out var s2, out var s3);
            var sums = S.Sum4(s0, s1, s2, s3);
            float a0 = sums.GetElement(0), a1 = sums.GetElement(1), a2 = sums.GetElement(2), a3 = sums.GetElement(3);
            for (; i < headDim; i++)
            {
                float qi = q[i];
                a0 += T.Scalar(r0, i) * qi; a1 += T.Scalar(r1, i) * qi; a2 += T.Scalar(r2, i) * qi; a3 += T.Scalar(r3, i) * qi;
            }
            scores[jj] = a0 * scale; scores[jj + 1] = a1 * scale; scores[jj + 2] = a2 * scale; scores[jj + 3] = a3 * scale;
        }
        for (; jj < count; jj++) scores[jj] = Gemm.Dot1<T, S, V>(keys + jj * rowBytes, q, headDim) * scale;
    }

    /// <summary>
    /// The partial vectors of eight consecutive keys' dot products with q (the GEMV's eight-row loop,
    /// <see cref="Gemm.Steps8"/>: eight chains, where four leave half the FMA throughput idle since a
    /// paired step is two dependent FMAs), stored at dst; head_dim is a multiple of Lanes (no scalar tail).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Partial8<T, S, V>(byte* r0, long rowBytes, float* q, int headDim, float* dst)
        where T : struct, IRowLoader where S : struct, ISimd<V> where V : struct
    {
        V s0 = S.Zero, s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0;
        Gemm.Steps8<T, S, V>(r0, rowBytes, q, 0, headDim, ref s0, ref s1, ref s2, ref s3, ref s4, ref s5, ref s6, ref s7);
        int lanes = S.Lanes;
        S.Store(s0, dst); S.Store(s1, dst + lanes); S.Store(s2, dst + 2 * lanes); S.Store(s3, dst + 3 * lanes);
        S.Store(s4, dst + 4 * lanes); S.Store(s5, dst + 5 * lanes); S.Store(s6, dst + 6 * lanes); S.Store(s7, dst + 7 * lanes);
    }

    /// <summary>
    /// The vector part of four consecutive keys' dot products with q (lane-wise partial sums, before
    /// the horizontal sum); returns the first element the vectors did not cover.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Partial4<T, S, V>(byte* r0, long rowBytes, float* q, int headDim, out V s0, out V s1, out V s2, out V s3)
        where T : struct, IRowLoader where S : struct, ISimd<V> where V : struct
    {
        byte* r1 = r0 + rowBytes, r2 = r1 + rowBytes, r3 = r2 + rowBytes;
        int i = 0, lanes = S.Lanes, step = T.Paired ? 2 * lanes : lanes;
        s0 = S.Zero; s1 = s0; s2 = s0; s3 = s0;
        for (; i + step <= headDim; i += step)
        {
            var qe = S.Load(q + i);
            var qo = T.Paired ? S.Load(q + i + lanes) : qe;
            s0 = Gemm.Step<T, S, V>(r0, i, qe, qo, s0); s1 = Gemm.Step<T, S, V>(r1, i, qe, qo, s1);
            s2 = Gemm.Step<T, S, V>(r2, i, qe, qo, s2); s3 = Gemm.Step<T, S, V>(r3, i, qe, qo, s3);
        }
        if (T.Paired && i + lanes <= headDim)
        {
            var qv = S.Load(q + i);
            s0 = S.Fma(T.Load<S, V>(r0, i), qv, s0); s1 = S.Fma(T.Load<S, V>(r1, i), qv, s1);
            s2 = S.Fma(T.Load<S, V>(r2, i), qv, s2); s3 = S.Fma(T.Load<S, V>(r3, i), qv, s3);
            i += lanes;
        }
        return i;
    }

    /// <summary>a0…a3 += pv · the four vectors of a paired row from element i (two pair blocks: even, odd, even, odd).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AxpyPairs4<T, S, V>(byte* row, int i, V pv, ref V a0, ref V a1, ref V a2, ref V a3)
        where T : struct, IRowLoader where S : struct, ISimd<V> where V : struct
    {
        T.LoadPairs<S, V>(row, i, out var e0, out var o0);
        a0 = S.Fma(pv, e0, a0); a1 = S.Fma(pv, o0, a1);
        T.LoadPairs<S, V>(row, i + 2 * S.Lanes, out var e1, out var o1);
        a2 = S.Fma(pv, e1, a2); a3 = S.Fma(pv, o1, a3);
    }

    /// <summary>
    /// acc += Σ_j p[j]·value_j over the count values of a tile (acc in the pair layout when the rows
    /// are paired). Loops run keys innermost with a slice of acc held in registers (up to eight
    /// vectors, so eight independent FMA chains), instead of a load and store of acc per key; each
    /// element still adds the keys in order, so results equal a per-key axpy's bit for bit.
    /// </summary>
    internal static void AccumulateValues<T, S, V>(byte* values, long rowBytes, int count, float* p, float* acc, int headDim)
        where T : struct, IRowLoader where S : struct, ISimd<V> where V : struct
    {
        int lanes = S.Lanes, i = 0;
        if (T.Paired)
        {
            for (; i + 8 * lanes <= headDim; i += 8 * lanes)
            {
                V a0 = S.Load(acc + i), a1 = S.Load(acc + i + lanes), a2 = S.Load(acc + i + 2 * lanes), a3 = S.Load(acc + i + 3 * lanes);
                V a4 = S.Load(acc + i + 4 * lanes), a5 = S.Load(acc + i + 5 * lanes), a6 = S.Load(acc + i + 6 * lanes), a7 = S.Load(acc + i + 7 * lanes);
                byte* row = values;
                for (int j = 0; j < count; j++, row += rowBytes)
                {
                    var pv = S.Broadcast(p[j]);
                    AxpyPairs4<T, S, V>(row, i, pv, ref a0, ref a1, ref a2, ref a3);
                    AxpyPairs4<T, S, V>(row, i + 4 * lanes, pv, ref a4, ref a5, ref a6, ref a7);
                }
                S.Store(a0, acc + i); S.Store(a1, acc + i + lanes); S.Store(a2, acc + i + 2 * lanes); S.Store(a3, acc + i + 3 * lanes);
                S.Store(a4, acc + i + 4 * lanes); S.Store(a5, acc + i + 5 * lanes); S.Store(a6, acc + i + 6 * lanes); S.Store(a7, acc + i + 7 * lanes);
            }
            // head_dim 64 at 16 lanes: four chains in one pass over the keys, not two passes of two (latency-bound)
            for (; i + 4 * lanes <= headDim; i += 4 * lanes)
            {
                V a0 = S.Load(acc + i), a1 = S.Load(acc + i + lanes), a2 = S.Load(acc + i + 2 * lanes), a3 = S.Load(acc + i + 3 * lanes);
                byte* row = values;
                for (int j = 0; j < count; j++, row += rowBytes)
                    AxpyPairs4<T, S, V>(row, i, S.Broadcast(p[j]), ref a0, ref a1, ref a2, ref a3);
                S.Store(a0, acc + i); S.Store(a1, acc + i + lanes); S.Store(a2, acc + i + 2 * lanes); S.Store(a3, acc + i + 3 * lanes);
            }
            for (; i + 2 * lanes <= headDim; i += 2 * lanes)
            {
                V a0 = S.Load(acc + i), a1 = S.Load(acc + i + lanes);
                byte* row = values;
                for (int j = 0; j < count; j++, row += rowBytes)
                {
                    var pv = S.Broadcast(p[j]);
                    T.LoadPairs<S, V>(row, i, out var e, out var o);
                    a0 = S.Fma(pv, e, a0); a1 = S.Fma(pv, o, a1);
                }
                S.Store(a0, acc + i); S.Store(a1, acc + i + lanes);
            }
        }
        else
        {
            for (; i + 4 * lanes <= headDim; i += 4 * lanes)
            {
                V a0 = S.Load(acc + i), a1 = S.Load(acc + i + lanes), a2 = S.Load(acc + i + 2 * lanes), a3 = S.Load(acc + i + 3 * lanes);
                byte* row = values;
                for (int j = 0; j < count; j++, row += rowBytes)
                {
                    var pv = S.Broadcast(p[j]);
                    a0 = S.Fma(pv, T.Load<S, V>(row, i), a0); a1 = S.Fma(pv, T.Load<S, V>(row, i + lanes), a1);
                    a2 = S.Fma(pv, T.Load<S, V>(row, i + 2 * lanes), a2); a3 = S.Fma(pv, T.Load<S, V>(row, i + 3 * lanes), a3);
                }
                S.Store(a0, acc + i); S.Store(a1, acc + i + lanes); S.Store(a2, acc + i + 2 * lanes); S.Store(a3, acc + i + 3 * lanes);
            }
        }
        for (; i + lanes <= headDim; i += lanes)
        {
            var a = S.Load(acc + i);
            byte* row = values;
            for (int j = 0; j < count; j++, row += rowBytes) a = S.Fma(S.Broadcast(p[j]), T.Load<S, V>(row, i), a);
            S.Store(a, acc + i);
        }
        for (; i < headDim; i++)
        {
            float a = acc[i];
            byte* row = values;
            for (int j = 0; j < count; j++, row += rowBytes) a += p[j] * T.Scalar(row, i);
            acc[i] = a;
        }
    }

    public void SwiGlu(float* gate, float* up, long count) => SwiGluInPlace(gate, up, count);

    /// <summary>gate = silu(gate)·up = gate·sigmoid(gate)·up, in chunks so the temporary stays in L1.</summary>
    private static void SwiGluInPlace(float* gate, float* up, long count)
    {
        const int chunk = 1024;
        var tmp = new Span<float>(Scratch(chunk), chunk);
        for (long off = 0; off < count; off += chunk)
        {
            int len = (int)Math.Min(chunk, count - off);
            var g = new Span<float>(gate + off, len);
            var t = tmp[..len];
            TensorPrimitives.Sigmoid(g, t);
            TensorPrimitives.Multiply(g, t, g);
            TensorPrimitives.Multiply(g, new ReadOnlySpan<float>(up + off, len), g);
        }
    }

    public void MatMulSwiGlu(WeightMatrix gate, WeightMatrix up, float* x, int n, float* y, float* upOut, float* gateBias, float* upBias,
                             MatmulPrecision precision = MatmulPrecision.Exact)
    {
        if (gate.Rows != up.Rows || gate.Cols != up.Cols) throw new ArgumentException("gate and up must have one shape");
        var work = t_swiGlu ??= new SwiGluWork();
        work.Gate = gate; work.Up = up; work.N = n; work.Precision = precision;
        work.X = x; work.Y = y; work.UpOut = upOut; work.GateBias = gateBias; work.UpBias = upBias;
        Parallel(work, 2L * gate.Rows * gate.Cols * n);
    }

    /// <summary>
    /// A part owns the same 16-row blocks of gate and up, so it can finish its own slice of
    /// silu(gate)·up for every token without waiting for the other parts.
    /// </summary>
    private sealed class SwiGluWork : ParallelWork
    {
        public WeightMatrix Gate, Up;
        public float* X, Y, UpOut, GateBias, UpBias;
        public int N;
        public MatmulPrecision Precision;

        public override void Run(int part, int parts)
        {
            int rows = Gate.Rows;
            var (b0, b1) = Slice((rows + RowBlock - 1) / RowBlock, part, parts);
            int r0 = b0 * RowBlock, r1 = Math.Min(rows, b1 * RowBlock);
            if (r0 >= r1) return;
            float* panel = PartScratch(Gate.Cols, N, Precision, out ushort* xb);
            bool rounded = false;
            Product(Gate, X, N, Y, GateBias, r0, r1, panel, xb, ref rounded);
            Product(Up, X, N, UpOut, UpBias, r0, r1, panel, xb, ref rounded);
            for (int t = 0; t < N; t++)
                SwiGluInPlace(Y + (long)t * rows + r0, UpOut + (long)t * rows + r0, r1 - r0);
        }
    }

    public void Add(float* x, float* y, long count)
    {
        for (long off = 0; off < count; off += int.MaxValue / 2)
        {
            int len = (int)Math.Min(int.MaxValue / 2, count - off);
            var xs = new Span<float>(x + off, len);
            TensorPrimitives.Add(xs, new ReadOnlySpan<float>(y + off, len), xs);
        }
    }

    public void Embed(WeightMatrix embeddings, ReadOnlySpan<int> tokens, float* output)
    {
        int dim = embeddings.Cols;
        for (int t = 0; t < tokens.Length; t++)
            Widen.Row(embeddings.Row(tokens[t]), embeddings.DType, output + (long)t * dim, dim);
    }
}
