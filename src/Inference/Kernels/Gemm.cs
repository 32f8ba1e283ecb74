using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using PiServe.Inference.Checkpoints;

namespace PiServe.Inference.Kernels;

/// <summary>
/// y[t, r] = Σ_k W[r, k]·x[t, k] over weights in their stored dtype.
/// Decode (one token) is memory-bound: <see cref="Gemv"/> streams each weight row once, widening
/// bf16/f16 in registers, eight rows at a time sharing every load of x. Prefill is compute-bound:
/// <see cref="GemmTile"/> widens four rows once per 64-token tile into a small f32 panel and runs a
/// register micro-kernel over it (4 rows × 4 tokens with 32 registers of AVX-512, 4 × 2 with the 16
/// of AVX2), so each weight byte is read from memory once per tile and each x vector feeds four FMAs.
/// Every kernel is generic over the vector width (<see cref="ISimd{V}"/>) and the stored dtype
/// (<see cref="IRowLoader"/>), dispatched once per call.
///
/// bf16/f16 rows are read in the pair layout: one 32-bit lane of a load holds two adjacent weights,
/// split by parity into an even and an odd vector with a shift and a mask (see
/// <see cref="ISimd{V}.LoadBf16Pairs"/>) instead of a widening shuffle per vector. x is permuted to
/// match once per call (each block of 2·Lanes floats becomes its even elements, then its odd ones;
/// a tail shorter than a block stays in place), and prefill panels are widened into the same layout,
/// so for one width the GEMV and the micro-kernel accumulate each output in the same order (lane by
/// lane, then one horizontal sum): a token gets bit-identical results decoded alone or in a batch.
/// </summary>
public static unsafe class Gemm
{
    /// <summary>Tokens per tile: 64 tokens of x (64 × K floats) stay in L2 while all rows pass.</summary>
    public const int TokenTile = 64;
    /// <summary>
    /// The last tile takes up to this many tokens rather than leave a short remainder for a tile of its
    /// own: each tile streams every weight from memory, and a scheduler step of a 64-token prompt chunk
    /// and 8–16 decoding streams would otherwise read all the weights twice.
    /// </summary>
    public const int MaxTokenTile = TokenTile + TokenTile / 4;
    /// <summary>
    /// Up to this many tokens (a default decode batch) finite f16 rows are converted in registers rather
    /// than split into a panel of halves first (bench --batch 16, 134M f16: 426–428 against 357–366
    /// tok/s with 10, measured against the f32 panel the halves replaced).
    /// </summary>
    public const int F16RowsMaxTokens = 16;

    /// <summary>
    /// Rows [r0, r1) of y for n tokens, at the hardware's best vector width, with the native exact
    /// micro-kernel when it is loaded (bit-identical to the managed one, see <see cref="NativeKernels"/>).
    /// </summary>
    public static void Rows(WeightMatrix w, float* x, int n, float* y, float* bias, int r0, int r1, float* panel) =>
        Rows(Simd.Best, w, x, n, y, bias, r0, r1, panel, NativeKernels.HasMicroFor(Simd.Best));

    /// <summary>
    /// Rows [r0, r1) of y for n tokens at a given vector width (tests run every width on any CPU).
    /// <paramref name="panel"/> is the calling thread's scratch of <see cref="PanelFloats"/> floats.
    /// <paramref name="native"/>: run the micro-kernel natively (width 512 or 256; needs <see cref="NativeKernels.HasMicroFor"/>).
    /// </summary>
    public static void Rows(SimdWidth width, WeightMatrix w, float* x, int n, float* y, float* bias, int r0, int r1, float* panel, bool native = false)
    {
        if (native && !NativeKernels.HasMicroFor(width))
            throw new InvalidOperationException($"no native micro-kernel for width {(int)width}: {NativeKernels.Status}");
        switch (width)
        {
            case SimdWidth.V512: Rows<Simd512, Vector512<float>>(w, x, n, y, bias, r0, r1, panel, native); break;
            case SimdWidth.V256: Rows<Simd256, Vector256<float>>(w, x, n, y, bias, r0, r1, panel, native); break;
            default: Rows<Simd128, Vector128<float>>(w, x, n, y, bias, r0, r1, panel, false); break;
        }
    }

    /// <summary>Floats of scratch a thread needs for <see cref="Rows(WeightMatrix, float*, int, float*, float*, int, int, float*)"/>: four widened rows and a tile of permuted x.</summary>
    public static int PanelFloats(int cols) => (4 + MaxTokenTile) * cols;

    private static void Rows<S, V>(WeightMatrix w, float* x, int n, float* y, float* bias, int r0, int r1, float* panel, bool native)
        where S : struct, ISimd<V> where V : struct
    {
        int k = w.Cols;
        bool paired = w.DType != DType.F32;
        float* xPairs = panel + 4L * k;
        if (n < 4)
        {
            for (int t = 0; t < n; t++)
            {
                float* xt = x + (long)t * k;
                if (paired) { ToPairLayout(xt, xPairs, k, S.Lanes); xt = xPairs; }
                Gemv<S, V>(w, xt, y + (long)t * w.Rows, 1, bias, r0, r1);
            }
            return;
        }
        for (int t0 = 0, tn; t0 < n; t0 += tn)
        {
            tn = n - t0 <= MaxTokenTile ? n - t0 : TokenTile;
            float* xt = x + (long)t0 * k;
            if (paired)
            {
                for (int t = 0; t < tn; t++) ToPairLayout(xt + (long)t * k, xPairs + (long)t * k, k, S.Lanes);
                xt = xPairs;
            }
            GemmTile<S, V>(w, xt, tn, t0, y, bias, r0, r1, panel, native);
        }
    }

    /// <summary>
    /// x → pair layout: each whole block of 2·lanes floats becomes its even elements then its odd
    /// ones (the order <see cref="ISimd{V}.LoadBf16Pairs"/> yields weights in); the tail is copied.
    /// </summary>
    public static void ToPairLayout(float* src, float* dst, int k, int lanes)
    {
        int block = 2 * lanes, i = 0;
        if (lanes == 16 && Avx512F.IsSupported)
        {
            // Two permutes per block instead of 32 scalar moves (prefill permutes every token tile).
            var even = Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
            var odd = Vector512.Create(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
            for (; i + block <= k; i += block)
            {
                var a = Vector512.Load(src + i);
                var b = Vector512.Load(src + i + 16);
                Avx512F.PermuteVar16x32x2(a, even, b).Store(dst + i);
                Avx512F.PermuteVar16x32x2(a, odd, b).Store(dst + i + 16);
            }
        }
        else if (lanes == 8 && Avx2.IsSupported)
        {
            // Each vector's evens to its lower half and odds to its upper half, then the halves
            // regrouped: 4 shuffles per block instead of 16 scalar moves (2.5% of an AVX2 f16 pp512
            // profile ran the scalar loop).
            var parity = Vector256.Create(0, 2, 4, 6, 1, 3, 5, 7);
            for (; i + block <= k; i += block)
            {
                var a = Avx2.PermuteVar8x32(Vector256.Load(src + i), parity);
                var b = Avx2.PermuteVar8x32(Vector256.Load(src + i + 8), parity);
                Avx.Permute2x128(a, b, 0x20).Store(dst + i);
                Avx.Permute2x128(a, b, 0x31).Store(dst + i + 8);
            }
        }
        for (; i + block <= k; i += block)
            for (int j = 0; j < lanes; j++)
            {
                dst[i + j] = src[i + 2 * j];
                dst[i + lanes + j] = src[i + 2 * j + 1];
            }
        for (; i < k; i++) dst[i] = src[i];
    }

    /// <summary>The inverse of <see cref="ToPairLayout"/>.</summary>
    public static void FromPairLayout(float* src, float* dst, int k, int lanes)
    {
        int block = 2 * lanes, i = 0;
        for (; i + block <= k; i += block)
            for (int j = 0; j < lanes; j++)
            {
                dst[i + 2 * j] = src[i + j];
                dst[i + 2 * j + 1] = src[i + lanes + j];
            }
        for (; i < k; i++) dst[i] = src[i];
    }

    /// <summary>One token: y[r·stride] for rows [r0, r1), x in the pair layout for bf16/f16. Dispatches once on the dtype.</summary>
    private static void Gemv<S, V>(WeightMatrix w, float* x, float* y, int yStride, float* bias, int r0, int r1)
        where S : struct, ISimd<V> where V : struct
    {
        switch (w.DType)
        {
            case DType.BF16: Gemv<Bf16Rows, S, V>(w, x, y, yStride, bias, r0, r1); break;
            case DType.F16 when w.Finite: Gemv<FiniteF16Rows, S, V>(w, x, y, yStride, bias, r0, r1); break;
            case DType.F16: Gemv<F16Rows, S, V>(w, x, y, yStride, bias, r0, r1); break;
            default: Gemv<F32Rows, S, V>(w, x, y, yStride, bias, r0, r1); break;
        }
    }

    private static void Gemv<T, S, V>(WeightMatrix w, float* x, float* y, int yStride, float* bias, int r0, int r1)
        where T : struct, IRowLoader where S : struct, ISimd<V> where V : struct
    {
        int k = w.Cols;
        int r = r0;
        for (; r + 8 <= r1; r += 8)
        {
            Dot8<T, S, V>(w, r, x, k, out var a0, out var a1, out var a2, out var a3, out var a4, out var a5, out var a6, out var a7);
            y[(long)(r + 0) * yStride] = a0 + (bias == null ? 0 : bias[r + 0]);
            y[(long)(r + 1) * yStride] = a1 + (bias == null ? 0 : bias[r + 1]);
            y[(long)(r + 2) * yStride] = a2 + (bias == null ? 0 : bias[r + 2]);
            y[(long)(r + 3) * yStride] = a3 + (bias == null ? 0 : bias[r + 3]);
            y[(long)(r + 4) * yStride] = a4 + (bias == null ? 0 : bias[r + 4]);
            y[(long)(r + 5) * yStride] = a5 + (bias == null ? 0 : bias[r + 5]);
            y[(long)(r + 6) * yStride] = a6 + (bias == null ? 0 : bias[r + 6]);
            y[(long)(r + 7) * yStride] = a7 + (bias == null ? 0 : bias[r + 7]);
        }
        for (; r < r1; r++)
            y[(long)r * yStride] = Dot1<T, S, V>(w.Row(r), x, k) + (bias == null ? 0 : bias[r]);
    }

    /// <summary>
    /// One step of a row's dot product at element i: a block of 2·Lanes weights in the pair layout
    /// (xe, xo: the even and odd halves of x's block), or Lanes f32 weights (xe only).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static V Step<T, S, V>(byte* row, int i, V xe, V xo, V acc)
        where T : struct, IRowLoader where S : struct, ISimd<V> where V : struct
    {
        if (!T.Paired) return S.Fma(T.Load<S, V>(row, i), xe, acc);
        T.LoadPairs<S, V>(row, i, out var even, out var odd);
        return S.Fma(odd, xo, S.Fma(even, xe, acc));
    }

    private static void Dot8<T, S, V>(WeightMatrix w, int r, float* x, int k,
        out float a0, out float a1, out float a2, out float a3, out float a4, out float a5, out float a6, out float a7)
        where T : struct, IRowLoader where S : struct, ISimd<V> where V : struct
    {
        var s0 = S.Zero; var s1 = s0; var s2 = s0; var s3 = s0; var s4 = s0; var s5 = s0; var s6 = s0; var s7 = s0;
        int lanes = S.Lanes, step = T.Paired ? 2 * lanes : lanes, lineElems = 64 / T.Size, i = 0;
        long rowBytes = (long)k * T.Size;
        byte* p0 = w.Row(r), p1 = p0 + rowBytes, p2 = p1 + rowBytes, p3 = p2 + rowBytes, p4 = p3 + rowBytes, p5 = p4 + rowBytes, p6 = p5 + rowBytes, p7 = p6 + rowBytes;
        // Eight short row streams at once are more than the hardware prefetcher follows from DRAM:
        // ask for the next group of eight rows, a cache line of each per line consumed here.
        byte* next = p0 + 8 * rowBytes;
        for (; i + lineElems <= k; i += lineElems)
        {
            if (Sse.IsSupported)
            {
                long off = (long)i * T.Size;
                Sse.Prefetch1(next + off); Sse.Prefetch1(next + rowBytes + off);
                Sse.Prefetch1(next + 2 * rowBytes + off); Sse.Prefetch1(next + 3 * rowBytes + off);
                Sse.Prefetch1(next + 4 * rowBytes + off); Sse.Prefetch1(next + 5 * rowBytes + off);
                Sse.Prefetch1(next + 6 * rowBytes + off); Sse.Prefetch1(next + 7 * rowBytes + off);
            }
            for (int j = i; j < i + lineElems; j += step)
            {
                var xe = S.Load(x + j);
                var xo = T.Paired ? S.Load(x + j + lanes) : xe;
                s0 = Step<T, S, V>(p0, j, xe, xo, s0); s1 = Step<T, S, V>(p1, j, xe, xo, s1);
                s2 = Step<T, S, V>(p2, j, xe, xo, s2); s3 = Step<T, S, V>(p3, j, xe, xo, s3);
                s4 = Step<T, S, V>(p4, j, xe, xo, s4); s5 = Step<T, S, V>(p5, j, xe, xo, s5);
                s6 = Step<T, S, V>(p6, j, xe, xo, s6); s7 = Step<T, S, V>(p7, j, xe, xo, s7);
            }
        }
        i = Steps8<T, S, V>(p0, rowBytes, x, i, k, ref s0, ref s1, ref s2, ref s3, ref s4, ref s5, ref s6, ref s7);
        var lo = S.Sum4(s0, s1, s2, s3);
        var hi = S.Sum4(s4, s5, s6, s7);
        a0 = lo.GetElement(0); a1 = lo.GetElement(1); a2 = lo.GetElement(2); a3 = lo.GetElement(3);
        a4 = hi.GetElement(0); a5 = hi.GetElement(1); a6 = hi.GetElement(2); a7 = hi.GetElement(3);
        for (; i < k; i++)
        {
            float xi = x[i];
            a0 += T.Scalar(p0, i) * xi; a1 += T.Scalar(p1, i) * xi; a2 += T.Scalar(p2, i) * xi; a3 += T.Scalar(p3, i) * xi;
            a4 += T.Scalar(p4, i) * xi; a5 += T.Scalar(p5, i) * xi; a6 += T.Scalar(p6, i) * xi; a7 += T.Scalar(p7, i) * xi;
        }
    }

    /// <summary>
    /// The vector part of eight consecutive rows' dot products with x from element <paramref name="i"/>
    /// on (rows <paramref name="rowBytes"/> apart from p0): whole blocks, then a pair layout's tail of
    /// one vector, accumulated lane-wise into s0…s7. Returns the first element the vectors did not
    /// cover (the scalar tail, added after the horizontal sums). Shared by the GEMV and the attention
    /// scores, whose sums must be formed in the same order.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static int Steps8<T, S, V>(byte* p0, long rowBytes, float* x, int i, int k,
        ref V s0, ref V s1, ref V s2, ref V s3, ref V s4, ref V s5, ref V s6, ref V s7)
        where T : struct, IRowLoader where S : struct, ISimd<V> where V : struct
    {
        byte* p1 = p0 + rowBytes, p2 = p1 + rowBytes, p3 = p2 + rowBytes, p4 = p3 + rowBytes, p5 = p4 + rowBytes, p6 = p5 + rowBytes, p7 = p6 + rowBytes;
        int lanes = S.Lanes, step = T.Paired ? 2 * lanes : lanes;
        for (; i + step <= k; i += step)
        {
            var xe = S.Load(x + i);
            var xo = T.Paired ? S.Load(x + i + lanes) : xe;
            s0 = Step<T, S, V>(p0, i, xe, xo, s0); s1 = Step<T, S, V>(p1, i, xe, xo, s1);
            s2 = Step<T, S, V>(p2, i, xe, xo, s2); s3 = Step<T, S, V>(p3, i, xe, xo, s3);
            s4 = Step<T, S, V>(p4, i, xe, xo, s4); s5 = Step<T, S, V>(p5, i, xe, xo, s5);
            s6 = Step<T, S, V>(p6, i, xe, xo, s6); s7 = Step<T, S, V>(p7, i, xe, xo, s7);
        }
        if (T.Paired && i + lanes <= k)
        {
            // Tail shorter than a pair block: x is in place there, widen one vector the plain way.
            var xv = S.Load(x + i);
            s0 = S.Fma(T.Load<S, V>(p0, i), xv, s0); s1 = S.Fma(T.Load<S, V>(p1, i), xv, s1);
            s2 = S.Fma(T.Load<S, V>(p2, i), xv, s2); s3 = S.Fma(T.Load<S, V>(p3, i), xv, s3);
            s4 = S.Fma(T.Load<S, V>(p4, i), xv, s4); s5 = S.Fma(T.Load<S, V>(p5, i), xv, s5);
            s6 = S.Fma(T.Load<S, V>(p6, i), xv, s6); s7 = S.Fma(T.Load<S, V>(p7, i), xv, s7);
            i += lanes;
        }
        return i;
    }

    /// <summary>One row, in the same per-lane order as <see cref="Dot8"/>.</summary>
    internal static float Dot1<T, S, V>(byte* p, float* x, int k)
        where T : struct, IRowLoader where S : struct, ISimd<V> where V : struct
    {
        var s = S.Zero;
        int lanes = S.Lanes, step = T.Paired ? 2 * lanes : lanes, i = 0;
        for (; i + step <= k; i += step)
            s = Step<T, S, V>(p, i, S.Load(x + i), T.Paired ? S.Load(x + i + lanes) : default, s);
        if (T.Paired && i + lanes <= k) { s = S.Fma(T.Load<S, V>(p, i), S.Load(x + i), s); i += lanes; }
        float a = S.Sum(s);
        for (; i < k; i++) a += T.Scalar(p, i) * x[i];
        return a;
    }

    /// <summary>Row r widened to f32 in the pair layout (bf16/f16) or as stored (f32).</summary>
    private static void WidenRow<S, V>(WeightMatrix w, int r, float* dst) where S : struct, ISimd<V> where V : struct
    {
        switch (w.DType)
        {
            case DType.BF16: WidenPairs<Bf16Rows, S, V>(w.Row(r), dst, w.Cols); break;
            case DType.F16 when w.Finite: WidenPairs<FiniteF16Rows, S, V>(w.Row(r), dst, w.Cols); break;
            case DType.F16: WidenPairs<F16Rows, S, V>(w.Row(r), dst, w.Cols); break;
            default: Buffer.MemoryCopy(w.Row(r), dst, (long)w.Cols * 4, (long)w.Cols * 4); break;
        }
    }

    /// <summary>A stored row widened to f32 in the pair layout (whole blocks of 2·Lanes split by parity, the tail in place).</summary>
    internal static void WidenPairs<T, S, V>(byte* row, float* dst, int k)
        where T : struct, IRowLoader where S : struct, ISimd<V> where V : struct
    {
        int lanes = S.Lanes, i = 0;
        long nextPanel = 4L * k * T.Size;
        for (; i + 2 * lanes <= k; i += 2 * lanes)
        {
            // The same row of the caller's next panel (four rows on) into L2, as the native kernels do:
            // a decode batch streams each row from memory once.
            if (Sse.IsSupported) Sse.Prefetch1(row + nextPanel + (long)i * T.Size);
            T.LoadPairs<S, V>(row, i, out var even, out var odd);
            S.Store(even, dst + i);
            S.Store(odd, dst + i + lanes);
        }
        for (; i < k; i++) dst[i] = T.Scalar(row, i);
    }

    /// <summary>
    /// Tokens [t0, t0 + tn) × rows [r0, r1): rows in blocks of four widened into the panel once,
    /// tokens in blocks of four (AVX-512) or two through the micro-kernel. x is the tile's tokens,
    /// in the pair layout when the weights are bf16/f16.
    /// </summary>
    private static void GemmTile<S, V>(WeightMatrix w, float* x, int tn, int t0, float* y, float* bias, int r0, int r1, float* panel, bool native)
        where S : struct, ISimd<V> where V : struct
    {
        int k = w.Cols, rows = w.Rows;
        if (native)
        {
            // The same per-output arithmetic in native code, 4 rows × 6 (AVX-512) or 3 (AVX2) tokens per register tile.
            bool wide = S.Lanes == 16;
            int rn = r0;
            for (; rn + 4 <= r1; rn += 4)
            {
                float* yt = y + (long)t0 * rows + rn, bt = bias == null ? null : bias + rn;
                if (wide && w.DType == DType.BF16)
                {
                    // bf16 rows split in registers as the panel would hold them: no panel pass.
                    NativeKernels.Micro4Bf16Rows((ushort*)w.Row(rn), k, x, tn, yt, rows, bt);
                    continue;
                }
                if (wide && w.DType == DType.F16 && w.Finite)
                {
                    // A decode batch: f16 rows converted in registers (each streamed from memory once,
                    // overlapped with the FMAs). More tokens split each row once into a panel of halves,
                    // converted as they are loaded (half the bytes of a widened panel).
                    if (tn <= F16RowsMaxTokens) NativeKernels.Micro4F16Rows((ushort*)w.Row(rn), k, x, tn, yt, rows, bt);
                    else NativeKernels.Micro4F16HalfPanel((ushort*)w.Row(rn), k, (ushort*)panel, x, tn, yt, rows, bt);
                    continue;
                }
                if (w.DType == DType.F16 && w.Finite)
                {
                    // Width 256: finite f16 through a panel of halves, converted with F16C as they are loaded.
                    NativeKernels.Micro4F16HalfPanelAvx2((ushort*)w.Row(rn), k, (ushort*)panel, x, tn, yt, rows, bt);
                    continue;
                }
                // bf16, f32, and f16 with infinities or NaN (the managed conversion keeps their bits).
                for (int j = 0; j < 4; j++) WidenRow<S, V>(w, rn + j, panel + (long)j * k);
                if (wide) NativeKernels.Micro4F32(panel, k, x, tn, yt, rows, bt);
                else NativeKernels.Micro4F32Avx2(panel, k, x, tn, yt, rows, bt);
            }
            r0 = rn; // rows that do not fill a panel of four: the managed loop below
            if (r0 >= r1) return;
        }
        // 4 × 4 needs 16 accumulators + 5 operands: only AVX-512's 32 registers hold them without spilling.
        int microTokens = S.Lanes == 16 ? 4 : 2;
        int r = r0;
        for (; r + 4 <= r1; r += 4)
        {
            for (int j = 0; j < 4; j++) WidenRow<S, V>(w, r + j, panel + (long)j * k);
            int t = 0;
            for (; t + microTokens <= tn; t += microTokens)
            {
                float* yt = y + (long)(t0 + t) * rows + r;
                float* bt = bias == null ? null : bias + r;
                if (microTokens == 4) Micro4x4<S, V>(panel, k, x + (long)t * k, yt, rows, bt);
                else Micro4x2<S, V>(panel, k, x + (long)t * k, yt, rows, bt);
            }
            for (; t < tn; t++)
                for (int j = 0; j < 4; j++)
                    y[(long)(t0 + t) * rows + r + j] = DotF32<S, V>(panel + (long)j * k, x + (long)t * k, k) + (bias == null ? 0 : bias[r + j]);
        }
        for (; r < r1; r++)
        {
            WidenRow<S, V>(w, r, panel);
            for (int t = 0; t < tn; t++)
                y[(long)(t0 + t) * rows + r] = DotF32<S, V>(panel, x + (long)t * k, k) + (bias == null ? 0 : bias[r]);
        }
    }
    /// <summary>4 rows (panel) × 4 tokens: 16 independent accumulators, each x and w vector used four times.</summary>
    private static void Micro4x4<S, V>(float* w, int k, float* x, float* y, int yStride, float* bias)
        where S : struct, ISimd<V> where V : struct
    {
        float* w0 = w, w1 = w + k, w2 = w + 2L * k, w3 = w + 3L * k;
        float* x0 = x, x1 = x + k, x2 = x + 2L * k, x3 = x + 3L * k;
        var c00 = S.Zero; var c01 = c00; var c02 = c00; var c03 = c00;
        var c10 = c00; var c11 = c00; var c12 = c00; var c13 = c00;
        var c20 = c00; var c21 = c00; var c22 = c00; var c23 = c00;
        var c30 = c00; var c31 = c00; var c32 = c00; var c33 = c00;
        int i = 0, lanes = S.Lanes;
        for (; i + lanes <= k; i += lanes)
        {
            var a0 = S.Load(w0 + i); var a1 = S.Load(w1 + i); var a2 = S.Load(w2 + i); var a3 = S.Load(w3 + i);
            var b = S.Load(x0 + i);
            c00 = S.Fma(a0, b, c00); c10 = S.Fma(a1, b, c10); c20 = S.Fma(a2, b, c20); c30 = S.Fma(a3, b, c30);
            b = S.Load(x1 + i);
            c01 = S.Fma(a0, b, c01); c11 = S.Fma(a1, b, c11); c21 = S.Fma(a2, b, c21); c31 = S.Fma(a3, b, c31);
            b = S.Load(x2 + i);
            c02 = S.Fma(a0, b, c02); c12 = S.Fma(a1, b, c12); c22 = S.Fma(a2, b, c22); c32 = S.Fma(a3, b, c32);
            b = S.Load(x3 + i);
            c03 = S.Fma(a0, b, c03); c13 = S.Fma(a1, b, c13); c23 = S.Fma(a2, b, c23); c33 = S.Fma(a3, b, c33);
        }
        Span<float> s = stackalloc float[16];
        s[0] = S.Sum(c00); s[1] = S.Sum(c10); s[2] = S.Sum(c20); s[3] = S.Sum(c30);
        s[4] = S.Sum(c01); s[5] = S.Sum(c11); s[6] = S.Sum(c21); s[7] = S.Sum(c31);
        s[8] = S.Sum(c02); s[9] = S.Sum(c12); s[10] = S.Sum(c22); s[11] = S.Sum(c32);
        s[12] = S.Sum(c03); s[13] = S.Sum(c13); s[14] = S.Sum(c23); s[15] = S.Sum(c33);
        for (; i < k; i++)
        {
            float a0 = w0[i], a1 = w1[i], a2 = w2[i], a3 = w3[i];
            float b0 = x0[i], b1 = x1[i], b2 = x2[i], b3 = x3[i];
            s[0] += a0 * b0; s[1] += a1 * b0; s[2] += a2 * b0; s[3] += a3 * b0;
            s[4] += a0 * b1; s[5] += a1 * b1; s[6] += a2 * b1; s[7] += a3 * b1;
            s[8] += a0 * b2; s[9] += a1 * b2; s[10] += a2 * b2; s[11] += a3 * b2;
            s[12] += a0 * b3; s[13] += a1 * b3; s[14] += a2 * b3; s[15] += a3 * b3;
        }
        for (int t = 0; t < 4; t++)
            for (int j = 0; j < 4; j++)
                y[(long)t * yStride + j] = s[t * 4 + j] + (bias == null ? 0 : bias[j]);
    }

    /// <summary>4 rows (panel) × 2 tokens: 8 accumulators + 5 operands fit AVX2's 16 registers.</summary>
    private static void Micro4x2<S, V>(float* w, int k, float* x, float* y, int yStride, float* bias)
        where S : struct, ISimd<V> where V : struct
    {
        float* w0 = w, w1 = w + k, w2 = w + 2L * k, w3 = w + 3L * k;
        float* x0 = x, x1 = x + k;
        var c00 = S.Zero; var c01 = c00; var c10 = c00; var c11 = c00;
        var c20 = c00; var c21 = c00; var c30 = c00; var c31 = c00;
        int i = 0, lanes = S.Lanes;
        for (; i + lanes <= k; i += lanes)
        {
            var a0 = S.Load(w0 + i); var a1 = S.Load(w1 + i); var a2 = S.Load(w2 + i); var a3 = S.Load(w3 + i);
            var b = S.Load(x0 + i);
            c00 = S.Fma(a0, b, c00); c10 = S.Fma(a1, b, c10); c20 = S.Fma(a2, b, c20); c30 = S.Fma(a3, b, c30);
            b = S.Load(x1 + i);
            c01 = S.Fma(a0, b, c01); c11 = S.Fma(a1, b, c11); c21 = S.Fma(a2, b, c21); c31 = S.Fma(a3, b, c31);
        }
        Span<float> s = stackalloc float[8];
        s[0] = S.Sum(c00); s[1] = S.Sum(c10); s[2] = S.Sum(c20); s[3] = S.Sum(c30);
        s[4] = S.Sum(c01); s[5] = S.Sum(c11); s[6] = S.Sum(c21); s[7] = S.Sum(c31);
        for (; i < k; i++)
        {
            float a0 = w0[i], a1 = w1[i], a2 = w2[i], a3 = w3[i];
            float b0 = x0[i], b1 = x1[i];
            s[0] += a0 * b0; s[1] += a1 * b0; s[2] += a2 * b0; s[3] += a3 * b0;
            s[4] += a0 * b1; s[5] += a1 * b1; s[6] += a2 * b1; s[7] += a3 * b1;
        }
        for (int t = 0; t < 2; t++)
            for (int j = 0; j < 4; j++)
                y[(long)t * yStride + j] = s[t * 4 + j] + (bias == null ? 0 : bias[j]);
    }

    /// <summary>Σ a[i]·b[i] over k floats (lanes, then one horizontal sum, then the scalar tail).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float DotF32<S, V>(float* a, float* b, int k) where S : struct, ISimd<V> where V : struct
    {
        var s = S.Zero;
        int i = 0, lanes = S.Lanes;
        for (; i + lanes <= k; i += lanes) s = S.Fma(S.Load(a + i), S.Load(b + i), s);
        float r = S.Sum(s);
        for (; i < k; i++) r += a[i] * b[i];
        return r;
    }
}
