using System.Diagnostics;
using System.Threading.Channels;
using PiServe.Inference.Cache;
using PiServe.Inference.Model;
using PiServe.Inference.Rope;
using PiServe.Inference.Tokenization;

namespace PiServe.Inference.Generation;

/// <summary>
/// Continuous batching for one model. Requests wait in a bounded queue; between decode steps the
/// loop admits as many as the batch size and the KV budget allow (each reserves prompt + max_tokens
/// positions up front, so the budget holds without ever running out mid-sequence) and prefills them;
/// every step then decodes all running sequences in one batched forward (one pass over the weights).
/// Finished and cancelled sequences leave at once and free their caches.
/// </summary>
/// <remarks>
/// Automatic prefix caching (<see cref="SchedulerOptions.PrefixCacheBytes"/>): as a prompt is prefilled,
/// its full blocks are copied into a <see cref="PrefixCache"/> keyed on their tokens and the rope regime
/// of the prefill; a later prompt (or another of the n choices of one request) that starts with the same
/// blocks under the same regime copies them into its own cache and prefills only the rest. The cached
/// blocks count against the KV budget beside the reservations and are evicted when a request needs the
/// room; the blocks a request is about to copy are pinned while room is made for it.
/// </remarks>
public sealed class BatchScheduler : IDisposable
{
    private readonly LlamaModel _model;
    private readonly ITokenizer _tokenizer;
    private readonly SchedulerOptions _options;
    private readonly ISchedulerObserver? _observer;
    private readonly Queue<Pending> _waiting = new();
    private readonly List<Running> _running = [];
    private readonly object _lock = new();
    private readonly SemaphoreSlim _wake = new(0);
    private readonly StepPacer _pacer;
    private readonly CancellationTokenSource _stop = new();
    private readonly Thread _loop;
    private readonly HashSet<int> _eos;
    private long _reservedBytes;
    private readonly PrefixCache? _prefixCache;
    /// <summary>The admission's match in the prefix cache, reused request after request.</summary>
    private readonly List<PrefixCache.Block> _admitPath = [];
    /// <summary>Whether a request has been admitted yet (the idle refill of prefix-cache spares waits for one).</summary>
    private bool _admittedAny;

    public BatchScheduler(LlamaModel model, ITokenizer tokenizer, SchedulerOptions options, ISchedulerObserver? observer = null)
    {
        options.Validate();
        _model = model;
        _tokenizer = tokenizer;
        _options = options;
        _pacer = new StepPacer(options);
        _observer = observer;
        _eos = [.. model.Config.EosTokenIds];
        if (tokenizer.EosTokenId is { } eos) _eos.Add(eos);
        // Cached blocks are copied between host buffers and the sequence's cache: a device engine's KV
        // cache lives in device memory, so the prefix cache is off there until blocks are copied on the device.
        if (options.PrefixCacheBytes > 0 && model.Engine is null)
            _prefixCache = new PrefixCache(options.PrefixBlockTokens, options.PrefixCacheBytes, model.KvBytesPerToken)
            {
                // Enough for the blocks of the largest step's prompts (a burst), refilled while idle.
                SpareTarget = (options.MaxStepPromptTokens + options.PrefixBlockTokens - 1) / options.PrefixBlockTokens,
            };
        _loop = new Thread(Loop) { IsBackground = true, Name = "piserve-scheduler" };
        _loop.Start();
    }

    public int WaitingCount { get { lock (_lock) return _waiting.Count; } }
    public int RunningCount { get { lock (_lock) return _running.Count; } }
    public long ReservedKvBytes => Interlocked.Read(ref _reservedBytes);
    public long KvBudgetBytes => _options.KvCacheBudgetBytes;
    public long KvBytesPerToken => _model.KvBytesPerToken;
    /// <summary>Decode steps run, and sequences they advanced (batching gain = tokens / steps).</summary>
    public long DecodeSteps, DecodedTokens;
    /// <summary>Prompt tokens looked up in the prefix cache, and those found there (hit rate = hits / queried).</summary>
    public long PrefixQueriedTokens, PrefixHitTokens;
    /// <summary>Stopwatch ticks spent copying cached blocks into sequences, and sequences' blocks into the cache.</summary>
    public long PrefixCopyInTicks, PrefixCopyOutTicks;
    /// <summary>The prefix cache (null when <see cref="SchedulerOptions.PrefixCacheBytes"/> is 0).</summary>
    public PrefixCache? PrefixCache => _prefixCache;

    /// <summary>Queues a request; its events arrive on the returned reader, ending with a FinishEvent or ErrorEvent.</summary>
    public ChannelReader<GenerationEvent> Submit(CompletionJob job) => SubmitAll([job])[0];

    /// <summary>
    /// Queues several sequences (the n choices of one request) all or none: each must fit the KV
    /// budget on its own, and the queue must have room for all of them. They are decoded in the same
    /// batches as far as the batch size and the budget allow.
    /// </summary>
    public ChannelReader<GenerationEvent>[] SubmitAll(IReadOnlyList<CompletionJob> jobs)
    {
        var bytes = new long[jobs.Count];
        for (int i = 0; i < jobs.Count; i++)
        {
            var job = jobs[i];
            if (job.MaxTokens < 0) throw new ArgumentOutOfRangeException(nameof(jobs), $"max_tokens must be non-negative, got {job.MaxTokens}");
            // Lengths and byte counts in long with overflow checks: a wrapped product would pass the
            // budget check and leave a negative reservation that stops limiting anyone.
            long planned = (long)job.Prompt.Length + job.MaxTokens;
            bytes[i] = planned <= int.MaxValue && planned <= long.MaxValue / Math.Max(1, KvBytesPerToken)
                ? planned * KvBytesPerToken : long.MaxValue;
            if (planned > int.MaxValue || bytes[i] > _options.KvCacheBudgetBytes)
            {
                _observer?.Rejected("kv_budget");
                throw new KvBudgetExceededException(
                    $"prompt ({job.Prompt.Length} tokens) + max_tokens ({job.MaxTokens}) needs {(bytes[i] == long.MaxValue ? "more than 2^63" : bytes[i].ToString())} bytes of KV cache, more than the budget of {_options.KvCacheBudgetBytes} bytes");
            }
        }
        // The prefix-cache keys (block hashes, rope regime) are computed here, off the scheduler loop.
        var hashes = new ulong[]?[jobs.Count];
        var regimes = new PrefixCache.Regime?[jobs.Count];
        if (_prefixCache is not null)
            for (int i = 0; i < jobs.Count; i++)
            {
                hashes[i] = i > 0 && ReferenceEquals(jobs[i].Prompt, jobs[i - 1].Prompt) // the n choices of one request
                    ? hashes[i - 1] : PrefixCache.ChainHashes(jobs[i].Prompt, _prefixCache.BlockTokens);
                regimes[i] = RegimeOf(jobs[i]);
            }
        var readers = new ChannelReader<GenerationEvent>[jobs.Count];
        lock (_lock)
        {
            if (_waiting.Count + jobs.Count > _options.MaxWaiting)
            {
                _observer?.Rejected("queue_full");
                throw new QueueFullException(jobs.Count == 1
                    ? $"{_waiting.Count} requests are already waiting (limit {_options.MaxWaiting})"
                    : $"{_waiting.Count} requests are already waiting and this one needs {jobs.Count} places (limit {_options.MaxWaiting})", TimeSpan.FromSeconds(1));
            }
            long now = Stopwatch.GetTimestamp();
            for (int i = 0; i < jobs.Count; i++)
            {
                var channel = Channel.CreateUnbounded<GenerationEvent>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
                _waiting.Enqueue(new Pending(jobs[i], channel.Writer, now, bytes[i])
                {
                    Hashes = hashes[i], Regime = regimes[i],
                });
                readers[i] = channel.Reader;
            }
        }
        for (int i = 0; i < jobs.Count; i++) _observer?.Queued();
        _wake.Release(jobs.Count);
        return readers;
    }

    private sealed record Pending(CompletionJob Job, ChannelWriter<GenerationEvent> Events, long SubmittedAt, long Bytes)
    {
        /// <summary>The prompt's block chain hashes (<see cref="PrefixCache.ChainHashes"/>), when the prefix cache is on.</summary>
        public ulong[]? Hashes { get; init; }
        /// <summary>The rope regime its prompt is prefilled under (with <see cref="Hashes"/>, off the scheduler loop).</summary>
        public PrefixCache.Regime? Regime { get; init; }
    }

    private sealed class Running(Pending p, InferenceSession session, Sampler sampler, StreamingDecoder decoder, StopStrings stops)
    {
        public Pending P { get; } = p;
        public InferenceSession Session { get; } = session;
        public Sampler Sampler { get; } = sampler;
        public StreamingDecoder Decoder { get; } = decoder;
        public StopStrings Stops { get; } = stops;
        public int NextToken;
        public int Generated;
        public long LastTokenAt;
        public string? FinishReason;
        /// <summary>The top-logprobs selection of each token (job.Logprobs entries), reused.</summary>
        public int[] TopIds = [];
        public float[] TopLogprobs = [];
        /// <summary>Still prefilling its prompt (chunk by chunk, between decode steps); not decoded until done.</summary>
        public bool Prefilling = true;
        /// <summary>The prompt's log-probs as its chunks are prefilled (echo with logprobs).</summary>
        public float?[]? PromptLps;
        public TopLogprob[]?[]? PromptTops;
        /// <summary>The prefix-cache blocks equal to this prompt's first Path.Count blocks (null: the prefix cache is off for it).</summary>
        public List<PrefixCache.Block>? Path;
        /// <summary>Whether cached blocks may replace its prefill (not when the prompt's log-probs are asked for).</summary>
        public bool Reuse;
        /// <summary>Whether its next full block may still be cached (false once one did not fit).</summary>
        public bool Publishing = true;
        /// <summary>Prompt tokens copied from the prefix cache.</summary>
        public int CachedTokens;
    }

    private void Loop()
    {
        var scratch = new ForwardScratch(_model.Config);
        var logits = new float[_options.MaxBatch * _model.Config.VocabSize];
        try
        {
            while (!_stop.IsCancellationRequested)
            {
                bool idle;
                lock (_lock) idle = _waiting.Count == 0 && _running.Count == 0;
                if (idle)
                {
                    if (RefillSpare()) continue;
                    _wake.Wait(_stop.Token);
                    continue;
                }

                try
                {
                    GatherBurst();
                    Admit();
                    Step(scratch, logits);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    // A failure in one step must not stop the loop (every later request would hang):
                    // the sequences of that step end with an error and free their caches.
                    FailRunning(e.Message);
                }
                Retire();
                ReportKv();
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested) { }
        finally
        {
            scratch.Dispose();
            _prefixCache?.Dispose();
            lock (_lock)
            {
                foreach (var r in _running) { r.P.Events.TryWrite(new ErrorEvent("the server is shutting down")); r.P.Events.TryComplete(); r.Session.Dispose(); }
                foreach (var p in _waiting) { p.Events.TryWrite(new ErrorEvent("the server is shutting down")); p.Events.TryComplete(); }
                _running.Clear();
                _waiting.Clear();
            }
        }
    }

    /// <summary>
    /// At the start of a busy period (nothing running, requests waiting): waits while more requests keep
    /// arriving, each within <see cref="SchedulerOptions.BurstQuietMilliseconds"/> of the last, for at most
    /// <see cref="SchedulerOptions.BurstGatherMilliseconds"/>, or until a full batch waits.
    /// </summary>
    private void GatherBurst()
    {
        int gather = _options.BurstGatherMilliseconds;
        if (gather == 0) return;
        long start = Stopwatch.GetTimestamp();
        while (true)
        {
            lock (_lock)
                if (_running.Count > 0 || _waiting.Count == 0 || _waiting.Count >= _options.MaxBatch) return;
            int left = gather - (int)Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            // An arrival releases _wake once per request; a quiet gap (no release) ends the gathering.
            if (left <= 0 || !_wake.Wait(Math.Min(left, _options.BurstQuietMilliseconds), _stop.Token)) return;
        }
    }

    /// <summary>
    /// While nothing runs or waits: one more spare prefix-cache buffer faulted in (a fraction of a
    /// millisecond, so a request arriving meanwhile waits no longer than that); false when the cache
    /// wants none. Within the KV budget left beside the reservations (none while idle).
    /// </summary>
    private bool RefillSpare()
    {
        // Not before a first request: a served model nobody asks for holds no spares (up to
        // MaxStepPromptTokens of KV each: 75–92 MB for the 134M and 1.1B shapes).
        if (_prefixCache is null || !_admittedAny || _wake.CurrentCount > 0) return false;
        long room;
        lock (_lock)
        {
            if (_waiting.Count > 0 || _running.Count > 0) return false;
            room = _options.KvCacheBudgetBytes - _reservedBytes;
        }
        return _prefixCache.Refill(room);
    }

    /// <summary>Moves waiting requests into the batch while the batch and KV budget allow (their prompts are prefilled by <see cref="PrefillStep"/>).</summary>
    private void Admit()
    {
        while (true)
        {
            Pending p;
            lock (_lock)
            {
                if (_waiting.Count == 0 || _running.Count >= _options.MaxBatch) return;
                var head = _waiting.Peek();
                if (head.Job.Cancellation.IsCancellationRequested)
                {
                    _waiting.Dequeue();
                    head.Events.TryComplete();
                    _observer?.Abandoned(Seconds(head.SubmittedAt));
                    continue;
                }
                // What the prefix cache may keep beside the reservations once this request is admitted.
                long room = _options.KvCacheBudgetBytes - _reservedBytes - head.Bytes;
                if (room < 0) return; // wait for memory (FIFO: no overtaking)
                if (_prefixCache is not null && !MakeRoom(head, room)) return;
                p = _waiting.Dequeue();
                _reservedBytes += p.Bytes;
                _admittedAny = true;
            }
            _observer?.Started(Seconds(p.SubmittedAt));
            try
            {
                StartSequence(p, _admitPath);
            }
            finally
            {
                _prefixCache?.Unpin(_admitPath);
                _admitPath.Clear();
            }
        }
    }

    /// <summary>
    /// Matches the head's prompt in the prefix cache (into <see cref="_admitPath"/>, pinned) and evicts
    /// other blocks until the cache holds at most <paramref name="room"/> bytes. When the pinned match
    /// itself does not fit beside the request's reservation, the request is admitted without it.
    /// </summary>
    private bool MakeRoom(Pending head, long room)
    {
        var cache = _prefixCache!;
        _admitPath.Clear();
        if (CanReuse(head.Job))
        {
            cache.Match(head.Regime!, head.Job.Prompt, head.Hashes, MaxReusedBlocks(head.Job), _admitPath);
            cache.Pin(_admitPath); // making room for this request must not evict what it is about to copy
        }
        if (cache.EvictTo(room)) return true;
        cache.Unpin(_admitPath);
        _admitPath.Clear();
        return cache.EvictTo(room);
    }

    private bool CanReuse(CompletionJob job) => !job.PromptLogprobs && job.Prompt.Length > _prefixCache!.BlockTokens;

    /// <summary>Full blocks a prompt may take from the cache: its last token is always computed (its logits start the generation).</summary>
    private int MaxReusedBlocks(CompletionJob job) => (job.Prompt.Length - 1) / _prefixCache!.BlockTokens;

    /// <summary>The regime the job's prompt is prefilled under (<see cref="InferenceSession.PrefillPart"/>): the cache key besides the tokens.</summary>
    private PrefixCache.Regime RegimeOf(CompletionJob job) =>
        new(InferenceSession.ParametersFor(job.Rope ?? _model.Rope, job.Policy, job.PlannedLength, job.Prompt.Length), _model.KvCacheType);

    private void StartSequence(Pending p, List<PrefixCache.Block> hit)
    {
        var job = p.Job;
        InferenceSession? session = null;
        try
        {
            session = new InferenceSession(_model, job.Rope, job.Policy, job.PlannedLength, _options.PrefillChunk, initialCapacity: job.PlannedLength);
            var decoder = _tokenizer.CreateStreamingDecoder(skipSpecialTokens: true);
            decoder.Prime(job.Prompt); // completion text continues the prompt's (" of the", not "of the")
            var running = new Running(p, session, new Sampler(job.Sampling, _model.Config.VocabSize, job.Prompt), decoder, new StopStrings(job.Stop));
            if (job.Logprobs is > 0 and var n) { running.TopIds = new int[n]; running.TopLogprobs = new float[n]; }
            if (job.PromptLogprobs)
            {
                running.PromptLps = new float?[job.Prompt.Length];
                running.PromptTops = new TopLogprob[]?[job.Prompt.Length];
            }
            // (A cache whose element type changed since the request was queued, or the scheduler started, is left out.)
            if (_prefixCache is not null && p.Regime is not null && session.Cache.ElementType == p.Regime.KvType
                && session.Cache.BytesPerToken * _prefixCache.BlockTokens == _prefixCache.BlockBytes)
            {
                running.Path = [];
                running.Reuse = CanReuse(job);
                if (running.Reuse && hit.Count > 0) Restore(running, hit);
            }
            lock (_lock) _running.Add(running);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or OutOfMemoryException)
        {
            session?.Dispose();
            Interlocked.Add(ref _reservedBytes, -p.Bytes);
            p.Events.TryWrite(new ErrorEvent(e.Message));
            p.Events.TryComplete();
            _observer?.Finished("error", Seconds(p.SubmittedAt), job.Prompt.Length, 0);
        }
    }

    /// <summary>Copies the blocks of <paramref name="blocks"/> past the session's length into it (a prefix-cache hit).</summary>
    private void Restore(Running r, List<PrefixCache.Block> blocks)
    {
        var cache = _prefixCache!;
        int from = r.Session.Length / cache.BlockTokens, to = blocks.Count;
        if (!ReferenceEquals(blocks, r.Path)) { r.Path!.Clear(); r.Path.AddRange(blocks); }
        int tokens = (to - from) * cache.BlockTokens;
        long start = Stopwatch.GetTimestamp();
        r.Session.PrefillFromCache(r.P.Job.Prompt, tokens, r.P.Regime!.Rope, c => cache.Restore(r.Path!, from, to, c));
        Interlocked.Add(ref PrefixCopyInTicks, Stopwatch.GetTimestamp() - start);
        r.CachedTokens += tokens;
        cache.Touch(r.Path!);
    }

    /// <summary>
    /// Before a prefill chunk: when the session stands at a block boundary on its path, takes the blocks
    /// cached since (by another sequence with the same prefix: the n choices of one request, or a request
    /// that arrived while this one waited).
    /// </summary>
    private void CatchUp(Running r)
    {
        var cache = _prefixCache!;
        int length = r.Session.Length;
        if (length % cache.BlockTokens != 0) return;
        int have = length / cache.BlockTokens;
        cache.Match(r.P.Regime!, r.P.Job.Prompt, r.P.Hashes, MaxReusedBlocks(r.P.Job), r.Path!);
        if (r.Path!.Count > have) Restore(r, r.Path);
    }

    /// <summary>After a prefill chunk: caches the prompt's blocks it completed (until one does not fit).</summary>
    private void Publish(Running r)
    {
        var cache = _prefixCache!;
        int full = Math.Min(r.Session.Length, r.P.Job.Prompt.Length) / cache.BlockTokens;
        if (!r.Publishing || r.Path!.Count >= full) return;
        long start = Stopwatch.GetTimestamp();
        while (r.Publishing && r.Path.Count < full)
            r.Publishing = cache.Publish(r.P.Regime!, r.P.Job.Prompt, r.P.Hashes, r.Path.Count, r.Session.Cache, r.Path,
                _options.KvCacheBudgetBytes - Interlocked.Read(ref _reservedBytes));
        Interlocked.Add(ref PrefixCopyOutTicks, Stopwatch.GetTimestamp() - start);
    }

    /// <summary>
    /// One scheduler step, in one forward pass (<see cref="InferenceSession.Step"/>): every sequence past
    /// its prefill decodes a token, and the sequences still prefilling take the next chunks of their
    /// prompts, oldest first, up to a token budget — chunked prefill as vLLM's enable_chunked_prefill
    /// does it: a long prompt delays the running streams by a chunk, not by its whole prefill, and the
    /// decode tokens ride in the chunk's matmuls (the weights are read once for both). The token budget
    /// is <see cref="PrefillBudget"/>'s: a quarter of PrefillChunk while streams decode (their
    /// inter-token time is one step), whole with none decoding, and a burst of short prompts at least
    /// as many as the streams is prefilled in one step. Prompts asking for their own log-probs are
    /// prefilled on their own after it (they need every row's logits).
    /// </summary>
    private void Step(ForwardScratch scratch, float[] logits)
    {
        var decoders = _stepBatch;
        var prefillers = _stepPrefill;
        decoders.Clear();
        prefillers.Clear();
        _stepSessions.Clear();
        _stepTokens.Clear();
        _stepChunks.Clear();
        lock (_lock)
            foreach (var r in _running)
                if (r.FinishReason is null && !r.P.Job.Cancellation.IsCancellationRequested)
                    (r.Prefilling ? prefillers : decoders).Add(r);
        int shortPrompts = 0;
        foreach (var r in prefillers)
            if (!r.P.Job.PromptLogprobs && PrefillBudget.IsShort(r.P.Job.Prompt.Length - r.Session.Length, _options)) shortPrompts++;
        int? paced = decoders.Count > 0 ? _pacer.ChunkTokens : null;
        var budget = new PrefillBudget(decoders.Count, shortPrompts, _options, paced);
        try
        {
            foreach (var r in decoders)
            {
                _stepSessions.Add(r.Session);
                _stepTokens.Add(r.NextToken);
            }
            foreach (var r in prefillers)
            {
                if (budget.Left <= 0) break;
                if (r.P.Job.PromptLogprobs) continue;
                try
                {
                    if (r.Reuse) CatchUp(r);
                }
                catch (Exception e) when (e is ArgumentException or InvalidOperationException or OutOfMemoryException)
                {
                    EndWithError(r, e.Message);
                    continue;
                }
                // Its next block is being computed this step by a sequence with the same prefix (the
                // other choices of its request, or the same document asked twice): copy it next step.
                if (r.Reuse && BlockInFlight(r)) continue;
                int n = budget.Take(r.P.Job.Prompt.Length - r.Session.Length);
                if (n == 0) continue;
                _stepChunks.Add(new InferenceSession.PromptChunk(r.Session, r.P.Job.Prompt, n));
                _stepChunkOwners.Add(r);
            }
            if (_stepSessions.Count > 0 || _stepChunks.Count > 0)
            {
                long started = Stopwatch.GetTimestamp();
                try
                {
                    InferenceSession.Step(_stepSessions, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_stepTokens), _stepChunks, scratch, logits);
                }
                catch (Exception e) when (e is ArgumentException or InvalidOperationException or OutOfMemoryException)
                {
                    // The step's sessions are no longer consistent: its sequences end with the error, the others go on.
                    foreach (var r in decoders.Concat(_stepChunkOwners))
                    {
                        EndWithError(r, e.Message);
                    }
                    return;
                }
                if (decoders.Count > 0)
                {
                    Interlocked.Increment(ref DecodeSteps);
                    Interlocked.Add(ref DecodedTokens, decoders.Count);
                }
                foreach (var r in decoders) EmitNext(r, r.Session.Logits, firstToken: false);
                foreach (var r in _stepChunkOwners)
                {
                    try
                    {
                        if (r.Path is not null) Publish(r);
                    }
                    catch (Exception e) when (e is ArgumentException or InvalidOperationException or OutOfMemoryException)
                    {
                        EndWithError(r, e.Message);
                        continue;
                    }
                    if (r.Session.Length == r.P.Job.Prompt.Length) PrefillDone(r);
                }
                int promptTokens = 0;
                foreach (var c in _stepChunks) promptTokens += c.Count;
                _pacer.Observe(decoders.Count, promptTokens, budget.Burst ? null : paced, Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            }
            foreach (var r in prefillers)
                if (r.P.Job.PromptLogprobs && budget.Left > 0) budget.Spend(PrefillWithPromptLogprobs(r, budget.Left));
        }
        finally
        {
            // Finished requests are not kept reachable until the next step.
            decoders.Clear();
            prefillers.Clear();
            _stepSessions.Clear();
            _stepChunks.Clear();
            _stepChunkOwners.Clear();
        }
    }

    /// <summary>
    /// Whether a sequence already in this step's chunks computes (and will cache) the prompt block
    /// <paramref name="r"/> would compute next, under the same rope regime: its chain hash equal,
    /// that sequence starting at or before the block and its chunk covering it.
    /// </summary>
    private bool BlockInFlight(Running r)
    {
        int bt = _prefixCache!.BlockTokens, at = r.Session.Length, b = at / bt;
        if (at % bt != 0 || b >= MaxReusedBlocks(r.P.Job)) return false;
        for (int i = 0; i < _stepChunkOwners.Count; i++)
        {
            var o = _stepChunkOwners[i];
            int from = o.Session.Length, to = from + _stepChunks[i].Count;
            if (o.Path is not null && o.Publishing && o.P.Hashes is { } h && h.Length > b && h[b] == r.P.Hashes![b]
                && from <= at && to >= at + bt && o.P.Regime!.SameAs(r.P.Regime!))
                return true;
        }
        return false;
    }

    /// <summary>Ends one sequence with an error event (its request is answered; the step's others go on).</summary>
    private static void EndWithError(Running r, string message)
    {
        r.FinishReason = "error";
        r.P.Events.TryWrite(new ErrorEvent(message));
    }

    /// <summary>A prompt whose prefill completed: counts its prefix-cache use and samples its first token (or ends it at max_tokens 0).</summary>
    private void PrefillDone(Running r)
    {
        var job = r.P.Job;
        r.Prefilling = false;
        if (r.Path is not null)
        {
            if (r.Reuse)
            {
                Interlocked.Add(ref PrefixQueriedTokens, job.Prompt.Length);
                Interlocked.Add(ref PrefixHitTokens, r.CachedTokens);
                _observer?.PrefixCacheLookup(job.Prompt.Length, r.CachedTokens);
            }
            r.Path = null;
        }
        if (job.PromptLogprobs) r.P.Events.TryWrite(new PromptLogprobsEvent(r.PromptLps!, r.PromptTops!));
        if (job.MaxTokens == 0) { r.FinishReason = "length"; return; }
        EmitNext(r, r.Session.Logits, firstToken: true);
    }

    /// <summary>The next chunk (up to <paramref name="budget"/> tokens) of a prompt whose log-probs were asked for, on its own; returns the tokens it took.</summary>
    private int PrefillWithPromptLogprobs(Running r, int budget)
    {
        int before = r.Session.Length;
        bool done;
        try
        {
            done = PrefillChunkWithPromptLogprobs(r, budget);
            if (r.Path is not null) Publish(r);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or OutOfMemoryException)
        {
            EndWithError(r, e.Message);
            return 0;
        }
        if (done) PrefillDone(r);
        return r.Session.Length - before;
    }

    private unsafe bool PrefillChunkWithPromptLogprobs(Running r, int budget)
    {
        var prompt = r.P.Job.Prompt;
        var row = _promptRow ??= new float[_model.Config.VocabSize];
        var lps = r.PromptLps!;
        var tops = r.PromptTops!;
        return r.Session.PrefillPart(prompt, budget, (start, count, hidden) =>
        {
            fixed (float* rp = row)
                for (int i = 0; i < count; i++)
                {
                    int pos = start + i;
                    if (pos + 1 >= prompt.Length) continue;
                    _model.Logits(hidden + (long)i * _model.Config.HiddenSize, 1, rp);
                    int found = Sampler.TopLogprobs(row, prompt[pos + 1], out float lp, r.TopIds, r.TopLogprobs);
                    lps[pos + 1] = lp;
                    tops[pos + 1] = Top(r, found);
                }
        });
    }

    private float[]? _promptRow;

    /// <summary>The selection in r.TopIds / r.TopLogprobs as the event's list (null when no alternatives were asked for).</summary>
    private TopLogprob[]? Top(Running r, int count)
    {
        if (r.TopIds.Length == 0) return null;
        var top = new TopLogprob[count];
        for (int i = 0; i < count; i++) top[i] = new TopLogprob(r.TopIds[i], _tokenizer.Decode([r.TopIds[i]]), r.TopLogprobs[i]);
        return top;
    }

    /// <summary>Samples the next token from the logits, emits it, and decides whether the sequence ends.</summary>
    private void EmitNext(Running r, ReadOnlySpan<float> logits, bool firstToken)
    {
        var job = r.P.Job;
        int token = r.Sampler.Sample(logits);
        r.Generated++;
        long now = Stopwatch.GetTimestamp();
        if (firstToken) _observer?.FirstToken(Seconds(r.P.SubmittedAt));
        else _observer?.Token(Stopwatch.GetElapsedTime(r.LastTokenAt, now).TotalSeconds);
        r.LastTokenAt = now;

        float? logprob = null;
        TopLogprob[]? top = null;
        if (job.Logprobs is not null)
        {
            int count = Sampler.TopLogprobs(logits, token, out float lp, r.TopIds, r.TopLogprobs);
            logprob = lp;
            top = Top(r, count);
        }

        if ((!job.IgnoreEos && _eos.Contains(token)) || IsStopToken(job.StopTokenIds, token))
        {
            r.P.Events.TryWrite(new TokenEvent(token, "", logprob, top));
            r.FinishReason = "stop";
            return;
        }
        string text = r.Stops.Push(r.Decoder.Append(token));
        r.P.Events.TryWrite(new TokenEvent(token, text, logprob, top));
        if (r.Stops.Stopped) r.FinishReason = "stop";
        else if (r.Generated >= job.MaxTokens) r.FinishReason = "length";
        else r.NextToken = token;
    }

    private static bool IsStopToken(IReadOnlyList<int> ids, int token)
    {
        for (int i = 0; i < ids.Count; i++)
            if (ids[i] == token) return true;
        return false;
    }

    // The step's lists, reused by the scheduler loop (its only caller) step after step.
    private readonly List<Running> _stepBatch = [];
    private readonly List<Running> _stepPrefill = [];
    private readonly List<Running> _stepChunkOwners = [];
    private readonly List<InferenceSession> _stepSessions = [];
    private readonly List<int> _stepTokens = [];
    private readonly List<InferenceSession.PromptChunk> _stepChunks = [];

    private void FailRunning(string message)
    {
        List<Running> failed;
        lock (_lock)
        {
            failed = _running.Where(r => r.FinishReason is null).ToList();
            foreach (var r in failed) _running.Remove(r);
        }
        foreach (var r in failed)
        {
            r.P.Events.TryWrite(new ErrorEvent($"generation failed: {message}"));
            r.P.Events.TryComplete();
            r.Session.Dispose();
            Interlocked.Add(ref _reservedBytes, -r.P.Bytes);
            _observer?.Finished("error", Seconds(r.P.SubmittedAt), r.P.Job.Prompt.Length, r.Generated);
        }
    }

    /// <summary>Finished or cancelled sequences leave the batch and free their KV cache.</summary>
    private void Retire()
    {
        List<Running> done;
        lock (_lock)
        {
            done = _running.Where(r => r.FinishReason is not null || r.P.Job.Cancellation.IsCancellationRequested).ToList();
            foreach (var r in done) _running.Remove(r);
        }
        foreach (var r in done)
        {
            string reason = r.FinishReason ?? "cancelled";
            if (r.FinishReason is not null and not "error") // an error was reported as its own event
            {
                string trailing = r.Stops.Push(r.Decoder.Flush()) + r.Stops.Flush();
                r.P.Events.TryWrite(new FinishEvent(reason, r.P.Job.Prompt.Length, r.Generated, trailing));
            }
            r.P.Events.TryComplete();
            r.Session.Dispose();
            Interlocked.Add(ref _reservedBytes, -r.P.Bytes);
            _observer?.Finished(reason, Seconds(r.P.SubmittedAt), r.P.Job.Prompt.Length, r.Generated);
        }
    }

    private void ReportKv()
    {
        long used;
        lock (_lock) used = _running.Sum(r => r.Session.Cache.UsedBytes);
        _observer?.KvCache(used, _options.KvCacheBudgetBytes);
        if (_prefixCache is not null) _observer?.PrefixCache(_prefixCache.BlockCount, _prefixCache.Bytes);
    }

    private static double Seconds(long since) => Stopwatch.GetElapsedTime(since).TotalSeconds;

    public void Dispose()
    {
        _stop.Cancel();
        _loop.Join(TimeSpan.FromSeconds(10));
    }
}
