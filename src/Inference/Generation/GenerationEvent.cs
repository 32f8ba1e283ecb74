namespace PiServe.Inference.Generation;

/// <summary>
/// What the scheduler streams for one request: prompt log-probs (echo with logprobs), tokens, then a
/// finish or an error. A closed hierarchy, so the records stay together in this one file.
/// </summary>
public abstract record GenerationEvent;
/// <summary>Prompt log-probs, first entry null (nothing precedes the first token).</summary>
public sealed record PromptLogprobsEvent(float?[] Logprobs, TopLogprob[]?[] Top) : GenerationEvent;
/// <summary>A generated token; Text is the newly releasable text (may be empty while a character or stop string is incomplete).</summary>
public sealed record TokenEvent(int TokenId, string Text, float? Logprob, TopLogprob[]? Top) : GenerationEvent;
public sealed record FinishEvent(string FinishReason, int PromptTokens, int CompletionTokens, string TrailingText) : GenerationEvent;
public sealed record ErrorEvent(string Message) : GenerationEvent;
