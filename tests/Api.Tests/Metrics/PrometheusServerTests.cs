using System.Globalization;
using System.Text.Json.Nodes;

namespace PiServe.Api.Tests.Metrics;

/// <summary>A real Prometheus server scrapes a real PiServe host and answers PromQL over what it scraped.</summary>
public class PrometheusServerTests
{
    [RequiresToolFact("prometheus", "prometheus")]
    public async Task PrometheusScrapesTheHostAndAnswersQueries()
    {
        await using var host = await MetricsTestHost.StartAsync();
        MetricsTestHost.RecordEverything(host.Metrics);

        using var prometheus = new PrometheusServer($"""
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
        static double Value(JsonNode sample) => double.Parse(sample["value"]![1]!.GetValue<string>(), CultureInfo.InvariantCulture);

        // Wait (bounded) until Prometheus is up and has scraped the host at least once.
        var tokens = await prometheus.WaitForDataAsync("piserve_generation_tokens_total", TimeSpan.FromSeconds(20));
        Assert.False(prometheus.HasExited, "prometheus exited:\n" + prometheus.Log);
        Assert.True(tokens is { Count: > 0 }, "prometheus did not scrape piserve_generation_tokens_total within 20 s:\n" + prometheus.Log);

        var sample = Assert.Single(tokens!);
        Assert.Equal("llama-7b", sample!["metric"]!["model"]!.GetValue<string>());
        Assert.Equal("piserve", sample["metric"]!["job"]!.GetValue<string>());
        Assert.Equal(12, Value(sample));

        // TTFT observations 0.05, 0.05, 0.3: the median interpolates inside (0.04, 0.06]: 0.04 + 0.02 * 1.5/2.
        var median = Assert.Single((await prometheus.QueryAsync(
            "histogram_quantile(0.5, sum by (le) (piserve_time_to_first_token_seconds_bucket{model=\"llama-7b\"}))"))!);
        Assert.Equal(0.055, Value(median!), 9);
        var p99 = Assert.Single((await prometheus.QueryAsync(
            "histogram_quantile(0.99, sum by (le) (piserve_time_to_first_token_seconds_bucket{model=\"llama-7b\"}))"))!);
        Assert.InRange(Value(p99!), 0.25, 0.5);

        // The label value that needed escaping arrives intact.
        var waiting = Assert.Single((await prometheus.QueryAsync("piserve_requests_waiting > 0"))!);
        Assert.Equal("odd \"model\" \\ with\nnewline", waiting!["metric"]!["model"]!.GetValue<string>());
    }
}
