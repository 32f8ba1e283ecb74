using System.Diagnostics.Metrics;
using PiServe.Api.Metrics;

namespace PiServe.Api.Tests.Metrics;

/// <summary>The MeterListener collector: aggregation, naming and thread-safety, on a private meter.</summary>
public class PrometheusExpositionTests
{
    private static (Meter Meter, PrometheusExposition Exposition) NewMeter()
    {
        var meter = new Meter("test." + Guid.NewGuid().ToString("N"));
        return (meter, new PrometheusExposition(m => ReferenceEquals(m, meter)));
    }

    private static KeyValuePair<string, object?> Tag(string key, object? value) => new(key, value);

    [Fact]
    public void EveryKindOfInstrumentRendersExactly()
    {
        var (meter, exposition) = NewMeter();
        using var _ = meter;
        using var __ = exposition;

        var requests = meter.CreateCounter<long>("app.requests", "{request}", "Requests finished.");
        requests.Add(2, Tag("model", "a"), Tag("finish_reason", "stop"));
        requests.Add(3, Tag("model", "b"), Tag("finish_reason", "stop"));
        requests.Add(1, Tag("finish_reason", "stop"), Tag("model", "a")); // tag order does not matter
        requests.Add(-5, Tag("model", "a"), Tag("finish_reason", "stop")); // counters never go down

        var latency = meter.CreateHistogram<double>("app.latency", "s", "Latency.", tags: null,
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.25, 1, 2.5] });
        foreach (var v in new[] { 0.25, 0.5, 1, 8 }) latency.Record(v, Tag("model", "a"));

        meter.CreateObservableGauge("app.queue", () => new Measurement<int>(7, Tag("queue", "x\"y")), "{item}", "Queue length.");
        var running = meter.CreateUpDownCounter<int>("app.running");
        running.Add(3);
        running.Add(-1);
        var used = meter.CreateGauge<long>("app.cache.bytes_used", "By", "Cache bytes used.");
        used.Record(100, Tag("model", "a"));
        used.Record(40, Tag("model", "a"));
        meter.CreateCounter<long>("app.unused", "{x}", "Never recorded."); // no series: not exposed

        const string expected = """
            # HELP app_cache_bytes_used Cache bytes used.
            # TYPE app_cache_bytes_used gauge
            app_cache_bytes_used{model="a"} 40
            # HELP app_latency_seconds Latency.
            # TYPE app_latency_seconds histogram
            app_latency_seconds_bucket{model="a",le="0.25"} 1
            app_latency_seconds_bucket{model="a",le="1"} 3
            app_latency_seconds_bucket{model="a",le="2.5"} 3
            app_latency_seconds_bucket{model="a",le="+Inf"} 4
            app_latency_seconds_sum{model="a"} 9.75
            app_latency_seconds_count{model="a"} 4
            # HELP app_queue Queue length.
            # TYPE app_queue gauge
            app_queue{queue="x\"y"} 7
            # HELP app_requests_total Requests finished.
            # TYPE app_requests_total counter
            app_requests_total{finish_reason="stop",model="a"} 3
            app_requests_total{finish_reason="stop",model="b"} 3
            # HELP app_running app.running
            # TYPE app_running gauge
            app_running 2

            """;
        Assert.Equal(expected.ReplaceLineEndings("\n"), exposition.Render());
    }

    [Fact]
    public void HistogramsWithoutAdviceUseThePrometheusDefaultBuckets()
    {
        var (meter, exposition) = NewMeter();
        using var _ = meter;
        using var __ = exposition;
        meter.CreateHistogram<int>("app.size", "By").Record(3);
        string text = exposition.Render();
        var les = text.Split('\n').Where(l => l.StartsWith("app_size_bytes_bucket")).Select(l => l[(l.IndexOf("le=\"") + 4)..l.LastIndexOf('"')]);
        Assert.Equal(PrometheusExposition.DefaultBuckets.Select(PrometheusTextWriter.FormatValue).Append("+Inf"), les);
        Assert.Contains("app_size_bytes_sum 3\n", text);
    }

    [Fact]
    public void ObservableInstrumentsReportWhatTheCallbackReturnsAtEachScrape()
    {
        var (meter, exposition) = NewMeter();
        using var _ = meter;
        using var __ = exposition;
        var current = new List<Measurement<long>> { new(5, Tag("gen", 0)), new(1, Tag("gen", 1)) };
        meter.CreateObservableCounter("app.collections", () => current, "{collection}", "Collections.");
        Assert.Contains("app_collections_total{gen=\"0\"} 5\napp_collections_total{gen=\"1\"} 1\n", exposition.Render());
        current = [new(9, Tag("gen", 0))];
        string text = exposition.Render();
        Assert.Contains("app_collections_total{gen=\"0\"} 9\n", text);
        Assert.DoesNotContain("gen=\"1\"", text);
    }

    [Fact]
    public void DisposedMetersDisappear()
    {
        var (meter, exposition) = NewMeter();
        using var __ = exposition;
        meter.CreateCounter<int>("app.x").Add(1);
        Assert.Contains("app_x_total 1\n", exposition.Render());
        meter.Dispose();
        Assert.Equal("", exposition.Render());
    }

    [Fact]
    public void OtherMetersAreNotCollected()
    {
        var (meter, exposition) = NewMeter();
        using var _ = meter;
        using var __ = exposition;
        using var other = new Meter(meter.Name); // same name, different meter
        other.CreateCounter<int>("app.x").Add(1);
        Assert.Equal("", exposition.Render());
    }

    [Theory]
    [InlineData("counter", "piserve.requests", "{request}", "piserve_requests_total")]
    [InlineData("counter", "a.b", "s", "a_b_seconds_total")]
    [InlineData("counter", "x_total", "By", "x_bytes_total")]
    [InlineData("counter", "dotnet.gc.pause.time", "s", "dotnet_gc_pause_time_seconds_total")]
    [InlineData("updown", "dotnet.assembly.count", "{assembly}", "dotnet_assembly_count_value")]
    [InlineData("updown", "piserve.kv_cache.bytes_used", "By", "piserve_kv_cache_bytes_used")]
    [InlineData("updown", "net.rate", "By/s", "net_rate_bytes_per_second")]
    [InlineData("updown", "ratio", "1", "ratio")]
    [InlineData("histogram", "piserve.time_to_first_token", "s", "piserve_time_to_first_token_seconds")]
    [InlineData("histogram", "http.server.request.duration", "s", "http_server_request_duration_seconds")]
    [InlineData("histogram", "latency_seconds", "s", "latency_seconds")]
    public void FamilyNamesFollowThePrometheusConventions(string kind, string name, string unit, string expected)
    {
        using var meter = new Meter("naming");
        Instrument instrument = kind switch
        {
            "counter" => meter.CreateCounter<long>(name, unit),
            "updown" => meter.CreateUpDownCounter<long>(name, unit),
            _ => meter.CreateHistogram<double>(name, unit),
        };
        Assert.Equal(expected, PrometheusExposition.FamilyName(instrument));
    }

    [Fact]
    public async Task ConcurrentRecordingIsExactAndEveryScrapeIsConsistent()
    {
        var (meter, exposition) = NewMeter();
        using var _ = meter;
        using var __ = exposition;
        var counter = meter.CreateCounter<long>("app.tokens");
        var gauge = meter.CreateUpDownCounter<long>("app.running");
        var histogram = meter.CreateHistogram<double>("app.latency", "s", null, null,
            new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.001, 0.01, 0.1] });
        const int threads = 4, perThread = 50_000;
        using var done = new CancellationTokenSource();
        using var firstScrape = new ManualResetEventSlim();
        int scrapes = 0;
        var scraper = Task.Factory.StartNew(() =>
        {
            while (!done.IsCancellationRequested)
            {
                AssertHistogramsAreConsistent(exposition.Render());
                scrapes++;
                firstScrape.Set();
            }
        }, TaskCreationOptions.LongRunning);
        Assert.True(firstScrape.Wait(TimeSpan.FromSeconds(10)));
        var recorders = Enumerable.Range(0, threads).Select(t => new Thread(() =>
        {
            var model = Tag("model", "m" + (t % 2));
            for (int i = 0; i < perThread; i++)
            {
                counter.Add(1, model);
                gauge.Add(1, model);
                histogram.Record((i % 4) * 0.004, model);
                gauge.Add(-1, model);
            }
        })).ToList();
        recorders.ForEach(r => r.Start());
        recorders.ForEach(r => Assert.True(r.Join(TimeSpan.FromSeconds(20))));
        done.Cancel();
        await scraper.WaitAsync(TimeSpan.FromSeconds(30));
        string text = exposition.Render();
        AssertHistogramsAreConsistent(text);
        Assert.Contains($"app_tokens_total{{model=\"m0\"}} {threads / 2 * perThread}\n", text);
        Assert.Contains($"app_tokens_total{{model=\"m1\"}} {threads / 2 * perThread}\n", text);
        Assert.Contains("app_running{model=\"m0\"} 0\n", text);
        Assert.Contains($"app_latency_seconds_count{{model=\"m1\"}} {threads / 2 * perThread}\n", text);
        // Per thread: a quarter of the values are 0 (le 0.001), a quarter 0.004 (le 0.01), half 0.008/0.012.
        Assert.Contains($"app_latency_seconds_bucket{{model=\"m0\",le=\"0.001\"}} {threads / 2 * perThread / 4}\n", text);
        Assert.Contains($"app_latency_seconds_bucket{{model=\"m0\",le=\"0.01\"}} {threads / 2 * perThread * 3 / 4}\n", text);
        Assert.True(scrapes >= 1);
    }

    /// <summary>Buckets never decrease, and +Inf equals _count, in every series of every histogram.</summary>
    internal static void AssertHistogramsAreConsistent(string text)
    {
        var buckets = new Dictionary<string, List<double>>();
        var counts = new Dictionary<string, double>();
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            if (line.StartsWith('#')) continue;
            var (name, labels, value) = ParseSample(line);
            if (name.EndsWith("_bucket"))
            {
                var m = System.Text.RegularExpressions.Regex.Match(labels, ",?le=\"[^\"]*\"");
                string key = name[..^"_bucket".Length] + "{" + labels.Remove(m.Index, m.Length).TrimStart(',') + "}";
                (buckets.TryGetValue(key, out var l) ? l : buckets[key] = []).Add(value);
            }
            else if (name.EndsWith("_count"))
            {
                counts[name[..^"_count".Length] + "{" + labels + "}"] = value;
            }
        }
        foreach (var (key, values) in buckets)
        {
            for (int i = 1; i < values.Count; i++) Assert.True(values[i] >= values[i - 1], $"{key}: buckets decrease");
            Assert.True(counts.TryGetValue(key, out var count), $"{key}: no _count");
            Assert.Equal(count, values[^1]);
        }
    }

    /// <summary>Splits <c>name{labels} value</c> (labels without braces; values without spaces or braces in them).</summary>
    internal static (string Name, string Labels, double Value) ParseSample(string line)
    {
        int space = line.LastIndexOf(' ');
        string v = line[(space + 1)..];
        double value = v switch
        {
            "+Inf" => double.PositiveInfinity,
            "-Inf" => double.NegativeInfinity,
            "NaN" => double.NaN,
            _ => double.Parse(v, System.Globalization.CultureInfo.InvariantCulture),
        };
        string series = line[..space];
        int brace = series.IndexOf('{');
        return brace < 0 ? (series, "", value) : (series[..brace], series[(brace + 1)..^1], value);
    }
}
