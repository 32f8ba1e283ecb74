using System.Text.Json.Nodes;

namespace PiServe.Api.Tests.Serving;

[Collection("host")]
public class SwaggerTests(HostFixture fixture)
{
    [Fact]
    public void OpenApiDocumentValidatesAndDescribesEveryEndpoint()
    {
        var r = fixture.Host.RunClient("swagger", new JsonObject());
        Assert.Null(r["error"]);
        Assert.True(r["valid"]!.GetValue<bool>());
        var paths = r["paths"]!.AsArray().Select(p => p!.GetValue<string>()).ToHashSet();
        foreach (var p in new[] { "/v1/models", "/v1/completions", "/v1/chat/completions", "/tokenize", "/detokenize", "/health/live", "/health/ready", "/v1/models/{id}/scheduler" })
            Assert.Contains(p, paths);
    }

    [Fact]
    public async Task CompletionRequestSchemaHasTheOpenAiFieldsAndOurs()
    {
        var doc = JsonNode.Parse(await fixture.Host.Http.GetStringAsync("/swagger/v1/swagger.json"))!;
        var props = doc["components"]!["schemas"]!["CompletionRequest"]!["properties"]!.AsObject();
        foreach (var name in new[] { "model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "seed", "stop", "stream", "echo", "logprobs", "rope_scaling", "rope_cache" })
            Assert.True(props.ContainsKey(name), $"CompletionRequest schema lacks '{name}'");
        var responses = doc["paths"]!["/v1/completions"]!["post"]!["responses"]!.AsObject();
        foreach (var code in new[] { "200", "400", "404", "413", "429" })
            Assert.True(responses.ContainsKey(code), $"/v1/completions documents no {code}");
    }
}
