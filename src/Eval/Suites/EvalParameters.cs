using System.Text.Json;
using System.Text.Json.Nodes;

namespace PiServe.Eval.Suites;

/// <summary>A bad job request: the status the API answers with, and the parameter at fault ("parameters.windows").</summary>
public sealed class EvalRequestException(int status, string message, string? param = null) : Exception(message)
{
    public int Status { get; } = status;
    public string? Param { get; } = param;

    public static EvalRequestException Bad(string param, string message) => new(400, message, param);
}

/// <summary>
/// Bounds on what one job may ask for, so that a request cannot queue days of work or lengths no
/// machine can hold. Lengths (perplexity windows, passkey lengths, GovReport inputs) stay inside the
/// model's context window unless the request sets "beyond_window": true — measuring past the window
/// is the point of the extrapolation experiments — and then up to <see cref="MaxLength"/>.
/// </summary>
public static class EvalLimits
{
    /// <summary>Entries in one grid list (windows, lengths, n̂ candidates).</summary>
    public const int MaxGridEntries = 64;
    /// <summary>
    /// The longest sequence any job may process: 128k tokens, the windows of Phi-3-128k, Qwen2.5 with
    /// YaRN and Llama 3.1 (LongRoPE's 2048k runs would need this raised, and a machine far beyond 24 GB).
    /// </summary>
    public const int MaxLength = 1 << 17;
    /// <summary>Units (windows × documents, trials, candidates) of one job.</summary>
    public const int MaxUnits = 100_000;
}

/// <summary>
/// Reads a job's "parameters" object: typed values with defaults and ranges, and a normalized copy
/// (every parameter with its value in force) that the job stores and reports. Unknown names are refused
/// so a typo does not silently run with a default.
/// </summary>
public sealed class EvalParameters
{
    private readonly JsonObject _input;
    private readonly HashSet<string> _known = new(StringComparer.Ordinal);

    public EvalParameters(JsonObject? input)
    {
        _input = input ?? new JsonObject();
    }

    /// <summary>The parameters with defaults filled in, in the order they were read.</summary>
    public JsonObject Normalized { get; } = new();

    public static string P(string name) => "parameters." + name;

    /// <summary>Refuses names no suite read.</summary>
    public void RejectUnknown(string kind)
    {
        foreach (var (name, _) in _input)
            if (!_known.Contains(name))
                throw EvalRequestException.Bad(P(name), $"unknown parameter '{name}' for kind {kind} (known: {string.Join(", ", _known.Order(StringComparer.Ordinal))})");
    }

    public bool Has(string name) => _input[name] is not null;

    private JsonNode? Raw(string name)
    {
        _known.Add(name);
        return _input[name];
    }

    public int Int(string name, int @default, int min = int.MinValue, int max = int.MaxValue)
    {
        int v = Raw(name) is { } node ? AsInt(node, name, min, max) : @default;
        Normalized[name] = v;
        return v;
    }

    public int? OptionalInt(string name, int min = int.MinValue, int max = int.MaxValue)
    {
        int? v = Raw(name) is { } node ? AsInt(node, name, min, max) : null;
        Normalized[name] = v;
        return v;
    }

    public double Double(string name, double @default, double min = double.MinValue, double max = double.MaxValue)
    {
        double v = Raw(name) is { } node ? AsDouble(node, name, min, max) : @default;
        Normalized[name] = v;
        return v;
    }

    public double? OptionalDouble(string name, double min = double.MinValue, double max = double.MaxValue)
    {
        double? v = Raw(name) is { } node ? AsDouble(node, name, min, max) : null;
        Normalized[name] = v;
        return v;
    }

    public bool Bool(string name, bool @default)
    {
        bool v = @default;
        if (Raw(name) is { } node)
        {
            if (node is not JsonValue jv || !jv.TryGetValue(out v))
                throw EvalRequestException.Bad(P(name), $"'{name}' must be true or false, got {node.ToJsonString()}");
        }
        Normalized[name] = v;
        return v;
    }

    public string? OptionalString(string name)
    {
        string? v = null;
        if (Raw(name) is { } node && (node is not JsonValue jv || !jv.TryGetValue(out v)))
            throw EvalRequestException.Bad(P(name), $"'{name}' must be a string, got {node.ToJsonString()}");
        Normalized[name] = v;
        return v;
    }

    /// <summary>One of <paramref name="allowed"/> (a string), <paramref name="default"/> when absent.</summary>
    public string String(string name, string @default, string[] allowed)
    {
        string v = OptionalString(name) ?? @default;
        if (!allowed.Contains(v))
            throw EvalRequestException.Bad(P(name), $"'{name}' must be one of {string.Join(", ", allowed.Select(a => $"\"{a}\""))}, got \"{v}\"");
        Normalized[name] = v;
        return v;
    }

    /// <summary>A non-empty list of numbers, each in [min, max], or null when absent.</summary>
    public double[]? OptionalDoubleList(string name, double min, double max)
    {
        var node = Raw(name);
        if (node is null)
        {
            Normalized[name] = null;
            return null;
        }
        if (node is not JsonArray { Count: > 0 } a || a.Count > 1 << 16)
            throw EvalRequestException.Bad(P(name), $"'{name}' must be a non-empty list of numbers");
        var v = a.Select((x, i) => x is null ? throw EvalRequestException.Bad(P(name), $"'{name}[{i}]' must be a number")
            : AsDouble(x, $"{name}[{i}]", min, max, P(name))).ToArray();
        Normalized[name] = new JsonArray(v.Select(x => (JsonNode)x).ToArray());
        return v;
    }

    /// <summary>A list of integers; a single integer is accepted as a one-element list.</summary>
    public int[]? OptionalIntList(string name, int min = int.MinValue, int max = int.MaxValue, bool distinctSorted = false)
    {
        var node = Raw(name);
        int[]? v = node switch
        {
            null => null,
            JsonArray a when a.Count > 0 => a.Select((x, i) => x is null
                ? throw EvalRequestException.Bad(P(name), $"'{name}[{i}]' must be an integer")
                : AsInt(x, $"{name}[{i}]", min, max, P(name))).ToArray(),
            JsonArray => throw EvalRequestException.Bad(P(name), $"'{name}' must not be empty"),
            JsonValue => [AsInt(node, name, min, max)],
            _ => throw EvalRequestException.Bad(P(name), $"'{name}' must be an integer or a list of integers"),
        };
        if (v is not null && distinctSorted) v = v.Distinct().Order().ToArray();
        Normalized[name] = v is null ? null : new JsonArray(v.Select(x => (JsonNode)x).ToArray());
        return v;
    }

    /// <summary>
    /// A list of sequence lengths (at most <see cref="EvalLimits.MaxGridEntries"/>), each at least
    /// <paramref name="min"/> and inside the context window <paramref name="window"/>, or inside
    /// <see cref="EvalLimits.MaxLength"/> when the request sets "beyond_window".
    /// </summary>
    public int[]? OptionalLengthList(string name, int min, int window)
    {
        bool beyond = BeyondWindow();
        var v = OptionalIntList(name, min, int.MaxValue, distinctSorted: true);
        if (v is null) return null;
        if (v.Length > EvalLimits.MaxGridEntries)
            throw EvalRequestException.Bad(P(name), $"'{name}' has {v.Length} distinct entries, at most {EvalLimits.MaxGridEntries} are allowed per job");
        foreach (int length in v) CheckLength(name, length, window, beyond);
        return v;
    }

    /// <summary>One sequence length, bounded as <see cref="OptionalLengthList"/> bounds each entry.</summary>
    public int? OptionalLength(string name, int min, int window)
    {
        bool beyond = BeyondWindow();
        int? v = OptionalInt(name, min);
        if (v is { } length) CheckLength(name, length, window, beyond);
        return v;
    }

    /// <summary>"beyond_window": true lets lengths exceed the model's context window, up to <see cref="EvalLimits.MaxLength"/>.</summary>
    public bool BeyondWindow() => Bool("beyond_window", false);

    private static void CheckLength(string name, int length, int window, bool beyond)
    {
        if (beyond && length > EvalLimits.MaxLength)
            throw EvalRequestException.Bad(P(name), $"'{name}' {length} is longer than the {EvalLimits.MaxLength} tokens any job may process");
        if (!beyond && length > window)
            throw EvalRequestException.Bad(P(name),
                $"'{name}' {length} exceeds the model's context window ({window} tokens); set \"beyond_window\": true to measure past it (up to {EvalLimits.MaxLength})");
    }

    /// <summary>Refuses a job whose unit count (a product of grid sizes) exceeds <see cref="EvalLimits.MaxUnits"/>.</summary>
    public static void CheckUnits(string name, long units, string what)
    {
        if (units > EvalLimits.MaxUnits)
            throw EvalRequestException.Bad(P(name), $"{what} make {units} units of work, more than the {EvalLimits.MaxUnits} one job may run");
    }

    /// <summary>Reads an arbitrary JSON value (copied into the normalized parameters as given).</summary>
    public JsonNode? RawValue(string name)
    {
        var node = Raw(name);
        Normalized[name] = node?.DeepClone();
        return node;
    }

    /// <summary>Records a value derived from others (e.g. a default that depends on the model) in the normalized parameters.</summary>
    public void Set(string name, JsonNode? value) => Normalized[name] = value;

    private static int AsInt(JsonNode node, string name, int min, int max, string? param = null)
    {
        if (TryNumber(node, out double d) && d == Math.Floor(d) && d >= int.MinValue && d <= int.MaxValue)
        {
            int i = (int)d;
            if (i < min || i > max)
                throw EvalRequestException.Bad(param ?? P(name), $"'{name}' must be {Range(min, max)}, got {i}");
            return i;
        }
        if (TryNumber(node, out double big) && big == Math.Floor(big) && double.IsFinite(big))
            throw EvalRequestException.Bad(param ?? P(name), $"'{name}' must be {Range(min, max)}, got {node.ToJsonString()}, which is out of range");
        throw EvalRequestException.Bad(param ?? P(name), $"'{name}' must be an integer, got {node.ToJsonString()}");
    }

    private static double AsDouble(JsonNode node, string name, double min, double max, string? param = null)
    {
        if (TryNumber(node, out double d) && double.IsFinite(d))
        {
            if (d < min || d > max)
                throw EvalRequestException.Bad(param ?? P(name), $"'{name}' must be {Range(min, max)}, got {d}");
            return d;
        }
        throw EvalRequestException.Bad(param ?? P(name), $"'{name}' must be a number, got {node.ToJsonString()}");
    }

    /// <summary>A JSON number whatever backs the node: parsed text, or an int/long/double put there by code
    /// (TryGetValue&lt;double&gt; fails on a node created from an int, as normalized parameters are).</summary>
    public static bool TryNumber(JsonNode? node, out double value)
    {
        value = 0;
        if (node is not JsonValue v || v.GetValueKind() != JsonValueKind.Number) return false;
        if (v.TryGetValue(out double d)) { value = d; return true; }
        return double.TryParse(v.ToJsonString(), System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out value);
    }

    private static string Range(double min, double max) =>
        (min > double.MinValue / 2 && min > int.MinValue, max < double.MaxValue / 2 && max < int.MaxValue) switch
        {
            (true, true) => $"between {min} and {max}",
            (true, false) => $"at least {min}",
            (false, true) => $"at most {max}",
            _ => "a number",
        };
}
