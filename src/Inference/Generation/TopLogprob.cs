namespace PiServe.Inference.Generation;

/// <summary>One of the most likely tokens at a position: id, text, log-probability.</summary>
public sealed record TopLogprob(int TokenId, string Token, float Logprob);
