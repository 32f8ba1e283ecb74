using System.Text.Json;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Http.Json;
using PiServe.Api.Evals;
using PiServe.Api.Hubs;
using PiServe.Api.Models;
using PiServe.Api.OpenAi;

namespace PiServe.Api.Hosting;

/// <summary>Composition of the host: services in <see cref="AddPiServe"/>, pipeline and endpoints in <see cref="UsePiServe"/>.</summary>
public static class PiServeHost
{
    public static IServiceCollection AddPiServe(this IServiceCollection services, IConfiguration configuration)
    {
        services.Configure<PiServeOptions>(configuration.GetSection(PiServeOptions.Section));
        services.AddPiServeMetrics();
        services.AddSingleton<ISchedulerObserverFactory, Metrics.SchedulerMetrics>();
        services.AddSingleton<ModelRegistry>();
        services.AddSingleton<CompletionService>();
        services.AddPiServeEvals(configuration);
        services.Configure<JsonOptions>(o => o.SerializerOptions.DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.Never);
        services.AddSignalR().AddJsonProtocol();
        // SignalR's dispatcher logs every exception a hub method throws as an error with its stack,
        // a client's bad request included; GenerationHub logs what happened itself (refusals at
        // Information, anything unexpected as an error), so the dispatcher's copy is silenced.
        services.AddLogging(b => b.AddFilter("Microsoft.AspNetCore.SignalR.Internal.DefaultHubDispatcher", LogLevel.Critical));
        services.AddEndpointsApiExplorer();
        services.AddSwaggerGen(c =>
        {
            c.SwaggerDoc("v1", new Microsoft.OpenApi.OpenApiInfo
            {
                Title = "PiServe",
                Version = "v1",
                Description = "OpenAI-compatible serving of RoPE-extended Llama-family models (Position Interpolation, NTK, YaRN, LongRoPE, Llama 3).",
            });
        });
        return services;
    }

    public static WebApplication UsePiServe(this WebApplication app)
    {
        app.UseMiddleware<ApiErrorMiddleware>();
        app.UseStatusCodePages(ApiErrorMiddleware.WriteStatusBodyAsync);
        // The page at / (wwwroot: playground and evaluations, no build step).
        app.UseDefaultFiles();
        app.UseStaticFiles();
        app.UseMiddleware<ApiKeyMiddleware>();
        app.UseSwagger();
        app.UseSwaggerUI();

        var health = app.MapGroup("/health").WithTags("Health");
        health.MapGet("/live", () => Results.Ok(new { status = "live" }));
        health.MapGet("/ready", (ModelRegistry registry) =>
        {
            // Model errors name files relative to the models root (ModelRegistry): readiness is open without a key.
            var models = registry.All.Select(m => new { id = m.Id, status = m.Status, error = m.Error }).ToList();
            return registry.AllLoaded
                ? Results.Ok(new { status = "ready", models })
                : Results.Json(new { status = "not_ready", models }, statusCode: 503);
        });

        app.MapCompletionEndpoints();
        app.MapChatEndpoints();
        app.MapEvalEndpoints();
        app.MapPrometheusMetrics("/metrics");
        app.MapHub<GenerationHub>(GenerationHub.Path);

        // Load the models before the first request: failures are logged and reported, the host stays up.
        app.Services.GetRequiredService<ModelRegistry>();
        // Every family the dashboard queries exists from the start, at zero (prometheus-net publishes a label child once it is created).
        app.Lifetime.ApplicationStarted.Register(() =>
        {
            var metrics = app.Services.GetRequiredService<Metrics.PiServeMetrics>();
            var options = app.Services.GetRequiredService<Microsoft.Extensions.Options.IOptions<PiServeOptions>>().Value;
            foreach (var m in app.Services.GetRequiredService<ModelRegistry>().All.Where(m => m.IsLoaded && m.BaseModelId is null))
                metrics.DeclareModel(m.Id, options.Scheduler.KvCacheBudgetBytes);
            metrics.DeclareEvalStates(Eval.Jobs.EvalStates.All);
        });
        return app;
    }
}

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
        return JsonSerializer.SerializeAsync(http.Response.Body, error.Body, CompletionsEndpoints.Json);
    }

    public static async Task WriteAsync(HttpContext http, ApiException e)
    {
        if (http.Response.HasStarted) return;
        http.Response.StatusCode = e.Status;
        if (e.RetryAfter is { } retry) http.Response.Headers.RetryAfter = ((int)Math.Ceiling(retry.TotalSeconds)).ToString();
        http.Response.ContentType = "application/json";
        await JsonSerializer.SerializeAsync(http.Response.Body, e.Body, CompletionsEndpoints.Json);
    }
}

/// <summary>With PiServe:ApiKeys set, everything but health, metrics and the docs needs "Authorization: Bearer KEY".</summary>
public sealed class ApiKeyMiddleware(RequestDelegate next, Microsoft.Extensions.Options.IOptions<PiServeOptions> options)
{
    private readonly HashSet<string> _keys = [.. options.Value.ApiKeys.Where(k => !string.IsNullOrEmpty(k))];

    public async Task InvokeAsync(HttpContext http)
    {
        var path = http.Request.Path;
        if (_keys.Count == 0 || path.StartsWithSegments("/health") || path.StartsWithSegments("/metrics")
            || path.StartsWithSegments("/swagger") || path == "/" || path.StartsWithSegments("/lib") || path.StartsWithSegments("/app"))
        {
            await next(http);
            return;
        }
        string? key = null;
        var auth = http.Request.Headers.Authorization.ToString();
        if (auth.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)) key = auth["Bearer ".Length..].Trim();
        // Browsers cannot set headers on WebSocket upgrades: SignalR sends the key as access_token.
        if (key is null && path.StartsWithSegments("/hubs")) key = http.Request.Query["access_token"];
        if (key is null || !_keys.Contains(key))
        {
            await ApiErrorMiddleware.WriteAsync(http, new ApiException(401,
                key is null ? "missing API key: send 'Authorization: Bearer <key>'" : "invalid API key", code: "invalid_api_key"));
            return;
        }
        await next(http);
    }
}
