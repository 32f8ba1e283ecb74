using System.Diagnostics;

namespace PiServe.Api.Metrics;

/// <summary>
/// Times one request and makes its <see cref="PiServeMetrics"/> lifecycle calls: created queued
/// (by <see cref="PiServeMetrics.TrackRequest"/>), then <see cref="Started"/>, <see cref="Token"/> per
/// generated token, and <see cref="Finish"/>. Disposing an unfinished tracker finishes it as
/// <see cref="PiServeMetrics.FinishReasons.Abort"/>, so <c>using var t = metrics.TrackRequest(model);</c>
/// keeps the running/waiting gauges balanced on every path.
/// </summary>
/// <remarks>One request, one thread at a time: not meant to be shared between concurrent callers.</remarks>
public sealed class RequestTracker : IDisposable
{
    private readonly PiServeMetrics _metrics;
    private readonly long _arrival = Stopwatch.GetTimestamp();
    private long _started;
    private long _lastToken;
    private bool _finished;

    internal RequestTracker(PiServeMetrics metrics, string model)
    {
        _metrics = metrics;
        Model = model;
        metrics.RequestQueued(model);
    }

    /// <summary>The <c>model</c> label.</summary>
    public string Model { get; }

    /// <summary>Prompt tokens of the request, added to <c>piserve_prompt_tokens_total</c> when it finishes.</summary>
    public long PromptTokens { get; set; }

    /// <summary>Tokens generated so far (<see cref="Token"/> calls).</summary>
    public long GeneratedTokens { get; private set; }

    /// <summary>Whether <see cref="Started"/> was called.</summary>
    public bool IsStarted => _started != 0;

    /// <summary>The request left the queue and started generating. Later calls do nothing.</summary>
    public void Started()
    {
        if (_started != 0 || _finished) return;
        _started = Stopwatch.GetTimestamp();
        _metrics.RequestDequeued(Model, Stopwatch.GetElapsedTime(_arrival, _started).TotalSeconds);
        _metrics.RequestStarted(Model);
    }

    /// <summary>One token was generated: time to first token for the first, inter-token latency after.</summary>
    public void Token()
    {
        if (_finished) return;
        if (_started == 0) Started();
        long now = Stopwatch.GetTimestamp();
        if (_lastToken == 0) _metrics.FirstToken(Model, Stopwatch.GetElapsedTime(_arrival, now).TotalSeconds);
        else _metrics.TokenGenerated(Model, Stopwatch.GetElapsedTime(_lastToken, now).TotalSeconds);
        _lastToken = now;
        GeneratedTokens++;
    }

    /// <summary>
    /// The request ended with <paramref name="finishReason"/> (see <see cref="PiServeMetrics.FinishReasons"/>).
    /// A request that never started is counted as rejected. Later calls do nothing.
    /// </summary>
    public void Finish(string finishReason)
    {
        if (_finished) return;
        _finished = true;
        long now = Stopwatch.GetTimestamp();
        double duration = Stopwatch.GetElapsedTime(_arrival, now).TotalSeconds;
        if (_started == 0)
        {
            _metrics.RequestDequeued(Model, duration);
            _metrics.RequestRejected(Model, finishReason, duration);
        }
        else
        {
            _metrics.RequestFinished(Model, finishReason, duration, PromptTokens, GeneratedTokens);
        }
    }

    /// <summary>Finishes the request as aborted unless <see cref="Finish"/> was called.</summary>
    public void Dispose() => Finish(PiServeMetrics.FinishReasons.Abort);
}
