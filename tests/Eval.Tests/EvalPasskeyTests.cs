using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using PiServe.Eval.Models;
using PiServe.Eval.Suites;
using PiServe.Inference.Checkpoints;
using PiServe.Inference.Generation;
using PiServe.Inference.Model;
using PiServe.Inference.Rope;

namespace PiServe.Eval.Tests;

/// <summary>Passkey retrieval: the exact prompt, k, success and k_max.</summary>
[Collection("eval-compute")]
public partial class EvalPasskeyTests
{
    [Fact]
    public void PromptIsMohtashamiAndJaggisText()
    {
        const string filler = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";
        string expected =
            "There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. I will quiz you about the important information there.\n"
            + filler + " " + filler + "\n"
            + "The pass key is 68714. Remember it. 68714 is the pass key.\n"
            + filler + "\n"
            + "What is the pass key? The pass key is";
        Assert.Equal(expected, PasskeySuite.Prompt(68714, before: 2, after: 1));
        Assert.Equal(
            "There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. I will quiz you about the important information there.\n"
            + "\nThe pass key is 10000. Remember it. 10000 is the pass key.\n" + filler + "\nWhat is the pass key? The pass key is",
            PasskeySuite.Prompt(10000, 0, 1));
    }

    [Fact]
    public void KeysAreFiveDigitsFromTheSeed()
    {
        var keys = Enumerable.Range(0, 200).Select(u => PasskeySuite.Key(3, u)).ToList();
        Assert.All(keys, k => Assert.InRange(k, 10000, 99999));
        Assert.Equal(keys, Enumerable.Range(0, 200).Select(u => PasskeySuite.Key(3, u)));
        Assert.NotEqual(keys, Enumerable.Range(0, 200).Select(u => PasskeySuite.Key(4, u)));
        Assert.True(keys.Distinct().Count() > 190);
    }

    [Theory]
    [InlineData(" 68714.", true)]
    [InlineData("68714", true)]
    [InlineData(" is 68714 indeed", true)]
    [InlineData(" 687145", false)]
    [InlineData(" 6871", false)]
    [InlineData(" 12345 68714", false)]
    [InlineData(" none", false)]
    public void SuccessMeansTheFirstNumberIsTheKey(string answer, bool correct) => Assert.Equal(correct, PasskeySuite.IsCorrect(answer, 68714));

    [Fact]
    public void KMaxIsTheLargestKWithEverySmallerKAtLeast20Percent()
    {
        Assert.Equal(300, PasskeySuite.KMax([(100, 1.0), (200, 0.2), (300, 0.5), (400, 0.1), (500, 1.0)]));
        Assert.Equal(0, PasskeySuite.KMax([(100, 0.1), (200, 1.0)]));
        Assert.Equal(500, PasskeySuite.KMax([(500, 0.3), (100, 0.9)]));
        // Two lengths give points at the same k: both must pass.
        Assert.Equal(100, PasskeySuite.KMax([(100, 1.0), (200, 1.0), (200, 0.0), (300, 1.0)]));
    }

    /// <summary>
    /// One token per character; "retrieves" the key when it lies at most <see cref="Reach"/> tokens
    /// before the end of the prompt, else answers a wrong number. Exercises the bookkeeping exactly.
    /// </summary>
    private sealed partial class ShortSightedModel : IEvalModel
    {
        public const int Reach = 900;
        public string Id => "short-sighted";
        public ModelConfig Config => EvalFixtures.TinyModel.Config;
        public RopeScaling DefaultRope => EvalFixtures.TinyModel.Rope;
        public RopeScaling ResolveRope(JsonObject? ropeScaling) => EvalFixtures.TinyModel.ResolveRope(ropeScaling);
        public int ContextWindow(RopeScaling rope) => 100_000;
        public int[] Encode(string text, bool addSpecialTokens = true) => (addSpecialTokens ? [1] : Array.Empty<int>()).Concat(text.Select(c => (int)c)).ToArray();
        public string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = true) => new(ids.ToArray().Where(i => i > 1).Select(i => (char)i).ToArray());
        public bool InteractiveBusy => false;
        public double[] ScoreWindow(ReadOnlySpan<int> tokens, int firstScored, RopeScaling rope, CancellationToken c) => throw new NotSupportedException();
        public void ObserveQueryKeys(ReadOnlySpan<int> tokens, RopeScaling rope, ForwardScratch.QueryKeyObserver observer) => throw new NotSupportedException();

        public int[] Generate(ReadOnlySpan<int> prompt, int maxNewTokens, SamplingParams sampling, RopeScaling rope, CancellationToken c)
        {
            string text = Decode(prompt);
            var m = KeyLine().Match(text);
            int distance = prompt.Length - 1 - m.Index; // tokens from the key line to the end (BOS excluded)
            return Encode(distance <= Reach ? $" {m.Groups[1].Value}." : " 11111.", false);
        }

        [GeneratedRegex(@"The pass key is (\d{5})\. Remember it")]
        private static partial Regex KeyLine();
    }

    [Fact]
    public void SuccessRatesAndKMaxFollowWhatTheModelRetrieves()
    {
        var results = EvalFixtures.Run("passkey",
            new JsonObject { ["lengths"] = new JsonArray(1200, 2000), ["depths"] = 5, ["trials"] = 3, ["seed"] = 11 },
            model: new ShortSightedModel());
        var points = results["points"]!.AsArray();
        Assert.Equal(10, points.Count);
        var ks = points.Select(p => p!["k"]!.GetValue<int>()).ToList();
        Assert.Equal(ks.Order(), ks); // sorted by distance
        foreach (var p in points)
        {
            int k = p!["k"]!.GetValue<int>(), length = p["length"]!.GetValue<int>();
            Assert.Equal(3, p["trials"]!.GetValue<int>());
            Assert.Equal(k <= ShortSightedModel.Reach ? 3 : 0, p["successes"]!.GetValue<int>());
            // Wilson's 95% interval of 3/3 or 0/3 (statsmodels: [0.4385, 1] and [0, 0.5615]).
            var ci = p["success_ci95"]!.AsArray().Select(x => x!.GetValue<double>()).ToArray();
            Assert.Equal(k <= ShortSightedModel.Reach ? [0.438503, 1.0] : [0.0, 0.561497], ci);
            Assert.InRange(p["prompt_tokens"]!.GetValue<int>(), length - 100, length); // filler sentences fill the length
            Assert.InRange(k, 1, length);
        }
        Assert.Equal(ks.Where(k => k <= ShortSightedModel.Reach).Max(), results["k_max"]!.GetValue<int>());
        // Heatmap: lengths × depths; the key at depth 1 (just before the question) is always found.
        var grid = results["grid"]!;
        Assert.Equal([0.0, 0.25, 0.5, 0.75, 1.0], grid["depths"]!.AsArray().Select(d => d!.GetValue<double>()));
        var rows = grid["success_rate"]!.AsArray();
        Assert.Equal(2, rows.Count);
        Assert.All(rows, r => Assert.Equal(1.0, r![4]!.GetValue<double>()));
        Assert.Equal(0.0, rows[1]![0]!.GetValue<double>()); // the key 2000 tokens back is out of reach
    }

    [Fact]
    public void RunsOnTheTinyModelWithItsTokenizer()
    {
        var p = new JsonObject { ["target_length"] = 96, ["depths"] = 3, ["trials"] = 2, ["max_new_tokens"] = 4 };
        var a = EvalFixtures.Run("passkey", p);
        Assert.Equal(a.ToJsonString(), EvalFixtures.Run("passkey", p).ToJsonString()); // greedy and seeded: repeatable
        var points = a["points"]!.AsArray();
        Assert.Equal(3, points.Count);
        Assert.All(points, pt => Assert.InRange(pt!["prompt_tokens"]!.GetValue<int>(), 70, 96));
        // k shrinks as the key moves towards the question.
        var byDepth = points.OrderBy(pt => pt!["depth"]!.GetValue<double>()).Select(pt => pt!["k"]!.GetValue<int>()).ToList();
        Assert.Equal(byDepth.OrderDescending(), byDepth);
        Assert.True(a["k_max"]!.GetValue<int>() >= 0);
    }
}
