using System.Text.Json.Nodes;

namespace PiServe.Api.Tests.Serving;

/// <summary>
/// Automatic prefix caching through the real host: requests sharing a prompt prefix are answered from
/// cached blocks (as a host without the cache answers them), and /metrics and the scheduler status
/// count the tokens looked up and found, and what the cache holds.
/// </summary>
[Collection("host")]
public class PrefixCacheApiTests(HostFixture fixture)
{
    private PiServeHostProcess Host => fixture.Host;
    private const int Block = 16;

    private static int[] Ids(int n, int seed) => Enumerable.Range(0, n).Select(i => 100 + (i * 7919 + seed * 104729) % 20000).ToArray();
    private static int[] Concat(params int[][] parts) => parts.SelectMany(p => p).ToArray();

    private static JsonObject Req(int[] prompt, int n = 1, int? seed = null)
    {
        var request = new JsonObject
        {
            ["model"] = "tiny", ["prompt"] = new JsonArray([.. prompt.Select(t => (JsonNode)t)]), ["max_tokens"] = 6,
            ["temperature"] = seed is null ? 0 : 0.9, ["n"] = n, ["logprobs"] = 2, ["ignore_eos"] = true,
        };
        if (seed is not null) request["seed"] = seed;
        return request;
    }

    private static async Task<JsonArray> Choices(PiServeHostProcess host, JsonObject request)
    {
        var (status, body, _) = await host.PostAsync("/v1/completions", request.ToJsonString());
        Assert.True(status == 200, body?.ToJsonString());
        return body!["choices"]!.AsArray();
    }

    private static double Metric(string exposition, string series)
    {
        foreach (var line in exposition.Split('\n'))
            if (line.StartsWith(series + " ", StringComparison.Ordinal))
                return double.Parse(line[(series.Length + 1)..], System.Globalization.CultureInfo.InvariantCulture);
        throw new Xunit.Sdk.XunitException($"{series} is not exposed:\n{exposition}");
    }

    private sealed record Counts(double Queries, double Hits, double Blocks, double Bytes);

    private static async Task<Counts> Scrape(PiServeHostProcess host)
    {
        string text = await host.Http.GetStringAsync("/metrics");
        return new Counts(Metric(text, "piserve_prefix_cache_queries_total{model=\"tiny\"}"), Metric(text, "piserve_prefix_cache_hits_total{model=\"tiny\"}"),
            Metric(text, "piserve_prefix_cache_blocks{model=\"tiny\"}"), Metric(text, "piserve_prefix_cache_bytes{model=\"tiny\"}"));
    }

    [Fact]
    public async Task ASharedPrefixIsServedFromTheCacheAndTheMetricsCountIt()
    {
        var doc = Ids(200, 1);
        var (p1, p2) = (Concat(doc, Ids(20, 2)), Concat(doc, Ids(25, 3)));
        var before = await Scrape(Host);
        var statusBefore = JsonNode.Parse(await Host.Http.GetStringAsync("/v1/models/tiny/scheduler"))!;
        await Choices(Host, Req(p1));
        var second = await Choices(Host, Req(p2));
        var after = await Scrape(Host);

        Assert.Equal(p1.Length + p2.Length, after.Queries - before.Queries);
        Assert.Equal(192, after.Hits - before.Hits); // the document's 12 full blocks
        Assert.True(after.Blocks >= 15, $"{after.Blocks} blocks cached"); // both prompts' full blocks: 13 + 14, the 12 shared held once
        long bytesPerToken = JsonNode.Parse(await Host.Http.GetStringAsync("/v1/models"))!["data"]!.AsArray()
            .Single(m => m!["id"]!.GetValue<string>() == "tiny")!["kv_bytes_per_token"]!.GetValue<long>();
        Assert.Equal(after.Blocks * Block * bytesPerToken, after.Bytes);

        var status = JsonNode.Parse(await Host.Http.GetStringAsync("/v1/models/tiny/scheduler"))!;
        Assert.Equal(192, status["prefix_cache_hit_tokens"]!.GetValue<long>() - statusBefore["prefix_cache_hit_tokens"]!.GetValue<long>());
        Assert.Equal(after.Bytes, status["prefix_cache_bytes"]!.GetValue<long>());
        Assert.True(status["prefix_cache_bytes"]!.GetValue<long>() + status["kv_reserved_bytes"]!.GetValue<long>() <= status["kv_budget_bytes"]!.GetValue<long>());

        // A host without the cache answers the second request with the same tokens and log-probs.
        await using var cold = await PiServeHostProcess.StartAsync("--PiServe:Scheduler:PrefixCacheBytes=0");
        var expected = await Choices(cold, Req(p2));
        Assert.Equal(expected.ToJsonString(), second.ToJsonString());
        var coldCounts = await Scrape(cold);
        Assert.Equal(new Counts(0, 0, 0, 0), coldCounts); // declared at zero, and nothing looked up
    }

    [Fact]
    public async Task TheChoicesOfOneRequestShareOnePrefill()
    {
        var prompt = Concat(Ids(200, 4), Ids(24, 5)); // 224 tokens, 14 full blocks
        var before = await Scrape(Host);
        var choices = await Choices(Host, Req(prompt, n: 3, seed: 11));
        var after = await Scrape(Host);
        Assert.Equal(3, choices.Count);
        // The first choice prefills the prompt; the other two copy 13 blocks each (the last token is computed).
        Assert.Equal(2 * 13 * Block, after.Hits - before.Hits);
        Assert.Equal(3 * prompt.Length, after.Queries - before.Queries);
    }
}
