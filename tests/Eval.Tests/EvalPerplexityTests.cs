using System.Text.Json.Nodes;
using PiServe.Eval.Datasets;
using PiServe.Eval.Suites;
using PiServe.Inference.Generation;

namespace PiServe.Eval.Tests;

/// <summary>Sliding-window perplexity equals exp(mean NLL) of the score verb's log-probs on the same windows.</summary>
[Collection("eval-compute")]
public class EvalPerplexityTests
{
    /// <summary>
    /// The reference, written independently from HF's perplexity guide: for begin in range(0, n, stride):
    /// end = min(begin + window, n); trg = end − prev_end; score the last trg tokens of input[begin:end]
    /// (the window's first token has no prediction); with Scoring.Score's full-forward log-probs.
    /// </summary>
    private static (double NllSum, int Tokens) Reference(int[] doc, int window, int stride, JsonObject? rope = null)
    {
        var model = EvalFixtures.TinyModel;
        double nll = 0;
        int count = 0, prevEnd = 0;
        for (int begin = 0; begin < doc.Length; begin += stride)
        {
            int end = Math.Min(begin + window, doc.Length);
            int trg = end - prevEnd;
            var lps = Scoring.Score(model, doc.AsSpan(begin, end - begin), model.ResolveRope(rope)).LogProbs;
            for (int i = Math.Max(1, lps.Length - trg); i < lps.Length; i++)
            {
                nll -= lps[i]!.Value;
                count++;
            }
            prevEnd = end;
            if (end == doc.Length) break;
        }
        return (nll, count);
    }

    [Theory]
    [InlineData(64, 64)]   // non-overlapping: stride = window
    [InlineData(96, 32)]   // sliding: stride < window
    [InlineData(48, 200)]  // stride past the window: clamped to the window (no token left unscored)
    public void PerplexityMatchesScoreVerbLogProbs(int window, int stride)
    {
        using var tmp = new TempDir();
        var dir = EvalFixtures.WritePg19(tmp.File("pg19"), books: 2, words: 150);
        var results = EvalFixtures.Run("perplexity", new JsonObject { ["windows"] = new JsonArray(window), ["stride"] = stride },
            new DatasetSource("pg", DatasetKind.Pg19, dir));
        var w = results["windows"]![0]!;
        int effective = Math.Min(stride, window);
        Assert.Equal(effective, w["stride"]!.GetValue<int>());

        double total = 0;
        int tokens = 0;
        var docs = w["documents"]!.AsArray();
        for (int d = 0; d < 2; d++)
        {
            var ids = EvalFixtures.TinyTokenizer.Encode(EvalFixtures.Text(100 + d, 150)); // BOS included, once per document
            Assert.True(ids.Length > window, $"document {d} has {ids.Length} tokens, not more than the window");
            var (nll, n) = Reference(ids, window, effective);
            Assert.Equal(n, docs[d]!["tokens"]!.GetValue<int>());
            Assert.Equal(Math.Exp(nll / n), docs[d]!["ppl"]!.GetValue<double>(), 1e-9 * Math.Exp(nll / n));
            total += nll;
            tokens += n;
        }
        // Every token but the first is scored exactly once, whatever the stride.
        Assert.Equal(tokens, w["tokens"]!.GetValue<int>());
        Assert.Equal(total / tokens, w["nll"]!.GetValue<double>(), 1e-12);
        Assert.Equal(Math.Exp(total / tokens), w["ppl"]!.GetValue<double>(), 1e-9 * Math.Exp(total / tokens));
        // The bootstrap interval over the documents brackets the corpus perplexity.
        var ci = w["ppl_ci95"]!.AsArray().Select(x => x!.GetValue<double>()).ToArray();
        Assert.True(ci[0] <= w["ppl"]!.GetValue<double>() && w["ppl"]!.GetValue<double>() <= ci[1], w.ToJsonString());
    }

    [Fact]
    public void SeveralWindowsTruncationRopeOverrideAndProofPile()
    {
        using var tmp = new TempDir();
        var file = EvalFixtures.WriteProofPile(tmp.File("pp.jsonl"), docs: 3, words: 80);
        var rope = new JsonObject { ["rope_type"] = "linear", ["factor"] = 2.0 };
        var results = EvalFixtures.Run("perplexity", new JsonObject
        {
            ["windows"] = new JsonArray(64, 32), ["non_overlapping"] = true, ["max_documents"] = 2, ["max_tokens"] = 100,
        }, new DatasetSource("pp", DatasetKind.ProofPile, file), ropeScaling: rope);
        var windows = results["windows"]!.AsArray();
        Assert.Equal([32, 64], windows.Select(w => w!["window"]!.GetValue<int>()));
        foreach (var w in windows)
        {
            int window = w!["window"]!.GetValue<int>();
            Assert.Equal(window, w["stride"]!.GetValue<int>());
            var docs = w["documents"]!.AsArray();
            Assert.Equal(2, docs.Count);
            var ids = EvalFixtures.TinyTokenizer.Encode(EvalFixtures.Text(200, 80))[..100];
            var (nll, n) = Reference(ids, window, window, rope);
            // Non-overlapping windows skip each window's first token: 100 tokens in windows of 32 → 4 windows, 4 unscored.
            Assert.Equal(100 - (100 + window - 1) / window, n);
            Assert.Equal(n, docs[0]!["tokens"]!.GetValue<int>());
            Assert.Equal(Math.Exp(nll / n), docs[0]!["ppl"]!.GetValue<double>(), 1e-9 * Math.Exp(nll / n));
        }
    }

    [Fact]
    public void BadParametersAreNamed()
    {
        var suite = EvalSuite.Get("perplexity");
        var model = EvalFixtures.Tiny();
        EvalRequestException Bad(string json) =>
            Assert.Throws<EvalRequestException>(() => suite.Normalize(JsonNode.Parse(json)!.AsObject(), model, model.DefaultRope));
        Assert.Equal("parameters.windows", Bad("""{"windows": [1]}""").Param);
        Assert.Equal("parameters.windows", Bad("""{"windows": "big"}""").Param);
        Assert.Equal("parameters.stride", Bad("""{"stride": 0}""").Param);
        Assert.Equal("parameters.stride", Bad("""{"stride": 1.5}""").Param);
        Assert.Equal("parameters.window", Bad("""{"window": 64}""").Param);
        Assert.Equal("kind", Assert.Throws<EvalRequestException>(() => EvalSuite.Get("perplexities")).Param);
        var normalized = suite.Normalize(null, model, model.DefaultRope);
        Assert.Equal(512, normalized["windows"]![0]!.GetValue<int>()); // default: the context window
        Assert.Equal(256, normalized["stride"]!.GetValue<int>());
    }
}
