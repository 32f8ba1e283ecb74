using System.Diagnostics;
using System.Text.Json.Nodes;
using PiServe.Eval.Datasets;
using PiServe.Eval.Models;
using PiServe.Inference.Rope;

namespace PiServe.Eval.Suites;

/// <summary>Whether a kind reads a dataset.</summary>
public enum DatasetNeed { None, Optional, Required }

/// <summary>
/// One evaluation kind. <see cref="Normalize"/> validates a request's parameters (throwing
/// <see cref="EvalRequestException"/> naming the bad one) and fills in defaults; <see cref="Run"/> does
/// the work as a sequence of units (documents, trials, candidates) through <see cref="EvalContext.Unit"/>,
/// which persists each unit's result as it is produced and skips units completed by an earlier run.
/// </summary>
public abstract class EvalSuite
{
    public abstract string Kind { get; }
    public abstract DatasetNeed Dataset { get; }

    /// <summary>Dataset formats this kind accepts (null: any).</summary>
    public virtual IReadOnlyCollection<DatasetKind>? DatasetKinds => null;

    /// <summary>The parameters with every default in force; throws <see cref="EvalRequestException"/>.</summary>
    public JsonObject Normalize(JsonObject? parameters, IEvalModel model, RopeScaling rope)
    {
        var p = new EvalParameters(parameters);
        Read(p, model, rope);
        p.RejectUnknown(Kind);
        return p.Normalized;
    }

    /// <summary>Reads (and validates) every parameter of the kind.</summary>
    protected abstract void Read(EvalParameters p, IEvalModel model, RopeScaling rope);

    /// <summary>Runs the evaluation and returns its results object.</summary>
    public abstract JsonObject Run(EvalContext context);

    public static readonly IReadOnlyDictionary<string, EvalSuite> All = new Dictionary<string, EvalSuite>(StringComparer.Ordinal)
    {
        ["perplexity"] = new PerplexitySuite(),
        ["passkey"] = new PasskeySuite(),
        ["govreport"] = new GovReportSuite(),
        ["longrope-search"] = new LongRopeSearchSuite(),
        ["attention-scores"] = new AttentionScoresSuite(),
    };

    public static EvalSuite Get(string? kind) =>
        kind is not null && All.TryGetValue(kind, out var suite) ? suite
            : throw EvalRequestException.Bad("kind", $"unknown kind '{kind}' (one of: {string.Join(", ", All.Keys)})");

    /// <summary>A JSON number, or null where it is not finite (JSON has no NaN or infinity).</summary>
    public static JsonNode? Num(double x) => double.IsFinite(x) ? JsonValue.Create(x) : null;
}

/// <summary>The result of computing one unit: its JSON (persisted) and the tokens it scored or processed.</summary>
public readonly record struct UnitOutcome(JsonNode Result, long Tokens);

/// <summary>A unit completed by this or an earlier run of the job.</summary>
public sealed record CompletedUnit(int Index, string Key, JsonNode Result, long Tokens, double Seconds);

/// <summary>A unit of work a suite asks for: its index in the job, a key naming its inputs, and how to compute it.</summary>
public readonly record struct UnitSpec(int Index, string Key, Func<UnitOutcome> Compute);

/// <summary>
/// Where a run's units are recorded and claimed: the job store for jobs (shared by every host's
/// runner), memory for the eval verb.
/// </summary>
public interface IEvalLedger
{
    /// <summary>Units completed before this run started, by index.</summary>
    IReadOnlyDictionary<int, CompletedUnit> CompletedUnits { get; }
    void SetTotal(int total);
    /// <summary>Announces the units this run is about to work through, so other runners can take some of them.</summary>
    void Plan(IReadOnlyList<(int Index, string Key)> units);
    /// <summary>Claims one of <paramref name="pending"/> for this run; null when every one is held by another runner.</summary>
    int? Claim(IReadOnlyList<int> pending);
    /// <summary>The units of <paramref name="pending"/> completed meanwhile (by other runners).</summary>
    IReadOnlyDictionary<int, CompletedUnit> CompletedAmong(IReadOnlyList<int> pending);
    void UnitStarted(int index, string key);
    void UnitCompleted(CompletedUnit unit);
    /// <summary>Results so far (for GET while the job runs); the final results are returned by the suite.</summary>
    void PartialResults(JsonObject results);
}

/// <summary>A ledger in memory: nothing survives the process, and nobody else takes units (the eval verb).</summary>
public sealed class MemoryLedger : IEvalLedger
{
    private readonly Dictionary<int, CompletedUnit> _done = [];
    public IReadOnlyDictionary<int, CompletedUnit> CompletedUnits => _done;
    public int Total { get; private set; }
    public long Tokens { get; private set; }
    public int Started { get; private set; }
    public Action<MemoryLedger>? OnProgress { get; init; }
    public void SetTotal(int total) => Total = total;
    public void Plan(IReadOnlyList<(int Index, string Key)> units) { }
    public int? Claim(IReadOnlyList<int> pending) => pending.Count > 0 ? pending[0] : null;
    public IReadOnlyDictionary<int, CompletedUnit> CompletedAmong(IReadOnlyList<int> pending) =>
        pending.Where(_done.ContainsKey).ToDictionary(i => i, i => _done[i]);
    public void UnitStarted(int index, string key) => Started++;
    public void UnitCompleted(CompletedUnit unit)
    {
        _done[unit.Index] = unit;
        Tokens += unit.Tokens;
        OnProgress?.Invoke(this);
    }
    public void PartialResults(JsonObject results) { }
}

/// <summary>The dataset a job names: its format and full path.</summary>
public sealed record DatasetSource(string Id, DatasetKind Kind, string Path);

/// <summary>Everything a suite needs for one run of one job.</summary>
public sealed class EvalContext
{
    public required IEvalModel Model { get; init; }
    public required RopeScaling Rope { get; init; }
    /// <summary>The request's rope_scaling override (null: the model's default), as given.</summary>
    public JsonObject? RopeScalingJson { get; init; }
    /// <summary>Normalized parameters (<see cref="EvalSuite.Normalize"/>).</summary>
    public required JsonObject Parameters { get; init; }
    public DatasetSource? Dataset { get; init; }
    public required IEvalLedger Ledger { get; init; }
    public CancellationToken Cancellation { get; init; }
    /// <summary>How often to look again while interactive requests have priority.</summary>
    public TimeSpan PriorityPoll { get; init; } = TimeSpan.FromMilliseconds(20);

    private long _lastPartial;

    /// <summary>
    /// Before each unit and each forward pass: stop if cancelled, and wait while interactive requests
    /// run or wait on the model (completions keep priority over eval work).
    /// </summary>
    public void WaitTurn()
    {
        Cancellation.ThrowIfCancellationRequested();
        while (Model.InteractiveBusy)
        {
            Cancellation.WaitHandle.WaitOne(PriorityPoll);
            Cancellation.ThrowIfCancellationRequested();
        }
    }

    /// <summary>How often to look for results of units another runner holds.</summary>
    public TimeSpan OtherRunnersPoll { get; init; } = TimeSpan.FromMilliseconds(250);

    /// <summary>A single unit: <see cref="Units"/> of one.</summary>
    public JsonNode Unit(int index, string key, Func<UnitOutcome> compute) => Units([new UnitSpec(index, key, compute)])[0];

    /// <summary>
    /// Units of work that do not depend on each other, results in the order given. A unit completed by an
    /// earlier run is not recomputed: its stored result is used. The rest are claimed one at a time and
    /// computed here, each recorded before the next starts — unless a runner on another host claimed it
    /// first, in which case its result is awaited (and the unit taken over if that runner's lease
    /// expires). So several hosts share a job's units, and a host killed mid-unit loses only that unit.
    /// The key names what a unit is (window, document, trial...): a recorded unit whose key differs means
    /// the inputs changed, and the job fails rather than mixing results. <paramref name="completed"/> is
    /// called with each result's position as it becomes known (for partial results), in no fixed order.
    /// </summary>
    public JsonNode[] Units(IReadOnlyList<UnitSpec> specs, Action<int, JsonNode>? completed = null)
    {
        var results = new JsonNode?[specs.Count];
        var position = new Dictionary<int, int>(specs.Count);
        var pending = new List<int>();
        for (int p = 0; p < specs.Count; p++)
        {
            position[specs[p].Index] = p;
            if (Ledger.CompletedUnits.TryGetValue(specs[p].Index, out var done)) Accept(p, done);
            else pending.Add(p);
        }

        void Accept(int p, CompletedUnit done)
        {
            if (done.Key != specs[p].Key)
                throw new EvalFailedException($"unit {done.Index} was recorded as '{done.Key}' but is now '{specs[p].Key}': the dataset or parameters changed since the job started");
            results[p] = done.Result;
            completed?.Invoke(p, done.Result);
        }

        if (pending.Count > 0) Ledger.Plan(pending.Select(p => (specs[p].Index, specs[p].Key)).ToList());
        while (pending.Count > 0)
        {
            WaitTurn();
            var indices = pending.Select(p => specs[p].Index).ToList();
            if (Ledger.Claim(indices) is int unit)
            {
                int p = position[unit];
                var spec = specs[p];
                Ledger.UnitStarted(unit, spec.Key);
                var clock = Stopwatch.StartNew();
                var outcome = spec.Compute();
                Ledger.UnitCompleted(new CompletedUnit(unit, spec.Key, outcome.Result, outcome.Tokens, clock.Elapsed.TotalSeconds));
                pending.Remove(p);
                results[p] = outcome.Result;
                completed?.Invoke(p, outcome.Result);
                continue;
            }
            // Every pending unit is held by another runner: take their results as they land.
            var landed = Ledger.CompletedAmong(indices);
            foreach (var done in landed.Values)
            {
                int p = position[done.Index];
                pending.Remove(p);
                Accept(p, done);
            }
            if (landed.Count == 0)
            {
                Cancellation.WaitHandle.WaitOne(OtherRunnersPoll);
                Cancellation.ThrowIfCancellationRequested();
            }
        }
        return results!;
    }

    /// <summary>Publishes results so far, at most about once a second.</summary>
    public void Partial(Func<JsonObject> results, bool force = false)
    {
        long now = Stopwatch.GetTimestamp();
        if (!force && Stopwatch.GetElapsedTime(_lastPartial, now) < TimeSpan.FromSeconds(1)) return;
        _lastPartial = now;
        Ledger.PartialResults(results());
    }

    /// <summary>Reads the job's dataset; a missing or malformed one fails the job with the reason.</summary>
    public DatasetContents LoadDataset(int? maxDocuments, bool skipMalformed)
    {
        if (Dataset is null) throw new EvalFailedException("this kind needs a dataset");
        try
        {
            return DatasetReader.Read(Dataset.Kind, Dataset.Path, maxDocuments, skipMalformed, Cancellation);
        }
        catch (DatasetException e)
        {
            throw new EvalFailedException(e.Message);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new EvalFailedException($"dataset {Dataset.Id}: {e.Message}");
        }
    }

    /// <summary>The model's tokenization of a document, truncated to the first <paramref name="maxTokens"/> tokens.</summary>
    public int[] Tokenize(string text, int? maxTokens = null)
    {
        Cancellation.ThrowIfCancellationRequested();
        var ids = Model.Encode(text);
        return maxTokens is { } m && ids.Length > m ? ids[..m] : ids;
    }
}

/// <summary>The job cannot complete; the message is the reason the job reports.</summary>
public sealed class EvalFailedException(string message) : Exception(message);
