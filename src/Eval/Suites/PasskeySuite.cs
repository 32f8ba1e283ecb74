using System.Globalization;
using System.Text.Json.Nodes;
using PiServe.Eval.Models;
using PiServe.Inference.Generation;
using PiServe.Inference.Rope;

namespace PiServe.Eval.Suites;

/// <summary>
/// Passkey retrieval (PI §3.3, after Mohtashami &amp; Jaggi): a random 5-digit key hidden in filler text at
/// a chosen depth; the model must complete "The pass key is" with it (greedy decoding). For each prompt
/// length and each of `depths` key positions (from the start of the filler to its end, so the distance k
/// between the key and the end of the prompt spreads over the window) `trials` keys are tried.
/// k_max = the largest k such that every k' ≤ k has at least 20% success. Units: one trial.
/// </summary>
public sealed class PasskeySuite : EvalSuite
{
    public const string Task = "There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. I will quiz you about the important information there.";
    public const string Filler = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";
    public const string Question = "What is the pass key? The pass key is";
    public const double SuccessThreshold = 0.2;

    public override string Kind => "passkey";
    public override DatasetNeed Dataset => DatasetNeed.None;

    public static string InformationLine(int key) => $"The pass key is {key}. Remember it. {key} is the pass key.";

    /// <summary>
    /// The prompt: task, filler × <paramref name="before"/>, the key line, filler × <paramref name="after"/>,
    /// the question, one per line (fillers within a line separated by spaces).
    /// </summary>
    public static string Prompt(int key, int before, int after) => string.Join("\n",
        Task, Repeat(before), InformationLine(key), Repeat(after), Question);

    private static string Repeat(int n) => string.Join(" ", Enumerable.Repeat(Filler, n));

    private sealed record Settings(int[] Lengths, int Depths, int Trials, int Seed, int MaxNewTokens);

    private static Settings Parse(EvalParameters p, IEvalModel model, RopeScaling rope)
    {
        int window = model.ContextWindow(rope);
        int? target = p.OptionalLength("target_length", 16, window);
        var lengths = p.OptionalLengthList("lengths", 16, window);
        if (target is not null && lengths is not null)
            throw EvalRequestException.Bad(EvalParameters.P("lengths"), "give either 'target_length' or 'lengths', not both");
        lengths ??= [target ?? model.ContextWindow(rope)];
        if (target is null && !p.Has("lengths")) p.Set("target_length", lengths[0]);
        var settings = new Settings(lengths, p.Int("depths", 32, 1, 1000), p.Int("trials", 10, 1, 10000), p.Int("seed", 0),
            p.Int("max_new_tokens", 10, 1, 256));
        EvalParameters.CheckUnits("trials", (long)lengths.Length * settings.Depths * settings.Trials, "lengths × depths × trials");
        return settings;
    }

    protected override void Read(EvalParameters p, IEvalModel model, RopeScaling rope) => Parse(p, model, rope);

    /// <summary>The key of one trial: 5 digits from the seed and the trial's index (independent of the order units run in).</summary>
    public static int Key(int seed, int unit) => new Random(unchecked(seed * 1_000_003 + unit)).Next(10000, 100000);

    /// <summary>Depth of key position i of n: 0 = right after the task line, 1 = right before the question.</summary>
    public static double Depth(int i, int n) => n == 1 ? 0 : (double)i / (n - 1);

    /// <summary>How many filler sentences fit a prompt of <paramref name="length"/> tokens.</summary>
    public static int FillersFor(IEvalModel model, int length)
    {
        int Count(int n) => model.Encode(Prompt(12345, n, 0)).Length;
        int overhead = Count(0);
        double per = Math.Max(1e-9, (Count(16) - overhead) / 16.0);
        int fillers = Math.Max(0, (int)Math.Floor((length - overhead) / per));
        while (fillers > 0 && Count(fillers) > length) fillers--;
        while (Count(fillers + 1) <= length) fillers++;
        return fillers;
    }

    private sealed record Point(int Length, double Depth, int Before, int After, int K, int PromptTokens);

    public override JsonObject Run(EvalContext ctx)
    {
        var s = Parse(new EvalParameters(ctx.Parameters), ctx.Model, ctx.Rope);
        var model = ctx.Model;
        // Plan the grid: filler split and the measured distance k (tokens from the key line to the end).
        var points = new List<Point>();
        foreach (int length in s.Lengths)
        {
            ctx.Cancellation.ThrowIfCancellationRequested();
            int fillers = FillersFor(model, length);
            for (int i = 0; i < s.Depths; i++)
            {
                double depth = Depth(i, s.Depths);
                int before = (int)Math.Round(depth * fillers, MidpointRounding.AwayFromZero);
                string prompt = Prompt(12345, before, fillers - before);
                int total = model.Encode(prompt).Length;
                int head = model.Encode(prompt[..prompt.IndexOf(InformationLine(12345), StringComparison.Ordinal)]).Length;
                points.Add(new Point(length, depth, before, fillers - before, total - head, total));
            }
        }
        ctx.Ledger.SetTotal(points.Count * s.Trials);

        var successes = new int[points.Count];
        var ran = new int[points.Count];
        JsonObject Results() => Build(s, points, successes, ran);
        var greedy = new SamplingParams { Temperature = 0 };
        var units = new List<UnitSpec>();
        for (int p = 0; p < points.Count; p++)
        {
            var pt = points[p];
            for (int t = 0; t < s.Trials; t++)
            {
                int unit = p * s.Trials + t;
                int key = Key(s.Seed, unit);
                units.Add(new UnitSpec(unit, $"length={pt.Length}/depth={pt.Depth.ToString("R", CultureInfo.InvariantCulture)}/trial={t}/key={key}", () =>
                {
                    var prompt = model.Encode(Prompt(key, pt.Before, pt.After));
                    var output = model.Generate(prompt, s.MaxNewTokens, greedy, ctx.Rope, ctx.Cancellation);
                    string answer = model.Decode(output);
                    return new UnitOutcome(new JsonObject
                    {
                        ["key"] = key, ["answer"] = answer, ["success"] = IsCorrect(answer, key), ["prompt_tokens"] = prompt.Length,
                    }, prompt.Length + output.Length);
                }));
            }
        }
        ctx.Units(units, (u, r) =>
        {
            int p = u / s.Trials;
            ran[p]++;
            if (r["success"]!.GetValue<bool>()) successes[p]++;
            ctx.Partial(Results);
        });
        return Results();
    }

    /// <summary>Success: the first run of digits in the answer is the key.</summary>
    public static bool IsCorrect(string answer, int key)
    {
        int i = 0;
        while (i < answer.Length && !char.IsAsciiDigit(answer[i])) i++;
        int j = i;
        while (j < answer.Length && char.IsAsciiDigit(answer[j])) j++;
        return j > i && answer[i..j] == key.ToString(CultureInfo.InvariantCulture);
    }

    /// <summary>k_max: the largest k such that every point with k' ≤ k reaches 20% success (0 if the nearest fails).</summary>
    public static int KMax(IEnumerable<(int K, double SuccessRate)> points)
    {
        int kMax = 0;
        foreach (var group in points.GroupBy(p => p.K).OrderBy(g => g.Key))
        {
            if (group.All(p => p.SuccessRate >= SuccessThreshold - 1e-12)) kMax = group.Key;
            else break;
        }
        return kMax;
    }

    private static JsonArray Interval((double Low, double High) ci) => new(Math.Round(ci.Low, 6), Math.Round(ci.High, 6));

    private static JsonObject Build(Settings s, List<Point> points, int[] successes, int[] ran)
    {
        var measured = Enumerable.Range(0, points.Count).Where(i => ran[i] > 0).ToList();
        var json = new JsonArray();
        foreach (int i in measured.OrderBy(i => points[i].K).ThenBy(i => points[i].Length))
        {
            var pt = points[i];
            json.Add(new JsonObject
            {
                ["k"] = pt.K, ["depth"] = pt.Depth, ["length"] = pt.Length, ["prompt_tokens"] = pt.PromptTokens,
                ["trials"] = ran[i], ["successes"] = successes[i], ["success_rate"] = (double)successes[i] / ran[i],
                ["success_ci95"] = Interval(Metrics.ConfidenceIntervals.Wilson(successes[i], ran[i])),
            });
        }
        // Heatmap: success rate per (length, depth), null where not yet measured.
        var depths = Enumerable.Range(0, s.Depths).Select(i => Depth(i, s.Depths)).ToArray();
        var rows = new JsonArray();
        for (int l = 0; l < s.Lengths.Length; l++)
            rows.Add(new JsonArray(Enumerable.Range(0, s.Depths)
                .Select(d => l * s.Depths + d)
                .Select(i => ran[i] > 0 ? JsonValue.Create((double)successes[i] / ran[i]) : null).ToArray<JsonNode?>()));
        return new JsonObject
        {
            ["k_max"] = KMax(measured.Select(i => (points[i].K, (double)successes[i] / ran[i]))),
            ["points"] = json,
            ["grid"] = new JsonObject
            {
                ["lengths"] = new JsonArray(s.Lengths.Select(l => (JsonNode)l).ToArray()),
                ["depths"] = new JsonArray(depths.Select(d => (JsonNode)d).ToArray()),
                ["success_rate"] = rows,
            },
        };
    }
}
