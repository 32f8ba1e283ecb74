using System.Text.Json.Nodes;

namespace PiServe.Inference.Rope;

/// <summary>
/// Position Interpolation (Chen et al. 2023): positions m → m/s. HF divides the inverse frequencies
/// by s instead, which is the same rotation.
/// </summary>
public sealed class LinearRopeScaling : RopeScaling
{
    private readonly RopeFrequencies _frequencies;

    public LinearRopeScaling(int rotaryDim, double ropeTheta, double factor) : base(rotaryDim, ropeTheta)
    {
        Factor = factor;
        var inv = DefaultInvFreq(ropeTheta, rotaryDim);
        for (int i = 0; i < inv.Length; i++) inv[i] /= (float)factor;
        _frequencies = new RopeFrequencies(inv, 1.0, $"linear/{factor}");
    }

    public double Factor { get; }
    public override string RopeType => "linear";
    public override RopeFrequencies FrequenciesFor(int sequenceLength) => _frequencies;
    public override JsonObject Describe() => new() { ["rope_type"] = "linear", ["factor"] = Factor, ["rope_theta"] = RopeTheta };
}
