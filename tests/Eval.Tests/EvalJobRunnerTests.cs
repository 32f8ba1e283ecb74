using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using PiServe.Eval.Datasets;
using PiServe.Eval.Jobs;
using PiServe.Eval.Models;
using PiServe.Eval.Suites;

namespace PiServe.Eval.Tests;

/// <summary>The job runner in process over a real SQLite store: states, failures, cancellation, priority, resumption.</summary>
[Collection("eval-compute")]
public sealed class EvalJobRunnerTests : IDisposable
{
    private readonly TempDir _tmp = new();
    private volatile bool _busy;
    private readonly Recorder _events = new();

    private sealed class Provider(Func<bool> busy) : IEvalModelProvider
    {
        public readonly ConcurrentDictionary<string, (string Base, JsonObject Rope, int? Window)> Variants = new();
        private readonly LlamaEvalModel _tiny = EvalFixtures.Tiny(busy);

        public IEvalModel? Find(string id, out string? error, out bool exists)
        {
            exists = id == "tiny" || Variants.ContainsKey(id);
            error = exists ? null : "not configured";
            return exists ? _tiny : null;
        }

        public void RegisterVariant(string baseModel, string id, JsonObject ropeScaling, int? contextWindow) =>
            Variants[id] = (baseModel, ropeScaling, contextWindow);
    }

    private sealed class Recorder : IEvalObserver
    {
        public readonly ConcurrentQueue<(string Id, string? From, string To)> States = new();
        public long Tokens;
        public int Progress;
        public void JobStateChanged(EvalJob job, string? from, string to) => States.Enqueue((job.Id, from, to));
        public void TokensScored(EvalJob job, long tokens) => Interlocked.Add(ref Tokens, tokens);
        void IEvalObserver.Progress(EvalJob job) => Interlocked.Increment(ref Progress);
    }

    private readonly Provider _provider;

    public EvalJobRunnerTests()
    {
        _provider = new Provider(() => _busy);
        EvalFixtures.WritePg19(Path.Combine(_tmp.Path, "data", "pg19"), books: 6, words: 150);
        File.WriteAllLines(Path.Combine(_tmp.Path, "data", "bad.jsonl"), ["{\"text\": \"ok\"}", "{oops", "{\"txt\": \"x\"}"]);
    }

    public void Dispose() => _tmp.Dispose();

    private EvalJobRunner Runner(int workers = 1) => new(
        new SqliteEvalStore(Path.Combine(_tmp.Path, "state", SqliteEvalStore.FileName)), _provider,
        new DatasetCatalog(Path.Combine(_tmp.Path, "data"),
        [
            new("pg", "pg19", "pg19"), new("bad", "proof-pile", "bad.jsonl"), new("gone", "pg19", "missing"), new("out", "pg19", "../state"),
        ]),
        new EvalRunnerOptions { Workers = workers, PriorityPoll = TimeSpan.FromMilliseconds(5) }, [_events]);

    private static EvalJob WaitFor(EvalJobRunner runner, string id, Func<EvalJob, bool> condition, int seconds = 60) =>
        WaitFor(runner.Store, id, condition, seconds);

    /// <summary>Polls the store until the job meets the condition; a timeout names its state and progress.</summary>
    internal static EvalJob WaitFor(IEvalStore store, string id, Func<EvalJob, bool> condition, int seconds)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (true)
        {
            var job = store.Get(id)!;
            if (condition(job)) return job;
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"job {id} still {job.State} ({job.Done}/{job.Total}) {job.Error}");
            Thread.Sleep(10);
        }
    }

    private static EvalRequest Perplexity(string dataset = "pg", int stride = 64) =>
        new("perplexity", "tiny", dataset, new JsonObject { ["windows"] = new JsonArray(64), ["stride"] = stride }, null);

    [Fact]
    public void AJobRunsToSucceededWithProgressAndResults()
    {
        using var runner = Runner();
        runner.Start();
        var job = runner.Submit(Perplexity());
        Assert.Equal(EvalStates.Queued, job.State);
        Assert.StartsWith("eval-", job.Id);
        var done = WaitFor(runner, job.Id, j => EvalStates.IsTerminal(j.State));
        Assert.Equal(EvalStates.Succeeded, done.State);
        Assert.Equal(6, done.Total);
        Assert.Equal(6, done.Done);
        Assert.NotNull(done.StartedAt);
        Assert.NotNull(done.FinishedAt);
        long scored = done.Results!["windows"]![0]!["tokens"]!.GetValue<long>();
        Assert.Equal(scored, done.TokensScored);
        Assert.Equal(scored, Interlocked.Read(ref _events.Tokens));
        Assert.True(done.TokensPerSecond > 0);

        var json = done.ToJson();
        Assert.Equal(["id", "kind", "model", "dataset", "state", "created_at", "started_at", "finished_at", "progress", "parameters", "results"],
            json.Select(p => p.Key));
        Assert.Equal(["done", "total", "tokens_scored", "tokens_per_second", "eta_seconds"], json["progress"]!.AsObject().Select(p => p.Key));
        Assert.Null(json["progress"]!["eta_seconds"]);
        Assert.Equal([(job.Id, (string?)null, "queued"), (job.Id, "queued", "running"), (job.Id, "running", "succeeded")],
            _events.States.Where(s => s.Id == job.Id));
        Assert.True(_events.Progress >= 2);
        Assert.Single(runner.List(EvalStates.Succeeded, "tiny"));
        Assert.Empty(runner.List(EvalStates.Succeeded, "other"));
    }

    [Fact]
    public void BadRequestsAreRefusedNamingTheField()
    {
        using var runner = Runner();
        EvalRequestException Bad(EvalRequest r) => Assert.Throws<EvalRequestException>(() => runner.Submit(r));
        var e = Bad(Perplexity() with { Kind = "bleu" });
        Assert.Equal((400, "kind"), (e.Status, e.Param));
        e = Bad(Perplexity() with { Model = "nope" });
        Assert.Equal((404, "model"), (e.Status, e.Param));
        e = Bad(Perplexity() with { Dataset = "unregistered" });
        Assert.Equal((400, "dataset"), (e.Status, e.Param));
        Assert.Contains("not registered", e.Message);
        e = Bad(Perplexity() with { Dataset = "out" });
        Assert.Contains("outside PiServe:DataRoot", e.Message);
        e = Bad(Perplexity() with { Dataset = null });
        Assert.Equal("dataset", e.Param);
        e = Bad(new EvalRequest("passkey", "tiny", "pg", null, null));
        Assert.Contains("takes no dataset", e.Message);
        e = Bad(new EvalRequest("govreport", "tiny", "pg", null, null));
        Assert.Contains("needs a govreport dataset", e.Message);
        e = Bad(Perplexity() with { RopeScaling = new JsonObject { ["rope_type"] = "linear" } });
        Assert.Equal("rope_scaling", e.Param);
        e = Bad(Perplexity() with { Parameters = new JsonObject { ["windows"] = new JsonArray(64), ["strides"] = 3 } });
        Assert.Equal("parameters.strides", e.Param);
        e = Bad(new EvalRequest("longrope-search", "tiny", "pg", new JsonObject { ["register_as"] = "tiny" }, null));
        Assert.Equal("parameters.register_as", e.Param);
        Assert.Empty(runner.List(null, null)); // nothing was queued
        Assert.Equal("state", Assert.Throws<EvalRequestException>(() => runner.List("done", null)).Param);
        Assert.Equal(404, Assert.Throws<EvalRequestException>(() => runner.Cancel("eval-nope")).Status);
    }

    [Fact]
    public void MissingAndMalformedDatasetsFailTheJobWithTheReason()
    {
        using var runner = Runner();
        runner.Start();
        var missing = runner.Submit(Perplexity("gone"));
        var bad = runner.Submit(Perplexity("bad"));
        var m = WaitFor(runner, missing.Id, j => EvalStates.IsTerminal(j.State));
        Assert.Equal(EvalStates.Failed, m.State);
        Assert.Equal($"dataset 'gone' (pg19): {Path.Combine(_tmp.Path, "data", "missing")} does not exist", m.Error);
        var b = WaitFor(runner, bad.Id, j => EvalStates.IsTerminal(j.State));
        Assert.Equal(EvalStates.Failed, b.State);
        Assert.Contains("2 malformed lines: line 2: invalid JSON", b.Error);
        Assert.Contains("line 3: missing field \"text\"", b.Error);
        Assert.Equal(b.Error, b.ToJson()["error"]!.GetValue<string>());

        // With skip_malformed the good line is evaluated and the skipped ones are listed.
        var skip = runner.Submit(Perplexity("bad") with { Parameters = new JsonObject { ["windows"] = new JsonArray(64), ["skip_malformed"] = true } });
        var s = WaitFor(runner, skip.Id, j => EvalStates.IsTerminal(j.State));
        Assert.Equal(EvalStates.Succeeded, s.State);
        Assert.Equal(2, s.Results!["skipped_lines"]!.AsArray().Count);
    }

    [Fact]
    public void CancellingStopsTheWorkerAndTheNextJobRuns()
    {
        using var runner = Runner();
        runner.Start();
        var job = runner.Submit(Perplexity(stride: 4)); // slow: 16 windows per unit
        WaitFor(runner, job.Id, j => j.Done >= 1);
        var cancelled = runner.Cancel(job.Id);
        Assert.Equal(EvalStates.Cancelled, cancelled.State);
        Assert.NotNull(cancelled.FinishedAt);
        Assert.Equal(EvalStates.Cancelled, runner.Cancel(job.Id).State); // idempotent
        // The worker stops at its next forward pass: the unit count no longer moves and the job stays cancelled.
        Thread.Sleep(300);
        int done = runner.Get(job.Id)!.Done;
        Thread.Sleep(500);
        Assert.Equal(done, runner.Get(job.Id)!.Done);
        Assert.Equal(EvalStates.Cancelled, runner.Get(job.Id)!.State);
        Assert.True(done < 6);
        // The worker is free for the next job.
        var next = runner.Submit(Perplexity());
        Assert.Equal(EvalStates.Succeeded, WaitFor(runner, next.Id, j => EvalStates.IsTerminal(j.State)).State);
        Assert.Equal(409, Assert.Throws<EvalRequestException>(() => runner.Cancel(next.Id)).Status);

        // A queued job is cancelled before it starts.
        _busy = true;
        var a = runner.Submit(Perplexity());
        var b = runner.Submit(Perplexity());
        Assert.Equal(EvalStates.Cancelled, runner.Cancel(b.Id).State);
        runner.Cancel(a.Id);
        _busy = false;
        Assert.Null(runner.Get(b.Id)!.StartedAt);
    }

    [Fact]
    public void InteractiveRequestsKeepPriority()
    {
        using var runner = Runner();
        runner.Start();
        _busy = true; // as if the scheduler had running or waiting completions
        var job = runner.Submit(Perplexity());
        WaitFor(runner, job.Id, j => j.State == EvalStates.Running && j.Total > 0);
        Thread.Sleep(400);
        Assert.Equal(0, runner.Get(job.Id)!.Done);
        _busy = false;
        Assert.Equal(EvalStates.Succeeded, WaitFor(runner, job.Id, j => EvalStates.IsTerminal(j.State)).State);
    }

    [Fact]
    public void AStoppedRunnerResumesFromTheLastCompletedUnit()
    {
        string id;
        JsonObject reference = EvalFixtures.Run("perplexity", Perplexity(stride: 16).Parameters!,
            new DatasetSource("pg", DatasetKind.Pg19, Path.Combine(_tmp.Path, "data", "pg19")));
        using (var first = Runner())
        {
            first.Start();
            id = first.Submit(Perplexity(stride: 16)).Id;
            WaitFor(first, id, j => j.Done >= 2);
            first.Stop(); // as at host shutdown: the job stays running
        }
        var store = new SqliteEvalStore(Path.Combine(_tmp.Path, "state", SqliteEvalStore.FileName));
        var stopped = store.Get(id)!;
        Assert.Equal(EvalStates.Running, stopped.State);
        Assert.InRange(stopped.Done, 2, 5);
        Assert.NotNull(stopped.Results); // partial results are stored while running

        using var second = Runner();
        second.Start();
        var done = WaitFor(second, id, j => EvalStates.IsTerminal(j.State));
        Assert.Equal(EvalStates.Succeeded, done.State);
        Assert.Equal(reference["windows"]!.ToJsonString(), done.Results!["windows"]!.ToJsonString());
        var starts = store.UnitStartCounts(id);
        Assert.Equal(6, starts.Count);
        // Units completed before the stop were not started again; at most the one in flight ran twice.
        Assert.True(starts.Values.Count(c => c == 2) <= 1 && starts.Values.All(c => c is 1 or 2), string.Join(",", starts));
        for (int u = 0; u < stopped.Done; u++) Assert.Equal(1, starts[u]);
    }

    [Fact]
    public void ASuccessfulSearchRegistersItsVariant()
    {
        using var runner = Runner();
        runner.Start();
        var job = runner.Submit(new EvalRequest("longrope-search", "tiny", "pg", new JsonObject
        {
            ["original_length"] = 64, ["target_length"] = 96, ["population"] = 3, ["generations"] = 1, ["samples"] = 1,
            ["register_as"] = "tiny-longrope",
        }, null));
        var done = WaitFor(runner, job.Id, j => EvalStates.IsTerminal(j.State));
        Assert.Equal(EvalStates.Succeeded, done.State);
        Assert.Equal("tiny-longrope", done.Results!["registered_as"]!.GetValue<string>());
        var v = _provider.Variants["tiny-longrope"];
        Assert.Equal("tiny", v.Base);
        Assert.Equal(96, v.Window);
        Assert.Equal(done.Results["best"]!["rope_scaling"]!.ToJsonString(), v.Rope.ToJsonString());
        var stored = runner.Store.Variants().Single();
        Assert.Equal(("tiny-longrope", "tiny", job.Id), (stored.Id, stored.BaseModel, stored.JobId));
    }
}
