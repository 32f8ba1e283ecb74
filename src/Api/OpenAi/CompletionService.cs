using System.Text.Json.Nodes;
using System.Threading.Channels;
using PiServe.Api.Models;
using PiServe.Inference.Cache;
using PiServe.Inference.Generation;
using PiServe.Inference.Rope;

namespace PiServe.Api.OpenAi;

/// <summary>A validated request, ready for the scheduler.</summary>
public sealed record PreparedCompletion(ServedModel Model, CompletionJob Job, string PromptText, bool Echo, bool Stream, bool IncludeUsage);

/// <summary>
/// Validation shared by /v1/completions, /v1/chat/completions and the SignalR hub: every bad
/// parameter becomes an <see cref="ApiException"/> naming it, before anything is queued.
/// </summary>
public sealed class CompletionService(ModelRegistry registry)
{
    public const int MaxLogprobs = 20;
    public const int MaxStopStrings = 16;

    public ServedModel ResolveModel(string? id)
    {
        if (string.IsNullOrEmpty(id))
        {
            var loaded = registry.All.Where(m => m.IsLoaded).ToList();
            if (loaded.Count == 1) return loaded[0]; // one model served: "model" may be omitted, as vLLM allows
            throw ApiException.BadParam("model", "'model' is required");
        }
        var model = registry.Find(id) ?? throw new ApiException(404, $"The model '{id}' does not exist", "model", code: "model_not_found");
        if (!model.IsLoaded) throw new ApiException(503, $"The model '{id}' failed to load: {model.Error}", "model", type: "server_error");
        return model;
    }

    public PreparedCompletion Prepare(CompletionRequest r, CancellationToken cancellation)
    {
        var model = ResolveModel(r.Model);
        var tokenizer = model.Tokenizer!;
        int[] prompt;
        string promptText;
        // A one-element array holding a string or a token-id array is one prompt (OpenAI's batch form).
        var p = r.Prompt;
        if (p is JsonArray { Count: 1 } one && (one[0] is JsonArray || one[0]?.GetValueKind() == System.Text.Json.JsonValueKind.String))
            p = one[0];
        switch (p)
        {
            case JsonValue v when v.TryGetValue(out string? text):
                promptText = text;
                prompt = tokenizer.Encode(text);
                break;
            case JsonArray a when a.Count > 0 && a.All(x => x is JsonValue):
                prompt = new int[a.Count];
                for (int i = 0; i < a.Count; i++)
                {
                    if (a[i] is not JsonValue tv || !tv.TryGetValue(out int id) || id < 0 || id >= model.Model!.Config.VocabSize)
                        throw ApiException.BadParam("prompt", $"prompt[{i}] must be a token id in [0, {model.Model!.Config.VocabSize})");
                    prompt[i] = id;
                }
                promptText = tokenizer.Decode(prompt);
                break;
            case JsonArray a when a.Count > 1:
                throw ApiException.BadParam("prompt", "batched prompts are not supported: send one prompt per request");
            case null:
                throw ApiException.BadParam("prompt", "'prompt' is required");
            default:
                throw ApiException.BadParam("prompt", "'prompt' must be a string or an array of token ids");
        }
        bool echo = r.Echo ?? false;
        if (r.Logprobs is < 0 or > MaxLogprobs) throw ApiException.BadParam("logprobs", $"'logprobs' must be between 0 and {MaxLogprobs}");
        int maxTokens = r.MaxTokens ?? 16;
        if (maxTokens == 0 && !echo) throw ApiException.BadParam("max_tokens", "'max_tokens' must be at least 1 (0 is allowed with echo, to score the prompt)");
        var job = BuildJob(model, prompt, maxTokens, r.Temperature, r.TopP, r.TopK, r.Seed, r.Stop, r.N, r.PresencePenalty, r.FrequencyPenalty,
            r.IgnoreEos, r.Logprobs, promptLogprobs: echo && r.Logprobs is not null, r.RopeScaling, r.RopeCache, cancellation);
        return new PreparedCompletion(model, job, promptText, echo, r.Stream ?? false, r.StreamOptions?.IncludeUsage ?? false);
    }

    public CompletionJob BuildJob(ServedModel model, int[] prompt, int maxTokens, float? temperature, float? topP, int? topK, long? seed,
        JsonNode? stop, int? n, float? presencePenalty, float? frequencyPenalty, bool? ignoreEos, int? logprobs, bool promptLogprobs,
        JsonObject? ropeScaling, string? ropeCache, CancellationToken cancellation)
    {
        if (prompt.Length == 0) throw ApiException.BadParam("prompt", "the prompt is empty (no tokens)");
        int vocab = model.Model!.Config.VocabSize;
        for (int i = 0; i < prompt.Length; i++)
            if ((uint)prompt[i] >= (uint)vocab)
                throw ApiException.BadParam("prompt", $"prompt token {i} has id {prompt[i]}, outside the model's vocabulary [0, {vocab})");
        if (maxTokens < 0) throw ApiException.BadParam("max_tokens", "'max_tokens' must be non-negative");
        if (temperature is < 0 or > 2 || temperature is { } t && !float.IsFinite(t)) throw ApiException.BadParam("temperature", "'temperature' must be between 0 and 2");
        if (topP is <= 0 or > 1 || topP is { } tp && !float.IsFinite(tp)) throw ApiException.BadParam("top_p", "'top_p' must be in (0, 1]");
        if (topK is < -1) throw ApiException.BadParam("top_k", "'top_k' must be -1 (off), 0 (off) or positive");
        if (n is not null and not 1) throw ApiException.BadParam("n", "only n = 1 is supported");
        if (presencePenalty is not null and not 0) throw ApiException.BadParam("presence_penalty", "presence_penalty is not supported (only 0)");
        if (frequencyPenalty is not null and not 0) throw ApiException.BadParam("frequency_penalty", "frequency_penalty is not supported (only 0)");
        if (seed is < int.MinValue or > int.MaxValue) throw ApiException.BadParam("seed", "'seed' must fit in 32 bits");

        var stops = stop switch
        {
            null => [],
            JsonValue v when v.TryGetValue(out string? s) => [s],
            JsonArray a when a.All(x => x is JsonValue xv && xv.TryGetValue(out string? _)) => a.Select(x => x!.GetValue<string>()).ToList(),
            _ => throw ApiException.BadParam("stop", "'stop' must be a string or an array of strings"),
        };
        if (stops.Count > MaxStopStrings) throw ApiException.BadParam("stop", $"at most {MaxStopStrings} stop strings");

        RopeScaling rope;
        try
        {
            rope = ropeScaling is null ? model.Rope! : model.Model!.ResolveRope(ropeScaling);
        }
        catch (RopeScalingException e)
        {
            throw ApiException.BadParam("rope_scaling", e.Message);
        }
        var policy = ropeCache switch
        {
            null or "exact" => KvCachePolicy.Exact,
            "planned" => KvCachePolicy.Planned,
            "hf" => KvCachePolicy.Hf,
            _ => throw ApiException.BadParam("rope_cache", "'rope_cache' must be exact, planned or hf"),
        };

        int window = model.ContextWindowFor(rope);
        // In long: prompt + max_tokens near int.MaxValue must not wrap around and pass this check.
        long needed = (long)prompt.Length + maxTokens;
        if (needed > window)
            throw new ApiException(413,
                $"This model's context window is {window} tokens, but the prompt ({prompt.Length} tokens) plus max_tokens ({maxTokens}) needs {needed}",
                prompt.Length > window ? "prompt" : "max_tokens", code: "context_length_exceeded");

        return new CompletionJob
        {
            Prompt = prompt,
            MaxTokens = maxTokens,
            Sampling = new SamplingParams { Temperature = temperature ?? 1f, TopP = topP ?? 1f, TopK = topK ?? 0, Seed = (int?)seed },
            Stop = stops,
            IgnoreEos = ignoreEos ?? false,
            Logprobs = logprobs,
            PromptLogprobs = promptLogprobs,
            Rope = rope,
            Policy = policy,
            Cancellation = cancellation,
        };
    }

    /// <summary>Queues the job; the scheduler's refusals become 429 / 413.</summary>
    public static ChannelReader<GenerationEvent> Submit(ServedModel model, CompletionJob job)
    {
        try
        {
            return model.Scheduler!.Submit(job);
        }
        catch (QueueFullException e)
        {
            throw new ApiException(429, $"Too many requests: {e.Message}. Retry later.", code: "queue_full") { RetryAfter = e.RetryAfter };
        }
        catch (KvBudgetExceededException e)
        {
            throw new ApiException(413, e.Message, "max_tokens", code: "kv_cache_budget_exceeded");
        }
    }
}
