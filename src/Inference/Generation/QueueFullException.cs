namespace PiServe.Inference.Generation;

/// <summary>The queue is full: the caller should retry later (HTTP 429).</summary>
public sealed class QueueFullException(string message, TimeSpan retryAfter) : Exception(message)
{
    public TimeSpan RetryAfter { get; } = retryAfter;
}
