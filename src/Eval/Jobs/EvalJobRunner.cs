using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using PiServe.Eval.Datasets;
using PiServe.Eval.Models;
using PiServe.Eval.Suites;
using PiServe.Inference.Rope;

namespace PiServe.Eval.Jobs;

public sealed record EvalRunnerOptions
{
    /// <summary>Jobs run at once (each on its own thread).</summary>
    public int Workers { get; init; } = 1;
    /// <summary>How often a worker looks again while interactive requests have priority.</summary>
    public TimeSpan PriorityPoll { get; init; } = TimeSpan.FromMilliseconds(20);
    /// <summary>Least time between two progress reports of one job.</summary>
    public TimeSpan ProgressInterval { get; init; } = TimeSpan.FromMilliseconds(250);
}

/// <summary>
/// Queues, runs, resumes and cancels evaluation jobs. Jobs live in the <see cref="SqliteEvalStore"/>;
/// at <see cref="Start"/> every queued or running job is queued again and resumes from its last
/// completed unit. Workers are dedicated threads; a job's suite runs synchronously on one of them,
/// yielding to interactive requests before every unit and forward pass. Stopping the runner leaves
/// running jobs "running" in the store (they resume at the next start); DELETE cancels them.
/// </summary>
public sealed class EvalJobRunner : IDisposable
{
    private readonly SqliteEvalStore _store;
    private readonly IEvalModelProvider _models;
    private readonly DatasetCatalog _datasets;
    private readonly EvalRunnerOptions _options;
    private readonly IEvalObserver[] _observers;
    private readonly Action<string>? _log;
    private readonly Channel<string> _queue = Channel.CreateUnbounded<string>();
    private readonly ConcurrentDictionary<string, CancellationTokenSource> _running = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, long> _lastProgress = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _shutdown = new();
    private readonly List<Thread> _workers = [];
    private bool _started;

    public EvalJobRunner(SqliteEvalStore store, IEvalModelProvider models, DatasetCatalog datasets, EvalRunnerOptions options,
        IEnumerable<IEvalObserver>? observers = null, Action<string>? log = null)
    {
        _store = store;
        _models = models;
        _datasets = datasets;
        _options = options;
        _observers = observers?.ToArray() ?? [];
        _log = log;
    }

    public SqliteEvalStore Store => _store;
    public DatasetCatalog Datasets => _datasets;

    /// <summary>Reports every stored job to the observers, queues unfinished ones (running first) and starts the workers.</summary>
    public void Start()
    {
        if (_started) return;
        _started = true;
        var jobs = _store.List();
        foreach (var job in jobs) Notify(o => o.JobStateChanged(job, null, job.State));
        foreach (var job in jobs.Where(j => j.State == EvalStates.Running).Concat(jobs.Where(j => j.State == EvalStates.Queued)))
        {
            _log?.Invoke($"eval job {job.Id} ({job.Kind}, {job.State}) queued to resume at unit {job.Done} of {job.Total}");
            _queue.Writer.TryWrite(job.Id);
        }
        for (int i = 0; i < Math.Max(1, _options.Workers); i++)
        {
            var t = new Thread(WorkerLoop) { IsBackground = true, Name = $"piserve-eval-{i}" };
            _workers.Add(t);
            t.Start();
        }
    }

    /// <summary>Stops the workers; jobs in flight stay "running" and resume at the next start.</summary>
    public void Stop(TimeSpan? wait = null)
    {
        if (_shutdown.IsCancellationRequested) return;
        _shutdown.Cancel();
        _queue.Writer.TryComplete();
        var deadline = DateTime.UtcNow + (wait ?? TimeSpan.FromSeconds(10));
        foreach (var t in _workers) t.Join(Max(TimeSpan.Zero, deadline - DateTime.UtcNow));
    }

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;

    public void Dispose() => Stop();

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
            CreatedAt = SqliteEvalStore.Now(),
            Parameters = p.Parameters,
            RopeScaling = (JsonObject?)r.RopeScaling?.DeepClone(),
        };
        _store.Insert(job);
        Notify(o => o.JobStateChanged(job, null, EvalStates.Queued));
        Notify(o => o.Progress(job));
        _queue.Writer.TryWrite(job.Id);
        return job;
    }

    /// <summary>Cancels a queued or running job (the worker stops before its next unit or forward pass).</summary>
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
        try
        {
            while (_queue.Reader.WaitToReadAsync(_shutdown.Token).AsTask().GetAwaiter().GetResult())
            {
                if (!_queue.Reader.TryRead(out var id)) continue;
                try
                {
                    RunJob(id);
                }
                catch (Exception e)
                {
                    _log?.Invoke($"eval job {id}: worker error {e}");
                }
                if (_shutdown.IsCancellationRequested) return;
            }
        }
        catch (OperationCanceledException) { }
        catch (ChannelClosedException) { }
    }

    private void RunJob(string id)
    {
        var job = _store.Get(id);
        if (job is null || EvalStates.IsTerminal(job.State) || _shutdown.IsCancellationRequested) return;
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(_shutdown.Token);
        _running[id] = cts;
        try
        {
            if (!_store.Transition(id, [EvalStates.Queued, EvalStates.Running], EvalStates.Running)) return; // cancelled meanwhile
            var running = _store.Get(id)!;
            if (job.State != EvalStates.Running) Notify(o => o.JobStateChanged(running, job.State, EvalStates.Running));
            Notify(o => o.Progress(running));
            var clock = Stopwatch.StartNew();
            try
            {
                var results = Execute(running, cts.Token);
                if (_store.Transition(id, [EvalStates.Running], EvalStates.Succeeded, results: results))
                    Finished(id, EvalStates.Succeeded);
                _log?.Invoke($"eval job {id} ({running.Kind}) succeeded after {clock.Elapsed.TotalSeconds:F1} s");
            }
            catch (OperationCanceledException) when (cts.IsCancellationRequested)
            {
                // Cancelled by DELETE (the state is already "cancelled"), or the host is stopping: the job
                // stays "running" and resumes from its last completed unit at the next start.
                _log?.Invoke(_shutdown.IsCancellationRequested ? $"eval job {id} interrupted by shutdown; it resumes at the next start" : $"eval job {id} cancelled");
            }
            catch (Exception e) when (e is EvalFailedException or RopeScalingException or EvalRequestException or ArgumentException
                                          or InvalidOperationException or IOException or UnauthorizedAccessException or OutOfMemoryException)
            {
                Fail(id, e.Message);
            }
            catch (Exception e)
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
        if (_store.Transition(id, [EvalStates.Running], EvalStates.Failed, error: message)) Finished(id, EvalStates.Failed);
        _log?.Invoke($"eval job {id} failed: {message}");
    }

    private void Finished(string id, string state)
    {
        var job = _store.Get(id)!;
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
            Ledger = new StoreLedger(this, job), Cancellation = cancellation, PriorityPoll = _options.PriorityPoll,
        };
        var results = suite.Run(ctx);
        if (job.Parameters["register_as"] is JsonValue reg && reg.TryGetValue(out string? variantId)
            && LongRopeSearchSuite.Variant(results) is { } variant)
        {
            _models.RegisterVariant(job.Model, variantId, variant.RopeScaling, variant.ContextWindow);
            _store.SaveVariant(new SqliteEvalStore.Variant(variantId, job.Model, variant.RopeScaling, variant.ContextWindow, job.Id));
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
        if (_store.Get(id) is { } job) Notify(o => o.Progress(job));
    }

    private void Notify(Action<IEvalObserver> action)
    {
        foreach (var o in _observers)
        {
            try { action(o); }
            catch (Exception e) { _log?.Invoke($"eval observer {o.GetType().Name} threw: {e.Message}"); }
        }
    }

    /// <summary>Records a job's units in the store as they complete.</summary>
    private sealed class StoreLedger(EvalJobRunner runner, EvalJob job) : IEvalLedger
    {
        public IReadOnlyDictionary<int, CompletedUnit> CompletedUnits { get; } = runner._store.CompletedUnits(job.Id);

        public void SetTotal(int total)
        {
            runner._store.SetTotal(job.Id, total);
            runner.Progress(job.Id, force: true);
        }

        public void UnitStarted(int index, string key) => runner._store.UnitStarted(job.Id, index, key);

        public void UnitCompleted(CompletedUnit unit)
        {
            runner._store.UnitCompleted(job.Id, unit);
            runner.Notify(o => o.TokensScored(job, unit.Tokens));
            runner.Progress(job.Id, force: false);
        }

        public void PartialResults(JsonObject results) => runner._store.SetPartialResults(job.Id, results);
    }
}
