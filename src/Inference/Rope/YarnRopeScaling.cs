using System.Text.Json.Nodes;

namespace PiServe.Inference.Rope;

/// <summary>
/// YaRN (Peng et al. 2023): per-dimension ramp between interpolation (low frequencies, divided by s)
/// and extrapolation (high frequencies, untouched), between the dimensions that rotate beta_slow and
/// beta_fast times over the original context; cos/sin scaled by 0.1·ln(s)+1 (or the mscale ratio).
/// </summary>
public sealed class YarnRopeScaling : RopeScaling
{
    private readonly RopeFrequencies _frequencies;

    public YarnRopeScaling(int rotaryDim, double ropeTheta, double factor, int originalMaxPositionEmbeddings,
        double? attentionFactor, double betaFast, double betaSlow, double? mscale, double? mscaleAllDim, bool truncate)
        : base(rotaryDim, ropeTheta)
    {
        Factor = factor;
        OriginalMaxPositionEmbeddings = originalMaxPositionEmbeddings;
        BetaFast = betaFast;
        BetaSlow = betaSlow;
        AttentionFactor = attentionFactor
            ?? (mscale is { } m && m != 0 && mscaleAllDim is { } mAll && mAll != 0 ? GetMscale(factor, m) / GetMscale(factor, mAll) : GetMscale(factor));

        int d = rotaryDim;
        double low = CorrectionDim(betaFast, d, ropeTheta, originalMaxPositionEmbeddings);
        double high = CorrectionDim(betaSlow, d, ropeTheta, originalMaxPositionEmbeddings);
        if (truncate) { low = Math.Floor(low); high = Math.Ceiling(high); }
        low = Math.Max(low, 0);
        high = Math.Min(high, d - 1);
        if (low == high) high += 0.001; // HF: prevent a division by zero in the ramp

        var inv = new float[d / 2];
        for (int i = 0; i < inv.Length; i++)
        {
            float posFreq = Float32Pow(ropeTheta, (float)(2 * i) / d);
            float extrapolation = 1f / posFreq;
            float interpolation = 1f / ((float)factor * posFreq);
            float ramp = Math.Clamp((i - (float)low) / (float)(high - low), 0f, 1f);
            float extrapolationWeight = 1f - ramp;
            inv[i] = interpolation * (1f - extrapolationWeight) + extrapolation * extrapolationWeight;
        }
        _frequencies = new RopeFrequencies(inv, AttentionFactor, "yarn");
    }

    public double Factor { get; }
    public int OriginalMaxPositionEmbeddings { get; }
    public double AttentionFactor { get; }
    public double BetaFast { get; }
    public double BetaSlow { get; }
    public override string RopeType => "yarn";
    public override RopeFrequencies FrequenciesFor(int sequenceLength) => _frequencies;

    private static double GetMscale(double scale, double mscale = 1) => scale <= 1 ? 1.0 : 0.1 * mscale * Math.Log(scale) + 1.0;

    /// <summary>The dimension whose wavelength fits numRotations times into the original context.</summary>
    private static double CorrectionDim(double numRotations, int d, double theta, int originalContext) =>
        d * Math.Log(originalContext / (numRotations * 2 * Math.PI)) / (2 * Math.Log(theta));

    public override JsonObject Describe() => new()
    {
        ["rope_type"] = "yarn", ["factor"] = Factor, ["original_max_position_embeddings"] = OriginalMaxPositionEmbeddings,
        ["attention_factor"] = AttentionFactor, ["beta_fast"] = BetaFast, ["beta_slow"] = BetaSlow, ["rope_theta"] = RopeTheta,
    };
}
