using PiServe.Inference.Cache;
using PiServe.Inference.Checkpoints;
using PiServe.Inference.Generation;
using PiServe.Inference.Kernels;
using PiServe.Inference.Model;

namespace PiServe.Inference.Tests.Kernels;

/// <summary>
/// Allocation counts are per thread, and the worker pools are shared by the whole test process, so a
/// model of another size running on a pool worker at the same time (first use of a larger scratch)
/// would show up here: these tests run on their own, after the parallel ones.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class SerialKernelTests
{
    public const string Name = "kernels, run alone";
}

/// <summary>
/// A steady-state decode step allocates no managed memory: not on the decoding thread (no closures
/// or delegates per operation, per-thread scratch reused, session buffers sized for the request) and
/// not on the worker threads of the CPU backend's pool. The process-wide
/// GC.GetTotalAllocatedBytes is not used: the test runner's own threads allocate at any time; the
/// pool reports what each of its workers has allocated instead, which covers every thread a decode
/// step runs on.
/// </summary>
[Collection(SerialKernelTests.Name)]
public sealed class DecodeAllocationTests
{
    // Big enough that every matmul and the lm_head take the parallel path (rows·cols ≥ 2^16).
    private static readonly RandomCheckpoint.Shape Shape = new(256, 2, 4, 2, 512, 1000, MaxPositions: 1024);

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)] // more threads than this machine's cores: the pool must still run every part
    public void SteadyStateGreedyDecodeAllocatesNothing(int threads)
    {
        using var dir = new TempDir();
        RandomCheckpoint.Write(dir.Path, Shape, DType.BF16, seed: 5);
        var backend = new CpuBackend(threads);
        using var model = LlamaModel.Load(dir.Path, backend);
        var pool = WorkerPool.Shared(threads);
        int[] prompt = Enumerable.Range(1, 40).Select(i => i * 7 % 1000).ToArray();
        const int warmup = 8, measured = 32;

        // The greedy generation loop (GreedyGenerator.Generate) on a session sized for the request.
        using var session = new InferenceSession(model, plannedLength: prompt.Length + warmup + measured + 1, initialCapacity: 128);
        int next = GreedyGenerator.ArgMax(session.Prefill(prompt));
        for (int i = 0; i < warmup; i++) next = GreedyGenerator.ArgMax(session.Append(next)); // JIT, per-thread scratch and region objects
        long thread0 = GC.GetAllocatedBytesForCurrentThread(), workers0 = pool.WorkerAllocatedBytes;
        for (int i = 0; i < measured; i++) next = GreedyGenerator.ArgMax(session.Append(next));
        long thread = GC.GetAllocatedBytesForCurrentThread() - thread0, workers = pool.WorkerAllocatedBytes - workers0;

        Assert.True(thread == 0 && workers == 0, $"{measured} decode steps allocated {thread} bytes on the calling thread and {workers} on the pool's workers");

        // And they computed what the plain single-thread engine computes.
        using var reference = LlamaModel.Load(dir.Path, new CpuBackend(1));
        var expected = GreedyGenerator.Generate(reference, prompt, warmup + measured + 1, KvCachePolicy.Exact).Tokens;
        Assert.Equal(expected, session.Tokens.Skip(prompt.Length).Append(next).ToArray());
    }

    [Fact]
    public void ConcurrentCallersOfOneBackendGetTheirOwnResults()
    {
        // The scheduler loop and evaluation workers share one model's backend (and its pool): regions
        // from several threads are serialised, none may see another's operands.
        using var dir = new TempDir();
        RandomCheckpoint.Write(dir.Path, Shape, DType.BF16, seed: 6);
        using var model = LlamaModel.Load(dir.Path, new CpuBackend(2));
        using var reference = LlamaModel.Load(dir.Path, new CpuBackend(1));
        var prompts = Enumerable.Range(0, 4).Select(p => Enumerable.Range(1, 30 + 9 * p).Select(i => (i * 13 + p) % 1000).ToArray()).ToArray();
        var expected = prompts.Select(p => GreedyGenerator.Generate(reference, p, 24, KvCachePolicy.Exact).Tokens).ToArray();
        var actual = new int[prompts.Length][];
        var threads = prompts.Select((p, i) => new Thread(() => actual[i] = GreedyGenerator.Generate(model, p, 24, KvCachePolicy.Exact).Tokens)).ToArray();
        foreach (var t in threads) t.Start();
        foreach (var t in threads) t.Join();
        for (int p = 0; p < prompts.Length; p++) Assert.Equal(expected[p], actual[p]);
    }

    [Fact]
    public void SteadyStateBatchedDecodeAllocatesNothing()
    {
        // The scheduler's path: several sequences share each decode step's forward.
        using var dir = new TempDir();
        RandomCheckpoint.Write(dir.Path, Shape, DType.BF16, seed: 7);
        using var model = LlamaModel.Load(dir.Path, new CpuBackend(2));
        var pool = WorkerPool.Shared(2);
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
            long thread0 = GC.GetAllocatedBytesForCurrentThread(), workers0 = pool.WorkerAllocatedBytes;
            for (int i = 0; i < 16; i++) Step();
            long thread = GC.GetAllocatedBytesForCurrentThread() - thread0, workers = pool.WorkerAllocatedBytes - workers0;
            Assert.True(thread == 0 && workers == 0, $"16 batched steps allocated {thread} bytes on the calling thread and {workers} on the pool's workers");
        }
        finally
        {
            foreach (var s in sessions) s.Dispose();
        }
    }
}
