using System.Text.Json.Nodes;
using PiServe.Eval.Datasets;
using PiServe.Eval.Diagnostics;
using PiServe.Eval.Metrics;
using PiServe.Eval.Suites;

namespace PiServe.Eval.Tests;

/// <summary>GovReport summarization, the LongRoPE search and the attention-score diagnostics on the tiny model.</summary>
[Collection("eval-compute")]
public class EvalSuiteTests
{
    [Fact]
    public void GovReportPromptIsThePapers()
    {
        Assert.Equal("Read the following article and then summarize it.\nThe report.\nNow summarize the above article.\nSummary:",
            GovReportSuite.Prompt("The report."));
    }

    [Fact]
    public void GovReportSummarizesAndScoresEachDocument()
    {
        using var tmp = new TempDir();
        var file = EvalFixtures.WriteGovReport(tmp.File("gov.jsonl"), docs: 3, words: 120);
        var source = new DatasetSource("gov", DatasetKind.GovReport, file);
        var p = new JsonObject { ["max_new_tokens"] = 12, ["max_input_tokens"] = 40, ["temperature"] = 0.5, ["top_p"] = 0.95, ["seed"] = 5 };
        var r = EvalFixtures.Run("govreport", p, source);
        Assert.Equal(r.ToJsonString(), EvalFixtures.Run("govreport", p, source).ToJsonString()); // seeded sampling
        var docs = r["documents"]!.AsArray();
        Assert.Equal(["gao-0", "crs-1", "gao-2"], docs.Select(d => d!["id"]!.GetValue<string>()));
        var refs = DatasetReader.Read(DatasetKind.GovReport, file).Documents;
        double f1 = 0;
        for (int i = 0; i < 3; i++)
        {
            var d = docs[i]!;
            Assert.True(d["truncated"]!.GetValue<bool>());
            Assert.InRange(d["prompt_tokens"]!.GetValue<int>(), 40, 40 + 30); // budget + the prompt's own words
            Assert.InRange(d["generated_tokens"]!.GetValue<int>(), 0, 12);
            // Per-document scores are rouge-score's on the generated summary vs the reference.
            var expected = Rouge.Score(refs[i].Reference!, d["summary"]!.GetValue<string>(), useStemmer: true);
            Assert.Equal(expected.RougeL.F1, d["scores"]!["rougeL"]!["f1"]!.GetValue<double>(), 12);
            f1 += expected.Rouge1.F1;
        }
        Assert.Equal(f1 / 3, r["rouge1"]!["f1"]!.GetValue<double>(), 12);
        Assert.True(r["use_stemmer"]!.GetValue<bool>());
    }

    [Fact]
    public void LongRopeSearchFindsMonotoneFactorsAndKeepsTheBest()
    {
        using var tmp = new TempDir();
        var dir = EvalFixtures.WritePg19(tmp.File("pg19"), books: 3, words: 250);
        var source = new DatasetSource("pg", DatasetKind.Pg19, dir);
        var p = new JsonObject
        {
            ["original_length"] = 64, ["target_length"] = 128, ["population"] = 5, ["generations"] = 3, ["parents"] = 2,
            ["samples"] = 2, ["seed"] = 3, ["mutation_probability"] = 0.5,
        };
        var ledger = new MemoryLedger();
        var r = EvalFixtures.Run("longrope-search", p, source, ledger: ledger);
        Assert.Equal(5 + 2 * 3, r["evaluations"]!.GetValue<int>());
        Assert.Equal(ledger.Started, ledger.CompletedUnits.Count); // no candidate evaluated twice
        var best = r["best"]!;
        var factors = best["long_factor"]!.AsArray().Select(f => f!.GetValue<double>()).ToArray();
        Assert.Equal(EvalFixtures.TinyModel.Config.RotaryDim / 2, factors.Length);
        for (int i = 1; i < factors.Length; i++) Assert.True(factors[i] >= factors[i - 1], "factors must be non-decreasing");
        Assert.All(factors, f => Assert.InRange(f, 1.0, 2.5));
        double bestPpl = best["ppl"]!.GetValue<double>();
        var baselines = r["baselines"]!.AsArray();
        Assert.Equal(["pi", "ntk", "yarn"], baselines.Select(b => b!["name"]!.GetValue<string>()));
        Assert.All(baselines, b => Assert.True(bestPpl <= b!["ppl"]!.GetValue<double>()));
        // Fitness history: the best never gets worse across generations.
        var history = r["history"]!.AsArray().Select(h => h!["best_ppl"]!.GetValue<double>()).ToList();
        Assert.Equal(3, history.Count);
        Assert.Equal(history.OrderDescending(), history);
        Assert.Equal(bestPpl, history[^1]);

        // The found rope scaling reproduces the fitness: perplexity of the samples at the target length.
        var rope = best["rope_scaling"]!.AsObject();
        Assert.Equal("longrope", rope["rope_type"]!.GetValue<string>());
        Assert.Equal(64, rope["original_max_position_embeddings"]!.GetValue<int>());
        var check = EvalFixtures.Run("perplexity", new JsonObject { ["windows"] = new JsonArray(128), ["non_overlapping"] = true, ["max_tokens"] = 128, ["max_documents"] = 2 },
            source, ropeScaling: (JsonObject)rope.DeepClone());
        Assert.Equal(bestPpl, check["windows"]![0]!["ppl"]!.GetValue<double>(), 1e-9 * bestPpl);

        // Same seed, same search.
        Assert.Equal(r.ToJsonString(), EvalFixtures.Run("longrope-search", p, source).ToJsonString());
    }

    [Fact]
    public void ShortContextReadjustmentSearchesShortFactorsAndLeavesLongContextsAlone()
    {
        // LongRoPE §3.3: on a model extended by uniform 2x factors (as linear PI), search the short
        // factors (≤ L) with the long ones fixed.
        using var tmp = new TempDir();
        var source = new DatasetSource("pg", DatasetKind.Pg19, EvalFixtures.WritePg19(tmp.File("pg19"), books: 3, words: 250));
        int half = EvalFixtures.TinyModel.Config.RotaryDim / 2;
        var longFactor = new JsonArray(Enumerable.Range(0, half).Select(_ => (JsonNode)2.0).ToArray());
        var p = new JsonObject
        {
            ["factors"] = "short", ["original_length"] = 64, ["long_factor"] = longFactor.DeepClone(), ["population"] = 5, ["generations"] = 2,
            ["parents"] = 2, ["samples"] = 2, ["seed"] = 1, ["mutation_probability"] = 0.5,
        };
        var r = EvalFixtures.Run("longrope-search", p, source);
        Assert.Equal("short", r["factors"]!.GetValue<string>());
        Assert.Equal(64, r["target_length"]!.GetValue<int>()); // short factors are searched at L
        var best = r["best"]!;
        var shortFactor = best["short_factor"]!.AsArray().Select(f => f!.GetValue<double>()).ToArray();
        Assert.Equal(half, shortFactor.Length);
        Assert.All(shortFactor, f => Assert.InRange(f, 1.0, 2.0)); // max_factor defaults to the largest long factor
        var rope = best["rope_scaling"]!.AsObject();
        Assert.Equal(longFactor.ToJsonString(), rope["long_factor"]!.ToJsonString());
        Assert.Equal(1.0, rope["attention_factor"]!.GetValue<double>());
        Assert.Equal(["long", "none", "geometric"], r["baselines"]!.AsArray().Select(b => b!["name"]!.GetValue<string>()));
        double longSeed = r["baselines"]![0]!["ppl"]!.GetValue<double>();
        Assert.True(best["ppl"]!.GetValue<double>() <= longSeed);

        // Past L the long factors apply: the readjusted model scores long windows as the uniform-2x one does.
        var window = new JsonObject { ["windows"] = new JsonArray(128), ["non_overlapping"] = true, ["max_tokens"] = 128, ["max_documents"] = 2, ["beyond_window"] = true };
        var uniform = (JsonObject)rope.DeepClone();
        uniform["short_factor"] = longFactor.DeepClone();
        double readjusted = EvalFixtures.Run("perplexity", window, source, ropeScaling: (JsonObject)rope.DeepClone())["windows"]![0]!["ppl"]!.GetValue<double>();
        double before = EvalFixtures.Run("perplexity", window, source, ropeScaling: uniform)["windows"]![0]!["ppl"]!.GetValue<double>();
        Assert.Equal(before, readjusted);
        // ...and at L it uses the searched short factors: the fitness reproduces.
        var atL = new JsonObject { ["windows"] = new JsonArray(64), ["non_overlapping"] = true, ["max_tokens"] = 64, ["max_documents"] = 2 };
        double fitnessCheck = EvalFixtures.Run("perplexity", atL, source, ropeScaling: (JsonObject)rope.DeepClone())["windows"]![0]!["ppl"]!.GetValue<double>();
        Assert.Equal(best["ppl"]!.GetValue<double>(), fitnessCheck, 1e-9 * fitnessCheck);

        // Refusals name the parameter.
        var suite = EvalSuite.Get("longrope-search");
        var model = EvalFixtures.Tiny();
        Assert.Equal("parameters.long_factor", Assert.Throws<EvalRequestException>(() =>
            suite.Normalize(new JsonObject { ["factors"] = "short", ["original_length"] = 64 }, model, model.DefaultRope)).Param);
        Assert.Equal("parameters.long_factor", Assert.Throws<EvalRequestException>(() =>
            suite.Normalize(new JsonObject { ["factors"] = "short", ["original_length"] = 64, ["long_factor"] = new JsonArray(2.0) }, model, model.DefaultRope)).Param);
        Assert.Equal("parameters.target_length", Assert.Throws<EvalRequestException>(() =>
            suite.Normalize(new JsonObject { ["factors"] = "short", ["original_length"] = 64, ["target_length"] = 65, ["long_factor"] = longFactor.DeepClone() }, model, model.DefaultRope)).Param);
        Assert.Equal("parameters.factors", Assert.Throws<EvalRequestException>(() =>
            suite.Normalize(new JsonObject { ["factors"] = "both" }, model, model.DefaultRope)).Param);
    }

    [Fact]
    public void LongRopeSearchResumesWithoutReevaluating()
    {
        using var tmp = new TempDir();
        var source = new DatasetSource("pg", DatasetKind.Pg19, EvalFixtures.WritePg19(tmp.File("pg19"), books: 1, words: 250));
        var p = new JsonObject { ["original_length"] = 64, ["target_length"] = 96, ["population"] = 4, ["generations"] = 3, ["samples"] = 1 };
        var full = EvalFixtures.Run("longrope-search", p, source);

        // Interrupt after 3 evaluations, then run again on the same ledger.
        var ledger = new MemoryLedger();
        using var cts = new CancellationTokenSource();
        var stopping = new StoppingLedger(ledger, after: 3, cts);
        Assert.ThrowsAny<OperationCanceledException>(() => EvalFixtures.Run("longrope-search", p, source, ledger: stopping, cancellation: cts.Token));
        Assert.Equal(3, ledger.CompletedUnits.Count);
        var resumed = EvalFixtures.Run("longrope-search", p, source, ledger: ledger);
        Assert.Equal(full.ToJsonString(), resumed.ToJsonString());
        Assert.Equal(ledger.CompletedUnits.Count, ledger.Started); // 3 before, the rest after: none twice
    }

    /// <summary>Cancels the run once a number of units completed.</summary>
    private sealed class StoppingLedger(MemoryLedger inner, int after, CancellationTokenSource cts) : IEvalLedger
    {
        public IReadOnlyDictionary<int, CompletedUnit> CompletedUnits => inner.CompletedUnits;
        public void SetTotal(int total) => inner.SetTotal(total);
        public void Plan(IReadOnlyList<(int Index, string Key)> units) => inner.Plan(units);
        public int? Claim(IReadOnlyList<int> pending) => inner.Claim(pending);
        public IReadOnlyDictionary<int, CompletedUnit> CompletedAmong(IReadOnlyList<int> pending) => inner.CompletedAmong(pending);
        public void UnitStarted(int index, string key) => inner.UnitStarted(index, key);
        public void UnitCompleted(CompletedUnit unit)
        {
            inner.UnitCompleted(unit);
            if (inner.CompletedUnits.Count >= after) cts.Cancel();
        }
        public void PartialResults(JsonObject results) { }
    }

    [Fact]
    public void LongRopeSearchParametersAreChecked()
    {
        var suite = EvalSuite.Get("longrope-search");
        var model = EvalFixtures.Tiny();
        Assert.Equal("parameters.target_length", Assert.Throws<EvalRequestException>(() =>
            suite.Normalize(new JsonObject { ["target_length"] = 256, ["original_length"] = 512 }, model, model.DefaultRope)).Param);
        Assert.Equal("parameters.parents", Assert.Throws<EvalRequestException>(() =>
            suite.Normalize(new JsonObject { ["population"] = 4, ["parents"] = 4 }, model, model.DefaultRope)).Param);
        var n = suite.Normalize(null, model, model.DefaultRope);
        Assert.Equal(512, n["original_length"]!.GetValue<int>());
        Assert.Equal(1024, n["target_length"]!.GetValue<int>());
    }

    [Fact]
    public void SeedsArePositionInterpolationNtkAndYarn()
    {
        var seeds = LongRopeSearchSuite.Seeds(rotaryDim: 16, theta: 10000, original: 64, scale: 4, maxFactor: 5);
        Assert.Equal(["pi", "ntk", "yarn"], seeds.Select(s => s.Origin));
        Assert.All(seeds[0].Factors, f => Assert.Equal(4.0, f));
        Assert.Equal(1.0, seeds[1].Factors[0]);
        Assert.Equal(4.0, seeds[1].Factors[^1]);
        Assert.Equal(Math.Round(Math.Pow(4, 2.0 * 3 / 14), 2), seeds[1].Factors[3]); // λ_i = s^(2i/(d−2))
        Assert.Equal(1.0, seeds[2].Factors[0]); // YaRN keeps high frequencies
        Assert.Equal(4.0, seeds[2].Factors[^1], 2);
    }

    [Fact]
    public void AttentionScoresPerLayerAndDistanceWithTheTheory()
    {
        string text = EvalFixtures.Text(9, 60);
        var r = EvalFixtures.Run("attention-scores", new JsonObject { ["text"] = text, ["bucket_size"] = 8, ["theory_points"] = 5 },
            ropeScaling: new JsonObject { ["rope_type"] = "linear", ["factor"] = 4.0 });
        int n = r["tokens"]!.GetValue<int>();
        Assert.Equal(EvalFixtures.TinyTokenizer.Encode(text).Length, n);
        int buckets = (n + 7) / 8;
        Assert.Equal(buckets, r["buckets"]!.AsArray().Count);
        var configs = r["configs"]!.AsArray();
        Assert.Equal(["extrapolation", "scaled"], configs.Select(c => c!["name"]!.GetValue<string>()));
        Assert.Equal("linear", configs[1]!["rope_scaling"]!["rope_type"]!.GetValue<string>());
        foreach (var c in configs)
        {
            var layers = c!["layers"]!.AsArray();
            Assert.Equal(2, layers.Count);
            Assert.All(layers, l => Assert.Equal(buckets, l!["max_abs"]!.AsArray().Count));
        }

        // Distance 0 is q_i·k_i, independent of the rope (the rotation cancels): same in both configs.
        var ids = EvalFixtures.TinyTokenizer.Encode(text);
        var one = AttentionScores.Measure(EvalFixtures.Tiny(), ids, EvalFixtures.TinyModel.Rope, bucketSize: 1, layers: null);
        var scaled = AttentionScores.Measure(EvalFixtures.Tiny(), ids, EvalFixtures.TinyModel.ResolveRope(new JsonObject { ["rope_type"] = "linear", ["factor"] = 4.0 }), 1, null);
        Assert.Equal(one[0].MaxAbs[0], scaled[0].MaxAbs[0], 4);
        Assert.NotEqual(one[0].MaxAbs[5], scaled[0].MaxAbs[5]);

        var theory = r["theory"]!;
        Assert.Equal(16, theory["rotary_dim"]!.GetValue<int>());
        Assert.Equal(1 / (32 * Math.Log(10000)), theory["interpolation_bound_over_d"]!.GetValue<double>(), 12);
        var curve = theory["extrapolation"]!.AsArray();
        Assert.Equal(5, curve.Count);
        // B(0)/d: every partial sum has modulus k, Σ_{k=1}^{d/2} k / d = (8·9/2)/16.
        Assert.Equal(36.0 / 16, curve[0]!["extrapolation_bound_over_d"]!.GetValue<double>(), 12);
    }

    [Fact]
    public void ExtrapolationBoundMatchesADirectSum()
    {
        // d = 4: θ = (1, 1/100); B(s) = |e^{is}| + |e^{is} + e^{is/100}|.
        double s = 3.0;
        double direct = 1 + Math.Sqrt(Math.Pow(Math.Cos(s) + Math.Cos(s / 100), 2) + Math.Pow(Math.Sin(s) + Math.Sin(s / 100), 2));
        Assert.Equal(direct / 4, RopeBounds.ExtrapolationBoundOverD(4, 10000, s), 12);
        Assert.Equal(0.25 / (8 * Math.Log(10000)), RopeBounds.InterpolationBoundOverD(10000, 2.5), 12);
    }
}
