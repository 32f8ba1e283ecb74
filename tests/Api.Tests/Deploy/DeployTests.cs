using System.Diagnostics;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using PiServe.Api.Metrics;
using PiServe.Api.Tests.Serving;
using PiServe.Api.Tests.Metrics;

namespace PiServe.Api.Tests.Deploy;

/// <summary>
/// The deployment files, checked without a Docker engine: the compose file and Prometheus config
/// validate, every metric the Grafana dashboard queries exists, and a real Prometheus running the
/// repository's scrape config (retargeted at a test host) answers a dashboard query with data.
/// </summary>
[Collection("host")]
public partial class DeployTests(HostFixture fixture)
{
    private static string RepoFile(params string[] parts) => Path.Combine([RepoPaths.Root, .. parts]);

    private static (int Code, string Output) Run(string file, params string[] args)
    {
        var (code, stdout, stderr) = ProcessRunner.Run(file, args, RepoPaths.Root, timeout: TimeSpan.FromSeconds(60));
        return (code, stdout + stderr);
    }

    [RequiresToolFact("docker-compose", "docker-compose")]
    public void ComposeFileValidates()
    {
        var (code, output) = Run("docker-compose", "-f", "docker-compose.yml", "config", "-q");
        Assert.True(code == 0, $"docker-compose config failed:\n{output}");
    }

    [RequiresToolFact("promtool", "prometheus")]
    public void PrometheusConfigValidates()
    {
        var (code, output) = Run(ProcessRunner.FindOnPath("promtool")!, "check", "config", "deploy/prometheus.yml");
        Assert.True(code == 0, $"promtool check config failed:\n{output}");
    }

    private static JsonObject Dashboard => JsonNode.Parse(File.ReadAllText(RepoFile("deploy", "grafana", "dashboards", "piserve.json")))!.AsObject();

    private static IEnumerable<string> Expressions(JsonObject dashboard) =>
        dashboard["panels"]!.AsArray().SelectMany(p => p!["targets"]!.AsArray().Select(t => t!["expr"]!.GetValue<string>()));

    [GeneratedRegex(@"piserve_[a-z_]+")]
    private static partial Regex MetricName();

    /// <summary>Family names the dashboard queries (histogram series reduced to their family).</summary>
    private static HashSet<string> QueriedFamilies() => Expressions(Dashboard)
        .SelectMany(e => MetricName().Matches(e).Select(m => Regex.Replace(m.Value, "_(bucket|sum|count)$", "")))
        .ToHashSet();

    [Fact]
    public void DashboardHasThePanelsAndTheModelVariable()
    {
        var d = Dashboard;
        Assert.Equal("piserve", d["uid"]!.GetValue<string>());
        var titles = d["panels"]!.AsArray().Select(p => p!["title"]!.GetValue<string>()).ToList();
        foreach (var t in new[] { "Request rate by finish reason", "Time to first token", "Inter-token latency", "Request duration", "Tokens per second",
                     "Running and waiting requests", "KV cache usage", "Evaluation jobs by state", "Evaluation tokens scored per second",
                     "Prefix cache hit rate", "Prefix cache size" })
            Assert.Contains(t, titles);
        Assert.Equal("model", d["templating"]!["list"]![0]!["name"]!.GetValue<string>());
        // Every family the instruments define is on the dashboard.
        foreach (var name in PiServeMetrics.Names.All)
            Assert.Contains(name, QueriedFamilies());
    }

    [Fact]
    public async Task EveryMetricTheDashboardQueriesIsExposedByTheRunningHost()
    {
        // Serving metrics appear once a request has been served; the eval families appear with the
        // first eval job (covered by the eval tests), so they are checked against the instruments.
        var (status, _, _) = await fixture.Host.PostAsync("/v1/completions", """{"model":"tiny","prompt":"x","max_tokens":3,"ignore_eos":true}""");
        Assert.Equal(200, status);
        string exposition = await fixture.Host.Http.GetStringAsync("/metrics");
        var exposed = exposition.Split('\n').Where(l => l.StartsWith("# TYPE ", StringComparison.Ordinal)).Select(l => l.Split(' ')[2]).ToHashSet();
        foreach (var family in QueriedFamilies())
        {
            if (family.StartsWith("piserve_eval_", StringComparison.Ordinal))
                Assert.Contains(family, PiServeMetrics.Names.All);
            else
                Assert.True(exposed.Contains(family), $"the dashboard queries {family}, which /metrics does not expose:\n{exposition}");
        }
    }

    [RequiresToolFact("prometheus", "prometheus")]
    public async Task PrometheusWithTheShippedConfigAnswersADashboardQuery()
    {
        await fixture.Host.PostAsync("/v1/completions", """{"model":"tiny","prompt":"y","max_tokens":3,"ignore_eos":true}""");
        // The shipped config, with the compose service name replaced by the test host and a 1 s interval.
        string config = File.ReadAllText(RepoFile("deploy", "prometheus.yml"))
            .Replace("api:8080", new Uri(fixture.Host.BaseUrl).Authority)
            .Replace("scrape_interval: 5s", "scrape_interval: 1s");
        using var prometheus = new PrometheusServer(config);
        string expr = Expressions(Dashboard).First(e => e.Contains("piserve_generation_tokens_total")).Replace("$model", ".*").Replace("$instance", ".*");
        Assert.NotNull(await prometheus.WaitForDataAsync("piserve_generation_tokens_total", TimeSpan.FromSeconds(20)));
        var result = await prometheus.WaitForDataAsync(expr, TimeSpan.FromSeconds(10));
        Assert.True(result is { Count: > 0 }, $"no data for the dashboard query {expr}:\n{prometheus.Log}");
        Assert.Contains(result!, s => s!["metric"]!["model"]!.GetValue<string>() == "tiny");
    }
}
