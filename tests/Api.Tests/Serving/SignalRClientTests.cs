using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.SignalR;
using Microsoft.AspNetCore.SignalR.Client;

namespace PiServe.Api.Tests.Serving;

/// <summary>
/// The generation hub driven by the official .NET client (Microsoft.AspNetCore.SignalR.Client), as a C#
/// application would use it: streamed tokens equal the HTTP completion, cancelling stops generation,
/// refusals arrive as HubException naming the parameter.
/// </summary>
[Collection("host")]
public class SignalRClientTests(HostFixture fixture)
{
    private PiServeHostProcess Host => fixture.Host;

    private async Task<HubConnection> ConnectAsync()
    {
        var connection = new HubConnectionBuilder().WithUrl(Host.BaseUrl + "/hubs/generation").Build();
        await connection.StartAsync();
        return connection;
    }

    private static object Request(string prompt, int maxTokens, int seed) =>
        new { model = "tiny", prompt, max_tokens = maxTokens, temperature = 0.8, seed, ignore_eos = true };

    [Fact]
    public async Task StreamedTokensEqualTheHttpCompletion()
    {
        await using var connection = await ConnectAsync();
        var events = new List<JsonElement>();
        await foreach (var e in connection.StreamAsync<JsonElement>("StreamCompletion", Request("And God said", 10, 5)))
            events.Add(e);
        Assert.Equal(10, events.Count(e => e.GetProperty("type").GetString() == "token"));
        var finish = events.Last();
        Assert.Equal("finish", finish.GetProperty("type").GetString());
        Assert.Equal("length", finish.GetProperty("finish_reason").GetString());
        Assert.Equal(10, finish.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        string streamed = string.Concat(events.Select(e => e.GetProperty("text").GetString()));

        var (status, http, _) = await Host.PostAsync("/v1/completions", JsonSerializer.Serialize(Request("And God said", 10, 5)));
        Assert.Equal(200, status);
        Assert.Equal(http!["choices"]![0]!["text"]!.GetValue<string>(), streamed);
    }

    [Fact]
    public async Task CancellingTheStreamStopsGeneration()
    {
        await using var connection = await ConnectAsync();
        using var cts = new CancellationTokenSource();
        int received = 0;
        try
        {
            await foreach (var _ in connection.StreamAsync<JsonElement>("StreamCompletion", Request("Cancel me", 400, 1), cts.Token))
                if (++received == 3) cts.Cancel();
        }
        catch (OperationCanceledException) { }
        // Items already in flight may still arrive after the cancel; generation itself must stop.
        Assert.InRange(received, 3, 100);
        // The scheduler frees the sequence at its next step: running falls to zero long before 400 tokens.
        for (int i = 0; i < 100; i++)
        {
            var s = JsonNode.Parse(await Host.Http.GetStringAsync("/v1/models/tiny/scheduler"))!;
            if (s["running"]!.GetValue<int>() == 0 && s["kv_reserved_bytes"]!.GetValue<long>() == 0) return;
            await Task.Delay(50);
        }
        Assert.Fail("the cancelled sequence kept running");
    }

    [Theory]
    [InlineData("""{"model":"tiny","prompt":"x","max_tokens":"many"}""", "param: max_tokens")]
    [InlineData("""{"model":"nope","prompt":"x"}""", "404")]
    [InlineData("""{"model":"tiny","prompt":"x","max_tokens":2147483647}""", "413")]
    public async Task RefusalsArriveAsHubExceptionsNamingTheProblem(string request, string expected)
    {
        await using var connection = await ConnectAsync();
        var e = await Assert.ThrowsAsync<HubException>(async () =>
        {
            await foreach (var _ in connection.StreamAsync<JsonElement>("StreamCompletion", JsonDocument.Parse(request).RootElement)) { }
        });
        Assert.Contains(expected, e.Message);
        Assert.Equal(HubConnectionState.Connected, connection.State); // a refused request leaves the connection usable
    }
}
