using System.Text;
using System.Text.Json.Nodes;

namespace PiServe.Api.Tests.Serving;

/// <summary>
/// Hostile chat templates shipped in a model folder (issue 13, item 3): nested huge loops and a string
/// doubled 40 times end in a 400 naming the limit, and the host keeps answering.
/// </summary>
public sealed class ChatTemplateBudgetApiTests
{
    [Fact]
    public async Task UnboundedTemplatesAreStoppedWithA400()
    {
        using var root = new TempDir();
        var templates = new Dictionary<string, (string Template, string Expected)>
        {
            ["loops"] = ("{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}", "work budget"),
            ["output"] = ("{% for i in range(99999) %}{% for j in range(99999) %}x{% endfor %}{% endfor %}", "output limit"),
            ["doubling"] = ("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}", "limit of"),
            ["repeat"] = ("{{ 'x' * 10**10 }}", "limit of"),
        };
        var args = new List<string> { $"--PiServe:ModelsRoot={root.Path}" };
        int i = 0;
        foreach (var (name, (template, _)) in templates)
        {
            string dir = Path.Combine(root.Path, name);
            CorruptModelStartupTests.WriteGood(dir);
            File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), new JsonObject { ["chat_template"] = template, ["bos_token"] = "<s>" }.ToJsonString());
            args.Add($"--PiServe:Models:{i}:Id={name}");
            args.Add($"--PiServe:Models:{i++}:Path={name}");
        }
        await using var host = await HostProcess.StartAsync(root.Path, args);
        foreach (var (name, (_, expected)) in templates)
        {
            var r = await host.Http.PostAsync("/v1/chat/completions", new StringContent(
                $$"""{"model":"{{name}}","messages":[{"role":"user","content":"hi"}],"max_tokens":2}""", Encoding.UTF8, "application/json"));
            string body = await r.Content.ReadAsStringAsync();
            Assert.True((int)r.StatusCode == 400, $"{name}: {(int)r.StatusCode} {body}");
            var error = JsonNode.Parse(body)!["error"]!;
            Assert.Equal("messages", error["param"]!.GetValue<string>());
            Assert.True(error["message"]!.GetValue<string>().Contains(expected), $"{name}: {error["message"]}");
        }
        Assert.True((await host.Http.GetAsync("/health/live")).IsSuccessStatusCode);
    }
}
