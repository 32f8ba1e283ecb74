using System.Runtime.CompilerServices;
using System.Text.Json.Serialization;
using Microsoft.AspNetCore.SignalR;
using PiServe.Api.OpenAi;
using PiServe.Api.Errors;

namespace PiServe.Api.Hubs;

/// <summary>One streamed event of a completion over SignalR.</summary>
public sealed record TokenStreamEvent(
    [property: JsonPropertyName("type")] string Type,
    [property: JsonPropertyName("text")] string Text,
    [property: JsonPropertyName("token_id")] int? TokenId,
    [property: JsonPropertyName("logprob")] float? Logprob,
    [property: JsonPropertyName("finish_reason")] string? FinishReason,
    [property: JsonPropertyName("usage")] Usage? Usage);

/// <summary>
/// Live token streaming at /hubs/generation. StreamCompletion takes the same body as
/// POST /v1/completions and streams {type: "token" | "finish", text, token_id, logprob,
/// finish_reason, usage}; one choice per stream (n must be 1); a client that cancels the stream (or disconnects) stops generation.
/// </summary>
public sealed class GenerationHub(CompletionService service, ILogger<GenerationHub> log) : Hub
{
    public const string Path = "/hubs/generation";

    /// <remarks>
    /// The argument is taken as raw JSON and read like an HTTP body, so a mistyped field is reported by
    /// name (SignalR's own binding would only say "an error on the server"). The request is validated
    /// and queued before the stream is returned: a refusal (400, 413, 429) then fails the invocation,
    /// which SignalR logs at debug level, instead of failing a running stream, which it logs as a
    /// server error with a stack trace. SignalR's dispatcher logs every hub exception as an error, a
    /// client's mistakes included, so appsettings.json quiets it and the hub logs what happened itself:
    /// refusals at Information, anything unexpected as an error with its stack.
    /// </remarks>
    public IAsyncEnumerable<TokenStreamEvent> StreamCompletion(System.Text.Json.JsonElement request, CancellationToken cancellation)
    {
        try
        {
            if (request.ValueKind != System.Text.Json.JsonValueKind.Object)
                throw new ApiException(400, $"the request must be a JSON object, got {request.ValueKind.ToString().ToLowerInvariant()}");
            var p = service.Prepare(RequestBody.Read<CompletionRequest>(request), cancellation);
            // The hub's events carry no choice index: one choice per stream (HTTP serves n > 1).
            if (p.N != 1) throw ApiException.BadParam("n", "StreamCompletion streams one choice: 'n' must be 1 (use POST /v1/completions for n > 1)");
            return Stream(CompletionService.Submit(p.Model, p.Job), cancellation);
        }
        catch (ApiException e)
        {
            log.LogInformation("StreamCompletion refused: {Status} {Message}", e.Status, e.Message);
            // The client sees this message (HubException messages are sent even without detailed errors).
            throw new HubException($"{e.Status} {e.Type}: {e.Message}" + (e.Param is null ? "" : $" (param: {e.Param})"));
        }
        catch (Exception e) when (e is not HubException)
        {
            log.LogError(e, "StreamCompletion failed (connection {ConnectionId})", Context.ConnectionId);
            throw new HubException($"500 server_error: the server had an error (connection {Context.ConnectionId}); the details are in the server log");
        }
    }

    private async IAsyncEnumerable<TokenStreamEvent> Stream(System.Threading.Channels.ChannelReader<Inference.Generation.GenerationEvent> events,
        [EnumeratorCancellation] CancellationToken cancellation)
    {
        await foreach (var piece in CompletionStream.ReadAsync(events, cancellation))
        {
            if (piece.Error is { } error)
            {
                log.LogError("StreamCompletion ended by the scheduler: {Error}", error);
                throw new HubException(error);
            }
            if (piece.Token is { } t)
                yield return new TokenStreamEvent("token", piece.Text, t.TokenId, t.Logprob, null, null);
            if (piece.FinishReason is { } reason)
                yield return new TokenStreamEvent("finish", piece.Text, null, null, reason, piece.Usage);
        }
    }
}
