using System.Text.Json.Nodes;

namespace PiServe.Inference.Rope;

/// <summary>
/// Llama 3.1 rope: wavelengths shorter than original/high_freq_factor are kept, longer than
/// original/low_freq_factor are divided by the factor, and the band between is interpolated smoothly.
/// </summary>
public sealed class Llama3RopeScaling : RopeScaling
{
    private readonly RopeFrequencies _frequencies;

    public Llama3RopeScaling(int rotaryDim, double ropeTheta, double factor, double lowFreqFactor, double highFreqFactor,
        int originalMaxPositionEmbeddings) : base(rotaryDim, ropeTheta)
    {
        Factor = factor;
        LowFreqFactor = lowFreqFactor;
        HighFreqFactor = highFreqFactor;
        OriginalMaxPositionEmbeddings = originalMaxPositionEmbeddings;

        float f = (float)factor, low = (float)lowFreqFactor, high = (float)highFreqFactor, old = originalMaxPositionEmbeddings;
        float lowFreqWavelen = old / low, highFreqWavelen = old / high;
        var inv = DefaultInvFreq(ropeTheta, rotaryDim);
        for (int i = 0; i < inv.Length; i++)
        {
            float wavelen = 2f * MathF.PI / inv[i];
            if (wavelen > lowFreqWavelen)
                inv[i] /= f;
            else if (wavelen >= highFreqWavelen)
            {
                float smooth = (old / wavelen - low) / (high - low);
                inv[i] = (1 - smooth) * inv[i] / f + smooth * inv[i];
            }
        }
        _frequencies = new RopeFrequencies(inv, 1.0, "llama3");
    }

    public double Factor { get; }
    public double LowFreqFactor { get; }
    public double HighFreqFactor { get; }
    public int OriginalMaxPositionEmbeddings { get; }
    public override string RopeType => "llama3";
    public override RopeFrequencies FrequenciesFor(int sequenceLength) => _frequencies;

    public override JsonObject Describe() => new()
    {
        ["rope_type"] = "llama3", ["factor"] = Factor, ["low_freq_factor"] = LowFreqFactor, ["high_freq_factor"] = HighFreqFactor,
        ["original_max_position_embeddings"] = OriginalMaxPositionEmbeddings, ["rope_theta"] = RopeTheta,
    };
}
