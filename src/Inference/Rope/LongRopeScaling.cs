using System.Text.Json.Nodes;

namespace PiServe.Inference.Rope;

/// <summary>
/// LongRoPE (Ding et al. 2024, as in Phi-3): searched per-dimension rescale factors λ_i, θ_i / λ_i;
/// the short factors while the sequence fits the original context, the long factors past it.
/// s = max_position_embeddings / original; cos/sin scaled by sqrt(1 + ln s / ln original) unless
/// attention_factor is given.
/// </summary>
public sealed class LongRopeScaling : RopeScaling
{
    private readonly RopeFrequencies _short;
    private readonly RopeFrequencies _long;

    public LongRopeScaling(int rotaryDim, double ropeTheta, float[] shortFactor, float[] longFactor,
        int originalMaxPositionEmbeddings, double scale, double? attentionFactor) : base(rotaryDim, ropeTheta)
    {
        ShortFactor = shortFactor;
        LongFactor = longFactor;
        OriginalMaxPositionEmbeddings = originalMaxPositionEmbeddings;
        Scale = scale;
        AttentionFactor = attentionFactor
            ?? (scale <= 1.0 ? 1.0 : Math.Sqrt(1 + Math.Log(scale) / Math.Log(originalMaxPositionEmbeddings)));
        _short = new RopeFrequencies(Rescaled(shortFactor), AttentionFactor, "short");
        _long = new RopeFrequencies(Rescaled(longFactor), AttentionFactor, "long");
    }

    public float[] ShortFactor { get; }
    public float[] LongFactor { get; }
    public int OriginalMaxPositionEmbeddings { get; }
    public double Scale { get; }
    public double AttentionFactor { get; }
    public override string RopeType => "longrope";
    public override bool DependsOnSequenceLength => true;

    public override RopeFrequencies FrequenciesFor(int sequenceLength) =>
        sequenceLength > OriginalMaxPositionEmbeddings ? _long : _short;

    private float[] Rescaled(float[] factors)
    {
        var inv = new float[RotaryDim / 2];
        for (int i = 0; i < inv.Length; i++)
            inv[i] = 1f / (factors[i] * Float32Pow(RopeTheta, (float)(2 * i) / RotaryDim));
        return inv;
    }

    public override JsonObject Describe() => new()
    {
        ["rope_type"] = "longrope",
        ["short_factor"] = new JsonArray(ShortFactor.Select(f => (JsonNode)(double)f).ToArray()),
        ["long_factor"] = new JsonArray(LongFactor.Select(f => (JsonNode)(double)f).ToArray()),
        ["original_max_position_embeddings"] = OriginalMaxPositionEmbeddings, ["factor"] = Scale,
        ["attention_factor"] = AttentionFactor, ["rope_theta"] = RopeTheta,
    };
}
