namespace PiServe.Inference.Generation;

/// <summary>The limits a scheduler works within.</summary>
public sealed record SchedulerOptions
{
    /// <summary>Requests allowed to wait for a slot; beyond that Submit throws <see cref="QueueFullException"/>.</summary>
    public int MaxWaiting { get; init; } = 64;
    /// <summary>Sequences decoded together in one step.</summary>
    public int MaxBatch { get; init; } = 16;
    /// <summary>KV-cache bytes all running sequences may reserve together.</summary>
    public long KvCacheBudgetBytes { get; init; } = 2L << 30;
    /// <summary>Prompt tokens per prefill forward (bounds activation memory).</summary>
    public int PrefillChunk { get; init; } = 256;
    /// <summary>
    /// Automatic prefix caching: the most bytes the keys and values of cached prompt blocks may hold (0
    /// disables it). They count against <see cref="KvCacheBudgetBytes"/> together with the running
    /// sequences' reservations, and are evicted (least recently used first) when a request needs the room.
    /// </summary>
    public long PrefixCacheBytes { get; init; } = 1L << 30;
    /// <summary>Tokens per prefix-cache block: only full blocks are cached and reused.</summary>
    public int PrefixBlockTokens { get; init; } = 16;
}
