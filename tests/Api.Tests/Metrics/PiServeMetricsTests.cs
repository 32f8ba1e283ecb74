using Microsoft.Extensions.DependencyInjection;
using PiServe.Api.Metrics;
using Prometheus;

namespace PiServe.Api.Tests.Metrics;

/// <summary>What each PiServeMetrics method records, on an isolated prometheus-net registry, without a web server.</summary>
public class PiServeMetricsTests
{
    private static (PiServeMetrics Metrics, Func<string> Render) NewMetrics()
    {
        var registry = Prometheus.Metrics.NewCustomRegistry();
        return (new PiServeMetrics(registry), () => MetricsTestHost.Render(registry));
    }

    [Fact]
    public void DiGivesOneInstanceOnARegistryOfItsOwnWithTheProcessMetrics()
    {
        using var services = new ServiceCollection().AddPiServeMetrics().AddPiServeMetrics().BuildServiceProvider();
        var metrics = services.GetRequiredService<PiServeMetrics>();
        Assert.Same(metrics, services.GetRequiredService<PiServeMetrics>());
        Assert.NotSame(Prometheus.Metrics.DefaultRegistry, metrics.Registry);
        using var other = new ServiceCollection().AddPiServeMetrics().BuildServiceProvider();
        Assert.NotSame(metrics.Registry, other.GetRequiredService<PiServeMetrics>().Registry);
        string text = MetricsTestHost.Render(metrics.Registry);
        Assert.Contains("# TYPE process_cpu_seconds_total counter\n", text);
        Assert.Contains("# TYPE process_resident_memory_bytes gauge\n", text);
        Assert.Contains("# TYPE piserve_requests_total counter\n", text);
    }

    [Fact]
    public void AnIsolatedInstanceHasOnlyThePiServeFamilies()
    {
        var (_, render) = NewMetrics();
        var types = render().Split('\n').Where(l => l.StartsWith("# TYPE ")).Select(l => l.Split(' ')[2]).Order();
        Assert.Equal(PiServeMetrics.Names.Exposed.Order(), types);
    }

    [Fact]
    public void ARequestsWholeLifecycle()
    {
        var (metrics, render) = NewMetrics();
        metrics.RequestQueued("m");
        Assert.Contains("piserve_requests_waiting{model=\"m\"} 1\n", render());
        metrics.RequestDequeued("m", 0.003);
        metrics.RequestStarted("m");
        Assert.Contains("piserve_requests_running{model=\"m\"} 1\n", render());
        metrics.FirstToken("m", 0.05);
        metrics.TokenGenerated("m", 0.012);
        metrics.TokenGenerated("m", 0.013);
        metrics.RequestFinished("m", PiServeMetrics.FinishReasons.Length, 0.6, 17, 3);
        string text = render();
        foreach (var line in new[]
        {
            "piserve_requests_waiting{model=\"m\"} 0",
            "piserve_requests_running{model=\"m\"} 0",
            "piserve_requests_total{finish_reason=\"length\",model=\"m\"} 1",
            "piserve_prompt_tokens_total{model=\"m\"} 17",
            "piserve_generation_tokens_total{model=\"m\"} 3",
            "piserve_time_to_first_token_seconds_bucket{model=\"m\",le=\"0.04\"} 0",
            "piserve_time_to_first_token_seconds_bucket{model=\"m\",le=\"0.06\"} 1",
            "piserve_time_to_first_token_seconds_sum{model=\"m\"} 0.05",
            "piserve_time_to_first_token_seconds_count{model=\"m\"} 1",
            "piserve_inter_token_latency_seconds_bucket{model=\"m\",le=\"0.01\"} 0",
            "piserve_inter_token_latency_seconds_bucket{model=\"m\",le=\"0.015\"} 2",
            "piserve_inter_token_latency_seconds_count{model=\"m\"} 2",
            "piserve_request_queue_seconds_bucket{model=\"m\",le=\"0.001\"} 0",
            "piserve_request_queue_seconds_bucket{model=\"m\",le=\"0.005\"} 1",
            "piserve_request_queue_seconds_count{model=\"m\"} 1",
            "piserve_request_duration_seconds_bucket{model=\"m\",le=\"0.5\"} 0",
            "piserve_request_duration_seconds_bucket{model=\"m\",le=\"1\"} 1",
            "piserve_request_duration_seconds_count{model=\"m\"} 1",
        })
            Assert.Contains(line + "\n", text);
        Assert.DoesNotContain("finish_reason=\"stop\"", text);
        MetricsTestHost.AssertHistogramsAreConsistent(text);
    }

    [Fact]
    public void ARequestDroppedWhileQueuedIsAnAbortAndNeverRunning()
    {
        var (metrics, render) = NewMetrics();
        metrics.RequestQueued("m");
        metrics.RequestDequeued("m", 1.5);
        metrics.RequestRejected("m", PiServeMetrics.FinishReasons.Abort, 1.5);
        metrics.RequestRejected("m", "queue_full", 0);
        string text = render();
        Assert.Contains("piserve_requests_total{finish_reason=\"abort\",model=\"m\"} 1\n", text);
        Assert.Contains("piserve_requests_total{finish_reason=\"queue_full\",model=\"m\"} 1\n", text);
        Assert.Contains("piserve_requests_waiting{model=\"m\"} 0\n", text);
        Assert.DoesNotContain("piserve_requests_running{", text);
        Assert.Contains("piserve_request_queue_seconds_count{model=\"m\"} 1\n", text);
        Assert.Contains("piserve_request_duration_seconds_count{model=\"m\"} 2\n", text);
    }

    [Fact]
    public void EvalJobsMoveBetweenStatesAndKvCacheIsTheLastValue()
    {
        var (metrics, render) = NewMetrics();
        metrics.EvalJobMoved(null, "queued");
        metrics.EvalJobMoved("queued", "running");
        metrics.EvalJobMoved("running", "completed");
        metrics.EvalJobMoved(null, "queued");
        metrics.EvalTokensScored("m", 100);
        metrics.EvalTokensScored("m", 0);
        metrics.SetKvCache("m", 10, 100);
        metrics.SetKvCache("m", 30, 100);
        string text = render();
        Assert.Contains("piserve_eval_jobs{state=\"completed\"} 1\n", text);
        Assert.Contains("piserve_eval_jobs{state=\"queued\"} 1\n", text);
        Assert.Contains("piserve_eval_jobs{state=\"running\"} 0\n", text);
        Assert.Contains("piserve_eval_tokens_scored_total{model=\"m\"} 100\n", text);
        Assert.Contains("piserve_kv_cache_bytes_used{model=\"m\"} 30\n", text);
        Assert.Contains("piserve_kv_cache_bytes_capacity{model=\"m\"} 100\n", text);
    }

    [Fact]
    public void NothingRecordedMeansNoPiServeSamples()
    {
        var (_, render) = NewMetrics();
        Assert.DoesNotContain(render().Split('\n'), l => l.StartsWith("piserve_"));
    }

    [Fact]
    public void DeclaringAModelAndTheEvalStatesExposesEverySeriesAtZero()
    {
        var (metrics, render) = NewMetrics();
        metrics.DeclareModel("m", 1L << 30);
        metrics.DeclareEvalStates(["queued", "running"]);
        var samples = render().Split('\n').Where(l => l.StartsWith("piserve_")).ToList();
        foreach (var line in new[]
        {
            "piserve_prompt_tokens_total{model=\"m\"} 0",
            "piserve_generation_tokens_total{model=\"m\"} 0",
            "piserve_eval_tokens_scored_total{model=\"m\"} 0",
            "piserve_requests_total{finish_reason=\"stop\",model=\"m\"} 0",
            "piserve_requests_total{finish_reason=\"length\",model=\"m\"} 0",
            "piserve_requests_total{finish_reason=\"abort\",model=\"m\"} 0",
            "piserve_requests_total{finish_reason=\"error\",model=\"m\"} 0",
            "piserve_requests_running{model=\"m\"} 0",
            "piserve_requests_waiting{model=\"m\"} 0",
            "piserve_kv_cache_bytes_used{model=\"m\"} 0",
            "piserve_kv_cache_bytes_capacity{model=\"m\"} 1073741824",
            "piserve_prefix_cache_queries_total{model=\"m\"} 0",
            "piserve_prefix_cache_hits_total{model=\"m\"} 0",
            "piserve_prefix_cache_blocks{model=\"m\"} 0",
            "piserve_prefix_cache_bytes{model=\"m\"} 0",
            "piserve_eval_jobs{state=\"queued\"} 0",
            "piserve_eval_jobs{state=\"running\"} 0",
            "piserve_time_to_first_token_seconds_bucket{model=\"m\",le=\"+Inf\"} 0",
            "piserve_time_to_first_token_seconds_count{model=\"m\"} 0",
            "piserve_inter_token_latency_seconds_bucket{model=\"m\",le=\"+Inf\"} 0",
            "piserve_request_duration_seconds_bucket{model=\"m\",le=\"+Inf\"} 0",
            "piserve_request_queue_seconds_bucket{model=\"m\",le=\"+Inf\"} 0",
        })
            Assert.Contains(line, samples);
        // Every sample is zero but the capacity; declaring again changes nothing but the capacity.
        Assert.All(samples.Where(l => !l.StartsWith("piserve_kv_cache_bytes_capacity")), l => Assert.EndsWith(" 0", l));
        metrics.RequestQueued("m");
        metrics.DeclareModel("m", 1L << 20);
        string text = render();
        Assert.Contains("piserve_requests_waiting{model=\"m\"} 1\n", text);
        Assert.Contains("piserve_kv_cache_bytes_capacity{model=\"m\"} 1048576\n", text);
    }

    [Fact]
    public void PrefixCacheLookupsAddTokensAndTheGaugesHoldWhatIsCached()
    {
        var (metrics, render) = NewMetrics();
        metrics.PrefixCacheLookup("m", 300, 0);
        metrics.PrefixCacheLookup("m", 320, 288);
        metrics.SetPrefixCache("m", 20, 20 * 8192);
        string text = render();
        Assert.Contains("piserve_prefix_cache_queries_total{model=\"m\"} 620\n", text);
        Assert.Contains("piserve_prefix_cache_hits_total{model=\"m\"} 288\n", text);
        Assert.Contains("piserve_prefix_cache_blocks{model=\"m\"} 20\n", text);
        Assert.Contains("piserve_prefix_cache_bytes{model=\"m\"} 163840\n", text);
        // On the dashboard's list (the deploy tests hold the dashboard to it).
        Assert.Equal(PiServeMetrics.Names.PrefixCache, PiServeMetrics.Names.PrefixCache.Intersect(PiServeMetrics.Names.All));
    }

    [Fact]
    public void TwoInstancesOnOneRegistryShareTheirSeries()
    {
        var registry = Prometheus.Metrics.NewCustomRegistry();
        new PiServeMetrics(registry).EvalTokensScored("m", 2);
        new PiServeMetrics(registry).EvalTokensScored("m", 3);
        Assert.Contains("piserve_eval_tokens_scored_total{model=\"m\"} 5\n", MetricsTestHost.Render(registry));
    }

    [Fact]
    public async Task ConcurrentRecordingIsExactAndEveryScrapeIsConsistent()
    {
        var (metrics, render) = NewMetrics();
        const int threads = 4, perThread = 20_000;
        using var done = new CancellationTokenSource();
        using var firstScrape = new ManualResetEventSlim();
        int scrapes = 0;
        var scraper = Task.Factory.StartNew(() =>
        {
            while (!done.IsCancellationRequested)
            {
                MetricsTestHost.AssertHistogramsAreConsistent(render(), whileRecording: true);
                scrapes++;
                firstScrape.Set();
            }
        }, TaskCreationOptions.LongRunning);
        Assert.True(firstScrape.Wait(TimeSpan.FromSeconds(10)));
        var recorders = Enumerable.Range(0, threads).Select(t => new Thread(() =>
        {
            string model = "m" + (t % 2);
            for (int i = 0; i < perThread; i++)
            {
                metrics.RequestStarted(model);
                metrics.TokenGenerated(model, (i % 4) * 0.004);
                metrics.RequestFinished(model, PiServeMetrics.FinishReasons.Stop, 0.1, 2, 1);
            }
        })).ToList();
        recorders.ForEach(r => r.Start());
        recorders.ForEach(r => Assert.True(r.Join(TimeSpan.FromSeconds(30))));
        done.Cancel();
        await scraper.WaitAsync(TimeSpan.FromSeconds(30));
        string text = render();
        MetricsTestHost.AssertHistogramsAreConsistent(text);
        const int perModel = threads / 2 * perThread;
        Assert.Contains($"piserve_generation_tokens_total{{model=\"m0\"}} {perModel}\n", text);
        Assert.Contains($"piserve_prompt_tokens_total{{model=\"m1\"}} {2 * perModel}\n", text);
        Assert.Contains($"piserve_requests_total{{finish_reason=\"stop\",model=\"m0\"}} {perModel}\n", text);
        Assert.Contains("piserve_requests_running{model=\"m0\"} 0\n", text);
        // A quarter of the latencies are 0 (le 0.0005), a quarter 0.004 (le 0.005), half 0.008/0.012.
        Assert.Contains($"piserve_inter_token_latency_seconds_bucket{{model=\"m1\",le=\"0.0005\"}} {perModel / 4}\n", text);
        Assert.Contains($"piserve_inter_token_latency_seconds_bucket{{model=\"m1\",le=\"0.005\"}} {perModel / 2}\n", text);
        Assert.Contains($"piserve_inter_token_latency_seconds_count{{model=\"m1\"}} {perModel}\n", text);
        Assert.True(scrapes >= 1);
    }
}
