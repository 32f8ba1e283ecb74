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
/// A real Kestrel host on a loopback port, built in-process the way Program.cs builds PiServe's:
/// <c>AddPiServeMetrics()</c> and <c>MapPrometheusMetrics("/metrics")</c>, so a test can record through
/// <see cref="PiServeMetrics"/> and read the exposition over HTTP.
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
    /// escaping), a finished request, a running and a waiting one, the KV cache and eval jobs.
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
        m.EvalTokensScored(llama, 4096);
        m.EvalJobMoved(null, "queued");
        m.EvalJobMoved(null, "queued");
        m.EvalJobMoved("queued", "running");
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
