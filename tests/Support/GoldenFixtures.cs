using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using PiServe.Inference.Model;

namespace PiServe.Tests.Support;

/// <summary>
/// The reference outputs written by tools/reference/make_fixtures.py (float64 PyTorch implementation
/// of HF's Llama and rope functions) for the checkpoints in tests/fixtures/models.
/// </summary>
public sealed record GoldenRun(int[] Tokens, double[] Margins);

public sealed record GoldenCase(
    string Model, string Name, JsonObject? RopeScaling, int[] Tokens, double?[] LogProbs, double[] LastLogits,
    int MaxTokens, GoldenRun Full, GoldenRun Hf, GoldenRun Planned)
{
    public override string ToString() => $"{Model}/{Name}";
}

public static class GoldenFixtures
{
    public const double Tolerance = 1e-3;

    private static readonly ConcurrentDictionary<string, LlamaModel> Models = new();

    public static string ModelDir(string name) => Path.Combine(RepoPaths.Fixtures, "models", name);

    /// <summary>Models are read-only and shared by the tests (xunit runs classes in parallel).</summary>
    public static LlamaModel Model(string name) => Models.GetOrAdd(name, n => LlamaModel.Load(ModelDir(n)));

    public static IReadOnlyList<GoldenCase> All { get; } = Load();

    public static IEnumerable<object[]> Cases() => All.Select(c => new object[] { c.ToString() });

    public static GoldenCase Get(string id) => All.Single(c => c.ToString() == id);

    private static List<GoldenCase> Load()
    {
        var list = new List<GoldenCase>();
        var dir = Path.Combine(RepoPaths.Fixtures, "golden");
        if (!Directory.Exists(dir)) return list;
        foreach (var file in Directory.GetFiles(dir, "*.json").OrderBy(f => f, StringComparer.Ordinal))
        {
            var root = JsonNode.Parse(File.ReadAllText(file))!.AsObject();
            string model = root["model"]!.GetValue<string>();
            foreach (var c in root["cases"]!.AsArray())
            {
                var gen = c!["generate"]!;
                list.Add(new GoldenCase(
                    model,
                    c["name"]!.GetValue<string>(),
                    c["rope_scaling"] as JsonObject,
                    Ints(c["tokens"]!),
                    c["logprobs"]!.AsArray().Select(v => v is null ? (double?)null : v.GetValue<double>()).ToArray(),
                    c["last_logits"]!.AsArray().Select(v => v!.GetValue<double>()).ToArray(),
                    gen["max_tokens"]!.GetValue<int>(),
                    Run(gen["full"]!), Run(gen["hf"]!), Run(gen["planned"]!)));
            }
        }
        return list;
    }

    private static GoldenRun Run(JsonNode n) =>
        new(Ints(n["tokens"]!), n["margins"]!.AsArray().Select(v => v!.GetValue<double>()).ToArray());

    private static int[] Ints(JsonNode n) => n.AsArray().Select(v => v!.GetValue<int>()).ToArray();
}
