using PiServe.Api.Evals;
using PiServe.Api.Models;

namespace PiServe.Api.Health;

/// <summary>Liveness and readiness, open without an API key (orchestrators probe them).</summary>
public static class HealthEndpoints
{
    public static IEndpointRouteBuilder MapHealthEndpoints(this IEndpointRouteBuilder app)
    {
        var health = app.MapGroup("/health").WithTags("Health");
        health.MapGet("/live", () => Results.Ok(new { status = "live" }));
        health.MapGet("/ready", (ModelRegistry registry, JobStoreStatus store) =>
        {
            // Model errors name files relative to the models root (ModelRegistry): readiness is open without a key.
            var models = registry.All.Select(m => new { id = m.Id, status = m.Status, error = m.Error }).ToList();
            // Like model errors, the store's state names no path, host or port (readiness is open without a key; the log has them).
            string? storeProblem = store.Problem;
            var jobStore = new { status = storeProblem is null ? "ready" : "unavailable", kind = store.Kind, error = storeProblem };
            return registry.AllLoaded && storeProblem is null
                ? Results.Ok(new { status = "ready", models, job_store = jobStore })
                : Results.Json(new { status = "not_ready", models, job_store = jobStore }, statusCode: 503);
        });
        return app;
    }
}
