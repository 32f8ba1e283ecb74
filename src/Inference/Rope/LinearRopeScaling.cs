using System.Text.Json.Nodes;

namespace PiServe.Inference.Rope;

/// <summary>
/// Position Interpolation (Chen et al. 2023): positions m → m/s. HF divides the inverse frequencies
/// by s instead, which is the same rotation.
/// </summary>
public sealed class LinearRopeScaling : RopeScaling
{
    private readonly RopeFrequencies _frequencies;

    public LinearRopeScaling(int rotaryDim, double ropeTheta, double factor, int? originalMaxPositionEmbeddings = null) : base(rotaryDim, ropeTheta)
    {
        Factor = factor;
        OriginalMaxPositionEmbeddings = originalMaxPositionEmbeddings;
        var inv = DefaultInvFreq(ropeTheta, rotaryDim);
        for (int i = 0; i < inv.Length; i++) inv[i] /= (float)factor;
        _frequencies = new RopeFrequencies(inv, 1.0, $"linear/{factor}");
    }

    public double Factor { get; }
    /// <summary>
    /// The pre-interpolation length L when rope_scaling states it. It does not change the rotation (HF
    /// ignores it too); it tells the context window apart: with it, max_position_embeddings may already
    /// be the extended length L' (see <see cref="ContextWindow"/>).
    /// </summary>
    public int? OriginalMaxPositionEmbeddings { get; }
    public override string RopeType => "linear";
    public override RopeFrequencies FrequenciesFor(int sequenceLength) => _frequencies;
    public override JsonObject Describe()
    {
        var json = new JsonObject { ["rope_type"] = "linear", ["factor"] = Factor, ["rope_theta"] = RopeTheta };
        if (OriginalMaxPositionEmbeddings is { } o) json["original_max_position_embeddings"] = o;
        return json;
    }
}
