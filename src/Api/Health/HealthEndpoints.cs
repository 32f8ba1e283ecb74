using PiServe.Api.Models;

namespace PiServe.Api.Health;

/// <summary>Liveness and readiness, open without an API key (orchestrators probe them).</summary>
public static class HealthEndpoints
{
    public static IEndpointRouteBuilder MapHealthEndpoints(this IEndpointRouteBuilder app)
    {
        var health = app.MapGroup("/health").WithTags("Health");
        health.MapGet("/live", () => Results.Ok(new { status = "live" }));
        health.MapGet("/ready", (ModelRegistry registry) =>
        {
            // Model errors name files relative to the models root (ModelRegistry): readiness is open without a key.
            var models = registry.All.Select(m => new { id = m.Id, status = m.Status, error = m.Error }).ToList();
            return registry.AllLoaded
                ? Results.Ok(new { status = "ready", models })
                : Results.Json(new { status = "not_ready", models }, statusCode: 503);
        });
        return app;
    }
}
