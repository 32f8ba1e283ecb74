using PiServe.Inference.Kernels;
using System.Text.Json;
using System.Threading.Channels;
using PiServe.Api.Models;
using PiServe.Inference.Generation;
using PiServe.Inference.Tokenization;
using PiServe.Api.Errors;

namespace PiServe.Api.OpenAi;

/// <summary>OpenAI-compatible legacy completions, tokenize/detokenize (as vLLM) and the model list.</summary>
public static class CompletionsEndpoints
{
    public static IEndpointRouteBuilder MapCompletionEndpoints(this IEndpointRouteBuilder app)
    {
        var v1 = app.MapGroup("/v1").WithTags("OpenAI");
        v1.MapGet("/models", ListModels).WithName("ListModels").Produces<ModelList>();
        v1.MapGet("/models/{id}/scheduler", (string id, CompletionService service) =>
        {
            var s = service.ResolveModel(id).Scheduler!;
            return new SchedulerStatus(s.RunningCount, s.WaitingCount, Interlocked.Read(ref s.DecodeSteps), Interlocked.Read(ref s.DecodedTokens),
                s.ReservedKvBytes, s.KvBudgetBytes, s.PrefixCache?.BlockCount ?? 0, s.PrefixCache?.Bytes ?? 0,
                Interlocked.Read(ref s.PrefixQueriedTokens), Interlocked.Read(ref s.PrefixHitTokens),
                (double)Interlocked.Read(ref s.PrefixCopyInTicks) / System.Diagnostics.Stopwatch.Frequency,
                (double)Interlocked.Read(ref s.PrefixCopyOutTicks) / System.Diagnostics.Stopwatch.Frequency);
        }).WithName("SchedulerStatus").Produces<SchedulerStatus>().Produces<ErrorBody>(404);
        v1.MapPost("/completions", Completions).WithName("CreateCompletion")
            .Accepts<CompletionRequest>("application/json")
            .Produces<CompletionResponse>(200, "application/json", "text/event-stream")
            .Produces<ErrorBody>(400).Produces<ErrorBody>(404).Produces<ErrorBody>(413).Produces<ErrorBody>(429);

        var tokens = app.MapGroup("").WithTags("Tokenizer");
        tokens.MapPost("/tokenize", Tokenize).WithName("Tokenize").Accepts<TokenizeRequest>("application/json")
            .Produces<TokenizeResponse>().Produces<ErrorBody>(400).Produces<ErrorBody>(404);
        tokens.MapPost("/detokenize", Detokenize).WithName("Detokenize").Accepts<DetokenizeRequest>("application/json")
            .Produces<DetokenizeResponse>().Produces<ErrorBody>(400).Produces<ErrorBody>(404);
        return app;
    }

    private static ModelList ListModels(ModelRegistry registry) => new("list", registry.All.Select(m => m.IsLoaded
        ? new ModelCard(m.Id, "model", m.Created.ToUnixTimeSeconds(), "piserve", m.Status, null, m.ContextWindowFor(m.Rope!),
            m.Rope!.Describe(), m.Model!.WeightDType.ToString().ToLowerInvariant(), m.Model.ParameterCount,
            m.Scheduler!.KvBytesPerToken, m.ChatTemplate is not null, m.Model.Name, m.Model.EffectiveMatmulPrecision.Name())
        : new ModelCard(m.Id, "model", m.Created.ToUnixTimeSeconds(), "piserve", m.Status, m.Error, null, null, null, null, null, null)).ToList());

    private static async Task<IResult> Tokenize(HttpContext http, CompletionService service)
    {
        var r = await RequestBody.ReadAsync<TokenizeRequest>(http.Request, http.RequestAborted);
        var model = service.ResolveModel(r.Model);
        if (r.Prompt is null) throw ApiException.BadParam("prompt", "'prompt' is required");
        var ids = model.Tokenizer!.Encode(r.Prompt, r.AddSpecialTokens ?? true);
        return Results.Json(new TokenizeResponse(ids, ids.Length, model.ContextWindowFor(model.Rope!)));
    }

    private static async Task<IResult> Detokenize(HttpContext http, CompletionService service)
    {
        var r = await RequestBody.ReadAsync<DetokenizeRequest>(http.Request, http.RequestAborted);
        var model = service.ResolveModel(r.Model);
        if (r.Tokens is null) throw ApiException.BadParam("tokens", "'tokens' is required");
        int vocab = model.Tokenizer!.VocabSize;
        for (int i = 0; i < r.Tokens.Count; i++)
            if (r.Tokens[i] < 0 || r.Tokens[i] >= vocab) throw ApiException.BadParam("tokens", $"tokens[{i}] = {r.Tokens[i]} is not a token id in [0, {vocab})");
        return Results.Json(new DetokenizeResponse(model.Tokenizer.Decode(r.Tokens.ToArray())));
    }

    private static async Task Completions(HttpContext http, CompletionService service)
    {
        var request = await RequestBody.ReadAsync<CompletionRequest>(http.Request, http.RequestAborted);
        var p = service.Prepare(request, http.RequestAborted);
        var choices = CompletionService.SubmitAll(p.Model, CompletionService.Choices(p.Job, p.N));
        string id = "cmpl-" + Guid.NewGuid().ToString("N");
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var tokenizer = p.Model.Tokenizer!;
        bool wantLogprobs = p.Job.Logprobs is not null;

        if (p.Stream)
        {
            await Sse.StartAsync(http);
            // Per choice: whether its first chunk is still to come, and its text offset.
            var firsts = Enumerable.Repeat(true, choices.Length).ToArray();
            var offsets = new int[choices.Length];
            Usage? total = null;
            await foreach (var (index, piece) in CompletionStream.ReadAllAsync(choices, http.RequestAborted))
            {
                string text = piece.Text;
                CompletionLogprobs? lp = null;
                if (firsts[index] && p.Echo)
                {
                    text = p.PromptText + text;
                    if (wantLogprobs) lp = PromptLogprobs(piece.Prompt, p.Job.Prompt, tokenizer, ref offsets[index]);
                }
                firsts[index] = false;
                if (wantLogprobs && piece.Token is { } tok)
                {
                    lp ??= new CompletionLogprobs([], [], [], []);
                    AddToken(lp, tok, tokenizer, ref offsets[index]);
                }
                if (piece.Error is { } error)
                {
                    await Sse.WriteAsync(http, new ErrorBody(new ErrorDetail(error, "server_error", null, null)));
                    break;
                }
                if (text.Length == 0 && lp is null && piece.FinishReason is null) continue;
                await Sse.WriteAsync(http, new CompletionResponse(id, "text_completion", created, p.Model.Id,
                    [new CompletionChoice(index, text, lp, piece.FinishReason)], null));
                total = CompletionStream.Sum(total, piece.Usage);
            }
            if (total is not null && p.IncludeUsage)
                await Sse.WriteAsync(http, new CompletionResponse(id, "text_completion", created, p.Model.Id, [], total));
            await Sse.DoneAsync(http);
            return;
        }

        var result = new List<CompletionChoice>(choices.Length);
        Usage? finalUsage = null;
        for (int index = 0; index < choices.Length; index++)
        {
            var textOut = new System.Text.StringBuilder(p.Echo ? p.PromptText : "");
            CompletionLogprobs? logprobs = null;
            int textOffset = 0;
            string? finish = null;
            await foreach (var piece in CompletionStream.ReadAsync(choices[index], http.RequestAborted))
            {
                if (piece.Error is { } error) throw new ApiException(500, error, type: "server_error");
                if (wantLogprobs && logprobs is null)
                    logprobs = p.Echo ? PromptLogprobs(piece.Prompt, p.Job.Prompt, tokenizer, ref textOffset) : new CompletionLogprobs([], [], [], []);
                textOut.Append(piece.Text);
                if (wantLogprobs && piece.Token is { } tok) AddToken(logprobs!, tok, tokenizer, ref textOffset);
                finish = piece.FinishReason ?? finish;
                finalUsage = CompletionStream.Sum(finalUsage, piece.Usage);
            }
            if (finish is null) return; // the client went away: nothing to answer
            result.Add(new CompletionChoice(index, textOut.ToString(), logprobs, finish));
        }
        http.Response.ContentType = "application/json";
        await JsonSerializer.SerializeAsync(http.Response.Body,
            new CompletionResponse(id, "text_completion", created, p.Model.Id, result, finalUsage), ApiJson.Options);
    }

    private static CompletionLogprobs PromptLogprobs(PromptLogprobsEvent? e, int[] prompt, ITokenizer tokenizer, ref int offset)
    {
        var lp = new CompletionLogprobs([], [], [], []);
        for (int i = 0; i < prompt.Length; i++)
        {
            string tok = tokenizer.Decode([prompt[i]]);
            lp.Tokens.Add(tok);
            lp.TokenLogprobs.Add(e?.Logprobs[i]);
            lp.TopLogprobs.Add(e?.Top[i] is { } top ? Top(top) : null);
            lp.TextOffset.Add(offset);
            offset += tok.Length;
        }
        return lp;
    }

    private static void AddToken(CompletionLogprobs lp, TokenEvent t, ITokenizer tokenizer, ref int offset)
    {
        string tok = tokenizer.Decode([t.TokenId]);
        lp.Tokens.Add(tok);
        lp.TokenLogprobs.Add(t.Logprob);
        lp.TopLogprobs.Add(t.Top is { } top ? Top(top) : new Dictionary<string, float>());
        lp.TextOffset.Add(offset);
        offset += tok.Length;
    }

    private static Dictionary<string, float> Top(TopLogprob[] top)
    {
        var d = new Dictionary<string, float>();
        foreach (var t in top) d.TryAdd(t.Token, t.Logprob); // tokens decoding to the same text: keep the more likely
        return d;
    }
}
