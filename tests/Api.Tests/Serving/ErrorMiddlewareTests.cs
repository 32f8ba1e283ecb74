using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using PiServe.Api.Hosting;
using PiServe.Api.Errors;

namespace PiServe.Api.Tests.Serving;

/// <summary>An unexpected exception becomes a 500 that tells the client a request id and nothing internal; the log keeps the detail.</summary>
public sealed class ErrorMiddlewareTests
{
    private sealed class ListLogger : ILogger<ApiErrorMiddleware>
    {
        public List<(string Message, Exception? Exception)> Entries { get; } = [];
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            Entries.Add((formatter(state, exception), exception));
    }

    [Fact]
    public async Task AnUnexpectedExceptionAnswersAGeneric500WithTheRequestId()
    {
        var log = new ListLogger();
        var middleware = new ApiErrorMiddleware(_ => throw new InvalidOperationException("secret detail at /srv/models/x"), log);
        var http = new DefaultHttpContext { TraceIdentifier = "req-42" };
        http.Request.Method = "POST";
        http.Request.Path = "/v1/completions";
        http.Response.Body = new MemoryStream();
        await middleware.InvokeAsync(http);

        Assert.Equal(500, http.Response.StatusCode);
        http.Response.Body.Position = 0;
        var error = JsonNode.Parse(http.Response.Body)!["error"]!;
        string message = error["message"]!.GetValue<string>();
        Assert.Contains("req-42", message);
        Assert.DoesNotContain("secret", message);
        Assert.DoesNotContain("/srv", message);
        Assert.Equal("server_error", error["type"]!.GetValue<string>());
        var entry = Assert.Single(log.Entries);
        Assert.Contains("req-42", entry.Message);
        Assert.Contains("secret detail", entry.Exception!.Message);
    }
}
