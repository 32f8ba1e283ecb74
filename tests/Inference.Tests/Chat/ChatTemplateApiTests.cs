using System.Text.Json;
using System.Text.Json.Nodes;
using PiServe.Inference.Chat;

namespace PiServe.Inference.Tests.Chat;

/// <summary>Errors, undefined values, variables and the Render overloads.</summary>
public sealed class ChatTemplateApiTests
{
    private static readonly ChatMessage[] OneUser = [new("user", "hi")];

    private static string Render(string template, IReadOnlyDictionary<string, object?>? extra = null) =>
        ChatTemplate.Parse(template).Render(OneUser, addGenerationPrompt: false, extra);

    // ---------------------------------------------------------------- raise_exception

    [Fact]
    public void Raise_exception_message_is_the_templates_own()
    {
        var t = ChatTemplate.Parse("{% if messages[0].role != 'system' %}{{ raise_exception('Roles must alternate: ' ~ messages|length) }}{% endif %}");
        var e = Assert.Throws<ChatTemplateException>(() => t.Render(OneUser, false));
        Assert.Equal("Roles must alternate: 1", e.Message);
        Assert.True(e.RaisedByTemplate);
        Assert.Null(e.Line);
        Assert.Equal("", t.Render([new ChatMessage("system", "s")], false));
    }

    [Fact]
    public void Output_before_raise_is_discarded()
    {
        var e = Assert.Throws<ChatTemplateException>(() => Render("partial output{{ raise_exception(\"it's bad\") }}"));
        Assert.Equal("it's bad", e.Message);
    }

    // ---------------------------------------------------------------- syntax errors

    [Theory]
    [InlineData("{% if x %}\n  {{ x + }}\n{% endif %}", 2, 10, "unexpected '}}'")]
    [InlineData("line one\n{% for m in messages %}{{ m }}", 2, 31, "unexpected end of template; expected '{% endfor %}' or '{% else %}'")]
    [InlineData("{% if a %}x{% endfor %}", 1, 15, "unexpected 'endfor'")]
    [InlineData("\n\n   {% frobnicate %}", 3, 7, "unknown tag 'frobnicate'")]
    [InlineData("{{ messages | nosuchfilter }}", 1, 15, "no filter named 'nosuchfilter'")]
    [InlineData("{{ x is nosuchtest }}", 1, 9, "no test named 'nosuchtest'")]
    [InlineData("ok\n{{ 'unterminated }}", 2, 4, "unterminated string literal")]
    [InlineData("{{ x ", 1, 6, "unexpected end of template inside a {{ }} tag")]
    [InlineData("{# never closed", 1, 1, "missing end of comment tag")]
    [InlineData("{{ (1, 2 }}", 1, 10, "unexpected '}', expected ')'")]
    [InlineData("{{ [1, 2) }}", 1, 9, "unexpected ')', expected ']'")]
    [InlineData("{{ a ; b }}", 1, 6, "unexpected character ';'")]
    [InlineData("{% set %}", 1, 8, "expected a name, got '%}'")]
    [InlineData("{% for x in [] %}{% endfor %}{% break %}", 1, 33, "'break' outside of a loop")]
    [InlineData("{% include 'other.jinja' %}", 1, 4, "the 'include' tag is not supported in chat templates")]
    public void Syntax_errors_name_line_and_column(string template, int line, int column, string reason)
    {
        var e = Assert.Throws<ChatTemplateException>(() => ChatTemplate.Parse(template));
        Assert.Equal($"syntax error at line {line}, column {column}: {reason}", e.Message);
        Assert.Equal(line, e.Line);
        Assert.Equal(column, e.Column);
        Assert.False(e.RaisedByTemplate);
    }

    // ---------------------------------------------------------------- runtime errors

    [Theory]
    [InlineData("{{ 'a' + 1 }}", "can only concatenate str (not \"int\") to str")]
    [InlineData("\n{{ 1 / 0 }}", "division by zero")]
    [InlineData("{{ missing + 'x' }}", "'missing' is undefined")]
    [InlineData("{{ missing() }}", "'missing' is undefined")]
    [InlineData("{{ 1 < 'a' }}", "'<' not supported between instances of 'int' and 'str'")]
    [InlineData("{% for x in none %}{% endfor %}", "'NoneType' object is not iterable")]
    [InlineData("{{ 'x' in none }}", "argument of type 'NoneType' is not iterable")]
    [InlineData("{% set s = 'str' %}{% set s.attr = 1 %}", "cannot assign attribute on non-namespace object 's'")]
    [InlineData("{% for a, b in [[1, 2, 3]] %}{% endfor %}", "too many values to unpack (expected 2)")]
    [InlineData("{{ x|tojson }}", "Object of type Undefined is not JSON serializable ('x' is undefined)")]
    [InlineData("{{ 'abc'.startswith() }}", "startswith() missing required argument 'prefix'")]
    [InlineData("{{ [1][::0] }}", "slice step cannot be zero")]
    [InlineData("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "macro 'f': maximum recursion depth (200) exceeded")]
    public void Runtime_errors_are_chat_template_exceptions_with_a_location(string template, string reason)
    {
        var e = Assert.Throws<ChatTemplateException>(() => Render(template));
        Assert.False(e.RaisedByTemplate);
        Assert.NotNull(e.Line);
        Assert.EndsWith(": " + reason, e.Message);
        Assert.StartsWith($"error at line {e.Line}, column {e.Column}: ", e.Message);
    }

    [Fact]
    public void Runtime_error_points_at_the_failing_expression()
    {
        var e = Assert.Throws<ChatTemplateException>(() => Render("line 1\n  {{ 'ok' }} {{ 1 + none }}"));
        Assert.Equal(2, e.Line);
        Assert.Equal(17, e.Column);
    }

    // ---------------------------------------------------------------- undefined

    [Fact]
    public void Undefined_renders_empty_is_falsy_and_chains()
    {
        Assert.Equal("[][][]", Render("[{{ nothing }}][{{ nothing.attr.deeper }}][{{ nothing['k'][0] }}]"));
        Assert.Equal("no", Render("{% if nothing %}yes{% else %}no{% endif %}"));
        Assert.Equal("True True False", Render("{{ nothing is undefined }} {{ nothing.x is undefined }} {{ nothing.x is defined }}"));
        Assert.Equal("0|", Render("{{ nothing|length }}|{% for x in nothing %}x{% endfor %}"));
        Assert.Equal("x", Render("{{ nothing ~ 'x' }}"));
    }

    [Fact]
    public void Null_content_is_None()
    {
        var t = ChatTemplate.Parse("{% for m in messages %}{{ m.content }}|{{ m.content is none }}|{{ m['content'] is defined }};{% endfor %}");
        Assert.Equal("None|True|True;", t.Render([new ChatMessage("assistant", null)], false));
    }

    // ---------------------------------------------------------------- variables

    [Fact]
    public void Standard_variables_match_apply_chat_template()
    {
        var t = ChatTemplate.Parse("{{ messages|length }} {{ add_generation_prompt }} {{ tools }} {{ tools is defined }} {{ documents }} [{{ bos_token }}]",
            new Dictionary<string, string> { ["bos_token"] = "<s>" });
        Assert.Equal("1 True None True None [<s>]", t.Render(OneUser, addGenerationPrompt: true));
        Assert.Equal("<s>", t.BosToken);
        Assert.Null(t.EosToken);
    }

    [Fact]
    public void Extra_variables_accept_dotnet_and_json_values()
    {
        var extra = new Dictionary<string, object?>
        {
            ["enable_thinking"] = false,
            ["count"] = 3,
            ["ratio"] = 0.5f,
            ["price"] = 2.0m,
            ["names"] = new[] { "a", "b" },
            ["map"] = new Dictionary<string, int> { ["k"] = 1 },
            ["json"] = JsonDocument.Parse("""{"x": [1, 2.5, "s", null, true], "y": {"z": 1.0}}""").RootElement,
            ["node"] = JsonNode.Parse("""{"n": 7}"""),
            ["tools"] = JsonNode.Parse("""[{"type": "function", "function": {"name": "f"}}]"""),
        };
        string output = Render("{{ enable_thinking is false }} {{ count + 1 }} {{ ratio }} {{ price }} {{ names|join }} {{ map.k }} " +
                               "{{ json.x }} {{ json.y.z }} {{ node.n * 2 }} {{ tools[0].function.name }} {{ json|tojson }}", extra);
        Assert.Equal("True 4 0.5 2.0 ab 1 [1, 2.5, 's', None, True] 1.0 14 f {\"x\": [1, 2.5, \"s\", null, true], \"y\": {\"z\": 1.0}}", output);
    }

    [Fact]
    public void Extra_variables_override_tools_but_not_messages()
    {
        Assert.Equal("[1]", Render("{{ tools }}", new Dictionary<string, object?> { ["tools"] = new[] { 1 } }));
        Assert.Throws<ArgumentException>(() => Render("", new Dictionary<string, object?> { ["messages"] = null }));
    }

    [Fact]
    public void Dictionary_messages_carry_extra_fields()
    {
        var t = ChatTemplate.Parse("{% for m in messages %}{{ m.role }}:{{ m.content }}{% for c in m.tool_calls %}[{{ c.function.name }}({{ c.function.arguments|tojson }})]{% endfor %}{{ '\n' }}{% endfor %}");
        var messages = new List<Dictionary<string, object?>>
        {
            new() { ["role"] = "user", ["content"] = "weather?" },
            new()
            {
                ["role"] = "assistant", ["content"] = null,
                ["tool_calls"] = new List<object?>
                {
                    new Dictionary<string, object?> { ["function"] = new Dictionary<string, object?> { ["name"] = "get", ["arguments"] = new Dictionary<string, object?> { ["city"] = "Zürich", ["days"] = 2 } } },
                },
            },
        };
        Assert.Equal("user:weather?\nassistant:None[get({\"city\": \"Zürich\", \"days\": 2})]\n", t.Render(messages, false));
    }

    [Fact]
    public void Strftime_now_reads_the_clock()
    {
        var t = ChatTemplate.Parse("{{ strftime_now('%d %b %Y') }}|{{ strftime_now('%A %B %-d, %H:%M:%S %p %j') }}");
        var pinned = t.WithClock(() => new DateTime(2024, 7, 5, 14, 3, 9));
        Assert.Equal("05 Jul 2024|Friday July 5, 14:03:09 PM 187", pinned.Render(OneUser, false));
        Assert.Equal(DateTime.Now.Year.ToString(), ChatTemplate.Parse("{{ strftime_now('%Y') }}").Render(OneUser, false));
    }

    [Fact]
    public void Template_can_be_rendered_many_times_and_concurrently()
    {
        var t = ChatTemplate.Parse("{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }}");
        var results = Enumerable.Range(1, 50).AsParallel()
            .Select(i => t.Render(Enumerable.Repeat(new ChatMessage("user", "x"), i).ToList(), false)).ToList();
        Assert.Equal(Enumerable.Range(1, 50).Select(i => i.ToString()), results);
    }
}
