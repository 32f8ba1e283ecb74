using System.Numerics.Tensors;
using System.Runtime.Intrinsics;

namespace PiServe.Inference.Kernels;

/// <summary>
/// SIMD CPU kernels: rows split over threads with Parallel.For, vector math via TensorPrimitives
/// (Vector512 on this machine). Small problems run on the calling thread, where fork/join would
/// cost more than the work.
/// </summary>
public sealed unsafe class CpuBackend(int threads = 0) : IComputeBackend
{
    private const long SequentialWork = 1 << 16;
    private readonly ParallelOptions _parallel = new() { MaxDegreeOfParallelism = threads > 0 ? threads : Environment.ProcessorCount };

    public string Name => "cpu";
    public int Threads => _parallel.MaxDegreeOfParallelism;

    [ThreadStatic] private static float[]? t_scratch;

    private static float[] Scratch(int length)
    {
        var s = t_scratch;
        if (s is null || s.Length < length) t_scratch = s = new float[Math.Max(length, 4096)];
        return s;
    }

    private void For(int count, long workPerItem, Action<int> body)
    {
        if (count == 1 || count * workPerItem < SequentialWork)
            for (int i = 0; i < count; i++) body(i);
        else
            Parallel.For(0, count, _parallel, body);
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
        For(chunks, (long)rowsPerChunk * cols * n, c =>
        {
            int r0 = c * rowsPerChunk, r1 = Math.Min(rows, r0 + rowsPerChunk);
            var panel = Scratch(Gemm.PanelFloats(cols));
            fixed (float* pp = panel)
                Gemm.Rows(w, (float*)xp, n, (float*)yp, (float*)bp, r0, r1, pp);
        });
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

    public void Attention(float* q, float* k, float* v, float* output, int n, int startPos, int heads, int kvHeads, int headDim, int? window)
    {
        int group = heads / kvHeads;
        int kvDim = kvHeads * headDim;
        float scale = 1f / MathF.Sqrt(headDim);
        nint qp = (nint)q, kp = (nint)k, vp = (nint)v, op = (nint)output;
        For(n * heads, (long)(startPos + n) * headDim * 2, item =>
        {
            int t = item / heads, h = item % heads, g = h / group;
            int i = startPos + t;
            int j0 = window is { } w ? Math.Max(0, i - w + 1) : 0;
            int count = i - j0 + 1;
            float* qv = (float*)qp + ((long)t * heads + h) * headDim;
            float* ks = (float*)kp + g * headDim, vs = (float*)vp + g * headDim;
            float* o = (float*)op + ((long)t * heads + h) * headDim;
            var qSpan = new ReadOnlySpan<float>(qv, headDim);
            var scores = Scratch(count);
            for (int j = 0; j < count; j++)
                scores[j] = TensorPrimitives.Dot(qSpan, new ReadOnlySpan<float>(ks + (long)(j0 + j) * kvDim, headDim)) * scale;
            var sc = scores.AsSpan(0, count);
            TensorPrimitives.SoftMax(sc, sc);
            var outSpan = new Span<float>(o, headDim);
            outSpan.Clear();
            for (int j = 0; j < count; j++)
                TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(vs + (long)(j0 + j) * kvDim, headDim), sc[j], outSpan, outSpan);
        });
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
