using System.Collections.Concurrent;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.SignalR.Client;
using Npgsql;

namespace PiServe.Api.Tests.Evals;

[CollectionDefinition("scale-out")]
public sealed class ScaleOutCollection : ICollectionFixture<PostgresFixture>;

/// <summary>
/// Several real PiServe processes on one real PostgreSQL job store (PiServe:JobStore:Kind = postgres):
/// any host runs any job, a SIGKILLed host's unit is taken over once its lease expires and the result
/// equals an uninterrupted run, a cancel on one host stops the work on another, progress of a job
/// running on B reaches SignalR clients of A, variants registered on one host are served by the
/// others and deleted everywhere, and the database going away delays jobs without losing them.
/// </summary>
[Collection("scale-out")]
public sealed class ScaleOutTests(PostgresFixture pg) : IAsyncLifetime
{
    private readonly TempDir _root = new();
    private readonly List<EvalHost> _hosts = [];

    public Task InitializeAsync()
    {
        EvalHost.Prepare(_root.Path, books: 4, words: 220);
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        foreach (var h in _hosts) await h.DisposeAsync();
        _root.Dispose();
    }

    private static string[] StoreArgs(string connectionString, string hostId, int workers = 1, bool listen = true) =>
    [
        $"--PiServe:JobStore:Listen={listen}",
        "--PiServe:JobStore:Kind=postgres", $"--PiServe:JobStore:ConnectionString={connectionString}",
        "--PiServe:JobStore:LeaseSeconds=3", "--PiServe:JobStore:PollSeconds=0.2", $"--PiServe:JobStore:HostId={hostId}",
        $"--PiServe:EvalWorkers={workers}",
    ];

    private async Task<EvalHost> Start(string connectionString, string hostId, int workers = 1, string readyPath = "/health/ready", bool listen = true)
    {
        var host = await EvalHost.StartAsync(_root.Path, readyPath, StoreArgs(connectionString, hostId, workers, listen));
        _hosts.Add(host);
        return host;
    }

    /// <summary>A perplexity job of 12 units (3 windows × 4 books), each a few hundred milliseconds here.</summary>
    private static JsonObject LongJob(int stride = 8) => new()
    {
        ["kind"] = "perplexity", ["model"] = "tiny", ["dataset"] = "pg",
        ["parameters"] = new JsonObject { ["windows"] = new JsonArray(64, 128, 192), ["stride"] = stride },
    };

    private static async Task<string> Submit(EvalHost host, JsonObject request)
    {
        var (status, body) = await host.PostAsync("/v1/evals", request);
        Assert.True(status == 202, $"POST /v1/evals: {status} {body}");
        return body!["id"]!.GetValue<string>();
    }

    private static Dictionary<int, int> UnitStarts(string connectionString, string job)
    {
        using var c = new NpgsqlConnection(connectionString);
        c.Open();
        using var cmd = new NpgsqlCommand("SELECT unit, COUNT(*)::int FROM eval_unit_starts WHERE job_id = @id GROUP BY unit", c);
        cmd.Parameters.AddWithValue("id", job);
        using var r = cmd.ExecuteReader();
        var counts = new Dictionary<int, int>();
        while (r.Read()) counts[r.GetInt32(0)] = r.GetInt32(1);
        return counts;
    }

    [RequiresPostgresTheory]
    [InlineData(true)]  // pushed by NOTIFY
    [InlineData(false)] // PiServe:JobStore:Listen = false: polled (as behind a pooler in transaction mode)
    public async Task AJobSubmittedOnOneHostRunsOnAnotherAndItsProgressReachesTheFirstHostsSignalRClients(bool listen)
    {
        string db = pg.NewDatabase();
        var a = await Start(db, "host-a", workers: 0, listen: listen); // serves, runs no eval work
        var b = await Start(db, "host-b");

        var progress = new ConcurrentQueue<JsonElement>();
        await using var hub = new HubConnectionBuilder().WithUrl(a.BaseUrl + "/hubs/generation").Build();
        hub.On<JsonElement>("EvalProgress", p => progress.Enqueue(p));
        await hub.StartAsync();

        string id = await Submit(a, LongJob(stride: 32));
        var done = await a.WaitForAsync(id, j => j["state"]!.GetValue<string>() is "succeeded" or "failed");
        Assert.Equal("succeeded", done["state"]!.GetValue<string>());
        // B logs the success after storing it, and its output reaches this process through a pipe:
        // A can report the state before B's line has arrived here.
        var logDeadline = DateTime.UtcNow.AddSeconds(10);
        while (!b.Log.Contains($"eval job {id} (perplexity) succeeded") && DateTime.UtcNow < logDeadline)
            await Task.Delay(50);
        Assert.Contains($"eval job {id} (perplexity) succeeded", b.Log);
        Assert.DoesNotContain($"eval job {id} (perplexity) succeeded", a.Log);
        // The same job, results included, from either host.
        var (_, onB) = await b.GetAsync($"/v1/evals/{id}");
        Assert.Equal(done.ToJsonString(), onB!.ToJsonString());

        // A's client saw B's work: counters that rise, and the final state.
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!progress.Any(p => p.GetProperty("id").GetString() == id && p.GetProperty("state").GetString() == "succeeded") && DateTime.UtcNow < deadline)
            await Task.Delay(50);
        var mine = progress.Where(p => p.GetProperty("id").GetString() == id).ToList();
        Assert.Contains(mine, p => p.GetProperty("state").GetString() == "succeeded");
        var dones = mine.Select(p => p.GetProperty("progress").GetProperty("done").GetInt32()).ToList();
        Assert.True(dones.Distinct().Count() >= 3, $"progress seen on A: {string.Join(",", dones)}");
        Assert.Equal(dones.Order(), dones);
        Assert.Equal(listen, a.Log.Contains("Listening for job and variant notifications"));
    }

    [RequiresPostgresFact]
    public async Task ACutNotificationConnectionFallsBackToPollingAndIsReestablished()
    {
        string db = pg.NewDatabase();
        var a = await Start(db, "host-a", workers: 0);
        var b = await Start(db, "host-b");
        await Eventually(() => Task.FromResult(a.Log.Contains("Listening for job and variant notifications")), "A never listened");
        var progress = new ConcurrentQueue<JsonElement>();
        await using var hub = new HubConnectionBuilder().WithUrl(a.BaseUrl + "/hubs/generation").Build();
        hub.On<JsonElement>("EvalProgress", p => progress.Enqueue(p));
        await hub.StartAsync();

        // Cut A's LISTEN connection from the server side, as a database failover or a network cut does.
        await using (var c = new NpgsqlConnection(db))
        {
            await c.OpenAsync();
            await using var cmd = new NpgsqlCommand("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = @name", c);
            cmd.Parameters.AddWithValue("name", PiServe.Eval.Jobs.PostgresEvalStore.ListenApplicationName("host-a"));
            Assert.Equal(1L, (long)(await cmd.ExecuteScalarAsync())!);
        }
        await Eventually(() => Task.FromResult(a.Log.Contains("polling the store")), "A did not fall back to polling");
        await Eventually(() => Task.FromResult(a.Log.Split("Listening for job and variant notifications").Length - 1 >= 2), "A did not listen again");

        string id = await Submit(b, LongJob(stride: 64));
        await a.WaitForAsync(id, j => j["state"]!.GetValue<string>() == "succeeded");
        await Eventually(() => Task.FromResult(progress.Any(p => p.GetProperty("id").GetString() == id && p.GetProperty("state").GetString() == "succeeded")),
            "A's client never heard the job finish");
    }

    [RequiresPostgresFact]
    public async Task AKilledHostsUnitIsTakenOverAndTheResultEqualsAnUninterruptedRun()
    {
        string db = pg.NewDatabase();
        var a = await Start(db, "host-a");
        string id = await Submit(a, LongJob());
        var before = await a.WaitForAsync(id, j => j["progress"]!["done"]!.GetValue<int>() >= 2, pollMs: 10);
        a.Kill(); // SIGKILL mid-job: its lease on the unit in flight expires in 3 s
        Assert.Equal("running", before["state"]!.GetValue<string>());
        Assert.True(before["progress"]!["done"]!.GetValue<int>() <= 10, "the job nearly finished before the kill: make it longer");
        _hosts.Remove(a);

        var b = await Start(db, "host-b");
        var done = await b.WaitForAsync(id, j => j["state"]!.GetValue<string>() is "succeeded" or "failed");
        Assert.Equal("succeeded", done["state"]!.GetValue<string>());
        // Nothing completed was computed again: at most the unit in flight at the kill started twice.
        var starts = UnitStarts(db, id);
        Assert.Equal(12, starts.Count);
        Assert.True(starts.Values.Count(n => n > 1) <= 1 && starts.Values.All(n => n <= 2), string.Join(",", starts.Select(kv => $"{kv.Key}:{kv.Value}")));

        // The reference: the same job uninterrupted.
        string reference = await Submit(b, LongJob());
        var uninterrupted = await b.WaitForAsync(reference, j => j["state"]!.GetValue<string>() is "succeeded" or "failed");
        Assert.Equal(uninterrupted["results"]!.ToJsonString(), done["results"]!.ToJsonString());
    }

    [RequiresPostgresFact]
    public async Task ACancelOnOneHostStopsTheJobOnAnotherWithinAUnit()
    {
        string db = pg.NewDatabase();
        var a = await Start(db, "host-a", workers: 0);
        var b = await Start(db, "host-b");
        string id = await Submit(a, LongJob(stride: 4));
        await a.WaitForAsync(id, j => j["progress"]!["done"]!.GetValue<int>() >= 1, pollMs: 10);
        var (status, cancelled) = await a.SendAsync(HttpMethod.Delete, $"/v1/evals/{id}");
        Assert.Equal(200, status);
        int doneAtCancel = cancelled!["progress"]!["done"]!.GetValue<int>();
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!b.Log.Contains($"eval job {id} stopped here") && DateTime.UtcNow < deadline) await Task.Delay(50);
        Assert.Contains($"eval job {id} stopped here", b.Log);
        await Task.Delay(1000);
        var (_, after) = await b.GetAsync($"/v1/evals/{id}");
        Assert.Equal("cancelled", after!["state"]!.GetValue<string>());
        Assert.InRange(after["progress"]!["done"]!.GetValue<int>(), doneAtCancel, doneAtCancel + 1);
    }

    private static async Task<HashSet<string>> ModelIds(EvalHost host)
    {
        var (_, models) = await host.GetAsync("/v1/models");
        return models!["data"]!.AsArray().Select(m => m!["id"]!.GetValue<string>()).ToHashSet();
    }

    private static async Task Eventually(Func<Task<bool>> condition, string what, int seconds = 10)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException(what);
            await Task.Delay(50);
        }
    }

    [RequiresPostgresFact]
    public async Task AVariantRegisteredOnOneHostIsServedByAnotherAndDeletedEverywhere()
    {
        string db = pg.NewDatabase();
        var a = await Start(db, "host-a");
        var b = await Start(db, "host-b");
        var (status, created) = await a.PostAsync("/v1/models/tiny/variants", JsonNode.Parse("""{"id":"tiny-pi2","rope_scaling":{"rope_type":"linear","factor":2.0}}""")!);
        Assert.True(status == 201, $"{status} {created}");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        await Eventually(async () => (await ModelIds(b)).Contains("tiny-pi2"), "B never listed tiny-pi2");
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"took {clock.Elapsed}");
        var (s, completion) = await b.PostAsync("/v1/completions", JsonNode.Parse("""{"model":"tiny-pi2","prompt":"In the beginning","max_tokens":4}""")!);
        Assert.True(s == 200, $"{s} {completion}");
        Assert.Equal("tiny-pi2", completion!["model"]!.GetValue<string>());

        // Deleted through B: gone from A as well.
        var (d, _) = await b.SendAsync(HttpMethod.Delete, "/v1/models/tiny-pi2");
        Assert.Equal(200, d);
        await Eventually(async () => !(await ModelIds(a)).Contains("tiny-pi2"), "A still lists tiny-pi2");
        var (gone, error) = await a.PostAsync("/v1/completions", JsonNode.Parse("""{"model":"tiny-pi2","prompt":"x","max_tokens":2}""")!);
        Assert.Equal(404, gone);
        Assert.Equal("model", error!["error"]!["param"]!.GetValue<string>());
    }

    [RequiresPostgresFact]
    public async Task TheDatabaseRestartingMidJobDelaysTheJobWithoutLosingIt()
    {
        using var server = new PostgresServer(); // its own server: this test stops it
        string db = server.ConnectionString();
        var a = await Start(db, "host-a");
        string reference = await Submit(a, LongJob(stride: 16));
        var uninterrupted = await a.WaitForAsync(reference, j => j["state"]!.GetValue<string>() is "succeeded" or "failed");

        string id = await Submit(a, LongJob(stride: 16));
        var before = await a.WaitForAsync(id, j => j["progress"]!["done"]!.GetValue<int>() >= 2, pollMs: 10);
        server.Stop();
        Assert.True(before["progress"]!["done"]!.GetValue<int>() <= 10, "the job nearly finished before the stop: make it longer");
        try
        {
            // While it is down: evals answer 503 in OpenAI's shape, completions are served, readiness says why.
            var (status, error) = await a.GetAsync($"/v1/evals/{id}");
            Assert.Equal(503, status);
            Assert.Equal("server_error", error!["error"]!["type"]!.GetValue<string>());
            Assert.Equal("job_store_unavailable", error["error"]!["code"]!.GetValue<string>());
            var (ok, _) = await a.PostAsync("/v1/completions", JsonNode.Parse("""{"model":"tiny","prompt":"In the beginning","max_tokens":4}""")!);
            Assert.Equal(200, ok);
            await Eventually(async () => (await a.GetAsync("/health/ready")).Status == 503, "readiness stayed 200 with the database down");
            var (_, ready) = await a.GetAsync("/health/ready");
            Assert.Equal("unavailable", ready!["job_store"]!["status"]!.GetValue<string>());
            await Task.Delay(2000);
        }
        finally
        {
            server.Start();
        }
        var done = await a.WaitForAsync(id, j => j["state"]!.GetValue<string>() is "succeeded" or "failed");
        Assert.Equal("succeeded", done["state"]!.GetValue<string>());
        Assert.Equal(uninterrupted["results"]!.ToJsonString(), done["results"]!.ToJsonString());
        Assert.All(UnitStarts(db, id).Values, n => Assert.InRange(n, 1, 2));
        await Eventually(async () => (await a.GetAsync("/health/ready")).Status == 200, "readiness did not come back");
    }

    [RequiresPostgresFact]
    public async Task AnUnreachableDatabaseAtStartupLeavesCompletionsServingAndEvalsAt503UntilItIsUp()
    {
        using var server = new PostgresServer();
        server.Stop(); // the port is known, nothing listens on it
        var a = await Start(server.ConnectionString(), "host-a", readyPath: "/health/live");

        var (ready, body) = await a.GetAsync("/health/ready");
        Assert.Equal(503, ready);
        Assert.Equal("unavailable", body!["job_store"]!["status"]!.GetValue<string>());
        Assert.StartsWith("the PostgreSQL job store is unavailable: ", body["job_store"]!["error"]!.GetValue<string>());
        Assert.Equal("postgres", body["job_store"]!["kind"]!.GetValue<string>());
        Assert.DoesNotContain(server.Port.ToString(), body.ToJsonString()); // no host or port in an endpoint open without a key
        Assert.Contains($"127.0.0.1:{server.Port}/piserve", a.Log);         // the log has them
        var (ok, completion) = await a.PostAsync("/v1/completions", JsonNode.Parse("""{"model":"tiny","prompt":"In the beginning","max_tokens":4}""")!);
        Assert.True(ok == 200, $"{ok} {completion}");
        foreach (var (method, path, json) in new (HttpMethod, string, string?)[]
                 {
                     (HttpMethod.Get, "/v1/evals", null), (HttpMethod.Post, "/v1/evals", LongJob().ToJsonString()),
                     (HttpMethod.Post, "/v1/models/tiny/variants", """{"id":"v","rope_scaling":{"rope_type":"linear","factor":2.0}}"""),
                 })
        {
            var (status, error) = await a.SendAsync(method, path, json);
            Assert.True(status == 503, $"{method} {path}: {status} {error}");
            Assert.Equal("job_store_unavailable", error!["error"]!["code"]!.GetValue<string>());
        }

        server.Start();
        await Eventually(async () => (await a.GetAsync("/health/ready")).Status == 200, "the host never opened the store", seconds: 20);
        string id = await Submit(a, LongJob(stride: 64));
        var done = await a.WaitForAsync(id, j => j["state"]!.GetValue<string>() is "succeeded" or "failed");
        Assert.Equal("succeeded", done["state"]!.GetValue<string>());
    }
}
