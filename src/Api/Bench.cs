using System.Diagnostics;
using System.Runtime.Intrinsics;
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
    public const string Usage = "bench --model DIR | --shape " + Verbs.ShapeNames + " [--dtype bf16|f16|f32] [--prompt N] [--generate M] [--threads T] [--depth D] [--kv-dtype f32|f16|bf16] [--bandwidth-gbs B] [--repeat R] [--backend cpu|cuda|ilgpu-cpu] [--matmul-precision exact|bf16] [--batch B]";

    public static JsonObject Run(string? modelDir, string? shapeName, string? dtypeName, int prompt, int generate, int threads, int depth, double bandwidthGbs, int repeat, string? kvDType = null, string? backend = null, string? matmulPrecision = null, int batch = 0)
    {
        if (batch is < 0 or > 256) throw new Verbs.UsageException($"--batch must be in [0, 256] (got {batch})");
        string dir = modelDir ?? PrepareShape(shapeName ?? throw new ArgumentException("--model or --shape is required"), dtypeName);
        using var model = LlamaModel.Load(dir, new CpuBackend(threads));
        if (kvDType is not null) model.KvCacheType = KvCache.ParseElementType(kvDType);
        model.MatmulPrecision = MatmulPrecisions.Parse(matmulPrecision);
        var kind = Inference.Gpu.BackendKinds.Parse(backend);
        var engine = kind == Inference.Gpu.BackendKind.Cpu ? null : Inference.Gpu.IlgpuLlamaModel.Attach(model, kind);
        var rng = new Random(1);
        int vocab = model.Config.VocabSize;
        int[] RandomTokens(int n) => Enumerable.Range(0, n).Select(_ => rng.Next(3, vocab)).ToArray();

        // Warm-up: JIT, page faults of the weights.
        // Like llama-bench, one untimed run of the prompt test first (the JIT's later tiers and the
        // scratch buffers of a prompt this long), then one decode step.
        using (var warm = new InferenceSession(model, prefillChunk: 512, initialCapacity: Math.Max(16, prompt) + 1))
        {
            warm.Prefill(RandomTokens(Math.Max(16, Math.Min(prompt, 2048))));
            warm.Append(5);
        }

        // The three llama-bench tests: pp N (prefill of N tokens into an empty cache), tg M (M decode
        // steps from a one-token context) and tg M at depth D (after a D-token prefill). Best of --repeat.
        double prefillTps = 0, decodeTps = 0, depthTps = 0;
        for (int r = 0; r < repeat; r++)
        {
            if (prompt > 0)
            {
                using var session = new InferenceSession(model, prefillChunk: 512, initialCapacity: prompt);
                var tokens = RandomTokens(prompt);
                var clock = Stopwatch.StartNew();
                session.Prefill(tokens);
                prefillTps = Math.Max(prefillTps, prompt / clock.Elapsed.TotalSeconds);
            }
            if (generate > 0)
                decodeTps = Math.Max(decodeTps, Decode(1));
        }
        double depthPrefillSeconds = 0;
        if (depth > 0) depthTps = Decode(depth);
        // A decode batch (what a server runs with B streams): B sequences of 16 prompt tokens, then
        // --generate steps in which each appends one token, the weights read once per step.
        double batchTps = batch > 0 && generate > 0 ? DecodeBatch() : 0;

        double DecodeBatch()
        {
            var sessions = Enumerable.Range(0, batch).Select(_ => new InferenceSession(model, prefillChunk: 512, initialCapacity: 16 + generate)).ToList();
            try
            {
                var tokens = new int[batch];
                for (int b = 0; b < batch; b++) tokens[b] = GreedyGenerator.ArgMax(sessions[b].Prefill(RandomTokens(16)));
                using var scratch = new ForwardScratch(model.Config);
                var logits = new float[batch * vocab];
                InferenceSession.AppendBatch(sessions, tokens, scratch, logits); // warm: scratch sized, code paths hot
                for (int b = 0; b < batch; b++) tokens[b] = GreedyGenerator.ArgMax(sessions[b].Logits);
                var clock = Stopwatch.StartNew();
                for (int i = 1; i < generate; i++)
                {
                    InferenceSession.AppendBatch(sessions, tokens, scratch, logits);
                    for (int b = 0; b < batch; b++) tokens[b] = GreedyGenerator.ArgMax(sessions[b].Logits);
                }
                return generate > 1 ? batch * (generate - 1) / clock.Elapsed.TotalSeconds : 0;
            }
            finally
            {
                foreach (var session in sessions) session.Dispose();
            }
        }

        double Decode(int context)
        {
            using var session = new InferenceSession(model, prefillChunk: 512, initialCapacity: context + generate);
            var clock = Stopwatch.StartNew();
            var logits = session.Prefill(RandomTokens(context));
            if (context == depth) depthPrefillSeconds = clock.Elapsed.TotalSeconds;
            if (generate == 0) return 0;
            clock.Restart();
            for (int i = 0; i < generate; i++) logits = session.Append(GreedyGenerator.ArgMax(logits));
            return generate / clock.Elapsed.TotalSeconds;
        }

        // On a device the ceiling is its memory bandwidth, which only the caller knows (--bandwidth-gbs, e.g. 4800 for an H200).
        if (bandwidthGbs <= 0 && engine is null) bandwidthGbs = MeasureReadBandwidth(threads > 0 ? threads : Environment.ProcessorCount);
        long weightBytes = model.WeightBytes;
        double ceiling = bandwidthGbs * 1e9 / weightBytes;
        using var self = Process.GetCurrentProcess();
        return new JsonObject
        {
            ["model"] = dir,
            ["backend"] = model.Name,
            ["device"] = engine?.Device.Name,
            ["dtype"] = model.WeightDType.ToString().ToLowerInvariant(),
            ["parameters"] = model.ParameterCount,
            ["threads"] = threads > 0 ? threads : Environment.ProcessorCount,
            ["prompt_tokens"] = prompt,
            ["generated_tokens"] = generate,
            ["prefill_tokens_per_second"] = Math.Round(prefillTps, 1),
            ["decode_tokens_per_second"] = Math.Round(decodeTps, 1),
            ["depth"] = depth,
            ["decode_tokens_per_second_at_depth"] = depth > 0 && generate > 0 ? Math.Round(depthTps, 1) : null,
            ["depth_prefill_seconds"] = depth > 0 ? Math.Round(depthPrefillSeconds, 1) : null,
            ["batch"] = batch,
            ["batch_decode_tokens_per_second"] = batch > 0 && generate > 1 ? Math.Round(batchTps, 1) : null,
            ["weight_bytes"] = weightBytes,
            ["decode_effective_gb_per_second"] = Math.Round(decodeTps * weightBytes / 1e9, 2),
            ["bandwidth_gb_per_second"] = bandwidthGbs > 0 ? Math.Round(bandwidthGbs, 1) : null,
            ["decode_ceiling_tokens_per_second"] = bandwidthGbs > 0 ? Math.Round(ceiling, 1) : null,
            ["decode_fraction_of_ceiling"] = bandwidthGbs > 0 ? Math.Round(decodeTps / ceiling, 3) : null,
            ["kv_dtype"] = model.KvCacheType.ToString().ToLowerInvariant(),
            ["kv_bytes_per_token"] = model.KvBytesPerToken,
            ["simd_width"] = (int)Simd.Best,
            ["matmul_precision"] = model.MatmulPrecision.Name(),
            ["native_kernels"] = NativeKernels.Status,
            ["heap_retention"] = PiServe.Api.Hosting.HeapRetention.Status,
            ["peak_working_set_bytes"] = self.PeakWorkingSet64,
        };
    }

    /// <summary>
    /// Read bandwidth of this machine with the given threads: each sums its own half of a 512 MB
    /// buffer with vector loads, best of three passes. The ceiling decode is compared against (the
    /// weights are read once per token), measured rather than assumed because machine kinds differ.
    /// </summary>
    private static unsafe double MeasureReadBandwidth(int threads)
    {
        const long bytes = 512L << 20;
        using var buffer = new NativeBuffer(bytes / sizeof(float));
        new Span<byte>(buffer.Ptr, (int)Math.Min(bytes, int.MaxValue)).Fill(1);
        float* p = buffer.Ptr;
        long per = bytes / sizeof(float) / threads / 64 * 64;
        double best = 0;
        for (int pass = 0; pass < 3; pass++)
        {
            var clock = Stopwatch.StartNew();
            Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
            {
                float* q = p + t * per;
                var a = Vector256<float>.Zero; var b = a; var c = a; var d = a;
                for (long i = 0; i < per; i += 32)
                {
                    a += Vector256.Load(q + i); b += Vector256.Load(q + i + 8);
                    c += Vector256.Load(q + i + 16); d += Vector256.Load(q + i + 24);
                }
                if ((a + b + c + d)[0] == -1) Console.Error.Write(""); // keeps the sums alive
            });
            best = Math.Max(best, per * threads * sizeof(float) / clock.Elapsed.TotalSeconds / 1e9);
        }
        return best;
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
