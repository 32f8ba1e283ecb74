using PiServe.Inference.Rope;

namespace PiServe.Inference.Generation;

/// <summary>One completion request as the scheduler runs it.</summary>
public sealed record CompletionJob
{
    public required int[] Prompt { get; init; }
    public int MaxTokens { get; init; } = 16;
    public SamplingParams Sampling { get; init; } = new();
    public IReadOnlyList<string> Stop { get; init; } = [];
    /// <summary>vLLM stop_token_ids: generating one of these ends the sequence with "stop"; its text is not output.</summary>
    public IReadOnlyList<int> StopTokenIds { get; init; } = [];
    public bool IgnoreEos { get; init; }
    /// <summary>null: no logprobs; N ≥ 0: the chosen token's logprob plus the top N alternatives.</summary>
    public int? Logprobs { get; init; }
    /// <summary>Report log p(prompt[i] | prompt[&lt;i]) for the prompt (echo with logprobs).</summary>
    public bool PromptLogprobs { get; init; }
    public RopeScaling? Rope { get; init; }
    public KvCachePolicy Policy { get; init; } = KvCachePolicy.Exact;
    public CancellationToken Cancellation { get; init; }
    /// <summary>Reserved KV capacity for the request: prompt + max_tokens positions (checked: never wraps negative).</summary>
    public int PlannedLength => checked(Prompt.Length + MaxTokens);
}
