using System.Text.Json.Nodes;
using PiServe.Eval.Datasets;
using PiServe.Eval.Jobs;
using PiServe.Eval.Suites;

namespace PiServe.Api.Tests.Evals;

public sealed class EvalHostFixture : IAsyncLifetime
{
    public TempDir Root { get; } = new();
    public EvalHost Host { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        EvalHost.Prepare(Root.Path);
        Host = await EvalHost.StartAsync(Root.Path);
    }

    public async Task DisposeAsync()
    {
        await Host.DisposeAsync();
        Root.Dispose();
    }
}

[CollectionDefinition("evalhost")]
public sealed class EvalHostCollection : ICollectionFixture<EvalHostFixture>;

/// <summary>/v1/evals and friends on the real host: jobs over HTTP, errors, cancellation, SignalR progress, variants, diagnostics.</summary>
[Collection("evalhost")]
public class EvalApiTests(EvalHostFixture fixture)
{
    private EvalHost Host => fixture.Host;

    private static JsonObject PerplexityRequest(int stride = 32) => new()
    {
        ["kind"] = "perplexity", ["model"] = "tiny", ["dataset"] = "pg",
        ["parameters"] = new JsonObject { ["windows"] = new JsonArray(64, 128), ["stride"] = stride },
    };

    private static bool Terminal(JsonNode job) => EvalStates.IsTerminal(job["state"]!.GetValue<string>());

    [Fact]
    public async Task AJobIsAcceptedRunsAndReportsTheSameResultsAsALocalRun()
    {
        var (status, job) = await Host.PostAsync("/v1/evals", PerplexityRequest());
        Assert.Equal(202, status);
        string id = job!["id"]!.GetValue<string>();
        Assert.Equal("queued", job["state"]!.GetValue<string>());
        Assert.Equal(32, job["parameters"]!["stride"]!.GetValue<int>());
        var done = await Host.WaitForAsync(id, Terminal);
        Assert.Equal("succeeded", done["state"]!.GetValue<string>());
        var progress = done["progress"]!;
        Assert.Equal(8, progress["total"]!.GetValue<int>()); // 2 windows × 4 books
        Assert.Equal(8, progress["done"]!.GetValue<int>());
        Assert.True(progress["tokens_per_second"]!.GetValue<double>() > 0);
        Assert.True(done["finished_at"]!.GetValue<long>() >= done["started_at"]!.GetValue<long>());

        var local = EvalFixtures.Run("perplexity", PerplexityRequest()["parameters"]!.AsObject(),
            new DatasetSource("pg", DatasetKind.Pg19, Path.Combine(EvalHost.DataDir(fixture.Root.Path), "pg19")));
        Assert.Equal(local.ToJsonString(), done["results"]!.ToJsonString());

        var (_, list) = await Host.GetAsync("/v1/evals?state=succeeded&model=tiny");
        Assert.Contains(list!["data"]!.AsArray(), j => j!["id"]!.GetValue<string>() == id);
        Assert.Null(list["data"]![0]!["results"]); // the list leaves results out
        var (_, none) = await Host.GetAsync("/v1/evals?model=other");
        Assert.Empty(none!["data"]!.AsArray());

        // Metrics: scored tokens by model and jobs by state.
        string metrics = await Host.Http.GetStringAsync("/metrics");
        double Metric(string series) => metrics.Split('\n').Where(l => l.StartsWith(series + " ", StringComparison.Ordinal))
            .Select(l => double.Parse(l[(series.Length + 1)..].Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture)).SingleOrDefault();
        Assert.True(Metric("piserve_eval_tokens_scored_total{model=\"tiny\"}") >= progress["tokens_scored"]!.GetValue<long>(), metrics);
        Assert.True(Metric("piserve_eval_jobs{state=\"succeeded\"}") >= 1, metrics);
    }

    [Fact]
    public async Task BadRequestsGetOpenAiErrors()
    {
        async Task Error(int expected, string? param, JsonObject body, string path = "/v1/evals")
        {
            var (status, err) = await Host.PostAsync(path, body);
            Assert.Equal(expected, status);
            Assert.Equal(param, err!["error"]!["param"]?.GetValue<string>());
            Assert.False(string.IsNullOrEmpty(err["error"]!["message"]!.GetValue<string>()));
        }
        var r = PerplexityRequest();
        r["kind"] = "bleu";
        await Error(400, "kind", r);
        r = PerplexityRequest();
        r["model"] = "nope";
        await Error(404, "model", r);
        r = PerplexityRequest();
        r["dataset"] = "escape";
        await Error(400, "dataset", r);
        r = PerplexityRequest();
        r["parameters"]!["windows"] = new JsonArray(0);
        await Error(400, "parameters.windows", r);
        r = PerplexityRequest();
        r["parameters"] = new JsonArray(1);
        await Error(400, "parameters", r);
        r = PerplexityRequest();
        r["rope_scaling"] = new JsonObject { ["rope_type"] = "magic" };
        await Error(400, "rope_scaling", r);
        Assert.Equal(404, (await Host.GetAsync("/v1/evals/eval-missing")).Status);
        Assert.Equal(404, (await Host.SendAsync(HttpMethod.Delete, "/v1/evals/eval-missing")).Status);
        Assert.Equal(400, (await Host.GetAsync("/v1/evals?state=done")).Status);
    }

    [Fact]
    public async Task MissingDatasetsAndMalformedLinesFailTheJob()
    {
        var r = PerplexityRequest();
        r["dataset"] = "gone";
        var (status, job) = await Host.PostAsync("/v1/evals", r);
        Assert.Equal(202, status);
        var failed = await Host.WaitForAsync(job!["id"]!.GetValue<string>(), Terminal);
        Assert.Equal("failed", failed["state"]!.GetValue<string>());
        Assert.Equal($"dataset 'gone' (pg19): {Path.Combine(EvalHost.DataDir(fixture.Root.Path), "missing")} does not exist",
            failed["error"]!.GetValue<string>());

        r["dataset"] = "bad";
        (_, job) = await Host.PostAsync("/v1/evals", r);
        failed = await Host.WaitForAsync(job!["id"]!.GetValue<string>(), Terminal);
        Assert.Equal("failed", failed["state"]!.GetValue<string>());
        string error = failed["error"]!.GetValue<string>();
        Assert.StartsWith("dataset bad.jsonl (proof-pile): 2 malformed lines: line 2: invalid JSON: ", error);
        Assert.EndsWith("; line 3: field \"text\" is null", error);
    }

    [Fact]
    public async Task DeleteCancelsARunningJob()
    {
        var (_, job) = await Host.PostAsync("/v1/evals", PerplexityRequest(stride: 2)); // slow
        string id = job!["id"]!.GetValue<string>();
        await Host.WaitForAsync(id, j => j["state"]!.GetValue<string>() == "running");
        var (status, cancelled) = await Host.SendAsync(HttpMethod.Delete, $"/v1/evals/{id}");
        Assert.Equal(200, status);
        Assert.Equal("cancelled", cancelled!["state"]!.GetValue<string>());
        await Task.Delay(500);
        var after = (await Host.GetAsync($"/v1/evals/{id}")).Body!;
        Assert.Equal("cancelled", after["state"]!.GetValue<string>());
        int done = after["progress"]!["done"]!.GetValue<int>();
        await Task.Delay(700);
        Assert.Equal(done, (await Host.GetAsync($"/v1/evals/{id}")).Body!["progress"]!["done"]!.GetValue<int>()); // the worker stopped
        Assert.True(done < 8);
    }

    [Fact]
    public void ProgressIsPushedOnTheSignalRHub()
    {
        var r = Host.RunClient("eval_progress", new JsonObject
        {
            ["request"] = new JsonObject
            {
                ["kind"] = "passkey", ["model"] = "tiny",
                ["parameters"] = new JsonObject { ["target_length"] = 80, ["depths"] = 2, ["trials"] = 2, ["max_new_tokens"] = 3 },
            },
        });
        Assert.Equal(202, r["status"]!.GetValue<int>());
        var events = r["events"]!.AsArray();
        Assert.Equal("succeeded", events[^1]!["state"]!.GetValue<string>());
        Assert.Contains(events, e => e!["state"]!.GetValue<string>() == "running");
        Assert.Equal(4, events[^1]!["progress"]!["done"]!.GetValue<int>());
        Assert.All(events, e => Assert.Equal(r["job"]!["id"]!.GetValue<string>(), e!["id"]!.GetValue<string>()));
        Assert.All(events, e => Assert.Null(e!["results"]));
    }

    [Fact]
    public async Task VariantsServeTheSameWeightsUnderANewId()
    {
        var rope = new JsonObject { ["rope_type"] = "linear", ["factor"] = 4.0 };
        var (status, v) = await Host.PostAsync("/v1/models/tiny/variants", new JsonObject { ["id"] = "tiny-pi4", ["rope_scaling"] = rope.DeepClone() });
        Assert.Equal(201, status);
        Assert.Equal(2048, v!["context_window"]!.GetValue<int>()); // 512 × 4
        var (_, models) = await Host.GetAsync("/v1/models");
        var card = models!["data"]!.AsArray().Single(m => m!["id"]!.GetValue<string>() == "tiny-pi4")!;
        Assert.Equal("linear", card["rope_scaling"]!["rope_type"]!.GetValue<string>());
        var (cs, completion) = await Host.PostAsync("/v1/completions", new JsonObject { ["model"] = "tiny-pi4", ["prompt"] = "Hello", ["max_tokens"] = 3, ["temperature"] = 0 });
        Assert.Equal(200, cs);
        Assert.Equal("tiny-pi4", completion!["model"]!.GetValue<string>());

        Assert.Equal(400, (await Host.PostAsync("/v1/models/tiny/variants", new JsonObject { ["id"] = "tiny-pi4", ["rope_scaling"] = rope.DeepClone() })).Status);
        Assert.Equal(404, (await Host.PostAsync("/v1/models/nope/variants", new JsonObject { ["id"] = "x", ["rope_scaling"] = rope.DeepClone() })).Status);
        Assert.Equal("rope_scaling", (await Host.PostAsync("/v1/models/tiny/variants",
            new JsonObject { ["id"] = "y", ["rope_scaling"] = new JsonObject { ["rope_type"] = "linear" } })).Body!["error"]!["param"]!.GetValue<string>());
    }

    [Fact]
    public async Task AttentionScoreDiagnosticsAnswerSynchronously()
    {
        var (status, r) = await Host.PostAsync("/v1/diagnostics/attention-scores", new JsonObject
        {
            ["model"] = "tiny", ["text"] = EvalFixtures.Text(3, 40), ["rope_scaling"] = new JsonObject { ["rope_type"] = "linear", ["factor"] = 2.0 },
            ["parameters"] = new JsonObject { ["bucket_size"] = 16 },
        });
        Assert.Equal(200, status);
        Assert.Equal(["extrapolation", "scaled"], r!["configs"]!.AsArray().Select(c => c!["name"]!.GetValue<string>()));
        Assert.Equal(16, r["bucket_size"]!.GetValue<int>());
        Assert.True(r["theory"]!["extrapolation"]!.AsArray().Count > 2);
        var (bad, _) = await Host.PostAsync("/v1/diagnostics/attention-scores", new JsonObject { ["model"] = "tiny" });
        Assert.Equal(400, bad); // no text, no dataset
        Assert.Equal(404, (await Host.PostAsync("/v1/diagnostics/attention-scores", new JsonObject { ["model"] = "nope", ["text"] = "x y" })).Status);
    }

    [Fact]
    public async Task DatasetsAreListed()
    {
        var (_, list) = await Host.GetAsync("/v1/datasets");
        var data = list!["data"]!.AsArray().ToDictionary(d => d!["id"]!.GetValue<string>());
        Assert.True(data["pg"]!["exists"]!.GetValue<bool>());
        Assert.Equal("govreport", data["gov"]!["kind"]!.GetValue<string>());
        Assert.False(data["gone"]!["exists"]!.GetValue<bool>());
        Assert.Contains("outside PiServe:DataRoot", data["escape"]!["error"]!.GetValue<string>());
    }
}
