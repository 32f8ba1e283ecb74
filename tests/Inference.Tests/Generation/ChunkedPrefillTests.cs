using System.Diagnostics;
using System.Text.Json.Nodes;
using PiServe.Inference.Generation;
using PiServe.Inference.Model;

namespace PiServe.Inference.Tests.Generation;

/// <summary>
/// Chunked prefill (issue 16, vLLM's enable_chunked_prefill): a prompt prefilled part by part between
/// decode steps ends in exactly the state of a one-shot prefill, and running streams keep receiving
/// tokens while a long prompt is prefilled.
/// </summary>
public sealed class ChunkedPrefillTests
{
    private static readonly LlamaModel Model = GoldenFixtures.Model("llama-default-f32");
    // The fixture model has no tokenizer; any whose ids cover its 256 does for decoding text.
    private static readonly Inference.Tokenization.ITokenizer Tokenizer = Inference.Tokenization.TokenizerLoader.Load(RepoPaths.ShippedModel("kjv-base-256"));

    private static int[] Prompt(int n, int seed = 0) => Enumerable.Range(0, n).Select(i => 3 + (i * 7 + seed * 13) % 250).ToArray();

    public static IEnumerable<object?[]> Ropes() =>
    [
        [null],
        ["""{"rope_type":"dynamic","factor":2.0}"""],
        ["""{"rope_type":"longrope","original_max_position_embeddings":128,"short_factor":[1,1,1,1,1,1,1,1],"long_factor":[1,1.5,2,3,4,6,8,16]}"""],
    ];

    [Theory]
    [MemberData(nameof(Ropes))]
    public void PrefillInPartsEqualsOneShotPrefill(string? ropeJson)
    {
        // 600 tokens cross LongRoPE's switch (128) and dynamic NTK's L (512): the whole prompt's regime
        // is used for every part, as for a one-shot prefill.
        var rope = ropeJson is null ? Model.Rope : Model.ResolveRope(JsonNode.Parse(ropeJson)!.AsObject());
        var prompt = Prompt(600);
        using var oneShot = new InferenceSession(Model, rope, prefillChunk: 64);
        var expected = oneShot.Prefill(prompt).ToArray();
        using var parts = new InferenceSession(Model, rope, prefillChunk: 64);
        int calls = 0;
        while (!parts.PrefillPart(prompt, 64)) calls++;
        Assert.Equal(9, calls); // 600 = 9 × 64 + 24
        Assert.Equal(expected, parts.Logits.ToArray());
        Assert.Equal(0, parts.RebuildCount);
        // ... and the next decode step agrees too (the caches are the same).
        Assert.Equal(oneShot.Append(17).ToArray(), parts.Append(17).ToArray());
    }

    /// <summary>
    /// The scheduler's mixed step: decode tokens of two sequences and chunks of two prompts (one of
    /// which completes) in one forward leave every session exactly as its own Append / PrefillPart
    /// would — logits, caches (the next decode step) and all — under every rope family.
    /// </summary>
    [Theory]
    [MemberData(nameof(Ropes))]
    public void MixedStepEqualsSeparateDecodeAndPrefill(string? ropeJson)
    {
        // Logit scratch for the decoded rows only (completed prompts get theirs one by one), and with
        // room for all (one lm_head matmul over decoded and completed rows).
        foreach (int logitRows in new[] { 2, 4 })
            MixedStep(ropeJson, logitRows);
    }

    private static void MixedStep(string? ropeJson, int logitRows)
    {
        var rope = ropeJson is null ? Model.Rope : Model.ResolveRope(JsonNode.Parse(ropeJson)!.AsObject());
        int[] a = Prompt(30, 1), b = Prompt(21, 2), c = Prompt(150, 3), d = Prompt(37, 4), e = Prompt(9, 5);
        InferenceSession Started(int[] prompt) { var s = new InferenceSession(Model, rope); s.Prefill(prompt); return s; }
        using InferenceSession aMixed = Started(a), bMixed = Started(b), aAlone = Started(a), bAlone = Started(b);
        using InferenceSession cMixed = new(Model, rope), cAlone = new(Model, rope), dMixed = new(Model, rope), dAlone = new(Model, rope);
        using InferenceSession eMixed = new(Model, rope), eAlone = new(Model, rope);
        cMixed.PrefillPart(c, 64);
        cAlone.PrefillPart(c, 64);

        using var scratch = new ForwardScratch(Model.Config);
        var logits = new float[logitRows * Model.Config.VocabSize];
        InferenceSession.Step([aMixed, bMixed], [11, 12], [new(cMixed, c, 64), new(dMixed, d, 64), new(eMixed, e, 64)], scratch, logits);
        Assert.Equal(aAlone.Append(11).ToArray(), aMixed.Logits.ToArray());
        Assert.Equal(bAlone.Append(12).ToArray(), bMixed.Logits.ToArray());
        Assert.False(cAlone.PrefillPart(c, 64));
        Assert.Equal(128, cMixed.Length);
        Assert.True(dAlone.PrefillPart(d, 64)); // d and e complete in this step: their logits are set
        Assert.Equal(dAlone.Logits.ToArray(), dMixed.Logits.ToArray());
        Assert.True(eAlone.PrefillPart(e, 64));
        Assert.Equal(eAlone.Logits.ToArray(), eMixed.Logits.ToArray());
        // The caches are equal too: the next steps agree.
        Assert.Equal(aAlone.Append(5).ToArray(), aMixed.Append(5).ToArray());
        Assert.Equal(dAlone.Append(6).ToArray(), dMixed.Append(6).ToArray());
        Assert.True(cAlone.PrefillPart(c, 64));
        Assert.True(cMixed.PrefillPart(c, 64));
        Assert.Equal(cAlone.Logits.ToArray(), cMixed.Logits.ToArray());
    }

    [Fact]
    public void PartsRefuseAnotherPrompt()
    {
        using var session = new InferenceSession(Model, prefillChunk: 16);
        session.PrefillPart(Prompt(40), 16);
        Assert.Throws<InvalidOperationException>(() => session.PrefillPart(Prompt(40, seed: 1), 16));
    }

    /// <summary>Records, in order, what the scheduler reports (its calls come from its one loop thread).</summary>
    private sealed class Recorder : ISchedulerObserver
    {
        public readonly List<string> Calls = [];
        public void Rejected(string reason) { lock (Calls) Calls.Add("rejected"); }
        public void Queued() { lock (Calls) Calls.Add("queued"); }
        public void Abandoned(double queueSeconds) { lock (Calls) Calls.Add("abandoned"); }
        public void Started(double queueSeconds) { lock (Calls) Calls.Add("started"); }
        public void FirstToken(double secondsSinceSubmit) { lock (Calls) Calls.Add("first"); }
        public void Token(double secondsSincePreviousToken) { lock (Calls) Calls.Add("token"); }
        public void Finished(string finishReason, double seconds, int promptTokens, int completionTokens) { lock (Calls) Calls.Add("finished:" + finishReason); }
        public void KvCache(long usedBytes, long capacityBytes) { }

        /// <summary>
        /// Tokens decoded (by the first request) between the second request's start and its first token,
        /// i.e. the steps its prefill took while the first streamed; -1 when that order did not occur.
        /// </summary>
        public int TokensWhileSecondPrefills()
        {
            List<string> calls;
            lock (Calls) calls = [.. Calls];
            int startedB = calls.IndexOf("started", calls.IndexOf("started") + 1);
            int firstB = calls.IndexOf("first", calls.IndexOf("first") + 1);
            return startedB > 0 && firstB > startedB ? calls.Skip(startedB).Take(firstB - startedB).Count(c => c == "token") : -1;
        }
    }

    [Fact]
    public async Task RunningStreamsKeepDecodingWhileALongPromptIsPrefilled()
    {
        var recorder = new Recorder();
        using var scheduler = new BatchScheduler(Model, Tokenizer, new SchedulerOptions { PrefillChunk = 32 }, recorder);
        var a = scheduler.Submit(new CompletionJob { Prompt = Prompt(8), MaxTokens = 200, IgnoreEos = true, Sampling = new SamplingParams { Temperature = 0 } });
        Assert.True(await a.WaitToReadAsync()); // A is decoding
        var b = scheduler.Submit(new CompletionJob { Prompt = Prompt(480, seed: 2), MaxTokens = 4, IgnoreEos = true });
        await foreach (var _ in b.ReadAllAsync()) { }
        await foreach (var _ in a.ReadAllAsync()) { }

        // 480 prompt tokens in chunks of 32: 15 scheduler steps, and A decodes a token in each of them.
        int tokensOfADuringPrefill = recorder.TokensWhileSecondPrefills();
        Assert.True(tokensOfADuringPrefill >= 14, $"A got {tokensOfADuringPrefill} tokens while B's prompt was prefilled (-1: B did not start after A)");
    }

    [Fact]
    public async Task ABurstOfShortPromptsIsPrefilledInOneStep()
    {
        var recorder = new Recorder();
        using var scheduler = new BatchScheduler(Model, Tokenizer, new SchedulerOptions { PrefillChunk = 32 }, recorder);
        // Four 24-token prompts at once. The first step (nothing decoding) takes 32 tokens; from the
        // next, one stream decodes and three short prompts wait: a burst, prefilled whole in one step,
        // so the first stream gets one token before all of them have their first. (In 8-token chunks
        // per step, as a lone newcomer would be prefilled, it would get four or more.)
        var streams = Enumerable.Range(0, 4).Select(i => scheduler.Submit(new CompletionJob
        {
            Prompt = Prompt(24, seed: 5 + i), MaxTokens = 12, IgnoreEos = true, Sampling = new SamplingParams { Temperature = 0 },
        })).ToList();
        foreach (var s in streams) await foreach (var _ in s.ReadAllAsync()) { }

        List<string> calls;
        lock (recorder.Calls) calls = [.. recorder.Calls];
        int firstFirst = calls.IndexOf("first"), lastFirst = calls.LastIndexOf("first");
        Assert.Equal(4, calls.Count(c => c == "first"));
        int tokensBetween = calls.Skip(firstFirst).Take(lastFirst - firstFirst).Count(c => c == "token");
        Assert.True(tokensBetween <= 2, $"{tokensBetween} tokens were decoded before the burst's last prompt had its first: {string.Join(",", calls)}");
    }

    [Fact]
    public async Task RequestsArrivingTogetherAtAnIdleSchedulerStartInOneStep()
    {
        var recorder = new Recorder();
        // Generous windows, so a loaded machine cannot split the three arrivals.
        using var scheduler = new BatchScheduler(Model, Tokenizer,
            new SchedulerOptions { PrefillChunk = 32, BurstGatherMilliseconds = 1000, BurstQuietMilliseconds = 400 }, recorder);
        CompletionJob Job(int seed) => new() { Prompt = Prompt(24, seed: seed), MaxTokens = 6, IgnoreEos = true, Sampling = new SamplingParams { Temperature = 0 } };
        var a = scheduler.Submit(Job(20));
        // Without the gathering, A is admitted and streams before B and C arrive. (A blocking sleep: an
        // awaited delay's continuation can wait seconds for a thread-pool thread while other tests run.)
        Thread.Sleep(50);
        var b = scheduler.Submit(Job(21));
        var c = scheduler.Submit(Job(22));
        foreach (var s in new[] { a, b, c }) await foreach (var _ in s.ReadAllAsync()) { }

        List<string> calls;
        lock (recorder.Calls) calls = [.. recorder.Calls];
        // All three are admitted before anyone's first token, and their prompts (72 tokens, more than
        // one PrefillChunk) are prefilled in one step: no token is decoded between the first "first" and the last.
        Assert.True(calls.LastIndexOf("started") < calls.IndexOf("first"), string.Join(",", calls));
        int firstFirst = calls.IndexOf("first"), lastFirst = calls.LastIndexOf("first");
        Assert.Equal(0, calls.Skip(firstFirst).Take(lastFirst - firstFirst).Count(c => c == "token"));
    }

    [Fact]
    public void BudgetChunksALongPromptWhileStreamsDecodeAndTakesABurstWhole()
    {
        var o = new SchedulerOptions { PrefillChunk = 256, MaxStepPromptTokens = 1000 };
        // Nothing decoding, one prompt: one chunk.
        var idle = new PrefillBudget(decoding: 0, shortPromptsWaiting: 1, o);
        Assert.False(idle.Burst);
        Assert.Equal(128, idle.Take(128));
        Assert.Equal(128, idle.Take(4096));
        Assert.Equal(0, idle.Take(128));
        // Nothing decoding, a gathered burst: whole, up to the step's cap.
        var gathered = new PrefillBudget(decoding: 0, shortPromptsWaiting: 5, o);
        Assert.True(gathered.Burst);
        Assert.Equal(200, gathered.Take(200));
        Assert.Equal(256, gathered.Take(4096)); // a long one keeps its chunk (the whole PrefillChunk: nobody decodes)
        Assert.Equal(200, gathered.Take(200));
        // Eight streams decoding, one long prompt arriving: a quarter chunk per step.
        var lone = new PrefillBudget(decoding: 8, shortPromptsWaiting: 0, o);
        Assert.False(lone.Burst);
        Assert.Equal(64, lone.Take(4096));
        Assert.Equal(0, lone.Left);
        // Fewer short prompts waiting than streams: still chunked.
        var few = new PrefillBudget(decoding: 8, shortPromptsWaiting: 7, o);
        Assert.False(few.Burst);
        Assert.Equal(64, few.Take(128));
        // A burst: short prompts whole up to the step's cap; a long one among them keeps its chunk.
        var burst = new PrefillBudget(decoding: 2, shortPromptsWaiting: 2, o);
        Assert.True(burst.Burst);
        Assert.Equal(200, burst.Take(200));
        Assert.Equal(64, burst.Take(4096));
        Assert.Equal(256, burst.Take(256));
        burst.Spend(400);
        Assert.Equal(80, burst.Take(256));
        Assert.Equal(0, burst.Left);
        Assert.True(PrefillBudget.IsShort(256, o));
        Assert.False(PrefillBudget.IsShort(257, o));
    }

    [Theory]
    [InlineData(0, 16, 2048)]
    [InlineData(256, 0, 2048)]
    [InlineData(256, 16, 0)]
    public void OutOfRangeSchedulerOptionsAreRefusedByName(int prefillChunk, int maxBatch, int maxStepPromptTokens)
    {
        var o = new SchedulerOptions { PrefillChunk = prefillChunk, MaxBatch = maxBatch, MaxStepPromptTokens = maxStepPromptTokens };
        var e = Assert.Throws<ArgumentException>(() => new BatchScheduler(Model, Tokenizer, o));
        string name = prefillChunk == 0 ? "PrefillChunk" : maxBatch == 0 ? "MaxBatch" : "MaxStepPromptTokens";
        Assert.Contains(name, e.Message);
    }

    /// <summary>
    /// The pacer has no target until it has seen a decode-only step, then sizes chunks so that steps of a
    /// simulated cost (20 ms of decoding plus 2.2 ms per prompt token, as measured on the 134M model at
    /// depth ~1500) converge to the target (5 × 20 ms): c = (100 − 20) / 2.2 ≈ 36; each step moves the
    /// chunk by at most 2×, ignores steps whose prompts ran out, and grows with a cheaper token up to
    /// the token rule's chunk (a quarter of PrefillChunk), never beyond.
    /// </summary>
    [Fact]
    public void PacerSizesChunksSoMixedStepsTakeTheTargetTime()
    {
        var o = new SchedulerOptions { PrefillChunk = 256, PrefillStepSlowdown = 5 };
        var pacer = new StepPacer(o);
        Assert.Null(pacer.ChunkTokens);
        pacer.Observe(decoded: 8, promptTokens: 16, pacedChunk: null, milliseconds: 55); // a burst step: no decode-only time yet
        Assert.Null(pacer.ChunkTokens);
        pacer.Observe(decoded: 8, promptTokens: 0, pacedChunk: null, milliseconds: 20);
        Assert.Equal(100, pacer.TargetMilliseconds);
        Assert.Equal(64, pacer.ChunkTokens); // the token rule's chunk until a paced step has been measured

        double Cost(int c, double perToken) => 20 + perToken * c;
        int chunk = pacer.ChunkTokens!.Value, steps = 0;
        for (; steps < 12; steps++)
        {
            int next = pacer.ChunkTokens!.Value;
            Assert.True(next <= 2 * chunk && next >= chunk / 2, $"{chunk} -> {next}");
            chunk = next;
            pacer.Observe(8, chunk, chunk, Cost(chunk, 2.2));
        }
        Assert.InRange(pacer.ChunkTokens!.Value, 34, 39);
        Assert.InRange(Cost(pacer.ChunkTokens!.Value, 2.2), 90, 110);

        // A step whose prompt ran out (3 of 36 tokens) says nothing about the chunk's cost.
        int before = pacer.ChunkTokens!.Value;
        pacer.Observe(8, 3, before, Cost(3, 2.2));
        Assert.Equal(before, pacer.ChunkTokens);
        // Cheaper tokens (a shallower prompt): larger chunks, up to the token rule's (the fixed point, 67, is above it).
        for (int i = 0; i < 12; i++) pacer.Observe(8, pacer.ChunkTokens!.Value, pacer.ChunkTokens, Cost(pacer.ChunkTokens!.Value, 1.6));
        Assert.InRange(pacer.ChunkTokens!.Value, 48, 52); // (100 − 20) / 1.6 = 50
        for (int i = 0; i < 12; i++) pacer.Observe(8, pacer.ChunkTokens!.Value, pacer.ChunkTokens, Cost(pacer.ChunkTokens!.Value, 1.2));
        Assert.Equal(64, pacer.ChunkTokens);
        // The budget hands the paced chunk to a step with streams decoding.
        var budget = new PrefillBudget(decoding: 8, shortPromptsWaiting: 0, o, pacer.ChunkTokens);
        Assert.Equal(pacer.ChunkTokens, budget.Take(4096));
        // Slowdown 0: the token rule.
        var off = new StepPacer(o with { PrefillStepSlowdown = 0 });
        off.Observe(8, 0, null, 20);
        Assert.Null(off.ChunkTokens);
    }

    [Fact]
    public async Task APacedLongPromptLetsStreamsDecodeInShortSteps()
    {
        // A decoding, then a long prompt: with pacing the prompt is prefilled in many more, smaller steps
        // than PrefillChunk / 4 (= 64 tokens) would give, so A receives more tokens while it is prefilled.
        async Task<int> TokensOfADuringPrefill(double slowdown)
        {
            var recorder = new Recorder();
            using var scheduler = new BatchScheduler(Model, Tokenizer, new SchedulerOptions { PrefillChunk = 256, PrefillStepSlowdown = slowdown }, recorder);
            var a = scheduler.Submit(new CompletionJob { Prompt = Prompt(8), MaxTokens = 500, IgnoreEos = true, Sampling = new SamplingParams { Temperature = 0 } });
            // A few of A's tokens first: decode-only steps for the pacer to measure. Polled on this thread
            // (an awaited read's continuation can wait for a pool thread while A finishes).
            for (int seen = 0; seen < 3;)
                if (a.TryRead(out var e)) { if (e is TokenEvent) seen++; }
                else Thread.Yield();
            var b = scheduler.Submit(new CompletionJob { Prompt = Prompt(400, seed: 3), MaxTokens = 1, IgnoreEos = true });
            await foreach (var _ in b.ReadAllAsync()) { }
            await foreach (var _ in a.ReadAllAsync()) { }
            return recorder.TokensWhileSecondPrefills();
        }
        int tokenRule = await TokensOfADuringPrefill(0), paced = await TokensOfADuringPrefill(1.5);
        Assert.True(tokenRule is >= 0 and <= 7, $"token rule: {tokenRule} steps"); // 400 / 64 = 6.25 steps
        Assert.True(paced > tokenRule, $"paced: A got {paced} tokens during the prefill, {tokenRule} with the token rule");
    }

    [Theory]
    [InlineData(-1, 3, "BurstGatherMilliseconds")]
    [InlineData(20, 0, "BurstQuietMilliseconds")]
    public void OutOfRangeGatheringIsRefusedByName(int gather, int quiet, string name)
    {
        var o = new SchedulerOptions { BurstGatherMilliseconds = gather, BurstQuietMilliseconds = quiet };
        Assert.Contains(name, Assert.Throws<ArgumentException>(() => new BatchScheduler(Model, Tokenizer, o)).Message);
    }

    [Theory]
    [InlineData(0.5)]
    [InlineData(-1)]
    [InlineData(double.NaN)]
    public void OutOfRangeSlowdownIsRefusedByName(double slowdown)
    {
        var o = new SchedulerOptions { PrefillStepSlowdown = slowdown };
        Assert.Contains("PrefillStepSlowdown", Assert.Throws<ArgumentException>(() => new BatchScheduler(Model, Tokenizer, o)).Message);
    }

    [Fact]
    public async Task CancellingDuringPrefillStopsIt()
    {
        var recorder = new Recorder();
        using var scheduler = new BatchScheduler(Model, Tokenizer, new SchedulerOptions { PrefillChunk = 8 }, recorder);
        using var cts = new CancellationTokenSource();
        var events = scheduler.Submit(new CompletionJob { Prompt = Prompt(500), MaxTokens = 4, Cancellation = cts.Token });
        cts.Cancel();
        var sw = Stopwatch.StartNew();
        while (scheduler.RunningCount + scheduler.WaitingCount > 0 && sw.Elapsed < TimeSpan.FromSeconds(30)) await Task.Delay(5);
        Assert.Equal(0, scheduler.ReservedKvBytes);
        lock (recorder.Calls) Assert.DoesNotContain("first", recorder.Calls);
        await foreach (var e in events.ReadAllAsync()) Assert.IsNotType<TokenEvent>(e);
    }
}
