namespace PiServe.Inference.Chat.Jinja;

/// <summary>Jinja's tests: `x is defined`, `n is divisibleby 3`, ...</summary>
internal static class Tests
{
    private static readonly HashSet<string> Names =
    [
        "defined", "undefined", "none", "boolean", "false", "true", "integer", "float", "number", "string",
        "mapping", "iterable", "sequence", "callable", "even", "odd", "divisibleby", "eq", "equalto", "==",
        "ne", "!=", "lt", "lessthan", "<", "le", "<=", "gt", "greaterthan", ">", "ge", ">=", "in", "sameas",
        "lower", "upper", "escaped", "filter", "test",
    ];

    public static bool Exists(string name) => Names.Contains(name);

    private static object? Arg(string name, CallArgs args, string parameter)
    {
        var p = args.Bind(name, [parameter], [Undefined.Instance]);
        return p[0];
    }

    public static bool Apply(string name, object? v, CallArgs args)
    {
        switch (name)
        {
            case "defined": return v is not Undefined;
            case "undefined": return v is Undefined;
            case "none": return v is null;
            case "boolean": return v is bool;
            case "false": return v is false;
            case "true": return v is true;
            case "integer": return v is long;
            case "float": return v is double;
            case "number": return v is long or double or bool;
            case "string": return v is string;
            case "mapping": return v is PyDict;
            case "iterable": return v is string or List<object?> or PyTuple or PyDict or Undefined;
            case "sequence": return v is string or List<object?> or PyTuple or PyDict or Undefined;
            case "callable": return v is PyCallable;
            case "even": return Integer(v, name) % 2 == 0;
            case "odd": return Integer(v, name) % 2 != 0;
            case "divisibleby":
                {
                    long d = Integer(Arg(name, args, "num"), name);
                    if (d == 0) throw new JinjaRuntimeException("integer division or modulo by zero");
                    return Integer(v, name) % d == 0;
                }
            case "eq" or "equalto" or "==": return Py.Equal(v, Arg(name, args, "other"));
            case "ne" or "!=": return !Py.Equal(v, Arg(name, args, "other"));
            case "lt" or "lessthan" or "<": return Py.Compare(v, Arg(name, args, "other"), "<") < 0;
            case "le" or "<=": return Py.Compare(v, Arg(name, args, "other"), "<=") <= 0;
            case "gt" or "greaterthan" or ">": return Py.Compare(v, Arg(name, args, "other"), ">") > 0;
            case "ge" or ">=": return Py.Compare(v, Arg(name, args, "other"), ">=") >= 0;
            case "in": return Py.Contains(Arg(name, args, "seq"), v);
            case "sameas":
                {
                    var other = Arg(name, args, "other");
                    if (v is null || other is null) return v is null && other is null;
                    if (v is bool a && other is bool b) return a == b;
                    if (v is long or string && other is long or string) return Py.Equal(v, other) && v.GetType() == other.GetType();
                    return ReferenceEquals(v, other);
                }
            case "lower": return Py.Str(v) is var s && s.ToLowerInvariant() == s && s.Any(char.IsLower);
            case "upper": return Py.Str(v) is var u && u.ToUpperInvariant() == u && u.Any(char.IsUpper);
            case "escaped": return false;
            case "filter": return Arg(name, args, "value") is string f && Filters.Exists(f);
            case "test": return Arg(name, args, "value") is string t && Exists(t);
        }
        throw new JinjaRuntimeException($"no test named '{name}'");
    }

    private static long Integer(object? v, string test) => v switch
    {
        long or bool => Py.ToLong(v),
        double d when Math.Floor(d) == d => (long)d,
        Undefined u => throw Py.UndefinedError(u),
        _ => throw new JinjaRuntimeException($"the '{test}' test needs an integer, got '{Py.TypeName(v)}'"),
    };
}
