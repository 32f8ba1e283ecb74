using System.Diagnostics;
using System.Globalization;
using System.Net.Http;
using System.Text;
using System.Text.Json.Nodes;

namespace PiServe.Inference.Tests.Metrics;

/// <summary>A real Prometheus server scrapes a real PiServe host and answers PromQL over what it scraped.</summary>
public class PrometheusServerTests
{
    [PrometheusFact]
    public async Task PrometheusScrapesTheHostAndAnswersQueries()
    {
        await using var host = await MetricsTestHost.StartAsync();
        MetricsTestHost.RecordEverything(host.Metrics);

        using var dir = new TempDir();
        int port = MetricsTestHost.FreePort();
        File.WriteAllText(dir.File("prometheus.yml"), $"""
            global:
              scrape_interval: 1s
              scrape_timeout: 1s
              evaluation_interval: 1s
            scrape_configs:
              - job_name: piserve
                metrics_path: /metrics
                static_configs:
                  - targets: ['127.0.0.1:{host.BaseAddress.Port}']
            """);
        var psi = new ProcessStartInfo(MetricsTestHost.FindOnPath("prometheus")!)
        {
            RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = dir.Path,
        };
        foreach (var a in new[]
        {
            "--config.file=" + dir.File("prometheus.yml"),
            "--storage.tsdb.path=" + dir.File("data"),
            $"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        })
            psi.ArgumentList.Add(a);
        var log = new StringBuilder();
        using var prometheus = Process.Start(psi)!;
        prometheus.OutputDataReceived += (_, e) => { lock (log) log.AppendLine(e.Data); };
        prometheus.ErrorDataReceived += (_, e) => { lock (log) log.AppendLine(e.Data); };
        prometheus.BeginOutputReadLine();
        prometheus.BeginErrorReadLine();
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(3) };
        string Log() { lock (log) return log.ToString(); }

        async Task<JsonArray?> QueryAsync(string promql)
        {
            var body = await http.GetStringAsync($"http://127.0.0.1:{port}/api/v1/query?query={Uri.EscapeDataString(promql)}");
            var json = JsonNode.Parse(body)!;
            Assert.Equal("success", json["status"]!.GetValue<string>());
            return json["data"]!["result"]!.AsArray();
        }

        static double Value(JsonNode sample) => double.Parse(sample["value"]![1]!.GetValue<string>(), CultureInfo.InvariantCulture);

        try
        {
            // Wait (bounded) until Prometheus is up and has scraped the host at least once.
            JsonArray? tokens = null;
            var clock = Stopwatch.StartNew();
            while (clock.Elapsed < TimeSpan.FromSeconds(20) && !prometheus.HasExited)
            {
                try
                {
                    tokens = await QueryAsync("piserve_generation_tokens_total");
                    if (tokens!.Count > 0) break;
                }
                catch (HttpRequestException) { }
                catch (TaskCanceledException) { }
                await Task.Delay(250);
            }
            Assert.False(prometheus.HasExited, "prometheus exited:\n" + Log());
            Assert.True(tokens is { Count: > 0 }, "prometheus did not scrape piserve_generation_tokens_total within 20 s:\n" + Log());

            var sample = Assert.Single(tokens!);
            Assert.Equal("llama-7b", sample!["metric"]!["model"]!.GetValue<string>());
            Assert.Equal("piserve", sample["metric"]!["job"]!.GetValue<string>());
            Assert.Equal(12, Value(sample));

            // TTFT observations 0.05, 0.05, 0.3: the median interpolates inside (0.04, 0.06]: 0.04 + 0.02 * 1.5/2.
            var median = Assert.Single((await QueryAsync(
                "histogram_quantile(0.5, sum by (le) (piserve_time_to_first_token_seconds_bucket{model=\"llama-7b\"}))"))!);
            Assert.Equal(0.055, Value(median!), 9);
            var p99 = Assert.Single((await QueryAsync(
                "histogram_quantile(0.99, sum by (le) (piserve_time_to_first_token_seconds_bucket{model=\"llama-7b\"}))"))!);
            Assert.InRange(Value(p99!), 0.25, 0.5);

            // The label value that needed escaping arrives intact.
            var waiting = Assert.Single((await QueryAsync("piserve_requests_waiting > 0"))!);
            Assert.Equal("odd \"model\" \\ with\nnewline", waiting!["metric"]!["model"]!.GetValue<string>());
        }
        finally
        {
            if (!prometheus.HasExited) prometheus.Kill(entireProcessTree: true);
            prometheus.WaitForExit(5_000);
        }
    }
}
