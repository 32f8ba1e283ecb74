using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json.Nodes;
using PiServe.Eval.Datasets;
using PiServe.Eval.Models;
using PiServe.Eval.Suites;
using PiServe.Inference.Rope;

namespace PiServe.Eval.Jobs;

public sealed record EvalRunnerOptions
{
    /// <summary>Jobs worked on at once (each on its own thread); 0: this host runs none (others sharing the store do).</summary>
    public int Workers { get; init; } = 1;
    /// <summary>How often a worker looks again while interactive requests have priority.</summary>
    public TimeSpan PriorityPoll { get; init; } = TimeSpan.FromMilliseconds(20);
    /// <summary>Least time between two progress reports of one job.</summary>
    public TimeSpan ProgressInterval { get; init; } = TimeSpan.FromMilliseconds(250);
    /// <summary>This runner's id: the owner of its unit claims (unique per process; hosts sharing a store must differ).</summary>
    public string HostId { get; init; } = DefaultHostId();
    /// <summary>How long a claim outlives its runner's last heartbeat: a killed host's unit is taken over after this.</summary>
    public TimeSpan Lease { get; init; } = TimeSpan.FromSeconds(30);
    /// <summary>How often an idle worker looks in the store for jobs with free work (a local submit wakes it at once).</summary>
    public TimeSpan PollInterval { get; init; } = TimeSpan.FromSeconds(1);
    /// <summary>Longest wait between two attempts while the store is unreachable (the wait doubles from 0.2 s up to this).</summary>
    public TimeSpan MaxRetryDelay { get; init; } = TimeSpan.FromSeconds(5);

    public static string DefaultHostId() => $"{Environment.MachineName}-{Environment.ProcessId}-{Guid.NewGuid().ToString("N")[..8]}";
}

/// <summary>
/// Queues, runs, resumes and cancels evaluation jobs kept in an <see cref="IEvalStore"/>. Workers are
/// dedicated threads that take jobs with free work from the store — a running job nobody heartbeats
/// (its host died or stopped: it resumes from its last completed unit), a running job with unclaimed
/// units, or a queued one — so with a shared store every host works on every job, unit by unit
/// (<see cref="EvalContext.Units"/>). A suite runs synchronously on its worker, yielding to interactive
/// requests before every unit and forward pass. A heartbeat thread extends this runner's leases and
/// stops a job's work within a unit when it was cancelled from any host. Store outages are waited out
/// with backoff: no completed unit is lost and the job completes once the database is back.
/// Stopping the runner leaves running jobs "running" in the store; DELETE cancels them.
/// </summary>
public sealed class EvalJobRunner : IDisposable
{
    private readonly IEvalStore _store;
    private readonly IEvalModelProvider _models;
    private readonly DatasetCatalog _datasets;
    private readonly EvalRunnerOptions _options;
    private readonly IEvalObserver[] _observers;
    private readonly Action<string>? _log;
    private readonly SemaphoreSlim _wake = new(0);
    private readonly ConcurrentDictionary<string, CancellationTokenSource> _running = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, long> _lastProgress = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _shutdown = new();
    private readonly List<Thread> _workers = [];
    private Thread? _heartbeat;
    private volatile string? _storeProblem;
    private bool _started;

    public EvalJobRunner(IEvalStore store, IEvalModelProvider models, DatasetCatalog datasets, EvalRunnerOptions options,
        IEnumerable<IEvalObserver>? observers = null, Action<string>? log = null)
    {
        _store = store;
        _models = models;
        _datasets = datasets;
        _options = options;
        _observers = observers?.ToArray() ?? [];
        _log = log;
    }

    public IEvalStore Store => _store;
    public DatasetCatalog Datasets => _datasets;
    public string HostId => _options.HostId;

    /// <summary>The last store failure a worker or the heartbeat saw (naming no host), null once the store answers again.</summary>
    public string? StoreProblem => _storeProblem;

    /// <summary>Jobs this runner is working on now.</summary>
    public IReadOnlyCollection<string> RunningHere => _running.Keys.ToList();

    /// <summary>
    /// Starts the workers and the heartbeat. The store's schema must be in place (<see cref="IEvalStore.EnsureSchema"/>).
    /// A store owned by this host alone releases every claim first, so its unfinished jobs resume at once.
    /// </summary>
    public void Start()
    {
        if (_started) return;
        _started = true;
        if (!_store.Shared) _store.ReleaseAll();
        try
        {
            var jobs = _store.List();
            foreach (var job in jobs) Notify(o => o.JobStateChanged(job, null, job.State));
            foreach (var job in jobs.Where(j => j.State is EvalStates.Running or EvalStates.Queued))
                _log?.Invoke($"eval job {job.Id} ({job.Kind}, {job.State}) is unfinished: unit {job.Done} of {job.Total} done");
        }
        catch (EvalStoreUnavailableException e)
        {
            _storeProblem = e.Reason;
            _log?.Invoke($"eval jobs: {e.Message}; the workers wait for the store");
        }
        for (int i = 0; i < _options.Workers; i++)
        {
            var t = new Thread(WorkerLoop) { IsBackground = true, Name = $"piserve-eval-{i}" };
            _workers.Add(t);
            t.Start();
        }
        _heartbeat = new Thread(HeartbeatLoop) { IsBackground = true, Name = "piserve-eval-heartbeat" };
        _heartbeat.Start();
    }

    /// <summary>Stops the workers; jobs in flight stay "running" and resume at the next start (or on another host).</summary>
    public void Stop(TimeSpan? wait = null)
    {
        if (_shutdown.IsCancellationRequested) return;
        _shutdown.Cancel();
        var deadline = DateTime.UtcNow + (wait ?? TimeSpan.FromSeconds(10));
        foreach (var t in _workers) t.Join(Max(TimeSpan.Zero, deadline - DateTime.UtcNow));
        _heartbeat?.Join(Max(TimeSpan.Zero, deadline - DateTime.UtcNow));
    }

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;

    public void Dispose() => Stop();

    /// <summary>
    /// Runs a store call from a worker, waiting out outages: retried with a doubling delay (0.2 s up to
    /// <see cref="EvalRunnerOptions.MaxRetryDelay"/>) until it succeeds or the runner stops.
    /// </summary>
    private T Durable<T>(Func<T> call, CancellationToken cancellation)
    {
        var delay = TimeSpan.FromMilliseconds(200);
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                var result = call();
                if (_storeProblem is not null)
                {
                    _storeProblem = null;
                    _log?.Invoke("eval jobs: the store answers again");
                }
                return result;
            }
            catch (EvalStoreUnavailableException e)
            {
                if (_storeProblem is null || attempt == 1) _log?.Invoke($"eval jobs: {e.Message}; retrying in {delay.TotalSeconds:0.#} s");
                _storeProblem = e.Reason;
                if (cancellation.WaitHandle.WaitOne(delay)) cancellation.ThrowIfCancellationRequested();
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, _options.MaxRetryDelay.Ticks));
            }
        }
    }

    private void Durable(Action call, CancellationToken cancellation) => Durable(() => { call(); return 0; }, cancellation);

    public EvalJob? Get(string id) => _store.Get(id);

    public List<EvalJob> List(string? state, string? model)
    {
        if (state is not null && !EvalStates.All.Contains(state))
            throw EvalRequestException.Bad("state", $"unknown state '{state}' (one of: {string.Join(", ", EvalStates.All)})");
        return _store.List(state, model);
    }

    /// <summary>A validated request: the suite, model, rope, dataset and normalized parameters.</summary>
    public sealed record Prepared(EvalSuite Suite, IEvalModel Model, RopeScaling Rope, RegisteredDataset? Dataset, JsonObject Parameters);

    /// <summary>Validates a request as POST /v1/evals does; throws <see cref="EvalRequestException"/> naming the bad field.</summary>
    public Prepared Prepare(EvalRequest r)
    {
        var suite = EvalSuite.Get(r.Kind);
        if (string.IsNullOrEmpty(r.Model)) throw EvalRequestException.Bad("model", "'model' is required");
        var model = _models.Find(r.Model, out string? error, out bool exists);
        if (model is null)
            throw exists ? new EvalRequestException(503, $"The model '{r.Model}' is not available: {error}", "model")
                : new EvalRequestException(404, $"The model '{r.Model}' does not exist", "model");
        RopeScaling rope;
        try
        {
            rope = model.ResolveRope(r.RopeScaling);
        }
        catch (RopeScalingException e)
        {
            throw EvalRequestException.Bad("rope_scaling", e.Message);
        }

        RegisteredDataset? dataset = null;
        if (string.IsNullOrEmpty(r.Dataset))
        {
            if (suite.Dataset == DatasetNeed.Required)
                throw EvalRequestException.Bad("dataset", $"kind {suite.Kind} needs a dataset (registered ids: {DatasetIds()})");
        }
        else
        {
            if (suite.Dataset == DatasetNeed.None)
                throw EvalRequestException.Bad("dataset", $"kind {suite.Kind} takes no dataset");
            dataset = _datasets.Find(r.Dataset)
                ?? throw EvalRequestException.Bad("dataset", $"dataset '{r.Dataset}' is not registered in PiServe:Datasets (registered ids: {DatasetIds()})");
            if (dataset.Error is not null) throw EvalRequestException.Bad("dataset", $"dataset '{r.Dataset}' is refused: {dataset.Error}");
            if (suite.DatasetKinds is { } kinds && !kinds.Contains(dataset.Kind))
                throw EvalRequestException.Bad("dataset", $"kind {suite.Kind} needs a {string.Join(" or ", kinds.Select(DatasetKinds.Name))} dataset; '{dataset.Id}' is {dataset.KindName}");
        }
        var parameters = suite.Normalize(r.Parameters, model, rope);
        if (parameters["register_as"] is JsonValue reg && reg.TryGetValue(out string? variant) && ModelExists(variant))
            throw EvalRequestException.Bad("parameters.register_as", $"a model with id '{variant}' already exists");
        return new Prepared(suite, model, rope, dataset, parameters);
    }

    private bool ModelExists(string id)
    {
        bool exists;
        return _models.Find(id, out _, out exists) is not null || exists;
    }

    private string DatasetIds() => _datasets.All.Count == 0 ? "none" : string.Join(", ", _datasets.All.Select(d => d.Id));

    /// <summary>Validates and queues a job.</summary>
    public EvalJob Submit(EvalRequest r)
    {
        var p = Prepare(r);
        var job = new EvalJob
        {
            Id = "eval-" + Guid.NewGuid().ToString("N")[..24],
            Kind = p.Suite.Kind,
            Model = r.Model!,
            Dataset = p.Dataset?.Id,
            State = EvalStates.Queued,
            CreatedAt = DateTimeOffset.UtcNow.ToUnixTimeSeconds(),
            Parameters = p.Parameters,
            RopeScaling = (JsonObject?)r.RopeScaling?.DeepClone(),
        };
        _store.Insert(job);
        Notify(o => o.JobStateChanged(job, null, EvalStates.Queued));
        Notify(o => o.Progress(job));
        _wake.Release();
        return job;
    }

    /// <summary>
    /// Cancels a queued or running job. A worker here stops before its next unit or forward pass; workers
    /// on other hosts see the state at their next heartbeat.
    /// </summary>
    public EvalJob Cancel(string id)
    {
        var job = _store.Get(id) ?? throw new EvalRequestException(404, $"no evaluation job '{id}'", "id");
        if (job.State == EvalStates.Cancelled) return job;
        if (!_store.Transition(id, [EvalStates.Queued, EvalStates.Running], EvalStates.Cancelled))
            throw new EvalRequestException(409, $"job '{id}' has already {_store.Get(id)!.State}; only queued or running jobs can be cancelled", "id");
        if (_running.TryGetValue(id, out var cts)) cts.Cancel();
        var cancelled = _store.Get(id)!;
        Notify(o => o.JobStateChanged(cancelled, job.State, EvalStates.Cancelled));
        Notify(o => o.Progress(cancelled));
        return cancelled;
    }

    /// <summary>Runs a job kind synchronously outside the queue (the attention-score endpoint): nothing is stored.</summary>
    public JsonObject RunNow(EvalRequest r, CancellationToken cancellation)
    {
        var p = Prepare(r);
        var ctx = new EvalContext
        {
            Model = p.Model, Rope = p.Rope, RopeScalingJson = r.RopeScaling, Parameters = p.Parameters,
            Dataset = p.Dataset is { } d ? new DatasetSource(d.Id, d.Kind, d.FullPath) : null,
            Ledger = new MemoryLedger(), Cancellation = cancellation, PriorityPoll = _options.PriorityPoll,
        };
        return p.Suite.Run(ctx);
    }

    private void WorkerLoop()
    {
        var stop = _shutdown.Token;
        try
        {
            while (!stop.IsCancellationRequested)
            {
                string? id = Durable(() => _store.NextRunnableJob(RunningHere), stop);
                if (id is null)
                {
                    _wake.Wait(_options.PollInterval, stop);
                    continue;
                }
                try
                {
                    RunJob(id);
                }
                catch (OperationCanceledException) when (stop.IsCancellationRequested)
                {
                    return;
                }
                catch (Exception e)
                {
                    _log?.Invoke($"eval job {id}: worker error {e}");
                    // A job that fails to start here is not picked again at once (another host may run it).
                    if (stop.WaitHandle.WaitOne(_options.PollInterval)) return;
                }
            }
        }
        catch (OperationCanceledException) { }
    }

    /// <summary>Extends this runner's leases and stops local work on jobs cancelled (or finished) elsewhere.</summary>
    private void HeartbeatLoop()
    {
        var period = TimeSpan.FromTicks(Math.Clamp(_options.Lease.Ticks / 4, TimeSpan.FromMilliseconds(100).Ticks, TimeSpan.FromSeconds(5).Ticks));
        var stop = _shutdown.Token;
        while (!stop.WaitHandle.WaitOne(period))
        {
            try
            {
                var states = _store.Heartbeat(_options.HostId, RunningHere, _options.Lease);
                foreach (var (id, state) in states)
                {
                    if (!EvalStates.IsTerminal(state) || !_running.TryGetValue(id, out var cts) || cts.IsCancellationRequested) continue;
                    _log?.Invoke($"eval job {id} is {state} in the store: stopping its work here");
                    cts.Cancel();
                }
            }
            catch (EvalStoreUnavailableException e)
            {
                _storeProblem = e.Reason;
            }
            catch (Exception e)
            {
                _log?.Invoke($"eval heartbeat failed: {e.Message}");
            }
        }
    }

    private void RunJob(string id)
    {
        var stop = _shutdown.Token;
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(stop);
        if (!_running.TryAdd(id, cts)) return; // another worker of this host took it
        try
        {
            var job = Durable(() => _store.Get(id), stop);
            if (job is null || EvalStates.IsTerminal(job.State)) return;
            if (!Durable(() => _store.Transition(id, [EvalStates.Queued, EvalStates.Running], EvalStates.Running), stop)) return; // cancelled meanwhile
            Durable(() => _store.Heartbeat(_options.HostId, [id], _options.Lease), stop);
            var running = Durable(() => _store.Get(id)!, stop);
            if (job.State != EvalStates.Running) Notify(o => o.JobStateChanged(running, job.State, EvalStates.Running));
            else _log?.Invoke($"eval job {id} ({job.Kind}): working from unit {job.Done} of {job.Total}");
            Notify(o => o.Progress(running));
            var clock = Stopwatch.StartNew();
            try
            {
                var results = Execute(running, cts.Token);
                if (Durable(() => _store.Transition(id, [EvalStates.Running], EvalStates.Succeeded, results: results), stop))
                {
                    Finished(id, EvalStates.Succeeded);
                    _log?.Invoke($"eval job {id} ({running.Kind}) succeeded after {clock.Elapsed.TotalSeconds:F1} s here");
                }
            }
            catch (OperationCanceledException) when (cts.IsCancellationRequested)
            {
                // Cancelled (the state is already "cancelled"), or the host is stopping: the job stays
                // "running" and resumes from its last completed unit at the next start or on another host.
                _log?.Invoke(stop.IsCancellationRequested ? $"eval job {id} interrupted by shutdown; it resumes at the next start" : $"eval job {id} stopped here: it is no longer running");
                if (stop.IsCancellationRequested) throw;
            }
            catch (Exception e) when (e is EvalFailedException or RopeScalingException or EvalRequestException or ArgumentException
                                          or InvalidOperationException or IOException or UnauthorizedAccessException or OutOfMemoryException)
            {
                Fail(id, e.Message);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                _log?.Invoke($"eval job {id} crashed: {e}");
                Fail(id, "internal error: " + e.Message);
            }
        }
        finally
        {
            _running.TryRemove(id, out _);
            _lastProgress.TryRemove(id, out _);
        }
    }

    private void Fail(string id, string message)
    {
        if (Durable(() => _store.Transition(id, [EvalStates.Running], EvalStates.Failed, error: message), _shutdown.Token)) Finished(id, EvalStates.Failed);
        _log?.Invoke($"eval job {id} failed: {message}");
    }

    private void Finished(string id, string state)
    {
        var job = Durable(() => _store.Get(id)!, _shutdown.Token);
        Notify(o => o.JobStateChanged(job, EvalStates.Running, state));
        Notify(o => o.Progress(job));
    }

    private JsonObject Execute(EvalJob job, CancellationToken cancellation)
    {
        var suite = EvalSuite.Get(job.Kind);
        var model = _models.Find(job.Model, out string? error, out _)
            ?? throw new EvalFailedException($"the model '{job.Model}' is not available: {error ?? "not configured"}");
        var rope = model.ResolveRope(job.RopeScaling);
        DatasetSource? dataset = null;
        if (job.Dataset is not null)
        {
            var d = _datasets.Find(job.Dataset) ?? throw new EvalFailedException($"dataset '{job.Dataset}' is no longer registered");
            if (d.Error is not null) throw new EvalFailedException($"dataset '{job.Dataset}' is refused: {d.Error}");
            if (_datasets.RealPathProblem(d) is { } escape) throw new EvalFailedException($"dataset '{job.Dataset}' is refused: {escape}");
            if (!File.Exists(d.FullPath) && !Directory.Exists(d.FullPath))
                throw new EvalFailedException($"dataset '{d.Id}' ({d.KindName}): {d.FullPath} does not exist");
            dataset = new DatasetSource(d.Id, d.Kind, d.FullPath);
        }
        var ctx = new EvalContext
        {
            Model = model, Rope = rope, RopeScalingJson = job.RopeScaling, Parameters = job.Parameters, Dataset = dataset,
            Ledger = new StoreLedger(this, job, cancellation), Cancellation = cancellation, PriorityPoll = _options.PriorityPoll,
        };
        var results = suite.Run(ctx);
        if (job.Parameters["register_as"] is JsonValue reg && reg.TryGetValue(out string? variantId)
            && LongRopeSearchSuite.Variant(results) is { } variant)
        {
            // Hosts sharing the job may all get here; the first registers, the others find it (synced
            // from the store, or registered by their own pass) and only store the same definition again.
            if (!ModelExists(variantId)) _models.RegisterVariant(job.Model, variantId, variant.RopeScaling, variant.ContextWindow);
            Durable(() => _store.SaveVariant(new EvalVariant(variantId, job.Model, variant.RopeScaling, variant.ContextWindow, job.Id)), cancellation);
            results["registered_as"] = variantId;
        }
        return results;
    }

    private void Progress(string id, bool force)
    {
        long now = Stopwatch.GetTimestamp();
        long last = _lastProgress.GetOrAdd(id, 0);
        if (!force && last != 0 && Stopwatch.GetElapsedTime(last, now) < _options.ProgressInterval) return;
        _lastProgress[id] = now;
        try
        {
            if (_store.Get(id) is { } job) Notify(o => o.Progress(job));
        }
        catch (EvalStoreUnavailableException e)
        {
            _storeProblem = e.Reason; // progress is best effort; the next report catches up
        }
    }

    private void Notify(Action<IEvalObserver> action)
    {
        foreach (var o in _observers)
        {
            try { action(o); }
            catch (Exception e) { _log?.Invoke($"eval observer {o.GetType().Name} threw: {e.Message}"); }
        }
    }

    /// <summary>Claims and records a job's units in the store (waiting out outages) as the suite works through them.</summary>
    private sealed class StoreLedger(EvalJobRunner runner, EvalJob job, CancellationToken cancellation) : IEvalLedger
    {
        private readonly IEvalStore _store = runner._store;

        public IReadOnlyDictionary<int, CompletedUnit> CompletedUnits { get; } =
            runner.Durable(() => runner._store.CompletedUnits(job.Id), cancellation);

        public void SetTotal(int total)
        {
            runner.Durable(() => _store.SetTotal(job.Id, total), cancellation);
            runner.Progress(job.Id, force: true);
        }

        public void Plan(IReadOnlyList<(int Index, string Key)> units) => runner.Durable(() => _store.PlanUnits(job.Id, units), cancellation);

        public int? Claim(IReadOnlyList<int> pending) =>
            runner.Durable(() => _store.ClaimUnit(job.Id, pending, runner._options.HostId, runner._options.Lease), cancellation);

        public IReadOnlyDictionary<int, CompletedUnit> CompletedAmong(IReadOnlyList<int> pending) =>
            runner.Durable(() => _store.CompletedUnits(job.Id, pending), cancellation);

        public void UnitStarted(int index, string key) =>
            runner.Durable(() => _store.UnitStarted(job.Id, index, key, runner._options.HostId), cancellation);

        public void UnitCompleted(CompletedUnit unit)
        {
            // Recorded even while the job is being cancelled: the work is done and another host may need it.
            if (runner.Durable(() => _store.UnitCompleted(job.Id, unit), runner._shutdown.Token))
                runner.Notify(o => o.TokensScored(job, unit.Tokens));
            runner.Progress(job.Id, force: false);
        }

        public void PartialResults(JsonObject results)
        {
            try
            {
                _store.SetPartialResults(job.Id, results);
            }
            catch (EvalStoreUnavailableException)
            {
                // Partial results are a courtesy for GET while running; the final results are stored on success.
            }
        }
    }
}
