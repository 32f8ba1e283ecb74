using PiServe.Inference.Cache;
using PiServe.Inference.Checkpoints;
using PiServe.Inference.Generation;
using PiServe.Inference.Kernels;
using PiServe.Inference.Model;
using PiServe.Inference.Tests.Golden;
using PiServe.Tests.Support;
using Xunit.Abstractions;

namespace PiServe.Inference.Tests.Kernels;

/// <summary>A theory skipped, saying why, where the CPU lacks what a native kernel needs (an AVX2-only machine).</summary>
public sealed class RequiresNativeTheoryAttribute : TheoryAttribute
{
    public RequiresNativeTheoryAttribute(bool bf16Dot = false, int width = 512)
    {
        if (bf16Dot ? !NativeKernels.HasBf16Dot : !NativeKernels.HasMicroFor((SimdWidth)width))
            Skip = $"needs {(bf16Dot ? "AVX512-BF16" : width == 512 ? "AVX-512" : "AVX2 with FMA and F16C")}; native kernels: {NativeKernels.Status}";
    }
}

/// <summary>
/// The native matmul kernels (Native/piserve_kernels.c) against the managed ones and against
/// float64 references: the exact micro-kernel must give the managed kernel's bits, the bf16 dot
/// kernel the products of the bf16-rounded operands; and a model run with bf16 activations stays
/// within a measured bound of the PyTorch reference, its tokens independent of batching.
/// </summary>
public unsafe class NativeKernelTests(ITestOutputHelper output)
{
    /// <summary>Where gcc is installed (every machine .ci/run prepares), the build must have made and loaded the library, or CI would test only the fallback.</summary>
    [Fact]
    public void LibraryIsBuiltAndLoadedWhereGccIs()
    {
        output.WriteLine($"native kernels: {NativeKernels.Status}");
        if (ProcessRunner.FindOnPath("gcc") is null || !OperatingSystem.IsLinux()) return;
        Assert.StartsWith("loaded", NativeKernels.Status);
        Assert.Equal(System.Runtime.Intrinsics.X86.Avx512F.IsSupported, NativeKernels.HasMicro4F32);
        Assert.Equal(System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported, NativeKernels.HasMicroFor(SimdWidth.V256));
    }

    public static IEnumerable<object[]> Shapes()
    {
        foreach (var dtype in new[] { DType.F32, DType.BF16, DType.F16 })
        {
            yield return [dtype, 37, 53, 5, 0, 37];          // k with a 16-wide tail and a scalar tail, rows not /4
            yield return [dtype, 64, 768, 64, 4, 60];        // the 134M model's width, one full tile, a row range
            yield return [dtype, 45, 130, 13, 1, 45];        // every token tail of the 6-token tile
            yield return [dtype, 24, 2048 + 17, 70, 0, 24];  // long rows, two token tiles
            yield return [dtype, 20, 61, 7, 0, 20];          // tails of 13 (width 256: a vector in place, then 5) and 29
        }
    }

    [RequiresNativeTheory]
    [MemberData(nameof(Shapes))]
    public void ExactMicroKernelIsBitIdenticalToTheManagedOne(DType dtype, int rows, int cols, int tokens, int r0, int r1) =>
        AssertNativeEqualsManaged(SimdWidth.V512, dtype, rows, cols, tokens, r0, r1);

    /// <summary>The AVX2 build of the exact kernels against the managed Vector256 path: the same bits.</summary>
    [RequiresNativeTheory(width: 256)]
    [MemberData(nameof(Shapes))]
    public void ExactAvx2MicroKernelIsBitIdenticalToTheManagedOne(DType dtype, int rows, int cols, int tokens, int r0, int r1) =>
        AssertNativeEqualsManaged(SimdWidth.V256, dtype, rows, cols, tokens, r0, r1);

    private static void AssertNativeEqualsManaged(SimdWidth width, DType dtype, int rows, int cols, int tokens, int r0, int r1)
    {
        // f16 rows known to be finite are widened natively with F16C: both ways against the managed conversion.
        foreach (bool finite in dtype == DType.F16 ? new[] { false, true } : [false])
            AssertNativeEqualsManaged(width, dtype, rows, cols, tokens, r0, r1, finite);
    }

    private static void AssertNativeEqualsManaged(SimdWidth width, DType dtype, int rows, int cols, int tokens, int r0, int r1, bool finite)
    {
        var (bytes, x, bias) = Problem(dtype, rows, cols, tokens, seed: rows + cols);
        var managed = new float[tokens * rows];
        var native = new float[tokens * rows];
        var panel = new float[Gemm.PanelFloats(cols) + 16];
        fixed (byte* wp = bytes)
        fixed (float* xp = x, bp = bias, mp = managed, np = native, pp = panel)
        {
            var w = new WeightMatrix(wp, rows, cols, dtype, finite);
            // Rows() permutes x into the pair layout in the panel scratch: give each run its own copy of x.
            var x2 = (float[])x.Clone();
            fixed (float* x2p = x2)
            {
                Gemm.Rows(width, new WeightMatrix(wp, rows, cols, dtype), xp, tokens, mp, bp, r0, r1, pp, native: false);
                Gemm.Rows(width, w, x2p, tokens, np, bp, r0, r1, pp, native: true);
            }
        }
        for (int t = 0; t < tokens; t++)
            for (int r = r0; r < r1; r++)
                Assert.True(BitConverter.SingleToUInt32Bits(managed[t * rows + r]) == BitConverter.SingleToUInt32Bits(native[t * rows + r]),
                    $"y[{t},{r}]: native {native[t * rows + r]:R} vs managed {managed[t * rows + r]:R}");
    }

    /// <summary>
    /// y = W·bf16(x) in f32: against a float64 sum of the same rounded operands (the kernel's only
    /// error is f32 accumulation), and each token's result independent of how many tokens share the call.
    /// </summary>
    [RequiresNativeTheory(bf16Dot: true)]
    [InlineData(37, 53, 5)]
    [InlineData(64, 768, 64)]
    [InlineData(45, 130, 13)]
    [InlineData(30, 2048 + 17, 200)]
    public void Bf16DotMultipliesTheRoundedActivations(int rows, int cols, int tokens)
    {
        var (bytes, x, bias) = Problem(DType.BF16, rows, cols, tokens, seed: 7 * rows + cols);
        var xb = new ushort[x.Length];
        var y = new float[tokens * rows];
        var yOne = new float[rows];
        fixed (byte* wp = bytes)
        fixed (float* xp = x, bp = bias, yp = y, y1 = yOne)
        fixed (ushort* xbp = xb)
        {
            NativeKernels.ToBf16(xp, xbp, x.Length);
            NativeKernels.GemmBf16Dot((ushort*)wp, cols, 0, rows, xbp, tokens, yp, rows, bp);
            for (int t = 0; t < tokens; t += Math.Max(1, tokens / 3))
            {
                NativeKernels.GemmBf16Dot((ushort*)wp, cols, 0, rows, xbp + (long)t * cols, 1, y1, rows, bp);
                for (int r = 0; r < rows; r++)
                    Assert.Equal(BitConverter.SingleToUInt32Bits(y[t * rows + r]), BitConverter.SingleToUInt32Bits(yOne[r]));
            }
        }
        var wb = new ushort[rows * cols];
        Buffer.BlockCopy(bytes, 0, wb, 0, bytes.Length);
        double worst = 0;
        for (int t = 0; t < tokens; t++)
            for (int r = 0; r < rows; r++)
            {
                double expected = bias[r], magnitude = 0;
                for (int k = 0; k < cols; k++)
                {
                    double p = (double)Bf16(wb[r * cols + k]) * Bf16(xb[t * cols + k]);
                    expected += p;
                    magnitude += Math.Abs(p);
                }
                double d = Math.Abs(y[t * rows + r] - expected);
                worst = Math.Max(worst, d / magnitude);
                Assert.True(d <= 1e-6 * magnitude + 1e-7, $"y[{t},{r}] = {y[t * rows + r]}, expected {expected} (Σ|p| {magnitude})");
            }
        output.WriteLine($"worst |Δ| / Σ|products|: {worst:E2}");
    }

    /// <summary>
    /// The vector conversion and the scalar tail round to nearest even, keep signs, infinities and
    /// NaNs, and both turn subnormals into signed zeros (as VCVTNE2PS2BF16 does).
    /// </summary>
    [RequiresNativeTheory(bf16Dot: true)]
    [InlineData(32 * 40)]
    [InlineData(31)]
    [InlineData(32 * 3 + 7)]
    public void ToBf16RoundsToNearestEven(int count)
    {
        var rng = new Random(count);
        var x = new float[count];
        float[] special = [0f, -0f, float.PositiveInfinity, float.NegativeInfinity, float.NaN, 1f + 1f / 256, 1f + 3f / 256, 1f + 1f / 512,
                           -(1f + 3f / 512), float.MaxValue, float.Epsilon, -float.Epsilon, 1e-39f, 3.0e38f, -2.5f];
        for (int i = 0; i < count; i++)
            x[i] = i < special.Length ? special[i] : BitConverter.Int32BitsToSingle(rng.Next()) * (rng.Next(2) == 0 ? 1 : -1);
        var got = new ushort[count];
        fixed (float* xp = x)
        fixed (ushort* gp = got)
            NativeKernels.ToBf16(xp, gp, count);
        for (int i = 0; i < count; i++)
        {
            if (float.IsNaN(x[i])) { Assert.True(float.IsNaN(Bf16(got[i])), $"x[{i}] NaN → 0x{got[i]:X4}"); continue; }
            // Round to nearest even, in integers: the reference every bf16 library uses.
            uint u = BitConverter.SingleToUInt32Bits(x[i]);
            ushort expected = float.IsSubnormal(x[i]) ? (ushort)((u >> 16) & 0x8000) : (ushort)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
            Assert.True(expected == got[i], $"x[{i}] = {x[i]:R}: 0x{got[i]:X4}, expected 0x{expected:X4}");
        }
    }

    /// <summary>
    /// A whole model run with bf16 activations: every bf16-weight fixture's log-probs within the bound
    /// of the float64 PyTorch reference, f32/f16-weight fixtures untouched (bit for bit), and the result
    /// independent of the prefill's chunking (the prefix cache and chunked prefill rely on it).
    /// Bound: about twice the worst case measured over the fixtures, 0.20 on qwen2-yarn-bf16 (whose
    /// YaRN attention factor and θ = 1e6 sharpen the scores; 0.14 on the tied-embedding MQA fixture,
    /// ≤ 0.067 on the others; random-weight models with large, sharp logits; docs/PERFORMANCE.md) —
    /// the bf16 KV cache's bound is the same size. Exact matmuls stay at 1e-3 (GoldenTests).
    /// </summary>
    [RequiresNativeTheory(bf16Dot: true)]
    [MemberData(nameof(GoldenFixtures.Cases), MemberType = typeof(GoldenFixtures))]
    public void Bf16MatmulsStayNearTheReference(string id)
    {
        const double Bound = 0.43;
        var g = GoldenFixtures.Get(id);
        using var model = LlamaModel.Load(GoldenFixtures.ModelDir(g.Model));
        var rope = model.ResolveRope(g.RopeScaling);
        var exact = Scoring.Score(model, g.Tokens, rope);
        model.MatmulPrecision = MatmulPrecision.Bf16;
        var fast = Scoring.Score(model, g.Tokens, rope);
        var chunked = Scoring.Score(model, g.Tokens, rope, chunk: 5);

        bool bf16Weights = model.WeightDType == DType.BF16;
        Assert.Equal(bf16Weights ? MatmulPrecision.Bf16 : MatmulPrecision.Exact, model.EffectiveMatmulPrecision);
        double max = 0;
        for (int i = 1; i < g.Tokens.Length; i++)
        {
            max = Math.Max(max, Math.Abs(fast.LogProbs[i]!.Value - g.LogProbs[i]!.Value));
            Assert.Equal(fast.LogProbs[i], chunked.LogProbs[i]);
            if (!bf16Weights) Assert.Equal(exact.LogProbs[i], fast.LogProbs[i]);
        }
        Assert.Equal(fast.LastLogits, chunked.LastLogits);
        output.WriteLine($"{id} ({(bf16Weights ? "bf16" : "not bf16")} weights) with bf16 matmuls: max |Δ logprob| {max:E2}");
        Assert.True(max <= Bound, $"{id}: bf16 matmuls max |Δ logprob| {max:E2} > {Bound}");
        if (bf16Weights && g.Tokens.Length > 2)
            Assert.NotEqual(exact.LogProbs, fast.LogProbs); // the bf16 path was taken
    }

    /// <summary>
    /// With bf16 matmuls a token's results still do not depend on how it was computed: a decode step
    /// equals the same token prefilled with the prompt, and a batched decode step equals each sequence
    /// decoded alone — bit for bit, as in exact mode.
    /// </summary>
    [RequiresNativeTheory(bf16Dot: true)]
    [InlineData("llama-yarn-bf16/long-600")]
    [InlineData("qwen3-yarn-bf16/short")]
    [InlineData("llama-linear-bf16-tied-mqa/override-default")]
    public void Bf16DecodeEqualsPrefillAndBatchEqualsSolo(string id)
    {
        var g = GoldenFixtures.Get(id);
        using var model = LlamaModel.Load(GoldenFixtures.ModelDir(g.Model));
        model.MatmulPrecision = MatmulPrecision.Bf16;
        var rope = model.ResolveRope(g.RopeScaling);
        int[] prompt = g.Tokens, other = g.Tokens.Reverse().ToArray();

        using var whole = new InferenceSession(model, rope);
        var prefilled = whole.Prefill([.. prompt, 7]).ToArray();
        using var stepped = new InferenceSession(model, rope);
        stepped.Prefill(prompt);
        Assert.Equal(prefilled, stepped.Append(7).ToArray());

        using var a = new InferenceSession(model, rope);
        using var b = new InferenceSession(model, rope);
        a.Prefill(prompt);
        b.Prefill(other);
        using var scratch = new ForwardScratch(model.Config);
        InferenceSession.AppendBatch([a, b], [7, 9], scratch, new float[2 * model.Config.VocabSize]);
        using var soloB = new InferenceSession(model, rope);
        soloB.Prefill(other);
        Assert.Equal(prefilled, a.Logits.ToArray());
        Assert.Equal(soloB.Append(9).ToArray(), b.Logits.ToArray());
    }

    /// <summary>
    /// Decode attention over an f16 KV cache: the native F16C kernels give the managed loops' bits for
    /// head sizes with every tail (pair blocks, a 16-block in place, scalars), key counts around the
    /// four-key step, and rows further apart than a head (the cache's layout).
    /// </summary>
    [RequiresNativeTheory]
    [InlineData(64, 1)]
    [InlineData(64, 13)]
    [InlineData(128, 8)]
    [InlineData(80, 7)]
    [InlineData(96, 4)]
    [InlineData(72, 5)]
    [InlineData(17, 3)]
    [InlineData(256, 9)]
    public void F16AttentionKernelsAreBitIdenticalToTheManagedOnes(int headDim, int count)
    {
        Assert.True(NativeKernels.HasAttentionF16, NativeKernels.Status);
        var rng = new Random(headDim * 31 + count);
        int stride = headDim + 24;
        // Finite halves across the range, subnormals included (the cache holds what the model wrote).
        var rows = new ushort[count * stride];
        for (int i = 0; i < rows.Length; i++)
        {
            double v = (rng.NextDouble() * 2 - 1) * Math.Pow(2, rng.Next(-20, 12));
            rows[i] = BitConverter.HalfToUInt16Bits((Half)v);
        }
        var q = Enumerable.Range(0, headDim).Select(_ => (float)(rng.NextDouble() * 4 - 2)).ToArray();
        var p = Enumerable.Range(0, count).Select(_ => (float)rng.NextDouble()).ToArray();
        var acc = Enumerable.Range(0, headDim).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray();
        float scale = 1f / MathF.Sqrt(headDim);
        float[] managedScores = new float[count], nativeScores = new float[count];
        float[] managedAcc = (float[])acc.Clone(), nativeAcc = (float[])acc.Clone();
        fixed (ushort* r = rows)
        fixed (float* qp = q, pp = p, ms = managedScores, ns = nativeScores, ma = managedAcc, na = nativeAcc)
        {
            CpuBackend.Scores<FiniteF16Rows, Simd512, System.Runtime.Intrinsics.Vector512<float>>((byte*)r, stride * 2L, count, qp, headDim, scale, ms);
            NativeKernels.ScoresF16(r, stride, count, qp, headDim, scale, ns);
            CpuBackend.AccumulateValues<FiniteF16Rows, Simd512, System.Runtime.Intrinsics.Vector512<float>>((byte*)r, stride * 2L, count, pp, ma, headDim);
            NativeKernels.AccumulateF16(r, stride, count, pp, na, headDim);
        }
        Assert.Equal(managedScores.Select(BitConverter.SingleToInt32Bits), nativeScores.Select(BitConverter.SingleToInt32Bits));
        Assert.Equal(managedAcc.Select(BitConverter.SingleToInt32Bits), nativeAcc.Select(BitConverter.SingleToInt32Bits));
        // And they computed something: the scores are the dot products (to float rounding) with q
        // read back from the pair layout.
        var qNatural = new float[headDim];
        fixed (float* qp = q, qn = qNatural) Gemm.FromPairLayout(qp, qn, headDim, 16);
        for (int j = 0; j < count; j++)
        {
            double dot = 0;
            for (int i = 0; i < headDim; i++) dot += (double)(float)BitConverter.UInt16BitsToHalf(rows[j * stride + i]) * qNatural[i];
            Assert.Equal(dot * scale, nativeScores[j], Math.Max(1e-3, Math.Abs(dot) * 1e-4));
        }
    }

    /// <summary>With an f16 cache a decode step reads the keys natively (one query) and a prefill through widened tiles (managed): the same logits.</summary>
    [RequiresNativeTheory]
    [InlineData("llama-default-f32/long-1000")]
    [InlineData("mistral-sharded-f16/window-150")]
    public void F16CacheDecodeEqualsPrefill(string id)
    {
        var g = GoldenFixtures.Get(id);
        using var model = LlamaModel.Load(GoldenFixtures.ModelDir(g.Model));
        model.KvCacheType = DType.F16;
        var rope = model.ResolveRope(g.RopeScaling);
        int[] prompt = g.Tokens;
        using var whole = new InferenceSession(model, rope);
        var prefilled = whole.Prefill([.. prompt, 7, 11]).ToArray();
        using var stepped = new InferenceSession(model, rope);
        stepped.Prefill(prompt);
        stepped.Append(7);
        Assert.Equal(prefilled, stepped.Append(11).ToArray());
    }

    private static float Bf16(ushort b) => BitConverter.Int32BitsToSingle(b << 16);

    private static (byte[] Weights, float[] X, float[] Bias) Problem(DType dtype, int rows, int cols, int tokens, int seed)
    {
        var rng = new Random(seed);
        var wf = Enumerable.Range(0, rows * cols).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var x = Enumerable.Range(0, tokens * cols).Select(_ => (float)(rng.NextDouble() * 4 - 2)).ToArray();
        var bias = Enumerable.Range(0, rows).Select(i => (float)i / rows).ToArray();
        return (SafetensorsWriter.Encode(wf, dtype), x, bias);
    }
}
