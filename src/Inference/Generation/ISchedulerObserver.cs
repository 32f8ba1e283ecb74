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
    /// <summary>
    /// A prompt finished prefilling with the prefix cache on: <paramref name="promptTokens"/> were looked
    /// up, <paramref name="cachedTokens"/> of them came from the cache (vLLM's prefix_cache_queries / _hits).
    /// </summary>
    void PrefixCacheLookup(int promptTokens, int cachedTokens) { }
    /// <summary>What the prefix cache holds now.</summary>
    void PrefixCache(int blocks, long bytes) { }
}
