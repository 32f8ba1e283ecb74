using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using PiServe.Eval.Datasets;
using PiServe.Eval.Jobs;
using PiServe.Eval.Models;
using PiServe.Eval.Suites;

namespace PiServe.Eval.Tests;

[CollectionDefinition("postgres")]
public sealed class PostgresCollection : ICollectionFixture<PostgresFixture>;

/// <summary>
/// The store contract, on both stores: claims and leases (lowest free unit first, a live lease keeps
/// others off, an expired one does not, a completed unit is never claimed again), idempotent
/// completion, heartbeats, which jobs have work, migrations, variants. PostgreSQL is a real server.
/// </summary>
[Collection("postgres")]
public sealed class JobStoreTests(PostgresFixture pg) : IDisposable
{
    private readonly TempDir _tmp = new();
    public void Dispose() => _tmp.Dispose();

    /// <summary>Both stores (PostgreSQL where installed: .ci/run installs it).</summary>
    public static TheoryData<string> Kinds => PostgresServer.BinDir is null ? new() { "sqlite" } : new() { "sqlite", "postgres" };

    private IEvalStore Open(string kind, string host = "host-a")
    {
        IEvalStore store = kind == "sqlite"
            ? new SqliteEvalStore(_tmp.File(SqliteEvalStore.FileName))
            : new PostgresEvalStore(pg.NewDatabase(), host);
        store.EnsureSchema();
        return store;
    }

    private static EvalJob NewJob(string id, string state = EvalStates.Queued) => new()
    {
        Id = id, Kind = "perplexity", Model = "tiny", Dataset = "pg", State = state, CreatedAt = 1,
        Parameters = new JsonObject { ["windows"] = new JsonArray(64) },
    };

    private static CompletedUnit Unit(int i, long tokens = 10) => new(i, $"u{i}", new JsonObject { ["i"] = i }, tokens, 0.5);

    [Theory, MemberData(nameof(Kinds))]
    public void ClaimsTakeTheLowestFreeUnitAndLiveLeasesKeepOthersOff(string kind)
    {
        using var store = Open(kind);
        store.Insert(NewJob("j1", EvalStates.Running));
        store.PlanUnits("j1", [(0, "u0"), (1, "u1"), (2, "u2")]);
        var lease = TimeSpan.FromSeconds(30);
        Assert.Equal(0, store.ClaimUnit("j1", [0, 1, 2], "a", lease));
        Assert.Equal(1, store.ClaimUnit("j1", [0, 1, 2], "b", lease));
        Assert.Equal(2, store.ClaimUnit("j1", [0, 1, 2], "a", lease));
        Assert.Null(store.ClaimUnit("j1", [0, 1, 2], "c", lease)); // all held
        Assert.Null(store.ClaimUnit("j1", [5], "c", lease));       // never planned

        // Completion frees nothing for others: a completed unit is never claimed again.
        Assert.True(store.UnitCompleted("j1", Unit(1)));
        Assert.Null(store.ClaimUnit("j1", [1], "c", lease));
        // Recorded once only: a second completion (the unit computed twice after a lease expired) changes nothing.
        Assert.False(store.UnitCompleted("j1", Unit(1, tokens: 99)));
        var job = store.Get("j1")!;
        Assert.Equal(1, job.Done);
        Assert.Equal(10, job.TokensScored);
        Assert.Equal(10, store.CompletedUnits("j1")[1].Tokens);
        Assert.Equal([1], store.CompletedUnits("j1", [1, 2]).Keys);
        Assert.Empty(store.CompletedUnits("j1", [0, 2]));

        // A job that is no longer running hands out no claims, even expired ones.
        store.PlanUnits("j1", [(3, "u3")]);
        Assert.True(store.Transition("j1", [EvalStates.Running], EvalStates.Cancelled));
        Assert.Null(store.ClaimUnit("j1", [3], "a", lease));
    }

    [Theory, MemberData(nameof(Kinds))]
    public void AnExpiredLeaseIsClaimableAndAHeartbeatKeepsOneAlive(string kind)
    {
        using var store = Open(kind);
        store.Insert(NewJob("j1", EvalStates.Running));
        store.PlanUnits("j1", [(0, "u0"), (1, "u1")]);
        Assert.Equal(0, store.ClaimUnit("j1", [0], "dead", TimeSpan.FromMilliseconds(300)));
        Assert.Equal(1, store.ClaimUnit("j1", [1], "alive", TimeSpan.FromMilliseconds(300)));
        for (int i = 0; i < 6; i++)
        {
            Thread.Sleep(100);
            store.Heartbeat("alive", ["j1"], TimeSpan.FromMilliseconds(300));
        }
        // "dead" stopped heartbeating 600 ms ago: its unit is free; "alive"'s is not.
        Assert.Equal(0, store.ClaimUnit("j1", [0, 1], "other", TimeSpan.FromSeconds(30)));
        Assert.Null(store.ClaimUnit("j1", [1], "other", TimeSpan.FromSeconds(30)));
    }

    [Theory, MemberData(nameof(Kinds))]
    public void NextRunnableJobFindsQueuedOrphanedAndUnclaimedWork(string kind)
    {
        using var store = Open(kind);
        var lease = TimeSpan.FromSeconds(30);
        store.Insert(NewJob("queued"));
        store.Insert(NewJob("done", EvalStates.Succeeded));
        Assert.Equal("queued", store.NextRunnableJob([]));
        Assert.Null(store.NextRunnableJob(["queued"]));

        // A running job nobody heartbeats (its host died) comes first, before queued ones.
        store.Insert(NewJob("orphan", EvalStates.Running));
        Assert.Equal("orphan", store.NextRunnableJob([]));
        // Heartbeated and every planned unit held: nothing for another runner.
        store.Heartbeat("a", ["orphan"], lease);
        store.PlanUnits("orphan", [(0, "u0"), (1, "u1")]);
        store.ClaimUnit("orphan", [0, 1], "a", lease);
        store.ClaimUnit("orphan", [0, 1], "a", lease);
        Assert.Equal("queued", store.NextRunnableJob([]));
        // A free planned unit makes it joinable again.
        store.PlanUnits("orphan", [(2, "u2")]);
        Assert.Equal("orphan", store.NextRunnableJob([]));
        // Heartbeat reports the states (a job cancelled elsewhere shows up as such).
        Assert.True(store.Transition("orphan", [EvalStates.Running], EvalStates.Cancelled));
        Assert.Equal(EvalStates.Cancelled, store.Heartbeat("a", ["orphan"], lease)["orphan"]);
        Assert.Equal("queued", store.NextRunnableJob([]));
    }

    [Theory, MemberData(nameof(Kinds))]
    public void JobsStatesVariantsAndTheStartLogRoundTrip(string kind)
    {
        using var store = Open(kind);
        store.Insert(NewJob("j1"));
        store.Insert(NewJob("j2"));
        Assert.True(store.Transition("j1", [EvalStates.Queued], EvalStates.Running));
        Assert.False(store.Transition("j1", [EvalStates.Queued], EvalStates.Failed));
        Assert.True(store.Transition("j1", [EvalStates.Running], EvalStates.Succeeded, results: new JsonObject { ["ppl"] = 1.5 }));
        var j1 = store.Get("j1")!;
        Assert.Equal(EvalStates.Succeeded, j1.State);
        Assert.Equal(1.5, j1.Results!["ppl"]!.GetValue<double>());
        Assert.NotNull(j1.FinishedAt);
        Assert.Equal(["j1", "j2"], store.List().Select(j => j.Id));
        Assert.Equal(["j2"], store.List(EvalStates.Queued).Select(j => j.Id));
        var counts = store.CountByState();
        Assert.Equal(1, counts[EvalStates.Succeeded]);
        Assert.Equal(1, counts[EvalStates.Queued]);
        Assert.Equal(0, counts[EvalStates.Failed]);

        store.UnitStarted("j2", 0, "u0", "a");
        store.UnitStarted("j2", 0, "u0", "b");
        store.UnitStarted("j2", 1, "u1", "a");
        Assert.Equal(new Dictionary<int, int> { [0] = 2, [1] = 1 }, store.UnitStartCounts("j2"));

        var rope = new JsonObject { ["rope_type"] = "linear", ["factor"] = 2.0 };
        store.SaveVariant(new EvalVariant("v1", "tiny", rope, 512, null));
        store.SaveVariant(new EvalVariant("v1", "tiny", rope, 1024, "j1")); // replaced
        var v = Assert.Single(store.Variants());
        Assert.Equal(1024, v.ContextWindow);
        Assert.Equal(rope.ToJsonString(), v.RopeScaling.ToJsonString());
        store.DeleteVariant("v1");
        Assert.Empty(store.Variants());
    }

    [Fact]
    public void SqliteStoresFromBeforeTheMigrationsAreUpgradedInPlace()
    {
        // The schema of the first release (no schema_migrations, no claims): a job in it survives the upgrade.
        string path = _tmp.File("old.db");
        using (var c = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={path}"))
        {
            c.Open();
            using var cmd = c.CreateCommand();
            cmd.CommandText = """
                CREATE TABLE eval_jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, model TEXT NOT NULL, dataset TEXT,
                  state TEXT NOT NULL, error TEXT, created_at INTEGER NOT NULL, started_at INTEGER, finished_at INTEGER, parameters TEXT NOT NULL,
                  rope_scaling TEXT, results TEXT, done INTEGER NOT NULL DEFAULT 0, total INTEGER NOT NULL DEFAULT 0,
                  tokens_scored INTEGER NOT NULL DEFAULT 0, run_seconds REAL NOT NULL DEFAULT 0);
                CREATE TABLE eval_unit_starts (job_id TEXT NOT NULL, unit INTEGER NOT NULL, key TEXT NOT NULL, started_at INTEGER NOT NULL, pid INTEGER NOT NULL);
                INSERT INTO eval_jobs (id, kind, model, state, created_at, parameters) VALUES ('old', 'perplexity', 'tiny', 'running', 1, '{}');
                """;
            cmd.ExecuteNonQuery();
        }
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        using var store = new SqliteEvalStore(path);
        Assert.Equal(EvalStates.Running, store.Get("old")!.State);
        store.PlanUnits("old", [(0, "u0")]);
        Assert.Equal(0, store.ClaimUnit("old", [0], "a", TimeSpan.FromSeconds(5)));
        store.EnsureSchema(); // idempotent
    }

    [RequiresPostgresFact]
    public void SeveralHostsMigratingAtOnceEndWithOneSchema()
    {
        string db = pg.NewDatabase();
        var stores = Enumerable.Range(0, 4).Select(i => new PostgresEvalStore(db, $"h{i}")).ToList();
        Parallel.ForEach(stores, s => s.EnsureSchema());
        stores[0].Insert(NewJob("j"));
        Assert.All(stores, s => Assert.Equal("j", s.Get("j")!.Id));
        foreach (var s in stores) s.Dispose();
    }

    [Fact]
    public void AnUnreachableDatabaseIsReportedAsUnavailable()
    {
        // A closed port: every call says the store is unavailable (the runner retries; the API answers 503).
        int port;
        using (var l = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0)) { l.Start(); port = ((System.Net.IPEndPoint)l.LocalEndpoint).Port; }
        using var store = new PostgresEvalStore($"Host=127.0.0.1;Port={port};Username=piserve;Database=piserve;Timeout=2", "h");
        var e = Assert.Throws<EvalStoreUnavailableException>(() => store.EnsureSchema());
        Assert.Contains($"127.0.0.1:{port}/piserve", e.Message);
        Assert.Throws<EvalStoreUnavailableException>(() => store.List());
        Assert.StartsWith("PiServe:JobStore:ConnectionString is not a valid PostgreSQL connection string",
            Assert.Throws<ArgumentException>(() => new PostgresEvalStore("Hots=x", "h")).Message);
    }
}

/// <summary>
/// Two job runners — two hosts' worth — sharing one real PostgreSQL store in this process: they split a
/// job's units, the result equals one runner's, no unit is computed twice, and a cancel through either
/// stops both.
/// </summary>
[Collection("postgres")]
public sealed class SharedStoreRunnerTests(PostgresFixture pg) : IDisposable
{
    private readonly TempDir _tmp = new();

    public void Dispose() => _tmp.Dispose();

    private sealed class Provider : IEvalModelProvider
    {
        private readonly LlamaEvalModel _tiny = EvalFixtures.Tiny(() => false);
        public IEvalModel? Find(string id, out string? error, out bool exists)
        {
            exists = id == "tiny";
            error = exists ? null : "not configured";
            return exists ? _tiny : null;
        }
        public void RegisterVariant(string baseModel, string id, JsonObject ropeScaling, int? contextWindow) { }
    }

    private DatasetCatalog Catalog()
    {
        string data = Path.Combine(_tmp.Path, "data");
        if (!Directory.Exists(Path.Combine(data, "pg19"))) EvalFixtures.WritePg19(Path.Combine(data, "pg19"), books: 6, words: 200);
        return new DatasetCatalog(data, [new("pg", "pg19", "pg19")]);
    }

    private EvalJobRunner Runner(IEvalStore store, string host) => new(store, new Provider(), Catalog(),
        new EvalRunnerOptions { HostId = host, Lease = TimeSpan.FromSeconds(5), PollInterval = TimeSpan.FromMilliseconds(50) });

    private static EvalRequest Request() =>
        new("perplexity", "tiny", "pg", new JsonObject { ["windows"] = new JsonArray(64, 128), ["stride"] = 32 }, null);

    private static EvalJob WaitFor(IEvalStore store, string id, Func<EvalJob, bool> condition, int seconds = 120) =>
        EvalJobRunnerTests.WaitFor(store, id, condition, seconds);

    [RequiresPostgresFact]
    public void TwoRunnersSplitAJobAndItsResultEqualsOneRunners()
    {
        string db = pg.NewDatabase();
        using var storeA = new PostgresEvalStore(db, "host-a");
        using var storeB = new PostgresEvalStore(db, "host-b");
        storeA.EnsureSchema();

        // The reference: one runner alone.
        string single;
        using (var alone = Runner(storeA, "host-a"))
        {
            var job = alone.Submit(Request());
            alone.Start();
            single = WaitFor(storeA, job.Id, j => EvalStates.IsTerminal(j.State)).Results!.ToJsonString();
        }

        using var a = Runner(storeA, "host-a2");
        using var b = Runner(storeB, "host-b");
        var shared = a.Submit(Request());
        a.Start();
        b.Start();
        var done = WaitFor(storeB, shared.Id, j => EvalStates.IsTerminal(j.State));
        Assert.Equal(EvalStates.Succeeded, done.State);
        Assert.Equal(single, done.Results!.ToJsonString());
        Assert.Equal(12, done.Done);
        // Every unit started exactly once, and both hosts computed some.
        Assert.All(storeA.UnitStartCounts(shared.Id).Values, n => Assert.Equal(1, n));
        Assert.Equal(12, storeA.UnitStartCounts(shared.Id).Count);
        var owners = StartOwners(db, shared.Id);
        Assert.Contains("host-a2", owners);
        Assert.Contains("host-b", owners);
    }

    private static HashSet<string> StartOwners(string connectionString, string job)
    {
        using var c = new Npgsql.NpgsqlConnection(connectionString);
        c.Open();
        using var cmd = new Npgsql.NpgsqlCommand("SELECT DISTINCT owner FROM eval_unit_starts WHERE job_id = @id", c);
        cmd.Parameters.AddWithValue("id", job);
        using var r = cmd.ExecuteReader();
        var owners = new HashSet<string>();
        while (r.Read()) owners.Add(r.GetString(0));
        return owners;
    }

    [RequiresPostgresFact]
    public void ACancelThroughOneRunnerStopsTheOtherWithinAUnit()
    {
        string db = pg.NewDatabase();
        using var storeA = new PostgresEvalStore(db, "host-a");
        using var storeB = new PostgresEvalStore(db, "host-b");
        storeA.EnsureSchema();
        using var a = Runner(storeA, "host-a");
        using var b = Runner(storeB, "host-b");
        var job = a.Submit(new EvalRequest("perplexity", "tiny", "pg", new JsonObject { ["windows"] = new JsonArray(64, 128, 192), ["stride"] = 8 }, null));
        b.Start(); // only b works on it
        WaitFor(storeA, job.Id, j => j.Done >= 1);
        a.Cancel(job.Id);
        int doneAtCancel = storeA.Get(job.Id)!.Done;
        // b's heartbeat (lease/4 = 1.25 s) sees the state and stops within the unit it was computing.
        var deadline = DateTime.UtcNow.AddSeconds(15);
        while (b.RunningHere.Count > 0 && DateTime.UtcNow < deadline) Thread.Sleep(20);
        Assert.Empty(b.RunningHere);
        var after = storeA.Get(job.Id)!;
        Assert.Equal(EvalStates.Cancelled, after.State);
        Assert.InRange(after.Done, doneAtCancel, doneAtCancel + 1);
        Assert.True(after.Done < after.Total);
    }
}
