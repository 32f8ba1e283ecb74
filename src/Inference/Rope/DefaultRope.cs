using System.Text.Json.Nodes;

namespace PiServe.Inference.Rope;

/// <summary>Plain RoPE: θ_j = base^(-2j/d). Also what LongRoPE's n̂ prefix falls back to.</summary>
public sealed class DefaultRope : RopeScaling
{
    private readonly RopeFrequencies _frequencies;

    public DefaultRope(int rotaryDim, double ropeTheta) : base(rotaryDim, ropeTheta) =>
        _frequencies = new RopeFrequencies(DefaultInvFreq(ropeTheta, rotaryDim), 1.0, "default");

    public override string RopeType => "default";
    public override RopeFrequencies FrequenciesFor(int sequenceLength) => _frequencies;
    public override JsonObject Describe() => new() { ["rope_type"] = "default", ["rope_theta"] = RopeTheta };
}
