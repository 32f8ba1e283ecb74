using PiServe.Inference.Generation;

namespace PiServe.Api.Configuration;

public sealed class SchedulerSettings
{
    public int MaxWaiting { get; set; } = 64;
    public int MaxBatch { get; set; } = 16;
    public long KvCacheBudgetBytes { get; set; } = 2L << 30;
    public int PrefillChunk { get; set; } = 256;
    /// <summary>Prompt tokens one step may prefill when a burst of short prompts arrives (llama-server's n_batch).</summary>
    public int MaxStepPromptTokens { get; set; } = 2048;
    /// <summary>
    /// While streams decode, a step's prompt chunk (a quarter of PrefillChunk) shrinks where the step would
    /// take more than this many decode-only steps (the streams' inter-token gap during a long prefill); 0: fixed chunks.
    /// </summary>
    public double PrefillStepSlowdown { get; set; } = 6;
    /// <summary>
    /// At an idle scheduler, the first step waits up to this long while the requests of a burst keep
    /// arriving (each within <see cref="BurstQuietMilliseconds"/> of the last), so they start together; 0 starts at once.
    /// </summary>
    public int BurstGatherMilliseconds { get; set; } = 20;
    /// <summary>The gap without an arrival that ends that wait (what a lone request waits).</summary>
    public int BurstQuietMilliseconds { get; set; } = 3;
    /// <summary>
    /// Automatic prefix caching: bytes of prompt KV blocks kept for later requests with the same prefix
    /// (0 disables it); counted in <see cref="KvCacheBudgetBytes"/> and evicted when a request needs the room.
    /// </summary>
    public long PrefixCacheBytes { get; set; } = 1L << 30;
    /// <summary>Tokens per prefix-cache block (only full blocks are cached and reused).</summary>
    public int PrefixBlockTokens { get; set; } = 16;
    /// <summary>Compute threads (0 = all cores).</summary>
    public int Threads { get; set; }

    public SchedulerOptions ToSchedulerOptions() => new()
    {
        MaxWaiting = MaxWaiting, MaxBatch = MaxBatch, KvCacheBudgetBytes = KvCacheBudgetBytes, PrefillChunk = PrefillChunk,
        MaxStepPromptTokens = MaxStepPromptTokens,
        BurstGatherMilliseconds = BurstGatherMilliseconds, BurstQuietMilliseconds = BurstQuietMilliseconds,
        PrefillStepSlowdown = PrefillStepSlowdown,
        PrefixCacheBytes = PrefixCacheBytes, PrefixBlockTokens = PrefixBlockTokens,
    };
}
