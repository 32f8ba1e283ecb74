using System.Text.Json.Nodes;

namespace PiServe.Api.Tests.Serving;

/// <summary>Streaming over SignalR, concurrency and batching, queue and memory limits, API keys.</summary>
[Collection("host")]
public class ServingTests(HostFixture fixture)
{
    private PiServeHostProcess Host => fixture.Host;

    private static JsonObject Req(string prompt, int maxTokens, int seed) => new()
    {
        ["model"] = "tiny", ["prompt"] = prompt, ["max_tokens"] = maxTokens, ["seed"] = seed, ["ignore_eos"] = true,
    };

    [Fact]
    public void SignalRStreamsTheSameTokensAsTheHttpApi()
    {
        var request = Req("Let there be light", 12, seed: 9);
        var http = Host.RunClient("completion", new JsonObject { ["request"] = request.DeepClone() });
        var hub = Host.RunClient("signalr", new JsonObject { ["request"] = request.DeepClone() });
        Assert.Null(hub["error"]);
        var events = hub["events"]!.AsArray();
        var tokens = events.Where(e => e!["type"]!.GetValue<string>() == "token").ToList();
        Assert.Equal(12, tokens.Count);
        Assert.All(tokens, t => Assert.True(t!["token_id"]!.GetValue<int>() >= 0));
        var finish = events[^1]!;
        Assert.Equal("finish", finish["type"]!.GetValue<string>());
        Assert.Equal("length", finish["finish_reason"]!.GetValue<string>());
        Assert.Equal(12, finish["usage"]!["completion_tokens"]!.GetValue<int>());
        string text = string.Concat(events.Select(e => e!["text"]!.GetValue<string>()));
        Assert.Equal(http["choices"]![0]!["text"]!.GetValue<string>(), text);
    }

    [Fact]
    public void SignalRReportsBadRequestsAsErrors()
    {
        var hub = Host.RunClient("signalr", new JsonObject { ["request"] = new JsonObject { ["model"] = "nope", ["prompt"] = "x" } });
        Assert.Contains("The model 'nope' does not exist", hub["error"]!.GetValue<string>());
    }

    [Fact]
    public async Task CancellingASignalRStreamStopsGeneration()
    {
        // A long generation; the client cancels after 3 events. Generation must stop at once: the
        // scheduler's running count falls back to zero long before 400 tokens could be generated.
        var hub = Host.RunClient("signalr", new JsonObject
        {
            ["request"] = Req("Cancel me", 400, seed: 1), ["cancelAfter"] = 3, ["holdMs"] = 50,
        });
        Assert.Null(hub["error"]);
        Assert.Equal(3, hub["events"]!.AsArray().Count);
        await AssertIdleSoon();
    }

    [Fact]
    public async Task DisconnectingAnHttpStreamStopsGeneration()
    {
        using var client = new HttpClient { BaseAddress = new Uri(Host.BaseUrl) };
        using var req = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = new StringContent(Req("Disconnect me", 450, seed: 2).Also(r => r["stream"] = true).ToJsonString(), System.Text.Encoding.UTF8, "application/json"),
        };
        var response = await client.SendAsync(req, HttpCompletionOption.ResponseHeadersRead);
        var stream = await response.Content.ReadAsStreamAsync();
        var buffer = new byte[256];
        Assert.True(await stream.ReadAsync(buffer) > 0);
        response.Dispose(); // drop the connection mid-stream
        client.Dispose();
        await AssertIdleSoon();
    }

    /// <summary>The scheduler and the piserve_requests_running gauge drop to zero quickly after a cancel.</summary>
    private async Task AssertIdleSoon()
    {
        for (int i = 0; i < 50; i++)
        {
            var s = JsonNode.Parse(await Host.Http.GetStringAsync("/v1/models/tiny/scheduler"))!;
            if (s["running"]!.GetValue<int>() == 0 && s["waiting"]!.GetValue<int>() == 0
                && MetricValue(await Host.Http.GetStringAsync("/metrics"), "piserve_requests_running{model=\"tiny\"}") == 0) return;
            await Task.Delay(100);
        }
        Assert.Fail("the cancelled sequence is still running after 5 s");
    }

    /// <summary>The value of one series in a Prometheus exposition (0 when absent).</summary>
    private static double MetricValue(string exposition, string series)
    {
        foreach (var line in exposition.Split('\n'))
            if (line.StartsWith(series + " ", StringComparison.Ordinal))
                return double.Parse(line[(series.Length + 1)..], System.Globalization.CultureInfo.InvariantCulture);
        return 0;
    }

    [RequiresToolFact("promtool", "prometheus")]
    public async Task MetricsReflectServedRequestsAndPassPromtool()
    {
        Host.RunClient("completion", new JsonObject { ["request"] = Req("Count me", 5, seed: 4) });
        string text = await Host.Http.GetStringAsync("/metrics");
        Assert.True(MetricValue(text, "piserve_generation_tokens_total{model=\"tiny\"}") >= 5, text);
        Assert.True(MetricValue(text, "piserve_prompt_tokens_total{model=\"tiny\"}") >= 3);
        Assert.True(MetricValue(text, "piserve_requests_total{finish_reason=\"length\",model=\"tiny\"}") >= 1);
        Assert.True(MetricValue(text, "piserve_time_to_first_token_seconds_count{model=\"tiny\"}") >= 1);
        Assert.True(MetricValue(text, "piserve_inter_token_latency_seconds_count{model=\"tiny\"}") >= 4);
        Assert.True(MetricValue(text, "piserve_kv_cache_bytes_capacity{model=\"tiny\"}") > 0);
        var (code, output) = Metrics.MetricsTestHost.Promtool(text);
        Assert.True(code == 0, $"promtool check metrics: {output}");
    }

    [Fact]
    public async Task SixteenConcurrentStreamsEachEqualTheirSoloRun()
    {
        var requests = new JsonArray(Enumerable.Range(0, 16).Select(i => (JsonNode)Req($"Stream number {i}:", 24, seed: 100 + i)).ToArray());
        var solo = Enumerable.Range(0, 16)
            .Select(i => Host.RunClient("completion", new JsonObject { ["request"] = Req($"Stream number {i}:", 24, seed: 100 + i) })["choices"]![0]!["text"]!.GetValue<string>())
            .ToArray();
        var before = JsonNode.Parse(await Host.Http.GetStringAsync("/v1/models/tiny/scheduler"))!;
        var together = Host.RunClient("concurrent_streams", new JsonObject { ["requests"] = requests });
        var after = JsonNode.Parse(await Host.Http.GetStringAsync("/v1/models/tiny/scheduler"))!;
        var results = together["results"]!.AsArray();
        for (int i = 0; i < 16; i++)
        {
            Assert.Null(results[i]!["error"]);
            Assert.Equal(solo[i], results[i]!["text"]!.GetValue<string>());
        }
        long steps = after["decode_steps"]!.GetValue<long>() - before["decode_steps"]!.GetValue<long>();
        long tokens = after["decoded_tokens"]!.GetValue<long>() - before["decoded_tokens"]!.GetValue<long>();
        Assert.True(tokens > steps, $"no batching: {tokens} decoded tokens in {steps} steps");
    }

    [Fact]
    public async Task AFullQueueAnswers429WithRetryAfter()
    {
        await using var host = await PiServeHostProcess.StartAsync("--PiServe:Scheduler:MaxBatch=1", "--PiServe:Scheduler:MaxWaiting=1");
        var tasks = Enumerable.Range(0, 6).Select(i => host.PostAsync("/v1/completions", Req("Queue", 200, seed: i).ToJsonString())).ToArray();
        var results = await Task.WhenAll(tasks);
        var rejected = results.Where(r => r.Status == 429).ToList();
        Assert.NotEmpty(rejected);
        Assert.Contains(results, r => r.Status == 200);
        Assert.Equal("rate_limit_exceeded", rejected[0].Body!["error"]!["type"]!.GetValue<string>());
        Assert.True(rejected[0].Response.Headers.RetryAfter is not null);
    }

    [Fact]
    public async Task KvBudgetIsEnforcedWithAClearMessage()
    {
        // 512 bytes/token: a 4096-byte budget holds 8 positions.
        await using var host = await PiServeHostProcess.StartAsync("--PiServe:Scheduler:KvCacheBudgetBytes=4096");
        var (status, body, _) = await host.PostAsync("/v1/completions", Req("Too long for the budget", 50, seed: 1).ToJsonString());
        Assert.Equal(413, status);
        Assert.Contains("more than the budget of 4096 bytes", body!["error"]!["message"]!.GetValue<string>());
        var ok = await host.PostAsync("/v1/completions", """{"model":"tiny","prompt":[1,2],"max_tokens":5,"ignore_eos":true}""");
        Assert.Equal(200, ok.Status);
    }

    [Fact]
    public async Task ApiKeysGuardEverythingButHealthAndMetrics()
    {
        await using var host = await PiServeHostProcess.StartAsync("--PiServe:ApiKeys:0=sekret");
        var denied = await host.PostAsync("/v1/completions", Req("x", 2, 1).ToJsonString());
        Assert.Equal(401, denied.Status);
        Assert.Contains("missing API key", denied.Body!["error"]!["message"]!.GetValue<string>());
        Assert.Equal(401, (await host.PostAsync("/v1/completions", Req("x", 2, 1).ToJsonString(), apiKey: "wrong")).Status);
        Assert.Equal(200, (await host.PostAsync("/v1/completions", Req("x", 2, 1).ToJsonString(), apiKey: "sekret")).Status);
        Assert.True((await host.Http.GetAsync("/health/live")).IsSuccessStatusCode);
        var viaClient = host.RunClient("completion", new JsonObject { ["apiKey"] = "sekret", ["request"] = Req("x", 2, 1) });
        Assert.Null(viaClient["error"]);
        var hub = host.RunClient("signalr", new JsonObject { ["apiKey"] = "sekret", ["request"] = Req("x", 2, 1) });
        Assert.Null(hub["error"]);
    }
}

internal static class JsonExtensions
{
    public static JsonObject Also(this JsonObject o, Action<JsonObject> edit)
    {
        edit(o);
        return o;
    }
}
