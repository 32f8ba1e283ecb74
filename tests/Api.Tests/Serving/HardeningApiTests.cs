using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;

namespace PiServe.Api.Tests.Serving;

/// <summary>
/// The operator's probes of issue 13 against the real host: lengths that overflow, malformed chat
/// messages, rope overrides that mislead, error bodies for framework refusals, what readiness shows.
/// </summary>
[Collection("host")]
public class HardeningApiTests(HostFixture fixture)
{
    private PiServeHostProcess Host => fixture.Host;

    private async Task<JsonNode> Error(string path, string body, int status, string? param)
    {
        var (code, json, _) = await Host.PostAsync(path, body);
        Assert.True(code == status, $"{path} {body}: expected {status}, got {code}: {json?.ToJsonString()}");
        var error = json!["error"]!;
        Assert.Equal(param, error["param"]?.GetValue<string>());
        return error;
    }

    private async Task<long> ReservedKvBytes()
    {
        var status = JsonNode.Parse(await Host.Http.GetStringAsync("/v1/models/tiny/scheduler"))!;
        return status["kv_reserved_bytes"]!.GetValue<long>();
    }

    [Theory]
    [InlineData(2147483647)]
    [InlineData(2147483640)]
    [InlineData(2147483000)]
    public async Task MaxTokensNearIntMaxIsRefusedEverywhere(int maxTokens)
    {
        foreach (bool stream in new[] { false, true })
        {
            var e = await Error("/v1/completions",
                $$"""{"model":"tiny","prompt":"In the beginning","max_tokens":{{maxTokens}},"stream":{{(stream ? "true" : "false")}},"ignore_eos":true}""",
                413, "max_tokens");
            Assert.Equal("context_length_exceeded", e["code"]!.GetValue<string>());
            Assert.Contains("context window is 512 tokens", e["message"]!.GetValue<string>());
        }
        await Error("/v1/chat/completions",
            $$"""{"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":{{maxTokens}},"ignore_eos":true}""", 413, "max_tokens");
        var hub = Host.RunClient("signalr", new JsonObject
        {
            ["request"] = new JsonObject { ["model"] = "tiny", ["prompt"] = "In the beginning", ["max_tokens"] = maxTokens, ["ignore_eos"] = true },
        });
        Assert.Contains("413", hub["error"]!.GetValue<string>());
        Assert.Contains("param: max_tokens", hub["error"]!.GetValue<string>());
        Assert.True(await ReservedKvBytes() >= 0);
    }

    [Theory]
    [InlineData("""{"model":"tiny","messages":[null]}""", "messages[0]", "got null")]
    [InlineData("""{"model":"tiny","messages":[{"role":"user","content":"a"},null]}""", "messages[1]", "got null")]
    [InlineData("""{"model":"tiny","messages":[{"role":"user","content":["hi"]}]}""", "messages[0].content[0]", "content part object")]
    [InlineData("""{"model":"tiny","messages":[{"role":"user","content":[null]}]}""", "messages[0].content[0]", "content part object")]
    [InlineData("""{"model":"tiny","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}""", "messages[0].content[0]", "'image_url' is not supported")]
    [InlineData("""{"model":"tiny","messages":[{"role":"user","content":[{"text":"no type"}]}]}""", "messages[0].content[0]", "type is missing")]
    [InlineData("""{"model":"tiny","messages":[{"role":"user","content":[{"type":"text","text":5}]}]}""", "messages[0].content[0]", "text must be a string")]
    [InlineData("""{"model":"tiny","messages":[{"role":"user","content":{"type":"text"}}]}""", "messages[0].content", "string or an array of text parts")]
    [InlineData("""{"model":"tiny","messages":[1]}""", "messages[0]", "a message object")]
    public async Task MalformedChatMessagesAre400sNamingTheMessage(string body, string param, string message)
    {
        var e = await Error("/v1/chat/completions", body, 400, param);
        Assert.Contains(message, e["message"]!.GetValue<string>());
    }

    [Fact]
    public async Task TextContentPartsAreAcceptedAsVllmDoes()
    {
        string parts = """{"model":"tiny","messages":[{"role":"user","content":[{"type":"text","text":"Hello"},{"type":"text","text":"there"}]}],"max_tokens":3,"temperature":0,"ignore_eos":true}""";
        string plain = """{"model":"tiny","messages":[{"role":"user","content":"Hello\nthere"}],"max_tokens":3,"temperature":0,"ignore_eos":true}""";
        var (c1, a, _) = await Host.PostAsync("/v1/chat/completions", parts);
        var (c2, b, _) = await Host.PostAsync("/v1/chat/completions", plain);
        Assert.Equal(200, c1);
        Assert.Equal(200, c2);
        // Parts are joined with newlines: the same prompt, so the same prompt tokens and greedy text.
        Assert.Equal(b!["usage"]!["prompt_tokens"]!.GetValue<int>(), a!["usage"]!["prompt_tokens"]!.GetValue<int>());
        Assert.Equal(b["choices"]![0]!["message"]!["content"]!.GetValue<string>(), a["choices"]![0]!["message"]!["content"]!.GetValue<string>());
    }

    [Theory]
    [InlineData("""{"rope_type":"yarn","factor":4,"beta_fast":1,"beta_slow":32}""", "rope_scaling.beta_fast: must be at least beta_slow")]
    [InlineData("""{"rope_type":"linear","factor":1e-30}""", "rope_scaling.factor: must be at least 1")]
    [InlineData("""{"rope_type":"linear","factor":1e30}""", "rope_scaling.factor: must be at most")]
    [InlineData("""{"rope_type":"linear","factor":2,"beta_fsat":3}""", "rope_scaling.beta_fsat: unknown key for rope_type linear")]
    [InlineData("""{"rope_type":"yarn","factor":2,"low_freq_factor":1}""", "rope_scaling.low_freq_factor: unknown key for rope_type yarn")]
    public async Task MisleadingRopeOverridesBlameRopeScaling(string rope, string message)
    {
        var e = await Error("/v1/completions", $$"""{"model":"tiny","prompt":"x","max_tokens":2,"rope_scaling":{{rope}}}""", 400, "rope_scaling");
        Assert.Contains(message, e["message"]!.GetValue<string>());
    }

    [Theory]
    [InlineData("max_tokens", "2147483648", "an integer between -2147483648 and 2147483647")]
    [InlineData("max_tokens", "1.5", "an integer between")]
    [InlineData("temperature", "\"hot\"", "a number")]
    [InlineData("stream", "1", "true or false")]
    public async Task MistypedFieldsSayWhatWasExpected(string field, string value, string expected)
    {
        var e = await Error("/v1/completions", $$"""{"model":"tiny","prompt":"x","{{field}}":{{value}}}""", 400, field);
        Assert.Contains(expected, e["message"]!.GetValue<string>());
    }

    [Fact]
    public async Task SignalRNamesTheMistypedParameter()
    {
        var hub = Host.RunClient("signalr", new JsonObject
        {
            ["request"] = new JsonObject { ["model"] = "tiny", ["prompt"] = "x", ["max_tokens"] = "many" },
        });
        string error = hub["error"]!.GetValue<string>();
        Assert.Contains("param: max_tokens", error);
        Assert.DoesNotContain("error on the server", error);
    }

    [Theory]
    [InlineData("/v1/completions", "text/plain")]
    [InlineData("/v1/chat/completions", "application/x-www-form-urlencoded")]
    [InlineData("/v1/evals", "text/plain")]
    [InlineData("/tokenize", "application/xml")]
    public async Task WrongContentTypeGetsAnOpenAiErrorBody(string path, string contentType)
    {
        using var content = new StringContent("""{"model":"tiny","prompt":"x"}""", Encoding.UTF8);
        content.Headers.ContentType = MediaTypeHeaderValue.Parse(contentType);
        var r = await Host.Http.PostAsync(path, content);
        Assert.Equal(415, (int)r.StatusCode);
        var body = JsonNode.Parse(await r.Content.ReadAsStringAsync())!;
        Assert.Contains("Content-Type must be application/json", body["error"]!["message"]!.GetValue<string>());
        Assert.False(string.IsNullOrEmpty(body["error"]!["type"]!.GetValue<string>()));
    }

    [Fact]
    public async Task UnknownRoutesAndMethodsGetErrorBodies()
    {
        var r = await Host.Http.GetAsync("/v1/nothing-here");
        Assert.Equal(404, (int)r.StatusCode);
        Assert.Contains("no route", JsonNode.Parse(await r.Content.ReadAsStringAsync())!["error"]!["message"]!.GetValue<string>());
        var m = await Host.Http.PutAsync("/v1/completions", new StringContent("{}", Encoding.UTF8, "application/json"));
        Assert.Equal(405, (int)m.StatusCode);
        Assert.NotNull(JsonNode.Parse(await m.Content.ReadAsStringAsync())!["error"]);
    }

    [Fact]
    public async Task ReadinessShowsPathsRelativeToTheModelsRoot()
    {
        string body = await (await Host.Http.GetAsync("/health/ready")).Content.ReadAsStringAsync();
        Assert.Contains("broken", body);
        Assert.DoesNotContain(Host.Root.Path, body);
        string models = await Host.Http.GetStringAsync("/v1/models");
        Assert.DoesNotContain(Host.Root.Path, models);
    }

    [Fact]
    public async Task EveryDashboardFamilyIsExposedWithZerosFromTheStart()
    {
        string text = await Host.Http.GetStringAsync("/metrics");
        foreach (string state in new[] { "queued", "running", "succeeded", "failed", "cancelled" })
            Assert.Contains($"piserve_eval_jobs{{state=\"{state}\"}}", text);
        Assert.Contains("piserve_eval_tokens_scored_total{model=\"tiny\"}", text);
        foreach (string reason in new[] { "stop", "length", "abort", "error" })
            Assert.Contains($"piserve_requests_total{{finish_reason=\"{reason}\",model=\"tiny\"}}", text);
        // Every model that loaded, including one no request ever reaches.
        Assert.Contains("piserve_time_to_first_token_seconds_bucket{model=\"tiny-f16-kv\",le=\"+Inf\"}", text);
        Assert.Contains("piserve_kv_cache_bytes_capacity{model=\"tiny-f16-kv\"}", text);
    }
}
