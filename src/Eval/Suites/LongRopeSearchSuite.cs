using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using PiServe.Eval.Models;
using PiServe.Inference.Rope;

namespace PiServe.Eval.Suites;

/// <summary>
/// LongRoPE's evolutionary search (Ding et al. 2024, §3): per-dimension rescale factors λ_i (θ_i/λ_i,
/// monotone non-decreasing from high to low frequency, in [1, max_factor], step 0.01) and n̂ (the first
/// n̂ positions keep the original rotation) for a target length. Fitness: perplexity of a few dataset
/// samples of the target length under {"rope_type":"longrope", long_factor = λ}. Generation 0 holds
/// Position Interpolation, NTK-aware and YaRN factors plus their mutations; each later generation keeps
/// the best `parents` and adds children by crossover or mutation. Every candidate is evaluated once
/// (units: one evaluation each); generations are replayed from the seed and the stored fitnesses, so a
/// resumed search makes the same candidates.
/// </summary>
public sealed class LongRopeSearchSuite : EvalSuite
{
    public static readonly int[] DefaultNHats = [0, 1, 2, 4, 8, 12, 16, 20, 24, 28, 32, 64, 128, 256];

    public override string Kind => "longrope-search";
    public override DatasetNeed Dataset => DatasetNeed.Required;

    private sealed record Settings(int TargetLength, int OriginalLength, int Samples, int Population, int Generations, int Parents,
        double MutationProbability, double CrossoverProbability, double MutationScale, int Seed, double MaxFactor,
        int[] NHats, double AttentionFactor, string? RegisterAs, int? MaxDocuments, bool SkipMalformed,
        double[]? FixedLongFactor = null, int? ContextWindow = null)
    {
        public double Scale => (double)TargetLength / OriginalLength;
        /// <summary>LongRoPE's short-context readjustment: searching short_factor (≤ L) with the long factors fixed.</summary>
        public bool ShortMode => FixedLongFactor is not null;
    }

    /// <summary>
    /// The long factors an extended model already uses, for a short-context readjustment: the
    /// parameter <c>long_factor</c>, else the model's own (longrope: its long_factor; linear: the factor
    /// for every dimension). Throws naming the parameter when neither exists.
    /// </summary>
    private static double[] LongFactorsOf(EvalParameters p, IEvalModel model, int half)
    {
        if (p.OptionalDoubleList("long_factor", 1, 1e6) is { } given)
        {
            if (given.Length != half)
                throw EvalRequestException.Bad(EvalParameters.P("long_factor"), $"'long_factor' needs {half} values (rotary dim / 2), got {given.Length}");
            return given;
        }
        var rope = model.Config.RopeScaling;
        string? type = rope?["rope_type"]?.GetValue<string>() ?? rope?["type"]?.GetValue<string>();
        double[]? own = type switch
        {
            "linear" when rope!["factor"] is { } f => Enumerable.Repeat(f.GetValue<double>(), half).ToArray(),
            "longrope" or "su" when rope!["long_factor"] is JsonArray a => a.Select(x => x!.GetValue<double>()).ToArray(),
            _ => null,
        };
        if (own is null)
            throw EvalRequestException.Bad(EvalParameters.P("long_factor"),
                "a short-context readjustment keeps the extended model's long factors: give 'long_factor', or use a model whose rope_scaling is linear or longrope");
        p.Set("long_factor", new JsonArray(own.Select(x => (JsonNode)x).ToArray()));
        return own;
    }

    private static Settings Parse(EvalParameters p, IEvalModel model, RopeScaling rope)
    {
        var c = model.Config;
        int configured = c.OriginalMaxPositionEmbeddings ?? c.MaxPositionEmbeddings;
        int original = p.Int("original_length", configured, 2, EvalLimits.MaxLength);
        if (c.OriginalMaxPositionEmbeddings is { } top && original != top)
            throw EvalRequestException.Bad(EvalParameters.P("original_length"),
                $"config.json sets original_max_position_embeddings = {top}, which LongRoPE always uses; 'original_length' cannot differ");
        string factors = p.String("factors", "long", ["long", "short"]);
        bool shortMode = factors == "short";
        int target;
        if (shortMode)
        {
            // Short factors apply to sequences of at most the original length: that is where they are searched.
            target = p.Int("target_length", original, 3, original);
        }
        else
        {
            // The target lies past the window by design (that is what the search extends to): bounded only by EvalLimits.MaxLength.
            target = p.Int("target_length", Math.Min(2 * original, EvalLimits.MaxLength), 3, EvalLimits.MaxLength);
            if (target <= original)
                throw EvalRequestException.Bad(EvalParameters.P("target_length"),
                    $"'target_length' ({target}) must exceed the original context ({original}): the long factors only apply past it");
        }
        double[]? fixedLong = shortMode ? LongFactorsOf(p, model, c.RotaryDim / 2) : null;
        int population = p.Int("population", 8, 3, 4096);
        int generations = p.Int("generations", 3, 1, 1000);
        EvalParameters.CheckUnits("generations", (long)population * generations, "population × generations");
        int parents = p.Int("parents", Math.Max(2, population / 2), 1, population - 1);
        double mutation = p.Double("mutation_probability", 0.3, 0, 1);
        double crossover = p.Double("crossover_probability", 0.3, 0, 1);
        double mutationScale = p.Double("mutation_scale", 0.1, 1e-6, 10);
        int seed = p.Int("seed", 0);
        double scale = (double)target / original;
        double maxFactor = p.Double("max_factor", shortMode ? fixedLong!.Max() : Math.Round(1.25 * scale, 2), 1, 1e6);
        bool searchNHat = p.Bool("search_n_hat", !shortMode);
        var nHats = p.OptionalIntList("n_hat_candidates", 0, original - 1, distinctSorted: true);
        if (nHats is { Length: > EvalLimits.MaxGridEntries })
            throw EvalRequestException.Bad(EvalParameters.P("n_hat_candidates"), $"at most {EvalLimits.MaxGridEntries} distinct n̂ candidates per job, got {nHats.Length}");
        if (nHats is null)
        {
            nHats = searchNHat ? DefaultNHats.Where(n => n < original).ToArray() : [0];
            p.Set("n_hat_candidates", new JsonArray(nHats.Select(n => (JsonNode)n).ToArray()));
        }
        if (!searchNHat) nHats = [0];
        // Short mode: 1, so the readjusted model equals the extended one wherever the long factors apply (a linear model has none).
        double attention = p.OptionalDouble("attention_factor", 1e-6, 100) ?? (shortMode ? 1.0 : Math.Sqrt(1 + Math.Log(scale) / Math.Log(original)));
        p.Set("attention_factor", attention);
        string? registerAs = p.OptionalString("register_as");
        if (registerAs is not null && Models.ModelIds.Problem(registerAs) is { } badId)
            throw EvalRequestException.Bad(EvalParameters.P("register_as"), $"'register_as': {badId}");
        return new Settings(target, original, p.Int("samples", 3, 1, 1000), population, generations, parents, mutation, crossover,
            mutationScale, seed, maxFactor, nHats, attention, registerAs, p.OptionalInt("max_documents", 1), p.Bool("skip_malformed", false),
            fixedLong, shortMode ? model.ContextWindow(rope) : null);
    }

    protected override void Read(EvalParameters p, IEvalModel model, RopeScaling rope) => Parse(p, model, rope);

    /// <summary>One point of the search space.</summary>
    public sealed record Candidate(double[] Factors, int NHat, string Origin)
    {
        /// <summary>Canonical text of the factors (2 decimals) and n̂: equal candidates have equal signatures.</summary>
        public string Signature { get; } = $"n_hat={NHat};" + string.Join(",", Factors.Select(f => f.ToString("F2", CultureInfo.InvariantCulture)));
    }

    public static JsonObject RopeJson(Candidate c, int original, double attentionFactor) => RopeJson(c, original, attentionFactor, null);

    /// <summary>A candidate as rope_scaling: its factors are the long factors, or with <paramref name="fixedLong"/> the short ones.</summary>
    private static JsonObject RopeJson(Candidate c, int original, double attentionFactor, double[]? fixedLong) => new()
    {
        ["rope_type"] = "longrope",
        ["short_factor"] = new JsonArray((fixedLong is null ? c.Factors.Select(_ => 1.0) : c.Factors).Select(f => (JsonNode)f).ToArray()),
        ["long_factor"] = new JsonArray((fixedLong ?? c.Factors).Select(f => (JsonNode)f).ToArray()),
        ["original_max_position_embeddings"] = original,
        ["attention_factor"] = attentionFactor,
        ["n_hat"] = c.NHat,
    };

    private static JsonObject RopeJson(Candidate c, Settings s) => RopeJson(c, s.OriginalLength, s.AttentionFactor, s.FixedLongFactor);

    /// <summary>
    /// Where a short-context readjustment starts: the long factors themselves (the extended model as it
    /// is), no scaling at all (the original rotation), and a geometric middle, λ_i = long_i^(2i/(d−2)).
    /// </summary>
    public static List<Candidate> ShortSeeds(double[] longFactor, double maxFactor)
    {
        int half = longFactor.Length;
        var middle = Enumerable.Range(0, half).Select(i => Math.Pow(longFactor[i], half > 1 ? (double)i / (half - 1) : 1));
        return [new(Legal(longFactor, maxFactor), 0, "long"), new(Legal(Enumerable.Repeat(1.0, half), maxFactor), 0, "none"),
                new(Legal(middle, maxFactor), 0, "geometric")];
    }

    /// <summary>Factors rounded to the search step (0.01), clamped to [1, max], made non-decreasing.</summary>
    private static double[] Legal(IEnumerable<double> factors, double max)
    {
        var f = factors.Select(x => Math.Round(Math.Clamp(x, 1.0, max), 2)).ToArray();
        for (int i = 1; i < f.Length; i++) f[i] = Math.Max(f[i], f[i - 1]);
        return f;
    }

    private static bool Monotone(double[] f)
    {
        for (int i = 1; i < f.Length; i++) if (f[i] < f[i - 1]) return false;
        return true;
    }

    /// <summary>The three classic rescalings the paper starts from, as per-dimension factors.</summary>
    public static List<Candidate> Seeds(int rotaryDim, double theta, int original, double scale, double maxFactor)
    {
        int half = rotaryDim / 2;
        var pi = Enumerable.Repeat(scale, half);
        // NTK-aware: base' = base·s^(d/(d−2)) ⇒ λ_i = s^(2i/(d−2)).
        var ntk = Enumerable.Range(0, half).Select(i => Math.Pow(scale, rotaryDim > 2 ? 2.0 * i / (rotaryDim - 2) : 1));
        var yarnFreq = new YarnRopeScaling(rotaryDim, theta, scale, original, 1.0, 32, 1, null, null, true).FrequenciesFor(original + 1).InvFreq;
        var plain = RopeScaling.DefaultInvFreq(theta, rotaryDim);
        var yarn = Enumerable.Range(0, half).Select(i => (double)plain[i] / yarnFreq[i]);
        return [new(Legal(pi, maxFactor), 0, "pi"), new(Legal(ntk, maxFactor), 0, "ntk"), new(Legal(yarn, maxFactor), 0, "yarn")];
    }

    private static Candidate Mutate(Candidate parent, Settings s, Random rng)
    {
        for (int attempt = 0; ; attempt++)
        {
            var f = (double[])parent.Factors.Clone();
            for (int i = 0; i < f.Length; i++)
                if (rng.NextDouble() < s.MutationProbability)
                    f[i] = Math.Round(Math.Clamp(f[i] * Math.Exp(s.MutationScale * Gaussian(rng)), 1.0, s.MaxFactor), 2);
            int nHat = parent.NHat;
            if (s.NHats.Length > 1 && rng.NextDouble() < s.MutationProbability) nHat = s.NHats[rng.Next(s.NHats.Length)];
            // Candidates that break monotonicity are redrawn (as in the paper); after a few tries, repaired.
            if (Monotone(f) || attempt >= 8) return new Candidate(Legal(f, s.MaxFactor), nHat, "mutation");
        }
    }

    private static Candidate Crossover(Candidate a, Candidate b, Settings s, Random rng)
    {
        for (int attempt = 0; ; attempt++)
        {
            var f = new double[a.Factors.Length];
            for (int i = 0; i < f.Length; i++) f[i] = rng.NextDouble() < 0.5 ? a.Factors[i] : b.Factors[i];
            int nHat = rng.NextDouble() < 0.5 ? a.NHat : b.NHat;
            if (Monotone(f) || attempt >= 8) return new Candidate(Legal(f, s.MaxFactor), nHat, "crossover");
        }
    }

    private static double Gaussian(Random rng)
    {
        double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
        return Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
    }

    public override JsonObject Run(EvalContext ctx)
    {
        var s = Parse(new EvalParameters(ctx.Parameters), ctx.Model, ctx.Rope);
        var model = ctx.Model;
        var c = model.Config;

        // Samples: the first documents with at least target_length tokens, cut to exactly that length.
        var docs = ctx.LoadDataset(s.MaxDocuments, s.SkipMalformed).Documents;
        var samples = new List<(string Id, int[] Tokens)>();
        foreach (var d in docs)
        {
            if (samples.Count >= s.Samples) break;
            var t = ctx.Tokenize(d.Text, s.TargetLength);
            if (t.Length == s.TargetLength) samples.Add((d.Id, t));
        }
        if (samples.Count == 0)
            throw new EvalFailedException($"no document of dataset {ctx.Dataset?.Id} has target_length = {s.TargetLength} tokens");

        int total = s.Population + (s.Generations - 1) * (s.Population - s.Parents);
        ctx.Ledger.SetTotal(total);
        var fitness = new Dictionary<string, (Candidate Candidate, double Ppl)>(StringComparer.Ordinal);
        var history = new JsonArray();
        int evaluations = 0;

        // A generation's new candidates are independent units (runners on several hosts share them);
        // the next generation is bred from the complete fitness table, the same on every host.
        void EvaluateAll(IEnumerable<Candidate> candidates)
        {
            var fresh = new List<Candidate>();
            foreach (var cand in candidates)
                if (!fitness.ContainsKey(cand.Signature) && fresh.All(f => f.Signature != cand.Signature)) fresh.Add(cand);
            var units = fresh.Select((cand, i) => new UnitSpec(evaluations + i, $"{cand.Origin}:{Fnv(cand.Signature)}", () =>
            {
                var rope = model.ResolveRope(RopeJson(cand, s));
                double nll = 0;
                long n = 0;
                foreach (var (_, tokens) in samples)
                {
                    ctx.WaitTurn();
                    foreach (double lp in model.ScoreWindow(tokens, 1, rope, ctx.Cancellation)) nll -= lp;
                    n += tokens.Length - 1;
                }
                return new UnitOutcome(new JsonObject
                {
                    ["ppl"] = Num(Math.Exp(nll / n)), ["nll_sum"] = nll, ["tokens"] = n, ["origin"] = cand.Origin, ["n_hat"] = cand.NHat,
                    ["long_factor"] = new JsonArray(cand.Factors.Select(f => (JsonNode)f).ToArray()),
                }, n);
            })).ToList();
            static double Ppl(JsonNode r) => r["ppl"] is { } p ? p.GetValue<double>() : double.PositiveInfinity;
            // Results land in any order when hosts share the generation; the table takes them in unit
            // order afterwards, so the results are the same whoever computed what.
            var landed = new JsonNode?[fresh.Count];
            var results = ctx.Units(units, (i, r) =>
            {
                landed[i] = r;
                ctx.Partial(() =>
                {
                    var sofar = new Dictionary<string, (Candidate Candidate, double Ppl)>(fitness, StringComparer.Ordinal);
                    for (int j = 0; j < fresh.Count; j++)
                        if (landed[j] is { } done) sofar[fresh[j].Signature] = (fresh[j], Ppl(done));
                    return Build(s, sofar, history, sofar.Count, samples.Count, c.RotaryDim);
                });
            });
            for (int i = 0; i < fresh.Count; i++) fitness[fresh[i].Signature] = (fresh[i], Ppl(results[i]));
            evaluations += fresh.Count;
        }

        var seeds = s.ShortMode ? ShortSeeds(s.FixedLongFactor!, s.MaxFactor) : Seeds(c.RotaryDim, c.RopeTheta, s.OriginalLength, s.Scale, s.MaxFactor);
        var population = new List<Candidate>();
        var initRng = new Random(unchecked(s.Seed * 1_000_003));
        foreach (var seed in seeds)
            if (population.Count < s.Population && population.All(p => p.Signature != seed.Signature)) population.Add(seed);
        for (int attempts = 0; population.Count < s.Population && attempts < 1000 * s.Population; attempts++)
        {
            var child = Mutate(seeds[initRng.Next(seeds.Count)], s, initRng);
            if (population.All(p => p.Signature != child.Signature)) population.Add(child);
        }

        for (int g = 0; g < s.Generations; g++)
        {
            int generationStart = evaluations;
            EvaluateAll(population);
            var ranked = population.OrderBy(p => fitness[p.Signature].Ppl).ThenBy(p => p.Signature, StringComparer.Ordinal).ToList();
            var ppls = ranked.Select(p => fitness[p.Signature].Ppl).Where(double.IsFinite).ToList();
            history.Add(new JsonObject
            {
                ["generation"] = g, ["best_ppl"] = Num(fitness[ranked[0].Signature].Ppl),
                ["mean_ppl"] = ppls.Count > 0 ? Num(ppls.Average()) : null,
                ["population"] = population.Count, ["new_evaluations"] = evaluations - generationStart,
            });
            if (g == s.Generations - 1) break;

            var parents = ranked.Take(s.Parents).ToList();
            var rng = new Random(unchecked(s.Seed * 1_000_003 + g + 1));
            var next = new List<Candidate>(parents);
            for (int attempts = 0; next.Count < s.Population && attempts < 1000 * s.Population; attempts++)
            {
                Candidate child = parents.Count > 1 && rng.NextDouble() < s.CrossoverProbability
                    ? Crossover(parents[rng.Next(parents.Count)], parents[rng.Next(parents.Count)], s, rng)
                    : Mutate(parents[rng.Next(parents.Count)], s, rng);
                if (!fitness.ContainsKey(child.Signature) && next.All(p => p.Signature != child.Signature)) next.Add(child);
            }
            population = next;
        }
        if (evaluations < total) ctx.Ledger.SetTotal(evaluations); // fewer new candidates than planned (small search space)
        return Build(s, fitness, history, evaluations, samples.Count, c.RotaryDim);
    }

    private static JsonObject Build(Settings s, Dictionary<string, (Candidate Candidate, double Ppl)> fitness, JsonArray history,
        int evaluations, int samples, int rotaryDim)
    {
        var results = new JsonObject
        {
            ["target_length"] = s.TargetLength, ["original_length"] = s.OriginalLength, ["scale"] = s.Scale,
            ["attention_factor"] = s.AttentionFactor, ["samples"] = samples, ["evaluations"] = evaluations,
            ["factors"] = s.ShortMode ? "short" : "long",
        };
        if (s.ContextWindow is { } window) results["context_window"] = window;
        if (fitness.Count > 0)
        {
            var best = fitness.Values.OrderBy(v => v.Ppl).ThenBy(v => v.Candidate.Signature, StringComparer.Ordinal).First();
            results["best"] = new JsonObject
            {
                ["ppl"] = Num(best.Ppl), ["n_hat"] = best.Candidate.NHat, ["origin"] = best.Candidate.Origin,
                [s.ShortMode ? "short_factor" : "long_factor"] = new JsonArray(best.Candidate.Factors.Select(f => (JsonNode)f).ToArray()),
                ["rope_scaling"] = RopeJson(best.Candidate, s),
            };
            results["baselines"] = new JsonArray(fitness.Values.Where(v => v.Candidate.Origin is "pi" or "ntk" or "yarn" or "long" or "none" or "geometric")
                .Select(v => (JsonNode)new JsonObject { ["name"] = v.Candidate.Origin, ["ppl"] = Num(v.Ppl) }).ToArray());
        }
        results["history"] = history.DeepClone();
        return results;
    }

    /// <summary>The rope override and context window to register from a finished search's results.</summary>
    public static (JsonObject RopeScaling, int ContextWindow)? Variant(JsonObject? results) =>
        results?["best"]?["rope_scaling"] is JsonObject rope && (results["context_window"] ?? results["target_length"]) is { } t
            ? ((JsonObject)rope.DeepClone(), t.GetValue<int>())
            : null;

    private static string Fnv(string s)
    {
        ulong h = 14695981039346656037;
        foreach (byte b in Encoding.UTF8.GetBytes(s)) { h ^= b; h *= 1099511628211; }
        return h.ToString("x16", CultureInfo.InvariantCulture);
    }
}
