namespace PiServe.Inference.Generation;

/// <summary>What the scheduler reports; the host turns it into metrics.</summary>
public interface ISchedulerObserver
{
    /// <summary>Refused at submission (queue full, beyond the KV budget); never queued.</summary>
    void Rejected(string reason);
    void Queued();
    /// <summary>Left the queue without starting (cancelled while waiting).</summary>
    void Abandoned(double queueSeconds);
    void Started(double queueSeconds);
    void FirstToken(double secondsSinceSubmit);
    void Token(double secondsSincePreviousToken);
    void Finished(string finishReason, double seconds, int promptTokens, int completionTokens);
    void KvCache(long usedBytes, long capacityBytes);
}
