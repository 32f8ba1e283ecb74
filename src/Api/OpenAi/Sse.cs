using System.Text.Json;

namespace PiServe.Api.OpenAi;

/// <summary>Server-sent events as OpenAI streams them: "data: {json}\n\n" ... "data: [DONE]\n\n".</summary>
public static class Sse
{
    public static async Task StartAsync(HttpContext http)
    {
        http.Response.ContentType = "text/event-stream";
        http.Response.Headers.CacheControl = "no-cache";
        http.Response.Headers["X-Accel-Buffering"] = "no";
        await http.Response.Body.FlushAsync(http.RequestAborted);
    }

    public static async Task WriteAsync<T>(HttpContext http, T payload)
    {
        if (http.RequestAborted.IsCancellationRequested) return;
        var bytes = JsonSerializer.SerializeToUtf8Bytes(payload, ApiJson.Options);
        try
        {
            await http.Response.Body.WriteAsync("data: "u8.ToArray(), http.RequestAborted);
            await http.Response.Body.WriteAsync(bytes, http.RequestAborted);
            await http.Response.Body.WriteAsync("\n\n"u8.ToArray(), http.RequestAborted);
            await http.Response.Body.FlushAsync(http.RequestAborted);
        }
        catch (OperationCanceledException) { }
        catch (IOException) { } // the client disconnected; its cancellation token stops generation
    }

    public static Task DoneAsync(HttpContext http) => WriteRawAsync(http, "data: [DONE]\n\n");

    private static async Task WriteRawAsync(HttpContext http, string text)
    {
        if (http.RequestAborted.IsCancellationRequested) return;
        try
        {
            await http.Response.WriteAsync(text, http.RequestAborted);
            await http.Response.Body.FlushAsync(http.RequestAborted);
        }
        catch (OperationCanceledException) { }
        catch (IOException) { }
    }
}
