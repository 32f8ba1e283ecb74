using System.Text.Json.Nodes;
using PiServe.Eval.Datasets;
using PiServe.Eval.Metrics;
using PiServe.Eval.Models;
using PiServe.Inference.Generation;
using PiServe.Inference.Rope;

namespace PiServe.Eval.Suites;

/// <summary>
/// Long-document summarization (PI §3.5): the report, truncated to a token budget, inside the paper's
/// prompt; a sampled summary (temperature, top_p, seed + document index); ROUGE-1/2/L/Lsum against the
/// reference with rouge-score's conventions. Units: one document.
/// </summary>
public sealed class GovReportSuite : EvalSuite
{
    public const string Prefix = "Read the following article and then summarize it.\n";
    public const string Suffix = "\nNow summarize the above article.\nSummary:";

    public override string Kind => "govreport";
    public override DatasetNeed Dataset => DatasetNeed.Required;
    public override IReadOnlyCollection<DatasetKind>? DatasetKinds => [DatasetKind.GovReport];

    public static string Prompt(string document) => Prefix + document + Suffix;

    private sealed record Settings(int MaxInputTokens, int MaxNewTokens, double Temperature, double TopP, int Seed,
        int? MaxDocuments, bool UseStemmer, bool SkipMalformed);

    private static Settings Parse(EvalParameters p, IEvalModel model, RopeScaling rope)
    {
        int maxNew = p.Int("max_new_tokens", 1000, 1, EvalLimits.MaxLength);
        int? maxInput = p.OptionalLength("max_input_tokens", 1, model.ContextWindow(rope));
        if (maxInput is null)
        {
            // What fits the context window next to the prompt's own words and the summary.
            int overhead = model.Encode(Prompt("")).Length;
            maxInput = Math.Max(16, model.ContextWindow(rope) - maxNew - overhead);
            p.Set("max_input_tokens", maxInput);
        }
        return new Settings(maxInput.Value, maxNew, p.Double("temperature", 0.5, 0, 2), p.Double("top_p", 0.95, 1e-6, 1),
            p.Int("seed", 0), p.OptionalInt("max_documents", 1), p.Bool("use_stemmer", true), p.Bool("skip_malformed", false));
    }

    protected override void Read(EvalParameters p, IEvalModel model, RopeScaling rope) => Parse(p, model, rope);

    public override JsonObject Run(EvalContext ctx)
    {
        var s = Parse(new EvalParameters(ctx.Parameters), ctx.Model, ctx.Rope);
        var data = ctx.LoadDataset(s.MaxDocuments, s.SkipMalformed);
        var docs = data.Documents;
        ctx.Ledger.SetTotal(docs.Count);
        var model = ctx.Model;
        // By document index, filled as units complete (in any order, when other hosts share the job).
        var scored = new (string Id, string Summary, RougeScores Scores, JsonObject Unit)?[docs.Count];

        JsonObject Results()
        {
            var perDoc = scored.Where(d => d is not null).Select(d => d!.Value).ToList();
            var mean = RougeScores.Mean(perDoc.Select(d => d.Scores).ToList());
            var results = mean.ToJson();
            results["use_stemmer"] = s.UseStemmer;
            results["documents"] = new JsonArray(perDoc.Select(d => (JsonNode)new JsonObject
            {
                ["id"] = d.Id, ["summary"] = d.Summary, ["scores"] = d.Scores.ToJson(),
                ["prompt_tokens"] = d.Unit["prompt_tokens"]!.DeepClone(), ["generated_tokens"] = d.Unit["generated_tokens"]!.DeepClone(),
                ["truncated"] = d.Unit["truncated"]!.DeepClone(),
            }).ToArray());
            if (data.SkippedLines.Count > 0)
                results["skipped_lines"] = new JsonArray(data.SkippedLines.Select(e => (JsonNode)e.ToString()).ToArray());
            return results;
        }

        var units = new List<UnitSpec>();
        for (int d = 0; d < docs.Count; d++)
        {
            var doc = docs[d];
            int seed = unchecked(s.Seed + d);
            units.Add(new UnitSpec(d, $"doc={doc.Id}/chars={doc.Text.Length}/seed={seed}", () =>
            {
                // Truncate the report to the token budget (the model's tokens, decoded back to text), then
                // tokenize the whole prompt once, BOS included.
                string text = doc.Text;
                var ids = model.Encode(text, addSpecialTokens: false);
                bool truncated = ids.Length > s.MaxInputTokens;
                if (truncated) text = model.Decode(ids.AsSpan(0, s.MaxInputTokens));
                var prompt = model.Encode(Prompt(text));
                var sampling = new SamplingParams { Temperature = (float)s.Temperature, TopP = (float)s.TopP, Seed = seed };
                ctx.WaitTurn();
                var output = model.Generate(prompt, s.MaxNewTokens, sampling, ctx.Rope, ctx.Cancellation);
                string summary = model.Decode(output).Trim();
                return new UnitOutcome(new JsonObject
                {
                    ["summary"] = summary, ["prompt_tokens"] = prompt.Length, ["generated_tokens"] = output.Length, ["truncated"] = truncated,
                }, prompt.Length + output.Length);
            }));
        }
        ctx.Units(units, (d, unit) =>
        {
            var r = (JsonObject)unit;
            string summaryText = r["summary"]!.GetValue<string>();
            scored[d] = (docs[d].Id, summaryText, Rouge.Score(docs[d].Reference ?? "", summaryText, s.UseStemmer), r);
            ctx.Partial(Results);
        });
        return Results();
    }
}
