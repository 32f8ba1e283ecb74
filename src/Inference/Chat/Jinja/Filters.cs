using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace PiServe.Inference.Chat.Jinja;

/// <summary>Jinja2's built-in filters as chat templates use them, plus transformers' tojson.</summary>
internal static partial class Filters
{
    private static readonly HashSet<string> Names =
    [
        "abs", "attr", "capitalize", "center", "count", "d", "default", "dictsort", "e", "escape", "first", "float",
        "forceescape", "format", "indent", "int", "items", "join", "last", "length", "list", "lower", "map", "max",
        "min", "pprint", "reject", "rejectattr", "replace", "reverse", "round", "safe", "select", "selectattr", "sort",
        "string", "sum", "title", "tojson", "trim", "truncate", "unique", "upper", "wordcount",
    ];

    public static bool Exists(string name) => Names.Contains(name);

    private static readonly object?[] Required = [Undefined.Instance];

    private static object?[] Bind(string name, CallArgs args, string[] parameters, params object?[] defaults) =>
        args.Bind(name, parameters, defaults);

    private static string Text(object? v) => Py.Str(v);

    public static object? Apply(string name, object? v, CallArgs args)
    {
        switch (name)
        {
            case "abs":
                args.NoArguments(name);
                return v switch
                {
                    long l => (object)Math.Abs(l),
                    double d => Math.Abs(d),
                    bool b => b ? 1L : 0L,
                    Undefined u => throw Py.UndefinedError(u),
                    _ => throw new JinjaRuntimeException($"bad operand type for abs(): '{Py.TypeName(v)}'"),
                };
            case "attr":
                return Py.GetAttr(v, Text(Bind(name, args, ["name"], Required)[0]));
            case "capitalize":
                args.NoArguments(name);
                return Py.Capitalize(Text(v));
            case "center":
                {
                    long width = Py.ToLong(Bind(name, args, ["width"], 80L)[0]);
                    return Methods.Bind(Text(v), "center")!.Invoke(new CallArgs([width], []));
                }
            case "count":
            case "length":
                args.NoArguments(name);
                return (long)Py.Len(v);
            case "d":
            case "default":
                {
                    var p = Bind(name, args, ["default_value", "boolean"], "", false);
                    bool useDefault = v is Undefined || (Py.Truthy(p[1]) && !Py.Truthy(v));
                    return useDefault ? p[0] : v;
                }
            case "dictsort":
                {
                    var p = Bind(name, args, ["case_sensitive", "by", "reverse"], false, "key", false);
                    if (v is not PyDict dict) throw new JinjaRuntimeException("dictsort needs a dict");
                    int pos = Text(p[1]) switch
                    {
                        "key" => 0,
                        "value" => 1,
                        _ => throw new JinjaRuntimeException("You can only sort by either 'key' or 'value'"),
                    };
                    bool cs = Py.Truthy(p[0]);
                    var items = dict.Select(kv => (object?)new PyTuple([kv.Key, kv.Value]));
                    return SortBy(items, x => SortKey(((PyTuple)x!)[pos], cs), Py.Truthy(p[2]));
                }
            case "e":
            case "escape":
            case "forceescape":
                args.NoArguments(name);
                return Escape(Text(v));
            case "first":
                args.NoArguments(name);
                foreach (var x in Py.Iterate(v)) return x;
                return Undefined.Named("first item of an empty sequence");
            case "last":
                {
                    args.NoArguments(name);
                    var list = Py.ToList(v);
                    return list.Count > 0 ? list[^1] : Undefined.Named("last item of an empty sequence");
                }
            case "float":
                {
                    var p = Bind(name, args, ["default"], 0.0);
                    return ToFloat(v) ?? p[0];
                }
            case "int":
                {
                    var p = Bind(name, args, ["default", "base"], 0L, 10L);
                    return ToInt(v, (int)Py.ToLong(p[1])) ?? p[0];
                }
            case "format":
                {
                    if (args.Named.Count > 0 && args.Positional.Count > 0)
                        throw new JinjaRuntimeException("can't handle positional and keyword arguments at the same time");
                    if (args.Named.Count > 0)
                    {
                        var map = new PyDict();
                        foreach (var (k, val) in args.Named) map[k] = val;
                        return Format.Percent(Text(v), map);
                    }
                    return Format.Percent(Text(v), new PyTuple([.. args.Positional]));
                }
            case "indent":
                {
                    var p = Bind(name, args, ["width", "first", "blank"], 4L, false, false);
                    return Indent(Text(v), p[0] is string w ? w : RenderBudget.Repeat(' ', Py.ToLong(p[0])), Py.Truthy(p[1]), Py.Truthy(p[2]));
                }
            case "items":
                args.NoArguments(name);
                return v switch
                {
                    Undefined => new List<object?>(),
                    PyDict d => d.Select(kv => (object?)new PyTuple([kv.Key, kv.Value])).ToList(),
                    _ => throw new JinjaRuntimeException($"Can only get item pairs from a mapping, not '{Py.TypeName(v)}'"),
                };
            case "join":
                {
                    var p = Bind(name, args, ["d", "attribute"], "", null);
                    IEnumerable<object?> items = Py.Iterate(v);
                    if (p[1] is not null) items = items.Select(AttrGetter(p[1]));
                    return Join(Text(p[0]), items.Select(Text));
                }
            case "list":
                args.NoArguments(name);
                return Py.ToList(v);
            case "lower":
                args.NoArguments(name);
                return Text(v).ToLowerInvariant();
            case "upper":
                args.NoArguments(name);
                return Text(v).ToUpperInvariant();
            case "map":
                return Py.Iterate(v).Select(MapFunction(args)).ToList();
            case "max":
            case "min":
                {
                    var p = Bind(name, args, ["case_sensitive", "attribute"], false, null);
                    var items = Py.ToList(v);
                    if (items.Count == 0) return Undefined.Named($"{name} of an empty sequence");
                    var getter = p[1] is null ? (Func<object?, object?>)(x => x) : AttrGetter(p[1]);
                    bool cs = Py.Truthy(p[0]);
                    object? best = items[0];
                    foreach (var x in items.Skip(1))
                    {
                        int c = Py.Compare(SortKey(getter(x), cs), SortKey(getter(best), cs));
                        if (name == "max" ? c > 0 : c < 0) best = x;
                    }
                    return best;
                }
            case "pprint":
                args.NoArguments(name);
                return Py.Repr(v);
            case "select":
            case "reject":
                {
                    var test = TestFunction(args, 0);
                    return Py.Iterate(v).Where(x => test(x) == (name == "select")).ToList();
                }
            case "selectattr":
            case "rejectattr":
                {
                    if (args.Positional.Count == 0) throw new JinjaRuntimeException($"{name}() missing required argument 'attribute'");
                    var getter = AttrGetter(args.Positional[0]);
                    Func<object?, bool> test = args.Positional.Count > 1 ? TestFunction(args, 1) : Py.Truthy;
                    return Py.Iterate(v).Where(x => test(getter(x)) == (name == "selectattr")).ToList();
                }
            case "replace":
                {
                    var p = Bind(name, args, ["old", "new", "count"], Undefined.Instance, Undefined.Instance, null);
                    return Methods.Replace(Text(v), Text(p[0]), Text(p[1]), p[2] is null ? -1 : Py.ToLong(p[2]));
                }
            case "reverse":
                args.NoArguments(name);
                if (v is string s) return string.Concat(Enumerable.Reverse(Py.CodePoints(s)));
                return Enumerable.Reverse(Py.ToList(v)).ToList();
            case "round":
                {
                    var p = Bind(name, args, ["precision", "method"], 0L, "common");
                    return Round(Py.ToDouble(v), (int)Py.ToLong(p[0]), Text(p[1]));
                }
            case "safe":
            case "string":
                args.NoArguments(name);
                return Text(v);
            case "sort":
                {
                    var p = Bind(name, args, ["reverse", "case_sensitive", "attribute"], false, false, null);
                    var getter = p[2] is null ? (Func<object?, object?>)(x => x) : AttrGetter(p[2]);
                    bool cs = Py.Truthy(p[1]);
                    return SortBy(Py.Iterate(v), x => SortKey(getter(x), cs), Py.Truthy(p[0]));
                }
            case "sum":
                {
                    var p = Bind(name, args, ["attribute", "start"], null, 0L);
                    IEnumerable<object?> items = Py.Iterate(v);
                    if (p[0] is not null) items = items.Select(AttrGetter(p[0]));
                    object? total = p[1];
                    foreach (var x in items) total = Py.Binary("+", total, x);
                    return total;
                }
            case "title":
                args.NoArguments(name);
                return JinjaTitle(Text(v));
            case "tojson":
                return ToJson(v, args);
            case "trim":
                {
                    var p = Bind(name, args, ["chars"], [null]);
                    return Py.Strip(Text(v), p[0] is null ? null : Text(p[0]));
                }
            case "truncate":
                {
                    var p = Bind(name, args, ["length", "killwords", "end", "leeway"], 255L, false, "...", 5L);
                    return Truncate(Text(v), Py.ToLong(p[0]), Py.Truthy(p[1]), Text(p[2]), Py.ToLong(p[3] ?? 5L));
                }
            case "unique":
                {
                    var p = Bind(name, args, ["case_sensitive", "attribute"], false, null);
                    var getter = p[1] is null ? (Func<object?, object?>)(x => x) : AttrGetter(p[1]);
                    bool cs = Py.Truthy(p[0]);
                    var seen = new List<object?>();
                    var result = new List<object?>();
                    foreach (var x in Py.Iterate(v))
                    {
                        RenderBudget.Charge(1 + seen.Count); // each item is compared with every kept one
                        var key = SortKey(getter(x), cs);
                        if (seen.Any(s2 => Py.Equal(s2, key))) continue;
                        seen.Add(key);
                        result.Add(x);
                    }
                    return result;
                }
            case "wordcount":
                args.NoArguments(name);
                return (long)WordRegex().Matches(Text(v)).Count;
        }
        throw new JinjaRuntimeException($"no filter named '{name}'");
    }

    // ---------------------------------------------------------------- helpers

    /// <summary>transformers' tojson: json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False).</summary>
    private static string ToJson(object? v, CallArgs args)
    {
        var p = args.Bind("tojson", ["ensure_ascii", "indent", "separators", "sort_keys"], [false, null, null, false]);
        string? indent = p[1] switch
        {
            null => null,
            string s => s,
            var n => RenderBudget.Repeat(' ', Py.ToLong(n)),
        };
        string itemSep = indent is null ? ", " : ",", keySep = ": ";
        if (p[2] is not null)
        {
            var seps = Py.ToList(p[2]);
            if (seps.Count != 2) throw new JinjaRuntimeException("separators must be an (item_separator, key_separator) pair");
            itemSep = Text(seps[0]);
            keySep = Text(seps[1]);
        }
        return PyJson.Dumps(v, new PyJson.Options(indent, itemSep, keySep, Py.Truthy(p[3]), Py.Truthy(p[0])));
    }

    /// <summary>Jinja's attribute getter for map/selectattr/sort: "a.b.0" walks items then attributes.</summary>
    private static Func<object?, object?> AttrGetter(object? attribute)
    {
        var parts = attribute is string s
            ? s.Split('.').Select(part => long.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out long i) ? (object?)i : part).ToArray()
            : new object?[] { attribute };
        return x =>
        {
            foreach (var part in parts) x = Py.GetItem(x, part);
            return x;
        };
    }

    private static Func<object?, object?> MapFunction(CallArgs args)
    {
        var attribute = args.Named.FirstOrDefault(kv => kv.Key == "attribute");
        if (attribute.Key is not null)
        {
            var getter = AttrGetter(attribute.Value);
            var dflt = args.Named.FirstOrDefault(kv => kv.Key == "default");
            return x =>
            {
                var v = getter(x);
                return v is Undefined && dflt.Key is not null ? dflt.Value : v;
            };
        }
        if (args.Positional.Count == 0) throw new JinjaRuntimeException("map requires a filter name or attribute=");
        string filter = Text(args.Positional[0]);
        if (!Exists(filter)) throw new JinjaRuntimeException($"no filter named '{filter}'");
        var rest = new CallArgs([.. args.Positional.Skip(1)], args.Named);
        return x => Apply(filter, x, rest);
    }

    private static Func<object?, bool> TestFunction(CallArgs args, int index)
    {
        if (args.Positional.Count <= index) return Py.Truthy;
        string test = Text(args.Positional[index]);
        if (!Tests.Exists(test)) throw new JinjaRuntimeException($"no test named '{test}'");
        var rest = new CallArgs([.. args.Positional.Skip(index + 1)], args.Named);
        return x => Tests.Apply(test, x, rest);
    }

    private static object? SortKey(object? v, bool caseSensitive) =>
        !caseSensitive && v is string s ? s.ToLowerInvariant() : v;

    private static List<object?> SortBy(IEnumerable<object?> items, Func<object?, object?> key, bool reverse)
    {
        var list = items as IReadOnlyCollection<object?> ?? items.ToList();
        RenderBudget.ChargeSort(list.Count);
        items = list;
        var comparer = Comparer<object?>.Create((a, b) => Py.Compare(a, b));
        return Py.Sorting<List<object?>>(() => reverse ? [.. items.OrderByDescending(key, comparer)] : [.. items.OrderBy(key, comparer)]);
    }

    private static string Escape(string s) => s.Replace("&", "&amp;").Replace("<", "&lt;").Replace(">", "&gt;")
        .Replace("\"", "&#34;").Replace("'", "&#39;");

    private static object? ToFloat(object? v) => v switch
    {
        double d => d,
        long or bool => Py.ToDouble(v),
        string s => ParseFloat(s),
        Undefined u => throw Py.UndefinedError(u),
        _ => null,
    };

    private static double? ParseFloat(string s)
    {
        string t = Py.Strip(s, null).Replace("_", "");
        switch (t.ToLowerInvariant())
        {
            case "nan" or "+nan" or "-nan": return double.NaN;
            case "inf" or "+inf" or "infinity" or "+infinity": return double.PositiveInfinity;
            case "-inf" or "-infinity": return double.NegativeInfinity;
        }
        return double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out double d) ? d : null;
    }

    private static object? ToInt(object? v, int radix)
    {
        switch (v)
        {
            case long or bool: return Py.ToLong(v);
            case double d:
                return double.IsFinite(d) ? (long)Math.Truncate(d) : null;
            case string s:
                {
                    string t = Py.Strip(s, null).Replace("_", "");
                    bool neg = t.StartsWith('-');
                    if (t.StartsWith('-') || t.StartsWith('+')) t = t[1..];
                    if (radix == 16 && t.StartsWith("0x", StringComparison.OrdinalIgnoreCase)) t = t[2..];
                    else if (radix == 8 && t.StartsWith("0o", StringComparison.OrdinalIgnoreCase)) t = t[2..];
                    else if (radix == 2 && t.StartsWith("0b", StringComparison.OrdinalIgnoreCase)) t = t[2..];
                    try
                    {
                        if (t.Length > 0 && (radix is 2 or 8 or 10 or 16))
                        {
                            long r = radix == 10 ? long.Parse(t, NumberStyles.None, CultureInfo.InvariantCulture) : Convert.ToInt64(t, radix);
                            return neg ? -r : r;
                        }
                    }
                    catch (Exception ex) when (ex is FormatException or OverflowException or ArgumentException) { }
                    // int("3.5") fails in Python; Jinja then tries int(float(value))
                    return ParseFloat(s) is double f && double.IsFinite(f) ? (long)Math.Truncate(f) : null;
                }
            case Undefined u: throw Py.UndefinedError(u);
            default: return null;
        }
    }

    private static double Round(double v, int precision, string method)
    {
        double factor = Math.Pow(10, precision);
        return method switch
        {
            "common" => Math.Round(v, Math.Clamp(precision, 0, 15), MidpointRounding.ToEven),
            "ceil" => Math.Ceiling(v * factor) / factor,
            "floor" => Math.Floor(v * factor) / factor,
            _ => throw new JinjaRuntimeException("method must be 'common', 'ceil' or 'floor'"),
        };
    }

    /// <summary>string.Join with the result's length checked before it is built.</summary>
    public static string Join(string separator, IEnumerable<string> parts)
    {
        var list = parts.ToList();
        long length = (long)separator.Length * Math.Max(0, list.Count - 1);
        foreach (var part in list) length += part.Length;
        RenderBudget.CheckStringLength(length);
        RenderBudget.Charge(list.Count + length / RenderBudget.CharsPerStep);
        return string.Join(separator, list);
    }

    /// <summary>Jinja's indent filter: every line but the first (unless first=True), blank lines only with blank=True.</summary>
    private static string Indent(string s, string indention, bool first, bool blank)
    {
        s += "\n"; // Jinja appends a newline so that splitlines keeps a trailing empty line
        var lines = Py.SplitLines(s);
        // At most one indention per line plus the first: checked before any of it is built.
        RenderBudget.CheckStringLength(s.Length + (long)indention.Length * (lines.Count + 1));
        string rv;
        if (blank) rv = string.Join("\n" + indention, lines);
        else
        {
            rv = lines[0];
            if (lines.Count > 1)
                rv += "\n" + string.Join("\n", lines.Skip(1).Select(l => l.Length > 0 ? indention + l : l));
        }
        return first ? indention + rv : rv;
    }

    /// <summary>Jinja's title filter: words split at whitespace and - ( { [ &lt;.</summary>
    private static string JinjaTitle(string s)
    {
        var sb = new StringBuilder();
        foreach (var part in TitleSplitRegex().Split(s))
        {
            if (part.Length == 0) continue;
            sb.Append(char.ToUpperInvariant(part[0])).Append(part[1..].ToLowerInvariant());
        }
        return sb.ToString();
    }

    private static string Truncate(string s, long length, bool killwords, string end, long leeway)
    {
        // In 128 bits: a huge length or leeway must not wrap around into a negative cut.
        if (s.Length <= (Int128)length + leeway) return s;
        int keep = (int)Math.Clamp(length - end.Length, 0, s.Length);
        if (killwords) return s[..keep] + end;
        string cut = s[..keep];
        int space = cut.LastIndexOf(' ');
        return (space >= 0 ? cut[..space] : cut) + end;
    }

    [GeneratedRegex(@"([-\s\(\{\[\<]+)")]
    private static partial Regex TitleSplitRegex();

    [GeneratedRegex(@"\w+")]
    private static partial Regex WordRegex();
}
