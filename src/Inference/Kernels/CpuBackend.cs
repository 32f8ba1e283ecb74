using System.Numerics.Tensors;
using System.Runtime.Intrinsics;

namespace PiServe.Inference.Kernels;

/// <summary>
/// SIMD CPU kernels: rows split over the threads of a persistent <see cref="WorkerPool"/>, vector
/// math via TensorPrimitives (Vector512 on this machine). Small problems run on the calling thread,
/// where fork/join would cost more than the work. Each parallel operation is a reusable job object
/// per calling thread (fields, no closure), so a steady-state decode step allocates nothing.
/// </summary>
public sealed unsafe class CpuBackend : IComputeBackend
{
    private const long SequentialWork = 1 << 16;
    private readonly ParallelOptions _parallel;
    private readonly WorkerPool _pool;

    public CpuBackend(int threads = 0)
    {
        _parallel = new() { MaxDegreeOfParallelism = threads > 0 ? threads : Environment.ProcessorCount };
        _pool = WorkerPool.For(_parallel.MaxDegreeOfParallelism);
    }

    public string Name => "cpu";
    public int Threads => _parallel.MaxDegreeOfParallelism;

    [ThreadStatic] private static MatMulJob? t_matMul;
    [ThreadStatic] private static AttentionJob? t_attention;

    [ThreadStatic] private static float[]? t_scratch;

    private static float[] Scratch(int length)
    {
        var s = t_scratch;
        if (s is null || s.Length < length) t_scratch = s = new float[Math.Max(length, 4096)];
        return s;
    }

    private void For(int count, long workPerItem, ParallelJob job)
    {
        if (count == 1 || count * workPerItem < SequentialWork)
            for (int i = 0; i < count; i++) job.Run(i);
        else if (!_pool.TryRun(job, count))
            Parallel.For(0, count, _parallel, job.Run); // the pool is running another caller's job
    }

    public void MatMul(WeightMatrix w, float* x, int n, float* y, float* bias)
    {
        int rows = w.Rows, cols = w.Cols;
        nint xp = (nint)x, yp = (nint)y, bp = (nint)bias;
        // Row chunks of a multiple of 16 rows (64 bytes of y per token), a few per thread for balance.
        const int align = 16;
        int chunks = Math.Max(1, Math.Min(Threads * 4, (rows + align - 1) / align));
        int rowsPerChunk = ((rows + chunks - 1) / chunks + align - 1) / align * align;
        chunks = (rows + rowsPerChunk - 1) / rowsPerChunk;
        var job = t_matMul ??= new MatMulJob();
        (job.W, job.X, job.N, job.Y, job.Bias, job.RowsPerChunk) = (w, xp, n, yp, bp, rowsPerChunk);
        For(chunks, (long)rowsPerChunk * cols * n, job);
    }

    private sealed class MatMulJob : ParallelJob
    {
        public WeightMatrix W;
        public nint X, Y, Bias;
        public int N, RowsPerChunk;

        public override void Run(int c)
        {
            int r0 = c * RowsPerChunk, r1 = Math.Min(W.Rows, r0 + RowsPerChunk);
            var panel = Scratch(Gemm.PanelFloats(W.Cols));
            fixed (float* pp = panel)
                Gemm.Rows(W, (float*)X, N, (float*)Y, (float*)Bias, r0, r1, pp);
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
        int half = rotaryDim / 2;
        for (int t = 0; t < n; t++)
        {
            float* c = cos + (long)t * half, s = sin + (long)t * half;
            for (int h = 0; h < heads; h++)
            {
                float* x1 = x + ((long)t * heads + h) * headDim, x2 = x1 + half;
                int i = 0;
                for (; i + Vector512<float>.Count <= half; i += Vector512<float>.Count)
                {
                    var a = Vector512.Load(x1 + i);
                    var b = Vector512.Load(x2 + i);
                    var cc = Vector512.Load(c + i);
                    var ss = Vector512.Load(s + i);
                    (a * cc - b * ss).Store(x1 + i);
                    (b * cc + a * ss).Store(x2 + i);
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
        int group = heads / kvHeads;
        float scale = 1f / MathF.Sqrt(headDim);
        var job = t_attention ??= new AttentionJob();
        (job.Q, job.K, job.V, job.Output, job.HeadStride) = ((nint)q, (nint)k, (nint)v, (nint)output, headStride);
        (job.StartPos, job.Heads, job.KvHeads, job.HeadDim, job.Window, job.Scale) = (startPos, heads, kvHeads, headDim, window ?? -1, scale);
        For(n * kvHeads, (long)(startPos + n) * headDim * 2 * group, job);
    }

    /// <summary>One (query token, kv head) of <see cref="Attention"/>.</summary>
    private sealed class AttentionJob : ParallelJob
    {
        public nint Q, K, V, Output;
        public long HeadStride;
        public int StartPos, Heads, KvHeads, HeadDim, Window;
        public float Scale;

        public override void Run(int item)
        {
            nint qp = Q, kp = K, vp = V, op = Output;
            long headStride = HeadStride;
            int startPos = StartPos, heads = Heads, kvHeads = KvHeads, headDim = HeadDim, group = heads / kvHeads;
            int? window = Window >= 0 ? Window : null;
            float scale = Scale;
            int t = item / kvHeads, g = item % kvHeads;
            int i = startPos + t;
            int j0 = window is { } w ? Math.Max(0, i - w + 1) : 0;
            var scratch = Scratch(group * (KeyTile + headDim + 2));
            fixed (float* sp = scratch)
            {
                float* scores = sp, acc = sp + group * KeyTile, m = acc + group * headDim, l = m + group;
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
        if ((n & 15) == 0)
        {
            var av = Vector512.Create(a);
            for (int i = 0; i < n; i += 16) Vector512.FusedMultiplyAdd(av, Vector512.Load(x + i), Vector512.Load(y + i)).Store(y + i);
            return;
        }
        var ys = new Span<float>(y, n);
        TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(x, n), a, ys, ys);
    }

    public void SwiGlu(float* gate, float* up, long count)
    {
        // silu(g)·u = g·sigmoid(g)·u, in chunks so the temporary stays in L1.
        const int chunk = 1024;
        var scratch = Scratch(chunk);
        for (long off = 0; off < count; off += chunk)
        {
            int len = (int)Math.Min(chunk, count - off);
            var g = new Span<float>(gate + off, len);
            var tmp = scratch.AsSpan(0, len);
            TensorPrimitives.Sigmoid(g, tmp);
            TensorPrimitives.Multiply(g, tmp, g);
            TensorPrimitives.Multiply(g, new ReadOnlySpan<float>(up + off, len), g);
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
