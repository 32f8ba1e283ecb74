using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.SignalR;
using Microsoft.Extensions.Options;
using PiServe.Api.Hubs;
using PiServe.Api.Models;
using PiServe.Eval.Datasets;
using PiServe.Eval.Jobs;
using PiServe.Eval.Models;
using PiServe.Api.Configuration;

namespace PiServe.Api.Evals;

public static class EvalServices
{
    /// <summary>The evaluation subsystem: dataset catalog, SQLite job store, job runner (started as a hosted service), hub progress.</summary>
    public static IServiceCollection AddPiServeEvals(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddSingleton(sp =>
        {
            var o = sp.GetRequiredService<IOptions<PiServeOptions>>().Value;
            return new DatasetCatalog(o.DataRoot, o.Datasets.Select(d => new DatasetRegistration(d.Id, d.Kind, d.Path)));
        });
        services.AddSingleton(sp =>
        {
            var o = sp.GetRequiredService<IOptions<PiServeOptions>>().Value;
            return new SqliteEvalStore(Path.Combine(Path.GetFullPath(o.DataDirectory), SqliteEvalStore.FileName));
        });
        services.AddSingleton<RegistryEvalModels>();
        services.AddSingleton<IEvalObserver, HubEvalObserver>();
        // piserve_eval_jobs{state} and piserve_eval_tokens_scored_total, when the host registered the metrics.
        services.AddSingleton<IEvalObserver>(sp => sp.GetService<Metrics.PiServeMetrics>() is { } m ? new MetricsEvalObserver(m) : NoEvalObserver.Instance);
        services.AddSingleton(sp =>
        {
            var o = sp.GetRequiredService<IOptions<PiServeOptions>>().Value;
            var log = sp.GetRequiredService<ILoggerFactory>().CreateLogger("PiServe.Evals");
            return new EvalJobRunner(sp.GetRequiredService<SqliteEvalStore>(), sp.GetRequiredService<RegistryEvalModels>(),
                sp.GetRequiredService<DatasetCatalog>(), new EvalRunnerOptions { Workers = Math.Max(1, o.EvalWorkers) },
                sp.GetServices<IEvalObserver>(), message => log.LogInformation("{Message}", message));
        });
        services.AddHostedService<EvalRunnerService>();
        return services;
    }
}

/// <summary>
/// Starts the job runner once the host is up (after the models are loaded): variants registered
/// earlier are restored, then unfinished jobs resume. On shutdown the workers stop and their jobs stay
/// "running" in the store, to resume at the next start.
/// </summary>
public sealed class EvalRunnerService(EvalJobRunner runner, RegistryEvalModels models, DatasetCatalog datasets, ILogger<EvalRunnerService> log)
    : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        foreach (var d in datasets.All.Where(d => d.Error is not null))
            log.LogError("Dataset {Id} is refused: {Error}", d.Id, d.Error);
        foreach (var v in runner.Store.Variants())
        {
            try
            {
                models.RegisterVariant(v.BaseModel, v.Id, v.RopeScaling, v.ContextWindow);
                log.LogInformation("Restored model variant {Id} of {Base}", v.Id, v.BaseModel);
            }
            catch (Exception e) when (e is ArgumentException or Inference.Rope.RopeScalingException)
            {
                log.LogError("Model variant {Id} of {Base} cannot be restored: {Error}", v.Id, v.BaseModel, e.Message);
            }
        }
        runner.Start();
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        runner.Stop(TimeSpan.FromSeconds(5));
        return Task.CompletedTask;
    }
}

/// <summary>The registry's models as eval models; eval work yields while the model's scheduler has requests.</summary>
public sealed class RegistryEvalModels(ModelRegistry registry) : IEvalModelProvider
{
    private readonly ConcurrentDictionary<ServedModel, LlamaEvalModel> _cache = new(ReferenceEqualityComparer.Instance);

    public IEvalModel? Find(string id, out string? error, out bool exists)
    {
        var served = registry.Find(id);
        exists = served is not null;
        error = served is null ? "not configured" : served.IsLoaded ? null : served.Error ?? served.Status;
        if (served is null || !served.IsLoaded) return null;
        return _cache.GetOrAdd(served, s => new LlamaEvalModel(s.Id, s.Model!, s.Tokenizer!, s.Rope,
            busy: () => s.Scheduler!.RunningCount > 0 || s.Scheduler.WaitingCount > 0,
            contextWindow: s.ContextWindowFor));
    }

    public void RegisterVariant(string baseModel, string id, JsonObject ropeScaling, int? contextWindow) =>
        registry.RegisterVariant(baseModel, id, ropeScaling, contextWindow);
}

/// <summary>Pushes "EvalProgress" (the job JSON without results) to every client of the generation hub.</summary>
public sealed class HubEvalObserver(IHubContext<GenerationHub> hub) : IEvalObserver
{
    public const string Method = "EvalProgress";

    public void JobStateChanged(EvalJob job, string? from, string to) { }
    public void TokensScored(EvalJob job, long tokens) { }

    public void Progress(EvalJob job) => _ = hub.Clients.All.SendAsync(Method, job.ToJson(includeResults: false));
}

/// <summary>Feeds the eval metrics: a gauge of jobs per state (moved on every transition) and scored tokens by model.</summary>
public sealed class MetricsEvalObserver(Metrics.PiServeMetrics metrics) : IEvalObserver
{
    public void JobStateChanged(EvalJob job, string? from, string to) => metrics.EvalJobMoved(from, to);
    public void TokensScored(EvalJob job, long tokens) => metrics.EvalTokensScored(job.Model, tokens);
}

internal sealed class NoEvalObserver : IEvalObserver
{
    public static readonly NoEvalObserver Instance = new();
    public void JobStateChanged(EvalJob job, string? from, string to) { }
    public void TokensScored(EvalJob job, long tokens) { }
}
