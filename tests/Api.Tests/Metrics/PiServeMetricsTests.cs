using Microsoft.Extensions.DependencyInjection;
using PiServe.Api.Metrics;

namespace PiServe.Api.Tests.Metrics;

/// <summary>What each PiServeMetrics method records, through DI without a web server.</summary>
public class PiServeMetricsTests
{
    private static (ServiceProvider Services, PiServeMetrics Metrics, PrometheusExposition Exposition) NewServices()
    {
        var services = new ServiceCollection().AddPiServeMetrics(o =>
        {
            o.IncludeProcessMetrics = false;
            o.IncludeRuntimeMetrics = false;
        }).BuildServiceProvider();
        return (services, services.GetRequiredService<PiServeMetrics>(), services.GetRequiredService<PrometheusExposition>());
    }

    [Fact]
    public void OneMeterNamedPiServeFromTheHostsFactory()
    {
        var (services, metrics, _) = NewServices();
        using var _ = services;
        Assert.Equal("PiServe", metrics.Meter.Name);
        Assert.Same(services.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>(), metrics.Meter.Scope);
        Assert.Same(metrics, services.GetRequiredService<PiServeMetrics>());
    }

    [Fact]
    public void ATrackedRequestRecordsItsWholeLifecycle()
    {
        var (services, metrics, exposition) = NewServices();
        using var _ = services;
        using (var t = metrics.TrackRequest("m"))
        {
            Assert.Contains("piserve_requests_waiting{model=\"m\"} 1\n", exposition.Render());
            t.PromptTokens = 17;
            t.Started();
            Assert.Contains("piserve_requests_running{model=\"m\"} 1\n", exposition.Render());
            for (int i = 0; i < 3; i++) t.Token();
            t.Finish(PiServeMetrics.FinishReasons.Length);
            t.Finish(PiServeMetrics.FinishReasons.Stop); // ignored: already finished
        } // Dispose after Finish does nothing
        string text = exposition.Render();
        foreach (var line in new[]
        {
            "piserve_requests_waiting{model=\"m\"} 0",
            "piserve_requests_running{model=\"m\"} 0",
            "piserve_requests_total{finish_reason=\"length\",model=\"m\"} 1",
            "piserve_prompt_tokens_total{model=\"m\"} 17",
            "piserve_generation_tokens_total{model=\"m\"} 3",
            "piserve_time_to_first_token_seconds_count{model=\"m\"} 1",
            "piserve_inter_token_latency_seconds_count{model=\"m\"} 2",
            "piserve_request_queue_seconds_count{model=\"m\"} 1",
            "piserve_request_duration_seconds_count{model=\"m\"} 1",
        })
            Assert.Contains(line + "\n", text);
        Assert.DoesNotContain("finish_reason=\"stop\"", text);
    }

    [Fact]
    public void AnAbandonedTrackerIsAnAbortAndANeverStartedOneIsNotCountedAsRunning()
    {
        var (services, metrics, exposition) = NewServices();
        using var _ = services;
        using (var t = metrics.TrackRequest("m")) { t.Token(); } // starts implicitly, then disposed unfinished
        using (metrics.TrackRequest("m")) { } // never started
        string text = exposition.Render();
        Assert.Contains("piserve_requests_total{finish_reason=\"abort\",model=\"m\"} 2\n", text);
        Assert.Contains("piserve_requests_running{model=\"m\"} 0\n", text);
        Assert.Contains("piserve_requests_waiting{model=\"m\"} 0\n", text);
        Assert.Contains("piserve_generation_tokens_total{model=\"m\"} 1\n", text);
        Assert.Contains("piserve_request_queue_seconds_count{model=\"m\"} 2\n", text);
        Assert.Contains("piserve_request_duration_seconds_count{model=\"m\"} 2\n", text);
    }

    [Fact]
    public void EvalJobsMoveBetweenStatesAndKvCacheIsTheLastValue()
    {
        var (services, metrics, exposition) = NewServices();
        using var _ = services;
        metrics.EvalJobMoved(null, "queued");
        metrics.EvalJobMoved("queued", "running");
        metrics.EvalJobMoved("running", "completed");
        metrics.EvalJobMoved(null, "queued");
        metrics.EvalTokensScored("m", 100);
        metrics.EvalTokensScored("m", 0);
        metrics.SetKvCache("m", 10, 100);
        metrics.SetKvCache("m", 30, 100);
        string text = exposition.Render();
        Assert.Contains("piserve_eval_jobs{state=\"completed\"} 1\npiserve_eval_jobs{state=\"queued\"} 1\npiserve_eval_jobs{state=\"running\"} 0\n", text);
        Assert.Contains("piserve_eval_tokens_scored_total{model=\"m\"} 100\n", text);
        Assert.Contains("piserve_kv_cache_bytes_used{model=\"m\"} 30\n", text);
        Assert.Contains("piserve_kv_cache_bytes_capacity{model=\"m\"} 100\n", text);
    }

    [Fact]
    public void NothingRecordedMeansNoPiServeSeries()
    {
        var (services, _, exposition) = NewServices();
        using var __ = services;
        Assert.DoesNotContain("piserve_", exposition.Render());
    }
}
