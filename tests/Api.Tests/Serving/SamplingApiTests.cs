using System.Text.Json.Nodes;

namespace PiServe.Api.Tests.Serving;

/// <summary>
/// n choices, logit_bias, stop_token_ids, the penalties and min_p through the real host: the openai
/// client where it passes the field through, SignalR where the test needs the token ids, raw HTTP
/// for the SSE choice indexes and the 400s.
/// </summary>
[Collection("host")]
public class SamplingApiTests(HostFixture fixture)
{
    private PiServeHostProcess Host => fixture.Host;

    private static JsonObject Req(string prompt, int maxTokens, int? seed = null, double temperature = 1.0) => new()
    {
        ["model"] = "tiny", ["prompt"] = prompt, ["max_tokens"] = maxTokens, ["temperature"] = temperature, ["seed"] = seed, ["ignore_eos"] = true,
    };

    private static string[] Texts(JsonNode r) => [.. r["choices"]!.AsArray().Select(c => c!["text"]!.GetValue<string>())];

    /// <summary>The generated token ids (SignalR's events carry them).</summary>
    private int[] Ids(JsonObject request)
    {
        var hub = Host.RunClient("signalr", new JsonObject { ["request"] = request });
        Assert.Null(hub["error"]);
        return [.. hub["events"]!.AsArray().Where(e => e!["type"]!.GetValue<string>() == "token").Select(e => e!["token_id"]!.GetValue<int>())];
    }

    [Fact]
    public void NChoicesHaveIndexesSeedsInTurnAndUsageCountsThePromptOnce()
    {
        var request = Req("In the beginning", 6, seed: 40);
        request["n"] = 3;
        var r = Host.RunClient("completion", new JsonObject { ["request"] = request.DeepClone() });
        Assert.Null(r["error"]);
        var choices = r["choices"]!.AsArray();
        Assert.Equal([0, 1, 2], choices.Select(c => c!["index"]!.GetValue<int>()));
        Assert.All(choices, c => Assert.Equal("length", c!["finish_reason"]!.GetValue<string>()));
        var single = Host.RunClient("completion", new JsonObject { ["request"] = Req("In the beginning", 6, seed: 40) });
        int prompt = single["usage"]!["prompt_tokens"]!.GetValue<int>();
        Assert.Equal(prompt, r["usage"]!["prompt_tokens"]!.GetValue<int>());
        Assert.Equal(18, r["usage"]!["completion_tokens"]!.GetValue<int>());
        Assert.Equal(prompt + 18, r["usage"]!["total_tokens"]!.GetValue<int>());

        // Deterministic with a seed; choice i is what n = 1 gives with seed + i.
        var texts = Texts(r);
        Assert.Equal(texts, Texts(Host.RunClient("completion", new JsonObject { ["request"] = request.DeepClone() })));
        for (int i = 0; i < 3; i++)
            Assert.Equal(Texts(Host.RunClient("completion", new JsonObject { ["request"] = Req("In the beginning", 6, seed: 40 + i) }))[0], texts[i]);
        Assert.True(texts.Distinct().Count() > 1, "three seeds gave the same text");
    }

    [Fact]
    public async Task StreamedNChoicesCarryTheirIndexAndMatchTheWholeAnswer()
    {
        var request = Req("And God said", 8, seed: 5);
        request["n"] = 2;
        var whole = Texts(Host.RunClient("completion", new JsonObject { ["request"] = request.DeepClone() }));
        request["stream"] = true;
        request["stream_options"] = new JsonObject { ["include_usage"] = true };
        var raw = await (await Host.Http.PostAsync("/v1/completions", new StringContent(request.ToJsonString(), System.Text.Encoding.UTF8, "application/json")))
            .Content.ReadAsStringAsync();
        var events = raw.Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("data: [DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonNode.Parse(e["data: ".Length..])!).ToList();
        var text = new string[] { "", "" };
        var finish = new string?[2];
        foreach (var c in chunks.Where(c => c["choices"]!.AsArray().Count > 0))
        {
            var choice = c["choices"]![0]!;
            int index = choice["index"]!.GetValue<int>();
            text[index] += choice["text"]!.GetValue<string>();
            finish[index] = choice["finish_reason"]?.GetValue<string>() ?? finish[index];
        }
        Assert.Equal(whole, text);
        Assert.Equal(new string?[] { "length", "length" }, finish);
        var usage = chunks.Single(c => c["usage"] is JsonObject)["usage"]!;
        Assert.Equal(16, usage["completion_tokens"]!.GetValue<int>());
        Assert.Same(chunks[^1], chunks.Single(c => c["usage"] is JsonObject));
    }

    [Fact]
    public void ChatReturnsNChoices()
    {
        var r = Host.RunClient("chat", new JsonObject
        {
            ["request"] = new JsonObject
            {
                ["model"] = "tiny", ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "Hi" }),
                ["max_tokens"] = 4, ["seed"] = 2, ["ignore_eos"] = true, ["n"] = 2,
            },
        });
        Assert.Null(r["error"]);
        var choices = r["choices"]!.AsArray();
        Assert.Equal([0, 1], choices.Select(c => c!["index"]!.GetValue<int>()));
        Assert.Equal(8, r["usage"]!["completion_tokens"]!.GetValue<int>());
    }

    [Fact]
    public void LogitBiasForcesAndBansTokensUnderGreedy()
    {
        var greedy = Ids(Req("The earth was without form", 8, temperature: 0));
        Assert.Equal(8, greedy.Length);

        // +100 on a token the model would not choose: every token is that one.
        int forced = Enumerable.Range(100, 200).First(t => !greedy.Contains(t));
        var biased = Req("The earth was without form", 8, temperature: 0);
        biased["logit_bias"] = new JsonObject { [forced.ToString()] = 100 };
        Assert.All(Ids(biased), t => Assert.Equal(forced, t));

        // -100 on every token greedy chose: none of them appears.
        var banned = Req("The earth was without form", 8, temperature: 0);
        banned["logit_bias"] = new JsonObject(greedy.Distinct().Select(t => KeyValuePair.Create(t.ToString(), (JsonNode?)JsonValue.Create(-100))));
        var ids = Ids(banned);
        Assert.Equal(8, ids.Length);
        Assert.DoesNotContain(ids, greedy.Contains);
    }

    [Fact]
    public void StopTokenIdsEndGenerationWithoutTheirText()
    {
        var request = Req("The earth was without form", 12, temperature: 0);
        var ids = Ids((JsonObject)request.DeepClone());
        var baseline = Host.RunClient("completion", new JsonObject { ["request"] = request.DeepClone() });
        int stopAt = 4, stopToken = ids[stopAt];
        int first = Array.IndexOf(ids, stopToken); // it may occur earlier
        request["stop_token_ids"] = new JsonArray(stopToken);
        var stopped = Host.RunClient("completion", new JsonObject { ["request"] = request });
        var choice = stopped["choices"]![0]!;
        Assert.Equal("stop", choice["finish_reason"]!.GetValue<string>());
        Assert.Equal(first + 1, stopped["usage"]!["completion_tokens"]!.GetValue<int>());
        string text = choice["text"]!.GetValue<string>();
        Assert.StartsWith(text, baseline["choices"]![0]!["text"]!.GetValue<string>());
        Assert.True(text.Length < baseline["choices"]![0]!["text"]!.GetValue<string>().Length);
    }

    [Fact]
    public void PenaltiesChangeGreedyOutput()
    {
        // The tiny random model rarely repeats itself under greedy decoding, so the test makes it:
        // the smallest logit_bias (to 1/4) that makes greedy repeat one token for 8 tokens leaves that
        // token ahead by at most 1/4 at some step, where any of the penalties turns the choice.
        const string prompt = "The Lord is my shepherd";
        var greedy = Ids(Req(prompt, 8, temperature: 0));
        int repeated = Enumerable.Range(300, 200).First(t => !greedy.Contains(t));
        JsonObject Biased(double bias)
        {
            var r = Req(prompt, 8, temperature: 0);
            r["logit_bias"] = new JsonObject { [repeated.ToString()] = bias };
            return r;
        }
        double low = 0, high = 64; // all-repeated at high, not at low
        while (high - low > 0.25)
        {
            double mid = (low + high) / 2;
            if (Ids(Biased(mid)).All(t => t == repeated)) high = mid; else low = mid;
        }
        var plain = Ids(Biased(high));
        Assert.All(plain, t => Assert.Equal(repeated, t));
        foreach (var (field, value) in new[] { ("frequency_penalty", 2.0), ("presence_penalty", 2.0), ("repetition_penalty", 5.0) })
        {
            var penalised = Biased(high);
            penalised[field] = value;
            var ids = Ids(penalised);
            Assert.True(!plain.SequenceEqual(ids), $"{field} = {value} left greedy output unchanged (bias {high})");
            Assert.Equal(repeated, ids[0]); // nothing generated yet, and not in the prompt: not penalised
        }
    }

    [Fact]
    public void MinPOfOneIsGreedy()
    {
        var greedy = Ids(Req("Blessed are the meek", 10, temperature: 0));
        var minP = Req("Blessed are the meek", 10, seed: 3, temperature: 1.5);
        minP["min_p"] = 1.0;
        Assert.Equal(greedy, Ids(minP));
    }

    [Fact]
    public void SignalRRefusesMoreThanOneChoice()
    {
        var request = Req("x", 2, seed: 1);
        request["n"] = 2;
        var hub = Host.RunClient("signalr", new JsonObject { ["request"] = request });
        Assert.Contains("400", hub["error"]!.GetValue<string>());
        Assert.Contains("(param: n)", hub["error"]!.GetValue<string>());
    }

    [Theory]
    [InlineData("""{"n":0}""", "n", "between 1 and 16")]
    [InlineData("""{"n":17}""", "n", "between 1 and 16")]
    [InlineData("""{"n":2,"best_of":3}""", "best_of", "best_of is not supported")]
    [InlineData("""{"presence_penalty":2.5}""", "presence_penalty", "between -2 and 2")]
    [InlineData("""{"frequency_penalty":-3}""", "frequency_penalty", "between -2 and 2")]
    [InlineData("""{"repetition_penalty":0}""", "repetition_penalty", "greater than 0")]
    [InlineData("""{"min_p":1.5}""", "min_p", "between 0 and 1")]
    [InlineData("""{"logit_bias":{"abc":1}}""", "logit_bias", "not a token id")]
    [InlineData("""{"logit_bias":{"-1":1}}""", "logit_bias", "not a token id")]
    [InlineData("""{"logit_bias":{"32000":1}}""", "logit_bias", "not a token id in [0, 32000)")]
    [InlineData("""{"logit_bias":{"5":101}}""", "logit_bias", "between -100 and 100")]
    [InlineData("""{"logit_bias":{"5":"x"}}""", "logit_bias", "between -100 and 100")]
    [InlineData("""{"logit_bias":[1]}""", "logit_bias", "a JSON object")]
    [InlineData("""{"stop_token_ids":[32000]}""", "stop_token_ids", "not a token id")]
    [InlineData("""{"stop_token_ids":["a"]}""", "stop_token_ids[0]", "an integer")]
    public async Task BadSamplingValuesAre400sNamingTheParameter(string fields, string param, string message)
    {
        var body = JsonNode.Parse(fields)!.AsObject();
        body["model"] = "tiny";
        body["prompt"] = "x";
        foreach (var path in new[] { "/v1/completions", "/v1/chat/completions" })
        {
            if (path.Contains("chat"))
            {
                if (param == "best_of") continue; // a completions-only field
                body.Remove("prompt");
                body["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "x" });
            }
            var (code, json, _) = await Host.PostAsync(path, body.ToJsonString());
            Assert.Equal(400, code);
            Assert.Equal(param, json!["error"]!["param"]?.GetValue<string>());
            Assert.Contains(message, json["error"]!["message"]!.GetValue<string>());
        }
    }

    [Fact]
    public async Task TooManyLogitBiasEntriesAre400()
    {
        var bias = new JsonObject(Enumerable.Range(0, 301).Select(i => KeyValuePair.Create(i.ToString(), (JsonNode?)JsonValue.Create(1))));
        var (code, json, _) = await Host.PostAsync("/v1/completions", new JsonObject { ["model"] = "tiny", ["prompt"] = "x", ["logit_bias"] = bias }.ToJsonString());
        Assert.Equal(400, code);
        Assert.Equal("logit_bias", json!["error"]!["param"]!.GetValue<string>());
    }
}
