namespace PiServe.Inference.Generation;

/// <summary>
/// How many prompt tokens the sequences still prefilling take in one scheduler step, oldest first.
/// Whatever a step prefills, every decoding stream waits for it: the step is their inter-token gap.
/// <list type="bullet">
/// <item>Nothing decoding, one prompt waiting (or none short): <see cref="SchedulerOptions.PrefillChunk"/>
/// tokens (nobody waits).</item>
/// <item>Nothing decoding, several short prompts waiting — a burst gathered at an idle scheduler
/// (<see cref="SchedulerOptions.BurstGatherMilliseconds"/>): they are prefilled whole in this step as
/// below, so all of them start streaming together; prefilling the first in a small step would start it
/// early only to stop it again for the prefill of the others.</item>
/// <item>Streams decoding, and fewer short prompts waiting than streams (a newcomer while many stream, a
/// long document arriving): a quarter of PrefillChunk, or less where that step would run longer than
/// its time target (<see cref="StepPacer"/>), so a long prompt delays the streams by a small chunk per
/// step instead of its whole prefill (vLLM's chunked prefill).</item>
/// <item>Streams decoding, and at least as many short prompts (≤ PrefillChunk tokens left) waiting as
/// streams decoding — a burst of requests: the short prompts are prefilled whole in this step, up to
/// <see cref="SchedulerOptions.MaxStepPromptTokens"/> (llama-server's n_batch, vLLM's
/// max_num_batched_tokens). The few streams already decoding wait one long step once, instead of
/// waiting a chunk's worth in each of the many steps the burst would take in chunks; more requests
/// reach their first token sooner than streams are delayed. A long prompt in the burst still takes
/// only its chunk (vLLM's long_prefill_token_threshold).</item>
/// </list>
/// </summary>
public struct PrefillBudget
{
    private int _left;
    private readonly int _chunk;
    private readonly int _longPrompt;

    /// <summary>
    /// The budget of a step with <paramref name="decoding"/> streams decoding and <paramref name="shortPromptsWaiting"/>
    /// prompts with at most PrefillChunk tokens left to prefill; <paramref name="pacedChunk"/>: the chunk a
    /// <see cref="StepPacer"/> sized by time for a step with streams decoding (null: a quarter of PrefillChunk).
    /// </summary>
    public PrefillBudget(int decoding, int shortPromptsWaiting, SchedulerOptions options, int? pacedChunk = null)
    {
        _longPrompt = options.PrefillChunk;
        _chunk = decoding > 0 ? pacedChunk ?? StepPacer.TokenRule(options) : options.PrefillChunk;
        Burst = shortPromptsWaiting >= Math.Max(decoding, 2) || (decoding > 0 && shortPromptsWaiting >= decoding);
        _left = Burst ? Math.Max(_chunk, options.MaxStepPromptTokens) : _chunk;
    }

    /// <summary>Whether this step prefills a burst of short prompts whole.</summary>
    public bool Burst { get; }

    /// <summary>Prompt tokens this step may still prefill.</summary>
    public readonly int Left => _left;

    /// <summary>Whether a prompt with <paramref name="remaining"/> tokens left to prefill counts as short.</summary>
    public static bool IsShort(int remaining, SchedulerOptions options) => remaining <= options.PrefillChunk;

    /// <summary>Counts <paramref name="tokens"/> prefilled outside <see cref="Take"/> (prompts asking for their own log-probs).</summary>
    public void Spend(int tokens) => _left -= Math.Max(0, tokens);

    /// <summary>The tokens the next prompt (with <paramref name="remaining"/> left to prefill) takes in this step; 0 once the budget is spent.</summary>
    public int Take(int remaining)
    {
        int n = Math.Min(_left, remaining);
        if (Burst && remaining > _longPrompt) n = Math.Min(n, _chunk);
        n = Math.Max(0, n);
        _left -= n;
        return n;
    }
}
