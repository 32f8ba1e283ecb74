using System.Text;

namespace PiServe.Inference.Chat.Jinja;

/// <summary>The Python methods templates call on strings, dicts and lists (x.strip(), d.items(), ...).</summary>
internal static class Methods
{
    /// <summary>The bound method obj.name, or null when the type has no such method.</summary>
    public static PyCallable? Bind(object? obj, string name)
    {
        var method = BindMethod(obj, name);
        if (method is null) return null;
        // The receiver is not among the call's arguments, so the method pays for reading it here.
        return new PyCallable(method.Name, args =>
        {
            RenderBudget.ChargeFor(obj);
            return method.Invoke(args);
        });
    }

    private static PyCallable? BindMethod(object? obj, string name) => obj switch
    {
        string s => StringMethod(s, name),
        PyDict d => DictMethod(d, name),
        List<object?> l => ListMethod(l, name),
        PyTuple t => TupleMethod(t, name),
        _ => null,
    };

    private static PyCallable Fn(string name, Func<CallArgs, object?> f) => new(name, f);

    private static string? OptStr(object? v, string fn) => v switch
    {
        null => null,
        string s => s,
        Undefined u => throw Py.UndefinedError(u),
        _ => throw new JinjaRuntimeException($"{fn} arg must be None or str"),
    };

    private static string Str(object? v, string fn) => v switch
    {
        string s => s,
        Undefined u => throw Py.UndefinedError(u),
        _ => throw new JinjaRuntimeException($"{fn}() argument must be str, not {Py.TypeName(v)}"),
    };

    private static PyCallable? StringMethod(string s, string name)
    {
        switch (name)
        {
            case "strip":
            case "lstrip":
            case "rstrip":
                return Fn(name, a =>
                {
                    var p = a.Bind(name, ["chars"], [null]);
                    return Py.Strip(s, OptStr(p[0], name), name != "rstrip", name != "lstrip");
                });
            case "upper": return Fn(name, a => { a.NoArguments(name); return s.ToUpperInvariant(); });
            case "lower": return Fn(name, a => { a.NoArguments(name); return s.ToLowerInvariant(); });
            case "title": return Fn(name, a => { a.NoArguments(name); return Py.Title(s); });
            case "capitalize": return Fn(name, a => { a.NoArguments(name); return Py.Capitalize(s); });
            case "swapcase":
                return Fn(name, a =>
                {
                    a.NoArguments(name);
                    return string.Concat(s.Select(c => char.IsUpper(c) ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c)));
                });
            case "startswith":
            case "endswith":
                return Fn(name, a =>
                {
                    var p = a.Bind(name, ["prefix"], [Undefined.Instance]);
                    var options = p[0] switch
                    {
                        PyTuple t => t.Items.Select(x => Str(x, name)),
                        List<object?> l => l.Select(x => Str(x, name)),
                        var x => [Str(x, name)],
                    };
                    return name == "startswith"
                        ? options.Any(x => s.StartsWith(x, StringComparison.Ordinal))
                        : options.Any(x => s.EndsWith(x, StringComparison.Ordinal));
                });
            case "split":
            case "rsplit":
                return Fn(name, a =>
                {
                    var p = a.Bind(name, ["sep", "maxsplit"], [null, -1L]);
                    return Split(s, OptStr(p[0], name), Py.ToLong(p[1]), name == "rsplit");
                });
            case "splitlines":
                return Fn(name, a => { a.NoArguments(name); return Py.SplitLines(s).Cast<object?>().ToList(); });
            case "replace":
                return Fn(name, a =>
                {
                    var p = a.Bind(name, ["old", "new", "count"], [Undefined.Instance, Undefined.Instance, -1L]);
                    return Replace(s, Str(p[0], name), Str(p[1], name), Py.ToLong(p[2]));
                });
            case "format": return Fn(name, a => Format.StrFormat(s, a));
            case "join":
                return Fn(name, a =>
                {
                    var p = a.Bind(name, ["iterable"], [Undefined.Instance]);
                    var parts = Py.Iterate(p[0]).Select((x, i) => x as string ??
                        throw new JinjaRuntimeException($"sequence item {i}: expected str instance, {Py.TypeName(x)} found"));
                    return Filters.Join(s, parts);
                });
            case "find":
            case "rfind":
            case "index":
            case "rindex":
                return Fn(name, a =>
                {
                    var p = a.Bind(name, ["sub"], [Undefined.Instance]);
                    string sub = Str(p[0], name);
                    int i = name.StartsWith('r') ? s.LastIndexOf(sub, StringComparison.Ordinal) : s.IndexOf(sub, StringComparison.Ordinal);
                    if (i < 0 && name.EndsWith("index")) throw new JinjaRuntimeException("substring not found");
                    return i < 0 ? -1L : (long)Py.StrLen(s[..i]);
                });
            case "count":
                return Fn(name, a =>
                {
                    var p = a.Bind(name, ["sub"], [Undefined.Instance]);
                    string sub = Str(p[0], name);
                    if (sub.Length == 0) return (long)Py.StrLen(s) + 1;
                    long n = 0;
                    for (int i = s.IndexOf(sub, StringComparison.Ordinal); i >= 0; i = s.IndexOf(sub, i + sub.Length, StringComparison.Ordinal)) n++;
                    return n;
                });
            case "removeprefix":
                return Fn(name, a =>
                {
                    string x = Str(a.Bind(name, ["prefix"], [Undefined.Instance])[0], name);
                    return s.StartsWith(x, StringComparison.Ordinal) ? s[x.Length..] : s;
                });
            case "removesuffix":
                return Fn(name, a =>
                {
                    string x = Str(a.Bind(name, ["suffix"], [Undefined.Instance])[0], name);
                    return x.Length > 0 && s.EndsWith(x, StringComparison.Ordinal) ? s[..^x.Length] : s;
                });
            case "isdigit": return Predicate(name, s, char.IsDigit);
            case "isnumeric": return Predicate(name, s, char.IsNumber);
            case "isalpha": return Predicate(name, s, char.IsLetter);
            case "isalnum": return Predicate(name, s, char.IsLetterOrDigit);
            case "isspace": return Predicate(name, s, Py.IsSpace);
            case "isupper":
                return Fn(name, a => { a.NoArguments(name); return s.Any(char.IsUpper) && !s.Any(char.IsLower); });
            case "islower":
                return Fn(name, a => { a.NoArguments(name); return s.Any(char.IsLower) && !s.Any(char.IsUpper); });
            case "center":
            case "ljust":
            case "rjust":
                return Fn(name, a =>
                {
                    var p = a.Bind(name, ["width", "fillchar"], [Undefined.Instance, " "]);
                    long width = Py.ToLong(p[0]);
                    char fill = Str(p[1], name) is { Length: 1 } f ? f[0] : throw new JinjaRuntimeException("The fill character must be exactly one character long");
                    long pad = width - Py.StrLen(s);
                    if (pad <= 0) return s;
                    RenderBudget.CheckStringLength(s.Length + pad);
                    return name switch
                    {
                        "ljust" => s + new string(fill, (int)pad),
                        "rjust" => new string(fill, (int)pad) + s,
                        // Python puts the odd extra character on the left when the width is odd.
                        _ => new string(fill, (int)(pad / 2 + (pad & width & 1))) + s + new string(fill, (int)(pad - (pad / 2 + (pad & width & 1)))),
                    };
                });
            case "zfill":
                return Fn(name, a =>
                {
                    long width = Py.ToLong(a.Bind(name, ["width"], [Undefined.Instance])[0]);
                    long pad = width - Py.StrLen(s);
                    if (pad <= 0) return s;
                    int sign = s.Length > 0 && s[0] is '+' or '-' ? 1 : 0;
                    return s[..sign] + RenderBudget.Repeat('0', pad) + s[sign..];
                });
            case "partition":
            case "rpartition":
                return Fn(name, a =>
                {
                    string sep = Str(a.Bind(name, ["sep"], [Undefined.Instance])[0], name);
                    if (sep.Length == 0) throw new JinjaRuntimeException("empty separator");
                    int i = name == "partition" ? s.IndexOf(sep, StringComparison.Ordinal) : s.LastIndexOf(sep, StringComparison.Ordinal);
                    if (i < 0) return name == "partition" ? new PyTuple([s, "", ""]) : new PyTuple(["", "", s]);
                    return new PyTuple([s[..i], sep, s[(i + sep.Length)..]]);
                });
        }
        return null;
    }

    private static PyCallable Predicate(string name, string s, Func<char, bool> test) =>
        Fn(name, a => { a.NoArguments(name); return s.Length > 0 && s.All(test); });

    /// <summary>Python's str.split / str.rsplit.</summary>
    public static List<object?> Split(string s, string? sep, long maxsplit, bool fromRight)
    {
        var parts = new List<string>();
        if (sep is null)
        {
            // Runs of whitespace separate; leading and trailing whitespace yields no empty parts.
            if (!fromRight)
            {
                int i = 0;
                while (true)
                {
                    while (i < s.Length && Py.IsSpace(s[i])) i++;
                    if (i >= s.Length) break;
                    if (maxsplit >= 0 && parts.Count == maxsplit)
                    {
                        parts.Add(Py.Strip(s[i..], null, left: false));
                        break;
                    }
                    int start = i;
                    while (i < s.Length && !Py.IsSpace(s[i])) i++;
                    parts.Add(s[start..i]);
                }
            }
            else
            {
                int i = s.Length;
                while (true)
                {
                    while (i > 0 && Py.IsSpace(s[i - 1])) i--;
                    if (i <= 0) break;
                    if (maxsplit >= 0 && parts.Count == maxsplit)
                    {
                        parts.Add(Py.Strip(s[..i], null, right: false));
                        break;
                    }
                    int end = i;
                    while (i > 0 && !Py.IsSpace(s[i - 1])) i--;
                    parts.Add(s[i..end]);
                }
                parts.Reverse();
            }
            return parts.Cast<object?>().ToList();
        }
        if (sep.Length == 0) throw new JinjaRuntimeException("empty separator");
        if (!fromRight)
        {
            int start = 0;
            while (maxsplit < 0 || parts.Count < maxsplit)
            {
                int i = s.IndexOf(sep, start, StringComparison.Ordinal);
                if (i < 0) break;
                parts.Add(s[start..i]);
                start = i + sep.Length;
            }
            parts.Add(s[start..]);
        }
        else
        {
            int end = s.Length;
            while (maxsplit < 0 || parts.Count < maxsplit)
            {
                int i = end - sep.Length < 0 ? -1 : s.LastIndexOf(sep, end - 1, end, StringComparison.Ordinal);
                if (i < 0) break;
                parts.Add(s[(i + sep.Length)..end]);
                end = i;
            }
            parts.Add(s[..end]);
            parts.Reverse();
        }
        return parts.Cast<object?>().ToList();
    }

    /// <summary>Python's str.replace, including the empty "old" case.</summary>
    public static string Replace(string s, string old, string @new, long count)
    {
        if (count == 0) return s;
        // The result's length before any of it is built: every replacement adds new.Length - old.Length.
        long replacements = old.Length == 0 ? Py.StrLen(s) + 1L : CountOccurrences(s, old);
        if (count >= 0) replacements = Math.Min(replacements, count);
        RenderBudget.CheckStringLength(s.Length + replacements * ((long)@new.Length - old.Length));
        if (old.Length == 0)
        {
            var cps = Py.CodePoints(s);
            var sb = new StringBuilder();
            long done = 0;
            foreach (var c in cps)
            {
                if (count < 0 || done < count) { sb.Append(@new); done++; }
                sb.Append(c);
            }
            if (count < 0 || done < count) sb.Append(@new);
            return sb.ToString();
        }
        if (count < 0) return s.Replace(old, @new, StringComparison.Ordinal);
        var result = new StringBuilder();
        int start = 0;
        for (long n = 0; n < count; n++)
        {
            int i = s.IndexOf(old, start, StringComparison.Ordinal);
            if (i < 0) break;
            result.Append(s, start, i - start).Append(@new);
            start = i + old.Length;
        }
        return result.Append(s, start, s.Length - start).ToString();
    }

    private static long CountOccurrences(string s, string sub)
    {
        long n = 0;
        for (int i = s.IndexOf(sub, StringComparison.Ordinal); i >= 0; i = s.IndexOf(sub, i + sub.Length, StringComparison.Ordinal)) n++;
        return n;
    }

    private static PyCallable? DictMethod(PyDict d, string name)
    {
        switch (name)
        {
            case "items":
                return Fn(name, a => { a.NoArguments(name); return d.Select(kv => (object?)new PyTuple([kv.Key, kv.Value])).ToList(); });
            case "keys": return Fn(name, a => { a.NoArguments(name); return d.Keys.ToList(); });
            case "values": return Fn(name, a => { a.NoArguments(name); return d.Values.ToList(); });
            case "get":
                return Fn(name, a =>
                {
                    var p = a.Bind(name, ["key", "default"], [Undefined.Instance, null]);
                    return d.TryGetValue(p[0], out var v) ? v : p[1];
                });
            case "copy":
                return Fn(name, a =>
                {
                    a.NoArguments(name);
                    var copy = new PyDict();
                    foreach (var (k, v) in d) copy[k] = v;
                    return copy;
                });
        }
        return null;
    }

    private static PyCallable? ListMethod(List<object?> l, string name)
    {
        switch (name)
        {
            case "append":
                return Fn(name, a =>
                {
                    var item = a.Bind(name, ["object"], [Undefined.Instance])[0];
                    RenderBudget.CheckListLength(l.Count + 1L);
                    l.Add(item);
                    return null;
                });
            case "extend":
                return Fn(name, a =>
                {
                    var items = Py.ToList(a.Bind(name, ["iterable"], [Undefined.Instance])[0]);
                    RenderBudget.CheckListLength((long)l.Count + items.Count);
                    l.AddRange(items);
                    return null;
                });
            case "index":
                return Fn(name, a =>
                {
                    var x = a.Bind(name, ["value"], [Undefined.Instance])[0];
                    int i = l.FindIndex(y => Py.Equal(x, y));
                    return i >= 0 ? (long)i : throw new JinjaRuntimeException($"{Py.Repr(x)} is not in list");
                });
            case "count":
                return Fn(name, a => { var x = a.Bind(name, ["value"], [Undefined.Instance])[0]; return (long)l.Count(y => Py.Equal(x, y)); });
            case "copy": return Fn(name, a => { a.NoArguments(name); return new List<object?>(l); });
        }
        return null;
    }

    private static PyCallable? TupleMethod(PyTuple t, string name)
    {
        switch (name)
        {
            case "index":
                return Fn(name, a =>
                {
                    var x = a.Bind(name, ["value"], [Undefined.Instance])[0];
                    int i = Array.FindIndex(t.Items, y => Py.Equal(x, y));
                    return i >= 0 ? (long)i : throw new JinjaRuntimeException("tuple.index(x): x not in tuple");
                });
            case "count":
                return Fn(name, a => { var x = a.Bind(name, ["value"], [Undefined.Instance])[0]; return (long)t.Items.Count(y => Py.Equal(x, y)); });
        }
        return null;
    }
}
