using System.Text.Json.Nodes;
using Microsoft.Data.Sqlite;
using PiServe.Eval.Suites;

namespace PiServe.Eval.Jobs;

/// <summary>
/// Jobs, their completed units and registered model variants in one SQLite file (WAL journal). Every
/// unit is committed with the job's counters in one transaction as soon as it completes, so a host
/// killed mid-job loses at most the unit in flight. Each unit start is logged too (eval_unit_starts),
/// which shows whether any unit was ever computed twice.
/// </summary>
public sealed class SqliteEvalStore
{
    public const string FileName = "evals.db";
    private readonly string _connectionString;
    private readonly object _write = new();

    public SqliteEvalStore(string path)
    {
        Path = System.IO.Path.GetFullPath(path);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(Path)!);
        _connectionString = new SqliteConnectionStringBuilder { DataSource = Path, Pooling = true }.ToString();
        using var c = Open();
        Exec(c, "PRAGMA journal_mode=WAL;");
        Exec(c, """
            CREATE TABLE IF NOT EXISTS eval_jobs (
              seq INTEGER PRIMARY KEY AUTOINCREMENT,
              id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, model TEXT NOT NULL, dataset TEXT,
              state TEXT NOT NULL, error TEXT,
              created_at INTEGER NOT NULL, started_at INTEGER, finished_at INTEGER,
              parameters TEXT NOT NULL, rope_scaling TEXT, results TEXT,
              done INTEGER NOT NULL DEFAULT 0, total INTEGER NOT NULL DEFAULT 0,
              tokens_scored INTEGER NOT NULL DEFAULT 0, run_seconds REAL NOT NULL DEFAULT 0);
            CREATE INDEX IF NOT EXISTS eval_jobs_state ON eval_jobs(state);
            CREATE TABLE IF NOT EXISTS eval_units (
              job_id TEXT NOT NULL, unit INTEGER NOT NULL, key TEXT NOT NULL, result TEXT NOT NULL,
              tokens INTEGER NOT NULL, seconds REAL NOT NULL, completed_at INTEGER NOT NULL,
              PRIMARY KEY (job_id, unit));
            CREATE TABLE IF NOT EXISTS eval_unit_starts (
              job_id TEXT NOT NULL, unit INTEGER NOT NULL, key TEXT NOT NULL, started_at INTEGER NOT NULL, pid INTEGER NOT NULL);
            CREATE INDEX IF NOT EXISTS eval_unit_starts_job ON eval_unit_starts(job_id);
            CREATE TABLE IF NOT EXISTS model_variants (
              id TEXT PRIMARY KEY, base_model TEXT NOT NULL, rope_scaling TEXT NOT NULL, context_window INTEGER,
              job_id TEXT, created_at INTEGER NOT NULL);
            """);
    }

    public string Path { get; }

    public static long Now() => DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    private SqliteConnection Open()
    {
        var c = new SqliteConnection(_connectionString);
        c.Open();
        Exec(c, "PRAGMA busy_timeout=10000; PRAGMA synchronous=NORMAL;");
        return c;
    }

    private static void Exec(SqliteConnection c, string sql, SqliteTransaction? tx = null, params (string, object?)[] args)
    {
        using var cmd = Command(c, sql, tx, args);
        cmd.ExecuteNonQuery();
    }

    private static SqliteCommand Command(SqliteConnection c, string sql, SqliteTransaction? tx, (string, object?)[] args)
    {
        var cmd = c.CreateCommand();
        cmd.CommandText = sql;
        cmd.Transaction = tx;
        foreach (var (name, value) in args) cmd.Parameters.AddWithValue(name, value ?? DBNull.Value);
        return cmd;
    }

    private int Write(string sql, params (string, object?)[] args)
    {
        lock (_write)
        {
            using var c = Open();
            using var cmd = Command(c, sql, null, args);
            return cmd.ExecuteNonQuery();
        }
    }

    public void Insert(EvalJob job) => Write("""
        INSERT INTO eval_jobs (id, kind, model, dataset, state, error, created_at, started_at, finished_at, parameters, rope_scaling, results)
        VALUES ($id, $kind, $model, $dataset, $state, $error, $created, $started, $finished, $parameters, $rope, $results)
        """, ("$id", job.Id), ("$kind", job.Kind), ("$model", job.Model), ("$dataset", job.Dataset), ("$state", job.State),
        ("$error", job.Error), ("$created", job.CreatedAt), ("$started", job.StartedAt), ("$finished", job.FinishedAt),
        ("$parameters", job.Parameters.ToJsonString()), ("$rope", job.RopeScaling?.ToJsonString()), ("$results", job.Results?.ToJsonString()));

    private const string Columns = "id, kind, model, dataset, state, error, created_at, started_at, finished_at, parameters, rope_scaling, results, done, total, tokens_scored, run_seconds";

    private static EvalJob Read(SqliteDataReader r) => new()
    {
        Id = r.GetString(0), Kind = r.GetString(1), Model = r.GetString(2), Dataset = r.IsDBNull(3) ? null : r.GetString(3),
        State = r.GetString(4), Error = r.IsDBNull(5) ? null : r.GetString(5), CreatedAt = r.GetInt64(6),
        StartedAt = r.IsDBNull(7) ? null : r.GetInt64(7), FinishedAt = r.IsDBNull(8) ? null : r.GetInt64(8),
        Parameters = JsonNode.Parse(r.GetString(9))!.AsObject(),
        RopeScaling = r.IsDBNull(10) ? null : JsonNode.Parse(r.GetString(10))!.AsObject(),
        Results = r.IsDBNull(11) ? null : JsonNode.Parse(r.GetString(11))!.AsObject(),
        Done = r.GetInt32(12), Total = r.GetInt32(13), TokensScored = r.GetInt64(14), RunSeconds = r.GetDouble(15),
    };

    public EvalJob? Get(string id)
    {
        using var c = Open();
        using var cmd = Command(c, $"SELECT {Columns} FROM eval_jobs WHERE id = $id", null, [("$id", id)]);
        using var r = cmd.ExecuteReader();
        return r.Read() ? Read(r) : null;
    }

    /// <summary>Jobs in submission order, optionally of one state and/or model.</summary>
    public List<EvalJob> List(string? state = null, string? model = null)
    {
        using var c = Open();
        using var cmd = Command(c, $"""
            SELECT {Columns} FROM eval_jobs
            WHERE ($state IS NULL OR state = $state) AND ($model IS NULL OR model = $model) ORDER BY seq
            """, null, [("$state", state), ("$model", model)]);
        using var r = cmd.ExecuteReader();
        var jobs = new List<EvalJob>();
        while (r.Read()) jobs.Add(Read(r));
        return jobs;
    }

    /// <summary>
    /// Moves a job to <paramref name="to"/> only if it is in one of <paramref name="from"/> (so a
    /// cancelled job is never marked succeeded by a worker finishing its last unit). Returns whether it moved.
    /// </summary>
    public bool Transition(string id, string[] from, string to, string? error = null, JsonObject? results = null)
    {
        var args = new List<(string, object?)> { ("$id", id), ("$to", to), ("$error", error), ("$now", Now()) };
        string states = string.Join(", ", from.Select((s, i) => { args.Add(($"$f{i}", s)); return $"$f{i}"; }));
        string set = "state = $to, error = COALESCE($error, error)";
        if (to == EvalStates.Running) set += ", started_at = COALESCE(started_at, $now)";
        if (EvalStates.IsTerminal(to)) set += ", finished_at = $now";
        if (results is not null) { set += ", results = $results"; args.Add(("$results", results.ToJsonString())); }
        return Write($"UPDATE eval_jobs SET {set} WHERE id = $id AND state IN ({states})", [.. args]) == 1;
    }

    public void SetTotal(string id, int total) => Write("UPDATE eval_jobs SET total = $total WHERE id = $id", ("$id", id), ("$total", total));

    /// <summary>Results so far, kept only while the job runs (a finished job's results are final).</summary>
    public void SetPartialResults(string id, JsonObject results) =>
        Write("UPDATE eval_jobs SET results = $results WHERE id = $id AND state = 'running'", ("$id", id), ("$results", results.ToJsonString()));

    public void UnitStarted(string id, int unit, string key) =>
        Write("INSERT INTO eval_unit_starts (job_id, unit, key, started_at, pid) VALUES ($id, $unit, $key, $now, $pid)",
            ("$id", id), ("$unit", unit), ("$key", key), ("$now", Now()), ("$pid", Environment.ProcessId));

    /// <summary>Records a completed unit and advances the job's counters, in one transaction.</summary>
    public void UnitCompleted(string id, CompletedUnit unit)
    {
        lock (_write)
        {
            using var c = Open();
            using var tx = c.BeginTransaction();
            Exec(c, """
                INSERT INTO eval_units (job_id, unit, key, result, tokens, seconds, completed_at)
                VALUES ($id, $unit, $key, $result, $tokens, $seconds, $now)
                """, tx, ("$id", id), ("$unit", unit.Index), ("$key", unit.Key), ("$result", unit.Result.ToJsonString()),
                ("$tokens", unit.Tokens), ("$seconds", unit.Seconds), ("$now", Now()));
            Exec(c, """
                UPDATE eval_jobs SET done = done + 1, tokens_scored = tokens_scored + $tokens, run_seconds = run_seconds + $seconds
                WHERE id = $id
                """, tx, ("$id", id), ("$tokens", unit.Tokens), ("$seconds", unit.Seconds));
            tx.Commit();
        }
    }

    public Dictionary<int, CompletedUnit> CompletedUnits(string id)
    {
        using var c = Open();
        using var cmd = Command(c, "SELECT unit, key, result, tokens, seconds FROM eval_units WHERE job_id = $id", null, [("$id", id)]);
        using var r = cmd.ExecuteReader();
        var units = new Dictionary<int, CompletedUnit>();
        while (r.Read())
            units[r.GetInt32(0)] = new CompletedUnit(r.GetInt32(0), r.GetString(1), JsonNode.Parse(r.GetString(2))!, r.GetInt64(3), r.GetDouble(4));
        return units;
    }

    /// <summary>How many times each unit of a job was started (a unit cut off by a crash counts once per attempt).</summary>
    public Dictionary<int, int> UnitStartCounts(string id)
    {
        using var c = Open();
        using var cmd = Command(c, "SELECT unit, COUNT(*) FROM eval_unit_starts WHERE job_id = $id GROUP BY unit", null, [("$id", id)]);
        using var r = cmd.ExecuteReader();
        var counts = new Dictionary<int, int>();
        while (r.Read()) counts[r.GetInt32(0)] = r.GetInt32(1);
        return counts;
    }

    public sealed record Variant(string Id, string BaseModel, JsonObject RopeScaling, int? ContextWindow, string? JobId);

    public void SaveVariant(Variant v) => Write("""
        INSERT OR REPLACE INTO model_variants (id, base_model, rope_scaling, context_window, job_id, created_at)
        VALUES ($id, $base, $rope, $window, $job, $now)
        """, ("$id", v.Id), ("$base", v.BaseModel), ("$rope", v.RopeScaling.ToJsonString()), ("$window", v.ContextWindow),
        ("$job", v.JobId), ("$now", Now()));

    /// <summary>Forgets a variant, so it is not restored at the next start.</summary>
    public void DeleteVariant(string id) => Write("DELETE FROM model_variants WHERE id = $id", ("$id", id));

    public List<Variant> Variants()
    {
        using var c = Open();
        using var cmd = Command(c, "SELECT id, base_model, rope_scaling, context_window, job_id FROM model_variants ORDER BY created_at, id", null, []);
        using var r = cmd.ExecuteReader();
        var list = new List<Variant>();
        while (r.Read())
            list.Add(new Variant(r.GetString(0), r.GetString(1), JsonNode.Parse(r.GetString(2))!.AsObject(),
                r.IsDBNull(3) ? null : r.GetInt32(3), r.IsDBNull(4) ? null : r.GetString(4)));
        return list;
    }
}
