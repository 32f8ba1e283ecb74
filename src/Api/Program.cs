using PiServe.Api;
using PiServe.Api.Hosting;

// Before anything allocates: freed KV memory stays in the process for the next request.
HeapRetention.Configure();

// With a verb (tokenize, score, generate, bench, ...) the executable drives the engine directly
// and prints one JSON object; with no verb it serves HTTP.
if (args.Length > 0 && Verbs.IsVerb(args[0]))
    return Verbs.Run(args);

var builder = WebApplication.CreateBuilder(new WebApplicationOptions
{
    Args = args,
    // appsettings.json (linked from the repository's top level) and the page (wwwroot) are copied next
    // to the assembly: read them from there, not from whatever the working directory is.
    ContentRootPath = AppContext.BaseDirectory,
    WebRootPath = Path.Combine(AppContext.BaseDirectory, "wwwroot"),
});
builder.Services.AddPiServe(builder.Configuration);
var app = builder.Build();
app.UsePiServe();
app.Run();
return 0;
