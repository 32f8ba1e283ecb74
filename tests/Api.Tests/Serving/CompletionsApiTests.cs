using System.Text.Json.Nodes;
using PiServe.Inference.Generation;
using PiServe.Inference.Model;

namespace PiServe.Api.Tests.Serving;

public sealed class HostFixture : IAsyncLifetime
{
    public PiServeHostProcess Host { get; private set; } = null!;
    public async Task InitializeAsync() => Host = await PiServeHostProcess.StartAsync();
    public async Task DisposeAsync() => await Host.DisposeAsync();
}

[CollectionDefinition("host")]
public sealed class HostCollection : ICollectionFixture<HostFixture>;

/// <summary>
/// The OpenAI-compatible API of the real host on a loopback port, driven by the official openai npm
/// client and by plain HTTP for the error cases.
/// </summary>
[Collection("host")]
public class CompletionsApiTests(HostFixture fixture)
{
    private PiServeHostProcess Host => fixture.Host;

    private static JsonObject Req(string prompt, int maxTokens, int? seed = null, double temperature = 1.0) => new()
    {
        ["model"] = "tiny", ["prompt"] = prompt, ["max_tokens"] = maxTokens, ["temperature"] = temperature,
        ["seed"] = seed, ["ignore_eos"] = true,
    };

    [Fact]
    public void ModelsAreListedWithWindowRopeAndFailures()
    {
        var r = Host.RunClient("models", new JsonObject());
        var data = r["data"]!.AsArray();
        var tiny = data.Single(m => m!["id"]!.GetValue<string>() == "tiny")!;
        Assert.Equal("loaded", tiny["status"]!.GetValue<string>());
        Assert.Equal(512, tiny["max_model_len"]!.GetValue<int>());
        Assert.Equal("default", tiny["rope_scaling"]!["rope_type"]!.GetValue<string>());
        Assert.Equal("bf16", tiny["dtype"]!.GetValue<string>());
        Assert.Equal(2L * 2 * 2 * 16 * 4, tiny["kv_bytes_per_token"]!.GetValue<long>());
        var broken = data.Single(m => m!["id"]!.GetValue<string>() == "broken")!;
        Assert.Equal("failed", broken["status"]!.GetValue<string>());
        Assert.Contains("config.json: hidden_size: required field is missing", broken["error"]!.GetValue<string>());
        string Error(string id) => data.Single(m => m!["id"]!.GetValue<string>() == id)!["error"]!.GetValue<string>();
        Assert.Contains("tokenizer.json has 32000 tokens but config.json vocab_size is 256", Error("mismatch"));
        Assert.Contains("outside PiServe:ModelsRoot", Error("escape"));
        // PiServe:Models:N:KvCacheDType: an f16 cache costs half per token; an unknown type fails that model only.
        var f16 = data.Single(m => m!["id"]!.GetValue<string>() == "tiny-f16-kv")!;
        Assert.Equal("loaded", f16["status"]!.GetValue<string>());
        Assert.Equal(2L * 2 * 2 * 16 * 2, f16["kv_bytes_per_token"]!.GetValue<long>());
        Assert.Contains("KV cache dtype 'int8' is not one of f32, f16, bf16", Error("bad-kv"));
        // PiServe:Models:N:MatmulPrecision: bf16 where the CPU runs the native bf16 kernel (exact elsewhere); an unknown value fails that model only.
        Assert.Equal("exact", tiny["matmul_precision"]!.GetValue<string>());
        var bf16 = data.Single(m => m!["id"]!.GetValue<string>() == "tiny-bf16-prefill")!;
        Assert.Equal("loaded", bf16["status"]!.GetValue<string>());
        Assert.Equal(Inference.Kernels.NativeKernels.HasBf16Dot ? "bf16" : "exact", bf16["matmul_precision"]!.GetValue<string>());
        Assert.Contains("MatmulPrecision: matmul precision 'int4' is not one of exact, bf16", Error("bad-precision"));
    }

    [Fact]
    public void Bf16PrefillServesCompletions()
    {
        var request = Req("The Lord is my shepherd; I shall not want.", 8, seed: 1, temperature: 0);
        request["model"] = "tiny-bf16-prefill";
        request["logprobs"] = 1;
        var r = Host.RunClient("completion", new JsonObject { ["request"] = request });
        Assert.Null(r["error"]);
        Assert.Equal(8, r["usage"]!["completion_tokens"]!.GetValue<int>());
        Assert.Equal(8, r["choices"]![0]!["logprobs"]!["token_logprobs"]!.AsArray().Count);
    }

    [Fact]
    public async Task ReadinessReportsTheFailedModel()
    {
        var r = await Host.Http.GetAsync("/health/ready");
        Assert.Equal(503, (int)r.StatusCode);
        var body = JsonNode.Parse(await r.Content.ReadAsStringAsync())!;
        Assert.Contains(body["models"]!.AsArray(), m => m!["id"]!.GetValue<string>() == "broken" && m["status"]!.GetValue<string>() == "failed");
    }

    [Fact]
    public async Task CompletionWithTheOpenAiClientCountsTokensAndStopsAtMaxTokens()
    {
        var r = Host.RunClient("completion", new JsonObject { ["request"] = Req("The Lord is my shepherd", 8, seed: 1) });
        Assert.Null(r["error"]);
        Assert.Equal("text_completion", r["object"]!.GetValue<string>());
        var choice = r["choices"]![0]!;
        Assert.Equal("length", choice["finish_reason"]!.GetValue<string>());
        Assert.Equal(8, r["usage"]!["completion_tokens"]!.GetValue<int>());
        var tokenized = (await Host.PostAsync("/tokenize", """{"model":"tiny","prompt":"The Lord is my shepherd"}""")).Body!;
        Assert.Equal(tokenized["count"]!.GetValue<int>(), r["usage"]!["prompt_tokens"]!.GetValue<int>());
        Assert.Equal(r["usage"]!["prompt_tokens"]!.GetValue<int>() + 8, r["usage"]!["total_tokens"]!.GetValue<int>());
        Assert.False(string.IsNullOrEmpty(choice["text"]!.GetValue<string>()));
    }

    [Fact]
    public void SameSeedSameTextDifferentSeedDifferentText()
    {
        string A(int seed) => Host.RunClient("completion", new JsonObject { ["request"] = Req("In the beginning", 12, seed) })["choices"]![0]!["text"]!.GetValue<string>();
        Assert.Equal(A(42), A(42));
        Assert.NotEqual(A(42), A(43));
    }

    [Fact]
    public void StreamingYieldsTheSameTextAsNonStreamingAndEndsWithUsage()
    {
        var request = Req("And God said", 16, seed: 5);
        var whole = Host.RunClient("completion", new JsonObject { ["request"] = request.DeepClone() });
        var streamed = Host.RunClient("completion_stream", new JsonObject { ["request"] = request.DeepClone() });
        Assert.Null(streamed["error"]);
        Assert.Equal(whole["choices"]![0]!["text"]!.GetValue<string>(), streamed["text"]!.GetValue<string>());
        Assert.Equal("length", streamed["finish_reason"]!.GetValue<string>());
        Assert.True(streamed["chunks"]!.GetValue<int>() > 2);
        Assert.Equal(16, streamed["usage"]!["completion_tokens"]!.GetValue<int>());
    }

    [Fact]
    public async Task RawSseEndsWithDone()
    {
        var (status, _, response) = await Host.PostAsync("/v1/completions",
            """{"model":"tiny","prompt":"Hello","max_tokens":4,"stream":true,"seed":3,"ignore_eos":true}""");
        Assert.Equal(200, status);
        Assert.StartsWith("text/event-stream", response.Content.Headers.ContentType!.ToString());
        // PostAsync consumed the body as text; re-issue to read the raw stream
        var raw = await (await Host.Http.PostAsync("/v1/completions", new StringContent(
            """{"model":"tiny","prompt":"Hello","max_tokens":4,"stream":true,"seed":3,"ignore_eos":true}""", System.Text.Encoding.UTF8, "application/json"))).Content.ReadAsStringAsync();
        var events = raw.Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.All(events, e => Assert.StartsWith("data: ", e));
        Assert.Equal("data: [DONE]", events[^1]);
        var last = JsonNode.Parse(events[^2]["data: ".Length..])!;
        Assert.Equal("length", last["choices"]![0]!["finish_reason"]!.GetValue<string>());
    }

    [Fact]
    public void StopStringsCutTheTextAndFinishWithStop()
    {
        var greedy = Host.RunClient("completion", new JsonObject { ["request"] = Req("The earth was without form", 24, temperature: 0) });
        string text = greedy["choices"]![0]!["text"]!.GetValue<string>();
        Assert.True(text.Length > 6, $"greedy text too short: '{text}'");
        string stop = text.Substring(text.Length / 2, 3);
        var stopped = Host.RunClient("completion", new JsonObject
        {
            ["request"] = new JsonObject
            {
                ["model"] = "tiny", ["prompt"] = "The earth was without form", ["max_tokens"] = 24, ["temperature"] = 0,
                ["ignore_eos"] = true, ["stop"] = new JsonArray(stop, "\u0001never"),
            },
        });
        var choice = stopped["choices"]![0]!;
        Assert.Equal("stop", choice["finish_reason"]!.GetValue<string>());
        Assert.Equal(text[..text.IndexOf(stop, StringComparison.Ordinal)], choice["text"]!.GetValue<string>());
    }

    [Fact]
    public async Task EchoWithMaxTokensZeroScoresThePromptLikeTheEngine()
    {
        var (status, body, _) = await Host.PostAsync("/v1/completions",
            """{"model":"tiny","prompt":"Blessed are the meek","max_tokens":0,"echo":true,"logprobs":2}""");
        Assert.Equal(200, status);
        var choice = body!["choices"]![0]!;
        Assert.Equal("Blessed are the meek", choice["text"]!.GetValue<string>());
        var lps = choice["logprobs"]!["token_logprobs"]!.AsArray();
        var ids = (await Host.PostAsync("/tokenize", """{"model":"tiny","prompt":"Blessed are the meek"}""")).Body!["tokens"]!.AsArray().Select(t => t!.GetValue<int>()).ToArray();
        Assert.Equal(ids.Length, lps.Count);
        Assert.Null(lps[0]);
        using var model = LlamaModel.Load(PiServeHostProcess.TinyModelDir(Host.Root));
        var reference = Scoring.Score(model, ids);
        for (int i = 1; i < ids.Length; i++)
            Assert.Equal(reference.LogProbs[i]!.Value, lps[i]!.GetValue<double>(), 4);
        Assert.Equal(2, choice["logprobs"]!["top_logprobs"]![1]!.AsObject().Count);
        Assert.Equal(0, body["usage"]!["completion_tokens"]!.GetValue<int>());
    }

    [Fact]
    public async Task TokenizeAndDetokenizeRoundTrip()
    {
        var t = await Host.PostAsync("/tokenize", """{"model":"tiny","prompt":"Hello, world! 😀"}""");
        Assert.Equal(200, t.Status);
        var ids = t.Body!["tokens"]!.AsArray();
        Assert.Equal(1, ids[0]!.GetValue<int>()); // <s>
        var d = await Host.PostAsync("/detokenize", new JsonObject { ["model"] = "tiny", ["tokens"] = ids.DeepClone() }.ToJsonString());
        Assert.Equal(200, d.Status);
        Assert.Equal("<s> Hello, world! 😀", d.Body!["prompt"]!.GetValue<string>());
    }

    [Fact]
    public async Task RopeScalingOverrideExtendsTheWindowAndChangesTheOutput()
    {
        string prompt = string.Join(" ", Enumerable.Repeat("and the evening and the morning were the first day", 60));
        var plain = await Host.PostAsync("/v1/completions", new JsonObject { ["model"] = "tiny", ["prompt"] = prompt, ["max_tokens"] = 4, ["temperature"] = 0 }.ToJsonString());
        Assert.Equal(413, plain.Status); // ~700 prompt tokens: past 512, inside 2 × 512
        Assert.Contains("context window is 512 tokens", plain.Body!["error"]!["message"]!.GetValue<string>());
        var scaled = await Host.PostAsync("/v1/completions", new JsonObject
        {
            ["model"] = "tiny", ["prompt"] = prompt, ["max_tokens"] = 4, ["temperature"] = 0,
            ["rope_scaling"] = new JsonObject { ["rope_type"] = "linear", ["factor"] = 2.0 },
        }.ToJsonString());
        Assert.Equal(200, scaled.Status);
    }

    [Theory]
    [InlineData("""{"model":"tiny","prompt":"x","max_tokens":4""", 400, null, "not valid JSON")]
    [InlineData("""{"model":"nope","prompt":"x"}""", 404, "model", "The model 'nope' does not exist")]
    [InlineData("""{"model":"broken","prompt":"x"}""", 503, "model", "failed to load")]
    [InlineData("""{"model":"tiny","prompt":"x","max_tokens":"many"}""", 400, "max_tokens", "invalid value for 'max_tokens'")]
    [InlineData("""{"model":"tiny","prompt":"x","temperature":5}""", 400, "temperature", "'temperature' must be between 0 and 2")]
    [InlineData("""{"model":"tiny","prompt":"x","top_p":0}""", 400, "top_p", "'top_p' must be in (0, 1]")]
    [InlineData("""{"model":"tiny","prompt":"x","n":17}""", 400, "n", "between 1 and 16")]
    [InlineData("""{"model":"tiny","prompt":"x","logprobs":50}""", 400, "logprobs", "between 0 and 20")]
    [InlineData("""{"model":"tiny","prompt":"x","max_tokens":0}""", 400, "max_tokens", "0 is allowed with echo")]
    [InlineData("""{"model":"tiny","prompt":"x","max_tokens":100000}""", 413, "max_tokens", "plus max_tokens (100000)")]
    [InlineData("""{"model":"tiny","prompt":[1,99999999]}""", 400, "prompt", "prompt[1] must be a token id")]
    [InlineData("""{"model":"tiny"}""", 400, "prompt", "'prompt' is required")]
    [InlineData("""{"model":"tiny","prompt":"x","stop":[1,2]}""", 400, "stop", "'stop' must be a string or an array of strings")]
    [InlineData("""{"model":"tiny","prompt":"x","rope_scaling":{"rope_type":"linear"}}""", 400, "rope_scaling", "rope_scaling.factor: required")]
    [InlineData("""{"model":"tiny","prompt":"x","rope_cache":"sometimes"}""", 400, "rope_cache", "exact, planned or hf")]
    [InlineData("""[1,2,3]""", 400, null, "not valid JSON")]
    public async Task BadRequestsGetOpenAiErrorsNamingTheParameter(string body, int status, string? param, string message)
    {
        var (code, json, _) = await Host.PostAsync("/v1/completions", body);
        Assert.Equal(status, code);
        var error = json!["error"]!;
        Assert.Contains(message, error["message"]!.GetValue<string>());
        Assert.Equal(param, error["param"]?.GetValue<string>());
        Assert.False(string.IsNullOrEmpty(error["type"]!.GetValue<string>()));
    }

    [Fact]
    public async Task TheHostSurvivesAStormOfBadInput()
    {
        string[] bodies = ["", "null", "{", "{\"prompt\":{}}", "{\"model\":1}", "\u0000\u0001", "{\"model\":\"tiny\",\"prompt\":\"x\",\"seed\":1e40}"];
        foreach (var b in bodies)
        {
            var (code, json, _) = await Host.PostAsync("/v1/completions", b);
            Assert.InRange(code, 400, 499);
            Assert.NotNull(json?["error"]?["message"]);
        }
        Assert.True((await Host.Http.GetAsync("/health/live")).IsSuccessStatusCode);
    }
}
