using System.Numerics;
using System.Numerics.Tensors;
using System.Text.Json.Nodes;
using PiServe.Eval.Models;
using PiServe.Inference.Rope;

namespace PiServe.Eval.Diagnostics;

/// <summary>
/// Pre-softmax attention scores q_i·k_j/√head_dim of every layer and head over one text, reduced to the
/// maximum and mean |score| per bucket of relative distance i − j (PI §2, fig. 2). The queries and keys
/// come from the forward pass itself (<see cref="IEvalModel.ObserveQueryKeys"/>), after rotation.
/// </summary>
public static unsafe class AttentionScores
{
    public sealed record LayerStats(int Layer, double[] MaxAbs, double[] MeanAbs);

    public static List<LayerStats> Measure(IEvalModel model, int[] tokens, RopeScaling rope, int bucketSize, ISet<int>? layers,
        CancellationToken cancellation = default)
    {
        var c = model.Config;
        int n = tokens.Length, buckets = (n + bucketSize - 1) / bucketSize;
        int heads = c.NumHeads, kvHeads = c.NumKvHeads, hd = c.HeadDim, group = heads / kvHeads;
        float scale = 1f / MathF.Sqrt(hd);
        var result = new List<LayerStats>();
        model.ObserveQueryKeys(tokens, rope, (layer, q, k, rows) =>
        {
            cancellation.ThrowIfCancellationRequested();
            if (layers is not null && !layers.Contains(layer)) return;
            var max = new double[heads][];
            var sum = new double[heads][];
            nint qp = (nint)q, kp = (nint)k;
            Parallel.For(0, heads, h =>
            {
                var mx = new double[buckets];
                var sm = new double[buckets];
                int g = h / group;
                float* qs = (float*)qp, ks = (float*)kp;
                for (int i = 0; i < rows; i++)
                {
                    var qi = new ReadOnlySpan<float>(qs + ((long)i * heads + h) * hd, hd);
                    for (int j = 0; j <= i; j++)
                    {
                        double a = Math.Abs(TensorPrimitives.Dot(qi, new ReadOnlySpan<float>(ks + ((long)j * kvHeads + g) * hd, hd)) * scale);
                        int b = (i - j) / bucketSize;
                        if (a > mx[b]) mx[b] = a;
                        sm[b] += a;
                    }
                }
                max[h] = mx;
                sum[h] = sm;
            });
            // Pairs (i, j) per bucket over all heads, for the mean.
            var pairs = new double[buckets];
            for (int d = 0; d < rows; d++) pairs[d / bucketSize] += (rows - d) * (double)heads;
            var layerMax = new double[buckets];
            var layerMean = new double[buckets];
            for (int b = 0; b < buckets; b++)
            {
                for (int h = 0; h < heads; h++)
                {
                    layerMax[b] = Math.Max(layerMax[b], max[h][b]);
                    layerMean[b] += sum[h][b];
                }
                layerMean[b] = pairs[b] > 0 ? layerMean[b] / pairs[b] : 0;
            }
            result.Add(new LayerStats(layer, layerMax, layerMean));
        });
        return result;
    }
}

/// <summary>
/// The theoretical curves of PI §2.3 / appendix B for a head dimension d (rotated dims) and base c,
/// θ_j = c^(−2j/d), j &lt; d/2, for the attention score a(s) = Re Σ_j h_j e^{i s θ_j}:
/// extrapolation: |a(s)| ≤ (max_j |h_j − h_{j+1}|)·B(s), B(s) = Σ_{k=1}^{d/2} |Σ_{j&lt;k} e^{i s θ_j}| (RoFormer);
/// interpolation between integer positions s1 &lt; s &lt; s2 = s1 + 1 (Theorem 2.1):
/// |a(s) − a_linear(s)| ≤ d·(max_j |h_j|)·(s − s1)(s2 − s)/(8 ln c) ≤ d·max_j|h_j|/(32 ln c).
/// Both reported divided by d (per unit of the coefficient bound), as the paper compares them.
/// </summary>
public static class RopeBounds
{
    /// <summary>B(s)/d.</summary>
    public static double ExtrapolationBoundOverD(int d, double theta, double s)
    {
        int half = d / 2;
        Complex partial = Complex.Zero;
        double b = 0;
        for (int j = 0; j < half; j++)
        {
            double angle = s * Math.Pow(theta, -2.0 * j / d);
            partial += new Complex(Math.Cos(angle), Math.Sin(angle));
            b += partial.Magnitude;
        }
        return b / d;
    }

    /// <summary>(s − ⌊s⌋)(⌈s⌉ − s)/(8 ln c): Theorem 2.1's bound over d·max|h_j| at a fractional position s.</summary>
    public static double InterpolationBoundOverD(double theta, double s)
    {
        double frac = s - Math.Floor(s);
        return frac * (1 - frac) / (8 * Math.Log(theta));
    }

    /// <summary>The largest interpolation bound over d·max|h_j|: 1/(32 ln c) (at the midpoint between two integers).</summary>
    public static double MaxInterpolationBoundOverD(double theta) => 1 / (32 * Math.Log(theta));

    public static JsonObject Curves(int d, double theta, int maxDistance, int points)
    {
        var curve = new JsonArray();
        points = Math.Max(2, points);
        for (int i = 0; i < points; i++)
        {
            double s = (double)maxDistance * i / (points - 1);
            curve.Add(new JsonObject { ["s"] = s, ["extrapolation_bound_over_d"] = ExtrapolationBoundOverD(d, theta, s) });
        }
        return new JsonObject
        {
            ["rotary_dim"] = d,
            ["base"] = theta,
            ["interpolation_bound_over_d"] = MaxInterpolationBoundOverD(theta),
            ["extrapolation"] = curve,
        };
    }
}
