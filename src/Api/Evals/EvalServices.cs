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
using PiServe.Api.Errors;

namespace PiServe.Api.Evals;

public static class EvalServices
{
    /// <summary>
    /// The evaluation subsystem: dataset catalog, job store (SQLite or PostgreSQL), job runner and the
    /// store's synchronisation with this host (started as hosted services), hub progress.
    /// </summary>
    public static IServiceCollection AddPiServeEvals(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddSingleton(sp =>
        {
            var o = sp.GetRequiredService<IOptions<PiServeOptions>>().Value;
            if (o.Datasets.Count > 0)
                return new DatasetCatalog(o.DataRoot, o.Datasets.Select(d => new DatasetRegistration(d.Id, d.Kind, d.Path)));
            // Nothing configured: the shipped datasets, so every kind of job runs from a fresh clone.
            string shipped = Path.GetFullPath(string.IsNullOrWhiteSpace(o.ShippedDatasets) ? Path.Combine(AppContext.BaseDirectory, "datasets") : o.ShippedDatasets);
            return new DatasetCatalog(shipped, ShippedDatasets.Read(shipped));
        });
        services.AddSingleton<IEvalStore>(sp =>
        {
            var o = sp.GetRequiredService<IOptions<PiServeOptions>>().Value;
            return o.JobStore.Kind.ToLowerInvariant() switch
            {
                JobStoreOptions.Sqlite => new SqliteEvalStore(Path.Combine(Path.GetFullPath(o.DataDirectory), SqliteEvalStore.FileName)),
                JobStoreOptions.Postgres when string.IsNullOrWhiteSpace(o.JobStore.ConnectionString) =>
                    throw new InvalidOperationException("PiServe:JobStore:Kind is postgres but PiServe:JobStore:ConnectionString is empty"),
                JobStoreOptions.Postgres => new PostgresEvalStore(o.JobStore.ConnectionString, sp.GetRequiredService<EvalRunnerOptions>().HostId),
                var other => throw new InvalidOperationException($"PiServe:JobStore:Kind '{other}' is not one of: sqlite, postgres"),
            };
        });
        services.AddSingleton(sp =>
        {
            var o = sp.GetRequiredService<IOptions<PiServeOptions>>().Value;
            var js = o.JobStore;
            if (js.LeaseSeconds is not (>= 1 and <= 3600)) throw new InvalidOperationException("PiServe:JobStore:LeaseSeconds must be between 1 and 3600");
            if (js.PollSeconds is not (>= 0.05 and <= 60)) throw new InvalidOperationException("PiServe:JobStore:PollSeconds must be between 0.05 and 60");
            return new EvalRunnerOptions
            {
                Workers = o.EvalWorkers >= 0 ? o.EvalWorkers : throw new InvalidOperationException("PiServe:EvalWorkers must be 0 or more"),
                HostId = string.IsNullOrWhiteSpace(js.HostId) ? EvalRunnerOptions.DefaultHostId() : js.HostId,
                Lease = TimeSpan.FromSeconds(js.LeaseSeconds),
                PollInterval = TimeSpan.FromSeconds(js.PollSeconds),
            };
        });
        services.AddSingleton<JobStoreStatus>();
        services.AddSingleton<StoreSync>();
        services.AddSingleton<RegistryEvalModels>();
        services.AddSingleton<HubEvalObserver>();
        services.AddSingleton<IEvalObserver>(sp => sp.GetRequiredService<HubEvalObserver>());
        // piserve_eval_jobs{state} and piserve_eval_tokens_scored_total, when the host registered the metrics.
        services.AddSingleton<IEvalObserver>(sp => sp.GetService<Metrics.PiServeMetrics>() is { } m ? new MetricsEvalObserver(m) : NoEvalObserver.Instance);
        services.AddSingleton(sp =>
        {
            var log = sp.GetRequiredService<ILoggerFactory>().CreateLogger("PiServe.Evals");
            return new EvalJobRunner(sp.GetRequiredService<IEvalStore>(), sp.GetRequiredService<RegistryEvalModels>(),
                sp.GetRequiredService<DatasetCatalog>(), sp.GetRequiredService<EvalRunnerOptions>(),
                sp.GetServices<IEvalObserver>(), message => log.LogInformation("{Message}", message));
        });
        services.AddHostedService<EvalRunnerService>();
        return services;
    }
}

/// <summary>Whether the job store is usable: its schema in place and its database answering (for /health/ready and the eval endpoints).</summary>
public sealed class JobStoreStatus(IEvalStore store, EvalJobRunner runner)
{
    private volatile string? _startupProblem = "the job store is being opened";

    public string Description => store.Description;
    /// <summary>"sqlite" or "postgres": what readiness shows (the description holds a path or a host).</summary>
    public string Kind => store.Shared ? "postgres" : "sqlite";
    public bool SchemaReady { get; private set; }

    /// <summary>Null when the store is usable; else why not.</summary>
    public string? Problem => _startupProblem ?? runner.StoreProblem;

    internal void Opened()
    {
        SchemaReady = true;
        _startupProblem = null;
    }

    internal void Failed(string problem) => _startupProblem = problem;

    /// <summary>Throws the 503 the evaluation endpoints answer while the store cannot be used.</summary>
    public void EnsureAvailable()
    {
        if (!SchemaReady)
            throw new ApiException(503, $"the evaluation job store is not available yet: {Problem}", type: "server_error", code: "job_store_unavailable")
            {
                RetryAfter = TimeSpan.FromSeconds(5),
            };
    }
}

/// <summary>
/// Opens the job store once the host is up (after the models are loaded) — retrying in the background
/// while its database is unreachable, so completions are served meanwhile — then starts the job
/// runner and <see cref="StoreSync"/> (variants, progress of jobs on other hosts). On shutdown the
/// workers stop and their jobs stay "running" in the store, to resume at the next start or elsewhere.
/// </summary>
public sealed class EvalRunnerService(IEvalStore store, EvalJobRunner runner, JobStoreStatus status, StoreSync sync,
    DatasetCatalog datasets, ILogger<EvalRunnerService> log) : IHostedService
{
    private readonly CancellationTokenSource _stop = new();
    private Task? _opening;
    private bool _syncStarted;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        foreach (var d in datasets.All.Where(d => d.Error is not null))
            log.LogError("Dataset {Id} is refused: {Error}", d.Id, d.Error);
        _opening = Task.Run(() => OpenAsync(_stop.Token));
        return Task.CompletedTask;
    }

    private async Task OpenAsync(CancellationToken stop)
    {
        var delay = TimeSpan.FromMilliseconds(250);
        while (!stop.IsCancellationRequested)
        {
            try
            {
                store.EnsureSchema();
                status.Opened();
                log.LogInformation("Evaluation job store: {Store}", store.Description);
                break;
            }
            catch (EvalStoreUnavailableException e)
            {
                status.Failed(e.Reason);
                log.LogWarning("{Problem}; evaluation endpoints answer 503 until it is reachable (retrying in {Delay:0.#} s)", e.Message, delay.TotalSeconds);
                try { await Task.Delay(delay, stop); } catch (OperationCanceledException) { return; }
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, TimeSpan.FromSeconds(5).Ticks));
            }
        }
        if (stop.IsCancellationRequested) return;
        try
        {
            sync.SyncVariants(); // variants registered earlier (or on other hosts) before jobs that may use them resume
        }
        catch (EvalStoreUnavailableException e)
        {
            log.LogWarning("Variants not restored yet: {Error}", e.Message);
        }
        runner.Start();
        sync.Start(stop);
        _syncStarted = true;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        _stop.Cancel();
        if (_opening is not null) await Task.WhenAny(_opening, Task.Delay(TimeSpan.FromSeconds(5), cancellationToken));
        runner.Stop(TimeSpan.FromSeconds(5));
        if (_syncStarted) await sync.StopAsync();
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
public sealed class HubEvalObserver(IHubContext<GenerationHub> hub, ILogger<HubEvalObserver> log) : IEvalObserver
{
    public const string Method = "EvalProgress";

    public void JobStateChanged(EvalJob job, string? from, string to) { }
    public void TokensScored(EvalJob job, long tokens) { }

    public void Progress(EvalJob job) => _ = SendAsync(job);

    private async Task SendAsync(EvalJob job)
    {
        try
        {
            await hub.Clients.All.SendAsync(Method, job.ToJson(includeResults: false));
        }
        catch (Exception e)
        {
            log.LogDebug("EvalProgress for {Job} not sent: {Error}", job.Id, e.Message);
        }
    }
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
