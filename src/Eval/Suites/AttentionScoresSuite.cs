using System.Text.Json.Nodes;
using PiServe.Eval.Diagnostics;
using PiServe.Eval.Models;
using PiServe.Inference.Rope;

namespace PiServe.Eval.Suites;

/// <summary>
/// Attention-score diagnostics (PI §2): the max (and mean) |pre-softmax score| per layer and
/// relative-distance bucket over one text, under plain RoPE extrapolated past the trained length and
/// under the configured scaling (the request's rope_scaling, else the model's), with the paper's
/// theoretical bounds for the model's rotary dimension and base. The text is `text`, else document
/// `document` of the dataset. Units: one rope configuration.
/// </summary>
public sealed class AttentionScoresSuite : EvalSuite
{
    public override string Kind => "attention-scores";
    public override DatasetNeed Dataset => DatasetNeed.Optional;

    private sealed record Settings(string? Text, int Document, int MaxTokens, int? BucketSize, int[]? Layers, bool Extrapolation,
        int TheoryPoints, int? TheoryMaxDistance);

    private static Settings Parse(EvalParameters p, IEvalModel model, RopeScaling rope)
    {
        string? text = p.OptionalString("text");
        int layers = model.Config.NumLayers;
        return new Settings(text, p.Int("document", 0, 0), p.Int("max_tokens", 1024, 2, EvalLimits.MaxLength), p.OptionalInt("bucket_size", 1),
            p.OptionalIntList("layers", 0, layers - 1, distinctSorted: true), p.Bool("include_extrapolation", true),
            p.Int("theory_points", 64, 2, 100_000), p.OptionalInt("theory_max_distance", 1));
    }

    protected override void Read(EvalParameters p, IEvalModel model, RopeScaling rope) => Parse(p, model, rope);

    public override JsonObject Run(EvalContext ctx)
    {
        var s = Parse(new EvalParameters(ctx.Parameters), ctx.Model, ctx.Rope);
        var model = ctx.Model;
        string text;
        string source;
        if (s.Text is not null) { text = s.Text; source = "text"; }
        else if (ctx.Dataset is not null)
        {
            var docs = ctx.LoadDataset(s.Document + 1, skipMalformed: false).Documents;
            if (s.Document >= docs.Count)
                throw new EvalFailedException($"dataset {ctx.Dataset.Id} has {docs.Count} documents; 'document' = {s.Document} does not exist");
            text = docs[s.Document].Text;
            source = $"dataset {ctx.Dataset.Id}, document {docs[s.Document].Id}";
        }
        else throw new EvalFailedException("give parameters.text or a dataset to read the text from");

        var tokens = ctx.Tokenize(text, s.MaxTokens);
        if (tokens.Length < 2) throw new EvalFailedException($"the text has {tokens.Length} token(s); at least 2 are needed");
        int bucket = s.BucketSize ?? Math.Max(1, (tokens.Length + 31) / 32);
        int buckets = (tokens.Length + bucket - 1) / bucket;
        var layerSet = s.Layers is null ? null : new HashSet<int>(s.Layers);

        var configs = new List<(string Name, RopeScaling Rope)>();
        if (s.Extrapolation) configs.Add(("extrapolation", RopeScalingFactory.Create(model.Config, null)));
        configs.Add(("scaled", ctx.Rope));
        ctx.Ledger.SetTotal(configs.Count);

        var units = new List<UnitSpec>();
        for (int i = 0; i < configs.Count; i++)
        {
            var (name, rope) = configs[i];
            units.Add(new UnitSpec(i, $"{name}/tokens={tokens.Length}/bucket={bucket}", () =>
            {
                var stats = AttentionScores.Measure(model, tokens, rope, bucket, layerSet, ctx.Cancellation);
                var layers = new JsonArray(stats.Select(l => (JsonNode)new JsonObject
                {
                    ["layer"] = l.Layer,
                    ["max_abs"] = new JsonArray(l.MaxAbs.Select(x => Num(x)).ToArray()),
                    ["mean_abs"] = new JsonArray(l.MeanAbs.Select(x => Num(x)).ToArray()),
                }).ToArray());
                var overall = Enumerable.Range(0, buckets).Select(b => stats.Count == 0 ? 0 : stats.Max(l => l.MaxAbs[b])).ToArray();
                return new UnitOutcome(new JsonObject
                {
                    ["name"] = name, ["rope_scaling"] = rope.Describe(),
                    ["max_abs"] = new JsonArray(overall.Select(x => Num(x)).ToArray()), ["layers"] = layers,
                }, tokens.Length);
            }));
        }
        var results = new JsonArray(ctx.Units(units).Select(r => r.DeepClone()).ToArray());

        var c = model.Config;
        return new JsonObject
        {
            ["source"] = source,
            ["tokens"] = tokens.Length,
            ["bucket_size"] = bucket,
            ["buckets"] = new JsonArray(Enumerable.Range(0, buckets).Select(b => (JsonNode)new JsonObject
            {
                ["from"] = b * bucket, ["to"] = Math.Min(tokens.Length, (b + 1) * bucket) - 1,
            }).ToArray()),
            ["trained_length"] = c.OriginalMaxPositionEmbeddings ?? c.MaxPositionEmbeddings,
            ["configs"] = results,
            ["theory"] = RopeBounds.Curves(c.RotaryDim, c.RopeTheta, s.TheoryMaxDistance ?? Math.Max(tokens.Length, 2 * (c.OriginalMaxPositionEmbeddings ?? c.MaxPositionEmbeddings)), s.TheoryPoints),
        };
    }
}
