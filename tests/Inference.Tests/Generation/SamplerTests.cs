using PiServe.Inference.Generation;

namespace PiServe.Inference.Tests.Generation;

/// <summary>
/// The Sampler against a reference written plainly over doubles, one rule at a time as OpenAI and vLLM
/// state them: logit_bias and the penalties on the raw logits, temperature, then top-k, top-p
/// (vLLM's ascending cumulative-sum form) and min-p, renormalising after each mask.
/// </summary>
public sealed class SamplerTests
{
    private sealed record Ref(double Temperature = 1, int TopK = 0, double TopP = 1, double MinP = 0, double Presence = 0, double Frequency = 0,
        double Repetition = 1, (int Id, double Bias)[]? Bias = null);

    private static SamplingParams ToParams(Ref r, int? seed = null) => new()
    {
        Temperature = (float)r.Temperature, TopK = r.TopK, TopP = (float)r.TopP, MinP = (float)r.MinP,
        PresencePenalty = (float)r.Presence, FrequencyPenalty = (float)r.Frequency, RepetitionPenalty = (float)r.Repetition,
        LogitBias = r.Bias?.Select(b => new KeyValuePair<int, float>(b.Id, (float)b.Bias)).ToArray(), Seed = seed,
    };

    /// <summary>Bias, then repetition penalty (prompt or output tokens), then frequency and presence (output tokens only).</summary>
    private static double[] RefAdjusted(float[] logits, Ref r, int[] prompt, int[] generated)
    {
        var x = logits.Select(v => (double)v).ToArray();
        foreach (var (id, b) in r.Bias ?? []) x[id] += b;
        for (int t = 0; t < x.Length; t++)
        {
            int count = generated.Count(g => g == t);
            if (r.Repetition != 1 && (prompt.Contains(t) || count > 0))
                x[t] = x[t] > 0 ? x[t] / r.Repetition : x[t] * r.Repetition;
            x[t] -= r.Frequency * count;
            if (count > 0) x[t] -= r.Presence;
        }
        return x;
    }

    private static double[] Softmax(double[] x)
    {
        double max = x.Where(double.IsFinite).Max();
        var e = x.Select(v => double.IsNegativeInfinity(v) ? 0 : Math.Exp(v - max)).ToArray();
        double s = e.Sum();
        return e.Select(v => v / s).ToArray();
    }

    private static double[] RefDistribution(float[] logits, Ref r, int[] prompt, int[] generated)
    {
        var x = RefAdjusted(logits, r, prompt, generated);
        int v = x.Length;
        if (r.Temperature == 0 || r.TopK == 1)
        {
            int best = 0;
            for (int i = 1; i < v; i++) if (x[i] > x[best]) best = i;
            var one = new double[v];
            one[best] = 1;
            return one;
        }
        x = x.Select(t => t / r.Temperature).ToArray();
        // Ids by logit ascending (higher id first among equals, so the lower id ranks as more likely).
        var ascending = Enumerable.Range(0, v).OrderBy(i => x[i]).ThenByDescending(i => i).ToArray();
        if (r.TopK > 0 && r.TopK < v)
            foreach (int i in ascending.Take(v - r.TopK)) x[i] = double.NegativeInfinity;
        if (r.TopP < 1)
        {
            var p = Softmax(x);
            double cumulative = 0;
            for (int j = 0; j < v - 1; j++) // the most likely token is always kept
            {
                cumulative += p[ascending[j]];
                if (cumulative <= 1 - r.TopP) x[ascending[j]] = double.NegativeInfinity;
            }
        }
        if (r.MinP > 0)
        {
            var p = Softmax(x);
            double max = p.Max();
            for (int i = 0; i < v; i++) if (p[i] < r.MinP * max) x[i] = double.NegativeInfinity;
        }
        return Softmax(x);
    }

    private static float[] RandomLogits(Random rng, int v, double scale = 2) =>
        Enumerable.Range(0, v).Select(_ => (float)(scale * (rng.NextDouble() * 2 - 1) * 2)).ToArray();

    public static TheoryData<string> Cases => [.. RefCases.Keys];

    private static readonly Dictionary<string, Ref> RefCases = new()
    {
        ["plain"] = new Ref(),
        ["temperature"] = new Ref(Temperature: 0.6),
        ["low temperature"] = new Ref(Temperature: 0.02), // logits / T beyond exp's float range without the max subtracted
        ["logit_bias"] = new Ref(Bias: [(3, 5), (10, -100), (40, 100), (41, -2.5)]),
        ["presence"] = new Ref(Presence: 1.5),
        ["frequency"] = new Ref(Frequency: 0.7),
        ["negative penalties"] = new Ref(Presence: -1, Frequency: -0.5),
        ["repetition"] = new Ref(Repetition: 1.8),
        ["repetition below 1"] = new Ref(Repetition: 0.6),
        ["min_p"] = new Ref(Temperature: 0.7, MinP: 0.1),
        ["top_k"] = new Ref(TopK: 10),
        ["top_p"] = new Ref(TopP: 0.8),
        ["top_k + top_p"] = new Ref(TopK: 20, TopP: 0.7),
        ["top_p + min_p"] = new Ref(TopP: 0.9, MinP: 0.2, Temperature: 1.3),
        ["everything"] = new Ref(Temperature: 0.8, TopK: 30, TopP: 0.9, MinP: 0.05, Presence: 0.5, Frequency: 0.3, Repetition: 1.2,
            Bias: [(7, 3), (8, -100)]),
        ["greedy with penalties and bias"] = new Ref(Temperature: 0, Presence: 1, Frequency: 1, Repetition: 1.5, Bias: [(5, 2)]),
        ["top_k 1"] = new Ref(TopK: 1, Frequency: 2),
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void ProcessedDistributionMatchesTheReference(string name)
    {
        var r = RefCases[name];
        const int v = 64;
        for (int trial = 0; trial < 25; trial++)
        {
            var rng = new Random(1000 * trial + name.Length);
            var logits = RandomLogits(rng, v);
            int[] prompt = [.. Enumerable.Range(0, 10).Select(_ => rng.Next(v))];
            int[] generated = [.. Enumerable.Range(0, 12).Select(_ => rng.Next(v / 2))]; // repeats, so counts reach 2 and more
            var sampler = new Sampler(ToParams(r), v, prompt);
            foreach (int g in generated) sampler.Observe(g);

            var expectedLogits = RefAdjusted(logits, r, prompt, generated);
            var adjusted = sampler.Adjust(logits).ToArray();
            for (int i = 0; i < v; i++) Assert.True(Math.Abs(adjusted[i] - expectedLogits[i]) < 1e-4, $"{name}: adjusted logit {i}: {adjusted[i]} vs {expectedLogits[i]}");

            var expected = RefDistribution(logits, r, prompt, generated);
            var actual = new double[v];
            sampler.Distribution(logits, actual);
            for (int i = 0; i < v; i++)
            {
                // Masked tokens are exactly 0 in both; a -100 bias may underflow to 0 in float only.
                if (expected[i] == 0 || expected[i] > 1e-12)
                    Assert.True(expected[i] == 0 == (actual[i] == 0), $"{name} trial {trial}: token {i} kept {actual[i] != 0}, reference {expected[i] != 0}");
                Assert.True(Math.Abs(expected[i] - actual[i]) < 1e-5, $"{name} trial {trial}: p[{i}] = {actual[i]}, reference {expected[i]}");
            }
        }
    }

    [Fact]
    public void GreedyPenalisedSequenceFollowsTheReferenceLoop()
    {
        // The sampler counts what it returns: a greedy loop over fixed logits changes token as the
        // penalties grow, exactly as the reference recomputed from the whole history.
        var rng = new Random(3);
        const int v = 40;
        var logits = RandomLogits(rng, v, scale: 0.5);
        int[] prompt = [1, 2, 3];
        var r = new Ref(Temperature: 0, Presence: 0.3, Frequency: 0.4, Repetition: 1.3);
        var sampler = new Sampler(ToParams(r), v, prompt);
        var history = new List<int>();
        for (int step = 0; step < 30; step++)
        {
            var expected = RefDistribution(logits, r, prompt, [.. history]);
            int want = Array.IndexOf(expected, 1.0);
            int got = sampler.Sample(logits);
            Assert.Equal(want, got);
            history.Add(got);
        }
        Assert.True(history.Distinct().Count() > 3, "the penalties should move greedy decoding off its first token");
    }

    [Fact]
    public void SeededDrawsFollowTheProcessedDistribution()
    {
        var r = new Ref(Temperature: 0.8, TopK: 12, TopP: 0.9, MinP: 0.05, Bias: [(2, 1.5), (9, -100)]);
        const int v = 50, draws = 40000;
        var logits = RandomLogits(new Random(11), v, scale: 1);
        var expected = RefDistribution(logits, r, [], []);
        var sampler = new Sampler(ToParams(r, seed: 1234), v);
        var counts = new int[v];
        for (int i = 0; i < draws; i++) counts[sampler.Sample(logits)]++;
        double chi2 = 0;
        int categories = 0;
        for (int i = 0; i < v; i++)
        {
            if (expected[i] == 0) { Assert.Equal(0, counts[i]); continue; }
            double e = expected[i] * draws;
            chi2 += (counts[i] - e) * (counts[i] - e) / e;
            categories++;
        }
        Assert.True(categories >= 3, $"only {categories} candidates: the case tests little");
        // Wilson–Hilferty approximation of the chi-square quantile at p = 0.999.
        int df = categories - 1;
        double critical = df * Math.Pow(1 - 2.0 / (9 * df) + 3.09 * Math.Sqrt(2.0 / (9 * df)), 3);
        Assert.True(chi2 < critical, $"chi-square {chi2:F1} over {df} degrees of freedom, critical {critical:F1}");
    }

    [Fact]
    public void SameSeedSameDrawsDifferentSeedDifferentDraws()
    {
        const int v = 100;
        var rng = new Random(5);
        var steps = Enumerable.Range(0, 60).Select(_ => RandomLogits(rng, v, scale: 0.5)).ToArray();
        int[] Run(int seed)
        {
            var s = new Sampler(ToParams(new Ref(TopP: 0.95, Frequency: 0.2), seed), v, [1, 2]);
            return [.. steps.Select(l => s.Sample(l))];
        }
        Assert.Equal(Run(7), Run(7));
        Assert.NotEqual(Run(7), Run(8));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(5)]
    [InlineData(20)]
    [InlineData(300)] // more than the vocabulary: all of it
    public void TopLogprobsAreTheFullSortsHead(int n)
    {
        const int v = 257;
        for (int trial = 0; trial < 20; trial++)
        {
            var rng = new Random(trial);
            // Coarse values: many ties, broken by lower id first.
            var logits = Enumerable.Range(0, v).Select(_ => (float)(rng.Next(-20, 20) * 0.25)).ToArray();
            int token = rng.Next(v);
            double max = logits.Max(), lse = max + Math.Log(logits.Sum(l => Math.Exp(l - max)));
            var expected = Enumerable.Range(0, v).OrderByDescending(i => logits[i]).ThenBy(i => i).Take(n).ToArray();
            var ids = new int[n];
            var lps = new float[n];
            int count = Sampler.TopLogprobs(logits, token, out float tokenLp, ids, lps);
            Assert.Equal(Math.Min(n, v), count);
            Assert.Equal(expected, ids.Take(count).ToArray());
            Assert.Equal(logits[token] - lse, tokenLp, 1e-4);
            for (int i = 0; i < count; i++) Assert.Equal(logits[ids[i]] - lse, lps[i], 1e-4);
        }
    }

    [Fact]
    public void StopAndBiasIdsOutsideTheVocabularyAreIgnoredNotFatal()
    {
        var s = new Sampler(ToParams(new Ref(Temperature: 0, Bias: [(1000, 5)], Frequency: 1)), 8, [9999, -1]);
        s.Observe(-3);
        s.Observe(8);
        Assert.Equal(2, s.Sample([0, 1, 3, 2, 0, 0, 0, 0]));
    }
}
