using System.Text.Json.Nodes;
using PiServe.Inference.Checkpoints;
using PiServe.Inference.Rope;

namespace PiServe.Inference.Tests.Rope;

/// <summary>Properties of the families that follow from their definitions (the golden tests check values).</summary>
public class RopeScalingTests
{
    private static ModelConfig Config(JsonObject? ropeScaling = null, int maxPositions = 512, int? originalTop = null) => ModelConfig.Parse(new JsonObject
    {
        ["model_type"] = "llama", ["hidden_size"] = 64, ["intermediate_size"] = 128, ["num_hidden_layers"] = 1,
        ["num_attention_heads"] = 4, ["vocab_size"] = 32, ["max_position_embeddings"] = maxPositions,
        ["original_max_position_embeddings"] = originalTop, ["rope_scaling"] = ropeScaling,
    });

    private static RopeScaling Create(JsonObject? scaling, int maxPositions = 512, int? originalTop = null)
    {
        var c = Config(null, maxPositions, originalTop);
        return RopeScalingFactory.Create(c, scaling);
    }

    private static JsonArray Arr(params double[] v) => new(v.Select(x => (JsonNode)x).ToArray());

    [Fact]
    public void DefaultMatchesTheFormula()
    {
        var f = Create(null).FrequenciesFor(10);
        for (int i = 0; i < 8; i++)
            Assert.Equal(Math.Pow(10000, -2.0 * i / 16), f.InvFreq[i], 1e-6 * Math.Pow(10000, -2.0 * i / 16));
        Assert.Equal(1.0, f.AttentionFactor);
    }

    [Fact]
    public void LinearDividesEveryFrequencyByTheFactor()
    {
        var d = Create(null).FrequenciesFor(1).InvFreq;
        var l = Create(new JsonObject { ["rope_type"] = "linear", ["factor"] = 4.0 }).FrequenciesFor(1).InvFreq;
        for (int i = 0; i < d.Length; i++) Assert.Equal(d[i] / 4f, l[i]);
    }

    [Fact]
    public void DynamicNtkIsDefaultWithinLAndGrowsTheBasePastIt()
    {
        var rope = Create(new JsonObject { ["rope_type"] = "dynamic", ["factor"] = 2.0 }, maxPositions: 128);
        var within = rope.FrequenciesFor(128);
        Assert.True(within.SameAs(Create(null).FrequenciesFor(1)));
        var past = rope.FrequenciesFor(129);
        var further = rope.FrequenciesFor(130);
        Assert.False(past.SameAs(within));
        Assert.False(further.SameAs(past)); // a new regime at every step: exact rebuilds every step past L
        Assert.Equal(within.InvFreq[0], past.InvFreq[0]); // j = 0 always rotates at 1 rad/position
        Assert.True(past.InvFreq[7] < within.InvFreq[7]);
        double expectedBase = 10000 * Math.Pow(2.0 * 129 / 128 - 1, 16.0 / 14);
        Assert.Equal(1 / Math.Pow(expectedBase, 14.0 / 16), past.InvFreq[7], 1e-6 * past.InvFreq[7]);
    }

    [Fact]
    public void LongRopeSwitchesFactorsPastTheOriginalContextAndScalesAttention()
    {
        var scaling = new JsonObject
        {
            ["rope_type"] = "longrope", ["short_factor"] = Arr(1, 1, 1, 1, 1, 1, 1, 1), ["long_factor"] = Arr(1, 1, 2, 2, 4, 4, 8, 8),
        };
        var rope = (LongRopeScaling)Create(scaling, maxPositions: 512, originalTop: 128);
        Assert.Equal("short", rope.FrequenciesFor(128).Regime);
        Assert.Equal("long", rope.FrequenciesFor(129).Regime);
        Assert.Equal(Math.Sqrt(1 + Math.Log(4) / Math.Log(128)), rope.AttentionFactor, 12);
        Assert.Equal(rope.FrequenciesFor(1).InvFreq[6] / 8f, rope.FrequenciesFor(1000).InvFreq[6], 1e-9);

        // original inside rope_scaling works the same; an explicit attention_factor wins.
        scaling["original_max_position_embeddings"] = 256;
        scaling["attention_factor"] = 1.5;
        var inner = (LongRopeScaling)Create(scaling);
        Assert.Equal(256, inner.OriginalMaxPositionEmbeddings);
        Assert.Equal(1.5, inner.AttentionFactor);
    }

    [Fact]
    public void YarnDefaultsAttentionFactorAndLeavesHighFrequenciesAlone()
    {
        var rope = (YarnRopeScaling)Create(new JsonObject { ["rope_type"] = "yarn", ["factor"] = 4.0, ["original_max_position_embeddings"] = 128 });
        Assert.Equal(0.1 * Math.Log(4) + 1, rope.AttentionFactor, 12);
        var f = rope.FrequenciesFor(1).InvFreq;
        var d = Create(null).FrequenciesFor(1).InvFreq;
        Assert.Equal(d[0], f[0]);                  // fastest dimension: extrapolated (unchanged)
        Assert.Equal(d[7] / 4f, f[7], 1e-9);       // slowest dimension: interpolated by the factor
        var withMscale = (YarnRopeScaling)Create(new JsonObject
            { ["rope_type"] = "yarn", ["factor"] = 4.0, ["mscale"] = 1.0, ["mscale_all_dim"] = 0.5 });
        Assert.Equal((0.1 * Math.Log(4) + 1) / (0.05 * Math.Log(4) + 1), withMscale.AttentionFactor, 12);
    }

    [Fact]
    public void Llama3KeepsHighFrequenciesAndDividesLowOnes()
    {
        var rope = Create(new JsonObject
        {
            ["rope_type"] = "llama3", ["factor"] = 8.0, ["low_freq_factor"] = 1.0, ["high_freq_factor"] = 4.0, ["original_max_position_embeddings"] = 128,
        });
        var f = rope.FrequenciesFor(1).InvFreq;
        var d = Create(null).FrequenciesFor(1).InvFreq;
        Assert.Equal(d[0], f[0]);             // wavelength 6.3 < 32: kept
        Assert.Equal(d[7] / 8f, f[7]);        // wavelength 19869 > 128: divided
        Assert.True(f[2] < d[2] && f[2] > d[2] / 8f); // wavelength 62.8: smoothed between the two
    }

    [Fact]
    public void NHatKeepsTheFirstPositionsUnscaled()
    {
        var rope = Create(new JsonObject { ["rope_type"] = "linear", ["factor"] = 4.0, ["n_hat"] = 8 });
        var f = rope.FrequenciesFor(100);
        var d = Create(null).FrequenciesFor(1).InvFreq;
        Assert.Equal(d[3], f.InvFreqAt(7, 3));
        Assert.Equal(d[3] / 4f, f.InvFreqAt(8, 3));
        Assert.Equal(8, f.UnscaledPrefix);
        Assert.False(f.SameAs(Create(new JsonObject { ["rope_type"] = "linear", ["factor"] = 4.0 }).FrequenciesFor(100)));
    }

    [Fact]
    public void OverrideErrorsNameTheField()
    {
        Assert.Equal("factor", Assert.Throws<RopeScalingException>(() => Create(new JsonObject { ["rope_type"] = "linear", ["factor"] = -1.0 })).Field);
        Assert.Equal("rope_type", Assert.Throws<RopeScalingException>(() => Create(new JsonObject { ["factor"] = 2.0 })).Field);
        Assert.Equal("n_hat", Assert.Throws<RopeScalingException>(() => Create(new JsonObject { ["rope_type"] = "linear", ["factor"] = 2.0, ["n_hat"] = 1.5 })).Field);
        Assert.Equal("long_factor[2]", Assert.Throws<RopeScalingException>(() => Create(new JsonObject
        {
            ["rope_type"] = "longrope", ["short_factor"] = Arr(1, 1, 1, 1, 1, 1, 1, 1), ["long_factor"] = Arr(1, 1, 0, 1, 1, 1, 1, 1),
        })).Field);
        Assert.Equal("high_freq_factor", Assert.Throws<RopeScalingException>(() => Create(new JsonObject
        {
            ["rope_type"] = "llama3", ["factor"] = 8.0, ["low_freq_factor"] = 4.0, ["high_freq_factor"] = 1.0, ["original_max_position_embeddings"] = 128,
        })).Field);
    }
}
