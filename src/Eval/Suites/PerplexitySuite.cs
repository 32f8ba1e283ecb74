using System.Text.Json.Nodes;
using PiServe.Eval.Models;
using PiServe.Inference.Rope;

namespace PiServe.Eval.Suites;

/// <summary>
/// Sliding-window perplexity (PI §3.2), as Hugging Face's perplexity guide computes it: for each
/// window size W and stride S, windows start at 0, S, 2S, ... and end at min(begin + W, n); each window
/// scores only the tokens the previous window did not (its last end − previous end tokens, never its
/// first token, which has no context). ppl = exp(mean NLL over all scored tokens of all documents).
/// S = W is the non-overlapping mode. Units: one (window, document) pair.
/// </summary>
public sealed class PerplexitySuite : EvalSuite
{
    public override string Kind => "perplexity";
    public override DatasetNeed Dataset => DatasetNeed.Required;

    private sealed record Settings(int[] Windows, int Stride, bool NonOverlapping, int? MaxDocuments, int? MaxTokens, bool SkipMalformed);

    private static Settings Parse(EvalParameters p, IEvalModel model, RopeScaling rope)
    {
        var windows = p.OptionalLengthList("windows", 2, model.ContextWindow(rope));
        if (windows is null)
        {
            windows = [model.ContextWindow(rope)];
            p.Set("windows", new JsonArray(windows[0]));
        }
        int stride = p.Int("stride", 256, 1);
        bool nonOverlapping = p.Bool("non_overlapping", false);
        return new Settings(windows, stride, nonOverlapping, p.OptionalInt("max_documents", 1), p.OptionalInt("max_tokens", 2, EvalLimits.MaxLength * 64),
            p.Bool("skip_malformed", false));
    }

    protected override void Read(EvalParameters p, IEvalModel model, RopeScaling rope) => Parse(p, model, rope);

    /// <summary>The stride used with a window: the configured one, or the window when non-overlapping or when the stride exceeds it (no token left unscored).</summary>
    private static int StrideFor(Settings s, int window) => s.NonOverlapping ? window : Math.Min(s.Stride, window);

    public override JsonObject Run(EvalContext ctx)
    {
        var s = Parse(new EvalParameters(ctx.Parameters), ctx.Model, ctx.Rope);
        var data = ctx.LoadDataset(s.MaxDocuments, s.SkipMalformed);
        var docs = data.Documents;
        var tokens = docs.Select(d => ctx.Tokenize(d.Text, s.MaxTokens)).ToArray();
        ctx.Ledger.SetTotal(s.Windows.Length * docs.Count);

        var nll = new double[s.Windows.Length, docs.Count];
        var counts = new long[s.Windows.Length, docs.Count];
        var done = new bool[s.Windows.Length, docs.Count];
        JsonObject Results()
        {
            var windows = new JsonArray();
            for (int w = 0; w < s.Windows.Length; w++)
            {
                double sum = 0;
                long n = 0;
                var perDoc = new JsonArray();
                for (int d = 0; d < docs.Count; d++)
                {
                    if (!done[w, d]) continue;
                    sum += nll[w, d];
                    n += counts[w, d];
                    perDoc.Add(new JsonObject
                    {
                        ["id"] = docs[d].Id,
                        ["ppl"] = counts[w, d] > 0 ? Num(Math.Exp(nll[w, d] / counts[w, d])) : null,
                        ["tokens"] = counts[w, d],
                    });
                }
                if (perDoc.Count == 0) continue;
                // Error bars over documents (bootstrap), when there are several: the spread a reader needs to compare rows.
                var measured = Enumerable.Range(0, docs.Count).Where(d => done[w, d]).Select(d => (nll[w, d], counts[w, d])).ToList();
                var ci = Metrics.ConfidenceIntervals.BootstrapPerplexity(measured, seed: w);
                windows.Add(new JsonObject
                {
                    ["window"] = s.Windows[w],
                    ["stride"] = StrideFor(s, s.Windows[w]),
                    ["ppl"] = n > 0 ? Num(Math.Exp(sum / n)) : null,
                    ["ppl_ci95"] = ci is { } c ? new JsonArray(Num(c.Low), Num(c.High)) : null,
                    ["nll"] = n > 0 ? Num(sum / n) : null,
                    ["tokens"] = n,
                    ["documents"] = perDoc,
                });
            }
            var results = new JsonObject { ["windows"] = windows };
            if (data.SkippedLines.Count > 0)
                results["skipped_lines"] = new JsonArray(data.SkippedLines.Select(e => (JsonNode)e.ToString()).ToArray());
            return results;
        }

        var units = new List<UnitSpec>();
        for (int w = 0; w < s.Windows.Length; w++)
        {
            int window = s.Windows[w], stride = StrideFor(s, window);
            for (int d = 0; d < docs.Count; d++)
            {
                var doc = tokens[d];
                units.Add(new UnitSpec(w * docs.Count + d, $"window={window}/stride={stride}/doc={docs[d].Id}/tokens={doc.Length}", () =>
                {
                    var (sum, n) = ScoreDocument(ctx, doc, window, stride);
                    return new UnitOutcome(new JsonObject { ["nll_sum"] = sum, ["tokens"] = n }, n);
                }));
            }
        }
        ctx.Units(units, (u, r) =>
        {
            int w = u / docs.Count, d = u % docs.Count;
            nll[w, d] = r["nll_sum"]!.GetValue<double>();
            counts[w, d] = r["tokens"]!.GetValue<long>();
            done[w, d] = true;
            ctx.Partial(Results);
        });
        return Results();
    }

    /// <summary>Σ −log p over the document's scored tokens and their count, window by window as HF's guide.</summary>
    public static (double NllSum, long Tokens) ScoreDocument(EvalContext ctx, int[] doc, int window, int stride)
    {
        double sum = 0;
        long count = 0;
        int n = doc.Length, prevEnd = 0;
        for (int begin = 0; begin < n; begin += stride)
        {
            int end = Math.Min(begin + window, n);
            int target = end - prevEnd, length = end - begin;
            int first = Math.Max(1, length - target); // the last `target` tokens, never the window's first
            if (first < length)
            {
                ctx.WaitTurn();
                var lps = ctx.Model.ScoreWindow(doc.AsSpan(begin, length), first, ctx.Rope, ctx.Cancellation);
                foreach (double lp in lps) sum -= lp;
                count += lps.Length;
            }
            prevEnd = end;
            if (end == n) break;
        }
        return (sum, count);
    }
}
