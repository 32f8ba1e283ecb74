using System.Text;
using System.Text.Json.Nodes;
using PiServe.Inference.Chat;
using Xunit.Abstractions;

namespace PiServe.Inference.Tests.Chat;

/// <summary>
/// Seeded fuzzing of the template lexer, parser and interpreter: real templates are cut up, duplicated,
/// swapped and sprinkled with Jinja fragments and odd Unicode, then parsed and rendered under small limits.
/// A template from a checkpoint is untrusted input, so the only exception that may ever escape is
/// <see cref="ChatTemplateException"/> (or its <see cref="ChatTemplateLimitException"/>): anything else would
/// be a 500 (or, for a stack overflow, a dead server).
/// </summary>
public sealed class ChatTemplateFuzzTests(ITestOutputHelper log)
{
    /// <summary>
    /// 300 cases run in CI (a few seconds). Set PISERVE_FUZZ_ITERATIONS to run more, e.g.
    /// PISERVE_FUZZ_ITERATIONS=100000; PISERVE_FUZZ_SEED picks another starting seed.
    /// </summary>
    private static int Iterations =>
        int.TryParse(Environment.GetEnvironmentVariable("PISERVE_FUZZ_ITERATIONS"), out int n) && n > 0 ? n : 300;

    private static int FirstSeed =>
        int.TryParse(Environment.GetEnvironmentVariable("PISERVE_FUZZ_SEED"), out int s) ? s : 20240613;

    private static readonly RenderLimits SmallLimits = new() { MaxSteps = 50_000, MaxOutputChars = 50_000, MaxStringChars = 20_000 };

    private static readonly string[] Fragments =
    [
        "{% for", "{% for x in range(", "{% endfor %}", "{% if", "{% if true %}", "{% elif", "{% else %}", "{% endif %}",
        "{{", "}}", "{%", "%}", "{%-", "-%}", "{{-", "-}}", "{#", "#}", "{% raw %}", "{% endraw %}",
        "{% macro m(a, b=1) %}", "{% endmacro %}", "{{ m(", "{% set", "{% set ns = namespace(x=1) %}", "{% set ns.x = ",
        "{% endset %}", "{% filter upper %}", "{% endfilter %}", "{% break %}", "{% continue %}", "{% generation %}",
        "range(", "range(10**12)", "|join", "|join(', ')", "* 999999", "* 10**10", "** 99", "~", "+", "-", "//", "%",
        "'", "\"", "(", ")", "[", "]", "{", "}", ",", ":", ".", "|", "=", "==", "!=", "<", ">", "not ", " in ", " is ",
        "|tojson", "|tojson(indent=", "|indent(", "|center(", "|replace('", "|format(", "|truncate(", "|list", "|sort",
        "|unique", "|reverse", "|length", "|int", "|float", "|round(", "|default(", "|selectattr('role', 'equalto', ",
        "|map(attribute=", "|items", "|dictsort", "|trim", "|string", "|first", "|last", "|sum", "|max", "|min",
        ".format(", ".split(", ".replace(", ".strip(", ".ljust(", ".zfill(", ".startswith(", ".append(", ".items()",
        "'%s' % ", "'%c' % ", "'{:>9999}'", "'%999999999s'", "[::-1]", "[1:", "::0]", "[-1]", "[0]",
        "messages", "message", "loop.", "loop.index", "loop.cycle(", "ns.", "tools", "bos_token", "add_generation_prompt",
        "strftime_now(", "raise_exception(", "dict(", "namespace(", "none", "None", "true", "false", "is defined",
        "is string", "is mapping", "0", "1", "-1", "1e308", "9223372036854775807", "0x10", "\\", "\n", " ", "\t",
    ];

    [Fact]
    public void Mutated_real_templates_only_ever_throw_chat_template_exceptions()
    {
        var corpus = SeedTemplates();
        Assert.NotEmpty(corpus);
        int iterations = Iterations, firstSeed = FirstSeed;
        var failures = new List<string>();
        int parsed = 0, rendered = 0;
        for (int i = 0; i < iterations && failures.Count < 5; i++)
        {
            int seed = firstSeed + i;
            var random = new Random(seed);
            string template = Mutate(corpus[random.Next(corpus.Count)], random);
            try
            {
                var parsedTemplate = ChatTemplate.Parse(template, new Dictionary<string, string> { ["bos_token"] = "<s>", ["eos_token"] = "</s>" });
                parsed++;
                // A case that takes seconds means a loop somewhere that spends no budget: caught by the token.
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
                parsedTemplate.WithClock(() => new DateTime(2024, 6, 13)).Render(Messages(random), random.Next(2) == 0,
                    Extras(random), timeout.Token, SmallLimits);
                rendered++;
            }
            catch (ChatTemplateException) { }
            catch (Exception e)
            {
                failures.Add($"seed {seed}: {e.GetType().Name}: {e.Message}\n--- template ---\n{template}\n--- end ---\n{e}");
            }
        }
        log.WriteLine($"{iterations} cases from seed {firstSeed}: {parsed} parsed, {rendered} rendered without error");
        Assert.True(failures.Count == 0, string.Join("\n\n", failures));
    }

    /// <summary>The real templates: the differential test's folder, and the npm packages' configs when restored.</summary>
    private static List<string> SeedTemplates()
    {
        var templates = new List<string>();
        foreach (var file in Directory.EnumerateFiles(Path.Combine(ReferenceRenderer.Folder, "templates"), "*.jinja").Order())
            templates.Add(File.ReadAllText(file));
        if (Directory.Exists(ReferenceRenderer.Packages))
        {
            foreach (var config in Directory.EnumerateFiles(ReferenceRenderer.Packages, "tokenizer_config.json", SearchOption.AllDirectories).Order())
            {
                try
                {
                    switch (JsonNode.Parse(File.ReadAllText(config))?["chat_template"])
                    {
                        case JsonValue v when v.TryGetValue<string>(out var s): templates.Add(s); break;
                        case JsonArray a:
                            foreach (var item in a)
                                if (item?["template"]?.GetValue<string>() is { } t) templates.Add(t);
                            break;
                    }
                }
                catch (Exception e) when (e is System.Text.Json.JsonException or InvalidOperationException) { }
            }
        }
        return templates;
    }

    private static string Mutate(string template, Random random)
    {
        // A third of the cases keep the template whole and add expressions after it, so that most of them get
        // past the parser and exercise the interpreter.
        if (random.Next(3) == 0)
        {
            var whole = new StringBuilder(template);
            for (int k = random.Next(1, 4); k > 0; k--) whole.Append("{{ ").Append(Expression(random, 3)).Append(" }}");
            return whole.ToString();
        }
        var sb = new StringBuilder(template);
        int mutations = 1 + random.Next(4);
        for (int m = 0; m < mutations; m++)
        {
            int Pos() => random.Next(sb.Length + 1);
            (int Start, int Length) Span()
            {
                int start = random.Next(sb.Length + 1);
                return (start, random.Next(Math.Min(80, sb.Length - start) + 1));
            }
            switch (random.Next(8))
            {
                case 6:
                case 7: // a well-formed output or set of a random expression: reaches the interpreter more often
                    sb.Insert(Pos(), random.Next(2) == 0 ? "{{ " + Expression(random, 3) + " }}" : "{% set v = " + Expression(random, 3) + " %}");
                    break;
                case 0: // delete a span
                    {
                        var (start, length) = Span();
                        sb.Remove(start, length);
                        break;
                    }
                case 1: // duplicate a span
                    {
                        var (start, length) = Span();
                        sb.Insert(Pos(), sb.ToString(start, length));
                        break;
                    }
                case 2: // swap two spans
                    {
                        var (a, la) = Span();
                        var (b, lb) = Span();
                        if (a > b) (a, la, b, lb) = (b, lb, a, la);
                        if (a + la > b) break;
                        string first = sb.ToString(a, la), second = sb.ToString(b, lb);
                        sb.Remove(b, lb).Insert(b, first).Remove(a, la).Insert(a, second);
                        break;
                    }
                case 3:
                case 4: // insert Jinja fragments
                    {
                        int n = 1 + random.Next(3);
                        var insert = new StringBuilder();
                        for (int k = 0; k < n; k++) insert.Append(Fragments[random.Next(Fragments.Length)]);
                        sb.Insert(Pos(), insert.ToString());
                        break;
                    }
                default: // random Unicode, lone surrogates included
                    {
                        int n = 1 + random.Next(4);
                        var insert = new StringBuilder();
                        for (int k = 0; k < n; k++)
                        {
                            switch (random.Next(4))
                            {
                                case 0: insert.Append((char)random.Next(0x20, 0x7f)); break;
                                case 1: insert.Append((char)random.Next(0, 0x20)); break;
                                case 2: insert.Append(char.ConvertFromUtf32(random.Next(0x1F300, 0x1FAFF))); break;
                                default: insert.Append((char)random.Next(0x80, 0x10000)); break;
                            }
                        }
                        sb.Insert(Pos(), insert.ToString());
                        break;
                    }
            }
        }
        return sb.ToString();
    }

    private static readonly string[] Atoms =
    [
        "0", "1", "-1", "2", "7", "10**10", "9223372036854775807", "1.5", "-0.0", "1e308", "''", "'ab'", "'x'", "'a,b'", "'%s'",
        "'{}'", "'{0}{0}'", "'%c'", "'👋🏽'", "'\u00e9'", "'\n'", "none", "true", "false", "[]", "[1, 'a', none]", "[[1], [2]]", "(1,)",
        "{}", "{'a': 1, 'b': [2]}", "messages", "messages[0]", "tools", "loop", "ns", "v", "undefined_name", "range(5)",
        "namespace(a=1)", "dict(a=1)", "bos_token",
    ];

    private static readonly string[] Filters =
    [
        "|join", "|join(', ')", "|list", "|sort", "|sort(attribute='a')", "|unique", "|reverse", "|length", "|int", "|float",
        "|round(2)", "|tojson", "|tojson(indent=2)", "|indent(2)", "|center(9)", "|replace('a', 'bb')", "|format(1)",
        "|truncate(3)", "|first", "|last", "|sum", "|max", "|min", "|items", "|dictsort", "|trim", "|string", "|title",
        "|upper", "|default(1)", "|map('upper')", "|map(attribute='role')", "|select('string')", "|selectattr('role')",
        "|rejectattr('a', 'equalto', 1)", "|attr('a')", "|pprint", "|wordcount", "|abs", "|capitalize", "|e", "|count",
        "[0]", "[-1]", "[1:]", "[::-1]", "[::2]", "['a']", ".a", ".role", "()", "(1)", ".format(1, 2)", ".split(',')",
        ".split()", ".rsplit(',', 1)", ".strip()", ".ljust(5)", ".zfill(4)", ".startswith('a')", ".append(1)", ".items()",
        ".keys()", ".get('a')", ".replace('', '-')", ".count('')", ".index(1)", ".partition(',')", ".title()", ".upper()",
    ];

    private static readonly string[] Operators = [" + ", " - ", " * ", " / ", " // ", " % ", " ** ", " ~ ", " and ", " or ",
        " == ", " != ", " < ", " >= ", " in ", " not in ", " is defined", " is string", " is divisibleby(0)", " if true else "];

    /// <summary>A random expression from template-like atoms, filters, methods and operators.</summary>
    private static string Expression(Random random, int depth)
    {
        string e = depth == 0 || random.Next(3) == 0 ? Atoms[random.Next(Atoms.Length)] : "(" + Expression(random, depth - 1) + ")";
        if (random.Next(2) == 0) e += Filters[random.Next(Filters.Length)];
        if (depth > 0 && random.Next(2) == 0)
        {
            string op = Operators[random.Next(Operators.Length)];
            e += op.StartsWith(" is ") ? op : op + Expression(random, depth - 1);
        }
        if (random.Next(8) == 0) e = "not " + e;
        return e;
    }

    private static List<IReadOnlyDictionary<string, object?>> Messages(Random random)
    {
        var roles = new[] { "system", "user", "assistant", "tool", "user" };
        var messages = new List<IReadOnlyDictionary<string, object?>>();
        int n = random.Next(5);
        for (int i = 0; i < n; i++)
        {
            var m = new Dictionary<string, object?> { ["role"] = roles[random.Next(roles.Length)], ["content"] = random.Next(6) == 0 ? null : $"message {i} {{{{ x }}}} ✓ 👋🏽" };
            if (random.Next(4) == 0)
                m["tool_calls"] = new List<object?> { new Dictionary<string, object?> { ["type"] = "function", ["function"] = new Dictionary<string, object?> { ["name"] = "f", ["arguments"] = new Dictionary<string, object?> { ["a"] = 1 } } } };
            messages.Add(m);
        }
        return messages;
    }

    private static Dictionary<string, object?>? Extras(Random random) => random.Next(3) switch
    {
        0 => null,
        1 => new() { ["tools"] = new List<object?> { new Dictionary<string, object?> { ["type"] = "function", ["function"] = new Dictionary<string, object?> { ["name"] = "get_weather", ["parameters"] = new Dictionary<string, object?>() } } } },
        _ => new() { ["tools"] = null, ["documents"] = new List<object?> { new Dictionary<string, object?> { ["title"] = "t", ["text"] = "body" } } },
    };
}
