using System.Text.Json.Nodes;
using Microsoft.Data.Sqlite;
using PiServe.Eval.Suites;

namespace PiServe.Eval.Jobs;

/// <summary>
/// The embedded store: jobs, their completed units, unit claims and registered model variants in one
/// SQLite file (WAL journal). Every unit is committed with the job's counters in one transaction as
/// soon as it completes, so a host killed mid-job loses at most the unit in flight. Each unit start is
/// logged too (eval_unit_starts), which shows whether any unit was ever computed twice. One host owns
/// the file: claims are kept for the same code path as PostgreSQL's, and released at start.
/// </summary>
public sealed class SqliteEvalStore : IEvalStore
{
    public const string FileName = "evals.db";
    private readonly string _connectionString;
    private readonly object _write = new();

    /// <summary>Schema versions in order; each applied once, in a transaction, and recorded in schema_migrations.</summary>
    private static readonly string[] Migrations =
    [
        """
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
        """,
        // Claims and leases (times in Unix milliseconds), and which host started a unit.
        """
        ALTER TABLE eval_jobs ADD COLUMN lease_expires INTEGER;
        CREATE TABLE eval_unit_claims (
          job_id TEXT NOT NULL, unit INTEGER NOT NULL, key TEXT NOT NULL, owner TEXT, lease_expires INTEGER,
          PRIMARY KEY (job_id, unit));
        ALTER TABLE eval_unit_starts ADD COLUMN owner TEXT;
        """,
    ];

    public SqliteEvalStore(string path)
    {
        Path = System.IO.Path.GetFullPath(path);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(Path)!);
        _connectionString = new SqliteConnectionStringBuilder { DataSource = Path, Pooling = true }.ToString();
        EnsureSchema();
    }

    public string Path { get; }
    public string Description => "sqlite " + Path;
    public bool Shared => false;

    public static long Now() => DateTimeOffset.UtcNow.ToUnixTimeSeconds();
    private static long NowMs() => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();

    public void EnsureSchema()
    {
        lock (_write)
        {
            using var c = Open();
            Exec(c, "PRAGMA journal_mode=WAL;");
            Exec(c, "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);");
            // Stores made before schema_migrations existed already have version 1's tables (it is idempotent).
            long applied;
            using (var cmd = Command(c, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations", null, []))
                applied = (long)cmd.ExecuteScalar()!;
            for (int v = (int)applied + 1; v <= Migrations.Length; v++)
            {
                using var tx = c.BeginTransaction();
                Exec(c, Migrations[v - 1], tx);
                Exec(c, "INSERT INTO schema_migrations (version, applied_at) VALUES ($v, $now)", tx, ("$v", v), ("$now", Now()));
                tx.Commit();
            }
        }
    }

    public void Dispose() { }

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

    private List<T> Query<T>(string sql, Func<SqliteDataReader, T> read, params (string, object?)[] args)
    {
        using var c = Open();
        using var cmd = Command(c, sql, null, args);
        using var r = cmd.ExecuteReader();
        var list = new List<T>();
        while (r.Read()) list.Add(read(r));
        return list;
    }

    public void Insert(EvalJob job) => Write("""
        INSERT INTO eval_jobs (id, kind, model, dataset, state, error, created_at, started_at, finished_at, parameters, rope_scaling, results)
        VALUES ($id, $kind, $model, $dataset, $state, $error, $created, $started, $finished, $parameters, $rope, $results)
        """, ("$id", job.Id), ("$kind", job.Kind), ("$model", job.Model), ("$dataset", job.Dataset), ("$state", job.State),
        ("$error", job.Error), ("$created", job.CreatedAt), ("$started", job.StartedAt), ("$finished", job.FinishedAt),
        ("$parameters", job.Parameters.ToJsonString()), ("$rope", job.RopeScaling?.ToJsonString()), ("$results", job.Results?.ToJsonString()));

    public EvalJob? Get(string id) => Query($"SELECT {EvalJobRows.Columns} FROM eval_jobs WHERE id = $id", EvalJobRows.Read, ("$id", id)).FirstOrDefault();

    public List<EvalJob> List(string? state = null, string? model = null) => Query($"""
        SELECT {EvalJobRows.Columns} FROM eval_jobs
        WHERE ($state IS NULL OR state = $state) AND ($model IS NULL OR model = $model) ORDER BY seq
        """, EvalJobRows.Read, ("$state", state), ("$model", model));

    public Dictionary<string, long> CountByState() =>
        EvalJobRows.CountsByState(Query("SELECT state, COUNT(*) FROM eval_jobs GROUP BY state", r => (r.GetString(0), r.GetInt64(1))));

    public bool Transition(string id, string[] from, string to, string? error = null, JsonObject? results = null)
    {
        var args = new List<(string, object?)> { ("$id", id), ("$to", to), ("$error", error), ("$now", Now()) };
        string states = string.Join(", ", from.Select((s, i) => { args.Add(($"$f{i}", s)); return $"$f{i}"; }));
        string set = "state = $to, error = COALESCE($error, error)";
        if (to == EvalStates.Running) set += ", started_at = COALESCE(started_at, $now)";
        if (EvalStates.IsTerminal(to)) set += ", finished_at = $now, lease_expires = NULL";
        if (results is not null) { set += ", results = $results"; args.Add(("$results", results.ToJsonString())); }
        return Write($"UPDATE eval_jobs SET {set} WHERE id = $id AND state IN ({states})", [.. args]) == 1;
    }

    public void SetTotal(string id, int total) => Write("UPDATE eval_jobs SET total = $total WHERE id = $id", ("$id", id), ("$total", total));

    public void SetPartialResults(string id, JsonObject results) =>
        Write("UPDATE eval_jobs SET results = $results WHERE id = $id AND state = 'running'", ("$id", id), ("$results", results.ToJsonString()));

    public void UnitStarted(string id, int unit, string key, string owner) =>
        Write("INSERT INTO eval_unit_starts (job_id, unit, key, started_at, pid, owner) VALUES ($id, $unit, $key, $now, $pid, $owner)",
            ("$id", id), ("$unit", unit), ("$key", key), ("$now", Now()), ("$pid", Environment.ProcessId), ("$owner", owner));

    public bool UnitCompleted(string id, CompletedUnit unit)
    {
        lock (_write)
        {
            using var c = Open();
            using var tx = c.BeginTransaction();
            using var insert = Command(c, """
                INSERT OR IGNORE INTO eval_units (job_id, unit, key, result, tokens, seconds, completed_at)
                VALUES ($id, $unit, $key, $result, $tokens, $seconds, $now)
                """, tx, [("$id", id), ("$unit", unit.Index), ("$key", unit.Key), ("$result", unit.Result.ToJsonString()),
                ("$tokens", unit.Tokens), ("$seconds", unit.Seconds), ("$now", Now())]);
            if (insert.ExecuteNonQuery() == 0) return false;
            Exec(c, """
                UPDATE eval_jobs SET done = done + 1, tokens_scored = tokens_scored + $tokens, run_seconds = run_seconds + $seconds
                WHERE id = $id
                """, tx, ("$id", id), ("$tokens", unit.Tokens), ("$seconds", unit.Seconds));
            Exec(c, "UPDATE eval_unit_claims SET owner = NULL, lease_expires = NULL WHERE job_id = $id AND unit = $unit", tx,
                ("$id", id), ("$unit", unit.Index));
            tx.Commit();
            return true;
        }
    }

    public Dictionary<int, CompletedUnit> CompletedUnits(string id, IReadOnlyCollection<int>? only = null)
    {
        var units = new Dictionary<int, CompletedUnit>();
        var wanted = only is null ? null : new HashSet<int>(only);
        foreach (var u in Query("SELECT unit, key, result, tokens, seconds FROM eval_units WHERE job_id = $id",
                     r => (Index: r.GetInt32(0), Key: r.GetString(1), Json: r.GetString(2), Tokens: r.GetInt64(3), Seconds: r.GetDouble(4)), ("$id", id)))
        {
            if (wanted is null || wanted.Contains(u.Index))
                units[u.Index] = new CompletedUnit(u.Index, u.Key, JsonNode.Parse(u.Json)!, u.Tokens, u.Seconds);
        }
        return units;
    }

    public Dictionary<int, int> UnitStartCounts(string id) =>
        Query("SELECT unit, COUNT(*) FROM eval_unit_starts WHERE job_id = $id GROUP BY unit", r => (r.GetInt32(0), r.GetInt32(1)), ("$id", id))
            .ToDictionary(x => x.Item1, x => x.Item2);

    public void PlanUnits(string id, IReadOnlyList<(int Index, string Key)> units)
    {
        lock (_write)
        {
            using var c = Open();
            using var tx = c.BeginTransaction();
            foreach (var (index, key) in units)
                Exec(c, "INSERT OR IGNORE INTO eval_unit_claims (job_id, unit, key) VALUES ($id, $unit, $key)", tx,
                    ("$id", id), ("$unit", index), ("$key", key));
            tx.Commit();
        }
    }

    public int? ClaimUnit(string id, IReadOnlyList<int> candidates, string owner, TimeSpan lease)
    {
        if (candidates.Count == 0) return null;
        lock (_write)
        {
            using var c = Open();
            using var tx = c.BeginTransaction();
            long now = NowMs();
            using var pick = Command(c, $"""
                SELECT c.unit FROM eval_unit_claims c
                WHERE c.job_id = $id AND c.unit IN ({string.Join(",", candidates)})
                  AND (c.owner IS NULL OR c.lease_expires < $now)
                  AND NOT EXISTS (SELECT 1 FROM eval_units u WHERE u.job_id = c.job_id AND u.unit = c.unit)
                  AND EXISTS (SELECT 1 FROM eval_jobs j WHERE j.id = c.job_id AND j.state = 'running')
                ORDER BY c.unit LIMIT 1
                """, tx, [("$id", id), ("$now", now)]);
            if (pick.ExecuteScalar() is not long unit) return null;
            Exec(c, "UPDATE eval_unit_claims SET owner = $owner, lease_expires = $expires WHERE job_id = $id AND unit = $unit", tx,
                ("$owner", owner), ("$expires", now + (long)lease.TotalMilliseconds), ("$id", id), ("$unit", unit));
            tx.Commit();
            return (int)unit;
        }
    }

    public Dictionary<string, string> Heartbeat(string owner, IReadOnlyCollection<string> jobs, TimeSpan lease)
    {
        long expires = NowMs() + (long)lease.TotalMilliseconds;
        var states = new Dictionary<string, string>(StringComparer.Ordinal);
        lock (_write)
        {
            using var c = Open();
            using var tx = c.BeginTransaction();
            Exec(c, "UPDATE eval_unit_claims SET lease_expires = $expires WHERE owner = $owner", tx, ("$expires", expires), ("$owner", owner));
            foreach (var job in jobs)
            {
                Exec(c, "UPDATE eval_jobs SET lease_expires = $expires WHERE id = $id AND state IN ('queued', 'running')", tx,
                    ("$expires", expires), ("$id", job));
                using var cmd = Command(c, "SELECT state FROM eval_jobs WHERE id = $id", tx, [("$id", job)]);
                if (cmd.ExecuteScalar() is string state) states[job] = state;
            }
            tx.Commit();
        }
        return states;
    }

    public string? NextRunnableJob(IReadOnlyCollection<string> exclude)
    {
        var excluded = new HashSet<string>(exclude, StringComparer.Ordinal);
        var candidates = Query("""
            SELECT j.id FROM eval_jobs j
            WHERE j.state = 'queued' OR (j.state = 'running' AND (j.lease_expires IS NULL OR j.lease_expires < $now OR EXISTS (
                SELECT 1 FROM eval_unit_claims c WHERE c.job_id = j.id AND (c.owner IS NULL OR c.lease_expires < $now)
                  AND NOT EXISTS (SELECT 1 FROM eval_units u WHERE u.job_id = c.job_id AND u.unit = c.unit))))
            ORDER BY (j.state = 'running') DESC, j.seq
            """, r => r.GetString(0), ("$now", NowMs()));
        return candidates.FirstOrDefault(id => !excluded.Contains(id));
    }

    public void ReleaseAll()
    {
        lock (_write)
        {
            using var c = Open();
            using var tx = c.BeginTransaction();
            Exec(c, "UPDATE eval_unit_claims SET owner = NULL, lease_expires = NULL", tx);
            Exec(c, "UPDATE eval_jobs SET lease_expires = NULL", tx);
            tx.Commit();
        }
    }

    public void SaveVariant(EvalVariant v) => Write("""
        INSERT OR REPLACE INTO model_variants (id, base_model, rope_scaling, context_window, job_id, created_at)
        VALUES ($id, $base, $rope, $window, $job, $now)
        """, ("$id", v.Id), ("$base", v.BaseModel), ("$rope", v.RopeScaling.ToJsonString()), ("$window", v.ContextWindow),
        ("$job", v.JobId), ("$now", Now()));

    public void DeleteVariant(string id) => Write("DELETE FROM model_variants WHERE id = $id", ("$id", id));

    public List<EvalVariant> Variants() => Query("SELECT id, base_model, rope_scaling, context_window, job_id FROM model_variants ORDER BY created_at, id",
        r => new EvalVariant(r.GetString(0), r.GetString(1), JsonNode.Parse(r.GetString(2))!.AsObject(),
            r.IsDBNull(3) ? null : r.GetInt32(3), r.IsDBNull(4) ? null : r.GetString(4)));
}
