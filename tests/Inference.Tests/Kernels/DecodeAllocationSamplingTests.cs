using PiServe.Inference.Cache;
using PiServe.Inference.Checkpoints;
using PiServe.Inference.Generation;
using PiServe.Inference.Kernels;
using PiServe.Inference.Model;

namespace PiServe.Inference.Tests.Kernels;

/// <summary>
/// The sampler allocates nothing per token on any path (greedy, temperature, top-k, top-p, min-p,
/// penalties, logit_bias) nor when it selects the top logprobs; and a decode loop that samples with
/// all of them at once still allocates nothing, on the calling thread or the pool's workers.
/// </summary>
[Collection(SerialKernelTests.Name)]
public sealed class DecodeAllocationSamplingTests
{
    private static readonly KeyValuePair<int, float>[] Bias = [new(17, 4f), new(23, -100f), new(999, 1.5f)];

    public static TheoryData<string> Configs => [.. Params.Keys];

    private static readonly Dictionary<string, SamplingParams> Params = new()
    {
        ["greedy"] = new() { Temperature = 0 },
        ["greedy, penalties and bias"] = new() { Temperature = 0, PresencePenalty = 0.5f, FrequencyPenalty = 0.5f, RepetitionPenalty = 1.3f, LogitBias = Bias },
        ["temperature"] = new() { Temperature = 0.8f, Seed = 1 },
        ["top_k"] = new() { TopK = 40, Seed = 2 },
        ["top_p"] = new() { TopP = 0.9f, Seed = 3 },
        ["min_p"] = new() { MinP = 0.05f, Seed = 4 },
        ["penalties"] = new() { PresencePenalty = 1f, FrequencyPenalty = 0.5f, RepetitionPenalty = 1.2f, Seed = 5 },
        ["everything"] = new()
        {
            Temperature = 0.7f, TopK = 50, TopP = 0.95f, MinP = 0.02f, PresencePenalty = 0.3f, FrequencyPenalty = 0.3f,
            RepetitionPenalty = 1.1f, LogitBias = Bias, Seed = 6,
        },
    };

    [Theory]
    [MemberData(nameof(Configs))]
    public void SamplingAndTopLogprobsAllocateNothingPerToken(string config)
    {
        // Warm-up past tiered compilation: while a method with a loop over the vocabulary still runs
        // at tier 0, its on-stack replacement allocates (seen as ~40 bytes a call for the min_p scan).
        const int vocab = 32000, warmup = 300, measured = 200;
        var rng = new Random(9);
        // A few logit rows of a realistic vocabulary: peaked, as a model's are.
        var rows = Enumerable.Range(0, 4).Select(_ => Enumerable.Range(0, vocab).Select(_ => (float)(rng.NextDouble() * rng.NextDouble() * 12)).ToArray()).ToArray();
        var sampler = new Sampler(Params[config], vocab, prompt: Enumerable.Range(0, 300).ToArray());
        var ids = new int[20];
        var lps = new float[20];
        float sink = 0;
        void Step(int i)
        {
            var logits = rows[i % rows.Length];
            int token = sampler.Sample(logits);
            Sampler.TopLogprobs(logits, token, out float lp, ids, lps);
            sink += lp + lps[0];
        }
        for (int i = 0; i < warmup; i++) Step(i);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < measured; i++) Step(i);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated == 0, $"{config}: {measured} tokens allocated {allocated} bytes ({allocated / (double)measured:F1} per token)");
        Assert.True(float.IsFinite(sink));
    }

    [Fact]
    public void SteadyStateSampledDecodeAllocatesNothing()
    {
        using var dir = new TempDir();
        RandomCheckpoint.Write(dir.Path, new RandomCheckpoint.Shape(256, 2, 4, 2, 512, 1000, MaxPositions: 1024), DType.BF16, seed: 8);
        using var model = LlamaModel.Load(dir.Path, new CpuBackend(2));
        var pool = WorkerPool.Shared(2);
        int[] prompt = Enumerable.Range(1, 40).Select(i => i * 7 % 1000).ToArray();
        const int warmup = 8, measured = 32;
        var sampler = new Sampler(Params["everything"], model.Config.VocabSize, prompt);
        var ids = new int[5];
        var lps = new float[5];
        using var session = new InferenceSession(model, plannedLength: prompt.Length + warmup + measured + 1, initialCapacity: 128);
        int next = sampler.Sample(session.Prefill(prompt));
        void Step()
        {
            var logits = session.Append(next);
            next = sampler.Sample(logits);
            Sampler.TopLogprobs(logits, next, out _, ids, lps);
        }
        for (int i = 0; i < warmup; i++) Step();
        long thread0 = GC.GetAllocatedBytesForCurrentThread(), workers0 = pool.WorkerAllocatedBytes;
        for (int i = 0; i < measured; i++) Step();
        long thread = GC.GetAllocatedBytesForCurrentThread() - thread0, workers = pool.WorkerAllocatedBytes - workers0;
        Assert.True(thread == 0 && workers == 0, $"{measured} sampled decode steps allocated {thread} bytes on the calling thread and {workers} on the pool's workers");
    }
}
