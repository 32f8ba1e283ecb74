using System.Diagnostics;
using System.Text.Json.Nodes;
using PiServe.Inference.Cache;
using PiServe.Inference.Checkpoints;
using PiServe.Inference.Generation;
using PiServe.Inference.Kernels;
using PiServe.Inference.Model;

namespace PiServe.Api;

/// <summary>
/// The `bench` verb: prefill and decode speed of the engine on a checkpoint or a generated shape,
/// the same quantities llama-bench reports (pp N, tg M, tg after a depth-D context), plus memory and
/// the bandwidth ceiling the weights imply.
/// </summary>
public static class Bench
{
    public const string Usage = "bench --model DIR | --shape tiny|small|1b [--dtype bf16|f16|f32] [--prompt N] [--generate M] [--threads T] [--depth D] [--bandwidth-gbs B] [--repeat R]";

    public static JsonObject Run(string? modelDir, string? shapeName, string? dtypeName, int prompt, int generate, int threads, int depth, double bandwidthGbs, int repeat)
    {
        string dir = modelDir ?? PrepareShape(shapeName ?? throw new ArgumentException("--model or --shape is required"), dtypeName);
        using var model = LlamaModel.Load(dir, new CpuBackend(threads));
        var rng = new Random(1);
        int vocab = model.Config.VocabSize;
        int[] RandomTokens(int n) => Enumerable.Range(0, n).Select(_ => rng.Next(3, vocab)).ToArray();

        // Warm-up: JIT, page faults of the weights.
        using (var warm = new InferenceSession(model, prefillChunk: 256)) { warm.Prefill(RandomTokens(16)); warm.Append(5); }

        double prefillTps = 0, decodeTps = 0, depthTps = 0;
        for (int r = 0; r < repeat; r++)
        {
            var tokens = RandomTokens(prompt);
            using var session = new InferenceSession(model, prefillChunk: 512, initialCapacity: prompt + generate);
            var clock = Stopwatch.StartNew();
            var logits = session.Prefill(tokens);
            prefillTps = Math.Max(prefillTps, prompt / clock.Elapsed.TotalSeconds);
            clock.Restart();
            for (int i = 0; i < generate; i++) logits = session.Append(GreedyGenerator.ArgMax(logits));
            decodeTps = Math.Max(decodeTps, generate / clock.Elapsed.TotalSeconds);
        }
        if (depth > 0)
        {
            using var session = new InferenceSession(model, prefillChunk: 512, initialCapacity: depth + generate);
            var logits = session.Prefill(RandomTokens(depth));
            var clock = Stopwatch.StartNew();
            for (int i = 0; i < generate; i++) logits = session.Append(GreedyGenerator.ArgMax(logits));
            depthTps = generate / clock.Elapsed.TotalSeconds;
        }

        long weightBytes = model.WeightBytes;
        double ceiling = bandwidthGbs * 1e9 / weightBytes;
        using var self = Process.GetCurrentProcess();
        return new JsonObject
        {
            ["model"] = dir,
            ["dtype"] = model.WeightDType.ToString().ToLowerInvariant(),
            ["parameters"] = model.ParameterCount,
            ["threads"] = threads > 0 ? threads : Environment.ProcessorCount,
            ["prompt_tokens"] = prompt,
            ["generated_tokens"] = generate,
            ["prefill_tokens_per_second"] = Math.Round(prefillTps, 1),
            ["decode_tokens_per_second"] = Math.Round(decodeTps, 1),
            ["depth"] = depth,
            ["decode_tokens_per_second_at_depth"] = depth > 0 ? Math.Round(depthTps, 1) : null,
            ["weight_bytes"] = weightBytes,
            ["decode_effective_gb_per_second"] = Math.Round(decodeTps * weightBytes / 1e9, 2),
            ["bandwidth_gb_per_second_assumed"] = bandwidthGbs,
            ["decode_ceiling_tokens_per_second"] = Math.Round(ceiling, 1),
            ["decode_fraction_of_ceiling"] = Math.Round(decodeTps / ceiling, 3),
            ["kv_bytes_per_token"] = KvCache.BytesPerTokenFor(model.Config),
            ["peak_working_set_bytes"] = self.PeakWorkingSet64,
        };
    }

    /// <summary>Random checkpoints of the named shapes, written once under the temp folder and reused.</summary>
    private static string PrepareShape(string shapeName, string? dtypeName)
    {
        var shape = Verbs.ShapeNamed(shapeName);
        var dtype = Verbs.DTypeNamed(dtypeName);
        string dir = Path.Combine(Path.GetTempPath(), "piserve-bench", $"{shapeName}-{dtype.ToString().ToLowerInvariant()}");
        if (!File.Exists(Path.Combine(dir, Checkpoint.SingleFile)))
        {
            string tmp = dir + ".tmp-" + Environment.ProcessId;
            RandomCheckpoint.Write(tmp, shape, dtype, seed: 0);
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
            Directory.Move(tmp, dir);
        }
        return dir;
    }
}
