using System.Text.Json.Nodes;
using PiServe.Inference.Cache;
using PiServe.Inference.Checkpoints;
using PiServe.Inference.Generation;
using PiServe.Inference.Model;
using PiServe.Inference.Rope;

namespace PiServe.Inference.Tests.Generation;

/// <summary>
/// Automatic prefix caching (issue 16, goal 4). The bound tested everywhere is equality: a prompt whose
/// prefix comes from the cache produces the same logits bit for bit as a cold prefill (sessions), and
/// so the same greedy tokens, the same sampled tokens for a seed, and the same log-probs and top
/// alternatives (scheduler), because the restored keys and values are the very bits a cold prefill
/// computes (every prefill row is computed independently of the chunking, as the chunked-prefill
/// tests require). Blocks computed under another rope regime are never reused.
/// </summary>
public sealed class PrefixCacheTests
{
    private static readonly LlamaModel Model = GoldenFixtures.Model("llama-default-f32");
    private static readonly Lazy<LlamaModel> F16KvModel = new(() =>
    {
        // Its own instance: the KV element type is a property of the (shared) model.
        var m = LlamaModel.Load(GoldenFixtures.ModelDir("llama-default-f32"));
        m.KvCacheType = DType.F16;
        return m;
    });
    private static readonly Inference.Tokenization.ITokenizer Tokenizer = Inference.Tokenization.TokenizerLoader.Load(RepoPaths.ShippedModel("kjv-base-256"));
    private const int Block = 16;
    private const string LongRope = """{"rope_type":"longrope","original_max_position_embeddings":128,"short_factor":[1,1,1,1,1,1,1,1],"long_factor":[1,1.5,2,3,4,6,8,16]}""";

    private static int[] Tokens(int n, int seed) => Enumerable.Range(0, n).Select(i => 3 + (i * 7 + seed * 31 + i * i * (seed + 1)) % 250).ToArray();
    private static int[] Concat(params int[][] parts) => parts.SelectMany(p => p).ToArray();
    private static RopeScaling? Rope(string? json, LlamaModel? model = null) => json is null ? null : (model ?? Model).ResolveRope(JsonNode.Parse(json)!.AsObject());

    private static CompletionJob Job(int[] prompt, RopeScaling? rope = null, KvCachePolicy policy = KvCachePolicy.Exact, int maxTokens = 8, int? seed = null) => new()
    {
        Prompt = prompt, MaxTokens = maxTokens, IgnoreEos = true, Logprobs = 3, Rope = rope, Policy = policy,
        Sampling = seed is null ? new SamplingParams { Temperature = 0 } : new SamplingParams { Temperature = 0.9f, Seed = seed },
    };

    private static BatchScheduler Scheduler(long prefixCacheBytes = 1L << 30, long kvBudget = 2L << 30, LlamaModel? model = null) =>
        new(model ?? Model, Tokenizer, new SchedulerOptions { PrefillChunk = 64, PrefixCacheBytes = prefixCacheBytes, KvCacheBudgetBytes = kvBudget, PrefixBlockTokens = Block });

    /// <summary>Tokens, their log-probs and the top alternatives (ids and log-probs), as one request streams them.</summary>
    private sealed record Output(int[] Tokens, float[] Logprobs, int[] TopIds, float[] TopLogprobs)
    {
        public void AssertEqual(Output other)
        {
            Assert.Equal(Tokens, other.Tokens);
            Assert.Equal(Logprobs, other.Logprobs);
            Assert.Equal(TopIds, other.TopIds);
            Assert.Equal(TopLogprobs, other.TopLogprobs);
        }
    }

    private static async Task<Output> Collect(System.Threading.Channels.ChannelReader<GenerationEvent> events)
    {
        var tokens = new List<int>();
        var lps = new List<float>();
        var topIds = new List<int>();
        var topLps = new List<float>();
        await foreach (var e in events.ReadAllAsync())
            switch (e)
            {
                case TokenEvent t:
                    tokens.Add(t.TokenId);
                    lps.Add(t.Logprob!.Value);
                    foreach (var top in t.Top!) { topIds.Add(top.TokenId); topLps.Add(top.Logprob); }
                    break;
                case ErrorEvent error:
                    throw new InvalidOperationException(error.Message);
            }
        return new Output([.. tokens], [.. lps], [.. topIds], [.. topLps]);
    }

    private static Task<Output> Run(BatchScheduler scheduler, CompletionJob job) => Collect(scheduler.Submit(job));

    private static async Task<Output> Cold(CompletionJob job, LlamaModel? model = null)
    {
        using var cold = Scheduler(prefixCacheBytes: 0, model: model);
        return await Run(cold, job);
    }

    /// <summary>Hit tokens the last request added.</summary>
    private static async Task<(Output Output, long Hit)> RunCounting(BatchScheduler scheduler, CompletionJob job)
    {
        long before = Interlocked.Read(ref scheduler.PrefixHitTokens);
        var output = await Run(scheduler, job);
        return (output, Interlocked.Read(ref scheduler.PrefixHitTokens) - before);
    }

    public static IEnumerable<object?[]> Regimes() =>
    [
        [null, "f32"],
        [null, "f16"],
        ["""{"rope_type":"linear","factor":2.0}""", "f32"],
        ["""{"rope_type":"yarn","factor":4.0,"original_max_position_embeddings":128}""", "f32"],
        [LongRope, "f32"], // both prompts past the switch: the long factors for both
    ];

    [Theory]
    [MemberData(nameof(Regimes))]
    public async Task AHitEqualsAColdRunTokenForToken(string? ropeJson, string kv)
    {
        var model = kv == "f16" ? F16KvModel.Value : Model;
        var rope = Rope(ropeJson, model);
        var doc = Tokens(300, 1);
        var (q1, q2) = (Tokens(20, 2), Tokens(27, 3));
        using var warm = Scheduler(model: model);

        var (first, hit1) = await RunCounting(warm, Job(Concat(doc, q1), rope));
        Assert.Equal(0, hit1);
        (await Cold(Job(Concat(doc, q1), rope), model)).AssertEqual(first);

        // Another question about the same document: its 18 full blocks (288 tokens) come from the cache.
        var (second, hit2) = await RunCounting(warm, Job(Concat(doc, q2), rope));
        Assert.Equal(288, hit2);
        (await Cold(Job(Concat(doc, q2), rope), model)).AssertEqual(second);

        // The same prompt again: 20 full blocks are cached, 19 are reused (the last token is always computed).
        var (again, hit3) = await RunCounting(warm, Job(Concat(doc, q1), rope));
        Assert.Equal(304, hit3);
        first.AssertEqual(again);
        Assert.Equal(Concat(doc, q1).Length + Concat(doc, q2).Length + Concat(doc, q1).Length, Interlocked.Read(ref warm.PrefixQueriedTokens));
    }

    [Theory]
    [InlineData(null)]
    [InlineData(LongRope)]
    public void ARestoredSessionEqualsAColdPrefillBitForBit(string? ropeJson)
    {
        var rope = Rope(ropeJson) ?? Model.Rope;
        var p1 = Concat(Tokens(200, 4), Tokens(40, 5));
        var p2 = Concat(Tokens(200, 4), Tokens(33, 6));
        using var cache = new PrefixCache(Block, 1L << 30, Model.KvBytesPerToken);

        using var first = new InferenceSession(Model, rope, prefillChunk: 64);
        first.Prefill(p1);
        var regime1 = new PrefixCache.Regime(first.ParametersFor(p1.Length), Model.KvCacheType);
        var h1 = PrefixCache.ChainHashes(p1, Block);
        var published = new List<PrefixCache.Block>();
        for (int j = 0; j < h1.Length; j++) Assert.True(cache.Publish(regime1, p1, h1, j, first.Cache, published, long.MaxValue));
        Assert.Equal(15, cache.BlockCount);

        using var warm = new InferenceSession(Model, rope, prefillChunk: 48);
        var regime2 = new PrefixCache.Regime(warm.ParametersFor(p2.Length), Model.KvCacheType);
        var hit = new List<PrefixCache.Block>();
        int blocks = cache.Match(regime2, p2, PrefixCache.ChainHashes(p2, Block), (p2.Length - 1) / Block, hit);
        Assert.Equal(12, blocks); // 200 shared tokens: 12 full blocks
        warm.PrefillFromCache(p2, blocks * Block, regime2.Rope, c => cache.Restore(hit, 0, blocks, c));
        while (!warm.PrefillPart(p2, 48)) { }

        using var cold = new InferenceSession(Model, rope, prefillChunk: 64);
        Assert.Equal(cold.Prefill(p2).ToArray(), warm.Logits.ToArray());
        for (int step = 0; step < 4; step++)
        {
            int next = GreedyGenerator.ArgMax(cold.Logits);
            Assert.Equal(cold.Append(next).ToArray(), warm.Append(next).ToArray());
        }
    }

    [Fact]
    public void ASessionRefusesBlocksOfAnotherRegime()
    {
        var prompt = Tokens(100, 7);
        using var session = new InferenceSession(Model, Rope("""{"rope_type":"linear","factor":2.0}"""));
        var defaultRegime = Model.Rope.FrequenciesFor(prompt.Length);
        Assert.Throws<InvalidOperationException>(() => session.PrefillFromCache(prompt, Block, defaultRegime, _ => { }));
        Assert.Throws<ArgumentOutOfRangeException>(() => session.PrefillFromCache(prompt, prompt.Length, session.ParametersFor(prompt.Length), _ => { }));
        Assert.Equal(0, session.Length);
    }

    [Fact]
    public async Task ARopeOverrideDoesNotReuseTheCheckpointRopesBlocks()
    {
        var linear = Rope("""{"rope_type":"linear","factor":2.0}""");
        var doc = Tokens(200, 8);
        using var warm = Scheduler();
        await Run(warm, Job(Concat(doc, Tokens(10, 1))));
        var (overridden, hit) = await RunCounting(warm, Job(Concat(doc, Tokens(12, 2)), linear));
        Assert.Equal(0, hit);
        (await Cold(Job(Concat(doc, Tokens(12, 2)), linear))).AssertEqual(overridden);
        // The checkpoint's regime still finds its own blocks.
        (_, hit) = await RunCounting(warm, Job(Concat(doc, Tokens(14, 3))));
        Assert.Equal(192, hit);
    }

    [Fact]
    public async Task LongRopePromptsOnEitherSideOfTheSwitchDoNotShareBlocks()
    {
        // original_max_position_embeddings = 128: a 120-token prompt is prefilled with the short
        // factors, a 160-token one with the long factors, so their common 100 tokens differ in the cache.
        var rope = Rope(LongRope);
        var doc = Tokens(100, 9);
        using var warm = Scheduler();
        var (_, hit) = await RunCounting(warm, Job(Concat(doc, Tokens(20, 1)), rope));
        Assert.Equal(0, hit);
        var longPrompt = Concat(doc, Tokens(60, 2));
        (var output, hit) = await RunCounting(warm, Job(longPrompt, rope));
        Assert.Equal(0, hit);
        (await Cold(Job(longPrompt, rope))).AssertEqual(output);
        // Another long prompt reuses the long blocks, a short one the short blocks.
        var long2 = Concat(doc, Tokens(50, 3));
        (output, hit) = await RunCounting(warm, Job(long2, rope));
        Assert.Equal(96, hit);
        (await Cold(Job(long2, rope))).AssertEqual(output);
        (_, hit) = await RunCounting(warm, Job(Concat(doc, Tokens(10, 4)), rope));
        Assert.Equal(96, hit);
    }

    [Fact]
    public async Task APlannedLengthAcrossTheSwitchIsItsOwnRegime()
    {
        // 110 prompt tokens: exact prefills them with the short factors; planned with 40 more tokens
        // (150 > 128) with the long factors from the start.
        var rope = Rope(LongRope);
        var doc = Tokens(100, 10);
        using var warm = Scheduler();
        await Run(warm, Job(Concat(doc, Tokens(10, 1)), rope, maxTokens: 40));
        var planned = Job(Concat(doc, Tokens(10, 2)), rope, KvCachePolicy.Planned, maxTokens: 40);
        var (output, hit) = await RunCounting(warm, planned);
        Assert.Equal(0, hit);
        (await Cold(planned)).AssertEqual(output);
        // A planned request that stays under the switch shares the exact one's short blocks.
        var short2 = Job(Concat(doc, Tokens(10, 3)), rope, KvCachePolicy.Planned, maxTokens: 8);
        (output, hit) = await RunCounting(warm, short2);
        Assert.Equal(96, hit);
        (await Cold(short2)).AssertEqual(output);
    }

    [Fact]
    public async Task DynamicNtkPastTheWindowNeverReuses()
    {
        // Past L = 512 every prompt length has its own base; within it the base is the checkpoint's.
        var rope = Rope("""{"rope_type":"dynamic","factor":2.0}""");
        var doc = Tokens(520, 11);
        using var warm = Scheduler();
        await Run(warm, Job(Concat(doc, Tokens(8, 1)), rope, maxTokens: 3));
        var job = Job(Concat(doc, Tokens(9, 2)), rope, maxTokens: 3);
        var (output, hit) = await RunCounting(warm, job);
        Assert.Equal(0, hit);
        (await Cold(job)).AssertEqual(output);
    }

    [Fact]
    public async Task EvictionUnderASmallBudgetKeepsResultsExact()
    {
        long blockBytes = Block * Model.KvBytesPerToken;
        long budget = 8 * blockBytes;
        using var warm = Scheduler(prefixCacheBytes: budget);
        var docs = new[] { Tokens(100, 12), Tokens(100, 13), Tokens(100, 14) };
        int[] order = [0, 1, 0, 2, 1, 0, 0];
        for (int i = 0; i < order.Length; i++)
        {
            var job = Job(Concat(docs[order[i]], Tokens(5 + i, 20 + i)));
            var output = await Run(warm, job);
            (await Cold(job)).AssertEqual(output);
            Assert.True(warm.PrefixCache!.Bytes <= budget);
        }
        Assert.True(warm.PrefixCache!.Evictions > 0);
        Assert.True(Interlocked.Read(ref warm.PrefixHitTokens) > 0);
    }

    [Fact]
    public void PinnedBlocksAndParentsOfCachedBlocksAreNotEvicted()
    {
        var x = Tokens(64, 15);
        var y = Tokens(64, 16);
        using var cache = new PrefixCache(Block, 1L << 30, Model.KvBytesPerToken);
        var regime = new PrefixCache.Regime(Model.Rope.FrequenciesFor(64), Model.KvCacheType);
        List<PrefixCache.Block> Publish(int[] tokens)
        {
            using var s = new InferenceSession(Model);
            s.Prefill(tokens);
            var path = new List<PrefixCache.Block>();
            var hashes = PrefixCache.ChainHashes(tokens, Block);
            for (int j = 0; j < 4; j++) Assert.True(cache.Publish(regime, tokens, hashes, j, s.Cache, path, long.MaxValue));
            return path;
        }
        var px = Publish(x); // older
        var py = Publish(y);
        Assert.Equal(8, cache.BlockCount);

        cache.Pin(px);
        Assert.False(cache.EvictTo(0)); // x is pinned: only y goes
        Assert.All(px, b => Assert.False(b.Evicted));
        Assert.All(py, b => Assert.True(b.Evicted));
        cache.Unpin(px);

        // Leaves first: trimming to two blocks keeps x's first two (a prefix is still a prefix).
        Assert.True(cache.EvictTo(2 * cache.BlockBytes));
        Assert.Equal([false, false, true, true], px.Select(b => b.Evicted));
        var again = new List<PrefixCache.Block>();
        Assert.Equal(2, cache.Match(regime, x, PrefixCache.ChainHashes(x, Block), 4, again));
    }

    [Fact]
    public async Task MakingRoomForARequestDoesNotEvictTheBlocksItIsAboutToUse()
    {
        // Doc A's blocks are older than doc B's, so LRU alone would evict A's to admit A2; A2 pins
        // its match, so B's go instead and A2 reuses all 12 blocks of A.
        long bpt = Model.KvBytesPerToken, blockBytes = Block * bpt;
        var a = Tokens(200, 17);
        var b = Tokens(200, 18);
        var a1 = Job(Concat(a, Tokens(20, 1)));                    // 220 + 8 positions reserved, 13 blocks cached
        var b1 = Job(Concat(b, Tokens(20, 2)));                    // the same
        var a2 = Job(Concat(a, Tokens(20, 3)), maxTokens: 200);    // 420 positions reserved
        long budget = 420 * bpt + 14 * blockBytes;                 // room for 14 cached blocks beside A2, 26 beside B1
        using var warm = Scheduler(kvBudget: budget);
        await Run(warm, a1);
        await Run(warm, b1);
        Assert.Equal(26, warm.PrefixCache!.BlockCount);
        var (output, hit) = await RunCounting(warm, a2);
        Assert.Equal(192, hit);
        Assert.True(warm.PrefixCache.Evictions >= 12); // A1's own 13th block and 11 of B1's (then room for A2's 13th)
        (await Cold(a2)).AssertEqual(output);
    }

    [Fact]
    public async Task AHitThatDoesNotFitBesideItsRequestShrinksToWhatFits()
    {
        long bpt = Model.KvBytesPerToken, blockBytes = Block * bpt;
        var doc = Tokens(200, 19);
        long budget = 228 * bpt + 13 * blockBytes;                  // the first request and its 13 blocks
        using var warm = Scheduler(kvBudget: budget);
        await Run(warm, Job(Concat(doc, Tokens(20, 1))));
        Assert.Equal(13, warm.PrefixCache!.BlockCount);
        // Reserves all but 5 blocks' worth: its 12-block hit cannot stay beside it; it is admitted (not
        // kept waiting for room that will never come) and reuses the 5 blocks left.
        int maxTokens = (int)((budget - 5 * blockBytes) / bpt) - 220;
        var job = Job(Concat(doc, Tokens(20, 2)), maxTokens: maxTokens);
        var (output, hit) = await RunCounting(warm, job).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(5 * Block, hit);
        Assert.True(warm.PrefixCache.Bytes <= 5 * blockBytes);
        (await Cold(job)).AssertEqual(output);
    }

    [Fact]
    public async Task TheChoicesOfOneRequestPrefillTheirPromptOnce()
    {
        var prompt = Concat(Tokens(300, 21), Tokens(20, 22)); // 320 tokens: 20 full blocks
        CompletionJob[] Choices() => [.. Enumerable.Range(0, 3).Select(i => Job(prompt, seed: 100 + i))];
        using var warm = Scheduler();
        var outputs = await Task.WhenAll(warm.SubmitAll(Choices()).Select(Collect));
        // The first choice computes the prompt; the other two copy 19 blocks each and compute the rest.
        Assert.Equal(2 * 304, Interlocked.Read(ref warm.PrefixHitTokens));
        using var cold = Scheduler(prefixCacheBytes: 0);
        var expected = await Task.WhenAll(cold.SubmitAll(Choices()).Select(Collect));
        for (int i = 0; i < 3; i++) expected[i].AssertEqual(outputs[i]);
        Assert.NotEqual(outputs[0].Tokens, outputs[1].Tokens); // sampled with different seeds
    }

    [Fact]
    public async Task CachedBlocksCountAgainstTheKvBudget()
    {
        long bpt = Model.KvBytesPerToken;
        long budget = 700 * bpt;
        using var warm = Scheduler(kvBudget: budget);
        var docs = Enumerable.Range(0, 4).Select(i => Tokens(300, 30 + i)).ToArray();
        foreach (var doc in docs)
        {
            var events = warm.Submit(Job(Concat(doc, Tokens(4, 1)), maxTokens: 4));
            await foreach (var _ in events.ReadAllAsync())
                Assert.True(warm.ReservedKvBytes + warm.PrefixCache!.Bytes <= budget);
        }
        Assert.True(warm.PrefixCache!.Evictions > 0);
    }

    /// <summary>
    /// Spare buffers: refilled up to the target within the budget, taken (not added to) when a block is
    /// published, released before any block when room is needed; a block published into a spare
    /// restores the keys and values it copied.
    /// </summary>
    [Fact]
    public void SpareBuffersAreTakenByPublishAndReleasedFirst()
    {
        using var session = new InferenceSession(Model);
        int[] prompt = Tokens(3 * Block + 5, 9);
        session.Prefill(prompt);
        long blockBytes = session.Cache.BytesPerToken * Block;
        using var cache = new PrefixCache(Block, 4 * blockBytes, session.Cache.BytesPerToken) { SpareTarget = 3 };
        Assert.True(cache.Refill(long.MaxValue));
        Assert.True(cache.Refill(long.MaxValue));
        Assert.False(cache.Refill(2 * blockBytes));          // the caller's limit: two spares are all it allows
        Assert.True(cache.Refill(long.MaxValue));
        Assert.False(cache.Refill(long.MaxValue));           // the target
        Assert.Equal(3, cache.SpareCount);
        Assert.Equal(3 * blockBytes, cache.SpareBytes);

        var regime = new PrefixCache.Regime(session.ParametersFor(prompt.Length), session.Cache.ElementType);
        var hashes = PrefixCache.ChainHashes(prompt, Block);
        var path = new List<PrefixCache.Block>();
        for (int i = 0; i < 3; i++) Assert.True(cache.Publish(regime, prompt, hashes, i, session.Cache, path, long.MaxValue));
        Assert.Equal(3 * blockBytes, cache.Bytes);           // three blocks in the three spares:
        Assert.Equal(0, cache.SpareCount);                   // memory held is unchanged
        Assert.True(cache.Refill(long.MaxValue));            // the fourth fits the budget of four
        Assert.False(cache.Refill(long.MaxValue));

        // A fresh cache restored from the blocks holds what the session computed.
        using var restored = new InferenceSession(Model);
        cache.Restore(path, 0, 3, restored.Cache);
        var a = new byte[3 * blockBytes];
        var b = new byte[3 * blockBytes];
        unsafe
        {
            fixed (byte* pa = a, pb = b)
            {
                session.Cache.CopyOut(0, 3 * Block, pa);
                restored.Cache.CopyOut(0, 3 * Block, pb);
            }
        }
        Assert.Equal(a, b);

        Assert.True(cache.EvictTo(3 * blockBytes));          // the spare goes first, every block stays
        Assert.Equal(0, cache.SpareCount);
        Assert.Equal(3, cache.BlockCount);
        Assert.True(cache.EvictTo(0));
        Assert.Equal(0, cache.Bytes + cache.SpareBytes);
    }

    /// <summary>
    /// The scheduler faults spare buffers in while idle, but only once it has served a request: a
    /// model nobody asks for holds none.
    /// </summary>
    [Fact]
    public async Task IdleSpareRefillWaitsForAFirstRequest()
    {
        using var scheduler = Scheduler();
        var cache = scheduler.PrefixCache!;
        Assert.True(cache.SpareTarget > 0);
        Thread.Sleep(300); // idle: the loop would have refilled by now
        Assert.Equal(0, cache.SpareCount);

        await Run(scheduler, Job(Tokens(3 * Block + 5, 4)));
        var until = DateTime.UtcNow.AddSeconds(20);
        while (cache.SpareCount < cache.SpareTarget && DateTime.UtcNow < until) Thread.Sleep(20);
        Assert.Equal(cache.SpareTarget, cache.SpareCount);
    }
}
