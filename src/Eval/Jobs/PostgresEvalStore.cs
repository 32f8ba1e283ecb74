using System.Net.Sockets;
using System.Text.Json.Nodes;
using Npgsql;
using NpgsqlTypes;
using PiServe.Eval.Suites;

namespace PiServe.Eval.Jobs;

/// <summary>
/// The shared store: the same tables as <see cref="SqliteEvalStore"/> in one PostgreSQL database, used
/// by every host of a deployment. Units are claimed with <c>SELECT … FOR UPDATE SKIP LOCKED</c> under a
/// lease measured by the database's clock; results are kept as text (jsonb would reorder their keys).
/// Every write that changes a job's progress, and every variant change, sends a NOTIFY (delivered at
/// commit) on <see cref="JobChannel"/> / <see cref="VariantChannel"/> with the payload
/// "host-id|id", so other hosts push progress to their SignalR clients and pick up variants at once.
/// </summary>
public sealed class PostgresEvalStore : IEvalStore
{
    public const string JobChannel = "piserve_eval", VariantChannel = "piserve_variants";

    private readonly NpgsqlDataSource _source;
    private readonly NpgsqlDataSource _listenSource;
    private readonly string _hostId;

    /// <summary>Migrations in order, each applied once under an advisory lock (several hosts may start together).</summary>
    private static readonly string[] Migrations =
    [
        """
        CREATE TABLE eval_jobs (
          seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
          id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, model TEXT NOT NULL, dataset TEXT,
          state TEXT NOT NULL, error TEXT,
          created_at BIGINT NOT NULL, started_at BIGINT, finished_at BIGINT,
          parameters TEXT NOT NULL, rope_scaling TEXT, results TEXT,
          done INTEGER NOT NULL DEFAULT 0, total INTEGER NOT NULL DEFAULT 0,
          tokens_scored BIGINT NOT NULL DEFAULT 0, run_seconds DOUBLE PRECISION NOT NULL DEFAULT 0,
          lease_expires TIMESTAMPTZ);
        CREATE INDEX eval_jobs_state ON eval_jobs(state);
        CREATE TABLE eval_units (
          job_id TEXT NOT NULL, unit INTEGER NOT NULL, key TEXT NOT NULL, result TEXT NOT NULL,
          tokens BIGINT NOT NULL, seconds DOUBLE PRECISION NOT NULL, completed_at BIGINT NOT NULL,
          PRIMARY KEY (job_id, unit));
        CREATE TABLE eval_unit_starts (
          job_id TEXT NOT NULL, unit INTEGER NOT NULL, key TEXT NOT NULL, started_at BIGINT NOT NULL, pid INTEGER NOT NULL, owner TEXT);
        CREATE INDEX eval_unit_starts_job ON eval_unit_starts(job_id);
        CREATE TABLE eval_unit_claims (
          job_id TEXT NOT NULL, unit INTEGER NOT NULL, key TEXT NOT NULL, owner TEXT, lease_expires TIMESTAMPTZ,
          PRIMARY KEY (job_id, unit));
        CREATE INDEX eval_unit_claims_owner ON eval_unit_claims(owner) WHERE owner IS NOT NULL;
        CREATE TABLE model_variants (
          id TEXT PRIMARY KEY, base_model TEXT NOT NULL, rope_scaling TEXT NOT NULL, context_window INTEGER,
          job_id TEXT, created_at BIGINT NOT NULL);
        """,
    ];

    /// <param name="hostId">This host's id: the owner of its claims and the sender named in its notifications.</param>
    public PostgresEvalStore(string connectionString, string hostId)
    {
        NpgsqlConnectionStringBuilder builder;
        try
        {
            builder = new NpgsqlConnectionStringBuilder(connectionString);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"PiServe:JobStore:ConnectionString is not a valid PostgreSQL connection string: {e.Message}", e);
        }
        if (builder.Timeout == 15) builder.Timeout = 5; // fail over to 503 quickly when the server is away
        ConnectionString = builder.ConnectionString;
        Description = $"postgres {builder.Host}:{builder.Port}/{builder.Database}";
        _source = NpgsqlDataSource.Create(builder);
        // The notification connection is named, so operators (and the tests) can see and cut it in pg_stat_activity.
        _listenSource = NpgsqlDataSource.Create(new NpgsqlConnectionStringBuilder(builder.ConnectionString)
        {
            ApplicationName = ListenApplicationName(hostId), Pooling = false,
        });
        _hostId = hostId;
    }

    public string ConnectionString { get; }
    public string Description { get; }
    public bool Shared => true;

    /// <summary>The application_name of a host's LISTEN connection.</summary>
    public static string ListenApplicationName(string hostId) => ("piserve-listen " + hostId) is var name && name.Length > 63 ? name[..63] : name;

    public void Dispose()
    {
        _listenSource.Dispose();
        _source.Dispose();
    }

    /// <summary>Connection failures, a server shutting down, timeouts: worth retrying; anything else is a bug and propagates.</summary>
    public static bool IsTransient(Exception e) => e switch
    {
        EvalStoreUnavailableException => true,
        PostgresException pg => pg.IsTransient || pg.SqlState.StartsWith("08", StringComparison.Ordinal) || pg.SqlState.StartsWith("57P", StringComparison.Ordinal),
        NpgsqlException => true,
        SocketException or TimeoutException or IOException => true,
        InvalidOperationException when e.InnerException is { } inner => IsTransient(inner),
        _ => false,
    };

    private T Run<T>(Func<NpgsqlConnection, T> work)
    {
        try
        {
            using var c = _source.OpenConnection();
            return work(c);
        }
        catch (Exception e) when (IsTransient(e))
        {
            throw new EvalStoreUnavailableException($"the job store ({Description}) is unavailable: {e.Message}", e, Reason(e));
        }
    }

    /// <summary>The innermost cause ("Connection refused", "the database system is shutting down"), which names no host.</summary>
    private static string Reason(Exception e)
    {
        while (e.InnerException is not null) e = e.InnerException;
        return "the PostgreSQL job store is unavailable: " + e.Message;
    }

    private T InTransaction<T>(Func<NpgsqlConnection, NpgsqlTransaction, T> work) => Run(c =>
    {
        using var tx = c.BeginTransaction();
        var result = work(c, tx);
        tx.Commit();
        return result;
    });

    private static NpgsqlCommand Command(NpgsqlConnection c, string sql, NpgsqlTransaction? tx, params (string, object?)[] args)
    {
        var cmd = new NpgsqlCommand(sql, c, tx);
        foreach (var (name, value) in args) cmd.Parameters.AddWithValue(name, value ?? DBNull.Value);
        return cmd;
    }

    private int Exec(string sql, params (string, object?)[] args) => Run(c =>
    {
        using var cmd = Command(c, sql, null, args);
        return cmd.ExecuteNonQuery();
    });

    private List<T> Query<T>(string sql, Func<NpgsqlDataReader, T> read, params (string, object?)[] args) => Run(c =>
    {
        using var cmd = Command(c, sql, null, args);
        using var r = cmd.ExecuteReader();
        var list = new List<T>();
        while (r.Read()) list.Add(read(r));
        return list;
    });

    private string Payload(string id) => _hostId + "|" + id;

    public void EnsureSchema() => InTransaction((c, tx) =>
    {
        using (var lockCmd = Command(c, "SELECT pg_advisory_xact_lock(7242016)", tx)) lockCmd.ExecuteNonQuery();
        using (var create = Command(c, "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)", tx))
            create.ExecuteNonQuery();
        int applied;
        using (var cmd = Command(c, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations", tx)) applied = Convert.ToInt32(cmd.ExecuteScalar());
        for (int v = applied + 1; v <= Migrations.Length; v++)
        {
            using (var m = Command(c, Migrations[v - 1], tx)) m.ExecuteNonQuery();
            using var record = Command(c, "INSERT INTO schema_migrations (version, applied_at) VALUES (@v, @now)", tx, ("v", v), ("now", SqliteEvalStore.Now()));
            record.ExecuteNonQuery();
        }
        return 0;
    });

    public void Insert(EvalJob job) => Exec("""
        INSERT INTO eval_jobs (id, kind, model, dataset, state, error, created_at, started_at, finished_at, parameters, rope_scaling, results)
        VALUES (@id, @kind, @model, @dataset, @state, @error, @created, @started, @finished, @parameters, @rope, @results);
        SELECT pg_notify(@channel, @payload);
        """, ("id", job.Id), ("kind", job.Kind), ("model", job.Model), ("dataset", job.Dataset), ("state", job.State),
        ("error", job.Error), ("created", job.CreatedAt), ("started", job.StartedAt), ("finished", job.FinishedAt),
        ("parameters", job.Parameters.ToJsonString()), ("rope", job.RopeScaling?.ToJsonString()), ("results", job.Results?.ToJsonString()),
        ("channel", JobChannel), ("payload", Payload(job.Id)));

    public EvalJob? Get(string id) => Query($"SELECT {EvalJobRows.Columns} FROM eval_jobs WHERE id = @id", EvalJobRows.Read, ("id", id)).FirstOrDefault();

    public List<EvalJob> List(string? state = null, string? model = null) => Query($"""
        SELECT {EvalJobRows.Columns} FROM eval_jobs
        WHERE (@state::text IS NULL OR state = @state) AND (@model::text IS NULL OR model = @model) ORDER BY seq
        """, EvalJobRows.Read, ("state", state), ("model", model));

    public Dictionary<string, long> CountByState() =>
        EvalJobRows.CountsByState(Query("SELECT state, COUNT(*) FROM eval_jobs GROUP BY state", r => (r.GetString(0), r.GetInt64(1))));

    public bool Transition(string id, string[] from, string to, string? error = null, JsonObject? results = null)
    {
        string set = "state = @to, error = COALESCE(@error, error)";
        if (to == EvalStates.Running) set += ", started_at = COALESCE(started_at, @now)";
        if (EvalStates.IsTerminal(to)) set += ", finished_at = @now, lease_expires = NULL";
        if (results is not null) set += ", results = @results";
        return InTransaction((c, tx) =>
        {
            using var cmd = Command(c, $"UPDATE eval_jobs SET {set} WHERE id = @id AND state = ANY(@from)", tx,
                ("id", id), ("to", to), ("error", error), ("now", SqliteEvalStore.Now()), ("from", from), ("results", results?.ToJsonString()));
            bool moved = cmd.ExecuteNonQuery() == 1;
            if (moved) Notify(c, tx, JobChannel, id);
            return moved;
        });
    }

    private void Notify(NpgsqlConnection c, NpgsqlTransaction tx, string channel, string id)
    {
        using var cmd = Command(c, "SELECT pg_notify(@channel, @payload)", tx, ("channel", channel), ("payload", Payload(id)));
        cmd.ExecuteNonQuery();
    }

    public void SetTotal(string id, int total) => Exec("UPDATE eval_jobs SET total = @total WHERE id = @id; SELECT pg_notify(@channel, @payload)",
        ("id", id), ("total", total), ("channel", JobChannel), ("payload", Payload(id)));

    public void SetPartialResults(string id, JsonObject results) =>
        Exec("UPDATE eval_jobs SET results = @results WHERE id = @id AND state = 'running'", ("id", id), ("results", results.ToJsonString()));

    public void UnitStarted(string id, int unit, string key, string owner) =>
        Exec("INSERT INTO eval_unit_starts (job_id, unit, key, started_at, pid, owner) VALUES (@id, @unit, @key, @now, @pid, @owner)",
            ("id", id), ("unit", unit), ("key", key), ("now", SqliteEvalStore.Now()), ("pid", Environment.ProcessId), ("owner", owner));

    public bool UnitCompleted(string id, CompletedUnit unit) => InTransaction((c, tx) =>
    {
        using var insert = Command(c, """
            INSERT INTO eval_units (job_id, unit, key, result, tokens, seconds, completed_at)
            VALUES (@id, @unit, @key, @result, @tokens, @seconds, @now) ON CONFLICT DO NOTHING
            """, tx, ("id", id), ("unit", unit.Index), ("key", unit.Key), ("result", unit.Result.ToJsonString()),
            ("tokens", unit.Tokens), ("seconds", unit.Seconds), ("now", SqliteEvalStore.Now()));
        if (insert.ExecuteNonQuery() == 0) return false;
        using var counters = Command(c, """
            UPDATE eval_jobs SET done = done + 1, tokens_scored = tokens_scored + @tokens, run_seconds = run_seconds + @seconds WHERE id = @id;
            UPDATE eval_unit_claims SET owner = NULL, lease_expires = NULL WHERE job_id = @id AND unit = @unit;
            """, tx, ("id", id), ("tokens", unit.Tokens), ("seconds", unit.Seconds), ("unit", unit.Index));
        counters.ExecuteNonQuery();
        Notify(c, tx, JobChannel, id);
        return true;
    });

    public Dictionary<int, CompletedUnit> CompletedUnits(string id, IReadOnlyCollection<int>? only = null) =>
        Query("""
            SELECT unit, key, result, tokens, seconds FROM eval_units
            WHERE job_id = @id AND (@only::integer[] IS NULL OR unit = ANY(@only))
            """, r => new CompletedUnit(r.GetInt32(0), r.GetString(1), JsonNode.Parse(r.GetString(2))!, r.GetInt64(3), r.GetDouble(4)),
            ("id", id), ("only", only?.ToArray()))
        .ToDictionary(u => u.Index);

    public Dictionary<int, int> UnitStartCounts(string id) =>
        Query("SELECT unit, COUNT(*)::integer FROM eval_unit_starts WHERE job_id = @id GROUP BY unit", r => (r.GetInt32(0), r.GetInt32(1)), ("id", id))
            .ToDictionary(x => x.Item1, x => x.Item2);

    public void PlanUnits(string id, IReadOnlyList<(int Index, string Key)> units)
    {
        if (units.Count == 0) return;
        Exec("""
            INSERT INTO eval_unit_claims (job_id, unit, key)
            SELECT @id, u.unit, u.key FROM unnest(@units, @keys) AS u(unit, key)
            ON CONFLICT DO NOTHING
            """, ("id", id), ("units", units.Select(u => u.Index).ToArray()), ("keys", units.Select(u => u.Key).ToArray()));
    }

    public int? ClaimUnit(string id, IReadOnlyList<int> candidates, string owner, TimeSpan lease)
    {
        if (candidates.Count == 0) return null;
        var claimed = Query("""
            WITH next AS (
              SELECT c.job_id, c.unit FROM eval_unit_claims c
              WHERE c.job_id = @id AND c.unit = ANY(@candidates)
                AND (c.owner IS NULL OR c.lease_expires < now())
                AND NOT EXISTS (SELECT 1 FROM eval_units u WHERE u.job_id = c.job_id AND u.unit = c.unit)
                AND EXISTS (SELECT 1 FROM eval_jobs j WHERE j.id = c.job_id AND j.state = 'running')
              ORDER BY c.unit LIMIT 1
              FOR UPDATE SKIP LOCKED)
            UPDATE eval_unit_claims c SET owner = @owner, lease_expires = now() + @lease
            FROM next WHERE c.job_id = next.job_id AND c.unit = next.unit
            RETURNING c.unit
            """, r => r.GetInt32(0), ("id", id), ("candidates", candidates.ToArray()), ("owner", owner), ("lease", lease));
        return claimed.Count == 0 ? null : claimed[0];
    }

    public Dictionary<string, string> Heartbeat(string owner, IReadOnlyCollection<string> jobs, TimeSpan lease) => InTransaction((c, tx) =>
    {
        using (var claims = Command(c, "UPDATE eval_unit_claims SET lease_expires = now() + @lease WHERE owner = @owner", tx,
                   ("lease", lease), ("owner", owner)))
            claims.ExecuteNonQuery();
        var states = new Dictionary<string, string>(StringComparer.Ordinal);
        if (jobs.Count == 0) return states;
        using var cmd = Command(c, """
            UPDATE eval_jobs SET lease_expires = CASE WHEN state IN ('queued', 'running') THEN now() + @lease ELSE lease_expires END
            WHERE id = ANY(@jobs) RETURNING id, state
            """, tx, ("lease", lease), ("jobs", jobs.ToArray()));
        using var r = cmd.ExecuteReader();
        while (r.Read()) states[r.GetString(0)] = r.GetString(1);
        return states;
    });

    public string? NextRunnableJob(IReadOnlyCollection<string> exclude) => Query("""
        SELECT j.id FROM eval_jobs j
        WHERE NOT (j.id = ANY(@exclude)) AND (j.state = 'queued' OR (j.state = 'running' AND (j.lease_expires IS NULL OR j.lease_expires < now() OR EXISTS (
            SELECT 1 FROM eval_unit_claims c WHERE c.job_id = j.id AND (c.owner IS NULL OR c.lease_expires < now())
              AND NOT EXISTS (SELECT 1 FROM eval_units u WHERE u.job_id = c.job_id AND u.unit = c.unit)))))
        ORDER BY (j.state = 'running') DESC, j.seq LIMIT 1
        """, r => r.GetString(0), ("exclude", exclude.ToArray())).FirstOrDefault();

    /// <summary>Other hosts may hold live leases: nothing is released (expired leases are simply claimable).</summary>
    public void ReleaseAll() { }

    public void SaveVariant(EvalVariant v) => Exec("""
        INSERT INTO model_variants (id, base_model, rope_scaling, context_window, job_id, created_at)
        VALUES (@id, @base, @rope, @window, @job, @now)
        ON CONFLICT (id) DO UPDATE SET base_model = excluded.base_model, rope_scaling = excluded.rope_scaling,
          context_window = excluded.context_window, job_id = excluded.job_id, created_at = excluded.created_at;
        SELECT pg_notify(@channel, @payload);
        """, ("id", v.Id), ("base", v.BaseModel), ("rope", v.RopeScaling.ToJsonString()), ("window", v.ContextWindow),
        ("job", v.JobId), ("now", SqliteEvalStore.Now()), ("channel", VariantChannel), ("payload", Payload(v.Id)));

    public void DeleteVariant(string id) => Exec("DELETE FROM model_variants WHERE id = @id; SELECT pg_notify(@channel, @payload)",
        ("id", id), ("channel", VariantChannel), ("payload", Payload(id)));

    public List<EvalVariant> Variants() => Query("SELECT id, base_model, rope_scaling, context_window, job_id FROM model_variants ORDER BY created_at, id",
        r => new EvalVariant(r.GetString(0), r.GetString(1), JsonNode.Parse(r.GetString(2))!.AsObject(),
            r.IsDBNull(3) ? null : r.GetInt32(3), r.IsDBNull(4) ? null : r.GetString(4)));

    /// <summary>A notification from another host (or this one): the channel, the sending host's id and the job or variant id.</summary>
    public readonly record struct Notification(string Channel, string HostId, string Id);

    /// <summary>
    /// LISTENs on both channels on a dedicated connection and calls <paramref name="onNotification"/> for
    /// each until cancelled; <paramref name="onListening"/> runs once the LISTEN is in place. Throws when
    /// the connection fails: the caller falls back to polling and calls again after a backoff.
    /// </summary>
    public async Task ListenAsync(Action<Notification> onNotification, Action onListening, CancellationToken cancellation)
    {
        try
        {
            await using var c = await _listenSource.OpenConnectionAsync(cancellation);
            c.Notification += (_, e) =>
            {
                int bar = e.Payload.IndexOf('|');
                if (bar > 0) onNotification(new Notification(e.Channel, e.Payload[..bar], e.Payload[(bar + 1)..]));
            };
            await using (var cmd = new NpgsqlCommand($"LISTEN {JobChannel}; LISTEN {VariantChannel};", c))
                await cmd.ExecuteNonQueryAsync(cancellation);
            onListening();
            // Wake up now and then to notice a connection that died without a reset (a keepalive query).
            while (!cancellation.IsCancellationRequested)
            {
                if (!await c.WaitAsync(TimeSpan.FromSeconds(5), cancellation))
                {
                    await using var ping = new NpgsqlCommand("SELECT 1", c);
                    await ping.ExecuteScalarAsync(cancellation);
                }
            }
        }
        catch (Exception e) when (IsTransient(e) && !cancellation.IsCancellationRequested)
        {
            throw new EvalStoreUnavailableException($"the job store ({Description}) stopped delivering notifications: {e.Message}", e, Reason(e));
        }
    }
}
