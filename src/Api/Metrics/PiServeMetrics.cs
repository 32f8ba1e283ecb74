using Prometheus;

namespace PiServe.Api.Metrics;

/// <summary>
/// The server's metrics: prometheus-net counters, gauges and histograms on one
/// <see cref="CollectorRegistry"/> (<see cref="Registry"/>), which <c>GET /metrics</c> exposes in the
/// Prometheus text format 0.0.4 (see <see cref="MetricsServiceCollectionExtensions"/>). The host
/// registers one instance (<see cref="MetricsServiceCollectionExtensions.AddPiServeMetrics"/>) on a
/// registry of its own that also holds the process and runtime metrics (<see cref="ProcessMetrics"/>);
/// the serving and evaluation code calls these methods.
/// </summary>
/// <remarks>
/// <para>All methods are thread-safe and cheap. A null <c>model</c> or label value is recorded as the
/// empty string. Durations are in seconds.</para>
/// <para>Request lifecycle, for one request:
/// <see cref="RequestQueued"/> → <see cref="RequestDequeued"/> (if it was queued) → <see cref="RequestStarted"/>
/// → <see cref="FirstToken"/> → <see cref="TokenGenerated"/> per later token → <see cref="RequestFinished"/>.
/// A request dropped before it started is ended with <see cref="RequestDequeued"/> + <see cref="RequestRejected"/>.</para>
/// <para>The token counters are added by <see cref="RequestFinished"/> (and
/// <see cref="EvalTokensScored"/>); <see cref="FirstToken"/> and <see cref="TokenGenerated"/> only
/// observe latencies, so nothing is counted twice.</para>
/// </remarks>
public sealed class PiServeMetrics
{
    /// <summary>The names as exposed to Prometheus.</summary>
    public static class Names
    {
        public const string PromptTokens = "piserve_prompt_tokens_total";
        public const string GenerationTokens = "piserve_generation_tokens_total";
        public const string Requests = "piserve_requests_total";
        public const string EvalTokensScored = "piserve_eval_tokens_scored_total";
        public const string RequestsRunning = "piserve_requests_running";
        public const string RequestsWaiting = "piserve_requests_waiting";
        public const string KvCacheBytesUsed = "piserve_kv_cache_bytes_used";
        public const string KvCacheBytesCapacity = "piserve_kv_cache_bytes_capacity";
        public const string EvalJobs = "piserve_eval_jobs";
        public const string TimeToFirstToken = "piserve_time_to_first_token_seconds";
        public const string InterTokenLatency = "piserve_inter_token_latency_seconds";
        public const string RequestDuration = "piserve_request_duration_seconds";
        public const string RequestQueue = "piserve_request_queue_seconds";
        public const string PrefixCacheQueries = "piserve_prefix_cache_queries_total";
        public const string PrefixCacheHits = "piserve_prefix_cache_hits_total";
        public const string PrefixCacheBlocks = "piserve_prefix_cache_blocks";
        public const string PrefixCacheBytes = "piserve_prefix_cache_bytes";

        /// <summary>Every name above.</summary>
        public static readonly IReadOnlyList<string> All =
        [
            PromptTokens, GenerationTokens, Requests, EvalTokensScored, RequestsRunning, RequestsWaiting,
            KvCacheBytesUsed, KvCacheBytesCapacity, EvalJobs, TimeToFirstToken, InterTokenLatency, RequestDuration, RequestQueue,
            PrefixCacheQueries, PrefixCacheHits, PrefixCacheBlocks, PrefixCacheBytes,
        ];

        /// <summary>The prefix-cache families (vLLM's prefix_cache_queries / prefix_cache_hits, plus what the cache holds).</summary>
        public static readonly IReadOnlyList<string> PrefixCache = [PrefixCacheQueries, PrefixCacheHits, PrefixCacheBlocks, PrefixCacheBytes];

        /// <summary>Every family a host exposes under piserve_ (all of them on the dashboard).</summary>
        public static readonly IReadOnlyList<string> Exposed = All;
    }

    /// <summary>Label values of <c>finish_reason</c> (OpenAI's, plus abort and error).</summary>
    public static class FinishReasons
    {
        /// <summary>A stop token or stop sequence ended generation.</summary>
        public const string Stop = "stop";
        /// <summary><c>max_tokens</c> or the context length ended generation.</summary>
        public const string Length = "length";
        /// <summary>The client went away or cancelled.</summary>
        public const string Abort = "abort";
        /// <summary>The server failed the request.</summary>
        public const string Error = "error";
    }

    /// <summary>Bucket upper bounds of <c>piserve_time_to_first_token_seconds</c> (1 ms .. 60 s).</summary>
    public static readonly IReadOnlyList<double> TimeToFirstTokenBuckets =
        [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 60];

    /// <summary>Bucket upper bounds of <c>piserve_inter_token_latency_seconds</c> (0.5 ms .. 2.5 s).</summary>
    public static readonly IReadOnlyList<double> InterTokenLatencyBuckets =
        [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5];

    /// <summary>Bucket upper bounds of <c>piserve_request_duration_seconds</c> (10 ms .. 600 s).</summary>
    public static readonly IReadOnlyList<double> RequestDurationBuckets =
        [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 600];

    /// <summary>Bucket upper bounds of <c>piserve_request_queue_seconds</c> (1 ms .. 600 s).</summary>
    public static readonly IReadOnlyList<double> RequestQueueBuckets =
        [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];

    private const string ModelLabel = "model";

    private readonly Counter _promptTokens;
    private readonly Counter _generationTokens;
    private readonly Counter _requests;
    private readonly Counter _evalTokensScored;
    private readonly Gauge _running;
    private readonly Gauge _waiting;
    private readonly Gauge _kvUsed;
    private readonly Gauge _kvCapacity;
    private readonly Gauge _evalJobs;
    private readonly Histogram _ttft;
    private readonly Histogram _itl;
    private readonly Histogram _duration;
    private readonly Histogram _queue;
    private readonly Counter _prefixQueries;
    private readonly Counter _prefixHits;
    private readonly Gauge _prefixBlocks;
    private readonly Gauge _prefixBytes;

    /// <summary>
    /// The instruments on a registry of their own, which also holds the process and runtime metrics
    /// (<see cref="ProcessMetrics.Register"/>): what a host registers, so that two hosts in one
    /// process do not expose each other's values.
    /// </summary>
    public PiServeMetrics() : this(ProcessMetrics.Register(Prometheus.Metrics.NewCustomRegistry()))
    {
    }

    /// <summary>
    /// The instruments on <paramref name="registry"/> (a fresh <see cref="Prometheus.Metrics.NewCustomRegistry"/>
    /// for an isolated instance, or <see cref="Prometheus.Metrics.DefaultRegistry"/>). The families are
    /// created once per registry: a second instance on the same registry shares the first one's series.
    /// </summary>
    public PiServeMetrics(CollectorRegistry registry)
    {
        Registry = registry;
        // No exemplars: the text format 0.0.4 cannot carry them, so recording them would be wasted work.
        var f = Prometheus.Metrics.WithCustomRegistry(registry);
        f.ExemplarBehavior = ExemplarBehavior.NoExemplars();
        string[] model = [ModelLabel];
        // Label names in alphabetical order, as they are rendered: {finish_reason="stop",model="x"}.
        _requests = f.CreateCounter(Names.Requests, "Requests finished, by model and finish reason.", ["finish_reason", ModelLabel]);
        _promptTokens = f.CreateCounter(Names.PromptTokens, "Prompt tokens processed, by model.", model);
        _generationTokens = f.CreateCounter(Names.GenerationTokens, "Tokens generated, by model.", model);
        _evalTokensScored = f.CreateCounter(Names.EvalTokensScored, "Tokens scored by evaluation jobs, by model.", model);
        _running = f.CreateGauge(Names.RequestsRunning, "Requests currently generating, by model.", model);
        _waiting = f.CreateGauge(Names.RequestsWaiting, "Requests waiting in the queue, by model.", model);
        _kvUsed = f.CreateGauge(Names.KvCacheBytesUsed, "KV-cache bytes in use, by model.", model);
        _kvCapacity = f.CreateGauge(Names.KvCacheBytesCapacity, "KV-cache bytes available in all, by model.", model);
        _evalJobs = f.CreateGauge(Names.EvalJobs, "Evaluation jobs, by state.", ["state"]);
        _ttft = Histogram(f, Names.TimeToFirstToken, "Seconds from a request's arrival to its first generated token, by model.", TimeToFirstTokenBuckets);
        _itl = Histogram(f, Names.InterTokenLatency, "Seconds between consecutive generated tokens of a request, by model.", InterTokenLatencyBuckets);
        _duration = Histogram(f, Names.RequestDuration, "Seconds from a request's arrival to its end, by model.", RequestDurationBuckets);
        _prefixQueries = f.CreateCounter(Names.PrefixCacheQueries, "Prompt tokens looked up in the prefix cache, by model.", model);
        _prefixHits = f.CreateCounter(Names.PrefixCacheHits, "Prompt tokens found in the prefix cache (not prefilled again), by model.", model);
        _prefixBlocks = f.CreateGauge(Names.PrefixCacheBlocks, "Blocks held by the prefix cache, by model.", model);
        _prefixBytes = f.CreateGauge(Names.PrefixCacheBytes, "KV-cache bytes held by the prefix cache (counted in the KV budget beside piserve_kv_cache_bytes_used), by model.", model);
        _queue = Histogram(f, Names.RequestQueue, "Seconds a request waited in the queue before it started, by model.", RequestQueueBuckets);
    }

    private static Histogram Histogram(IMetricFactory f, string name, string help, IReadOnlyList<double> buckets) =>
        f.CreateHistogram(name, help, [ModelLabel], new HistogramConfiguration { Buckets = [.. buckets] });

    /// <summary>The registry holding every family (and, for a host's instance, the process and runtime metrics).</summary>
    public CollectorRegistry Registry { get; }

    private static string Label(string? value) => value ?? "";

    /// <summary>
    /// Creates every per-model series at zero (counters, gauges, each finish reason, empty histograms)
    /// with prometheus-net's label children (<c>WithLabels</c>), which are published as soon as they
    /// exist, so a fresh host exposes each family the dashboard queries before its first request;
    /// Grafana then shows 0 rather than "no data".
    /// </summary>
    public void DeclareModel(string model, long kvCapacityBytes)
    {
        string m = Label(model);
        foreach (var counter in (Counter[])[_promptTokens, _generationTokens, _evalTokensScored, _prefixQueries, _prefixHits]) counter.WithLabels(m);
        foreach (var gauge in (Gauge[])[_running, _waiting, _kvUsed, _prefixBlocks, _prefixBytes]) gauge.WithLabels(m);
        _kvCapacity.WithLabels(m).Set(kvCapacityBytes);
        foreach (string reason in (string[])[FinishReasons.Stop, FinishReasons.Length, FinishReasons.Abort, FinishReasons.Error])
            _requests.WithLabels(reason, m);
        foreach (var histogram in (Histogram[])[_ttft, _itl, _duration, _queue]) histogram.WithLabels(m);
    }

    /// <summary>Creates <c>piserve_eval_jobs{state}</c> at zero for every state a job can be in.</summary>
    public void DeclareEvalStates(IEnumerable<string> states)
    {
        foreach (string state in states) _evalJobs.WithLabels(Label(state));
    }

    /// <summary>A request for <paramref name="model"/> entered the queue: <c>piserve_requests_waiting</c> +1.</summary>
    public void RequestQueued(string model) => _waiting.WithLabels(Label(model)).Inc();

    /// <summary>
    /// A queued request left the queue (to start, or because it was dropped):
    /// <c>piserve_requests_waiting</c> −1 and <paramref name="queueSeconds"/> observed in <c>piserve_request_queue_seconds</c>.
    /// </summary>
    public void RequestDequeued(string model, double queueSeconds)
    {
        string m = Label(model);
        _waiting.WithLabels(m).Dec();
        _queue.WithLabels(m).Observe(queueSeconds);
    }

    /// <summary>A request started generating: <c>piserve_requests_running</c> +1.</summary>
    public void RequestStarted(string model) => _running.WithLabels(Label(model)).Inc();

    /// <summary>
    /// A request produced its first token, <paramref name="secondsSinceArrival"/> after it arrived:
    /// observed in <c>piserve_time_to_first_token_seconds</c>.
    /// </summary>
    public void FirstToken(string model, double secondsSinceArrival) => _ttft.WithLabels(Label(model)).Observe(secondsSinceArrival);

    /// <summary>
    /// A request produced a token after its first, <paramref name="interTokenSeconds"/> after the
    /// previous one: observed in <c>piserve_inter_token_latency_seconds</c>.
    /// </summary>
    public void TokenGenerated(string model, double interTokenSeconds) => _itl.WithLabels(Label(model)).Observe(interTokenSeconds);

    /// <summary>
    /// A started request ended: <c>piserve_requests_running</c> −1, <c>piserve_requests_total{finish_reason}</c> +1,
    /// <paramref name="durationSeconds"/> (since arrival) observed in <c>piserve_request_duration_seconds</c>, and
    /// the request's tokens added to <c>piserve_prompt_tokens_total</c> and <c>piserve_generation_tokens_total</c>.
    /// </summary>
    /// <param name="finishReason">One of <see cref="FinishReasons"/> (any string is accepted).</param>
    public void RequestFinished(string model, string finishReason, double durationSeconds, long promptTokens, long generatedTokens)
    {
        string m = Label(model);
        _running.WithLabels(m).Dec();
        _requests.WithLabels(Label(finishReason), m).Inc();
        _duration.WithLabels(m).Observe(durationSeconds);
        if (promptTokens > 0) _promptTokens.WithLabels(m).Inc(promptTokens);
        if (generatedTokens > 0) _generationTokens.WithLabels(m).Inc(generatedTokens);
    }

    /// <summary>
    /// A request ended without ever starting (rejected, or cancelled while queued):
    /// <c>piserve_requests_total{finish_reason}</c> +1 and <paramref name="durationSeconds"/> observed
    /// in <c>piserve_request_duration_seconds</c>. Call <see cref="RequestDequeued"/> first if it was queued.
    /// </summary>
    public void RequestRejected(string model, string finishReason, double durationSeconds)
    {
        string m = Label(model);
        _requests.WithLabels(Label(finishReason), m).Inc();
        _duration.WithLabels(m).Observe(durationSeconds);
    }

    /// <summary>Sets <c>piserve_kv_cache_bytes_used</c> and <c>piserve_kv_cache_bytes_capacity</c> of <paramref name="model"/>.</summary>
    public void SetKvCache(string model, long usedBytes, long capacityBytes)
    {
        string m = Label(model);
        _kvUsed.WithLabels(m).Set(usedBytes);
        _kvCapacity.WithLabels(m).Set(capacityBytes);
    }

    /// <summary>
    /// A prompt was looked up in the prefix cache: <paramref name="promptTokens"/> added to
    /// <c>piserve_prefix_cache_queries_total</c>, the <paramref name="cachedTokens"/> found to
    /// <c>piserve_prefix_cache_hits_total</c> (hit rate = rate(hits) / rate(queries)).
    /// </summary>
    public void PrefixCacheLookup(string model, long promptTokens, long cachedTokens)
    {
        string m = Label(model);
        if (promptTokens > 0) _prefixQueries.WithLabels(m).Inc(promptTokens);
        if (cachedTokens > 0) _prefixHits.WithLabels(m).Inc(cachedTokens);
    }

    /// <summary>Sets <c>piserve_prefix_cache_blocks</c> and <c>piserve_prefix_cache_bytes</c> of <paramref name="model"/>.</summary>
    public void SetPrefixCache(string model, long blocks, long bytes)
    {
        string m = Label(model);
        _prefixBlocks.WithLabels(m).Set(blocks);
        _prefixBytes.WithLabels(m).Set(bytes);
    }

    /// <summary>An evaluation job scored <paramref name="tokens"/> more tokens: <c>piserve_eval_tokens_scored_total</c>.</summary>
    public void EvalTokensScored(string model, long tokens)
    {
        if (tokens > 0) _evalTokensScored.WithLabels(Label(model)).Inc(tokens);
    }

    /// <summary>Sets <c>piserve_eval_jobs{state}</c> from the job store's own counts (shared by every host of a deployment).</summary>
    public void SetEvalJobs(IReadOnlyDictionary<string, long> counts)
    {
        foreach (var (state, n) in counts) _evalJobs.WithLabels(Label(state)).Set(n);
    }

    /// <summary>
    /// An evaluation job moved between states: <c>piserve_eval_jobs{state=from}</c> −1 and
    /// <c>piserve_eval_jobs{state=to}</c> +1. Pass null as <paramref name="fromState"/> for a new job and
    /// as <paramref name="toState"/> for a job that is forgotten.
    /// </summary>
    public void EvalJobMoved(string? fromState, string? toState)
    {
        if (fromState is not null) _evalJobs.WithLabels(fromState).Dec();
        if (toState is not null) _evalJobs.WithLabels(toState).Inc();
    }
}
