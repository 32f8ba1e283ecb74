using System.Diagnostics.Metrics;

namespace PiServe.Api.Metrics;

/// <summary>
/// The server's instruments, on one <see cref="Meter"/> named "PiServe" created through the host's
/// <see cref="IMeterFactory"/>. Register once per host (see <see cref="MetricsServiceCollectionExtensions.AddPiServeMetrics"/>)
/// and call these methods from the serving and evaluation code; the Prometheus exposition at
/// <c>/metrics</c> renders what they record.
/// </summary>
/// <remarks>
/// <para>All methods are thread-safe and cheap (no allocation once a model's series exists).
/// A null <c>model</c> or label value is recorded as the empty string. Durations are in seconds.</para>
/// <para>Request lifecycle, for one request:
/// <see cref="RequestQueued"/> → <see cref="RequestDequeued"/> (if it was queued) → <see cref="RequestStarted"/>
/// → <see cref="FirstToken"/> → <see cref="TokenGenerated"/> per later token → <see cref="RequestFinished"/>.
/// A request dropped before it started is ended with <see cref="RequestDequeued"/> + <see cref="RequestRejected"/>.
/// <see cref="TrackRequest"/> returns a <see cref="RequestTracker"/> that makes these calls with its own clock.</para>
/// <para>The token counters are added by <see cref="RequestFinished"/> (and
/// <see cref="EvalTokensScored"/>); <see cref="FirstToken"/> and <see cref="TokenGenerated"/> only
/// observe latencies, so nothing is counted twice.</para>
/// </remarks>
public sealed class PiServeMetrics
{
    /// <summary>The meter name.</summary>
    public const string MeterName = "PiServe";

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

        /// <summary>Every name above.</summary>
        public static readonly IReadOnlyList<string> All =
        [
            PromptTokens, GenerationTokens, Requests, EvalTokensScored, RequestsRunning, RequestsWaiting,
            KvCacheBytesUsed, KvCacheBytesCapacity, EvalJobs, TimeToFirstToken, InterTokenLatency, RequestDuration, RequestQueue,
        ];
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

    private const string ModelTag = "model";

    private readonly Counter<long> _promptTokens;
    private readonly Counter<long> _generationTokens;
    private readonly Counter<long> _requests;
    private readonly Counter<long> _evalTokensScored;
    private readonly UpDownCounter<long> _running;
    private readonly UpDownCounter<long> _waiting;
    private readonly Gauge<long> _kvUsed;
    private readonly Gauge<long> _kvCapacity;
    private readonly UpDownCounter<long> _evalJobs;
    private readonly Histogram<double> _ttft;
    private readonly Histogram<double> _itl;
    private readonly Histogram<double> _duration;
    private readonly Histogram<double> _queue;

    public PiServeMetrics(IMeterFactory meterFactory)
    {
        Meter = meterFactory.Create(new MeterOptions(MeterName));
        var m = Meter;
        _promptTokens = m.CreateCounter<long>("piserve.prompt_tokens", "{token}", "Prompt tokens processed, by model.");
        _generationTokens = m.CreateCounter<long>("piserve.generation_tokens", "{token}", "Tokens generated, by model.");
        _requests = m.CreateCounter<long>("piserve.requests", "{request}", "Requests finished, by model and finish reason.");
        _evalTokensScored = m.CreateCounter<long>("piserve.eval.tokens_scored", "{token}", "Tokens scored by evaluation jobs, by model.");
        _running = m.CreateUpDownCounter<long>("piserve.requests.running", "{request}", "Requests currently generating, by model.");
        _waiting = m.CreateUpDownCounter<long>("piserve.requests.waiting", "{request}", "Requests waiting in the queue, by model.");
        _kvUsed = m.CreateGauge<long>("piserve.kv_cache.bytes_used", "By", "KV-cache bytes in use, by model.");
        _kvCapacity = m.CreateGauge<long>("piserve.kv_cache.bytes_capacity", "By", "KV-cache bytes available in all, by model.");
        _evalJobs = m.CreateUpDownCounter<long>("piserve.eval.jobs", "{job}", "Evaluation jobs, by state.");
        _ttft = Histogram(m, "piserve.time_to_first_token", "Seconds from a request's arrival to its first generated token, by model.", TimeToFirstTokenBuckets);
        _itl = Histogram(m, "piserve.inter_token_latency", "Seconds between consecutive generated tokens of a request, by model.", InterTokenLatencyBuckets);
        _duration = Histogram(m, "piserve.request.duration", "Seconds from a request's arrival to its end, by model.", RequestDurationBuckets);
        _queue = Histogram(m, "piserve.request.queue", "Seconds a request waited in the queue before it started, by model.", RequestQueueBuckets);
    }

    private static Histogram<double> Histogram(Meter m, string name, string description, IReadOnlyList<double> buckets) =>
        m.CreateHistogram<double>(name, "s", description, tags: null,
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = buckets });

    /// <summary>The "PiServe" meter holding every instrument.</summary>
    public Meter Meter { get; }

    private static KeyValuePair<string, object?> Model(string? model) => new(ModelTag, model ?? "");

    /// <summary>
    /// Creates every per-model series at zero (counters, gauges, each finish reason, empty histograms)
    /// so a fresh host exposes each family the dashboard queries before its first request, as
    /// prometheus-net's pre-declared label children do; Grafana then shows 0 rather than "no data".
    /// </summary>
    public void DeclareModel(string model, long kvCapacityBytes)
    {
        var tag = Model(model);
        _promptTokens.Add(0, tag);
        _generationTokens.Add(0, tag);
        _evalTokensScored.Add(0, tag);
        _running.Add(0, tag);
        _waiting.Add(0, tag);
        _kvUsed.Record(0, tag);
        _kvCapacity.Record(kvCapacityBytes, tag);
        foreach (string reason in (string[])[FinishReasons.Stop, FinishReasons.Length, FinishReasons.Abort, FinishReasons.Error])
            _requests.Add(0, tag, new KeyValuePair<string, object?>("finish_reason", reason));
        // A NaN is never observed, but it creates the series (HistogramFamily): all buckets at zero.
        foreach (var histogram in (Histogram<double>[])[_ttft, _itl, _duration, _queue])
            histogram.Record(double.NaN, tag);
    }

    /// <summary>Creates <c>piserve_eval_jobs{state}</c> at zero for every state a job can be in.</summary>
    public void DeclareEvalStates(IEnumerable<string> states)
    {
        foreach (string state in states) _evalJobs.Add(0, new KeyValuePair<string, object?>("state", state));
    }

    /// <summary>A request for <paramref name="model"/> entered the queue: <c>piserve_requests_waiting</c> +1.</summary>
    public void RequestQueued(string model) => _waiting.Add(1, Model(model));

    /// <summary>
    /// A queued request left the queue (to start, or because it was dropped):
    /// <c>piserve_requests_waiting</c> −1 and <paramref name="queueSeconds"/> observed in <c>piserve_request_queue_seconds</c>.
    /// </summary>
    public void RequestDequeued(string model, double queueSeconds)
    {
        var tag = Model(model);
        _waiting.Add(-1, tag);
        _queue.Record(queueSeconds, tag);
    }

    /// <summary>A request started generating: <c>piserve_requests_running</c> +1.</summary>
    public void RequestStarted(string model) => _running.Add(1, Model(model));

    /// <summary>
    /// A request produced its first token, <paramref name="secondsSinceArrival"/> after it arrived:
    /// observed in <c>piserve_time_to_first_token_seconds</c>.
    /// </summary>
    public void FirstToken(string model, double secondsSinceArrival) => _ttft.Record(secondsSinceArrival, Model(model));

    /// <summary>
    /// A request produced a token after its first, <paramref name="interTokenSeconds"/> after the
    /// previous one: observed in <c>piserve_inter_token_latency_seconds</c>.
    /// </summary>
    public void TokenGenerated(string model, double interTokenSeconds) => _itl.Record(interTokenSeconds, Model(model));

    /// <summary>
    /// A started request ended: <c>piserve_requests_running</c> −1, <c>piserve_requests_total{finish_reason}</c> +1,
    /// <paramref name="durationSeconds"/> (since arrival) observed in <c>piserve_request_duration_seconds</c>, and
    /// the request's tokens added to <c>piserve_prompt_tokens_total</c> and <c>piserve_generation_tokens_total</c>.
    /// </summary>
    /// <param name="finishReason">One of <see cref="FinishReasons"/> (any string is accepted).</param>
    public void RequestFinished(string model, string finishReason, double durationSeconds, long promptTokens, long generatedTokens)
    {
        var tag = Model(model);
        _running.Add(-1, tag);
        _requests.Add(1, tag, new KeyValuePair<string, object?>("finish_reason", finishReason ?? ""));
        _duration.Record(durationSeconds, tag);
        if (promptTokens > 0) _promptTokens.Add(promptTokens, tag);
        if (generatedTokens > 0) _generationTokens.Add(generatedTokens, tag);
    }

    /// <summary>
    /// A request ended without ever starting (rejected, or cancelled while queued):
    /// <c>piserve_requests_total{finish_reason}</c> +1 and <paramref name="durationSeconds"/> observed
    /// in <c>piserve_request_duration_seconds</c>. Call <see cref="RequestDequeued"/> first if it was queued.
    /// </summary>
    public void RequestRejected(string model, string finishReason, double durationSeconds)
    {
        var tag = Model(model);
        _requests.Add(1, tag, new KeyValuePair<string, object?>("finish_reason", finishReason ?? ""));
        _duration.Record(durationSeconds, tag);
    }

    /// <summary>
    /// Starts tracking one request that has just arrived and is queued (<see cref="RequestQueued"/>);
    /// the returned tracker times it and makes the remaining lifecycle calls.
    /// </summary>
    public RequestTracker TrackRequest(string model) => new(this, model);

    /// <summary>Sets <c>piserve_kv_cache_bytes_used</c> and <c>piserve_kv_cache_bytes_capacity</c> of <paramref name="model"/>.</summary>
    public void SetKvCache(string model, long usedBytes, long capacityBytes)
    {
        var tag = Model(model);
        _kvUsed.Record(usedBytes, tag);
        _kvCapacity.Record(capacityBytes, tag);
    }

    /// <summary>An evaluation job scored <paramref name="tokens"/> more tokens: <c>piserve_eval_tokens_scored_total</c>.</summary>
    public void EvalTokensScored(string model, long tokens)
    {
        if (tokens > 0) _evalTokensScored.Add(tokens, Model(model));
    }

    /// <summary>
    /// An evaluation job moved between states: <c>piserve_eval_jobs{state=from}</c> −1 and
    /// <c>piserve_eval_jobs{state=to}</c> +1. Pass null as <paramref name="fromState"/> for a new job and
    /// as <paramref name="toState"/> for a job that is forgotten.
    /// </summary>
    public void EvalJobMoved(string? fromState, string? toState)
    {
        if (fromState is not null) _evalJobs.Add(-1, new KeyValuePair<string, object?>("state", fromState));
        if (toState is not null) _evalJobs.Add(1, new KeyValuePair<string, object?>("state", toState));
    }
}
