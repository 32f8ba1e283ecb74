namespace PiServe.Inference.Rope;

/// <summary>
/// cos/sin rows for a run of positions under one set of frequencies. Angles m·θ_i and their cos/sin
/// are computed in double: float32 angles (HF's) drift by ~1e-3 in the logits near position 1000,
/// and the table costs O(positions·d) once per forward, nothing next to the matmuls.
/// </summary>
public static unsafe class RopeTable
{
    /// <summary>Writes [count, rotaryDim/2] rows for positions startPos.. into cos and sin.</summary>
    public static void Fill(RopeFrequencies f, int startPos, int count, float* cos, float* sin)
    {
        int half = f.InvFreq.Length;
        double af = f.AttentionFactor;
        for (int t = 0; t < count; t++)
        {
            int m = startPos + t;
            float[] inv = m < f.UnscaledPrefix ? f.UnscaledInvFreq! : f.InvFreq;
            for (int i = 0; i < half; i++)
            {
                double angle = (double)m * inv[i];
                (double s, double c) = Math.SinCos(angle);
                cos[(long)t * half + i] = (float)(c * af);
                sin[(long)t * half + i] = (float)(s * af);
            }
        }
    }
}
