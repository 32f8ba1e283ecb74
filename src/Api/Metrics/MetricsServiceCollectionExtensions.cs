using System.Text;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace PiServe.Api.Metrics;

/// <summary>Wires the metrics into a host: <c>services.AddPiServeMetrics()</c> and <c>app.MapPrometheusMetrics("/metrics")</c>.</summary>
public static class MetricsServiceCollectionExtensions
{
    /// <summary>
    /// Registers <see cref="PiServeMetrics"/> and <see cref="PrometheusExposition"/> as singletons (on the
    /// host's <see cref="System.Diagnostics.Metrics.IMeterFactory"/>), and starts the exposition's
    /// listener when the host starts so that nothing recorded before the first scrape is lost.
    /// Calling it again only applies <paramref name="configure"/> again.
    /// </summary>
    public static IServiceCollection AddPiServeMetrics(this IServiceCollection services, Action<PrometheusExpositionOptions>? configure = null)
    {
        services.AddMetrics();
        services.AddOptions<PrometheusExpositionOptions>();
        if (configure is not null) services.Configure(configure);
        services.TryAddSingleton<PiServeMetrics>();
        services.TryAddSingleton(sp => new PrometheusExposition(
            sp.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>(),
            sp.GetRequiredService<Microsoft.Extensions.Options.IOptions<PrometheusExpositionOptions>>().Value));
        services.AddHostedService<ExpositionStarter>();
        return services;
    }

    /// <summary>
    /// Maps <c>GET <paramref name="pattern"/></c> to the Prometheus text exposition
    /// (<c>text/plain; version=0.0.4; charset=utf-8</c>). Needs <see cref="AddPiServeMetrics"/>.
    /// </summary>
    public static IEndpointConventionBuilder MapPrometheusMetrics(this IEndpointRouteBuilder endpoints, string pattern = "/metrics")
    {
        var exposition = endpoints.ServiceProvider.GetService<PrometheusExposition>()
            ?? throw new InvalidOperationException("MapPrometheusMetrics needs services.AddPiServeMetrics()");
        var utf8 = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false);
        return endpoints.MapGet(pattern, (RequestDelegate)(async context =>
        {
            string text = exposition.Render();
            context.Response.ContentType = PrometheusExposition.ContentType;
            context.Response.Headers.CacheControl = "no-store";
            await context.Response.WriteAsync(text, utf8, context.RequestAborted);
        })).WithDisplayName("Prometheus metrics").ExcludeFromDescription();
    }

    /// <summary>Resolves the exposition at host start, which starts its listener.</summary>
    private sealed class ExpositionStarter(PrometheusExposition exposition) : IHostedService
    {
        public Task StartAsync(CancellationToken cancellationToken) { GC.KeepAlive(exposition); return Task.CompletedTask; }
        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
