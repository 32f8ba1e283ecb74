using System.Runtime.Intrinsics;
using PiServe.Inference.Checkpoints;
using PiServe.Inference.Kernels;

namespace PiServe.Inference.Tests.Kernels;

public unsafe class GemmTests
{
    /// <summary>Odd shapes hit every tail: rows not a multiple of 8/4/16, k not a multiple of 16, tokens not a multiple of 4 or 64.</summary>
    [Theory]
    [InlineData(DType.F32, 37, 53, 1)]
    [InlineData(DType.BF16, 37, 53, 1)]
    [InlineData(DType.F16, 37, 53, 1)]
    [InlineData(DType.BF16, 45, 130, 3)]
    [InlineData(DType.F16, 29, 96, 7)]
    [InlineData(DType.F32, 64, 64, 70)]
    [InlineData(DType.BF16, 100, 77, 131)]
    [InlineData(DType.F16, 33, 200, 65)]
    public void MatMulMatchesADoublePrecisionReference(DType dtype, int rows, int cols, int tokens)
    {
        var rng = new Random(rows * 1000 + cols + tokens);
        var wf = Enumerable.Range(0, rows * cols).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var bytes = SafetensorsWriter.Encode(wf, dtype);
        var x = Enumerable.Range(0, tokens * cols).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var bias = Enumerable.Range(0, rows).Select(i => (float)i / rows).ToArray();
        var y = new float[tokens * rows];
        var stored = new float[rows * cols];
        fixed (byte* wp = bytes)
        fixed (float* xp = x, yp = y, bp = bias, sp = stored)
        {
            var w = new WeightMatrix(wp, rows, cols, dtype);
            for (int r = 0; r < rows; r++) Widen.Row(w.Row(r), dtype, sp + (long)r * cols, cols);
            new CpuBackend(2).MatMul(w, xp, tokens, yp, bp);
        }
        for (int t = 0; t < tokens; t++)
            for (int r = 0; r < rows; r++)
            {
                double expected = bias[r];
                for (int k = 0; k < cols; k++) expected += (double)stored[r * cols + k] * x[t * cols + k];
                Assert.True(Math.Abs(y[t * rows + r] - expected) < 1e-4 * Math.Sqrt(cols), $"y[{t},{r}] = {y[t * rows + r]}, expected {expected}");
            }
    }

    /// <summary>The pair layout (vectorised at 16 and 8 lanes): each whole block of 2·lanes floats becomes its even elements then its odd ones, the tail stays; FromPairLayout undoes it.</summary>
    [Theory]
    [InlineData(16, 64)]
    [InlineData(16, 2065)]
    [InlineData(16, 31)]
    [InlineData(8, 77)]
    [InlineData(8, 2048)]
    [InlineData(8, 15)]
    [InlineData(4, 19)]
    public void PairLayoutSplitsEachBlockByParity(int lanes, int k)
    {
        var x = Enumerable.Range(0, k).Select(i => (float)i * 0.5f - 3).ToArray();
        var pairs = new float[k];
        var back = new float[k];
        fixed (float* xp = x, pp = pairs, bp = back)
        {
            Gemm.ToPairLayout(xp, pp, k, lanes);
            Gemm.FromPairLayout(pp, bp, k, lanes);
        }
        int block = 2 * lanes, whole = k / block * block;
        for (int i = 0; i < k; i++)
        {
            int b = i / block * block, j = i - b;
            float expected = i >= whole ? x[i] : j < lanes ? x[b + 2 * j] : x[b + 2 * (j - lanes) + 1];
            Assert.Equal(expected, pairs[i]);
        }
        Assert.Equal(x, back);
    }

    /// <summary>
    /// Sum4 (four horizontal sums at once, used by the GEMV and attention scores) gives each vector's
    /// Sum bit for bit at every width: the kernels' bit-identity between decode, batches and prefill
    /// rests on every path summing a row's lanes in the same tree.
    /// </summary>
    [Theory]
    [InlineData(SimdWidth.V512)]
    [InlineData(SimdWidth.V256)]
    [InlineData(SimdWidth.V128)]
    public void Sum4EqualsFourSums(SimdWidth width)
    {
        var rng = new Random((int)width);
        var v = new float[4 * 16];
        for (int round = 0; round < 2000; round++)
        {
            // Mixed magnitudes and signs, so that any other order of additions rounds differently.
            for (int i = 0; i < v.Length; i++) v[i] = (float)((rng.NextDouble() - 0.5) * Math.Pow(10, rng.Next(-3, 6)));
            fixed (float* p = v)
            {
                float[] expected, got;
                switch (width)
                {
                    case SimdWidth.V512:
                        expected = [Simd512.Sum(Vector512.Load(p)), Simd512.Sum(Vector512.Load(p + 16)), Simd512.Sum(Vector512.Load(p + 32)), Simd512.Sum(Vector512.Load(p + 48))];
                        var s512 = Simd512.Sum4(Vector512.Load(p), Vector512.Load(p + 16), Vector512.Load(p + 32), Vector512.Load(p + 48));
                        got = [s512[0], s512[1], s512[2], s512[3]];
                        break;
                    case SimdWidth.V256:
                        expected = [Simd256.Sum(Vector256.Load(p)), Simd256.Sum(Vector256.Load(p + 8)), Simd256.Sum(Vector256.Load(p + 16)), Simd256.Sum(Vector256.Load(p + 24))];
                        var s256 = Simd256.Sum4(Vector256.Load(p), Vector256.Load(p + 8), Vector256.Load(p + 16), Vector256.Load(p + 24));
                        got = [s256[0], s256[1], s256[2], s256[3]];
                        break;
                    default:
                        expected = [Simd128.Sum(Vector128.Load(p)), Simd128.Sum(Vector128.Load(p + 4)), Simd128.Sum(Vector128.Load(p + 8)), Simd128.Sum(Vector128.Load(p + 12))];
                        var s128 = Simd128.Sum4(Vector128.Load(p), Vector128.Load(p + 4), Vector128.Load(p + 8), Vector128.Load(p + 12));
                        got = [s128[0], s128[1], s128[2], s128[3]];
                        break;
                }
                for (int j = 0; j < 4; j++)
                    Assert.True(BitConverter.SingleToUInt32Bits(expected[j]) == BitConverter.SingleToUInt32Bits(got[j]), $"round {round}, sum {j}: {got[j]:R} vs {expected[j]:R}");
            }
        }
    }

    /// <summary>
    /// SumEach (a vector's worth of horizontal sums in one transposing reduction, used by the attention
    /// scores) gives each vector's Sum bit for bit, in its lane, at every width.
    /// </summary>
    [Theory]
    [InlineData(SimdWidth.V512)]
    [InlineData(SimdWidth.V256)]
    [InlineData(SimdWidth.V128)]
    public void SumEachEqualsOneSumPerVector(SimdWidth width)
    {
        var rng = new Random(100 + (int)width);
        var v = new float[16 * 16];
        var got = new float[16];
        for (int round = 0; round < 2000; round++)
        {
            for (int i = 0; i < v.Length; i++) v[i] = (float)((rng.NextDouble() - 0.5) * Math.Pow(10, rng.Next(-3, 6)));
            int lanes;
            var expected = new float[16];
            fixed (float* p = v, g = got)
            {
                switch (width)
                {
                    case SimdWidth.V512:
                        lanes = 16;
                        for (int j = 0; j < lanes; j++) expected[j] = Simd512.Sum(Vector512.Load(p + 16 * j));
                        Simd512.SumEach(p).Store(g);
                        break;
                    case SimdWidth.V256:
                        lanes = 8;
                        for (int j = 0; j < lanes; j++) expected[j] = Simd256.Sum(Vector256.Load(p + 8 * j));
                        Simd256.SumEach(p).Store(g);
                        break;
                    default:
                        lanes = 4;
                        for (int j = 0; j < lanes; j++) expected[j] = Simd128.Sum(Vector128.Load(p + 4 * j));
                        Simd128.SumEach(p).Store(g);
                        break;
                }
            }
            for (int j = 0; j < lanes; j++)
                Assert.True(BitConverter.SingleToUInt32Bits(expected[j]) == BitConverter.SingleToUInt32Bits(got[j]), $"{width} round {round}, sum {j}: {got[j]:R} vs {expected[j]:R}");
        }
    }

    /// <summary>
    /// The attention softmax's exponential: within 2 ulp of the double-precision e^x over every
    /// region of x ≤ 0 where f32 is normal, exactly 0 for −∞ and far below, NaN for NaN, and the same
    /// bits at every vector width (decode and prefill may run at different widths on one machine only
    /// in tests, but a width must never change a lane's value).
    /// </summary>
    [Fact]
    public void ExpNonPositiveIsWithinTwoUlpAndTheSameAtEveryWidth()
    {
        var rng = new Random(7);
        var x = new float[16 * 4096];
        for (int i = 0; i < x.Length; i++)
            x[i] = i switch
            {
                0 => 0f, 1 => -0f, 2 => float.NegativeInfinity, 3 => float.NaN, 4 => -1000f, 5 => -88f, 6 => -87f, 7 => -1e-30f,
                _ => -(float)(rng.NextDouble() * Math.Pow(10, rng.Next(-6, 2)) * (rng.Next(3) == 0 ? 8.7 : 1)),
            };
        var e512 = new float[x.Length]; var e256 = new float[x.Length]; var e128 = new float[x.Length];
        fixed (float* px = x, p512 = e512, p256 = e256, p128 = e128)
            for (int i = 0; i < x.Length; i += 16)
            {
                Simd.ExpNonPositive<Simd512, Vector512<float>>(Vector512.Load(px + i)).Store(p512 + i);
                for (int k = 0; k < 16; k += 8) Simd.ExpNonPositive<Simd256, Vector256<float>>(Vector256.Load(px + i + k)).Store(p256 + i + k);
                for (int k = 0; k < 16; k += 4) Simd.ExpNonPositive<Simd128, Vector128<float>>(Vector128.Load(px + i + k)).Store(p128 + i + k);
            }
        Assert.Equal(1f, e512[0]); Assert.Equal(1f, e512[1]);
        Assert.Equal(0f, e512[2]); Assert.True(float.IsNaN(e512[3])); Assert.Equal(0f, e512[4]);
        for (int i = 0; i < x.Length; i++)
        {
            Assert.True(BitConverter.SingleToUInt32Bits(e512[i]) == BitConverter.SingleToUInt32Bits(e256[i])
                && BitConverter.SingleToUInt32Bits(e512[i]) == BitConverter.SingleToUInt32Bits(e128[i]), $"x = {x[i]:R}: widths differ");
            if (float.IsNaN(x[i]) || x[i] < -87.3f) continue;
            double expected = Math.Exp(x[i]);
            double ulp = MathF.BitIncrement((float)expected) - (float)expected;
            Assert.True(Math.Abs(e512[i] - expected) <= 2 * ulp, $"exp({x[i]:R}) = {e512[i]:R}, expected {expected:R}");
        }
    }

    /// <summary>Every vector width converts every one of the 65536 halves exactly as the runtime's (Half)→float does.</summary>
    [Theory]
    [InlineData(SimdWidth.V512)]
    [InlineData(SimdWidth.V256)]
    [InlineData(SimdWidth.V128)]
    public void HalfToSingleIsExactForEveryHalf(SimdWidth width)
    {
        var halves = new ushort[65536];
        for (int i = 0; i < halves.Length; i++) halves[i] = (ushort)i;
        var singles = new float[16];
        fixed (ushort* h = halves)
        fixed (float* f = singles)
            for (int i = 0; i < halves.Length; i += 16)
            {
                switch (width)
                {
                    case SimdWidth.V512: Simd512.LoadF16(h + i).Store(f); break;
                    case SimdWidth.V256: Simd256.LoadF16(h + i).Store(f); Simd256.LoadF16(h + i + 8).Store(f + 8); break;
                    default: for (int q = 0; q < 16; q += 4) Simd128.LoadF16(h + i + q).Store(f + q); break;
                }
                for (int j = 0; j < 16; j++)
                {
                    float expected = (float)BitConverter.UInt16BitsToHalf(halves[i + j]);
                    if (float.IsNaN(expected)) Assert.True(float.IsNaN(singles[j]), $"half 0x{i + j:X4} should be NaN");
                    else Assert.Equal(BitConverter.SingleToUInt32Bits(expected), BitConverter.SingleToUInt32Bits(singles[j]));
                }
            }
    }

    /// <summary>
    /// The pair loads split 2·Lanes halves by parity and convert each exactly; the finite-only variant
    /// agrees with them on every finite half (infinities and NaNs replaced by zero for it).
    /// </summary>
    [Theory]
    [InlineData(SimdWidth.V512)]
    [InlineData(SimdWidth.V256)]
    [InlineData(SimdWidth.V128)]
    public void PairLoadsConvertEveryHalfExactly(SimdWidth width)
    {
        var halves = new ushort[65536];
        var finite = new ushort[65536];
        for (int i = 0; i < halves.Length; i++)
        {
            halves[i] = (ushort)i;
            finite[i] = (i & 0x7C00) == 0x7C00 ? (ushort)0 : (ushort)i;
        }
        var exact = new float[32];
        var fast = new float[32];
        int lanes = (int)width / 32;
        fixed (ushort* h = halves, f = finite)
        fixed (float* e = exact, q = fast)
            for (int i = 0; i < halves.Length; i += 2 * lanes)
            {
                switch (width)
                {
                    case SimdWidth.V512:
                        Simd512.LoadF16Pairs(h + i, out var e0, out var o0); e0.Store(e); o0.Store(e + lanes);
                        Simd512.LoadFiniteF16Pairs(f + i, out var e1, out var o1); e1.Store(q); o1.Store(q + lanes);
                        break;
                    case SimdWidth.V256:
                        Simd256.LoadF16Pairs(h + i, out var e2, out var o2); e2.Store(e); o2.Store(e + lanes);
                        Simd256.LoadFiniteF16Pairs(f + i, out var e3, out var o3); e3.Store(q); o3.Store(q + lanes);
                        break;
                    default:
                        Simd128.LoadF16Pairs(h + i, out var e4, out var o4); e4.Store(e); o4.Store(e + lanes);
                        Simd128.LoadFiniteF16Pairs(f + i, out var e5, out var o5); e5.Store(q); o5.Store(q + lanes);
                        break;
                }
                for (int j = 0; j < 2 * lanes; j++)
                {
                    int element = i + (j < lanes ? 2 * j : 2 * (j - lanes) + 1); // even lanes first, then odd
                    float expected = (float)BitConverter.UInt16BitsToHalf(halves[element]);
                    if (float.IsNaN(expected)) Assert.True(float.IsNaN(exact[j]), $"half 0x{element:X4} should be NaN");
                    else Assert.Equal(BitConverter.SingleToUInt32Bits(expected), BitConverter.SingleToUInt32Bits(exact[j]));
                    float expectedFinite = (float)BitConverter.UInt16BitsToHalf(finite[element]);
                    Assert.Equal(BitConverter.SingleToUInt32Bits(expectedFinite), BitConverter.SingleToUInt32Bits(fast[j]));
                }
            }
    }

    /// <summary>
    /// f16 weights known to be finite take the cheaper conversion and give the same bits as the
    /// exact one, decode and prefill, at every width; the check itself finds an infinity or a NaN anywhere.
    /// </summary>
    [Theory]
    [InlineData(SimdWidth.V512)]
    [InlineData(SimdWidth.V256)]
    [InlineData(SimdWidth.V128)]
    public void FiniteF16WeightsGiveTheExactPathsBits(SimdWidth width)
    {
        int rows = 24, cols = 100;
        var rng = new Random((int)width);
        var bytes = SafetensorsWriter.Encode(Random(rng, rows * cols).Select(v => v * 1e-3f).ToArray(), DType.F16); // some subnormal halves too
        var x = Random(rng, 9 * cols);
        float[] exact = new float[9 * rows], fast = new float[9 * rows];
        var panel = new float[Gemm.PanelFloats(cols)];
        fixed (byte* wp = bytes)
        fixed (float* xp = x, e = exact, f = fast, pp = panel)
        {
            Assert.True(WeightMatrix.NoInfOrNaN((ushort*)wp, rows * cols));
            foreach (int n in new[] { 1, 9 })
            {
                Gemm.Rows(width, new WeightMatrix(wp, rows, cols, DType.F16), xp, n, e, null, 0, rows, pp);
                Gemm.Rows(width, new WeightMatrix(wp, rows, cols, DType.F16, finite: true), xp, n, f, null, 0, rows, pp);
                Assert.Equal(exact, fast);
            }
            ((ushort*)wp)[rows * cols - 1] = 0x7E00; // NaN in the last element (the scalar tail of the scan)
            Assert.False(WeightMatrix.NoInfOrNaN((ushort*)wp, rows * cols));
            ((ushort*)wp)[rows * cols - 1] = 0;
            ((ushort*)wp)[17] = 0xFC00; // -infinity inside a vector
            Assert.False(WeightMatrix.NoInfOrNaN((ushort*)wp, rows * cols));
        }
    }

    /// <summary>
    /// Each width's kernels (not only the one this CPU runs natively: the others are emulated, slowly
    /// but exactly) against a double-precision reference; and within one width a token's row is
    /// bit-identical whether computed alone (GEMV) or inside a tile (micro-kernel, tails).
    /// </summary>
    [Theory]
    [InlineData(SimdWidth.V512, DType.BF16, 37, 53, 9)]
    [InlineData(SimdWidth.V512, DType.F16, 21, 130, 70)]
    [InlineData(SimdWidth.V256, DType.BF16, 37, 53, 9)]
    [InlineData(SimdWidth.V256, DType.F16, 21, 130, 70)]
    [InlineData(SimdWidth.V256, DType.F32, 45, 77, 5)]
    [InlineData(SimdWidth.V128, DType.BF16, 19, 45, 7)]
    [InlineData(SimdWidth.V128, DType.F16, 19, 45, 3)]
    public void EveryWidthMatchesTheReferenceAndDecodesAsItBatches(SimdWidth width, DType dtype, int rows, int cols, int tokens)
    {
        var rng = new Random(rows + cols * 3 + tokens + (int)width);
        var wf = Random(rng, rows * cols);
        var bytes = SafetensorsWriter.Encode(wf, dtype);
        var x = Random(rng, tokens * cols);
        var bias = Random(rng, rows);
        float[] batched = new float[tokens * rows], single = new float[tokens * rows], stored = new float[rows * cols];
        var panel = new float[Gemm.PanelFloats(cols)];
        fixed (byte* wp = bytes)
        fixed (float* xp = x, bp = bias, yb = batched, ys = single, sp = stored, pp = panel)
        {
            var w = new WeightMatrix(wp, rows, cols, dtype);
            for (int r = 0; r < rows; r++) Widen.Row(w.Row(r), dtype, sp + (long)r * cols, cols);
            Gemm.Rows(width, w, xp, tokens, yb, bp, 0, rows, pp);
            for (int t = 0; t < tokens; t++) Gemm.Rows(width, w, xp + (long)t * cols, 1, ys + (long)t * rows, bp, 0, rows, pp);
        }
        Assert.Equal(single, batched);
        for (int t = 0; t < tokens; t++)
            for (int r = 0; r < rows; r++)
            {
                double expected = bias[r];
                for (int k = 0; k < cols; k++) expected += (double)stored[r * cols + k] * x[t * cols + k];
                Assert.True(Math.Abs(batched[t * rows + r] - expected) < 1e-4 * Math.Sqrt(cols), $"y[{t},{r}] = {batched[t * rows + r]}, expected {expected}");
            }
    }

    private static float[] Random(Random rng, int count) => Enumerable.Range(0, count).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();

    /// <summary>
    /// The fused regions compute each row exactly as the single-matrix MatMul does (same kernels, row
    /// blocks aligned the same way), whatever the thread count and whether the region is split or not.
    /// </summary>
    [Theory]
    [InlineData(DType.BF16, 1, 2, 37, 45, 29, 53)]     // small: runs on the calling thread
    [InlineData(DType.F16, 7, 3, 37, 45, 29, 53)]
    [InlineData(DType.BF16, 1, 2, 300, 100, 100, 256)] // parallel: a part's blocks straddle the matrices
    [InlineData(DType.F16, 1, 3, 256, 64, 64, 256)]
    [InlineData(DType.BF16, 9, 2, 200, 40, 72, 96)]    // prefill tiles
    public void FusedProjectionsEqualSeparateMatMuls(DType dtype, int tokens, int threads, int rowsQ, int rowsK, int rowsV, int cols)
    {
        var rng = new Random(rowsQ + rowsK + cols + tokens);
        int[] rows = [rowsQ, rowsK, rowsV];
        var weights = rows.Select(r => SafetensorsWriter.Encode(Random(rng, r * cols), dtype)).ToArray();
        var biases = rows.Select(r => Random(rng, r)).ToArray();
        var x = Random(rng, tokens * cols);
        var fused = rows.Select(r => new float[tokens * r]).ToArray();
        var separate = rows.Select(r => new float[tokens * r]).ToArray();
        var backend = new CpuBackend(threads);
        fixed (byte* w0 = weights[0], w1 = weights[1], w2 = weights[2])
        fixed (float* b0 = biases[0], b1 = biases[1], b2 = biases[2], xp = x)
        fixed (float* f0 = fused[0], f1 = fused[1], f2 = fused[2], s0 = separate[0], s1 = separate[1], s2 = separate[2])
        {
            WeightMatrix wq = new(w0, rowsQ, cols, dtype), wk = new(w1, rowsK, cols, dtype), wv = new(w2, rowsV, cols, dtype);
            backend.MatMul(xp, tokens, [new(wq, f0, b0), new(wk, f1, null), new(wv, f2, b2)]);
            new CpuBackend(1).MatMul(wq, xp, tokens, s0, b0);
            new CpuBackend(1).MatMul(wk, xp, tokens, s1, null);
            new CpuBackend(1).MatMul(wv, xp, tokens, s2, b2);
        }
        for (int m = 0; m < 3; m++) Assert.Equal(separate[m], fused[m]);
    }

    [Theory]
    [InlineData(DType.BF16, 1, 2, 40, 48)]
    [InlineData(DType.F16, 1, 2, 520, 256)]
    [InlineData(DType.BF16, 1, 3, 512, 256)]
    [InlineData(DType.BF16, 6, 2, 100, 96)]
    public void MatMulSwiGluEqualsGateUpThenSwiGlu(DType dtype, int tokens, int threads, int rows, int cols)
    {
        var rng = new Random(rows * 7 + cols + tokens);
        byte[] gate = SafetensorsWriter.Encode(Random(rng, rows * cols), dtype), up = SafetensorsWriter.Encode(Random(rng, rows * cols), dtype);
        var gb = Random(rng, rows);
        var x = Random(rng, tokens * cols);
        float[] y = new float[tokens * rows], upOut = new float[tokens * rows], expected = new float[tokens * rows], expectedUp = new float[tokens * rows];
        fixed (byte* g = gate, u = up)
        fixed (float* gbp = gb, xp = x, yp = y, up2 = upOut, ep = expected, eup = expectedUp)
        {
            WeightMatrix wg = new(g, rows, cols, dtype), wu = new(u, rows, cols, dtype);
            new CpuBackend(threads).MatMulSwiGlu(wg, wu, xp, tokens, yp, up2, gbp, null);
            var one = new CpuBackend(1);
            one.MatMul(wg, xp, tokens, ep, gbp);
            one.MatMul(wu, xp, tokens, eup, null);
            one.SwiGlu(ep, eup, (long)tokens * rows);
        }
        for (int i = 0; i < y.Length; i++)
            Assert.True(Math.Abs(y[i] - expected[i]) <= 1e-6f * Math.Max(1, Math.Abs(expected[i])), $"y[{i}] = {y[i]}, expected {expected[i]}");
    }
}
