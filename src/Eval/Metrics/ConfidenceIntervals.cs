namespace PiServe.Eval.Metrics;

/// <summary>
/// The error bars evaluation results carry: a percentile bootstrap over documents for perplexity
/// (documents differ far more than tokens within one), and Wilson's score interval for success rates
/// (passkey trials), which stays inside [0, 1] and is sensible at 0 or all successes.
/// </summary>
public static class ConfidenceIntervals
{
    /// <summary>z for a two-sided 95% interval.</summary>
    public const double Z95 = 1.959963984540054;

    /// <summary>
    /// 95% percentile-bootstrap interval of corpus perplexity exp(Σnll / Σtokens) over documents resampled
    /// with replacement; deterministic for a seed. Null with fewer than two documents (no spread to resample).
    /// </summary>
    public static (double Low, double High)? BootstrapPerplexity(IReadOnlyList<(double NllSum, long Tokens)> documents, int resamples = 2000, int seed = 0)
    {
        int n = documents.Count;
        if (n < 2 || resamples < 10) return null;
        var rng = new Random(seed);
        var ppl = new double[resamples];
        for (int r = 0; r < resamples; r++)
        {
            double nll = 0;
            long tokens = 0;
            for (int i = 0; i < n; i++)
            {
                var d = documents[rng.Next(n)];
                nll += d.NllSum;
                tokens += d.Tokens;
            }
            ppl[r] = tokens > 0 ? Math.Exp(nll / tokens) : double.NaN;
        }
        Array.Sort(ppl);
        return (Quantile(ppl, 0.025), Quantile(ppl, 0.975));
    }

    /// <summary>Linear interpolation between order statistics (numpy's default, "linear").</summary>
    public static double Quantile(double[] sorted, double q)
    {
        double h = (sorted.Length - 1) * q;
        int lo = (int)Math.Floor(h);
        int hi = Math.Min(lo + 1, sorted.Length - 1);
        return sorted[lo] + (h - lo) * (sorted[hi] - sorted[lo]);
    }

    /// <summary>Wilson score interval for <paramref name="successes"/> of <paramref name="trials"/> at z (95% by default).</summary>
    public static (double Low, double High) Wilson(int successes, int trials, double z = Z95)
    {
        if (trials <= 0) return (0, 1);
        double p = (double)successes / trials, z2 = z * z;
        double centre = (p + z2 / (2 * trials)) / (1 + z2 / trials);
        double half = z * Math.Sqrt(p * (1 - p) / trials + z2 / (4.0 * trials * trials)) / (1 + z2 / trials);
        return (Math.Max(0, centre - half), Math.Min(1, centre + half));
    }
}
