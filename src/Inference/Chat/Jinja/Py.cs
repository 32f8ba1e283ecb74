using System.Collections;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace PiServe.Inference.Chat.Jinja;

/// <summary>Python's meanings for the interpreter's values: truth, equality, order, str(), repr(), arithmetic.</summary>
internal static class Py
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    // ---------------------------------------------------------------- types

    public static string TypeName(object? v) => v switch
    {
        null => "NoneType",
        Undefined => "Undefined",
        bool => "bool",
        long => "int",
        double => "float",
        string => "str",
        List<object?> => "list",
        PyTuple => "tuple",
        PyDict => "dict",
        Namespace => "Namespace",
        PyCallable => "function",
        LoopContext => "LoopContext",
        _ => v.GetType().Name,
    };

    public static bool IsNumber(object? v) => v is long or double or bool;
    public static bool IsSequence(object? v) => v is List<object?> or PyTuple;

    /// <summary>An Undefined used where a value is needed: Jinja's UndefinedError.</summary>
    public static JinjaRuntimeException UndefinedError(Undefined u) => new(u.Message);

    // ---------------------------------------------------------------- truth

    public static bool Truthy(object? v) => v switch
    {
        null => false,
        Undefined => false,
        bool b => b,
        long l => l != 0,
        double d => d != 0,
        string s => s.Length > 0,
        List<object?> l => l.Count > 0,
        PyTuple t => t.Count > 0,
        PyDict d => d.Count > 0,
        _ => true,
    };

    // ---------------------------------------------------------------- equality and hashing

    public static bool Equal(object? a, object? b)
    {
        if (a is null || b is null) return a is null && b is null;
        if (a is Undefined || b is Undefined) return a is Undefined && b is Undefined;
        if (IsNumber(a) && IsNumber(b))
        {
            if (a is double || b is double) return ToDouble(a) == ToDouble(b);
            return ToLong(a) == ToLong(b);
        }
        switch (a)
        {
            case string sa: return b is string sb && string.Equals(sa, sb, StringComparison.Ordinal);
            case List<object?> la:
                return b is List<object?> lb && SequenceEqual(la, lb);
            case PyTuple ta:
                return b is PyTuple tb && SequenceEqual(ta, tb);
            case PyDict da:
                if (b is not PyDict db || da.Count != db.Count) return false;
                RenderBudget.EnsureStack();
                RenderBudget.Charge(da.Count);
                foreach (var (k, v) in da)
                    if (!db.TryGetValue(k, out var w) || !Equal(v, w)) return false;
                return true;
            default:
                return ReferenceEquals(a, b);
        }
    }

    private static bool SequenceEqual(IReadOnlyList<object?> a, IReadOnlyList<object?> b)
    {
        if (a.Count != b.Count) return false;
        // Nested lists can share items, so comparing them can take far more work than their sizes suggest.
        RenderBudget.EnsureStack();
        RenderBudget.Charge(a.Count);
        for (int i = 0; i < a.Count; i++)
            if (!Equal(a[i], b[i])) return false;
        return true;
    }

    public static bool IsHashable(object? v) => v is not (List<object?> or PyDict or Namespace) &&
        (v is not PyTuple t || t.Items.All(IsHashable));

    public static void CheckHashable(object? v)
    {
        if (!IsHashable(v)) throw new JinjaRuntimeException($"unhashable type: '{TypeName(v)}'");
    }

    public static int Hash(object? v)
    {
        switch (v)
        {
            case null: return 0;
            case Undefined: return 1;
            case bool b: return (b ? 1L : 0L).GetHashCode();
            case long l: return l.GetHashCode();
            case double d:
                if (Math.Floor(d) == d && Math.Abs(d) < 9.2e18) return ((long)d).GetHashCode();
                return d.GetHashCode();
            case string s: return StringComparer.Ordinal.GetHashCode(s);
            case PyTuple t:
                RenderBudget.EnsureStack();
                var h = new HashCode();
                foreach (var x in t.Items) h.Add(Hash(x));
                return h.ToHashCode();
            default:
                return System.Runtime.CompilerServices.RuntimeHelpers.GetHashCode(v);
        }
    }

    // ---------------------------------------------------------------- ordering

    /// <summary>Python's &lt; family: numbers, strings (by code point) and sequences of those.</summary>
    public static int Compare(object? a, object? b, string op = "<")
    {
        if (a is Undefined ua) throw UndefinedError(ua);
        if (b is Undefined ub) throw UndefinedError(ub);
        if (IsNumber(a) && IsNumber(b))
        {
            if (a is double || b is double) return ToDouble(a).CompareTo(ToDouble(b));
            return ToLong(a).CompareTo(ToLong(b));
        }
        if (a is string sa && b is string sb) return CompareCodePoints(sa, sb);
        if ((a is List<object?> && b is List<object?>) || (a is PyTuple && b is PyTuple))
        {
            var la = (IReadOnlyList<object?>)a;
            var lb = (IReadOnlyList<object?>)b;
            RenderBudget.EnsureStack();
            for (int i = 0; i < Math.Min(la.Count, lb.Count); i++)
            {
                if (Equal(la[i], lb[i])) continue;
                return Compare(la[i], lb[i], op);
            }
            return la.Count.CompareTo(lb.Count);
        }
        throw new JinjaRuntimeException($"'{op}' not supported between instances of '{TypeName(a)}' and '{TypeName(b)}'");
    }

    /// <summary>
    /// Runs a .NET sort whose comparer may throw a template error ('&lt;' between a str and an int, a limit):
    /// .NET wraps what a comparer throws in InvalidOperationException, which is unwrapped here so that it
    /// reaches the template's caller as the template error it is.
    /// </summary>
    public static T Sorting<T>(Func<T> sort)
    {
        try { return sort(); }
        catch (InvalidOperationException e) when (e.InnerException is JinjaRuntimeException or RenderLimitExceededException or OperationCanceledException)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerException).Throw();
            throw;
        }
    }

    public static int CompareCodePoints(string a, string b)
    {
        int n = Math.Min(a.Length, b.Length);
        for (int i = 0; i < n; i++)
        {
            char x = a[i], y = b[i];
            if (x == y) continue;
            // Surrogates (astral code points) sort above every BMP character.
            bool sx = char.IsSurrogate(x), sy = char.IsSurrogate(y);
            if (sx != sy) return sx ? 1 : -1;
            return x.CompareTo(y);
        }
        return a.Length.CompareTo(b.Length);
    }

    // ---------------------------------------------------------------- numbers

    public static long ToLong(object? v) => v switch
    {
        long l => l,
        bool b => b ? 1 : 0,
        double d => (long)d,
        _ => throw new JinjaRuntimeException($"expected an int, got '{TypeName(v)}'"),
    };

    public static double ToDouble(object? v) => v switch
    {
        double d => d,
        long l => l,
        bool b => b ? 1 : 0,
        _ => throw new JinjaRuntimeException($"expected a number, got '{TypeName(v)}'"),
    };

    /// <summary>Python's repr() of a float: shortest round-trip digits, "1.0" for whole numbers, exponent outside 1e-4..1e16.</summary>
    public static string FormatFloat(double d)
    {
        if (double.IsNaN(d)) return "nan";
        if (double.IsInfinity(d)) return d > 0 ? "inf" : "-inf";
        if (d == 0) return double.IsNegative(d) ? "-0.0" : "0.0";

        string r = d.ToString("R", Inv);
        bool negative = r[0] == '-';
        if (negative) r = r[1..];
        int exp = 0;
        int e = r.IndexOfAny(['E', 'e']);
        if (e >= 0)
        {
            exp = int.Parse(r[(e + 1)..], NumberStyles.AllowLeadingSign, Inv);
            r = r[..e];
        }
        int dot = r.IndexOf('.');
        string intPart = dot < 0 ? r : r[..dot];
        string frac = dot < 0 ? "" : r[(dot + 1)..];
        string digits = intPart + frac;
        int point = intPart.Length + exp; // the decimal point sits after this many digits
        int lead = 0;
        while (lead < digits.Length - 1 && digits[lead] == '0') { lead++; point--; }
        digits = digits[lead..].TrimEnd('0');
        if (digits.Length == 0) digits = "0";

        var sb = new StringBuilder();
        if (negative) sb.Append('-');
        int sci = point - 1;
        if (sci < -4 || sci >= 16)
        {
            sb.Append(digits[0]);
            if (digits.Length > 1) sb.Append('.').Append(digits, 1, digits.Length - 1);
            sb.Append('e').Append(sci < 0 ? '-' : '+').Append(Math.Abs(sci).ToString("00", Inv));
        }
        else if (point <= 0)
        {
            sb.Append("0.").Append('0', -point).Append(digits);
        }
        else if (point >= digits.Length)
        {
            sb.Append(digits).Append('0', point - digits.Length).Append(".0");
        }
        else
        {
            sb.Append(digits, 0, point).Append('.').Append(digits, point, digits.Length - point);
        }
        return sb.ToString();
    }

    // ---------------------------------------------------------------- str() and repr()

    public static string Str(object? v) => v switch
    {
        null => "None",
        Undefined => "",
        string s => s,
        bool b => b ? "True" : "False",
        long l => l.ToString(Inv),
        double d => FormatFloat(d),
        _ => Repr(v),
    };

    public static string Repr(object? v)
    {
        switch (v)
        {
            case string s: return ReprString(s);
            case Undefined: return "Undefined";
            case List<object?> or PyTuple or PyDict or Namespace:
                {
                    var sb = new StringBuilder();
                    WriteRepr(sb, v);
                    return sb.ToString();
                }
            case PyCallable f: return $"<function {f.Name}>";
            case LoopContext lc: return $"<LoopContext {lc.Index0 + 1}/{lc.Items.Count}>";
            default: return Str(v);
        }
    }

    /// <summary>
    /// repr() of containers into one builder whose size is checked as it grows: a list repeated inside itself
    /// prints far larger than it is, and a list that contains itself would recurse forever.
    /// </summary>
    private static void WriteRepr(StringBuilder sb, object? v)
    {
        RenderBudget.EnsureStack();
        RenderBudget.Charge(1);
        switch (v)
        {
            case List<object?> l:
                RenderBudget.Append(sb, "[");
                for (int i = 0; i < l.Count; i++)
                {
                    if (i > 0) RenderBudget.Append(sb, ", ");
                    WriteRepr(sb, l[i]);
                }
                RenderBudget.Append(sb, "]");
                return;
            case PyTuple t:
                RenderBudget.Append(sb, "(");
                for (int i = 0; i < t.Count; i++)
                {
                    if (i > 0) RenderBudget.Append(sb, ", ");
                    WriteRepr(sb, t[i]);
                }
                RenderBudget.Append(sb, t.Count == 1 ? ",)" : ")");
                return;
            case PyDict d:
                {
                    RenderBudget.Append(sb, "{");
                    bool first = true;
                    foreach (var (key, value) in d)
                    {
                        if (!first) RenderBudget.Append(sb, ", ");
                        first = false;
                        WriteRepr(sb, key);
                        RenderBudget.Append(sb, ": ");
                        WriteRepr(sb, value);
                    }
                    RenderBudget.Append(sb, "}");
                    return;
                }
            case Namespace ns:
                RenderBudget.Append(sb, "<Namespace ");
                WriteRepr(sb, ns.Attributes);
                RenderBudget.Append(sb, ">");
                return;
            default:
                RenderBudget.Append(sb, Repr(v));
                return;
        }
    }

    private static string ReprString(string s)
    {
        char quote = s.Contains('\'') && !s.Contains('"') ? '"' : '\'';
        // Escapes can make the repr up to ten times longer than the string.
        RenderBudget.CheckStringLength(s.Length + 2L);
        var sb = new StringBuilder(s.Length + 2);
        sb.Append(quote);
        for (int i = 0; i < s.Length; i++)
        {
            char c = s[i];
            if (c == quote || c == '\\') { sb.Append('\\').Append(c); continue; }
            switch (c)
            {
                case '\n': sb.Append("\\n"); continue;
                case '\r': sb.Append("\\r"); continue;
                case '\t': sb.Append("\\t"); continue;
            }
            int cp = c;
            int width = 1;
            if (char.IsHighSurrogate(c) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
            {
                cp = char.ConvertToUtf32(c, s[i + 1]);
                width = 2;
            }
            if (IsPrintable(cp)) sb.Append(s, i, width);
            else if (cp < 0x100) sb.Append("\\x").Append(cp.ToString("x2", Inv));
            else if (cp < 0x10000) sb.Append("\\u").Append(cp.ToString("x4", Inv));
            else sb.Append("\\U").Append(cp.ToString("x8", Inv));
            i += width - 1;
            if (sb.Length > s.Length + 2) RenderBudget.CheckStringLength(sb.Length);
        }
        return sb.Append(quote).ToString();
    }

    private static bool IsPrintable(int cp)
    {
        if (cp == ' ') return true;
        if (cp >= 0xD800 && cp <= 0xDFFF) return false;
        var cat = CharUnicodeInfo.GetUnicodeCategory(cp);
        return cat is not (UnicodeCategory.Control or UnicodeCategory.Format or UnicodeCategory.Surrogate
            or UnicodeCategory.PrivateUse or UnicodeCategory.OtherNotAssigned or UnicodeCategory.LineSeparator
            or UnicodeCategory.ParagraphSeparator or UnicodeCategory.SpaceSeparator);
    }

    // ---------------------------------------------------------------- strings as code points

    public static bool HasSurrogates(string s)
    {
        foreach (char c in s) if (char.IsSurrogate(c)) return true;
        return false;
    }

    /// <summary>The string's characters as Python sees them: one entry per code point.</summary>
    public static List<string> CodePoints(string s)
    {
        var list = new List<string>(s.Length);
        for (int i = 0; i < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
            {
                list.Add(s.Substring(i, 2));
                i++;
            }
            else list.Add(s[i].ToString());
        }
        return list;
    }

    public static int StrLen(string s) => HasSurrogates(s) ? CodePoints(s).Count : s.Length;

    /// <summary>Python's str.isspace() characters.</summary>
    public static bool IsSpace(char c) => c switch
    {
        ' ' or '\t' or '\n' or '\v' or '\f' or '\r' => true,
        >= '\x1c' and <= '\x1f' => true,
        '\x85' or '\xa0' or '\u1680' or '\u2028' or '\u2029' or '\u202f' or '\u205f' or '\u3000' => true,
        >= '\u2000' and <= '\u200a' => true,
        _ => false,
    };

    public static string Strip(string s, string? chars, bool left = true, bool right = true)
    {
        Func<char, bool> drop = chars is null ? IsSpace : chars.Contains;
        int start = 0, end = s.Length;
        if (left) while (start < end && drop(s[start])) start++;
        if (right) while (end > start && drop(s[end - 1])) end--;
        return s[start..end];
    }

    /// <summary>Python's str.splitlines(): every Unicode line boundary, the ends dropped.</summary>
    public static List<string> SplitLines(string s)
    {
        var lines = new List<string>();
        int start = 0;
        for (int i = 0; i < s.Length; i++)
        {
            char c = s[i];
            if (c is '\n' or '\r' or '\v' or '\f' or '\x1c' or '\x1d' or '\x1e' or '\x85' or '\u2028' or '\u2029')
            {
                lines.Add(s[start..i]);
                if (c == '\r' && i + 1 < s.Length && s[i + 1] == '\n') i++;
                start = i + 1;
            }
        }
        if (start < s.Length) lines.Add(s[start..]);
        return lines;
    }

    private static bool IsCased(char c) => char.IsUpper(c) || char.IsLower(c) ||
        CharUnicodeInfo.GetUnicodeCategory(c) == UnicodeCategory.TitlecaseLetter;

    /// <summary>Python's str.title(): a cased character after an uncased one goes upper, the rest lower.</summary>
    public static string Title(string s)
    {
        var sb = new StringBuilder(s.Length);
        bool prevCased = false;
        foreach (char c in s)
        {
            bool cased = IsCased(c);
            sb.Append(cased ? (prevCased ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c)) : c);
            prevCased = cased;
        }
        return sb.ToString();
    }

    /// <summary>Python's str.capitalize(): the first character upper, the rest lower.</summary>
    public static string Capitalize(string s) =>
        s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant();

    // ---------------------------------------------------------------- containers

    public static int Len(object? v) => v switch
    {
        string s => StrLen(s),
        List<object?> l => l.Count,
        PyTuple t => t.Count,
        PyDict d => d.Count,
        Undefined => 0,
        _ => throw new JinjaRuntimeException($"object of type '{TypeName(v)}' has no len()"),
    };

    /// <summary>What a for loop over the value visits: items, dict keys, characters; nothing for Undefined.</summary>
    public static IEnumerable<object?> Iterate(object? v) => v switch
    {
        List<object?> l => l,
        PyTuple t => t.Items,
        PyDict d => d.Keys,
        string s => HasSurrogates(s) ? CodePoints(s) : s.Select(c => (object?)c.ToString()),
        Undefined => [],
        _ => throw new JinjaRuntimeException($"'{TypeName(v)}' object is not iterable"),
    };

    public static List<object?> ToList(object? v)
    {
        if (v is string s) RenderBudget.CheckListLength(s.Length);
        return [.. Iterate(v)];
    }

    public static bool Contains(object? container, object? item)
    {
        switch (container)
        {
            case string s:
                if (item is string sub) return s.Contains(sub, StringComparison.Ordinal);
                if (item is Undefined u) throw UndefinedError(u);
                throw new JinjaRuntimeException($"'in <string>' requires string as left operand, not {TypeName(item)}");
            case List<object?> l: return l.Any(x => Equal(x, item));
            case PyTuple t: return t.Items.Any(x => Equal(x, item));
            case PyDict d: return d.ContainsKey(item);
            case Undefined: return false;
            default:
                throw new JinjaRuntimeException($"argument of type '{TypeName(container)}' is not iterable");
        }
    }

    // ---------------------------------------------------------------- attribute and item access

    /// <summary>obj.name as Jinja does it: the Python attribute (a method) first, then the item.</summary>
    public static object? GetAttr(object? obj, string name)
    {
        switch (obj)
        {
            case Undefined: return obj;
            case Namespace ns:
                return ns.Attributes.TryGetValue(name, out var nv) ? nv : Undefined.Missing(obj, name);
            case LoopContext loop: return loop.Get(name);
        }
        var method = Methods.Bind(obj, name);
        if (method is not null) return method;
        if (obj is PyDict d && d.TryGetValue(name, out var v)) return v;
        return Undefined.Missing(obj, name);
    }

    /// <summary>obj[key] as Jinja does it: the item first, then for a string key the attribute.</summary>
    public static object? GetItem(object? obj, object? key)
    {
        switch (obj)
        {
            case Undefined: return obj;
            case PyDict d:
                if (d.TryGetValue(key, out var v)) return v;
                break;
            case List<object?> or PyTuple when key is long or bool:
                {
                    var list = (IReadOnlyList<object?>)obj;
                    long i = ToLong(key);
                    if (i < 0) i += list.Count;
                    return i >= 0 && i < list.Count ? list[(int)i] : Undefined.Missing(obj, key);
                }
            case string s when key is long or bool:
                {
                    var chars = HasSurrogates(s) ? CodePoints(s) : null;
                    int n = chars?.Count ?? s.Length;
                    long i = ToLong(key);
                    if (i < 0) i += n;
                    if (i < 0 || i >= n) return Undefined.Missing(obj, key);
                    return chars is null ? s[(int)i].ToString() : chars[(int)i];
                }
        }
        if (key is string name && obj is not PyDict) return GetAttr(obj, name);
        if (key is string dname && obj is PyDict) return (object?)Methods.Bind(obj, dname) ?? Undefined.Missing(obj, key);
        return Undefined.Missing(obj, key);
    }

    /// <summary>obj[start:stop:step] with Python's clamping; lists, tuples and strings.</summary>
    public static object? Slice(object? obj, object? start, object? stop, object? step)
    {
        long st = SliceIndex(step) ?? 1;
        if (st == 0) throw new JinjaRuntimeException("slice step cannot be zero");
        IReadOnlyList<object?> items = obj switch
        {
            List<object?> l => l,
            PyTuple t => t,
            string s => HasSurrogates(s) ? CodePoints(s) : new CharList(s),
            Undefined u => throw UndefinedError(u),
            _ => throw new JinjaRuntimeException($"'{TypeName(obj)}' object is not subscriptable"),
        };
        long n = items.Count;
        long lower = st > 0 ? 0 : -1, upper = st > 0 ? n : n - 1;
        long Adjust(long? v, long dflt)
        {
            if (v is null) return dflt;
            long x = v.Value;
            if (x < 0) { x += n; if (x < lower) x = lower; }
            else if (x > upper) x = upper;
            return x;
        }
        long a = Adjust(SliceIndex(start), st > 0 ? lower : upper);
        long b = Adjust(SliceIndex(stop), st > 0 ? upper : lower);
        RenderBudget.Charge(Math.Abs(b - a) / Math.Abs(st));
        var result = new List<object?>();
        for (long i = a; st > 0 ? i < b : i > b; i += st) result.Add(items[(int)i]);
        return obj switch
        {
            string => string.Concat(result.Cast<string>()),
            PyTuple => new PyTuple([.. result]),
            _ => result,
        };
    }

    private static long? SliceIndex(object? v) => v switch
    {
        null => null,
        long or bool => ToLong(v),
        Undefined u => throw UndefinedError(u),
        _ => throw new JinjaRuntimeException("slice indices must be integers or None"),
    };

    // ---------------------------------------------------------------- arithmetic

    private static JinjaRuntimeException Unsupported(string op, object? a, object? b)
    {
        if (a is Undefined ua) return UndefinedError(ua);
        if (b is Undefined ub) return UndefinedError(ub);
        if (op == "+" && a is string) return new JinjaRuntimeException($"can only concatenate str (not \"{TypeName(b)}\") to str");
        if (op == "+" && a is List<object?>) return new JinjaRuntimeException($"can only concatenate list (not \"{TypeName(b)}\") to list");
        return new JinjaRuntimeException($"unsupported operand type(s) for {op}: '{TypeName(a)}' and '{TypeName(b)}'");
    }

    public static object? Binary(string op, object? a, object? b)
    {
        if (IsNumber(a) && IsNumber(b)) return Arithmetic(op, a, b);
        switch (op)
        {
            case "+":
                if (a is string sa && b is string sb)
                {
                    RenderBudget.CheckStringLength((long)sa.Length + sb.Length);
                    return sa + sb;
                }
                if (a is List<object?> la && b is List<object?> lb)
                {
                    RenderBudget.CheckListLength((long)la.Count + lb.Count);
                    return new List<object?>([.. la, .. lb]);
                }
                if (a is PyTuple ta && b is PyTuple tb)
                {
                    RenderBudget.CheckListLength((long)ta.Count + tb.Count);
                    return new PyTuple([.. ta.Items, .. tb.Items]);
                }
                break;
            case "*":
                if (a is string s1 && b is long or bool) return Repeat(s1, ToLong(b));
                if (b is string s2 && a is long or bool) return Repeat(s2, ToLong(a));
                if (a is List<object?> l1 && b is long or bool) return RepeatList(l1, ToLong(b));
                if (b is List<object?> l2 && a is long or bool) return RepeatList(l2, ToLong(a));
                break;
            case "%":
                if (a is string fmt) return Format.Percent(fmt, b);
                break;
        }
        throw Unsupported(op, a, b);
    }

    // Results of * on strings and lists are checked against the render's size limit before they are built,
    // so that a template cannot exhaust memory.

    private static string Repeat(string s, long n)
    {
        if (n <= 0 || s.Length == 0) return "";
        RenderBudget.CheckRepeatedStringLength(s.Length, n);
        return string.Concat(Enumerable.Repeat(s, (int)n));
    }

    private static List<object?> RepeatList(List<object?> l, long n)
    {
        if (n <= 0 || l.Count == 0) return [];
        RenderBudget.CheckRepeatedListLength(l.Count, n);
        return [.. Enumerable.Repeat(l, (int)n).SelectMany(x => x)];
    }

    private static object Arithmetic(string op, object? a, object? b)
    {
        bool isFloat = a is double || b is double;
        if (op == "/")
        {
            double den = ToDouble(b);
            if (den == 0) throw new JinjaRuntimeException("division by zero");
            return ToDouble(a) / den;
        }
        if (isFloat)
        {
            double x = ToDouble(a), y = ToDouble(b);
            switch (op)
            {
                case "+": return x + y;
                case "-": return x - y;
                case "*": return x * y;
                case "**": return Math.Pow(x, y);
                case "//":
                    if (y == 0) throw new JinjaRuntimeException("float floor division by zero");
                    return Math.Floor(x / y);
                case "%":
                    if (y == 0) throw new JinjaRuntimeException("float modulo");
                    double r = x % y;
                    if (r != 0 && (r < 0) != (y < 0)) r += y;
                    return r;
            }
        }
        else
        {
            long x = ToLong(a), y = ToLong(b);
            try
            {
                checked
                {
                    switch (op)
                    {
                        case "+": return x + y;
                        case "-": return x - y;
                        case "*": return x * y;
                        case "**":
                            {
                                if (y < 0) return Math.Pow(x, y);
                                // By squaring: 1 ** 10**12 must not loop 10**12 times.
                                long result = 1, factor = x;
                                for (long e = y; e > 0; e >>= 1)
                                {
                                    if ((e & 1) != 0) result *= factor;
                                    if (e > 1) factor *= factor;
                                }
                                return result;
                            }
                        case "//":
                            {
                                if (y == 0) throw new JinjaRuntimeException("integer division or modulo by zero");
                                long q = x / y;
                                if (x % y != 0 && (x < 0) != (y < 0)) q--;
                                return q;
                            }
                        case "%":
                            {
                                if (y == 0) throw new JinjaRuntimeException("integer division or modulo by zero");
                                long r = x % y;
                                if (r != 0 && (r < 0) != (y < 0)) r += y;
                                return r;
                            }
                    }
                }
            }
            catch (OverflowException)
            {
                throw new JinjaRuntimeException("integer overflow");
            }
        }
        throw new JinjaRuntimeException($"unknown operator {op}");
    }

    public static object? Negate(object? v) => v switch
    {
        long l => (object)(-l),
        bool b => b ? -1L : 0L,
        double d => -d,
        Undefined u => throw UndefinedError(u),
        _ => throw new JinjaRuntimeException($"bad operand type for unary -: '{TypeName(v)}'"),
    };

    public static object? Plus(object? v) => v switch
    {
        long or double => v,
        bool b => b ? 1L : 0L,
        Undefined u => throw UndefinedError(u),
        _ => throw new JinjaRuntimeException($"bad operand type for unary +: '{TypeName(v)}'"),
    };

    // ---------------------------------------------------------------- values from .NET

    /// <summary>Turns caller data (strings, numbers, dictionaries, lists, JSON) into interpreter values.</summary>
    public static object? FromClr(object? v)
    {
        switch (v)
        {
            case null: return null;
            case string or bool or long or double or Undefined or PyDict or PyTuple or Namespace or PyCallable: return v;
            case int or short or sbyte or byte or ushort or uint: return Convert.ToInt64(v, Inv);
            case ulong u: return u <= long.MaxValue ? (long)u : (double)u;
            case float f: return (double)f;
            case decimal m: return (double)m;
            case char c: return c.ToString();
            case ChatMessage msg:
                var md = new PyDict();
                md["role"] = msg.Role;
                md["content"] = msg.Content;
                return md;
            case JsonElement e: return FromJson(e);
            case JsonNode node: return FromJsonNode(node);
            case IDictionary dict:
                {
                    var d = new PyDict();
                    foreach (DictionaryEntry entry in dict) d[FromClr(entry.Key)] = FromClr(entry.Value);
                    return d;
                }
            case IEnumerable<KeyValuePair<string, object?>> pairs:
                {
                    var d = new PyDict();
                    foreach (var (k, val) in pairs) d[k] = FromClr(val);
                    return d;
                }
            case IEnumerable seq:
                {
                    var l = new List<object?>();
                    foreach (var x in seq) l.Add(FromClr(x));
                    return l;
                }
            default:
                throw new ArgumentException($"values of type {v.GetType()} cannot be passed to a chat template");
        }
    }

    public static object? FromJson(JsonElement e)
    {
        switch (e.ValueKind)
        {
            case JsonValueKind.Null:
            case JsonValueKind.Undefined:
                return null;
            case JsonValueKind.True: return true;
            case JsonValueKind.False: return false;
            case JsonValueKind.String: return e.GetString();
            case JsonValueKind.Number:
                {
                    string raw = e.GetRawText();
                    if (raw.IndexOfAny(['.', 'e', 'E']) < 0 && e.TryGetInt64(out long l)) return l;
                    return e.GetDouble();
                }
            case JsonValueKind.Array:
                return e.EnumerateArray().Select(FromJson).ToList();
            case JsonValueKind.Object:
                {
                    var d = new PyDict();
                    foreach (var p in e.EnumerateObject()) d[p.Name] = FromJson(p.Value);
                    return d;
                }
        }
        return null;
    }

    private static object? FromJsonNode(JsonNode node)
    {
        switch (node)
        {
            case JsonObject o:
                {
                    var d = new PyDict();
                    foreach (var (k, child) in o) d[k] = child is null ? null : FromJsonNode(child);
                    return d;
                }
            case JsonArray a:
                return a.Select(x => x is null ? null : FromJsonNode(x)).ToList();
            case JsonValue jv:
                if (jv.TryGetValue<JsonElement>(out var el)) return FromJson(el);
                if (jv.TryGetValue<string>(out var s)) return s;
                if (jv.TryGetValue<bool>(out var b)) return b;
                if (jv.TryGetValue<long>(out var l)) return l;
                if (jv.TryGetValue<int>(out var i)) return (long)i;
                if (jv.TryGetValue<double>(out var d2)) return d2;
                if (jv.TryGetValue<decimal>(out var m)) return (double)m;
                if (jv.TryGetValue<float>(out var f)) return (double)f;
                return FromJson(JsonDocument.Parse(jv.ToJsonString()).RootElement.Clone());
        }
        return null;
    }
}

/// <summary>A string's characters as one-character strings, made as they are read rather than all up front.</summary>
internal sealed class CharList(string s) : IReadOnlyList<object?>
{
    public int Count => s.Length;
    public object? this[int index] => s[index].ToString();
    public IEnumerator<object?> GetEnumerator()
    {
        foreach (char c in s) yield return c.ToString();
    }
    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
}
