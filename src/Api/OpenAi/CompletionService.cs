using System.Text.Json.Nodes;
using System.Threading.Channels;
using PiServe.Api.Models;
using PiServe.Inference.Cache;
using PiServe.Inference.Generation;
using PiServe.Inference.Rope;
using PiServe.Api.Errors;

namespace PiServe.Api.OpenAi;

/// <summary>A validated request, ready for the scheduler.</summary>
/// <remarks>N: the number of choices; each is its own job (<see cref="CompletionService.Choices"/>).</remarks>
public sealed record PreparedCompletion(ServedModel Model, CompletionJob Job, string PromptText, bool Echo, bool Stream, bool IncludeUsage, int N = 1);

/// <summary>
/// Validation shared by /v1/completions, /v1/chat/completions and the SignalR hub: every bad
/// parameter becomes an <see cref="ApiException"/> naming it, before anything is queued.
/// </summary>
public sealed class CompletionService(ModelRegistry registry)
{
    public const int MaxLogprobs = 20;
    public const int MaxStopStrings = 16;
    public const int MaxN = 16;
    public const int MaxLogitBias = 300;
    public const int MaxStopTokenIds = 64;

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
        if (r.BestOf is { } bestOf && bestOf != (r.N ?? 1))
            throw ApiException.BadParam("best_of", "best_of is not supported (only equal to n): every sampled choice is returned");
        var job = BuildJob(model, prompt, maxTokens, r, r.Logprobs, promptLogprobs: echo && r.Logprobs is not null, cancellation);
        return new PreparedCompletion(model, job, promptText, echo, r.Stream ?? false, r.StreamOptions?.IncludeUsage ?? false, r.N ?? 1);
    }

    /// <summary>
    /// Validates the shared request fields (each bad value a 400 naming it) and the lengths against
    /// the model's window, and builds the scheduler's job.
    /// </summary>
    public CompletionJob BuildJob(ServedModel model, int[] prompt, int maxTokens, SamplingRequest r, int? logprobs, bool promptLogprobs,
        CancellationToken cancellation)
    {
        if (prompt.Length == 0) throw ApiException.BadParam("prompt", "the prompt is empty (no tokens)");
        int vocab = model.Model!.Config.VocabSize;
        for (int i = 0; i < prompt.Length; i++)
            if ((uint)prompt[i] >= (uint)vocab)
                throw ApiException.BadParam("prompt", $"prompt token {i} has id {prompt[i]}, outside the model's vocabulary [0, {vocab})");
        if (maxTokens < 0) throw ApiException.BadParam("max_tokens", "'max_tokens' must be non-negative");
        if (r.Temperature is < 0 or > 2 || r.Temperature is { } t && !float.IsFinite(t)) throw ApiException.BadParam("temperature", "'temperature' must be between 0 and 2");
        if (r.TopP is <= 0 or > 1 || r.TopP is { } tp && !float.IsFinite(tp)) throw ApiException.BadParam("top_p", "'top_p' must be in (0, 1]");
        if (r.TopK is < -1) throw ApiException.BadParam("top_k", "'top_k' must be -1 (off), 0 (off) or positive");
        if (r.N is < 1 or > MaxN) throw ApiException.BadParam("n", $"'n' must be between 1 and {MaxN}");
        if (r.PresencePenalty is < -2 or > 2 || r.PresencePenalty is { } pp && !float.IsFinite(pp))
            throw ApiException.BadParam("presence_penalty", "'presence_penalty' must be between -2 and 2");
        if (r.FrequencyPenalty is < -2 or > 2 || r.FrequencyPenalty is { } fp && !float.IsFinite(fp))
            throw ApiException.BadParam("frequency_penalty", "'frequency_penalty' must be between -2 and 2");
        if (r.RepetitionPenalty is <= 0 || r.RepetitionPenalty is { } rp && !float.IsFinite(rp))
            throw ApiException.BadParam("repetition_penalty", "'repetition_penalty' must be a finite number greater than 0 (1 = off)");
        if (r.MinP is < 0 or > 1 || r.MinP is { } mp && !float.IsFinite(mp)) throw ApiException.BadParam("min_p", "'min_p' must be between 0 and 1");
        var bias = LogitBias(r.LogitBias, vocab);
        if (r.StopTokenIds is { Count: > MaxStopTokenIds }) throw ApiException.BadParam("stop_token_ids", $"at most {MaxStopTokenIds} stop token ids");
        for (int i = 0; i < (r.StopTokenIds?.Count ?? 0); i++)
            if ((uint)r.StopTokenIds![i] >= (uint)vocab)
                throw ApiException.BadParam("stop_token_ids", $"stop_token_ids[{i}] = {r.StopTokenIds[i]} is not a token id in [0, {vocab})");
        if (r.Seed is < int.MinValue or > int.MaxValue) throw ApiException.BadParam("seed", "'seed' must fit in 32 bits");

        var stops = r.Stop switch
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
            rope = r.RopeScaling is null ? model.Rope! : model.Model!.ResolveRope(r.RopeScaling);
        }
        catch (RopeScalingException e)
        {
            throw ApiException.BadParam("rope_scaling", e.Message);
        }
        var policy = r.RopeCache switch
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
            Sampling = new SamplingParams
            {
                Temperature = r.Temperature ?? 1f, TopP = r.TopP ?? 1f, TopK = r.TopK ?? 0, Seed = (int?)r.Seed, MinP = r.MinP ?? 0,
                PresencePenalty = r.PresencePenalty ?? 0, FrequencyPenalty = r.FrequencyPenalty ?? 0, RepetitionPenalty = r.RepetitionPenalty ?? 1,
                LogitBias = bias,
            },
            Stop = stops,
            StopTokenIds = r.StopTokenIds?.ToArray() ?? [],
            IgnoreEos = r.IgnoreEos ?? false,
            Logprobs = logprobs,
            PromptLogprobs = promptLogprobs,
            Rope = rope,
            Policy = policy,
            Cancellation = cancellation,
        };
    }

    /// <summary>
    /// OpenAI logit_bias: {"token id": bias}, ids of this model's vocabulary, biases in [-100, 100];
    /// JSON object keys are strings, so ids arrive as decimal strings.
    /// </summary>
    private static KeyValuePair<int, float>[]? LogitBias(JsonObject? logitBias, int vocab)
    {
        if (logitBias is null || logitBias.Count == 0) return null;
        if (logitBias.Count > MaxLogitBias) throw ApiException.BadParam("logit_bias", $"'logit_bias' may have at most {MaxLogitBias} entries, got {logitBias.Count}");
        var bias = new KeyValuePair<int, float>[logitBias.Count];
        int i = 0;
        foreach (var (key, value) in logitBias)
        {
            if (!int.TryParse(key, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int id) || id >= vocab)
                throw ApiException.BadParam("logit_bias", $"logit_bias key '{key}' is not a token id in [0, {vocab})");
            if (value is not JsonValue v || !v.TryGetValue(out double b) || !double.IsFinite(b) || b < -100 || b > 100)
                throw ApiException.BadParam("logit_bias", $"logit_bias['{key}'] must be a number between -100 and 100");
            bias[i++] = new(id, (float)b);
        }
        return bias;
    }

    /// <summary>
    /// The n choices of a request as jobs: the same job, each with its own random stream (seed, seed+1,
    /// ... when the request gives a seed; unseeded streams otherwise).
    /// </summary>
    public static CompletionJob[] Choices(CompletionJob job, int n) =>
        [.. Enumerable.Range(0, n).Select(i => i == 0 ? job : job with
        {
            Sampling = job.Sampling with { Seed = job.Sampling.Seed is { } s ? unchecked(s + i) : null },
        })];

    /// <summary>Queues the job; the scheduler's refusals become 429 / 413.</summary>
    public static ChannelReader<GenerationEvent> Submit(ServedModel model, CompletionJob job) => SubmitAll(model, [job])[0];

    /// <summary>Queues the n choices of one request (all or none); the scheduler's refusals become 429 / 413.</summary>
    public static ChannelReader<GenerationEvent>[] SubmitAll(ServedModel model, IReadOnlyList<CompletionJob> jobs)
    {
        try
        {
            return model.Scheduler!.SubmitAll(jobs);
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
