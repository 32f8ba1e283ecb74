using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using PiServe.Api.Errors;

namespace PiServe.Api.OpenAi;

/// <summary>
/// OpenAI legacy completions request (POST /v1/completions), plus PiServe's rope_scaling and
/// rope_cache. Unknown fields are ignored, as OpenAI-compatible servers do.
/// </summary>
public sealed class CompletionRequest
{
    [JsonPropertyName("model")] public string? Model { get; set; }
    /// <summary>A string, an array of token ids, or a one-element array of either.</summary>
    [JsonPropertyName("prompt")] public JsonNode? Prompt { get; set; }
    [JsonPropertyName("max_tokens")] public int? MaxTokens { get; set; }
    [JsonPropertyName("temperature")] public float? Temperature { get; set; }
    [JsonPropertyName("top_p")] public float? TopP { get; set; }
    [JsonPropertyName("top_k")] public int? TopK { get; set; }
    [JsonPropertyName("seed")] public long? Seed { get; set; }
    /// <summary>A string or an array of strings; generation ends before the first match.</summary>
    [JsonPropertyName("stop")] public JsonNode? Stop { get; set; }
    [JsonPropertyName("stream")] public bool? Stream { get; set; }
    [JsonPropertyName("stream_options")] public StreamOptions? StreamOptions { get; set; }
    [JsonPropertyName("echo")] public bool? Echo { get; set; }
    /// <summary>Return the log-probability of each token and the N most likely alternatives (0..20).</summary>
    [JsonPropertyName("logprobs")] public int? Logprobs { get; set; }
    [JsonPropertyName("n")] public int? N { get; set; }
    [JsonPropertyName("presence_penalty")] public float? PresencePenalty { get; set; }
    [JsonPropertyName("frequency_penalty")] public float? FrequencyPenalty { get; set; }
    [JsonPropertyName("ignore_eos")] public bool? IgnoreEos { get; set; }
    /// <summary>Refused unless it equals n (PiServe returns every choice it samples).</summary>
    [JsonPropertyName("best_of")] public int? BestOf { get; set; }
    /// <summary>vLLM: divides positive logits (multiplies negative ones) of tokens in the prompt or output (1 = off).</summary>
    [JsonPropertyName("repetition_penalty")] public float? RepetitionPenalty { get; set; }
    /// <summary>vLLM: drop tokens less likely than min_p × the most likely one.</summary>
    [JsonPropertyName("min_p")] public float? MinP { get; set; }
    /// <summary>OpenAI: {"token id": bias in [-100, 100]} added to the logits.</summary>
    [JsonPropertyName("logit_bias")] public JsonObject? LogitBias { get; set; }
    /// <summary>vLLM: token ids that end generation (finish_reason "stop", the token's text not output).</summary>
    [JsonPropertyName("stop_token_ids")] public List<int>? StopTokenIds { get; set; }
    /// <summary>PiServe: replaces the model's rope_scaling for this request (same keys as config.json).</summary>
    [JsonPropertyName("rope_scaling")] public JsonObject? RopeScaling { get; set; }
    /// <summary>PiServe: KV-cache policy when the rope parameters change mid-sequence: exact (default), planned or hf.</summary>
    [JsonPropertyName("rope_cache")] public string? RopeCache { get; set; }
    [JsonPropertyName("user")] public string? User { get; set; }
}

public sealed class StreamOptions
{
    [JsonPropertyName("include_usage")] public bool? IncludeUsage { get; set; }
}

public sealed class ChatCompletionRequest
{
    [JsonPropertyName("model")] public string? Model { get; set; }
    [JsonPropertyName("messages")] public List<ChatMessageDto>? Messages { get; set; }
    [JsonPropertyName("max_tokens")] public int? MaxTokens { get; set; }
    [JsonPropertyName("max_completion_tokens")] public int? MaxCompletionTokens { get; set; }
    [JsonPropertyName("temperature")] public float? Temperature { get; set; }
    [JsonPropertyName("top_p")] public float? TopP { get; set; }
    [JsonPropertyName("top_k")] public int? TopK { get; set; }
    [JsonPropertyName("seed")] public long? Seed { get; set; }
    [JsonPropertyName("stop")] public JsonNode? Stop { get; set; }
    [JsonPropertyName("stream")] public bool? Stream { get; set; }
    [JsonPropertyName("stream_options")] public StreamOptions? StreamOptions { get; set; }
    [JsonPropertyName("logprobs")] public bool? Logprobs { get; set; }
    [JsonPropertyName("top_logprobs")] public int? TopLogprobs { get; set; }
    [JsonPropertyName("n")] public int? N { get; set; }
    [JsonPropertyName("presence_penalty")] public float? PresencePenalty { get; set; }
    [JsonPropertyName("frequency_penalty")] public float? FrequencyPenalty { get; set; }
    [JsonPropertyName("ignore_eos")] public bool? IgnoreEos { get; set; }
    [JsonPropertyName("repetition_penalty")] public float? RepetitionPenalty { get; set; }
    [JsonPropertyName("min_p")] public float? MinP { get; set; }
    [JsonPropertyName("logit_bias")] public JsonObject? LogitBias { get; set; }
    [JsonPropertyName("stop_token_ids")] public List<int>? StopTokenIds { get; set; }
    [JsonPropertyName("add_generation_prompt")] public bool? AddGenerationPrompt { get; set; }
    [JsonPropertyName("rope_scaling")] public JsonObject? RopeScaling { get; set; }
    [JsonPropertyName("rope_cache")] public string? RopeCache { get; set; }
    [JsonPropertyName("user")] public string? User { get; set; }
}

public sealed class ChatMessageDto
{
    [JsonPropertyName("role")] public string? Role { get; set; }
    /// <summary>A string, or an array of {"type":"text","text":...} parts.</summary>
    [JsonPropertyName("content")] public JsonNode? Content { get; set; }
    [JsonPropertyName("name")] public string? Name { get; set; }
}

public sealed class TokenizeRequest
{
    [JsonPropertyName("model")] public string? Model { get; set; }
    [JsonPropertyName("prompt")] public string? Prompt { get; set; }
    [JsonPropertyName("add_special_tokens")] public bool? AddSpecialTokens { get; set; }
}

public sealed class DetokenizeRequest
{
    [JsonPropertyName("model")] public string? Model { get; set; }
    [JsonPropertyName("tokens")] public List<int>? Tokens { get; set; }
}

/// <summary>Reads a request body as JSON with OpenAI-style 400s for malformed JSON or mistyped fields.</summary>
public static class RequestBody
{
    private static readonly JsonSerializerOptions Options = new()
    {
        PropertyNameCaseInsensitive = false,
        NumberHandling = JsonNumberHandling.Strict,
        AllowTrailingCommas = false,
    };

    public static async Task<T> ReadAsync<T>(HttpRequest request, CancellationToken ct) where T : class
    {
        if (request.ContentType is { } ctype && !ctype.StartsWith("application/json", StringComparison.OrdinalIgnoreCase))
            throw new ApiException(415, $"Content-Type must be application/json, got '{ctype}'", code: "unsupported_media_type");
        try
        {
            var value = await JsonSerializer.DeserializeAsync<T>(request.Body, Options, ct);
            return value ?? throw new ApiException(400, "the request body must be a JSON object, got null");
        }
        catch (JsonException e)
        {
            throw Explain(e);
        }
    }

    /// <summary>The same reading for a value that arrived another way (a SignalR argument).</summary>
    public static T Read<T>(JsonElement element) where T : class
    {
        try
        {
            return element.Deserialize<T>(Options) ?? throw new ApiException(400, "the request must be a JSON object, got null");
        }
        catch (JsonException e)
        {
            throw Explain(e);
        }
    }

    /// <summary>
    /// A value of the wrong type names its field and the type expected; anything else is malformed
    /// JSON (whose Path is just where the reader stopped, not a field at fault).
    /// </summary>
    private static ApiException Explain(JsonException e)
    {
        bool wrongType = e.Message.StartsWith("The JSON value could not be converted", StringComparison.Ordinal);
        string? param = wrongType && e.Path is { Length: > 2 } p ? p.TrimStart('$', '.') : null;
        string message = param is null
            ? $"the request body is not valid JSON: {e.Message}"
            : $"invalid value for '{param}': expected {Expected(e.Message)}";
        return new ApiException(400, message, param);
    }

    /// <summary>What the serializer wanted, in words (its message names a CLR type such as System.Nullable`1[System.Int32]).</summary>
    private static string Expected(string message) => message switch
    {
        _ when message.Contains("System.Int32", StringComparison.Ordinal) && message.Contains("List", StringComparison.Ordinal) =>
            $"an array of integers, each between {int.MinValue} and {int.MaxValue}",
        _ when message.Contains("System.Int32", StringComparison.Ordinal) => $"an integer between {int.MinValue} and {int.MaxValue}",
        _ when message.Contains("System.Int64", StringComparison.Ordinal) => $"an integer between {long.MinValue} and {long.MaxValue}",
        _ when message.Contains("System.Single", StringComparison.Ordinal) || message.Contains("System.Double", StringComparison.Ordinal) => "a number",
        _ when message.Contains("System.Boolean", StringComparison.Ordinal) => "true or false",
        _ when message.Contains("System.String", StringComparison.Ordinal) => "a string",
        _ when message.Contains("ChatMessageDto", StringComparison.Ordinal) => "a message object with 'role' and 'content'",
        _ when message.Contains("JsonObject", StringComparison.Ordinal) => "a JSON object",
        _ when message.Contains("List", StringComparison.Ordinal) => "an array",
        _ => "a value of another type",
    };
}
