using System.Text.Json;
using System.Text.Json.Serialization;
using PiServe.Api.Errors;

namespace PiServe.Api.OpenAi;

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
