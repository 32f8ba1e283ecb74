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

    public void MatMul(WeightMatrix w, float* x, int n, float* y, float* bias) => MatMul(x, n, [new Projection(w, y, bias)]);

    public void MatMul(float* x, int n, ReadOnlySpan<Projection> projections)
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
        Parallel(work, total);
    }

    /// <summary>Projections of one input as one row space, cut into 16-row blocks, a contiguous run of blocks per part.</summary>
    private sealed class MatMulWork : ParallelWork
    {
        public readonly Projection[] Projections = new Projection[4];
        public int Count, Blocks, N;
        public float* X;

        public override void Run(int part, int parts)
        {
            var (b0, b1) = Slice(Blocks, part, parts);
            float* panel = Scratch(Gemm.PanelFloats(Projections[0].W.Cols));
            int blockBase = 0;
            for (int i = 0; i < Count && blockBase < b1; i++)
            {
                var p = Projections[i];
                int pBlocks = (p.W.Rows + RowBlock - 1) / RowBlock;
                int from = Math.Max(b0, blockBase) - blockBase, to = Math.Min(b1, blockBase + pBlocks) - blockBase;
                if (from < to)
                    Gemm.Rows(p.W, X, N, p.Y, p.Bias, from * RowBlock, Math.Min(p.W.Rows, to * RowBlock), panel);
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
    /// Tiled online-softmax (flash-attention style) causal attention. One work item per (query
    /// token, kv head): each key/value row is loaded once for all query heads of its GQA group, and
    /// the softmax is accumulated tile by tile (running max and sum, rescaling the partial output),
    /// so no score row longer than a tile is ever materialised. Tiles start at absolute positions,
    /// so a query's result does not depend on how many tokens the forward processes (cached decoding
    /// stays bit-identical to a full recompute).
    /// </summary>
    public void Attention(float* q, float* k, float* v, long headStride, float* output, int n, int startPos, int heads, int kvHeads, int headDim, int? window)
    {
        var work = t_attention ??= new AttentionWork();
        work.Q = q; work.K = k; work.V = v; work.Output = output;
        work.HeadStride = headStride;
        (work.N, work.StartPos, work.Heads, work.KvHeads, work.HeadDim, work.Window) = (n, startPos, heads, kvHeads, headDim, window ?? -1);
        Parallel(work, (long)n * kvHeads * (startPos + n) * headDim * 2 * (heads / kvHeads));
    }

    /// <summary>
    /// Work items are (query token, kv head) pairs, dealt out cyclically (item p, p + parts, ...):
    /// under the causal mask later tokens cost more, so contiguous slices would be unbalanced in prefill.
    /// </summary>
    private sealed class AttentionWork : ParallelWork
    {
        public float* Q, K, V, Output;
        public long HeadStride;
        public int N, StartPos, Heads, KvHeads, HeadDim, Window;

        public override void Run(int part, int parts)
        {
            float* qp = Q, kp = K, vp = V, op = Output;
            long headStride = HeadStride;
            int startPos = StartPos, heads = Heads, kvHeads = KvHeads, headDim = HeadDim, group = heads / kvHeads;
            int? window = Window >= 0 ? Window : null;
            float scale = 1f / MathF.Sqrt(headDim);
            float* scratch = Scratch(group * (KeyTile + headDim + 2));
            for (int item = part; item < N * kvHeads; item += parts)
            {
                int t = item / kvHeads, g = item % kvHeads;
                int i = startPos + t;
                int j0 = window is { } w ? Math.Max(0, i - w + 1) : 0;
                float* scores = scratch, acc = scratch + group * KeyTile, m = acc + group * headDim, l = m + group;
                for (int h = 0; h < group; h++) { m[h] = float.NegativeInfinity; l[h] = 0; }
                new Span<float>(acc, group * headDim).Clear();
                float* qg = (float*)qp + ((long)t * heads + g * group) * headDim;
                float* kg = (float*)kp + g * headStride, vg = (float*)vp + g * headStride;

                // Tiles aligned to absolute positions (multiples of KeyTile), clipped to [j0, i].
                for (int tileStart = j0 / KeyTile * KeyTile; tileStart <= i; tileStart += KeyTile)
                {
                    int from = Math.Max(tileStart, j0), to = Math.Min(tileStart + KeyTile - 1, i), count = to - from + 1;
                    for (int jj = 0; jj < count; jj++)
                    {
                        float* kr = kg + (long)(from + jj) * headDim;
                        for (int h = 0; h < group; h++)
                            scores[h * KeyTile + jj] = Gemm.DotF32(qg + (long)h * headDim, kr, headDim) * scale;
                    }
                    for (int h = 0; h < group; h++)
                    {
                        var sc = new Span<float>(scores + h * KeyTile, count);
                        float mNew = Math.Max(m[h], TensorPrimitives.Max(sc));
                        float correction = MathF.Exp(m[h] - mNew); // 0 on the first tile (m = -inf)
                        TensorPrimitives.Subtract(sc, mNew, sc);
                        TensorPrimitives.Exp(sc, sc);
                        l[h] = l[h] * correction + TensorPrimitives.Sum(sc);
                        m[h] = mNew;
                        if (correction != 1f)
                        {
                            var a = new Span<float>(acc + h * headDim, headDim);
                            TensorPrimitives.Multiply(a, correction, a);
                        }
                    }
                    for (int jj = 0; jj < count; jj++)
                    {
                        float* vr = vg + (long)(from + jj) * headDim;
                        for (int h = 0; h < group; h++)
                            Axpy(scores[h * KeyTile + jj], vr, acc + h * headDim, headDim);
                    }
                }
                for (int h = 0; h < group; h++)
                {
                    float* o = (float*)op + ((long)t * heads + g * group + h) * headDim;
                    TensorPrimitives.Multiply(new ReadOnlySpan<float>(acc + h * headDim, headDim), 1f / l[h], new Span<float>(o, headDim));
                }
            }
        }
    }

    /// <summary>y += a·x.</summary>
    private static void Axpy(float a, float* x, float* y, int n)
    {
        switch (Simd.Best)
        {
            case SimdWidth.V512 when (n & 15) == 0: Axpy<Simd512, Vector512<float>>(a, x, y, n); break;
            case SimdWidth.V256 when (n & 7) == 0: Axpy<Simd256, Vector256<float>>(a, x, y, n); break;
            default:
                var ys = new Span<float>(y, n);
                TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(x, n), a, ys, ys);
                break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Axpy<S, V>(float a, float* x, float* y, int n) where S : struct, ISimd<V> where V : struct
    {
        var av = S.Broadcast(a);
        for (int i = 0; i < n; i += S.Lanes) S.Store(S.Fma(av, S.Load(x + i), S.Load(y + i)), y + i);
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

    public void MatMulSwiGlu(WeightMatrix gate, WeightMatrix up, float* x, int n, float* y, float* upOut, float* gateBias, float* upBias)
    {
        if (gate.Rows != up.Rows || gate.Cols != up.Cols) throw new ArgumentException("gate and up must have one shape");
        var work = t_swiGlu ??= new SwiGluWork();
        work.Gate = gate; work.Up = up; work.N = n;
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

        public override void Run(int part, int parts)
        {
            int rows = Gate.Rows;
            var (b0, b1) = Slice((rows + RowBlock - 1) / RowBlock, part, parts);
            int r0 = b0 * RowBlock, r1 = Math.Min(rows, b1 * RowBlock);
            if (r0 >= r1) return;
            float* panel = Scratch(Gemm.PanelFloats(Gate.Cols));
            Gemm.Rows(Gate, X, N, Y, GateBias, r0, r1, panel);
            Gemm.Rows(Up, X, N, UpOut, UpBias, r0, r1, panel);
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
