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

/// <summary>Where a run's units are recorded: the SQLite store for jobs, memory for the eval verb.</summary>
public interface IEvalLedger
{
    /// <summary>Units completed by earlier runs of the same job, by index.</summary>
    IReadOnlyDictionary<int, CompletedUnit> CompletedUnits { get; }
    void SetTotal(int total);
    void UnitStarted(int index, string key);
    void UnitCompleted(CompletedUnit unit);
    /// <summary>Results so far (for GET while the job runs); the final results are returned by the suite.</summary>
    void PartialResults(JsonObject results);
}

/// <summary>A ledger in memory: nothing survives the process (the eval verb).</summary>
public sealed class MemoryLedger : IEvalLedger
{
    private readonly Dictionary<int, CompletedUnit> _done = [];
    public IReadOnlyDictionary<int, CompletedUnit> CompletedUnits => _done;
    public int Total { get; private set; }
    public long Tokens { get; private set; }
    public int Started { get; private set; }
    public Action<MemoryLedger>? OnProgress { get; init; }
    public void SetTotal(int total) => Total = total;
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

    /// <summary>
    /// A unit of work: its stored result when an earlier run completed it (nothing is recomputed),
    /// else computed now and recorded before the next unit starts. The key names what the unit is
    /// (window, document, trial...): a stored unit whose key differs means the inputs changed, and the
    /// job fails rather than mixing results.
    /// </summary>
    public JsonNode Unit(int index, string key, Func<UnitOutcome> compute)
    {
        if (Ledger.CompletedUnits.TryGetValue(index, out var done))
        {
            if (done.Key != key)
                throw new EvalFailedException($"unit {index} was recorded as '{done.Key}' but is now '{key}': the dataset or parameters changed since the job started");
            return done.Result;
        }
        WaitTurn();
        Ledger.UnitStarted(index, key);
        var clock = Stopwatch.StartNew();
        var outcome = compute();
        Ledger.UnitCompleted(new CompletedUnit(index, key, outcome.Result, outcome.Tokens, clock.Elapsed.TotalSeconds));
        return outcome.Result;
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
