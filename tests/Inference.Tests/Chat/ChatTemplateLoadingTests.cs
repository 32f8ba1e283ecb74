using System.Text.Json.Nodes;
using PiServe.Inference.Chat;

namespace PiServe.Inference.Tests.Chat;

/// <summary>ChatTemplate.FromTokenizerConfig on the shapes checkpoints ship.</summary>
public sealed class ChatTemplateLoadingTests
{
    private static readonly ChatMessage[] Conversation = [new("system", "S"), new("user", "U")];

    private const string Simple = "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}{{ eos_token }}";

    private static void WriteConfig(TempDir dir, JsonObject config) =>
        File.WriteAllText(dir.File("tokenizer_config.json"), config.ToJsonString());

    [Fact]
    public void String_template_with_string_special_tokens()
    {
        using var dir = new TempDir();
        WriteConfig(dir, new JsonObject { ["bos_token"] = "<s>", ["eos_token"] = "</s>", ["pad_token"] = null, ["chat_template"] = Simple });
        var t = ChatTemplate.FromTokenizerConfig(dir.Path)!;
        Assert.Equal("<s>", t.BosToken);
        Assert.Equal("</s>", t.EosToken);
        Assert.Equal("tokenizer_config.json: chat_template", t.Origin);
        Assert.Equal("<s><system>S<user>U<assistant></s>", t.Render(Conversation, true));
        Assert.Equal("<s><system>S<user>U</s>", t.Render(Conversation, false));
    }

    [Fact]
    public void Special_tokens_given_as_added_token_objects()
    {
        using var dir = new TempDir();
        WriteConfig(dir, new JsonObject
        {
            ["bos_token"] = new JsonObject { ["__type"] = "AddedToken", ["content"] = "<｜begin▁of▁sentence｜>", ["lstrip"] = false },
            ["eos_token"] = new JsonObject { ["content"] = "<eos>" },
            ["unk_token"] = "<unk>",
            ["chat_template"] = Simple + "{{ unk_token }}",
        });
        var t = ChatTemplate.FromTokenizerConfig(dir.Path)!;
        Assert.Equal("<｜begin▁of▁sentence｜><system>S<user>U<eos><unk>", t.Render(Conversation, false));
        Assert.Equal("<unk>", t.SpecialTokens["unk_token"]);
    }

    [Fact]
    public void List_of_named_templates_uses_default()
    {
        using var dir = new TempDir();
        WriteConfig(dir, new JsonObject
        {
            ["chat_template"] = new JsonArray(
                new JsonObject { ["name"] = "tool_use", ["template"] = "TOOLS {{ tools|length }}" },
                new JsonObject { ["name"] = "default", ["template"] = "DEFAULT {{ messages|length }}" },
                new JsonObject { ["name"] = "rag", ["template"] = "RAG" }),
        });
        var t = ChatTemplate.FromTokenizerConfig(dir.Path)!;
        Assert.Equal("DEFAULT 2", t.Render(Conversation, false));
        Assert.Equal("tokenizer_config.json: chat_template[1] ('default')", t.Origin);

        var tools = ChatTemplate.FromTokenizerConfig(dir.Path, "tool_use")!;
        Assert.Equal("TOOLS 1", tools.Render(Conversation, false, new Dictionary<string, object?> { ["tools"] = new[] { "f" } }));

        var e = Assert.Throws<ChatTemplateException>(() => ChatTemplate.FromTokenizerConfig(dir.Path, "nope"));
        Assert.Contains("tokenizer_config.json", e.Message);
        Assert.Contains("'nope'", e.Message);
    }

    [Fact]
    public void List_without_default_is_an_error_naming_the_field()
    {
        using var dir = new TempDir();
        WriteConfig(dir, new JsonObject { ["chat_template"] = new JsonArray(new JsonObject { ["name"] = "rag", ["template"] = "x" }) });
        var e = Assert.Throws<ChatTemplateException>(() => ChatTemplate.FromTokenizerConfig(dir.Path));
        Assert.Equal("tokenizer_config.json: field 'chat_template' has no template named 'default' (it has: rag)", e.Message);
    }

    [Fact]
    public void No_template_gives_null()
    {
        using var dir = new TempDir();
        Assert.Null(ChatTemplate.FromTokenizerConfig(dir.Path)); // no tokenizer_config.json at all
        WriteConfig(dir, new JsonObject { ["bos_token"] = "<s>" });
        Assert.Null(ChatTemplate.FromTokenizerConfig(dir.Path));
        WriteConfig(dir, new JsonObject { ["chat_template"] = null });
        Assert.Null(ChatTemplate.FromTokenizerConfig(dir.Path));
    }

    [Fact]
    public void Missing_folder_is_an_error()
    {
        var e = Assert.Throws<ChatTemplateException>(() => ChatTemplate.FromTokenizerConfig("/nonexistent/piserve-model"));
        Assert.Contains("not found", e.Message);
    }

    [Fact]
    public void Malformed_json_names_tokenizer_config()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("tokenizer_config.json"), "{\n  \"bos_token\": \"<s>\",\n  \"chat_template\": \"{{ x }}\"\n  oops\n}");
        var e = Assert.Throws<ChatTemplateException>(() => ChatTemplate.FromTokenizerConfig(dir.Path));
        Assert.StartsWith("tokenizer_config.json: invalid JSON at line 4", e.Message);
        Assert.Equal(4, e.Line);

        File.WriteAllText(dir.File("tokenizer_config.json"), "[1, 2]");
        e = Assert.Throws<ChatTemplateException>(() => ChatTemplate.FromTokenizerConfig(dir.Path));
        Assert.StartsWith("tokenizer_config.json: expected a JSON object", e.Message);
    }

    [Theory]
    [InlineData("42", "tokenizer_config.json: field 'chat_template' must be a string or a list of {\"name\", \"template\"} objects, found Number")]
    [InlineData("[{\"name\": \"default\"}]", "tokenizer_config.json: field 'chat_template[0]' must be an object with string \"name\" and \"template\"")]
    public void Wrong_chat_template_type_names_the_field(string json, string message)
    {
        using var dir = new TempDir();
        WriteConfig(dir, new JsonObject { ["chat_template"] = JsonNode.Parse(json) });
        var e = Assert.Throws<ChatTemplateException>(() => ChatTemplate.FromTokenizerConfig(dir.Path));
        Assert.Equal(message, e.Message);
    }

    [Fact]
    public void Wrong_special_token_type_names_the_field()
    {
        using var dir = new TempDir();
        WriteConfig(dir, new JsonObject { ["eos_token"] = 2, ["chat_template"] = "x" });
        var e = Assert.Throws<ChatTemplateException>(() => ChatTemplate.FromTokenizerConfig(dir.Path));
        Assert.StartsWith("tokenizer_config.json: field 'eos_token'", e.Message);
    }

    [Fact]
    public void Syntax_error_in_the_config_template_names_file_field_line_and_column()
    {
        using var dir = new TempDir();
        WriteConfig(dir, new JsonObject { ["chat_template"] = "{% for m in messages %}\n{{ m.content }\n{% endfor %}" });
        var e = Assert.Throws<ChatTemplateException>(() => ChatTemplate.FromTokenizerConfig(dir.Path));
        Assert.StartsWith("tokenizer_config.json: chat_template: syntax error at line 2, column 14: ", e.Message);
        Assert.Equal(2, e.Line);
        Assert.Equal(14, e.Column);
    }

    [Fact]
    public void Chat_template_jinja_file_wins_over_the_config_field()
    {
        using var dir = new TempDir();
        WriteConfig(dir, new JsonObject { ["bos_token"] = "<s>", ["chat_template"] = "from config" });
        File.WriteAllText(dir.File("chat_template.jinja"), "{{ bos_token }}from jinja file\n");
        var t = ChatTemplate.FromTokenizerConfig(dir.Path)!;
        Assert.Equal("chat_template.jinja", t.Origin);
        Assert.Equal("<s>from jinja file", t.Render(Conversation, false));

        File.Delete(dir.File("tokenizer_config.json"));
        Assert.Equal("from jinja file", ChatTemplate.FromTokenizerConfig(dir.Path)!.Render(Conversation, false));
    }

    [Fact]
    public void Processor_chat_template_json_is_the_last_resort()
    {
        using var dir = new TempDir();
        WriteConfig(dir, new JsonObject { ["eos_token"] = "</s>" });
        File.WriteAllText(dir.File("chat_template.json"), new JsonObject { ["chat_template"] = "processor{{ eos_token }}" }.ToJsonString());
        var t = ChatTemplate.FromTokenizerConfig(dir.Path)!;
        Assert.Equal("chat_template.json: chat_template", t.Origin);
        Assert.Equal("processor</s>", t.Render(Conversation, false));
    }

    [Fact]
    public void Real_checkpoint_configs_load()
    {
        ReferenceRenderer.EnsureInstalled();
        foreach (var name in new[] { "llama3", "qwen3", "gemma3", "deepseek_v3" })
        {
            var t = ChatTemplate.FromTokenizerConfig(ReferenceRenderer.TokenizerFolder(name));
            Assert.NotNull(t);
            Assert.NotEmpty(t.Render(Conversation.Skip(1).ToList(), true));
        }
        Assert.Null(ChatTemplate.FromTokenizerConfig(ReferenceRenderer.TokenizerFolder("llama2")));
    }
}
