using System.Text.Json;
using Microsoft.AspNetCore.Diagnostics;
using PiServe.Api.OpenAi;

namespace PiServe.Api.Errors;

/// <summary>Turns <see cref="ApiException"/> and malformed requests into OpenAI error JSON; nothing else escapes as a crash.</summary>
public sealed class ApiErrorMiddleware(RequestDelegate next, ILogger<ApiErrorMiddleware> log)
{
    public async Task InvokeAsync(HttpContext http)
    {
        try
        {
            await next(http);
        }
        catch (ApiException e)
        {
            await WriteAsync(http, e);
        }
        catch (Eval.Jobs.EvalStoreUnavailableException e)
        {
            // The job store's database is away: evaluation endpoints answer 503, everything else keeps serving.
            log.LogWarning("{Method} {Path}: {Message}", http.Request.Method, http.Request.Path, e.Message);
            await WriteAsync(http, new ApiException(503, "the evaluation job store is unavailable; try again shortly", type: "server_error",
                code: "job_store_unavailable") { RetryAfter = TimeSpan.FromSeconds(5) });
        }
        catch (BadHttpRequestException e)
        {
            await WriteAsync(http, new ApiException(e.StatusCode, e.Message));
        }
        catch (OperationCanceledException) when (http.RequestAborted.IsCancellationRequested)
        {
            // The client went away; there is no one to answer.
        }
        catch (Exception e)
        {
            // The detail goes to the log, under the request id the client is given: an exception's
            // message can carry paths and internals that are no business of the caller.
            log.LogError(e, "Unhandled error on {Method} {Path} (request {RequestId})", http.Request.Method, http.Request.Path, http.TraceIdentifier);
            await WriteAsync(http, new ApiException(500,
                $"The server had an error while processing your request (request id {http.TraceIdentifier}); the details are in the server log",
                type: "server_error"));
        }
    }

    /// <summary>
    /// A response the framework ends with an error status and no body (415 from the endpoint's
    /// Accepts metadata, 404 for an unknown path, 405 for a wrong method) gets OpenAI's error JSON too.
    /// </summary>
    public static Task WriteStatusBodyAsync(StatusCodeContext context)
    {
        var http = context.HttpContext;
        int status = http.Response.StatusCode;
        string message = status switch
        {
            404 => $"no route for {http.Request.Method} {http.Request.Path}",
            405 => $"method {http.Request.Method} is not allowed on {http.Request.Path}",
            415 => $"Content-Type must be application/json, got '{http.Request.ContentType ?? "none"}'",
            _ => $"HTTP {status}",
        };
        string? code = status switch { 404 => "not_found", 405 => "method_not_allowed", 415 => "unsupported_media_type", _ => null };
        var error = new ApiException(status, message, code: code);
        http.Response.ContentType = "application/json";
        return JsonSerializer.SerializeAsync(http.Response.Body, error.Body, ApiJson.Options);
    }

    public static async Task WriteAsync(HttpContext http, ApiException e)
    {
        if (http.Response.HasStarted) return;
        http.Response.StatusCode = e.Status;
        if (e.RetryAfter is { } retry) http.Response.Headers.RetryAfter = ((int)Math.Ceiling(retry.TotalSeconds)).ToString();
        http.Response.ContentType = "application/json";
        await JsonSerializer.SerializeAsync(http.Response.Body, e.Body, ApiJson.Options);
    }
}
