using System.Diagnostics;
using System.Net.Http;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using PiServe.Api.Metrics;

namespace PiServe.Api.Tests.Metrics;

/// <summary>/metrics over real HTTP: the in-process host with every instrument recorded, and the real executable.</summary>
public class MetricsEndpointTests
{
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(5) };

    private static async Task<string> ScrapeAsync(Uri uri)
    {
        using var response = await Http.GetAsync(uri);
        Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/plain; version=0.0.4; charset=utf-8", response.Content.Headers.ContentType!.ToString());
        return await response.Content.ReadAsStringAsync();
    }

    [Fact]
    public async Task EveryPiServeMetricIsExposedUnderItsExactName()
    {
        await using var host = await MetricsTestHost.StartAsync();
        MetricsTestHost.RecordEverything(host.Metrics);
        string text = await ScrapeAsync(host.MetricsUri);

        var types = new Dictionary<string, string>
        {
            ["piserve_prompt_tokens_total"] = "counter",
            ["piserve_generation_tokens_total"] = "counter",
            ["piserve_requests_total"] = "counter",
            ["piserve_eval_tokens_scored_total"] = "counter",
            ["piserve_requests_running"] = "gauge",
            ["piserve_requests_waiting"] = "gauge",
            ["piserve_kv_cache_bytes_used"] = "gauge",
            ["piserve_kv_cache_bytes_capacity"] = "gauge",
            ["piserve_eval_jobs"] = "gauge",
            ["piserve_time_to_first_token_seconds"] = "histogram",
            ["piserve_inter_token_latency_seconds"] = "histogram",
            ["piserve_request_duration_seconds"] = "histogram",
            ["piserve_request_queue_seconds"] = "histogram",
            ["piserve_prefix_cache_queries_total"] = "counter",
            ["piserve_prefix_cache_hits_total"] = "counter",
            ["piserve_prefix_cache_blocks"] = "gauge",
            ["piserve_prefix_cache_bytes"] = "gauge",
        };
        Assert.Equal(types.Keys.Order(), PiServeMetrics.Names.Exposed.Order());
        var lines = text.Split('\n');
        foreach (var (name, type) in types)
        {
            Assert.Single(lines, l => l == $"# TYPE {name} {type}");
            Assert.Single(lines, l => l.StartsWith($"# HELP {name} "));
        }
        // Exactly the piserve families above, nothing else under the prefix.
        Assert.Equal(types.Keys.Order(), lines.Where(l => l.StartsWith("# TYPE piserve_")).Select(l => l.Split(' ')[2]).Order());

        const string odd = "odd \\\"model\\\" \\\\ with\\nnewline";
        foreach (var sample in new[]
        {
            "piserve_prompt_tokens_total{model=\"llama-7b\"} 42",
            "piserve_generation_tokens_total{model=\"llama-7b\"} 12",
            "piserve_requests_total{finish_reason=\"abort\",model=\"llama-7b\"} 1",
            "piserve_requests_total{finish_reason=\"length\",model=\"llama-7b\"} 1",
            "piserve_requests_total{finish_reason=\"stop\",model=\"llama-7b\"} 1",
            "piserve_eval_tokens_scored_total{model=\"llama-7b\"} 4096",
            "piserve_requests_running{model=\"llama-7b\"} 1",
            "piserve_requests_waiting{model=\"llama-7b\"} 0",
            $"piserve_requests_waiting{{model=\"{odd}\"}} 1",
            "piserve_kv_cache_bytes_used{model=\"llama-7b\"} 3145728",
            "piserve_kv_cache_bytes_capacity{model=\"llama-7b\"} 1073741824",
            $"piserve_kv_cache_bytes_capacity{{model=\"{odd}\"}} 1048576",
            "piserve_prefix_cache_queries_total{model=\"llama-7b\"} 4096",
            "piserve_prefix_cache_hits_total{model=\"llama-7b\"} 4000",
            "piserve_prefix_cache_blocks{model=\"llama-7b\"} 250",
            "piserve_prefix_cache_bytes{model=\"llama-7b\"} 1024000",
            "piserve_eval_jobs{state=\"queued\"} 1",
            "piserve_eval_jobs{state=\"running\"} 1",
            "piserve_time_to_first_token_seconds_bucket{model=\"llama-7b\",le=\"0.04\"} 0",
            "piserve_time_to_first_token_seconds_bucket{model=\"llama-7b\",le=\"0.06\"} 2",
            "piserve_time_to_first_token_seconds_bucket{model=\"llama-7b\",le=\"0.25\"} 2",
            "piserve_time_to_first_token_seconds_bucket{model=\"llama-7b\",le=\"0.5\"} 3",
            "piserve_time_to_first_token_seconds_bucket{model=\"llama-7b\",le=\"60\"} 3",
            "piserve_time_to_first_token_seconds_bucket{model=\"llama-7b\",le=\"+Inf\"} 3",
            "piserve_time_to_first_token_seconds_count{model=\"llama-7b\"} 3",
            "piserve_inter_token_latency_seconds_bucket{model=\"llama-7b\",le=\"0.01\"} 0",
            "piserve_inter_token_latency_seconds_bucket{model=\"llama-7b\",le=\"0.015\"} 10",
            "piserve_inter_token_latency_seconds_count{model=\"llama-7b\"} 10",
            "piserve_request_duration_seconds_bucket{model=\"llama-7b\",le=\"0.5\"} 0",
            "piserve_request_duration_seconds_bucket{model=\"llama-7b\",le=\"1\"} 2",
            "piserve_request_duration_seconds_bucket{model=\"llama-7b\",le=\"2.5\"} 3",
            "piserve_request_duration_seconds_count{model=\"llama-7b\"} 3",
            "piserve_request_queue_seconds_bucket{model=\"llama-7b\",le=\"0.001\"} 0",
            "piserve_request_queue_seconds_bucket{model=\"llama-7b\",le=\"0.005\"} 2",
            "piserve_request_queue_seconds_bucket{model=\"llama-7b\",le=\"0.25\"} 3",
            "piserve_request_queue_seconds_bucket{model=\"llama-7b\",le=\"+Inf\"} 4",
            "piserve_request_queue_seconds_count{model=\"llama-7b\"} 4",
        })
            Assert.Contains(sample, lines);
        MetricsTestHost.AssertHistogramsAreConsistent(text);

        // The declared buckets are the ones exposed, in order, for every histogram.
        foreach (var (name, buckets) in new[]
        {
            ("piserve_time_to_first_token_seconds", PiServeMetrics.TimeToFirstTokenBuckets),
            ("piserve_inter_token_latency_seconds", PiServeMetrics.InterTokenLatencyBuckets),
            ("piserve_request_duration_seconds", PiServeMetrics.RequestDurationBuckets),
            ("piserve_request_queue_seconds", PiServeMetrics.RequestQueueBuckets),
        })
        {
            var les = lines.Where(l => l.StartsWith(name + "_bucket{model=\"llama-7b\"")).Select(l => l.Split("le=\"")[1].Split('"')[0]);
            Assert.Equal(buckets.Select(b => b.ToString("R", System.Globalization.CultureInfo.InvariantCulture)).Append("+Inf"), les);
        }
    }

    [RequiresToolFact("promtool", "prometheus")]
    public async Task PromtoolAcceptsTheExpositionOfAHostWithEveryInstrumentRecorded()
    {
        await using var host = await MetricsTestHost.StartAsync();
        MetricsTestHost.RecordEverything(host.Metrics);
        string text = await ScrapeAsync(host.MetricsUri);
        Assert.Contains("# TYPE process_cpu_seconds_total counter\n", text);
        Assert.Contains("# TYPE dotnet_collection_count_total counter\n", text);
        var (code, output) = MetricsTestHost.Promtool(text);
        Assert.True(code == 0, $"promtool check metrics exited {code}:\n{output}\n--- exposition ---\n{text}");
        Assert.Equal("", output.Trim());
    }

    [RequiresToolFact("promtool", "prometheus")]
    public async Task TheRealExecutableServesMetricsThatPromtoolAccepts()
    {
        int port = MetricsTestHost.FreePort();
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "piserve.dll"));
        psi.ArgumentList.Add("--urls");
        psi.ArgumentList.Add($"http://127.0.0.1:{port}");
        using var p = Process.Start(psi)!;
        p.OutputDataReceived += (_, _) => { };
        p.ErrorDataReceived += (_, _) => { };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        try
        {
            var uri = new Uri($"http://127.0.0.1:{port}/metrics");
            string? text = null;
            var deadline = Stopwatch.StartNew();
            while (text is null && deadline.Elapsed < TimeSpan.FromSeconds(20) && !p.HasExited)
            {
                try { text = await ScrapeAsync(uri); }
                catch (HttpRequestException) { await Task.Delay(200); }
            }
            Assert.NotNull(text);
            // The standard process metrics that tools/reliability/probe.mjs and the fuzz tests read, and prometheus-net's runtime ones.
            Assert.Contains("# TYPE process_cpu_seconds_total counter\n", text);
            foreach (var gauge in new[] { "process_resident_memory_bytes", "process_virtual_memory_bytes", "process_start_time_seconds", "process_open_fds", "process_max_fds" })
                Assert.Contains($"# TYPE {gauge} gauge\n", text);
            Assert.Matches(@"\nprocess_resident_memory_bytes [1-9][0-9]*\n", text);
            Assert.Contains("# TYPE dotnet_collection_count_total counter\n", text);
            var (code, output) = MetricsTestHost.Promtool(text!);
            Assert.True(code == 0, $"promtool check metrics exited {code}:\n{output}\n--- exposition ---\n{text}");
        }
        finally
        {
            if (!p.HasExited) p.Kill(entireProcessTree: true);
            p.WaitForExit(5_000);
        }
    }

    [Fact]
    public async Task TwoHostsInOneProcessDoNotSeeEachOthersValues()
    {
        await using var a = await MetricsTestHost.StartAsync();
        await using var b = await MetricsTestHost.StartAsync();
        a.Metrics.EvalTokensScored("only-in-a", 1);
        b.Metrics.EvalTokensScored("only-in-b", 2);
        string textA = await ScrapeAsync(a.MetricsUri), textB = await ScrapeAsync(b.MetricsUri);
        Assert.Contains("piserve_eval_tokens_scored_total{model=\"only-in-a\"} 1\n", textA);
        Assert.DoesNotContain("only-in-b", textA);
        Assert.Contains("piserve_eval_tokens_scored_total{model=\"only-in-b\"} 2\n", textB);
        Assert.DoesNotContain("only-in-a", textB);
    }

    [Fact]
    public async Task AScraperAskingForOpenMetricsStillGetsTheTextFormat()
    {
        await using var host = await MetricsTestHost.StartAsync();
        host.Metrics.EvalTokensScored("m", 3);
        using var request = new HttpRequestMessage(HttpMethod.Get, host.MetricsUri);
        // What Prometheus 2.x sends: prometheus-net would answer OpenMetrics to it, were that not turned off.
        request.Headers.TryAddWithoutValidation("Accept",
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1");
        using var response = await Http.SendAsync(request);
        Assert.Equal("text/plain; version=0.0.4; charset=utf-8", response.Content.Headers.ContentType!.ToString());
        string text = await response.Content.ReadAsStringAsync();
        Assert.Contains("piserve_eval_tokens_scored_total{model=\"m\"} 3\n", text);
        Assert.DoesNotContain("# EOF", text);
    }

    [Fact]
    public async Task OnlyGetIsServed()
    {
        await using var host = await MetricsTestHost.StartAsync();
        using var response = await Http.PostAsync(host.MetricsUri, new StringContent(""));
        Assert.Equal(System.Net.HttpStatusCode.MethodNotAllowed, response.StatusCode);
    }

    [Fact]
    public async Task MetricsAreNotInTheApiDescription()
    {
        var builder = Microsoft.AspNetCore.Builder.WebApplication.CreateBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Services.AddEndpointsApiExplorer();
        builder.Services.AddPiServeMetrics();
        await using var app = builder.Build();
        app.MapPrometheusMetrics("/metrics");
        app.MapGet("/control", () => "x");
        await app.StartAsync();
        try
        {
            var paths = app.Services.GetRequiredService<Microsoft.AspNetCore.Mvc.ApiExplorer.IApiDescriptionGroupCollectionProvider>()
                .ApiDescriptionGroups.Items.SelectMany(g => g.Items).Select(d => d.RelativePath).ToList();
            Assert.Contains("control", paths);
            Assert.DoesNotContain(paths, p => p is not null && p.Contains("metrics"));
        }
        finally { await app.StopAsync(); }
    }

    [Fact]
    public void MapPrometheusMetricsWithoutAddPiServeMetricsSaysSo()
    {
        var builder = Microsoft.AspNetCore.Builder.WebApplication.CreateBuilder();
        var app = builder.Build();
        var e = Assert.Throws<InvalidOperationException>(() => app.MapPrometheusMetrics("/metrics"));
        Assert.Contains("AddPiServeMetrics", e.Message);
    }
}
