using System.Text.Json;
using PiServe.Inference.Chat;

namespace PiServe.Inference.Tests.Chat;

/// <summary>
/// The Jinja interpreter against expected renders. The expected strings are what Python's Jinja2 3.1 renders
/// with transformers' settings (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols, its tojson).
/// </summary>
public sealed class JinjaInterpreterTests
{
    /// <summary>The variables every case sees (besides messages and add_generation_prompt).</summary>
    private const string VariablesJson = """
        {
          "n": null, "f": 1.5, "l": [3, 1, 2], "s": "Hello World",
          "d": {"b": 1, "a": [1, 2], "c": {"x": "y"}}, "e": "", "u": "héllo 👋🏽 wörld",
          "people": [{"name": "Bob", "age": 30, "tags": ["a"]}, {"name": "alice", "age": 25}, {"name": "Carl", "age": 35, "tags": []}]
        }
        """;

    private static readonly ChatMessage[] Messages = [new("system", "sys"), new("user", "hi"), new("assistant", "yo")];

    internal static string Render(string template, IReadOnlyDictionary<string, object?>? extra = null, IReadOnlyList<ChatMessage>? messages = null)
    {
        var vars = JsonDocument.Parse(VariablesJson).RootElement.EnumerateObject()
            .ToDictionary(p => p.Name, p => (object?)p.Value.Clone());
        if (extra is not null) foreach (var (k, v) in extra) vars[k] = v;
        return ChatTemplate.Parse(template).Render(messages ?? Messages, addGenerationPrompt: false, vars);
    }

    /// <summary>'-' modifiers, trim_blocks and lstrip_blocks, '+' opt-outs, comments, raw, the dropped trailing newline.</summary>
    [Theory]
    [InlineData("a  {%- if true -%}  b  {%- endif -%}  c",
                "abc")]
    [InlineData("a\n  {% if true %}\n  b\n  {% endif %}\nc",
                "a\n  b\nc")]
    [InlineData("a\n  {%+ if true %}\nb{% endif %}",
                "a\n  b")]
    [InlineData("x {{- ' y ' -}} z",
                "x y z")]
    [InlineData("line\n{# comment #}\nnext",
                "line\nnext")]
    [InlineData("{#- c -#}\n  x  {#- c #}\ny",
                "xy")]
    [InlineData("{% for i in [1,2] %}\n  {{ i }}\n{% endfor %}\n",
                "  1\n  2\n")]
    [InlineData("{% for i in [1,2] +%}\n{{ i }}{% endfor %}",
                "\n1\n2")]
    [InlineData("{{ 'x' }}\n{{ 'y' }}\n",
                "x\ny")]
    [InlineData("text\r\nmore\r\n",
                "text\nmore")]
    [InlineData("trailing\n\n",
                "trailing\n")]
    [InlineData("  {% if true %}  \n  a\n  {% endif %}  \nb",
                "  \n  a\n  \nb")]
    [InlineData("{{ x }}  {% if true %}y{% endif %}",
                "  y")]
    [InlineData("{%- for i in [1, 2, 3] -%}\n  [{{ i }}]\n{%- endfor -%}\n",
                "[1][2][3]")]
    [InlineData("{% raw %}{{ not rendered }}{% endraw %}!",
                "{{ not rendered }}!")]
    [InlineData("text {% raw %}\n  {% if %}{{ }}\n{% endraw %}\nafter",
                "text \n  {% if %}{{ }}\nafter")]
    [InlineData("{% macro m() -%}\n  body\n{%- endmacro %}\n[{{ m() }}]",
                "[body]")]
    public void WhitespaceControl(string template, string expected) => Assert.Equal(expected, Render(template));

    /// <summary>loop.* variables, else, filters in the loop head, unpacking, break/continue, per-iteration scope.</summary>
    [Theory]
    [InlineData("{% for m in messages %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.revindex }}{{ loop.revindex0 }}|{% endfor %}",
                "10TrueFalse332|21FalseFalse321|32FalseTrue310|")]
    [InlineData("{% for x in [] %}a{% else %}empty{% endfor %}",
                "empty")]
    [InlineData("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}",
                "b=1;a=[1, 2];c={'x': 'y'};")]
    [InlineData("{% for k in d %}{{ k }}{% endfor %}",
                "bac")]
    [InlineData("{% for c in 'abc' %}{{ c }}-{% endfor %}",
                "a-b-c-")]
    [InlineData("{% for m in messages if m.role != 'system' %}{{ loop.index }}/{{ loop.length }}:{{ m.content }} {% endfor %}",
                "1/2:hi 2/2:yo ")]
    [InlineData("{% for i in range(5) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 3 %}{% break %}{% endif %}{{ i }}{% endfor %}",
                "02")]
    [InlineData("{% for i in range(2) %}{% for j in range(2) %}{{ loop.index }}{{ i }}{{ j }} {% endfor %}{% endfor %}",
                "100 201 110 211 ")]
    [InlineData("{% for a, b in [[1, 2], (3, 4)] %}{{ a + b }}{% endfor %}",
                "37")]
    [InlineData("{% for i in range(1, 10, 3) %}{{ i }}{% endfor %}{% for i in range(5, 0, -2) %}{{ i }}{% endfor %}",
                "147531")]
    [InlineData("{% for i in [1,2,3] %}{{ loop.previtem }}-{{ loop.nextitem }}|{% endfor %}",
                "-2|1-3|2-|")]
    [InlineData("{% for i in [1,2,3] %}{{ loop.cycle('a','b') }}{% endfor %}",
                "aba")]
    [InlineData("{% set x = 1 %}{% for i in [1] %}{% set x = 2 %}{{ x }}{% endfor %}{{ x }}",
                "21")]
    [InlineData("{% for i in [1,2] %}{% if i == 2 %}[{{ x }}]{% endif %}{% set x = i %}{% endfor %}",
                "[]")]
    [InlineData("{% for i in undefined_thing %}x{% else %}none{% endfor %}",
                "none")]
    [InlineData("{% for message in messages[::-1] %}{{ message.role[0] }}{% endfor %}",
                "aus")]
    public void Loops(string template, string expected) => Assert.Equal(expected, Render(template));

    /// <summary>set (plain, unpacking, block, filtered), namespace(), scoping, macros with defaults/kwargs/recursion, filter blocks.</summary>
    [Theory]
    [InlineData("{% set ns = namespace(x=false, count=0) %}{% for i in range(3) %}{% set ns.count = ns.count + i %}{% set ns.x = true %}{% endfor %}{{ ns.x }} {{ ns.count }}",
                "True 3")]
    [InlineData("{% set ns = namespace(found=false) %}{% for m in messages %}{% if m.role == 'user' %}{% set ns.found = loop.index0 %}{% endif %}{% endfor %}{{ ns.found }}",
                "1")]
    [InlineData("{% set a, b = 1, 2 %}{{ a }}{{ b }}",
                "12")]
    [InlineData("{% set x %}inner {{ 1 + 1 }}{% endset %}[{{ x }}]",
                "[inner 2]")]
    [InlineData("{% set x | upper %}shout{% endset %}{{ x }}",
                "SHOUT")]
    [InlineData("{% set t = (1, 'a') %}{{ t }}{{ t[1] }}{{ t|length }}{{ (1,) }}",
                "(1, 'a')a2(1,)")]
    [InlineData("{% if true %}{% set inner = 'leaks' %}{% endif %}{{ inner }}",
                "leaks")]
    [InlineData("{% macro greet(name, greeting='Hello') %}{{ greeting }}, {{ name }}!{% endmacro %}{{ greet('Bob') }} {{ greet('Al', greeting='Hi') }} {{ greet(greeting='Yo', name='Z') }}",
                "Hello, Bob! Hi, Al! Yo, Z!")]
    [InlineData("{% macro m(a) %}[{{ a }}]{% endmacro %}{{ m() }}{{ m(1) }}",
                "[][1]")]
    [InlineData("{% macro rec(n) %}{{ n }}{% if n > 0 %}{{ rec(n - 1) }}{% endif %}{% endmacro %}{{ rec(3) }}",
                "3210")]
    [InlineData("{% macro m() %}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, a=3) }}",
                "(1, 2){'a': 3}")]
    [InlineData("{% set g = 'global' %}{% macro m() %}{{ g }}{% endmacro %}{{ m() }}",
                "global")]
    [InlineData("{% macro m(x) %}{{ x|upper }}{% endmacro %}{{ m('a') ~ m('b') }}",
                "AB")]
    [InlineData("{% filter upper %}hello {{ 'x' }}{% endfilter %}",
                "HELLO X")]
    public void Assignments(string template, string expected) => Assert.Equal(expected, Render(template));

    /// <summary>Literals, arithmetic, Python number formatting, ~, comparisons and chains, in, and/or/not, inline if, attribute and item access.</summary>
    [Theory]
    [InlineData("{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 7 / 2 }} {{ 1.5 + 1 }}",
                "7 9 3 -4 1 2 1024 3.5 2.5")]
    [InlineData("{{ 10 / 4 }} {{ 0.1 + 0.2 }} {{ 1e20 }} {{ 1.0e-5 }} {{ 123456789.0 * 10 }} {{ 2.0 ** 60 }} {{ 1/3 }} {{ -0.0 }} {{ 3.0 }} {{ 4 / 2 }}",
                "2.5 0.30000000000000004 1e+20 1e-05 1234567890.0 1.152921504606847e+18 0.3333333333333333 -0.0 3.0 2.0")]
    [InlineData("{{ 'a' ~ 1 ~ none ~ true ~ 1.0 ~ x }}",
                "a1NoneTrue1.0")]
    [InlineData("{{ 'ab' * 3 }}{{ [1] * 2 }}{{ [1] + [2] }}",
                "ababab[1, 1][1, 2]")]
    [InlineData("{{ \"tab\\there\" }}|{{ 'quote\\'s' }}|{{ 'nl\\nx' }}|{{ '\\u00e9\\x41' }}|{{ 'a\\qb' }}|{{ 'con' 'cat' }}",
                "tab\there|quote's|nl\nx|éA|a\\qb|concat")]
    [InlineData("{{ [1, 'a', none, true, 1.5, [2], {'k': 'v'}, \"it's\"] }} {{ {'a': 1, 'b': 'two'} }}",
                "[1, 'a', None, True, 1.5, [2], {'k': 'v'}, \"it's\"] {'a': 1, 'b': 'two'}")]
    [InlineData("{{ true }} {{ True }} {{ false }} {{ none }} {{ None }} {{ n }}",
                "True True False None None None")]
    [InlineData("{{ 1 == 1.0 }} {{ true == 1 }} {{ 'a' == 'a' }} {{ [1,2] == [1,2] }} {{ (1,2) == [1,2] }} {{ none == none }} {{ x == y }} {{ x == none }} {{ '' != false }}",
                "True True True True False True True False True")]
    [InlineData("{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 'a' < 'b' }} {{ [1,2] < [1,3] }} {{ 2 >= 2.0 }}",
                "True False True True True")]
    [InlineData("{{ 'a' in 'cat' }} {{ 1 in [1,2] }} {{ 'k' in {'k':1} }} {{ 3 not in [1] }} {{ 'x' in y }} {{ not 'x' in 'abc' }}",
                "True True True True False True")]
    [InlineData("{{ not true }} {{ not 0 }} {{ not '' }} {{ not [] }} {{ 1 and 2 }} {{ 0 or 'b' }} {{ '' or [] }} {{ none and 1 }}",
                "False True True True 2 b [] None")]
    [InlineData("{{ 'yes' if true else 'no' }} {{ 'yes' if false else 'no' }} [{{ 'x' if false }}] {{ 'a' if 1 > 2 else 'b' if 2 > 1 else 'c' }}",
                "yes no [] b")]
    [InlineData("{{ -3 }} {{ +3 }} {{ - -3 }} {{ -l[0] }} {{ -2 ** 2 }}",
                "-3 3 3 -3 4")]
    [InlineData("{{ messages[0].role }} {{ messages[0]['content'] }} {{ messages[-1].content }} [{{ messages[5] }}] {{ d.c.x }} {{ d['c']['x'] }} [{{ d.missing }}] {{ l.0 }}{{ messages.1.role }}",
                "system sys yo [] y y [] 3user")]
    [InlineData("{{ messages|length - 1 }} {{ (messages|length) * 2 }} {{ 'abc'|upper ~ 'def' }}",
                "2 6 ABCdef")]
    public void Expressions(string template, string expected) => Assert.Equal(expected, Render(template));

    /// <summary>Python slicing of strings (by code point) and lists, negative steps, clamping.</summary>
    [Theory]
    [InlineData("{{ s[0] }}{{ s[-1] }} {{ s[1:3] }} {{ s[::-1] }} {{ s[::2] }} {{ s[:0] }}",
                "Hd el dlroW olleH HloWrd ")]
    [InlineData("{{ l[1:] }} {{ l[:-1] }} {{ l[10:] }} {{ l[-10:1] }} {{ l[::-2] }} {{ l[1:2:-1] }} {{ l[-1::-1] }}",
                "[1, 2] [3, 1] [] [3] [2, 3] [] [2, 1, 3]")]
    [InlineData("{{ messages[1:] | map(attribute='role') | join(',') }} {{ (1, 2, 3)[1:] }}",
                "user,assistant (2, 3)")]
    [InlineData("{{ u[1] }}|{{ u|length }}|{{ u[-7:] }}|{{ u|reverse }}|{{ u[6:8] }}",
                "é|14|🏽 wörld|dlröw 🏽👋 olléh|👋🏽")]
    public void Slices(string template, string expected) => Assert.Equal(expected, Render(template));

    /// <summary>str and dict methods templates call: strip family, split, replace, format, %, join, get/keys/values/items.</summary>
    [Theory]
    [InlineData("{{ s.startswith('Hell') }} {{ s.endswith(('x', 'ld')) }} {{ s.upper() }} {{ s.lower() }} {{ s.title() }} {{ 'hELLO wORLD'.capitalize() }} {{ \"they're bill's\".title() }}",
                "True True HELLO WORLD hello world Hello World Hello world They'Re Bill'S")]
    [InlineData("[{{ '  x y  '.strip() }}][{{ '  x  '.lstrip() }}][{{ '  x  '.rstrip() }}][{{ 'xxhixx'.strip('x') }}][{{ '\\n\\nhi\\n'.lstrip('\\n') }}]",
                "[x y][x  ][  x][hi][hi\n]")]
    [InlineData("{{ 'a,b,,c'.split(',') }} {{ '  a  b c '.split() }} {{ 'a b c'.split(' ', 1) }} {{ 'a,b,c'.rsplit(',', 1) }} {{ ''.split(',') }} {{ ''.split() }} {{ 'x</think>y'.split('</think>')[-1] }}",
                "['a', 'b', '', 'c'] ['a', 'b', 'c'] ['a', 'b c'] ['a,b', 'c'] [''] [] y")]
    [InlineData("{{ 'hello'.replace('l', 'L') }} {{ 'hello'.replace('l', 'L', 1) }} {{ 'ab'.replace('', '-') }}",
                "heLLo heLlo -a-b-")]
    [InlineData("{{ '{} and {}'.format(1, 'two') }} {{ '{0}{1}{0}'.format('a', 'b') }} {{ '{name}!'.format(name='x') }} {{ '{:>5}|{:<4}|{:^7}|{:.2f}|{:05d}'.format('r', 'l', 'c', 3.14159, 42) }}",
                "1 and two aba x!     r|l   |   c   |3.14|00042")]
    [InlineData("{{ '%s-%d-%.2f-%5s-%-4s|%%' % ('a', 3, 2.5, 'r', 'l') }} {{ '%s' % 'solo' }} {{ '%(x)s' % {'x': 1} }}",
                "a-3-2.50-    r-l   |% solo 1")]
    [InlineData("{{ ', '.join(['a', 'b']) }} {{ 'abc'.find('c') }} {{ 'abcb'.count('b') }} {{ 'ABC'.isupper() }} {{ '123'.isdigit() }}",
                "a, b 2 2 True True")]
    [InlineData("{{ d.get('b') }} {{ d.get('zz') }} {{ d.get('zz', 'dflt') }} {{ d.keys() | list }} {{ d.values() | list }} {{ d.items() | list }}",
                "1 None dflt ['b', 'a', 'c'] [1, [1, 2], {'x': 'y'}] [('b', 1), ('a', [1, 2]), ('c', {'x': 'y'})]")]
    public void StringMethods(string template, string expected) => Assert.Equal(expected, Render(template));

    /// <summary>`is` tests.</summary>
    [Theory]
    [InlineData("{{ x is defined }} {{ s is defined }} {{ x is undefined }} {{ n is none }} {{ s is string }} {{ 1 is number }} {{ 1.5 is number }} {{ true is number }} {{ d is mapping }} {{ l is iterable }} {{ s is iterable }} {{ l is sequence }} {{ d is sequence }} {{ true is boolean }} {{ 1 is boolean }}",
                "False True True True True True True True True True True True True True False")]
    [InlineData("{{ 2 is even }} {{ 3 is odd }} {{ 9 is divisibleby 3 }} {{ 9 is divisibleby(4) }} {{ true is true }} {{ 1 is true }} {{ false is false }} {{ 1 is integer }} {{ 1.0 is float }} {{ true is integer }}",
                "True True True False True False True True True False")]
    [InlineData("{{ n is not none }} {{ x is not defined }} {{ 1 is eq 1 }} {{ 2 is gt 1 }} {{ 1 is in [1] }} {{ none is sameas none }} {{ 'abc' is lower }} {{ range is callable }} {{ messages[0].missing is defined }}",
                "False True True True True True True True False")]
    [InlineData("{% if messages[0]['content'] is string and messages[0].content is not none %}ok{% endif %}",
                "ok")]
    public void TestsOperator(string template, string expected) => Assert.Equal(expected, Render(template));

    /// <summary>Jinja's built-in filters.</summary>
    [Theory]
    [InlineData("[{{ '  x  '|trim }}][{{ 'xxhixx'|trim('x') }}]{{ 'ab'|upper }}{{ 'AB'|lower }}{{ 'hello wORLD-foo(bar'|title }}{{ 'hELLO'|capitalize }}",
                "[x][hi]ABabHello World-Foo(BarHello")]
    [InlineData("{{ l|length }} {{ s|length }} {{ d|length }} {{ l|count }} {{ x|length }} {{ l|first }} {{ l|last }} {{ s|first }} [{{ []|first }}]",
                "3 11 3 3 0 3 2 H []")]
    [InlineData("{{ l|join(', ') }} {{ l|join }} {{ people|join(', ', attribute='name') }} {{ ['a', none, 1]|join('-') }}",
                "3, 1, 2 312 Bob, alice, Carl a-None-1")]
    [InlineData("[{{ x|default('dflt') }}][{{ n|default('dflt') }}][{{ e|default('dflt') }}][{{ e|default('dflt', true) }}][{{ x|d('d') }}][{{ s|default('no') }}][{{ x|default }}]",
                "[dflt][None][][dflt][d][Hello World][]")]
    [InlineData("{{ l|reverse|list }} {{ 'abc'|reverse }} {{ l|sort }} {{ l|sort(reverse=true) }} {{ ['b','A','c']|sort }} {{ ['b','A','c']|sort(case_sensitive=true) }}",
                "[2, 1, 3] cba [1, 2, 3] [3, 2, 1] ['A', 'b', 'c'] ['A', 'b', 'c']")]
    [InlineData("{{ people|sort(attribute='age')|map(attribute='name')|list }} {{ people|map(attribute='tags')|list }} {{ people|map(attribute='tags', default='-')|list }} {{ ['a','b']|map('upper')|list }}",
                "['alice', 'Bob', 'Carl'] [['a'], Undefined, []] [['a'], '-', []] ['A', 'B']")]
    [InlineData("{{ people|selectattr('tags')|map(attribute='name')|join(',') }} {{ people|rejectattr('tags')|map(attribute='name')|join(',') }} {{ people|selectattr('age', 'gt', 28)|map(attribute='name')|join(',') }} {{ people|selectattr('name', 'equalto', 'Bob')|list|length }}",
                "Bob alice,Carl Bob,Carl 1")]
    [InlineData("{{ [1,2,3,4]|select('odd')|list }} {{ [1,2,3,4]|reject('odd')|list }} {{ [0,1,'',none,'a']|select|list }}",
                "[1, 3] [2, 4] [1, 'a']")]
    [InlineData("{{ ['a','A','b','a']|unique|list }} {{ ['a','A','b']|unique(case_sensitive=true)|list }} {{ people|unique(attribute='age')|list|length }}",
                "['a', 'b'] ['a', 'A', 'b'] 3")]
    [InlineData("{{ '5'|int }} {{ '5.7'|int }} {{ 'x'|int }} {{ 'x'|int(7) }} {{ 5.9|int }} {{ '3.5'|float }} {{ 'x'|float }} {{ 3|float }} {{ true|int }} {{ '0x1A'|int(base=16) }}",
                "5 5 0 7 5 3.5 0.0 3.0 1 26")]
    [InlineData("{{ 3|string }}{{ none|string }}{{ [1]|string }}{{ 1.0|string }} {{ 'x'|safe }} {{ [1,2]|list }} {{ 'ab'|list }} {{ d|list }}",
                "3None[1]1.0 x [1, 2] ['a', 'b'] ['b', 'a', 'c']")]
    [InlineData("{{ 'a b'|replace(' ', '_') }} {{ 'aaa'|replace('a', 'b', 2) }} {{ d|items|list }} {{ x|items|list }}",
                "a_b bba [('b', 1), ('a', [1, 2]), ('c', {'x': 'y'})] []")]
    [InlineData("{{ [3,1,2]|max }} {{ [3,1,2]|min }} {{ [1,2,3]|sum }} {{ people|sum(attribute='age') }} {{ -3|abs }} {{ 2.567|round(2) }} {{ 2.5|round }} {{ 3.5|round }} {{ 2.1|round(0, 'ceil') }}",
                "3 1 6 90 3 2.57 2.0 4.0 3.0")]
    [InlineData("{{ 'a\\nb\\n\\nc'|indent }}|{{ 'a\\nb'|indent(2, true) }}|{{ 'a\\n\\nb'|indent(2, blank=true) }}|{{ 'x\\ny'|indent('> ') }}",
                "a\n    b\n\n    c|  a\n  b|a\n  \n  b|x\n> y")]
    [InlineData("{{ d|dictsort }} {{ d|dictsort(reverse=true)|map(attribute=0)|list }} {{ 'hello world foo'|wordcount }} {{ '<a&b>'|e }} {{ '%s=%s'|format('a', 1) }}",
                "[('a', [1, 2]), ('b', 1), ('c', {'x': 'y'})] ['c', 'b', 'a'] 3 &lt;a&amp;b&gt; a=1")]
    public void Filters(string template, string expected) => Assert.Equal(expected, Render(template));

    /// <summary>tojson as transformers defines it: json.dumps(ensure_ascii=False), (', ', ': ') or (',', ': ') with indent.</summary>
    [Theory]
    [InlineData("{{ d|tojson }}|{{ l|tojson }}|{{ 'é\"\\n\\t<>&\\\\'|tojson }}|{{ none|tojson }}|{{ 1.0|tojson }}|{{ [1.5, true, false]|tojson }}|{{ {}|tojson }}|{{ []|tojson }}",
                "{\"b\": 1, \"a\": [1, 2], \"c\": {\"x\": \"y\"}}|[3, 1, 2]|\"é\\\"\\n\\t<>&\\\\\"|null|1.0|[1.5, true, false]|{}|[]")]
    [InlineData("{{ d|tojson(indent=2) }}",
                "{\n  \"b\": 1,\n  \"a\": [\n    1,\n    2\n  ],\n  \"c\": {\n    \"x\": \"y\"\n  }\n}")]
    [InlineData("{{ {'a': [], 'b': {}}|tojson(indent=2) }}|{{ d|tojson(indent=0) }}",
                "{\n  \"a\": [],\n  \"b\": {}\n}|{\n\"b\": 1,\n\"a\": [\n1,\n2\n],\n\"c\": {\n\"x\": \"y\"\n}\n}")]
    [InlineData("{{ d|tojson(sort_keys=true) }}|{{ d|tojson(separators=(',', ':')) }}|{{ 'é'|tojson(ensure_ascii=true) }}|{{ {1: 'int key', true: 'x', none: 2}|tojson }}",
                "{\"a\": [1, 2], \"b\": 1, \"c\": {\"x\": \"y\"}}|{\"b\":1,\"a\":[1,2],\"c\":{\"x\":\"y\"}}|\"\\u00e9\"|{\"1\": \"x\", \"null\": 2}")]
    [InlineData("{{ people|tojson(indent=4) }}",
                "[\n    {\n        \"name\": \"Bob\",\n        \"age\": 30,\n        \"tags\": [\n            \"a\"\n        ]\n    },\n    {\n        \"name\": \"alice\",\n        \"age\": 25\n    },\n    {\n        \"name\": \"Carl\",\n        \"age\": 35,\n        \"tags\": []\n    }\n]")]
    [InlineData("{{ u|tojson }}|{{ (1, 'a')|tojson }}|{{ 1e20|tojson }}|{{ 0.1|tojson }}",
                "\"héllo 👋🏽 wörld\"|[1, \"a\"]|1e+20|0.1")]
    public void ToJson(string template, string expected) => Assert.Equal(expected, Render(template));

}
