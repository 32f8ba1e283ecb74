using System.Text.Json.Nodes;

namespace PiServe.Inference.Rope;

/// <summary>
/// The rotary-embedding parameters in force for a sequence of a given length: one inverse
/// frequency per rotated pair, the attention factor that multiplies cos and sin, and (our LongRoPE
/// extension) a prefix of positions that keep the unscaled frequencies.
/// </summary>
public sealed class RopeFrequencies(float[] invFreq, double attentionFactor, string regime, float[]? unscaledInvFreq = null, int unscaledPrefix = 0)
{
    public float[] InvFreq { get; } = invFreq;
    public double AttentionFactor { get; } = attentionFactor;
    /// <summary>Readable name of the regime, e.g. "short", "long", "base=20000".</summary>
    public string Regime { get; } = regime;
    /// <summary>Frequencies for positions below <see cref="UnscaledPrefix"/> (LongRoPE's n̂).</summary>
    public float[]? UnscaledInvFreq { get; } = unscaledInvFreq;
    public int UnscaledPrefix { get; } = unscaledPrefix;

    /// <summary>True when both produce the same rotation at every position, so cached keys stay valid.</summary>
    public bool SameAs(RopeFrequencies other) =>
        ReferenceEquals(this, other) ||
        (AttentionFactor == other.AttentionFactor && UnscaledPrefix == other.UnscaledPrefix
         && InvFreq.AsSpan().SequenceEqual(other.InvFreq)
         && (UnscaledPrefix == 0 || UnscaledInvFreq!.AsSpan().SequenceEqual(other.UnscaledInvFreq)));

    /// <summary>The inverse frequency used at a position for pair i.</summary>
    public float InvFreqAt(int position, int i) => position < UnscaledPrefix ? UnscaledInvFreq![i] : InvFreq[i];
}

/// <summary>
/// One RoPE scaling family with Hugging Face's semantics (transformers' modeling_rope_utils: one
/// init function per rope_type). Frequencies are computed with float32 operations so they equal HF's
/// values bit for bit where possible; angles and their cos/sin are computed later in double precision
/// (<see cref="RopeTable"/>).
/// </summary>
public abstract class RopeScaling
{
    protected RopeScaling(int rotaryDim, double ropeTheta)
    {
        RotaryDim = rotaryDim;
        RopeTheta = ropeTheta;
    }

    public abstract string RopeType { get; }
    public int RotaryDim { get; }
    public double RopeTheta { get; }

    /// <summary>Dynamic NTK and LongRoPE change their parameters as the sequence grows.</summary>
    public virtual bool DependsOnSequenceLength => false;

    /// <summary>The parameters in force for a sequence whose length (last position + 1) is <paramref name="sequenceLength"/>.</summary>
    public abstract RopeFrequencies FrequenciesFor(int sequenceLength);

    /// <summary>The parameters, in rope_scaling's JSON spelling, for /v1/models and logs.</summary>
    public abstract JsonObject Describe();

    /// <summary>HF's default: inv_freq = 1 / base^(arange(0, d, 2) / d), in float32.</summary>
    public static float[] DefaultInvFreq(double theta, int rotaryDim)
    {
        var inv = new float[rotaryDim / 2];
        for (int i = 0; i < inv.Length; i++)
            inv[i] = 1f / Float32Pow(theta, (float)(2 * i) / rotaryDim);
        return inv;
    }

    /// <summary>
    /// torch's float32 pow(base, e): the base rounded to float32, the result correctly rounded. A
    /// double pow rounded once to float reproduces it; MathF.Pow may be off by an ulp.
    /// </summary>
    public static float Float32Pow(double theta, float exponent) => (float)Math.Pow((float)theta, exponent);
}
