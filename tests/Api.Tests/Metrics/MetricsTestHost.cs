using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using PiServe.Api.Metrics;

namespace PiServe.Api.Tests.Metrics;

/// <summary>
/// A real Kestrel host on a loopback port, built in-process the way PiServeHost builds PiServe's:
/// <c>AddPiServeMetrics()</c> and <c>MapPrometheusMetrics("/metrics")</c> (prometheus-net's exporter),
/// so a test can record through <see cref="PiServeMetrics"/> and read the exposition over HTTP.
/// </summary>
internal sealed class MetricsTestHost : IAsyncDisposable
{
    private readonly WebApplication _app;

    private MetricsTestHost(WebApplication app, Uri baseAddress)
    {
        _app = app;
        BaseAddress = baseAddress;
    }

    public Uri BaseAddress { get; }
    public Uri MetricsUri => new(BaseAddress, "/metrics");
    public PiServeMetrics Metrics => _app.Services.GetRequiredService<PiServeMetrics>();
    public IServiceProvider Services => _app.Services;

    public static async Task<MetricsTestHost> StartAsync()
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { ContentRootPath = AppContext.BaseDirectory });
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        builder.Services.AddPiServeMetrics();
        var app = builder.Build();
        app.MapPrometheusMetrics("/metrics");
        await app.StartAsync();
        var address = app.Urls.Single();
        Assert.StartsWith("http://127.0.0.1:", address);
        return new MetricsTestHost(app, new Uri(address));
    }

    public async ValueTask DisposeAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        await _app.StopAsync(timeout.Token);
        await _app.DisposeAsync();
    }

    /// <summary>
    /// Records a value in every PiServe instrument: two models (one with a label value that needs
    /// escaping), a finished request, a running and a waiting one, the KV cache, the prefix cache and eval jobs.
    /// Totals: prompt tokens 12 + 30 (llama), generated 5 + 7 (llama); TTFT observations 0.05, 0.05, 0.3 (llama).
    /// </summary>
    public static void RecordEverything(PiServeMetrics m)
    {
        const string llama = "llama-7b";
        const string odd = "odd \"model\" \\ with\nnewline";
        foreach (var (ttft, prompt, generated, reason) in new[] { (0.05, 12L, 5L, "stop"), (0.3, 30L, 7L, "length") })
        {
            m.RequestQueued(llama);
            m.RequestDequeued(llama, 0.002);
            m.RequestStarted(llama);
            m.FirstToken(llama, ttft);
            for (int i = 1; i < generated; i++) m.TokenGenerated(llama, 0.012);
            m.RequestFinished(llama, reason, ttft + 0.5, prompt, generated);
        }
        m.FirstToken(llama, 0.05); // a third request, still running
        m.RequestQueued(llama);
        m.RequestDequeued(llama, 0.2);
        m.RequestStarted(llama);
        m.RequestQueued(odd); // waiting
        m.RequestQueued(llama); // rejected while waiting
        m.RequestDequeued(llama, 1.5);
        m.RequestRejected(llama, PiServeMetrics.FinishReasons.Abort, 1.5);
        m.SetKvCache(llama, 3_145_728, 1L << 30);
        m.SetKvCache(odd, 0, 1L << 20);
        m.PrefixCacheLookup(llama, 4096, 4000);
        m.SetPrefixCache(llama, 250, 1_024_000);
        m.EvalTokensScored(llama, 4096);
        m.EvalJobMoved(null, "queued");
        m.EvalJobMoved(null, "queued");
        m.EvalJobMoved("queued", "running");
    }

    /// <summary>What <c>/metrics</c> would serve from <paramref name="registry"/>: prometheus-net's text format 0.0.4.</summary>
    public static string Render(Prometheus.CollectorRegistry registry)
    {
        using var stream = new MemoryStream();
        registry.CollectAndExportAsTextAsync(stream).GetAwaiter().GetResult();
        return System.Text.Encoding.UTF8.GetString(stream.ToArray());
    }

    /// <summary>
    /// Buckets never decrease, and +Inf equals _count, in every series of every histogram. While
    /// observations are being recorded, <paramref name="whileRecording"/>: prometheus-net reads _count
    /// just before the buckets, so +Inf may be ahead of it, never behind.
    /// </summary>
    internal static void AssertHistogramsAreConsistent(string text, bool whileRecording = false)
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
            if (whileRecording) Assert.True(values[^1] >= count, $"{key}: +Inf {values[^1]} < _count {count}");
            else Assert.Equal(count, values[^1]);
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

    public static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    /// <summary>Runs <c>promtool check metrics</c> on <paramref name="exposition"/> (stdin); returns its exit code and output.</summary>
    public static (int Code, string Output) Promtool(string exposition)
    {
        var (code, stdout, stderr) = ProcessRunner.Run("promtool", ["check", "metrics"], stdin: exposition, timeout: TimeSpan.FromSeconds(15));
        return (code, stdout + stderr);
    }
}
