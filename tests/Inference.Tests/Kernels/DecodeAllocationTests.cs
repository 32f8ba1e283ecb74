using PiServe.Inference.Cache;
using PiServe.Inference.Checkpoints;
using PiServe.Inference.Generation;
using PiServe.Inference.Kernels;
using PiServe.Inference.Model;

namespace PiServe.Inference.Tests.Kernels;

/// <summary>
/// Steady-state decode allocates no managed memory on the decoding thread: kernels take reusable job
/// objects (no closures), scratch is per thread and reused, the session's buffers are sized up front.
/// The worker threads run the same job objects, so they allocate nothing either.
/// </summary>
public sealed class DecodeAllocationTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)] // more threads than cores here: the pool must still hand every item out exactly once
    public void SteadyStateDecodeAllocatesNothingAndMatchesOneThread(int threads)
    {
        using var dir = new TempDir();
        // Big enough that every matrix product takes the parallel path (rows x cols >= 2^16).
        RandomCheckpoint.Write(dir.Path, new RandomCheckpoint.Shape(256, 2, 4, 2, 512, 1000, MaxPositions: 1024), DType.BF16, seed: 5);
        using var model = LlamaModel.Load(dir.Path, new CpuBackend(threads));
        using var reference = LlamaModel.Load(dir.Path, new CpuBackend(1));
        int[] prompt = Enumerable.Range(1, 40).Select(i => i * 7 % 1000).ToArray();

        // Sized for the request as the scheduler does (the cache doubling is amortised, not per token).
        using var session = new InferenceSession(model, plannedLength: 200, initialCapacity: 200);
        int next = GreedyGenerator.ArgMax(session.Prefill(prompt));
        for (int i = 0; i < 8; i++) next = GreedyGenerator.ArgMax(session.Append(next)); // JIT, per-thread scratch
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 32; i++) next = GreedyGenerator.ArgMax(session.Append(next));
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(0, allocated);

        // Same tokens as the single-threaded engine (rows are split, never reduced across threads).
        var expected = GreedyGenerator.Generate(reference, prompt, 41, KvCachePolicy.Exact).Tokens;
        Assert.Equal(expected, session.Tokens.Skip(prompt.Length).Append(next).ToArray());
    }

    [Fact]
    public void ConcurrentCallersOnOneBackendGetCorrectResults()
    {
        // The scheduler loop and evaluation workers share a model's backend: a caller finding the
        // pool busy runs its job another way; results must not mix.
        using var dir = new TempDir();
        RandomCheckpoint.Write(dir.Path, new RandomCheckpoint.Shape(256, 2, 4, 2, 512, 1000, MaxPositions: 1024), DType.BF16, seed: 6);
        using var model = LlamaModel.Load(dir.Path, new CpuBackend(2));
        using var reference = LlamaModel.Load(dir.Path, new CpuBackend(1));
        var prompts = Enumerable.Range(0, 4).Select(p => Enumerable.Range(1, 30 + p).Select(i => (i * 13 + p) % 1000).ToArray()).ToArray();
        var expected = prompts.Select(p => GreedyGenerator.Generate(reference, p, 24, KvCachePolicy.Exact).Tokens).ToArray();
        var actual = new int[prompts.Length][];
        Parallel.For(0, prompts.Length, new ParallelOptions { MaxDegreeOfParallelism = 4 },
            p => actual[p] = GreedyGenerator.Generate(model, prompts[p], 24, KvCachePolicy.Exact).Tokens);
        for (int p = 0; p < prompts.Length; p++) Assert.Equal(expected[p], actual[p]);
    }

    [Fact]
    public void SteadyStateBatchedDecodeAllocatesNothing()
    {
        using var dir = new TempDir();
        RandomCheckpoint.Write(dir.Path, new RandomCheckpoint.Shape(256, 2, 4, 2, 512, 1000, MaxPositions: 1024), DType.BF16, seed: 7);
        using var model = LlamaModel.Load(dir.Path, new CpuBackend(2));
        var sessions = Enumerable.Range(0, 3).Select(_ => new InferenceSession(model, plannedLength: 128, initialCapacity: 128)).ToList();
        try
        {
            var tokens = new int[sessions.Count];
            for (int s = 0; s < sessions.Count; s++) tokens[s] = GreedyGenerator.ArgMax(sessions[s].Prefill(Enumerable.Range(1, 20 + s).ToArray()));
            using var scratch = new ForwardScratch(model.Config);
            var logits = new float[sessions.Count * model.Config.VocabSize];
            void Step()
            {
                InferenceSession.AppendBatch(sessions, tokens, scratch, logits);
                for (int s = 0; s < sessions.Count; s++) tokens[s] = GreedyGenerator.ArgMax(sessions[s].Logits);
            }
            for (int i = 0; i < 4; i++) Step();
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 16; i++) Step();
            Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        }
        finally
        {
            foreach (var s in sessions) s.Dispose();
        }
    }
}
