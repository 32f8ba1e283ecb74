using System.Text.Json.Nodes;

namespace PiServe.Eval.Jobs;

public static class EvalStates
{
    public const string Queued = "queued", Running = "running", Succeeded = "succeeded", Failed = "failed", Cancelled = "cancelled";
    public static readonly string[] All = [Queued, Running, Succeeded, Failed, Cancelled];
    public static bool IsTerminal(string state) => state is Succeeded or Failed or Cancelled;
}

/// <summary>A request for an evaluation job (POST /v1/evals, snake_case).</summary>
public sealed record EvalRequest(string? Kind, string? Model, string? Dataset, JsonObject? Parameters, JsonObject? RopeScaling);

/// <summary>
/// A job as stored: identity, state, timestamps (Unix seconds), normalized parameters, progress
/// counters (units done / total, tokens scored, compute seconds over all runs) and results (partial while running).
/// </summary>
public sealed record EvalJob
{
    public required string Id { get; init; }
    public required string Kind { get; init; }
    public required string Model { get; init; }
    public string? Dataset { get; init; }
    public required string State { get; init; }
    public string? Error { get; init; }
    public long CreatedAt { get; init; }
    public long? StartedAt { get; init; }
    public long? FinishedAt { get; init; }
    public required JsonObject Parameters { get; init; }
    public JsonObject? RopeScaling { get; init; }
    public JsonObject? Results { get; init; }
    public int Done { get; init; }
    public int Total { get; init; }
    public long TokensScored { get; init; }
    /// <summary>Seconds spent computing units, over every run of the job.</summary>
    public double RunSeconds { get; init; }

    public double? TokensPerSecond => RunSeconds > 0 ? TokensScored / RunSeconds : null;

    /// <summary>Remaining units × mean seconds per unit so far; null before the first unit or once finished.</summary>
    public double? EtaSeconds => State is EvalStates.Queued or EvalStates.Running && Done > 0 && Total >= Done
        ? (Total - Done) * RunSeconds / Done : null;

    /// <summary>The job in the API's JSON (DESIGN.md): results omitted when <paramref name="includeResults"/> is false.</summary>
    public JsonObject ToJson(bool includeResults = true)
    {
        var o = new JsonObject
        {
            ["id"] = Id, ["kind"] = Kind, ["model"] = Model, ["dataset"] = Dataset, ["state"] = State,
        };
        if (Error is not null) o["error"] = Error;
        o["created_at"] = CreatedAt;
        o["started_at"] = StartedAt;
        o["finished_at"] = FinishedAt;
        o["progress"] = new JsonObject
        {
            ["done"] = Done, ["total"] = Total, ["tokens_scored"] = TokensScored,
            ["tokens_per_second"] = TokensPerSecond is { } tps ? Math.Round(tps, 3) : null,
            ["eta_seconds"] = EtaSeconds is { } eta ? Math.Round(eta, 3) : null,
        };
        o["parameters"] = Parameters.DeepClone();
        if (RopeScaling is not null) o["rope_scaling"] = RopeScaling.DeepClone();
        if (includeResults && Results is not null) o["results"] = Results.DeepClone();
        return o;
    }
}

/// <summary>
/// What the job runner reports; the host wires it to metrics (piserve_eval_jobs{state},
/// piserve_eval_tokens_scored_total) and to the SignalR hub. Implementations must be quick and must not throw.
/// </summary>
public interface IEvalObserver
{
    /// <summary>
    /// A job entered <paramref name="to"/>. <paramref name="from"/> is null when the job is new to this process:
    /// just submitted, or found in the store at start-up (every stored job is reported once then, so
    /// a gauge of jobs per state starts right).
    /// </summary>
    void JobStateChanged(EvalJob job, string? from, string to);

    /// <summary>A unit finished, having scored (or, for generation kinds, processed) this many tokens.</summary>
    void TokensScored(EvalJob job, long tokens);

    /// <summary>Progress of a running job (throttled: a few per second per job, and at every state change).</summary>
    void Progress(EvalJob job) { }
}
