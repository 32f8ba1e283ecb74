using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Prometheus;

namespace PiServe.Api.Metrics;

/// <summary>Wires the metrics into a host: <c>services.AddPiServeMetrics()</c> and <c>app.MapPrometheusMetrics("/metrics")</c>.</summary>
public static class MetricsServiceCollectionExtensions
{
    /// <summary>
    /// Registers <see cref="PiServeMetrics"/> as a singleton on a prometheus-net registry of this host's own
    /// (<see cref="PiServeMetrics()"/>: the PiServe families plus the process and runtime metrics), so that
    /// two hosts in one process do not expose each other's values. Calling it again does nothing.
    /// </summary>
    public static IServiceCollection AddPiServeMetrics(this IServiceCollection services)
    {
        services.TryAddSingleton(_ => new PiServeMetrics());
        return services;
    }

    /// <summary>
    /// Maps <c>GET <paramref name="pattern"/></c> to prometheus-net's exporter of <see cref="PiServeMetrics.Registry"/>,
    /// in the Prometheus text format 0.0.4 only (<c>text/plain; version=0.0.4; charset=utf-8</c>: OpenMetrics
    /// negotiation is off), left out of the OpenAPI description. Needs <see cref="AddPiServeMetrics"/>.
    /// </summary>
    public static IEndpointConventionBuilder MapPrometheusMetrics(this IEndpointRouteBuilder endpoints, string pattern = "/metrics")
    {
        var metrics = endpoints.ServiceProvider.GetService<PiServeMetrics>()
            ?? throw new InvalidOperationException("MapPrometheusMetrics needs services.AddPiServeMetrics()");
        return endpoints.MapMetrics(settings =>
        {
            settings.Registry = metrics.Registry;
            settings.EnableOpenMetrics = false;
        }, pattern)
            .WithMetadata(new HttpMethodMetadata([HttpMethods.Get])) // MapMetrics answers every method; /metrics is GET only
            .WithDisplayName("Prometheus metrics")
            .ExcludeFromDescription();
    }
}
