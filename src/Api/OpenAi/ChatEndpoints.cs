using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using PiServe.Inference.Chat;
using PiServe.Inference.Tokenization;
using PiServe.Api.Errors;

namespace PiServe.Api.OpenAi;

/// <summary>OpenAI chat completions: messages rendered with the model's chat template, then generated as a completion.</summary>
public static class ChatEndpoints
{
    public static IEndpointRouteBuilder MapChatEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapGroup("/v1").WithTags("OpenAI")
            .MapPost("/chat/completions", ChatCompletions).WithName("CreateChatCompletion")
            .Accepts<ChatCompletionRequest>("application/json")
            .Produces<ChatCompletionResponse>(200, "application/json", "text/event-stream")
            .Produces<ErrorBody>(400).Produces<ErrorBody>(404).Produces<ErrorBody>(413).Produces<ErrorBody>(429);
        return app;
    }

    private static readonly HashSet<string> Roles = ["system", "user", "assistant", "tool", "developer"];

    private static async Task ChatCompletions(HttpContext http, CompletionService service)
    {
        var r = await RequestBody.ReadAsync<ChatCompletionRequest>(http.Request, http.RequestAborted);
        var model = service.ResolveModel(r.Model);
        var template = model.ChatTemplate ?? throw ApiException.BadParam("model",
            $"model '{model.Id}' has no chat template{(model.ChatTemplateError is { } why ? $" ({why})" : " in tokenizer_config.json")}; use /v1/completions");
        if (r.Messages is not { Count: > 0 }) throw ApiException.BadParam("messages", "'messages' must be a non-empty array");
        var messages = new List<ChatMessage>(r.Messages.Count);
        for (int i = 0; i < r.Messages.Count; i++)
        {
            var m = r.Messages[i] ?? throw ApiException.BadParam($"messages[{i}]", $"messages[{i}] must be an object with 'role' and 'content', got null");
            if (m.Role is null || !Roles.Contains(m.Role))
                throw ApiException.BadParam($"messages[{i}].role", $"messages[{i}].role must be one of {string.Join(", ", Roles)}");
            messages.Add(new ChatMessage(m.Role, ContentText(m.Content, i)));
        }

        int window = model.ContextWindowFor(model.Rope!);
        string promptText;
        try
        {
            // Rendering runs the model's own Jinja: bounded in work and size, and stopped when the
            // client goes away. The size limits grow with the window so a long document still fits.
            int size = (int)Math.Clamp(window * 16L, RenderLimits.Default.MaxOutputChars, 64L << 20);
            var limits = RenderLimits.Default with { MaxOutputChars = size, MaxStringChars = size };
            promptText = template.Render(messages, r.AddGenerationPrompt ?? true, cancellationToken: http.RequestAborted, limits: limits);
        }
        catch (ChatTemplateLimitException e)
        {
            throw ApiException.BadParam("messages", $"rendering the model's chat template was stopped: {e.Message}");
        }
        catch (ChatTemplateException e)
        {
            // Templates reject conversations they cannot format (e.g. roles that do not alternate).
            throw ApiException.BadParam("messages", $"the model's chat template rejected the conversation: {e.Message}");
        }
        // The template writes BOS itself: tokenize without adding special tokens again, as HF does.
        int[] prompt = model.Tokenizer!.Encode(promptText, addSpecialTokens: false);
        int maxTokens = r.MaxCompletionTokens ?? r.MaxTokens ?? Math.Max(1, window - prompt.Length);
        if (maxTokens < 1) throw ApiException.BadParam("max_tokens", "'max_tokens' must be at least 1");
        if (r.TopLogprobs is < 0 or > CompletionService.MaxLogprobs) throw ApiException.BadParam("top_logprobs", $"'top_logprobs' must be between 0 and {CompletionService.MaxLogprobs}");
        if (r.TopLogprobs is not null && r.Logprobs != true) throw ApiException.BadParam("top_logprobs", "'top_logprobs' needs 'logprobs': true");
        var job = service.BuildJob(model, prompt, maxTokens, r, r.Logprobs == true ? r.TopLogprobs ?? 0 : null, promptLogprobs: false, http.RequestAborted);
        var choices = CompletionService.SubmitAll(model, CompletionService.Choices(job, r.N ?? 1));

        string id = "chatcmpl-" + Guid.NewGuid().ToString("N");
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var tokenizer = model.Tokenizer!;
        if (r.Stream == true)
        {
            await Sse.StartAsync(http);
            for (int index = 0; index < choices.Length; index++)
                await Sse.WriteAsync(http, new ChatCompletionChunk(id, "chat.completion.chunk", created, model.Id,
                    [new ChatChunkChoice(index, new ChatDelta("assistant", ""), null, null)], null));
            Usage? total = null;
            await foreach (var (index, piece) in CompletionStream.ReadAllAsync(choices, http.RequestAborted))
            {
                if (piece.Error is { } error)
                {
                    await Sse.WriteAsync(http, new ErrorBody(new ErrorDetail(error, "server_error", null, null)));
                    break;
                }
                var lp = piece.Token is { Logprob: not null } t ? new ChatLogprobs([TokenLogprob(t, tokenizer)]) : null;
                if (piece.Text.Length == 0 && lp is null && piece.FinishReason is null) continue;
                await Sse.WriteAsync(http, new ChatCompletionChunk(id, "chat.completion.chunk", created, model.Id,
                    [new ChatChunkChoice(index, new ChatDelta(null, piece.Text), lp, piece.FinishReason)], null));
                total = CompletionStream.Sum(total, piece.Usage);
            }
            if (total is not null && r.StreamOptions?.IncludeUsage == true)
                await Sse.WriteAsync(http, new ChatCompletionChunk(id, "chat.completion.chunk", created, model.Id, [], total));
            await Sse.DoneAsync(http);
            return;
        }

        var result = new List<ChatChoice>(choices.Length);
        Usage? finalUsage = null;
        for (int index = 0; index < choices.Length; index++)
        {
            var text = new StringBuilder();
            var logprobs = job.Logprobs is null ? null : new ChatLogprobs([]);
            string? finish = null;
            await foreach (var piece in CompletionStream.ReadAsync(choices[index], http.RequestAborted))
            {
                if (piece.Error is { } error) throw new ApiException(500, error, type: "server_error");
                text.Append(piece.Text);
                if (logprobs is not null && piece.Token is { } t) logprobs.Content.Add(TokenLogprob(t, tokenizer));
                finish = piece.FinishReason ?? finish;
                finalUsage = CompletionStream.Sum(finalUsage, piece.Usage);
            }
            if (finish is null) return; // the client went away
            result.Add(new ChatChoice(index, new ChatMessageOut("assistant", text.ToString()), logprobs, finish));
        }
        http.Response.ContentType = "application/json";
        await JsonSerializer.SerializeAsync(http.Response.Body, new ChatCompletionResponse(id, "chat.completion", created, model.Id,
            result, finalUsage!), ApiJson.Options);
    }

    /// <summary>
    /// A message's content: a string, null, or OpenAI's array of content parts, of which only text
    /// parts ({"type":"text","text":"..."}) are accepted, joined with newlines as vLLM joins them for
    /// templates that take string content.
    /// </summary>
    private static string? ContentText(JsonNode? content, int index)
    {
        switch (content)
        {
            case null:
                return null;
            case JsonValue v when v.TryGetValue(out string? s):
                return s;
            case JsonArray parts:
                var text = new StringBuilder();
                for (int j = 0; j < parts.Count; j++)
                {
                    string param = $"messages[{index}].content[{j}]";
                    if (parts[j] is not JsonObject part)
                        throw ApiException.BadParam(param, $"{param} must be a content part object such as {{\"type\":\"text\",\"text\":\"...\"}}");
                    string? type = part["type"] is JsonValue tv && tv.TryGetValue(out string? t) ? t : null;
                    if (type != "text")
                        throw ApiException.BadParam(param, type is null
                            ? $"{param}.type is missing or not a string"
                            : $"{param}.type '{type}' is not supported: this model takes text parts only");
                    if (part["text"] is not JsonValue textValue || !textValue.TryGetValue(out string? partText))
                        throw ApiException.BadParam(param, $"{param}.text must be a string");
                    if (j > 0) text.Append('\n');
                    text.Append(partText);
                }
                return text.ToString();
            default:
                throw ApiException.BadParam($"messages[{index}].content", $"messages[{index}].content must be a string or an array of text parts");
        }
    }

    private static ChatTokenLogprob TokenLogprob(Inference.Generation.TokenEvent t, ITokenizer tokenizer)
    {
        string token = tokenizer.Decode([t.TokenId]);
        return new ChatTokenLogprob(token, t.Logprob ?? 0, [.. Encoding.UTF8.GetBytes(token)],
            (t.Top ?? []).Select(x => new ChatTopLogprob(x.Token, x.Logprob, [.. Encoding.UTF8.GetBytes(x.Token)])).ToList());
    }
}
