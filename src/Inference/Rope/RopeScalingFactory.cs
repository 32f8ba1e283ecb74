using System.Text.Json.Nodes;
using PiServe.Inference.Checkpoints;

namespace PiServe.Inference.Rope;

/// <summary>
/// The single dispatch from a rope_scaling object to a family, like transformers' ROPE_INIT_FUNCTIONS.
/// Used for the checkpoint's own config.json and for per-request overrides on a loaded model (an
/// override replaces rope_scaling entirely, as if config.json had said it).
/// </summary>
public static class RopeScalingFactory
{
    public static readonly string[] SupportedTypes = ["default", "linear", "dynamic", "yarn", "longrope", "llama3"];

    public static RopeScaling Create(ModelConfig config, JsonObject? ropeScaling)
    {
        int d = config.RotaryDim;
        double theta = config.RopeTheta;
        if (ropeScaling is null)
            return new DefaultRope(d, theta);

        // "type" is the old spelling; transformers copies it over rope_type when both are present.
        string ropeType = Str(ropeScaling, "type") ?? Str(ropeScaling, "rope_type")
            ?? throw new RopeScalingException("rope_type", "missing (one of: " + string.Join(", ", SupportedTypes) + ")");
        if (ropeType == "su") ropeType = "longrope"; // Phi-3's first name for it

        RopeScaling family = ropeType switch
        {
            "default" => new DefaultRope(d, theta),
            "linear" => new LinearRopeScaling(d, theta, Factor(ropeScaling), PositiveInt(ropeScaling, "original_max_position_embeddings")),
            "dynamic" => new DynamicNtkRopeScaling(d, theta, Factor(ropeScaling), config.MaxPositionEmbeddings),
            "yarn" => Yarn(config, ropeScaling),
            "longrope" => LongRope(config, ropeScaling),
            "llama3" => Llama3(config, ropeScaling),
            _ => throw new RopeScalingException(ropeScaling.ContainsKey("type") ? "type" : "rope_type",
                $"unknown rope type '{ropeType}' (supported: {string.Join(", ", SupportedTypes)})"),
        };

        int? nHat = NonNegativeInt(ropeScaling, "n_hat");
        return nHat is > 0 ? new UnscaledPrefixRope(family, nHat.Value) : family;
    }

    private static readonly Dictionary<string, string[]> KeysByType = new(StringComparer.Ordinal)
    {
        ["default"] = [],
        ["linear"] = ["factor", "original_max_position_embeddings"],
        ["dynamic"] = ["factor", "original_max_position_embeddings"],
        ["yarn"] = ["factor", "original_max_position_embeddings", "attention_factor", "beta_fast", "beta_slow", "mscale", "mscale_all_dim", "truncate"],
        ["longrope"] = ["short_factor", "long_factor", "original_max_position_embeddings", "attention_factor", "factor"],
        ["llama3"] = ["factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"],
    };

    /// <summary>
    /// Creates an override given by a caller (a request, a variant, configuration), refusing keys its
    /// family does not read: a misspelt "beta_fsat" would otherwise be silently ignored. A checkpoint's
    /// own config.json goes through <see cref="Create"/> and keeps transformers' tolerance of extra keys.
    /// </summary>
    public static RopeScaling CreateOverride(ModelConfig config, JsonObject ropeScaling)
    {
        var rope = Create(config, ropeScaling);
        string ropeType = Str(ropeScaling, "type") ?? Str(ropeScaling, "rope_type")!;
        if (ropeType == "su") ropeType = "longrope";
        var known = KeysByType[ropeType];
        foreach (var (key, _) in ropeScaling)
            if (key is not ("type" or "rope_type" or "n_hat") && !known.Contains(key))
                throw new RopeScalingException(key, $"unknown key for rope_type {ropeType} (known: {string.Join(", ", ["rope_type", .. known, "n_hat"])})");
        return rope;
    }

    private static YarnRopeScaling Yarn(ModelConfig config, JsonObject s)
    {
        double betaFast = PositiveNumber(s, "beta_fast") ?? 32, betaSlow = PositiveNumber(s, "beta_slow") ?? 1;
        // beta_fast counts the rotations of the dimension where extrapolation starts, beta_slow where
        // interpolation ends: reversed, the ramp runs backwards (transformers only warns).
        if (betaFast < betaSlow)
            throw new RopeScalingException("beta_fast", $"must be at least beta_slow ({betaFast} < {betaSlow})");
        return new YarnRopeScaling(config.RotaryDim, config.RopeTheta, Factor(s),
            PositiveInt(s, "original_max_position_embeddings") ?? config.MaxPositionEmbeddings,
            PositiveNumber(s, "attention_factor"), betaFast, betaSlow,
            Number(s, "mscale"), Number(s, "mscale_all_dim"), Bool(s, "truncate") ?? true);
    }

    private static LongRopeScaling LongRope(ModelConfig config, JsonObject s)
    {
        int half = config.RotaryDim / 2;
        float[] shortFactor = Factors(s, "short_factor", half);
        float[] longFactor = Factors(s, "long_factor", half);
        // Phi-3 writes original_max_position_embeddings at the top level of config.json, and HF reads
        // it from there first; newer configs put it inside rope_scaling. With neither, the model was
        // not extended: s comes from "factor" (or 1) and the long factors apply past max_position_embeddings.
        int? original = config.OriginalMaxPositionEmbeddings ?? PositiveInt(s, "original_max_position_embeddings");
        double scale = original is { } o ? (double)config.MaxPositionEmbeddings / o : PositiveNumber(s, "factor") ?? 1.0;
        return new LongRopeScaling(config.RotaryDim, config.RopeTheta, shortFactor, longFactor,
            original ?? config.MaxPositionEmbeddings, scale, PositiveNumber(s, "attention_factor"));
    }

    private static Llama3RopeScaling Llama3(ModelConfig config, JsonObject s)
    {
        double low = PositiveNumber(s, "low_freq_factor") ?? throw new RopeScalingException("low_freq_factor", "required for rope_type llama3");
        double high = PositiveNumber(s, "high_freq_factor") ?? throw new RopeScalingException("high_freq_factor", "required for rope_type llama3");
        if (high <= low)
            throw new RopeScalingException("high_freq_factor", $"must be greater than low_freq_factor ({high} <= {low})");
        int original = PositiveInt(s, "original_max_position_embeddings")
            ?? throw new RopeScalingException("original_max_position_embeddings", "required for rope_type llama3");
        return new Llama3RopeScaling(config.RotaryDim, config.RopeTheta, Factor(s), low, high, original);
    }

    /// <summary>
    /// The scaling factor: at least 1, as transformers' rope validation asks (a factor below 1 shrinks
    /// the context window, and 1e-30 would shrink it to nothing and be reported as a length problem).
    /// </summary>
    private static double Factor(JsonObject s)
    {
        double factor = PositiveNumber(s, "factor") ?? throw new RopeScalingException("factor", "required for this rope type");
        if (factor < 1) throw new RopeScalingException("factor", $"must be at least 1, got {factor}");
        if (factor > MaxFactor) throw new RopeScalingException("factor", $"must be at most {MaxFactor}, got {factor}");
        return factor;
    }

    /// <summary>Far beyond any published extension (LongRoPE's 2048k is a factor of 512 over 4k).</summary>
    public const double MaxFactor = 65536;

    private static float[] Factors(JsonObject s, string name, int expectedLength)
    {
        if (s[name] is not JsonArray a)
            throw new RopeScalingException(name, $"required: an array of {expectedLength} numbers (one per rotated dimension pair)");
        if (a.Count != expectedLength)
            throw new RopeScalingException(name, $"has {a.Count} entries, expected {expectedLength} (rotary dimensions / 2)");
        var f = new float[a.Count];
        for (int i = 0; i < a.Count; i++)
        {
            if (!JsonNumbers.TryGetDouble(a[i], out double x) || !(x > 0) || double.IsInfinity(x))
                throw new RopeScalingException($"{name}[{i}]", "must be a positive number");
            f[i] = (float)x;
        }
        return f;
    }

    private static string? Str(JsonObject s, string name) => s[name] switch
    {
        null => null,
        JsonValue v when v.TryGetValue(out string? str) => str,
        _ => throw new RopeScalingException(name, "must be a string"),
    };

    private static double? Number(JsonObject s, string name) => s[name] switch
    {
        null => null,
        JsonValue v when JsonNumbers.TryGetDouble(v, out double x) && double.IsFinite(x) => x,
        _ => throw new RopeScalingException(name, $"must be a number, got {s[name]!.ToJsonString()}"),
    };

    private static double? PositiveNumber(JsonObject s, string name)
    {
        double? x = Number(s, name);
        if (x is <= 0) throw new RopeScalingException(name, $"must be positive, got {x}");
        return x;
    }

    private static bool? Bool(JsonObject s, string name) => s[name] switch
    {
        null => null,
        JsonValue v when v.TryGetValue(out bool b) => b,
        _ => throw new RopeScalingException(name, "must be true or false"),
    };

    private static int? NonNegativeInt(JsonObject s, string name)
    {
        double? x = Number(s, name);
        if (x is null) return null;
        if (x < 0 || x != Math.Floor(x.Value) || x > int.MaxValue)
            throw new RopeScalingException(name, $"must be a non-negative integer, got {x}");
        return (int)x;
    }

    private static int? PositiveInt(JsonObject s, string name)
    {
        int? x = NonNegativeInt(s, name);
        if (x == 0) throw new RopeScalingException(name, "must be positive");
        return x;
    }
}
