using PiServe.Inference.Chat;

namespace PiServe.Inference.Tests.Chat;

/// <summary>
/// Hostile templates (endless loops, values that double until memory runs out) end with
/// <see cref="ChatTemplateLimitException"/> instead of hanging a request or answering 500; a cancelled
/// token stops a render.
/// </summary>
public sealed class ChatTemplateLimitTests
{
    private static readonly ChatMessage[] Messages = [new("user", "hi")];

    private static ChatTemplateLimitException RenderFails(string template, RenderLimits? limits = null) =>
        Assert.Throws<ChatTemplateLimitException>(() =>
            ChatTemplate.Parse(template).Render(Messages, addGenerationPrompt: true, limits: limits));

    [Fact]
    public void Nested_huge_loops_exhaust_the_work_budget()
    {
        var e = RenderFails("{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}");
        Assert.Equal(RenderLimitKind.Steps, e.Limit);
        Assert.Equal(5_000_000, e.LimitValue);
        Assert.Contains("the chat template exceeded its work budget of 5000000 steps", e.Message);
        Assert.NotNull(e.Line);
        Assert.IsAssignableFrom<ChatTemplateException>(e);
    }

    [Fact]
    public void A_smaller_budget_is_respected()
    {
        var limits = new RenderLimits { MaxSteps = 1000 };
        var e = RenderFails("{% for i in range(1000) %}{{ i }}{% endfor %}", limits);
        Assert.Equal(RenderLimitKind.Steps, e.Limit);
        Assert.Contains("work budget of 1000 steps", e.Message);
        // The same template fits the default budget.
        Assert.StartsWith("0123", ChatTemplate.Parse("{% for i in range(1000) %}{{ i }}{% endfor %}").Render(Messages, true));
    }

    [Theory]
    [InlineData("{% macro d(s, n) %}{% if n == 0 %}{{ s }}{% else %}{{ d(s ~ s, n - 1) }}{% endif %}{% endmacro %}{{ d('x', 40) }}")]
    [InlineData("{% macro d(s, n) %}{% if n == 0 %}{{ s }}{% else %}{% set t %}{{ s }}{{ s }}{% endset %}{{ d(t, n - 1) }}{% endif %}{% endmacro %}{{ d('x', 40) }}")]
    [InlineData("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}")]
    [InlineData("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s * 2 %}{% endfor %}{{ ns.s }}")]
    [InlineData("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s|length }}")]
    [InlineData("{% set ns = namespace(l=['x']) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l|length }}")]
    [InlineData("{% set ns = namespace(l=['x']) %}{% for i in range(40) %}{% set ns.l = ns.l * 2 %}{% endfor %}{{ ns.l|length }}")]
    [InlineData("{% set ns = namespace(l=['x']) %}{% for i in range(40) %}{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ ns.l }}")]
    [InlineData("{% set ns = namespace(l=['x']) %}{% for i in range(40) %}{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ ns.l|tojson }}")]
    [InlineData("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = [ns.s, ns.s]|join %}{% endfor %}{{ ns.s|length }}")]
    [InlineData("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s.replace('x', 'xx') %}{% endfor %}{{ ns.s|length }}")]
    [InlineData("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = '%s%s' % (ns.s, ns.s) %}{% endfor %}{{ ns.s|length }}")]
    [InlineData("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = '{0}{0}'.format(ns.s) %}{% endfor %}{{ ns.s|length }}")]
    [InlineData("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s.center(ns.s|length * 2) %}{% endfor %}{{ ns.s|length }}")]
    [InlineData("{% set ns = namespace(s='x\\nx') %}{% for i in range(40) %}{% set ns.s = ns.s|indent(ns.s|length) %}{% endfor %}{{ ns.s|length }}")]
    [InlineData("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s|tojson %}{% endfor %}{{ ns.s|length }}")]
    [InlineData("{% macro twice(s) %}{{ s }}{{ s }}{% endmacro %}{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = twice(ns.s) %}{% endfor %}{{ ns.s|length }}")]
    public void Doubling_a_value_forty_times_hits_a_size_limit_without_allocating_it(string template)
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = RenderFails(template);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(e.Limit is RenderLimitKind.StringChars or RenderLimitKind.OutputChars, e.Message);
        Assert.True(allocated < 200L * 1024 * 1024, $"allocated {allocated / (1024 * 1024)} MB before failing");
    }

    [Theory]
    [InlineData("{{ 'x' * 10**10 }}", RenderLimitKind.StringChars)]
    [InlineData("{{ 10**10 * 'x' }}", RenderLimitKind.StringChars)]
    [InlineData("{{ 'abc' * 100000000 }}", RenderLimitKind.StringChars)]
    [InlineData("{{ range(10**12)|list }}", RenderLimitKind.StringChars)]
    [InlineData("{{ range(-9223372036854775807, 9223372036854775807)|length }}", RenderLimitKind.StringChars)]
    [InlineData("{% for i in range(10**12) %}{% endfor %}", RenderLimitKind.StringChars)]
    [InlineData("{{ ('x'|list) * 10**10 }}", RenderLimitKind.StringChars)]
    [InlineData("{{ ['ab'] * 10**10 }}", RenderLimitKind.StringChars)]
    [InlineData("{{ (['ab'] * 1000000)|join('ab') }}", RenderLimitKind.StringChars)]
    [InlineData("{{ ('ab' * 500000)|join('ab') }}", RenderLimitKind.StringChars)]
    [InlineData("{{ 'ab'.join(['x' * 999999] * 3) }}", RenderLimitKind.StringChars)]
    [InlineData("{{ ('x' * 999999)|replace('x', 'yy') }}", RenderLimitKind.StringChars)]
    [InlineData("{{ ('x' * 999999).replace('', 'yy') }}", RenderLimitKind.StringChars)]
    [InlineData("{{ '%999999999s' % 'x' }}", RenderLimitKind.StringChars)]
    [InlineData("{{ '%99999999999999999999d' % 1 }}", RenderLimitKind.StringChars)]
    [InlineData("{{ '%.999999999f' % 1.5 }}", RenderLimitKind.StringChars)]
    [InlineData("{{ '{:>999999999}'.format('x') }}", RenderLimitKind.StringChars)]
    [InlineData("{{ '%s'|format('a') * 10**9 }}", RenderLimitKind.StringChars)]
    [InlineData("{{ 'x'|center(10**10) }}", RenderLimitKind.StringChars)]
    [InlineData("{{ 'x'.ljust(10**10) }}", RenderLimitKind.StringChars)]
    [InlineData("{{ 'x'.rjust(2**31 + 5) }}", RenderLimitKind.StringChars)]
    [InlineData("{{ '1'.zfill(10**10) }}", RenderLimitKind.StringChars)]
    [InlineData("{{ 'a\nb'|indent(10**9) }}", RenderLimitKind.StringChars)]
    [InlineData("{{ [[1]]|tojson(indent=10**9) }}", RenderLimitKind.StringChars)]
    [InlineData("{% set l = [] %}{% for i in range(2000000) %}{{ l.append(i) }}{% endfor %}", RenderLimitKind.StringChars)]
    [InlineData("{% for i in range(1000000) %}xxxxxxxxxx{% endfor %}", RenderLimitKind.OutputChars)]
    [InlineData("{% for i in range(999999) %}{% for j in range(999999) %}{% endfor %}{% endfor %}", RenderLimitKind.Steps)]
    [InlineData("{% set s = 'x' * 999999 %}{% for i in range(999999) %}{% if s|length > 0 and 'y' in s %}{% endif %}{% endfor %}", RenderLimitKind.Steps)]
    [InlineData("{% set l = range(999999)|list %}{% for i in range(999999) %}{% set x = l|sort %}{% endfor %}", RenderLimitKind.Steps)]
    [InlineData("{% set l = range(50000)|list %}{{ l|unique|length }}", RenderLimitKind.Steps)]
    [InlineData("{% macro f(n) %}{% if n < 9 %}{% for i in range(10) %}{{ f(n + 1) }}{% endfor %}{% endif %}{% endmacro %}{{ f(0) }}", RenderLimitKind.Steps)]
    public void Operations_that_would_build_huge_values_or_run_forever_throw_the_limit_exception(string template, RenderLimitKind limit)
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = RenderFails(template);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(limit, e.Limit);
        Assert.Contains("the chat template exceeded its", e.Message);
        // What a step allocates (a loop's scope, ...) adds up over five million steps; sizes must fail up front.
        if (limit != RenderLimitKind.Steps) Assert.True(allocated < 200L * 1024 * 1024, $"allocated {allocated / (1024 * 1024)} MB before failing");
    }

    [Fact]
    public void What_a_loop_body_sets_does_not_outlive_the_iteration_so_doubling_there_is_harmless()
    {
        // As in Jinja2: each iteration's `s` starts from the outer 'x', so nothing grows.
        Assert.Equal("x", ChatTemplate.Parse("{% set s = 'x' %}{% for i in range(40) %}{% set s = s ~ s %}{% endfor %}{{ s }}").Render(Messages, true));
    }

    [Fact]
    public void Limit_violations_name_the_limit_and_its_value()
    {
        var limits = new RenderLimits { MaxStringChars = 1000, MaxOutputChars = 500 };
        Assert.Contains("exceeded its limit of 1000 characters for a string value", RenderFails("{{ 'x' * 1001 }}", limits).Message);
        Assert.Contains("exceeded its limit of 1000 items for a list value", RenderFails("{{ range(1001)|list }}", limits).Message);
        var output = RenderFails("{% for i in range(100) %}0123456789{% endfor %}", limits);
        Assert.Equal(RenderLimitKind.OutputChars, output.Limit);
        Assert.Equal(500, output.LimitValue);
        Assert.Contains("exceeded its output limit of 500 characters", output.Message);
    }

    [Fact]
    public void Other_template_errors_are_not_limit_exceptions()
    {
        var e = Assert.Throws<ChatTemplateException>(() => ChatTemplate.Parse("{{ 1 / 0 }}").Render(Messages, true));
        Assert.IsNotType<ChatTemplateLimitException>(e);
    }

    /// <summary>Inputs that escaped as .NET exceptions (or looped for hours) before: each is a plain template error now.</summary>
    [Theory]
    [InlineData("{{ [1, 'a']|sort }}")]
    [InlineData("{{ [{}, {}]|sort }}")]
    [InlineData("{{ {1: 1, 'a': 2}|tojson(sort_keys=true) }}")]
    [InlineData("{{ '%c' % 99999999 }}")]
    public void Former_crashes_are_template_errors(string template)
    {
        var e = Assert.Throws<ChatTemplateException>(() => ChatTemplate.Parse(template).Render(Messages, true));
        Assert.NotNull(e.Line);
    }

    [Fact]
    public void Huge_arguments_that_build_nothing_render()
    {
        Assert.Equal("1", ChatTemplate.Parse("{{ 1 ** 10**12 }}").Render(Messages, true));
        Assert.Equal("abcdefghij", ChatTemplate.Parse("{{ 'abcdefghij'|truncate(9223372036854775807) }}").Render(Messages, true));
    }

    [Fact]
    public void Self_containing_values_fail_cleanly()
    {
        foreach (var template in new[]
                 {
                     "{% set l = [] %}{{ l.append(l) }}{{ l }}",
                     "{% set l = [] %}{{ l.append(l) }}{{ l|tojson }}",
                     "{% set l = [] %}{{ l.append(l) }}{{ l == l }}",
                     "{% set ns = namespace() %}{% set ns.x = ns %}{{ ns }}",
                 })
        {
            var e = Assert.ThrowsAny<ChatTemplateException>(() => ChatTemplate.Parse(template).Render(Messages, true));
            Assert.NotNull(e.Message);
        }
    }

    [Fact]
    public void Deep_nesting_is_a_syntax_error_not_a_stack_overflow()
    {
        var e = Assert.Throws<ChatTemplateException>(() => ChatTemplate.Parse("{{ " + new string('(', 5000) + "1" + new string(')', 5000) + " }}"));
        Assert.Contains("more than 200 levels deep", e.Message);
        Assert.NotNull(e.Line);
        Assert.Throws<ChatTemplateException>(() => ChatTemplate.Parse(string.Concat(Enumerable.Repeat("{% if true %}", 5000))));
        Assert.Throws<ChatTemplateException>(() => ChatTemplate.Parse("{{ " + string.Concat(Enumerable.Repeat("not ", 5000)) + "1 }}"));
        Assert.Throws<ChatTemplateException>(() => ChatTemplate.Parse("{{ " + new string('-', 5000) + "1 }}"));
        // A long flat chain parses; evaluating it fails cleanly if it is too deep for the stack.
        string chain = "{{ 1" + string.Concat(Enumerable.Repeat(" + 1", 200_000)) + " }}";
        try { ChatTemplate.Parse(chain).Render(Messages, true); }
        catch (ChatTemplateException) { }
    }

    [Fact]
    public void A_cancelled_token_stops_a_long_loop()
    {
        var template = ChatTemplate.Parse("{% for i in range(999999) %}{% for j in range(999999) %}{% endfor %}{% endfor %}");
        var unlimited = new RenderLimits { MaxSteps = long.MaxValue };
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(100));
        Assert.ThrowsAny<OperationCanceledException>(() => template.Render(Messages, true, null, cts.Token, unlimited));
    }

    [Fact]
    public void A_pre_cancelled_token_renders_nothing()
    {
        var template = ChatTemplate.Parse("{{ 'x' }}");
        var messages = new List<IReadOnlyDictionary<string, object?>> { new Dictionary<string, object?> { ["role"] = "user", ["content"] = "hi" } };
        Assert.ThrowsAny<OperationCanceledException>(() => template.Render(messages, true, cancellationToken: new CancellationToken(true)));
        Assert.ThrowsAny<OperationCanceledException>(() => template.Render(Messages, true, cancellationToken: new CancellationToken(true)));
    }

    [Fact]
    public void Limits_must_be_positive()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new RenderLimits { MaxSteps = 0 });
        Assert.Throws<ArgumentOutOfRangeException>(() => new RenderLimits { MaxOutputChars = -1 });
        Assert.Throws<ArgumentOutOfRangeException>(() => new RenderLimits { MaxStringChars = 0 });
        Assert.Equal(5_000_000, RenderLimits.Default.MaxSteps);
        Assert.Equal(1_000_000, RenderLimits.Default.MaxOutputChars);
        Assert.Equal(1_000_000, RenderLimits.Default.MaxStringChars);
    }
}
