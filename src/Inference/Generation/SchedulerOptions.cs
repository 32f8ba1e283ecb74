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
    /// Prompt tokens one step may prefill when a burst of short prompts waits (<see cref="PrefillBudget"/>):
    /// llama-server's n_batch, vLLM's max_num_batched_tokens. Bounds that step's activation memory and
    /// the one wait of the streams already decoding.
    /// </summary>
    public int MaxStepPromptTokens { get; init; } = 2048;
    /// <summary>
    /// While streams decode, a step's prompt chunk (a quarter of <see cref="PrefillChunk"/>) shrinks
    /// where the step would take more than this many times a decode-only step (<see cref="StepPacer"/>):
    /// the streams' inter-token gap while a long prompt is prefilled, traded against that prompt's time
    /// to first token. Where a decode step is compute-bound (its work d is the same inside a mixed step)
    /// the prompt gets (s − 1)/s of a paced step, so 6 costs its first token about 1.2× its time alone
    /// and holds the streams' gaps near 6 decode steps as the prompt's attention deepens (with fixed
    /// chunks they grow 1.5× from the first step to the last). 0: fixed chunks.
    /// </summary>
    public double PrefillStepSlowdown { get; init; } = 6;
    /// <summary>
    /// When requests arrive at an idle scheduler, its first step waits while more keep arriving (each
    /// within <see cref="BurstQuietMilliseconds"/> of the one before), for at most this long in all, so
    /// the requests of a burst start in one step: otherwise the first to arrive starts streaming and then
    /// waits once for the prefill of all the others (llama-server's slots of a burst start together).
    /// A lone request waits <see cref="BurstQuietMilliseconds"/>. 0 starts at once.
    /// </summary>
    public int BurstGatherMilliseconds { get; init; } = 20;
    /// <summary>The gap without a new arrival that ends the gathering of <see cref="BurstGatherMilliseconds"/>.</summary>
    public int BurstQuietMilliseconds { get; init; } = 3;
    /// <summary>
    /// Automatic prefix caching: the most bytes the keys and values of cached prompt blocks may hold (0
    /// disables it). They count against <see cref="KvCacheBudgetBytes"/> together with the running
    /// sequences' reservations, and are evicted (least recently used first) when a request needs the room.
    /// </summary>
    public long PrefixCacheBytes { get; init; } = 1L << 30;
    /// <summary>Tokens per prefix-cache block: only full blocks are cached and reused.</summary>
    public int PrefixBlockTokens { get; init; } = 16;

    /// <summary>Throws an <see cref="ArgumentException"/> naming the first option out of range.</summary>
    public void Validate()
    {
        Check(MaxWaiting >= 0, nameof(MaxWaiting), MaxWaiting, "at least 0");
        Check(MaxBatch >= 1, nameof(MaxBatch), MaxBatch, "at least 1");
        Check(KvCacheBudgetBytes >= 0, nameof(KvCacheBudgetBytes), KvCacheBudgetBytes, "at least 0");
        Check(PrefillChunk >= 1, nameof(PrefillChunk), PrefillChunk, "at least 1");
        Check(MaxStepPromptTokens >= 1, nameof(MaxStepPromptTokens), MaxStepPromptTokens, "at least 1");
        Check(PrefillStepSlowdown == 0 || PrefillStepSlowdown is >= 1 and <= 100, nameof(PrefillStepSlowdown), PrefillStepSlowdown, "0 (off) or between 1 and 100");
        Check(BurstGatherMilliseconds is >= 0 and <= 1000, nameof(BurstGatherMilliseconds), BurstGatherMilliseconds, "between 0 and 1000 (0 starts at once)");
        Check(BurstQuietMilliseconds is >= 1 and <= 1000, nameof(BurstQuietMilliseconds), BurstQuietMilliseconds, "between 1 and 1000");
        Check(PrefixCacheBytes >= 0, nameof(PrefixCacheBytes), PrefixCacheBytes, "at least 0 (0 turns prefix caching off)");
        Check(PrefixBlockTokens >= 1, nameof(PrefixBlockTokens), PrefixBlockTokens, "at least 1");
    }

    private static void Check<T>(bool ok, string name, T value, string rule)
    {
        if (!ok) throw new ArgumentException($"scheduler option {name} must be {rule} (got {value})");
    }
}
