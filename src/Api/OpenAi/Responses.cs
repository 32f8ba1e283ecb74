// The response bodies of the OpenAI-compatible endpoints (completions, chat, models, tokenizer), OpenAI's field names.
using System.Text.Json.Serialization;

namespace PiServe.Api.OpenAi;

public sealed record Usage(
    [property: JsonPropertyName("prompt_tokens")] int PromptTokens,
    [property: JsonPropertyName("completion_tokens")] int CompletionTokens,
    [property: JsonPropertyName("total_tokens")] int TotalTokens);

/// <summary>Legacy completions logprobs: parallel lists over the returned tokens.</summary>
public sealed record CompletionLogprobs(
    [property: JsonPropertyName("tokens")] List<string> Tokens,
    [property: JsonPropertyName("token_logprobs")] List<float?> TokenLogprobs,
    [property: JsonPropertyName("top_logprobs")] List<Dictionary<string, float>?> TopLogprobs,
    [property: JsonPropertyName("text_offset")] List<int> TextOffset);

public sealed record CompletionChoice(
    [property: JsonPropertyName("index")] int Index,
    [property: JsonPropertyName("text")] string Text,
    [property: JsonPropertyName("logprobs")] CompletionLogprobs? Logprobs,
    [property: JsonPropertyName("finish_reason")] string? FinishReason);

public sealed record CompletionResponse(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("object")] string Object,
    [property: JsonPropertyName("created")] long Created,
    [property: JsonPropertyName("model")] string Model,
    [property: JsonPropertyName("choices")] List<CompletionChoice> Choices,
    [property: JsonPropertyName("usage")] Usage? Usage);

public sealed record ChatMessageOut(
    [property: JsonPropertyName("role")] string Role,
    [property: JsonPropertyName("content")] string Content);

public sealed record ChatDelta(
    [property: JsonPropertyName("role"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Role,
    [property: JsonPropertyName("content"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Content);

public sealed record ChatTopLogprob(
    [property: JsonPropertyName("token")] string Token,
    [property: JsonPropertyName("logprob")] float Logprob,
    [property: JsonPropertyName("bytes")] List<int> Bytes);

public sealed record ChatTokenLogprob(
    [property: JsonPropertyName("token")] string Token,
    [property: JsonPropertyName("logprob")] float Logprob,
    [property: JsonPropertyName("bytes")] List<int> Bytes,
    [property: JsonPropertyName("top_logprobs")] List<ChatTopLogprob> TopLogprobs);

public sealed record ChatLogprobs([property: JsonPropertyName("content")] List<ChatTokenLogprob> Content);

public sealed record ChatChoice(
    [property: JsonPropertyName("index")] int Index,
    [property: JsonPropertyName("message")] ChatMessageOut Message,
    [property: JsonPropertyName("logprobs")] ChatLogprobs? Logprobs,
    [property: JsonPropertyName("finish_reason")] string? FinishReason);

public sealed record ChatCompletionResponse(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("object")] string Object,
    [property: JsonPropertyName("created")] long Created,
    [property: JsonPropertyName("model")] string Model,
    [property: JsonPropertyName("choices")] List<ChatChoice> Choices,
    [property: JsonPropertyName("usage")] Usage Usage);

public sealed record ChatChunkChoice(
    [property: JsonPropertyName("index")] int Index,
    [property: JsonPropertyName("delta")] ChatDelta Delta,
    [property: JsonPropertyName("logprobs")] ChatLogprobs? Logprobs,
    [property: JsonPropertyName("finish_reason")] string? FinishReason);

public sealed record ChatCompletionChunk(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("object")] string Object,
    [property: JsonPropertyName("created")] long Created,
    [property: JsonPropertyName("model")] string Model,
    [property: JsonPropertyName("choices")] List<ChatChunkChoice> Choices,
    [property: JsonPropertyName("usage"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] Usage? Usage);

public sealed record TokenizeResponse(
    [property: JsonPropertyName("tokens")] int[] Tokens,
    [property: JsonPropertyName("count")] int Count,
    [property: JsonPropertyName("max_model_len")] int MaxModelLen);

public sealed record DetokenizeResponse([property: JsonPropertyName("prompt")] string Prompt);

public sealed record ModelCard(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("object")] string Object,
    [property: JsonPropertyName("created")] long Created,
    [property: JsonPropertyName("owned_by")] string OwnedBy,
    [property: JsonPropertyName("status")] string Status,
    [property: JsonPropertyName("error"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Error,
    [property: JsonPropertyName("max_model_len"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] int? MaxModelLen,
    [property: JsonPropertyName("rope_scaling"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] System.Text.Json.Nodes.JsonObject? RopeScaling,
    [property: JsonPropertyName("dtype"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Dtype,
    [property: JsonPropertyName("parameters"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] long? Parameters,
    [property: JsonPropertyName("kv_bytes_per_token"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] long? KvBytesPerToken,
    [property: JsonPropertyName("has_chat_template"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] bool? HasChatTemplate,
    [property: JsonPropertyName("backend"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Backend = null,
    [property: JsonPropertyName("matmul_precision"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? MatmulPrecision = null);

public sealed record ModelList(
    [property: JsonPropertyName("object")] string Object,
    [property: JsonPropertyName("data")] List<ModelCard> Data);

/// <summary>PiServe: the continuous-batching scheduler of one model (batching gain = decoded_tokens / decode_steps; prefix-cache hit rate = hit / queried tokens).</summary>
public sealed record SchedulerStatus(
    [property: JsonPropertyName("running")] int Running,
    [property: JsonPropertyName("waiting")] int Waiting,
    [property: JsonPropertyName("decode_steps")] long DecodeSteps,
    [property: JsonPropertyName("decoded_tokens")] long DecodedTokens,
    [property: JsonPropertyName("kv_reserved_bytes")] long KvReservedBytes,
    [property: JsonPropertyName("kv_budget_bytes")] long KvBudgetBytes,
    [property: JsonPropertyName("prefix_cache_blocks")] int PrefixCacheBlocks,
    [property: JsonPropertyName("prefix_cache_bytes")] long PrefixCacheBytes,
    [property: JsonPropertyName("prefix_cache_queried_tokens")] long PrefixCacheQueriedTokens,
    [property: JsonPropertyName("prefix_cache_hit_tokens")] long PrefixCacheHitTokens,
    [property: JsonPropertyName("prefix_cache_copy_in_seconds")] double PrefixCacheCopyInSeconds,
    [property: JsonPropertyName("prefix_cache_copy_out_seconds")] double PrefixCacheCopyOutSeconds);
