using System.Collections;

namespace PiServe.Inference.Chat.Jinja;

// The interpreter's values are plain objects with Python meanings:
//   null          None
//   Undefined     Jinja's Undefined (a missing variable, key or attribute)
//   bool          bool
//   long          int
//   double        float
//   string        str
//   List<object?> list
//   PyTuple       tuple
//   PyDict        dict (insertion-ordered)
//   Namespace     the object namespace() returns
//   PyCallable    a global function, a bound method or a macro
//   LoopContext   the `loop` variable of a for loop

/// <summary>Jinja's default Undefined: renders as "", is falsy and iterates as empty.</summary>
internal sealed class Undefined
{
    public static readonly Undefined Instance = new(null);

    /// <summary>What was looked up, for error messages ("'x' is undefined").</summary>
    public string? Hint { get; }

    private Undefined(string? hint) => Hint = hint;

    public static Undefined Named(string name) => new($"'{name}' is undefined");
    public static Undefined Missing(object? owner, object? key) =>
        new($"{Py.TypeName(owner)} object has no attribute or key {Py.Repr(key)}");

    public string Message => Hint ?? "value is undefined";
    public override string ToString() => "";
}

/// <summary>Python tuple: immutable and printed with parentheses.</summary>
internal sealed class PyTuple(object?[] items) : IReadOnlyList<object?>
{
    public object?[] Items { get; } = items;
    public int Count => Items.Length;
    public object? this[int index] => Items[index];
    public IEnumerator<object?> GetEnumerator() => ((IEnumerable<object?>)Items).GetEnumerator();
    IEnumerator IEnumerable.GetEnumerator() => Items.GetEnumerator();
}

/// <summary>Python dict: keys compared with Python equality, insertion order kept.</summary>
internal sealed class PyDict : IEnumerable<KeyValuePair<object?, object?>>
{
    private sealed class NoneKey { public static readonly NoneKey Instance = new(); }

    private readonly OrderedDictionary<object, object?> _items = new(PyKeyComparer.Instance);

    public int Count => _items.Count;

    private static object Wrap(object? key) => key ?? NoneKey.Instance;
    private static object? Unwrap(object key) => key is NoneKey ? null : key;

    public object? this[object? key]
    {
        set
        {
            Py.CheckHashable(key);
            _items[Wrap(key)] = value;
        }
    }

    public bool TryGetValue(object? key, out object? value)
    {
        if (!Py.IsHashable(key)) { value = null; return false; }
        return _items.TryGetValue(Wrap(key), out value);
    }

    public bool ContainsKey(object? key) => Py.IsHashable(key) && _items.ContainsKey(Wrap(key));

    public IEnumerable<object?> Keys => _items.Keys.Select(Unwrap);
    public IEnumerable<object?> Values => _items.Values;

    public IEnumerator<KeyValuePair<object?, object?>> GetEnumerator()
    {
        foreach (var kv in _items) yield return new KeyValuePair<object?, object?>(Unwrap(kv.Key), kv.Value);
    }

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
}

/// <summary>Dictionary keys with Python's hashing: 1, 1.0 and True are the same key.</summary>
internal sealed class PyKeyComparer : IEqualityComparer<object>
{
    public static readonly PyKeyComparer Instance = new();
    public new bool Equals(object? x, object? y) => Py.Equal(x, y);
    public int GetHashCode(object obj) => Py.Hash(obj);
}

/// <summary>The mutable attribute bag that namespace() returns.</summary>
internal sealed class Namespace
{
    public PyDict Attributes { get; } = new();
}

/// <summary>Arguments of a call: positional ones, then name=value ones in source order.</summary>
internal sealed class CallArgs(List<object?> positional, List<KeyValuePair<string, object?>> named)
{
    public static readonly CallArgs Empty = new([], []);

    public List<object?> Positional { get; } = positional;
    public List<KeyValuePair<string, object?>> Named { get; } = named;

    /// <summary>
    /// Binds the arguments to Python-style parameters: each is taken by position or by name.
    /// Missing ones get <paramref name="defaults"/> (Undefined.Instance there marks "required").
    /// </summary>
    public object?[] Bind(string function, string[] parameters, object?[] defaults)
    {
        if (Positional.Count > parameters.Length)
            throw new JinjaRuntimeException($"{function}() takes at most {parameters.Length} positional argument(s) ({Positional.Count} given)");
        var values = new object?[parameters.Length];
        var set = new bool[parameters.Length];
        for (int i = 0; i < Positional.Count; i++) { values[i] = Positional[i]; set[i] = true; }
        foreach (var (name, value) in Named)
        {
            int i = Array.IndexOf(parameters, name);
            if (i < 0) throw new JinjaRuntimeException($"{function}() got an unexpected keyword argument '{name}'");
            if (set[i]) throw new JinjaRuntimeException($"{function}() got multiple values for argument '{name}'");
            values[i] = value;
            set[i] = true;
        }
        for (int i = 0; i < parameters.Length; i++)
        {
            if (set[i]) continue;
            if (ReferenceEquals(defaults[i], Undefined.Instance))
                throw new JinjaRuntimeException($"{function}() missing required argument '{parameters[i]}'");
            values[i] = defaults[i];
        }
        return values;
    }

    public void NoArguments(string function)
    {
        if (Positional.Count > 0 || Named.Count > 0)
            throw new JinjaRuntimeException($"{function}() takes no arguments");
    }
}

/// <summary>Something a template can call: a global, a bound method or a macro.</summary>
internal sealed class PyCallable(string name, Func<CallArgs, object?> invoke)
{
    public string Name { get; } = name;
    public object? Invoke(CallArgs args) => invoke(args);
}

/// <summary>The `loop` variable inside a for loop.</summary>
internal sealed class LoopContext(IReadOnlyList<object?> items, int depth0)
{
    public int Index0 { get; set; }
    public IReadOnlyList<object?> Items { get; } = items;
    public int Depth0 { get; } = depth0;

    public object? Get(string name) => name switch
    {
        "index" => (long)(Index0 + 1),
        "index0" => (long)Index0,
        "revindex" => (long)(Items.Count - Index0),
        "revindex0" => (long)(Items.Count - Index0 - 1),
        "first" => Index0 == 0,
        "last" => Index0 == Items.Count - 1,
        "length" => (long)Items.Count,
        "depth" => (long)(Depth0 + 1),
        "depth0" => (long)Depth0,
        "previtem" => Index0 > 0 ? Items[Index0 - 1] : Undefined.Named("loop.previtem"),
        "nextitem" => Index0 + 1 < Items.Count ? Items[Index0 + 1] : Undefined.Named("loop.nextitem"),
        "cycle" => new PyCallable("loop.cycle", args =>
        {
            if (args.Positional.Count == 0) throw new JinjaRuntimeException("no items for cycling given");
            return args.Positional[Index0 % args.Positional.Count];
        }),
        _ => Undefined.Missing(this, name),
    };
}
