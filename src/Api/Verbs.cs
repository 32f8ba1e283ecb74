using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using PiServe.Eval.Datasets;
using PiServe.Eval.Models;
using PiServe.Eval.Suites;
using PiServe.Inference.Cache;
using PiServe.Inference.Checkpoints;
using PiServe.Inference.Generation;
using PiServe.Inference.Model;
using PiServe.Inference.Rope;
using PiServe.Inference.Tokenization;

namespace PiServe.Api;

/// <summary>
/// Command-line verbs that drive the engine without the server. Each prints one JSON object to
/// stdout; on failure the exit code is non-zero and {"error": "..."} goes to stderr.
/// </summary>
public static class Verbs
{
    private static readonly Dictionary<string, (Func<VerbArgs, JsonObject> Run, string Usage)> All = new()
    {
        ["tokenize"] = (Tokenize, "tokenize --model DIR --text STR [--no-special]"),
        ["score"] = (Score, "score --model DIR --tokens 1,2,3 [--rope-scaling JSON] [--threads N] [--backend cpu|cuda|ilgpu-cpu]"),
        ["random-checkpoint"] = (RandomCheckpointVerb, "random-checkpoint --out DIR --shape " + ShapeNames + " [--dtype bf16|f16|f32] [--vocab N] [--seed N] [--tokenizer DIR]"),
        ["eval"] = (EvalVerb, "eval --model DIR --kind perplexity|passkey|govreport|longrope-search|attention-scores [--dataset PATH] [--dataset-kind pg19|proof-pile|govreport] [--parameters JSON] [--rope-scaling JSON] [--threads N] [--backend cpu|cuda|ilgpu-cpu]"),
        ["bench"] = (a => Bench.Run(a.Value("model"), a.Value("shape"), a.Value("dtype"), a.Int("prompt") ?? 512, a.Int("generate") ?? 128,
            a.Int("threads") ?? 0, a.Int("depth") ?? 0, a.Double("bandwidth-gbs") ?? 0, a.Int("repeat") ?? 1, a.Value("kv-dtype"), a.Value("backend"), a.Value("matmul-precision"), a.Int("batch") ?? 0), Bench.Usage),
        ["generate"] = (Generate, "generate --model DIR --tokens 1,2,3 --max-tokens N [--no-cache] [--rope-cache exact|planned|hf] [--rope-scaling JSON] [--ignore-eos] [--threads N] [--backend cpu|cuda|ilgpu-cpu]"),
    };

    /// <summary>Plain quotes and non-ASCII text in terminal output (the default encoder escapes them for HTML).</summary>
    private static readonly JsonSerializerOptions CliJson = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static bool IsVerb(string arg) => All.ContainsKey(arg);

    public static int Run(string[] args) => Run(args, Console.Out, Console.Error);

    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        var (run, usage) = All[args[0]];
        try
        {
            var parsed = VerbArgs.Parse(args.AsSpan(1), usage);
            var result = run(parsed);
            stdout.WriteLine(result.ToJsonString(CliJson));
            return 0;
        }
        catch (Exception e) when (e is UsageException or CheckpointFormatException or RopeScalingException
                                      or TokenizerFormatException or ArgumentException or IOException or JsonException
                                      or UnauthorizedAccessException or InvalidOperationException
                                      or EvalRequestException or EvalFailedException)
        {
            string message = e is JsonException ? $"invalid JSON: {e.Message}" : e.Message;
            if (e is EvalRequestException { Param: { } param }) message += $" (param: {param})";
            stderr.WriteLine(new JsonObject { ["error"] = message }.ToJsonString(CliJson));
            return e is UsageException or EvalRequestException ? 2 : 1;
        }
    }

    private static JsonObject Tokenize(VerbArgs a)
    {
        var tokenizer = TokenizerLoader.Load(a.Required("model"));
        var ids = tokenizer.Encode(a.Required("text"), addSpecialTokens: !a.Flag("no-special"));
        return new JsonObject { ["tokens"] = IntArray(ids) };
    }

    private static JsonObject Score(VerbArgs a)
    {
        using var model = LoadModel(a.Required("model"), a);
        var tokens = a.Tokens();
        var rope = model.ResolveRope(a.RopeScaling());
        var result = Scoring.Score(model, tokens, rope);
        var logprobs = new JsonArray();
        foreach (var lp in result.LogProbs) logprobs.Add(lp is { } v ? JsonValue.Create(v) : null);
        var top = new JsonArray();
        foreach (var (id, logit) in Scoring.TopK(result.LastLogits, 20))
            top.Add(new JsonArray(id, (double)logit));
        return new JsonObject { ["tokens"] = IntArray(tokens), ["logprobs"] = logprobs, ["last_top"] = top };
    }

    private static JsonObject Generate(VerbArgs a)
    {
        using var model = LoadModel(a.Required("model"), a);
        var prompt = a.Tokens();
        int maxTokens = a.Int("max-tokens") ?? throw new UsageException("--max-tokens is required");
        if (maxTokens < 0) throw new UsageException("--max-tokens must be >= 0");
        var rope = model.ResolveRope(a.RopeScaling());
        int[] stop = a.Flag("ignore-eos") ? [] : model.Config.EosTokenIds;
        var policy = a.Value("rope-cache") switch
        {
            null or "exact" => KvCachePolicy.Exact,
            "planned" => KvCachePolicy.Planned,
            "hf" => KvCachePolicy.Hf,
            var other => throw new UsageException($"--rope-cache must be exact, planned or hf, got '{other}'"),
        };
        var clock = Stopwatch.StartNew();
        var result = a.Flag("no-cache")
            ? GreedyGenerator.GenerateWithoutCache(model, prompt, maxTokens, rope, stop)
            : GreedyGenerator.Generate(model, prompt, maxTokens, policy, rope, stop);
        double seconds = clock.Elapsed.TotalSeconds;
        return new JsonObject
        {
            ["tokens"] = IntArray(result.Tokens),
            ["finish_reason"] = result.FinishReason,
            ["rope_cache"] = a.Flag("no-cache") ? "none" : policy.ToString().ToLowerInvariant(),
            ["rebuilds"] = result.Rebuilds,
            ["seconds"] = Math.Round(seconds, 4),
            ["tokens_per_second"] = seconds > 0 ? Math.Round(result.Tokens.Length / seconds, 2) : null,
        };
    }

    /// <summary>Writes a checkpoint of a known shape with seeded random weights (benchmarks; no download needed).</summary>
    private static JsonObject RandomCheckpointVerb(VerbArgs a)
    {
        string dir = a.Required("out");
        var shape = ShapeNamed(a.Required("shape"));
        if (a.Int("vocab") is { } vocab) shape = shape with { Vocab = vocab };
        var dtype = DTypeNamed(a.Value("dtype"));
        RandomCheckpoint.Write(dir, shape, dtype, a.Int("seed") ?? 0);
        if (a.Value("tokenizer") is { } tok)
            foreach (var f in new[] { "tokenizer.json", "tokenizer_config.json" })
                if (File.Exists(Path.Combine(tok, f))) File.Copy(Path.Combine(tok, f), Path.Combine(dir, f), overwrite: true);
        long parameters;
        using (var written = Inference.Model.LlamaModel.Load(dir)) parameters = written.ParameterCount; // counted from the tensors written
        return new JsonObject { ["path"] = Path.GetFullPath(dir), ["parameters"] = parameters, ["dtype"] = dtype.ToString().ToLowerInvariant() };
    }

    /// <summary>
    /// Runs one evaluation kind locally (no server, no job store) and prints its results object, the
    /// same JSON a job's "results" holds. Progress goes to stderr.
    /// </summary>
    private static JsonObject EvalVerb(VerbArgs a)
    {
        string dir = a.Required("model");
        var suite = EvalSuite.Get(a.Required("kind"));
        JsonObject? parameters = a.Value("parameters") is { } json
            ? JsonNode.Parse(json) as JsonObject ?? throw new UsageException("--parameters must be a JSON object")
            : null;
        DatasetSource? dataset = null;
        if (a.Value("dataset") is { } path)
        {
            if (!DatasetKinds.TryParse(a.Required("dataset-kind"), out var kind))
                throw new UsageException($"--dataset-kind must be one of {string.Join(", ", DatasetKinds.Names)}");
            if (suite.Dataset == DatasetNeed.None) throw new UsageException($"kind {suite.Kind} takes no dataset");
            if (suite.DatasetKinds is { } kinds && !kinds.Contains(kind))
                throw new UsageException($"kind {suite.Kind} needs a {string.Join(" or ", kinds.Select(DatasetKinds.Name))} dataset");
            dataset = new DatasetSource(Path.GetFileName(Path.GetFullPath(path).TrimEnd(Path.DirectorySeparatorChar)), kind, Path.GetFullPath(path));
        }
        else if (suite.Dataset == DatasetNeed.Required) throw new UsageException($"kind {suite.Kind} needs --dataset and --dataset-kind");

        using var model = LoadModel(dir, a);
        var evalModel = new LlamaEvalModel(Path.GetFileName(Path.GetFullPath(dir).TrimEnd(Path.DirectorySeparatorChar)), model, TokenizerLoader.Load(dir));
        var ropeJson = a.RopeScaling();
        var rope = evalModel.ResolveRope(ropeJson);
        var normalized = suite.Normalize(parameters, evalModel, rope);
        var clock = Stopwatch.StartNew();
        var ledger = new MemoryLedger
        {
            OnProgress = l => Console.Error.WriteLine($"eval: {l.CompletedUnits.Count}/{l.Total} units, {l.Tokens} tokens, {l.Tokens / Math.Max(1e-9, clock.Elapsed.TotalSeconds):F1} tokens/s"),
        };
        return suite.Run(new EvalContext
        {
            Model = evalModel, Rope = rope, RopeScalingJson = ropeJson, Parameters = normalized, Dataset = dataset, Ledger = ledger,
        });
    }

    private static Inference.Kernels.CpuBackend Backend(VerbArgs a) => new(a.Int("threads") ?? 0);

    /// <summary>The model on --backend (cpu by default; cuda or ilgpu-cpu run the forward pass through ILGPU).</summary>
    private static LlamaModel LoadModel(string dir, VerbArgs a)
    {
        var model = LlamaModel.Load(dir, Backend(a));
        try
        {
            var kind = Inference.Gpu.BackendKinds.Parse(a.Value("backend"));
            if (kind != Inference.Gpu.BackendKind.Cpu) Inference.Gpu.IlgpuLlamaModel.Attach(model, kind);
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    private static JsonArray IntArray(IEnumerable<int> ids) => new(ids.Select(i => (JsonNode)i).ToArray());

    /// <summary>A bad command line: exit code 2 (other failures exit 1).</summary>
    internal sealed class UsageException(string message) : Exception(message);

    /// <summary>The weight dtypes of `bench` and `random-checkpoint` (bf16 when not given).</summary>
    internal static DType DTypeNamed(string? name) => name switch
    {
        null or "bf16" => DType.BF16,
        "f16" => DType.F16,
        "f32" => DType.F32,
        _ => throw new UsageException($"--dtype must be bf16, f16 or f32, got '{name}'"),
    };

    /// <summary>The random-checkpoint shapes of `bench` and `random-checkpoint`.</summary>
    internal const string ShapeNames = "tiny|small|1b|phi3-mini-8l|qwen2.5-1.5b-8l|qwen3-0.6b";

    internal static RandomCheckpoint.Shape ShapeNamed(string name) => name switch
    {
        "tiny" => RandomCheckpoint.Shape.Tiny,
        "small" => RandomCheckpoint.Shape.Small,
        "1b" => RandomCheckpoint.Shape.TinyLlama1B,
        "phi3-mini-8l" => RandomCheckpoint.Shape.Phi3Mini8,
        "qwen2.5-1.5b-8l" => RandomCheckpoint.Shape.Qwen25Small8,
        "qwen3-0.6b" => RandomCheckpoint.Shape.Qwen3Small,
        _ => throw new UsageException($"--shape must be one of {ShapeNames}, got '{name}'"),
    };

    private sealed class VerbArgs
    {
        private static readonly HashSet<string> Flags = ["no-cache", "ignore-eos", "no-special"];
        private readonly Dictionary<string, string?> _values = new(StringComparer.Ordinal);
        private string _usage = "";

        public static VerbArgs Parse(ReadOnlySpan<string> args, string usage)
        {
            var parsed = new VerbArgs { _usage = usage };
            for (int i = 0; i < args.Length; i++)
            {
                if (!args[i].StartsWith("--", StringComparison.Ordinal))
                    throw new UsageException($"unexpected argument '{args[i]}'; usage: {usage}");
                string name = args[i][2..];
                if (!usage.Contains("--" + name + " ") && !usage.EndsWith("--" + name, StringComparison.Ordinal) && !usage.Contains("--" + name + "]"))
                    throw new UsageException($"unknown option --{name}; usage: {usage}");
                if (Flags.Contains(name)) { parsed._values[name] = null; continue; }
                if (i + 1 >= args.Length) throw new UsageException($"--{name} needs a value; usage: {usage}");
                parsed._values[name] = args[++i];
            }
            return parsed;
        }

        public bool Flag(string name) => _values.ContainsKey(name);
        public string? Value(string name) => _values.GetValueOrDefault(name);
        public string Required(string name) => Value(name) ?? throw new UsageException($"--{name} is required; usage: {_usage}");

        public int? Int(string name) => Value(name) is not { } s ? null
            : int.TryParse(s, out int v) ? v : throw new UsageException($"--{name} must be an integer, got '{s}'");

        public double? Double(string name) => Value(name) is not { } s ? null
            : double.TryParse(s, System.Globalization.CultureInfo.InvariantCulture, out double v) ? v : throw new UsageException($"--{name} must be a number, got '{s}'");

        public int[] Tokens()
        {
            string text = Required("tokens");
            var parts = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length == 0) throw new UsageException("--tokens is empty");
            return parts.Select(p => int.TryParse(p, out int id) && id >= 0 ? id
                : throw new UsageException($"--tokens: '{p}' is not a token id")).ToArray();
        }

        public JsonObject? RopeScaling()
        {
            if (Value("rope-scaling") is not { } json) return null;
            return JsonNode.Parse(json) switch
            {
                null => null,
                JsonObject o => o,
                _ => throw new UsageException("--rope-scaling must be a JSON object or null"),
            };
        }
    }
}
