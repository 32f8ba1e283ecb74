using PiServe.Api.Models;
using PiServe.Eval.Jobs;

namespace PiServe.Api.Evals;

/// <summary>
/// Keeps this host in step with a shared job store (PostgreSQL), which other hosts write too:
/// <list type="bullet">
/// <item>model variants registered or deleted on any host are registered or removed here (at once on a
/// PostgreSQL notification, else within a poll interval);</item>
/// <item>progress of jobs worked on by other hosts reaches this host's SignalR clients as EvalProgress:
/// pushed on PostgreSQL's LISTEN/NOTIFY, and polled from the store while the notification connection is
/// down (it is re-established with backoff);</item>
/// <item>piserve_eval_jobs{state} is set from the store's counts, so every host reports the shared queue.</item>
/// </list>
/// </summary>
public sealed class StoreSync(IEvalStore store, EvalJobRunner runner, ModelRegistry registry, HubEvalObserver hub,
    EvalRunnerOptions options, Microsoft.Extensions.Options.IOptions<Configuration.PiServeOptions> settings, IServiceProvider services, ILogger<StoreSync> log)
{
    private readonly object _variantsLock = new();
    private readonly SemaphoreSlim _wake = new(0);
    private readonly Dictionary<string, (string State, int Done, int Total)> _pushed = new(StringComparer.Ordinal);
    private readonly HashSet<string> _variantErrors = new(StringComparer.Ordinal);
    private HashSet<string> _knownVariants = new(StringComparer.Ordinal);
    private volatile bool _listening;
    private Task? _poll, _listen;

    /// <summary>Whether progress arrives by notification now (false: polled).</summary>
    public bool Listening => _listening;

    public void Start(CancellationToken stop)
    {
        // A store only this host writes (SQLite) changes under no one else: the runner reports its own
        // progress and transitions, and variants were restored at start. Nothing to poll for.
        if (!store.Shared) return;
        _poll = Task.Run(() => PollLoopAsync(stop));
        if (store is PostgresEvalStore pg && settings.Value.JobStore.Listen) _listen = Task.Run(() => ListenLoopAsync(pg, stop));
        else if (store.Shared) log.LogInformation("Job store notifications are off: progress of other hosts' jobs and variant changes are polled every {Poll} s", options.PollInterval.TotalSeconds);
    }

    public async Task StopAsync()
    {
        foreach (var t in new[] { _poll, _listen })
            if (t is not null) await Task.WhenAny(t, Task.Delay(TimeSpan.FromSeconds(5)));
    }

    /// <summary>
    /// Registers stored variants missing here and removes those deleted from the store since the last
    /// look (a variant registered here but not yet stored is left alone: it was never seen in the store).
    /// </summary>
    public void SyncVariants()
    {
        lock (_variantsLock)
        {
            var stored = store.Variants();
            var ids = new HashSet<string>(stored.Select(v => v.Id), StringComparer.Ordinal);
            foreach (var v in stored)
            {
                if (registry.Find(v.Id) is not null) continue;
                try
                {
                    registry.RegisterVariant(v.BaseModel, v.Id, v.RopeScaling, v.ContextWindow);
                    _variantErrors.Remove(v.Id);
                    log.LogInformation("Model variant {Id} of {Base} registered from the job store", v.Id, v.BaseModel);
                }
                catch (Exception e) when (e is ArgumentException or KeyNotFoundException or InvalidOperationException or Inference.Rope.RopeScalingException)
                {
                    if (_variantErrors.Add(v.Id)) log.LogError("Model variant {Id} of {Base} cannot be registered here: {Error}", v.Id, v.BaseModel, e.Message);
                }
            }
            foreach (var gone in _knownVariants.Where(id => !ids.Contains(id)))
            {
                if (registry.Find(gone) is not { BaseModelId: not null }) continue;
                try
                {
                    registry.RemoveVariant(gone);
                    log.LogInformation("Model variant {Id} removed: it was deleted from the job store", gone);
                }
                catch (Exception e) when (e is InvalidOperationException or KeyNotFoundException)
                {
                    log.LogWarning("Model variant {Id} was deleted from the job store but stays here for now: {Error}", gone, e.Message);
                    ids.Add(gone); // try again next time
                }
            }
            _knownVariants = ids;
        }
    }

    private async Task PollLoopAsync(CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            try
            {
                await _wake.WaitAsync(options.PollInterval, stop);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            try
            {
                SyncVariants();
                if (services.GetService<Metrics.PiServeMetrics>() is { } metrics) metrics.SetEvalJobs(store.CountByState());
                if (!_listening) PollProgress();
            }
            catch (EvalStoreUnavailableException e)
            {
                log.LogDebug("Store sync skipped: {Error}", e.Message);
            }
            catch (Exception e)
            {
                log.LogError(e, "Store sync failed");
            }
        }
    }

    /// <summary>EvalProgress for every active job (and each that just finished) whose state or counters moved since the last push.</summary>
    private void PollProgress()
    {
        var active = store.List(EvalStates.Running).Concat(store.List(EvalStates.Queued)).ToList();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var job in active)
        {
            seen.Add(job.Id);
            Push(job);
        }
        foreach (var id in _pushed.Keys.Where(id => !seen.Contains(id)).ToList())
        {
            if (store.Get(id) is { } job) Push(job);
            _pushed.Remove(id);
        }
    }

    private void Push(EvalJob job)
    {
        var now = (job.State, job.Done, job.Total);
        lock (_pushed)
        {
            if (_pushed.TryGetValue(job.Id, out var last) && last == now) return;
            _pushed[job.Id] = now;
        }
        if (!runner.RunningHere.Contains(job.Id)) hub.Progress(job); // this host's own work reports itself
    }

    private async Task ListenLoopAsync(PostgresEvalStore pg, CancellationToken stop)
    {
        var delay = TimeSpan.FromMilliseconds(500);
        while (!stop.IsCancellationRequested)
        {
            try
            {
                await pg.ListenAsync(OnNotification, () =>
                {
                    _listening = true;
                    delay = TimeSpan.FromMilliseconds(500);
                    log.LogInformation("Listening for job and variant notifications on {Store}", pg.Description);
                }, stop);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                if (_listening) log.LogWarning("Job notifications stopped ({Error}); polling the store every {Poll} s until they resume", e.Message, options.PollInterval.TotalSeconds);
                _listening = false;
            }
            try { await Task.Delay(delay, stop); } catch (OperationCanceledException) { return; }
            delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, TimeSpan.FromSeconds(10).Ticks));
        }
        _listening = false;
    }

    private void OnNotification(PostgresEvalStore.Notification n)
    {
        if (n.HostId == options.HostId) return; // this host's own changes are reported where they happen
        if (n.Channel == PostgresEvalStore.VariantChannel)
        {
            _wake.Release();
            return;
        }
        _ = Task.Run(() =>
        {
            try
            {
                if (store.Get(n.Id) is { } job) Push(job);
            }
            catch (Exception e)
            {
                log.LogDebug("Progress of {Job} not relayed: {Error}", n.Id, e.Message);
            }
        });
    }
}
