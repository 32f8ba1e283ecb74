using System.Text.Json.Nodes;

namespace PiServe.Inference.Rope;

/// <summary>
/// Dynamic NTK: past L = max_position_embeddings the base grows with the sequence,
/// base' = base·((s·n/L) − (s−1))^(d/(d−2)). HF uses max_position_embeddings here and ignores
/// original_max_position_embeddings; so do we. Every length past L is its own regime, which is why
/// the exact KV-cache policy re-prefills at every step past L.
/// </summary>
public sealed class DynamicNtkRopeScaling : RopeScaling
{
    private readonly RopeFrequencies _withinL;

    public DynamicNtkRopeScaling(int rotaryDim, double ropeTheta, double factor, int maxPositionEmbeddings) : base(rotaryDim, ropeTheta)
    {
        Factor = factor;
        MaxPositionEmbeddings = maxPositionEmbeddings;
        _withinL = new RopeFrequencies(DefaultInvFreq(ropeTheta, rotaryDim), 1.0, $"base={ropeTheta}");
    }

    public double Factor { get; }
    public int MaxPositionEmbeddings { get; }
    public override string RopeType => "dynamic";
    public override bool DependsOnSequenceLength => true;

    public override RopeFrequencies FrequenciesFor(int sequenceLength)
    {
        if (sequenceLength <= MaxPositionEmbeddings) return _withinL;
        int d = RotaryDim;
        double grownBase = RopeTheta * Math.Pow(Factor * sequenceLength / MaxPositionEmbeddings - (Factor - 1), (double)d / (d - 2));
        return new RopeFrequencies(DefaultInvFreq(grownBase, d), 1.0, $"base={grownBase:R}");
    }

    public override JsonObject Describe() => new()
    {
        ["rope_type"] = "dynamic", ["factor"] = Factor, ["max_position_embeddings"] = MaxPositionEmbeddings, ["rope_theta"] = RopeTheta,
    };
}
