using System.Text.Json;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Http.Json;
using PiServe.Api.Evals;
using PiServe.Api.Hubs;
using PiServe.Api.Models;
using PiServe.Api.OpenAi;
using PiServe.Api.Configuration;
using PiServe.Api.Errors;
using PiServe.Api.Health;

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
        services.Configure<JsonOptions>(o =>
        {
            // As ApiJson.Options: nulls written, text unescaped.
            o.SerializerOptions.DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.Never;
            o.SerializerOptions.Encoder = ApiJson.Options.Encoder;
        });
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
        app.Logger.LogInformation("Native memory: {HeapRetention}", HeapRetention.Status);
        app.UseMiddleware<ApiErrorMiddleware>();
        app.UseStatusCodePages(ApiErrorMiddleware.WriteStatusBodyAsync);
        // The page at / (wwwroot: playground and evaluations, no build step).
        app.UseDefaultFiles();
        app.UseStaticFiles();
        app.UseMiddleware<ApiKeyMiddleware>();
        app.UseSwagger();
        app.UseSwaggerUI();

        app.MapHealthEndpoints();
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
