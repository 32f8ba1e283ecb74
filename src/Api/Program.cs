using PiServe.Api;

// With a verb (tokenize, score, generate) the executable drives the engine directly and prints
// one JSON object; with no verb it serves HTTP.
if (args.Length > 0 && Verbs.IsVerb(args[0]))
    return Verbs.Run(args);

var builder = WebApplication.CreateBuilder(args);
builder.Services.AddPiServeMetrics();
var app = builder.Build();
app.MapGet("/health/live", () => Results.Ok(new { status = "live" }));
app.MapGet("/health/ready", () => Results.Ok(new { status = "ready" }));
app.MapPrometheusMetrics("/metrics");
app.Run();
return 0;
