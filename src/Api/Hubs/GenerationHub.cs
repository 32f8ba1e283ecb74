using System.Runtime.CompilerServices;
using System.Text.Json.Serialization;
using Microsoft.AspNetCore.SignalR;
using PiServe.Api.OpenAi;

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
/// finish_reason, usage}; a client that cancels the stream (or disconnects) stops generation.
/// </summary>
public sealed class GenerationHub(CompletionService service) : Hub
{
    public const string Path = "/hubs/generation";

    /// <remarks>
    /// The argument is taken as raw JSON and read like an HTTP body, so a mistyped field is reported by
    /// name (SignalR's own binding would only say "an error on the server").
    /// </remarks>
    public async IAsyncEnumerable<TokenStreamEvent> StreamCompletion(System.Text.Json.JsonElement request, [EnumeratorCancellation] CancellationToken cancellation)
    {
        PreparedCompletion p;
        System.Threading.Channels.ChannelReader<Inference.Generation.GenerationEvent> events;
        try
        {
            if (request.ValueKind != System.Text.Json.JsonValueKind.Object)
                throw new ApiException(400, $"the request must be a JSON object, got {request.ValueKind.ToString().ToLowerInvariant()}");
            p = service.Prepare(RequestBody.Read<CompletionRequest>(request), cancellation);
            events = CompletionService.Submit(p.Model, p.Job);
        }
        catch (ApiException e)
        {
            // The client sees this message (HubException messages are sent even without detailed errors).
            throw new HubException($"{e.Status} {e.Type}: {e.Message}" + (e.Param is null ? "" : $" (param: {e.Param})"));
        }
        await foreach (var piece in CompletionsEndpoints.ReadAsync(events, cancellation))
        {
            if (piece.Error is { } error) throw new HubException(error);
            if (piece.Token is { } t)
                yield return new TokenStreamEvent("token", piece.Text, t.TokenId, t.Logprob, null, null);
            if (piece.FinishReason is { } reason)
                yield return new TokenStreamEvent("finish", piece.Text, null, null, reason, piece.Usage);
        }
    }
}
