namespace PiServe.Inference.Chat;

/// <summary>
/// One turn of a conversation as chat templates see it: {"role": ..., "content": ...}. Content may be null
/// (an assistant turn that only calls tools). Richer messages (tool_calls, content parts, reasoning_content)
/// go through <see cref="ChatTemplate.Render(IReadOnlyList{IReadOnlyDictionary{string, object?}}, bool, IReadOnlyDictionary{string, object?}?)"/>.
/// </summary>
public sealed record ChatMessage(string Role, string? Content);
