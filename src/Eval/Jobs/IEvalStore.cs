using System.Text.Json.Nodes;
using PiServe.Eval.Suites;

namespace PiServe.Eval.Jobs;

/// <summary>
/// Where evaluation jobs live: jobs, their completed units, the unit-start log, unit claims and
/// registered model variants. Two implementations share one set of concepts:
/// <see cref="SqliteEvalStore"/> (embedded, one host, the zero-configuration default) and
/// <see cref="PostgresEvalStore"/> (shared by several hosts, <c>PiServe:JobStore:Kind = postgres</c>).
/// <para>
/// Units are claimed before they are computed: a claim is a lease owned by one runner (a host) that
/// its heartbeat extends; a host that dies stops extending it, and once it expires any host may claim
/// the unit. A completed unit is never claimed again. Lease times are the database's own clock
/// (PostgreSQL's now()), so hosts' clocks need not agree.
/// </para>
/// Methods throw <see cref="EvalStoreUnavailableException"/> when the database cannot be reached; the
/// runner retries those with backoff, the HTTP endpoints answer 503.
/// </summary>
public interface IEvalStore : IDisposable
{
    /// <summary>"sqlite /path/evals.db" or "postgres host:port/database" (no password).</summary>
    string Description { get; }

    /// <summary>Whether a runner on another host may share this store (PostgreSQL: yes; SQLite: one host).</summary>
    bool Shared { get; }

    /// <summary>Creates or migrates the schema. Idempotent; several hosts may call it at once.</summary>
    void EnsureSchema();

    void Insert(EvalJob job);
    EvalJob? Get(string id);
    /// <summary>Jobs in submission order, optionally of one state and/or model.</summary>
    List<EvalJob> List(string? state = null, string? model = null);
    /// <summary>Jobs per state (every state present, zero where none).</summary>
    Dictionary<string, long> CountByState();

    /// <summary>
    /// Moves a job to <paramref name="to"/> only if it is in one of <paramref name="from"/> (so a
    /// cancelled job is never marked succeeded by a worker finishing its last unit). Returns whether it moved.
    /// </summary>
    bool Transition(string id, string[] from, string to, string? error = null, JsonObject? results = null);
    void SetTotal(string id, int total);
    /// <summary>Results so far, kept only while the job runs (a finished job's results are final).</summary>
    void SetPartialResults(string id, JsonObject results);

    /// <summary>Completed units of a job, by index (all of them, or only those in <paramref name="only"/>).</summary>
    Dictionary<int, CompletedUnit> CompletedUnits(string id, IReadOnlyCollection<int>? only = null);
    /// <summary>How many times each unit of a job was started (a unit cut off by a crash counts once per attempt).</summary>
    Dictionary<int, int> UnitStartCounts(string id);

    /// <summary>Announces units a run is about to work through, so runners on other hosts can claim them too.</summary>
    void PlanUnits(string id, IReadOnlyList<(int Index, string Key)> units);
    /// <summary>
    /// Claims the lowest-numbered unit of <paramref name="candidates"/> that is neither completed nor
    /// held under a live lease (FOR UPDATE SKIP LOCKED on PostgreSQL), for <paramref name="owner"/>;
    /// null when none is free or the job is no longer running (a cancel from any host stops new claims at once).
    /// </summary>
    int? ClaimUnit(string id, IReadOnlyList<int> candidates, string owner, TimeSpan lease);
    void UnitStarted(string id, int unit, string key, string owner);
    /// <summary>
    /// Records a completed unit and advances the job's counters in one transaction; a unit already
    /// recorded (computed twice after a lease expired) is left as it was. Returns whether it was recorded now.
    /// </summary>
    bool UnitCompleted(string id, CompletedUnit unit);

    /// <summary>
    /// Extends the leases of <paramref name="owner"/>'s claims and of the jobs it runs, and returns those
    /// jobs' states (a job cancelled from another host shows as cancelled here).
    /// </summary>
    Dictionary<string, string> Heartbeat(string owner, IReadOnlyCollection<string> jobs, TimeSpan lease);
    /// <summary>
    /// The next job with work for a runner that does not run it yet (<paramref name="exclude"/>): a running
    /// job nobody heartbeats or with a free unit (oldest first), else the oldest queued job; null when none.
    /// </summary>
    string? NextRunnableJob(IReadOnlyCollection<string> exclude);
    /// <summary>Forgets every claim and job lease (SQLite at start: one host owns the file, so no one else holds them).</summary>
    void ReleaseAll();

    void SaveVariant(EvalVariant variant);
    /// <summary>Forgets a variant, so it is not restored at the next start (and other hosts drop it).</summary>
    void DeleteVariant(string id);
    List<EvalVariant> Variants();
}

/// <summary>The eval_jobs columns both stores select, and the row read back as an <see cref="EvalJob"/>.</summary>
internal static class EvalJobRows
{
    public const string Columns = "id, kind, model, dataset, state, error, created_at, started_at, finished_at, parameters, rope_scaling, results, done, total, tokens_scored, run_seconds";

    /// <summary>Jobs per state from (state, count) rows: every state present, zero where none.</summary>
    public static Dictionary<string, long> CountsByState(IEnumerable<(string State, long Count)> rows)
    {
        var counts = EvalStates.All.ToDictionary(s => s, _ => 0L);
        foreach (var (state, n) in rows) counts[state] = n;
        return counts;
    }

    public static EvalJob Read(System.Data.Common.DbDataReader r) => new()
    {
        Id = r.GetString(0), Kind = r.GetString(1), Model = r.GetString(2), Dataset = r.IsDBNull(3) ? null : r.GetString(3),
        State = r.GetString(4), Error = r.IsDBNull(5) ? null : r.GetString(5), CreatedAt = r.GetInt64(6),
        StartedAt = r.IsDBNull(7) ? null : r.GetInt64(7), FinishedAt = r.IsDBNull(8) ? null : r.GetInt64(8),
        Parameters = JsonNode.Parse(r.GetString(9))!.AsObject(),
        RopeScaling = r.IsDBNull(10) ? null : JsonNode.Parse(r.GetString(10))!.AsObject(),
        Results = r.IsDBNull(11) ? null : JsonNode.Parse(r.GetString(11))!.AsObject(),
        Done = r.GetInt32(12), Total = r.GetInt32(13), TokensScored = r.GetInt64(14), RunSeconds = r.GetDouble(15),
    };
}

/// <summary>A model variant registered through the API or by a LongRoPE search job.</summary>
public sealed record EvalVariant(string Id, string BaseModel, JsonObject RopeScaling, int? ContextWindow, string? JobId);

/// <summary>
/// The job store's database cannot be reached (or went away mid-call). <see cref="Exception.Message"/>
/// names the store (host, port, database: for the log); <see cref="Reason"/> says what went wrong without
/// them (for /health/ready, which is open without a key).
/// </summary>
public sealed class EvalStoreUnavailableException(string message, Exception? inner = null, string? reason = null) : Exception(message, inner)
{
    public string Reason { get; } = reason ?? message;
}
