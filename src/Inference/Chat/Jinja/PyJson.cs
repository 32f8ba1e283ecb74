using System.Globalization;
using System.Text;

namespace PiServe.Inference.Chat.Jinja;

/// <summary>
/// Python's json.dumps as transformers' tojson filter calls it: ensure_ascii=False by default,
/// separators (", ", ": ") or (",", ": ") when indenting, keys in insertion order.
/// </summary>
internal static class PyJson
{
    public sealed record Options(string? Indent = null, string ItemSeparator = ", ", string KeySeparator = ": ",
        bool SortKeys = false, bool EnsureAscii = false);

    public static string Dumps(object? value, Options options)
    {
        var sb = new StringBuilder();
        Write(sb, value, options, 0);
        return sb.ToString();
    }

    private static void Write(StringBuilder sb, object? v, Options o, int depth)
    {
        // The text is checked against the render's string limit as it grows: indentation and repeated
        // references to one list can make it far larger than the value, and a list containing itself endless.
        RenderBudget.EnsureStack();
        RenderBudget.Charge(1);
        RenderBudget.CheckStringLength(sb.Length);
        switch (v)
        {
            case null: sb.Append("null"); return;
            case bool b: sb.Append(b ? "true" : "false"); return;
            case long l: sb.Append(l.ToString(CultureInfo.InvariantCulture)); return;
            case double d: sb.Append(Number(d)); return;
            case string s: WriteString(sb, s, o.EnsureAscii); return;
            case List<object?> or PyTuple:
                {
                    var items = (IReadOnlyList<object?>)v;
                    if (items.Count == 0) { sb.Append("[]"); return; }
                    sb.Append('[');
                    for (int i = 0; i < items.Count; i++)
                    {
                        if (i > 0) sb.Append(o.ItemSeparator);
                        NewLine(sb, o, depth + 1);
                        Write(sb, items[i], o, depth + 1);
                    }
                    NewLine(sb, o, depth);
                    sb.Append(']');
                    return;
                }
            case PyDict dict:
                {
                    if (dict.Count == 0) { sb.Append("{}"); return; }
                    IEnumerable<KeyValuePair<object?, object?>> entries = dict;
                    if (o.SortKeys)
                    {
                        var list = dict.ToList();
                        RenderBudget.ChargeSort(list.Count);
                        Py.Sorting(() => { list.Sort((a, b) => Py.Compare(a.Key, b.Key)); return list; });
                        entries = list;
                    }
                    sb.Append('{');
                    bool first = true;
                    foreach (var (k, val) in entries)
                    {
                        if (!first) sb.Append(o.ItemSeparator);
                        first = false;
                        NewLine(sb, o, depth + 1);
                        WriteString(sb, Key(k), o.EnsureAscii);
                        sb.Append(o.KeySeparator);
                        Write(sb, val, o, depth + 1);
                    }
                    NewLine(sb, o, depth);
                    sb.Append('}');
                    return;
                }
            case Undefined u: throw new JinjaRuntimeException("Object of type Undefined is not JSON serializable" + (u.Hint is null ? "" : $" ({u.Hint})"));
            default: throw new JinjaRuntimeException($"Object of type {Py.TypeName(v)} is not JSON serializable");
        }
    }

    private static void NewLine(StringBuilder sb, Options o, int depth)
    {
        if (o.Indent is null) return;
        RenderBudget.CheckStringLength(sb.Length + 1 + (long)o.Indent.Length * depth);
        sb.Append('\n');
        for (int i = 0; i < depth; i++) sb.Append(o.Indent);
    }

    private static string Number(double d) =>
        double.IsNaN(d) ? "NaN" : double.IsPositiveInfinity(d) ? "Infinity" : double.IsNegativeInfinity(d) ? "-Infinity" : Py.FormatFloat(d);

    private static string Key(object? k) => k switch
    {
        string s => s,
        null => "null",
        bool b => b ? "true" : "false",
        long l => l.ToString(CultureInfo.InvariantCulture),
        double d => Number(d),
        _ => throw new JinjaRuntimeException($"keys must be str, int, float, bool or None, not {Py.TypeName(k)}"),
    };

    private static void WriteString(StringBuilder sb, string s, bool ensureAscii)
    {
        RenderBudget.CheckStringLength(sb.Length + 2L + s.Length);
        sb.Append('"');
        foreach (char c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                default:
                    if (c < 0x20 || (ensureAscii && c > 0x7e))
                        sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    else sb.Append(c);
                    break;
            }
        }
        sb.Append('"');
    }
}
