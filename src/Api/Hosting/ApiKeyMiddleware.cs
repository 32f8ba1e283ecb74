using PiServe.Api.Configuration;
using PiServe.Api.Errors;

namespace PiServe.Api.Hosting;

/// <summary>With PiServe:ApiKeys set, everything but health, metrics and the docs needs "Authorization: Bearer KEY".</summary>
public sealed class ApiKeyMiddleware(RequestDelegate next, Microsoft.Extensions.Options.IOptions<PiServeOptions> options)
{
    private readonly HashSet<string> _keys = [.. options.Value.ApiKeys.Where(k => !string.IsNullOrEmpty(k))];

    public async Task InvokeAsync(HttpContext http)
    {
        var path = http.Request.Path;
        if (_keys.Count == 0 || path.StartsWithSegments("/health") || path.StartsWithSegments("/metrics")
            || path.StartsWithSegments("/swagger") || path == "/" || path.StartsWithSegments("/lib") || path.StartsWithSegments("/app"))
        {
            await next(http);
            return;
        }
        string? key = null;
        var auth = http.Request.Headers.Authorization.ToString();
        if (auth.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)) key = auth["Bearer ".Length..].Trim();
        // Browsers cannot set headers on WebSocket upgrades: SignalR sends the key as access_token.
        if (key is null && path.StartsWithSegments("/hubs")) key = http.Request.Query["access_token"];
        if (key is null || !_keys.Contains(key))
        {
            await ApiErrorMiddleware.WriteAsync(http, new ApiException(401,
                key is null ? "missing API key: send 'Authorization: Bearer <key>'" : "invalid API key", code: "invalid_api_key"));
            return;
        }
        await next(http);
    }
}
