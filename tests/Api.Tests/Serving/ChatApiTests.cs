using System.Text.Json.Nodes;

namespace PiServe.Api.Tests.Serving;

/// <summary>/v1/chat/completions with the model's chat template, through the official openai client.</summary>
[Collection("host")]
public class ChatApiTests(HostFixture fixture)
{
    private PiServeHostProcess Host => fixture.Host;

    private static JsonObject Chat(JsonArray messages, int maxTokens, int seed) => new()
    {
        ["model"] = "tiny", ["messages"] = messages, ["max_tokens"] = maxTokens, ["seed"] = seed, ["ignore_eos"] = true,
    };

    private static JsonObject Msg(string role, string content) => new() { ["role"] = role, ["content"] = content };

    [Fact]
    public async Task ChatRendersTheTemplateAndCountsItsTokens()
    {
        var r = Host.RunClient("chat", new JsonObject { ["request"] = Chat([Msg("user", "Who made the sky?")], 6, 1) });
        Assert.Null(r["error"]);
        Assert.Equal("chat.completion", r["object"]!.GetValue<string>());
        var choice = r["choices"]![0]!;
        Assert.Equal("assistant", choice["message"]!["role"]!.GetValue<string>());
        Assert.Equal("length", choice["finish_reason"]!.GetValue<string>());
        // The template renders "<s>[INST] Who made the sky? [/INST]", tokenized without adding BOS again.
        var expected = (await Host.PostAsync("/tokenize", """{"model":"tiny","prompt":"<s>[INST] Who made the sky? [/INST]","add_special_tokens":false}""")).Body!;
        Assert.Equal(expected["count"]!.GetValue<int>(), r["usage"]!["prompt_tokens"]!.GetValue<int>());
        Assert.Equal(1, expected["tokens"]![0]!.GetValue<int>()); // exactly one <s>
        Assert.Equal(1, expected["tokens"]!.AsArray().Count(t => t!.GetValue<int>() == 1));
    }

    [Fact]
    public void StreamedChatEqualsTheWholeAnswer()
    {
        var messages = new JsonArray(Msg("user", "Hello"), Msg("assistant", "Hi."), Msg("user", "Tell me a story 📖"));
        var whole = Host.RunClient("chat", new JsonObject { ["request"] = Chat(messages, 10, 3) });
        var streamed = Host.RunClient("chat_stream", new JsonObject { ["request"] = Chat((JsonArray)messages.DeepClone(), 10, 3) });
        Assert.Null(streamed["error"]);
        Assert.Equal("assistant", streamed["role"]!.GetValue<string>());
        Assert.Equal(whole["choices"]![0]!["message"]!["content"]!.GetValue<string>(), streamed["text"]!.GetValue<string>());
        Assert.Equal("length", streamed["finish_reason"]!.GetValue<string>());
    }

    [Fact]
    public async Task TemplateExceptionsBecome400s()
    {
        var (status, body, _) = await Host.PostAsync("/v1/chat/completions",
            """{"model":"tiny","messages":[{"role":"assistant","content":"I speak first"}]}""");
        Assert.Equal(400, status);
        Assert.Equal("messages", body!["error"]!["param"]!.GetValue<string>());
        Assert.Contains("Conversation roles must alternate", body["error"]!["message"]!.GetValue<string>());
    }

    [Theory]
    [InlineData("""{"model":"tiny","messages":[]}""", "messages")]
    [InlineData("""{"model":"tiny","messages":[{"role":"wizard","content":"x"}]}""", "messages[0].role")]
    [InlineData("""{"model":"tiny","messages":[{"role":"user","content":[{"type":"image_url"}]}]}""", "messages[0].content[0]")]
    [InlineData("""{"model":"tiny","messages":[{"role":"user","content":"x"}],"top_logprobs":3}""", "top_logprobs")]
    public async Task BadChatRequestsNameTheParameter(string json, string param)
    {
        var (status, body, _) = await Host.PostAsync("/v1/chat/completions", json);
        Assert.Equal(400, status);
        Assert.Equal(param, body!["error"]!["param"]!.GetValue<string>());
    }

    [Fact]
    public async Task ChatLogprobsFollowOpenAiShape()
    {
        var (status, body, _) = await Host.PostAsync("/v1/chat/completions",
            """{"model":"tiny","messages":[{"role":"user","content":"x"}],"max_tokens":3,"logprobs":true,"top_logprobs":2,"ignore_eos":true}""");
        Assert.Equal(200, status);
        var content = body!["choices"]![0]!["logprobs"]!["content"]!.AsArray();
        Assert.Equal(3, content.Count);
        Assert.All(content, c =>
        {
            Assert.True(c!["logprob"]!.GetValue<double>() <= 0);
            Assert.Equal(2, c["top_logprobs"]!.AsArray().Count);
        });
    }
}
