using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace PiServe.Inference.Gpu;

/// <summary>
/// How a stored element type is read (widened to f32 in registers) and written (rounded to nearest
/// even). Weights and KV caches live in device memory as raw 16-bit words: one word per bf16/f16
/// element, two (little-endian) per f32 element, so one buffer type serves every dtype and the
/// kernels are compiled once per element type (ILGPU specialises generic kernels on struct types).
/// </summary>
public interface IDeviceElement
{
    float Load(ArrayView<ushort> data, long index);
    void Store(ArrayView<ushort> data, long index, float value);
}

public struct F32Element : IDeviceElement
{
    public readonly float Load(ArrayView<ushort> data, long index) =>
        Interop.IntAsFloat((uint)data[2 * index] | ((uint)data[2 * index + 1] << 16));

    public readonly void Store(ArrayView<ushort> data, long index, float value)
    {
        uint bits = Interop.FloatAsInt(value);
        data[2 * index] = (ushort)bits;
        data[2 * index + 1] = (ushort)(bits >> 16);
    }
}

public struct Bf16Element : IDeviceElement
{
    public readonly float Load(ArrayView<ushort> data, long index) => Interop.IntAsFloat((uint)data[index] << 16);

    /// <summary>Round to nearest even, NaN kept quiet: as <see cref="Checkpoints.DTypes.ToBf16"/>.</summary>
    public readonly void Store(ArrayView<ushort> data, long index, float value)
    {
        uint u = Interop.FloatAsInt(value);
        data[index] = (u & 0x7FFFFFFF) > 0x7F800000
            ? (ushort)((u >> 16) | 0x40)
            : (ushort)((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
    }
}

public struct F16Element : IDeviceElement
{
    /// <summary>IEEE half → float, exactly (subnormals, infinities and NaNs included).</summary>
    public readonly float Load(ArrayView<ushort> data, long index)
    {
        uint h = data[index];
        uint sign = (h & 0x8000) << 16, exp = (h >> 10) & 0x1F, mant = h & 0x3FF;
        if (exp == 0)
        {
            float v = mant * 5.9604644775390625e-8f; // mant · 2^-24, exact
            return sign != 0 ? -v : v;
        }
        if (exp == 31) return Interop.IntAsFloat(sign | 0x7F800000 | (mant << 13));
        return Interop.IntAsFloat(sign | ((exp + 112) << 23) | (mant << 13));
    }

    /// <summary>float → IEEE half, round to nearest even (F. Giesen's float_to_half_fast3_rtne), as TensorPrimitives.ConvertToHalf.</summary>
    public readonly void Store(ArrayView<ushort> data, long index, float value)
    {
        uint u = Interop.FloatAsInt(value);
        uint sign = (u >> 16) & 0x8000, a = u & 0x7FFFFFFF;
        uint result;
        if (a >= 0x47800000) result = a > 0x7F800000 ? 0x7E00u : 0x7C00u; // NaN, or beyond the half range: infinity
        else if (a < 0x38800000)
        {
            // Subnormal half: let the float adder round (2^-24 is the ulp of 0.5f's binade).
            float f = Interop.IntAsFloat(a) + 0.5f;
            result = Interop.FloatAsInt(f) - 0x3F000000u;
        }
        else
        {
            uint odd = (a >> 13) & 1;
            a += 0xC8000FFFu; // ((15 - 127) << 23) + 0xFFF, modulo 2^32
            a += odd;
            result = a >> 13;
        }
        data[index] = (ushort)(sign | result);
    }
}

/// <summary>Shape of one matrix product: Y [N, Rows] = X [N, Cols] · W [Rows, Cols]ᵀ (+ bias).</summary>
public struct MatMulShape
{
    public int Rows, Cols, N, HasBias, TileK;
}

/// <summary>One segment's attention: Count queries at positions StartPos.. over its cache.</summary>
public struct AttentionShape
{
    public int Heads, KvHeads, HeadDim, StartPos, Window, Tile, Capacity, QueryRow;
    public long KeyBase, ValueBase;
    public float Scale;
}

/// <summary>
/// The device kernels of the forward pass. Every kernel is plain ILGPU C# (compiled to PTX for CUDA,
/// run by threads on ILGPU's CPU accelerator in CI); activations are f32, weights and caches are
/// read through <see cref="IDeviceElement"/> and widened in registers, accumulation is f32.
/// Grouped kernels take their group size from the launch (a power of two) and use dynamic shared memory.
/// </summary>
public static class IlgpuKernels
{
    /// <summary>x[t, c] = table[tokens[t], c], widened.</summary>
    public static void Embed<T>(Index1D i, ArrayView<ushort> table, ArrayView<int> tokens, ArrayView<float> x, int dim)
        where T : struct, IDeviceElement
    {
        int t = i / dim, c = i % dim;
        x[i] = default(T).Load(table, (long)tokens[t] * dim + c);
    }

    /// <summary>
    /// One group per row: y = x / sqrt(mean(x²) + eps) · w. Partial sums of squares per thread, then a
    /// tree reduction in shared memory. In place (y = x) is allowed: a thread writes only what it read.
    /// </summary>
    public static void RmsNorm(ArrayView<float> x, ArrayView<float> w, ArrayView<float> y, int dim, float eps)
    {
        var partial = SharedMemory.GetDynamic<float>();
        int row = Grid.IdxX, tid = Group.IdxX, g = Group.DimX;
        long off = (long)row * dim;
        float s = 0;
        for (int c = tid; c < dim; c += g) { float v = x[off + c]; s += v * v; }
        partial[tid] = s;
        Group.Barrier();
        for (int half = g / 2; half > 0; half /= 2)
        {
            if (tid < half) partial[tid] += partial[tid + half];
            Group.Barrier();
        }
        float scale = 1f / XMath.Sqrt(partial[0] / dim + eps);
        for (int c = tid; c < dim; c += g) y[off + c] = x[off + c] * scale * w[c];
    }

    /// <summary>
    /// Decode GEMV: one group per (output row, chunk of up to 4 tokens). Threads stride over the row's
    /// columns (coalesced reads of the weight row, each weight widened once and used for every token of
    /// the chunk), then the 4 partial sums are reduced through shared memory.
    /// </summary>
    public static void Gemv<T>(ArrayView<ushort> w, ArrayView<float> x, ArrayView<float> y, ArrayView<float> bias, MatMulShape s)
        where T : struct, IDeviceElement
    {
        var partial = SharedMemory.GetDynamic<float>();
        int r = Grid.IdxX, t0 = Grid.IdxY * 4, tid = Group.IdxX, g = Group.DimX;
        int tokens = XMath.Min(4, s.N - t0);
        int cols = s.Cols;
        long wRow = (long)r * cols;
        long x0 = (long)t0 * cols, x1 = x0 + cols, x2 = x1 + cols, x3 = x2 + cols;
        float a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        // The token count is uniform over the group: no divergence in the branches below.
        if (tokens == 1)
            for (int c = tid; c < cols; c += g) a0 += default(T).Load(w, wRow + c) * x[x0 + c];
        else if (tokens == 2)
            for (int c = tid; c < cols; c += g) { float wv = default(T).Load(w, wRow + c); a0 += wv * x[x0 + c]; a1 += wv * x[x1 + c]; }
        else if (tokens == 3)
            for (int c = tid; c < cols; c += g) { float wv = default(T).Load(w, wRow + c); a0 += wv * x[x0 + c]; a1 += wv * x[x1 + c]; a2 += wv * x[x2 + c]; }
        else
            for (int c = tid; c < cols; c += g)
            {
                float wv = default(T).Load(w, wRow + c);
                a0 += wv * x[x0 + c]; a1 += wv * x[x1 + c]; a2 += wv * x[x2 + c]; a3 += wv * x[x3 + c];
            }
        partial[tid] = a0; partial[g + tid] = a1; partial[2 * g + tid] = a2; partial[3 * g + tid] = a3;
        Group.Barrier();
        for (int half = g / 2; half > 0; half /= 2)
        {
            if (tid < half)
            {
                partial[tid] += partial[tid + half];
                partial[g + tid] += partial[g + tid + half];
                partial[2 * g + tid] += partial[2 * g + tid + half];
                partial[3 * g + tid] += partial[3 * g + tid + half];
            }
            Group.Barrier();
        }
        float b = s.HasBias != 0 ? bias[r] : 0f;
        for (int k = tid; k < tokens; k += g) // groups may be smaller than the chunk (2 threads on the CPU accelerator)
            y[(long)(t0 + k) * s.Rows + r] = partial[k * g] + b;
    }

    /// <summary>
    /// Prefill GEMM: one group of TX × TY threads (TX = Group.DimX, TY = Group.DimY) per tile of Y of TY
    /// tokens × TX rows. Per step of TK = s.TileK columns the matching tiles of X [TY, TK] and W [TX, TK]
    /// are staged in shared memory by all threads together (weights widened once on load, rows padded
    /// by one against bank conflicts), then each thread accumulates its output over them.
    /// </summary>
    public static void Gemm<T>(ArrayView<ushort> w, ArrayView<float> x, ArrayView<float> y, ArrayView<float> bias, MatMulShape s)
        where T : struct, IDeviceElement
    {
        var shared = SharedMemory.GetDynamic<float>();
        int tx = Group.IdxX, ty = Group.IdxY, tileX = Group.DimX, tileY = Group.DimY, tileK = s.TileK, stride = tileK + 1;
        int r0 = Grid.IdxX * tileX, t0 = Grid.IdxY * tileY;
        int cols = s.Cols;
        var xs = shared.SubView(0, tileY * stride);
        var ws = shared.SubView(tileY * stride, tileX * stride);
        int tLoad = t0 + ty;
        float acc = 0;
        for (int k0 = 0; k0 < cols; k0 += tileK)
        {
            for (int kk = tx; kk < tileK; kk += tileX)
            {
                int k = k0 + kk;
                xs[ty * stride + kk] = tLoad < s.N && k < cols ? x[(long)tLoad * cols + k] : 0f;
                for (int rr = ty; rr < tileX; rr += tileY)
                {
                    int rLoad = r0 + rr;
                    ws[rr * stride + kk] = rLoad < s.Rows && k < cols ? default(T).Load(w, (long)rLoad * cols + k) : 0f;
                }
            }
            Group.Barrier();
            for (int kk = 0; kk < tileK; kk++) acc += xs[ty * stride + kk] * ws[tx * stride + kk];
            Group.Barrier();
        }
        int t = t0 + ty, r = r0 + tx;
        if (t < s.N && r < s.Rows) y[(long)t * s.Rows + r] = acc + (s.HasBias != 0 ? bias[r] : 0f);
    }

    /// <summary>HF rotate_half on the first rotaryDim dims of each head: x1' = x1·cos − x2·sin, x2' = x2·cos + x1·sin.</summary>
    public static void Rope(Index1D i, ArrayView<float> x, ArrayView<float> cos, ArrayView<float> sin, int heads, int headDim, int half)
    {
        int t = i / (heads * half), rem = i % (heads * half);
        int h = rem / half, j = rem % half;
        long b = ((long)t * heads + h) * headDim;
        float a = x[b + j], c = x[b + half + j];
        float co = cos[(long)t * half + j], si = sin[(long)t * half + j];
        x[b + j] = a * co - c * si;
        x[b + half + j] = c * co + a * si;
    }

    /// <summary>
    /// Appends count rows of keys and values (rows row0.. of k and v, [rows, kvHeads·headDim]) to a
    /// head-major cache at positions startPos..: element (g, p, d) at base + (g·capacity + p)·headDim + d.
    /// </summary>
    public static void WriteKv<T>(Index1D i, ArrayView<float> k, ArrayView<float> v, ArrayView<ushort> cache,
        long keyBase, long valueBase, int row0, int startPos, int kvDim, int headDim, int capacity)
        where T : struct, IDeviceElement
    {
        int t = i / kvDim, c = i % kvDim;
        int g = c / headDim, d = c % headDim;
        long src = (long)(row0 + t) * kvDim + c;
        long dst = ((long)g * capacity + startPos + t) * headDim + d;
        default(T).Store(cache, keyBase + dst, k[src]);
        default(T).Store(cache, valueBase + dst, v[src]);
    }

    /// <summary>
    /// Causal attention, flash style: one group per (query, head). Keys and values are streamed tile by
    /// tile through shared memory (widened once per tile); the softmax is accumulated online (running
    /// max m and sum l, the partial output rescaled by exp(m_old − m_new)), so memory is
    /// O(tile · headDim) per group and no n×n score matrix exists. GQA/MQA: query head h reads kv head
    /// h / (heads / kvHeads). Sliding window W: query i sees keys j with i − j &lt; W.
    /// </summary>
    public static void Attention<T>(ArrayView<float> q, ArrayView<ushort> cache, ArrayView<float> output, AttentionShape s)
        where T : struct, IDeviceElement
    {
        var shared = SharedMemory.GetDynamic<float>();
        int hd = s.HeadDim, tile = s.Tile;
        var qs = shared.SubView(0, hd);
        var kt = shared.SubView(hd, tile * hd);
        var vt = shared.SubView(hd + tile * hd, tile * hd);
        var p = shared.SubView(hd + 2 * tile * hd, tile);
        var acc = shared.SubView(hd + 2 * tile * hd + tile, hd);

        int t = Grid.IdxX, h = Grid.IdxY, tid = Group.IdxX, g = Group.DimX;
        int i = s.StartPos + t;
        int j0 = s.Window >= 0 ? XMath.Max(0, i - s.Window + 1) : 0;
        int kvHead = h / (s.Heads / s.KvHeads);
        long qOff = ((long)(s.QueryRow + t) * s.Heads + h) * hd;
        long head = (long)kvHead * s.Capacity * hd;
        for (int d = tid; d < hd; d += g) { qs[d] = q[qOff + d]; acc[d] = 0; }
        Group.Barrier();

        float m = float.NegativeInfinity, l = 0;
        for (int js = j0; js <= i; js += tile)
        {
            int count = XMath.Min(tile, i - js + 1);
            long rows = head + (long)js * hd;
            for (int e = tid; e < count * hd; e += g)
            {
                kt[e] = default(T).Load(cache, s.KeyBase + rows + e);
                vt[e] = default(T).Load(cache, s.ValueBase + rows + e);
            }
            Group.Barrier();
            for (int j = tid; j < count; j += g)
            {
                float dot = 0;
                for (int d = 0; d < hd; d++) dot += qs[d] * kt[j * hd + d];
                p[j] = dot * s.Scale;
            }
            Group.Barrier();
            float mNew = m;
            for (int j = 0; j < count; j++) mNew = XMath.Max(mNew, p[j]);
            float correction = m == float.NegativeInfinity ? 0f : XMath.Exp(m - mNew);
            Group.Barrier(); // every thread has read the scores before they become probabilities
            for (int j = tid; j < count; j += g) p[j] = XMath.Exp(p[j] - mNew);
            Group.Barrier();
            float sum = 0;
            for (int j = 0; j < count; j++) sum += p[j];
            l = l * correction + sum;
            m = mNew;
            for (int d = tid; d < hd; d += g)
            {
                float a = acc[d] * correction;
                for (int j = 0; j < count; j++) a += p[j] * vt[j * hd + d];
                acc[d] = a;
            }
            Group.Barrier(); // the next tile overwrites kt, vt and p
        }
        for (int d = tid; d < hd; d += g) output[qOff + d] = acc[d] / l;
    }

    /// <summary>gate = silu(gate) · up.</summary>
    public static void SwiGlu(Index1D i, ArrayView<float> gate, ArrayView<float> up)
    {
        float x = gate[i];
        float sig = 1f / (1f + XMath.Exp(-x));
        gate[i] = x * sig * up[i];
    }

    /// <summary>x += y.</summary>
    public static void Add(Index1D i, ArrayView<float> x, ArrayView<float> y) => x[i] += y[i];
}
