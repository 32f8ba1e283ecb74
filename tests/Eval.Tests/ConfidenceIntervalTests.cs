using System.Text.Json.Nodes;
using PiServe.Eval.Metrics;

namespace PiServe.Eval.Tests;

/// <summary>The error bars of the evaluation results: Wilson intervals against statsmodels, the document bootstrap by its properties.</summary>
public sealed class ConfidenceIntervalTests
{
    [Fact]
    public void WilsonIntervalsEqualStatsmodels()
    {
        var fixture = JsonNode.Parse(File.ReadAllText(Path.Combine(RepoPaths.Fixtures, "stats", "wilson.json")))!;
        var cases = fixture["cases"]!.AsArray();
        Assert.True(cases.Count >= 30);
        foreach (var c in cases)
        {
            var (low, high) = ConfidenceIntervals.Wilson(c!["successes"]!.GetValue<int>(), c["trials"]!.GetValue<int>());
            Assert.Equal(c["low"]!.GetValue<double>(), low, 1e-12);
            Assert.Equal(c["high"]!.GetValue<double>(), high, 1e-12);
        }
    }

    [Fact]
    public void TheDocumentBootstrapIsDeterministicBracketsTheEstimateAndShrinksWithAgreement()
    {
        var docs = new List<(double, long)> { (3000, 1000), (3600, 1000), (2500, 900), (4100, 1100), (3300, 1000), (2900, 950) };
        double point = Math.Exp(docs.Sum(d => d.Item1) / docs.Sum(d => d.Item2));
        var ci = ConfidenceIntervals.BootstrapPerplexity(docs)!.Value;
        Assert.Equal(ci, ConfidenceIntervals.BootstrapPerplexity(docs)!.Value);
        Assert.True(ci.Low < point && point < ci.High, $"{ci} around {point}");
        Assert.NotEqual(ci, ConfidenceIntervals.BootstrapPerplexity(docs, seed: 1)!.Value);
        // Documents that agree give a narrower interval; identical ones none at all.
        var agreeing = docs.Select(d => (d.Item2 * 3.2, d.Item2)).ToList();
        var tight = ConfidenceIntervals.BootstrapPerplexity(agreeing)!.Value;
        Assert.Equal(Math.Exp(3.2), tight.Low, 1e-9);
        Assert.Equal(Math.Exp(3.2), tight.High, 1e-9);
        Assert.Null(ConfidenceIntervals.BootstrapPerplexity([(3000, 1000)]));
        // The percentile interval of exp(mean) is the exp of the log-perplexity's: wide where the documents spread.
        Assert.InRange(ci.High / ci.Low, 1.05, 2.0);
    }

    [Fact]
    public void QuantilesInterpolateAsNumpy()
    {
        double[] x = [1, 2, 3, 4];
        Assert.Equal(1.075, ConfidenceIntervals.Quantile(x, 0.025), 12); // numpy.quantile([1,2,3,4], 0.025)
        Assert.Equal(3.925, ConfidenceIntervals.Quantile(x, 0.975), 12);
        Assert.Equal(2.5, ConfidenceIntervals.Quantile(x, 0.5), 12);
    }
}
