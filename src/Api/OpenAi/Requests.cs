// The request bodies of the OpenAI-compatible endpoints and the tokenizer routes (the protocol, as vLLM keeps it in one place).
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using PiServe.Api.Errors;

namespace PiServe.Api.OpenAi;

/// <summary>
/// The fields /v1/completions, /v1/chat/completions and the SignalR hub share: the model, the length,
/// sampling (OpenAI's and vLLM's parameters), stopping, streaming and PiServe's rope override. Read once
/// by <see cref="CompletionService.BuildJob"/>. Unknown fields are ignored, as OpenAI-compatible servers do.
/// </summary>
public abstract class SamplingRequest
{
    [JsonPropertyName("model")] public string? Model { get; set; }
    [JsonPropertyName("max_tokens")] public int? MaxTokens { get; set; }
    [JsonPropertyName("temperature")] public float? Temperature { get; set; }
    [JsonPropertyName("top_p")] public float? TopP { get; set; }
    [JsonPropertyName("top_k")] public int? TopK { get; set; }
    [JsonPropertyName("seed")] public long? Seed { get; set; }
    /// <summary>A string or an array of strings; generation ends before the first match.</summary>
    [JsonPropertyName("stop")] public JsonNode? Stop { get; set; }
    [JsonPropertyName("stream")] public bool? Stream { get; set; }
    [JsonPropertyName("stream_options")] public StreamOptions? StreamOptions { get; set; }
    [JsonPropertyName("n")] public int? N { get; set; }
    [JsonPropertyName("presence_penalty")] public float? PresencePenalty { get; set; }
    [JsonPropertyName("frequency_penalty")] public float? FrequencyPenalty { get; set; }
    [JsonPropertyName("ignore_eos")] public bool? IgnoreEos { get; set; }
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

/// <summary>OpenAI legacy completions request (POST /v1/completions).</summary>
public sealed class CompletionRequest : SamplingRequest
{
    /// <summary>A string, an array of token ids, or a one-element array of either.</summary>
    [JsonPropertyName("prompt")] public JsonNode? Prompt { get; set; }
    [JsonPropertyName("echo")] public bool? Echo { get; set; }
    /// <summary>Return the log-probability of each token and the N most likely alternatives (0..20).</summary>
    [JsonPropertyName("logprobs")] public int? Logprobs { get; set; }
    /// <summary>Refused unless it equals n (PiServe returns every choice it samples).</summary>
    [JsonPropertyName("best_of")] public int? BestOf { get; set; }
}

public sealed class StreamOptions
{
    [JsonPropertyName("include_usage")] public bool? IncludeUsage { get; set; }
}

/// <summary>OpenAI chat completions request (POST /v1/chat/completions).</summary>
public sealed class ChatCompletionRequest : SamplingRequest
{
    [JsonPropertyName("messages")] public List<ChatMessageDto>? Messages { get; set; }
    [JsonPropertyName("max_completion_tokens")] public int? MaxCompletionTokens { get; set; }
    [JsonPropertyName("logprobs")] public bool? Logprobs { get; set; }
    [JsonPropertyName("top_logprobs")] public int? TopLogprobs { get; set; }
    [JsonPropertyName("add_generation_prompt")] public bool? AddGenerationPrompt { get; set; }
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
