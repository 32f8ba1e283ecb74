using System.Text.Json.Nodes;
using PiServe.Inference.Checkpoints;
using PiServe.Inference.Rope;

namespace PiServe.Inference.Tests.Checkpoints;

/// <summary>
/// The config.json files of published extended checkpoints (tests/fixtures/published-configs, sources
/// in its README) parse unmodified, and give the shape, the rope parameters and the context window
/// that vLLM derives for them (expected.json, computed from vLLM's _get_and_verify_max_len and HF's
/// rope initialisation, independently of this code).
/// </summary>
public sealed class PublishedConfigTests
{
    private static string Root => Path.Combine(RepoPaths.Fixtures, "published-configs");
    private static JsonObject Expected => JsonNode.Parse(File.ReadAllText(Path.Combine(Root, "expected.json")))!.AsObject();

    public static IEnumerable<object[]> Names() =>
        JsonNode.Parse(File.ReadAllText(Path.Combine(RepoPaths.Fixtures, "published-configs", "expected.json")))!.AsObject().Select(kv => new object[] { kv.Key });

    [Theory]
    [MemberData(nameof(Names))]
    public void ParsesUnmodifiedWithVllmsWindowAndHfsRope(string name)
    {
        var e = Expected[name]!;
        var config = ModelConfig.Load(Path.Combine(Root, name));
        var rope = RopeScalingFactory.Create(config, config.RopeScaling);
        var described = rope.Describe();

        Assert.Equal(e["model_type"]!.GetValue<string>(), config.ModelType);
        Assert.Equal(e["hidden_size"]!.GetValue<int>(), config.HiddenSize);
        Assert.Equal(e["num_hidden_layers"]!.GetValue<int>(), config.NumLayers);
        Assert.Equal(e["num_key_value_heads"]!.GetValue<int>(), config.NumKvHeads);
        Assert.Equal(e["head_dim"]!.GetValue<int>(), config.HeadDim);
        Assert.Equal(e["vocab_size"]!.GetValue<int>(), config.VocabSize);
        Assert.Equal(e["tie_word_embeddings"]!.GetValue<bool>(), config.TieWordEmbeddings);
        Assert.Equal(e["sliding_window"]?.GetValue<int>(), config.SlidingWindowFor(config.NumLayers - 1));
        Assert.Equal(e["rope_theta"]!.GetValue<double>(), config.RopeTheta);
        Assert.Equal(e["rope_type"]!.GetValue<string>(), rope.RopeType);
        Assert.Equal(e["max_model_len"]!.GetValue<int>(), ContextWindow.For(config, rope));
        if (e["original_max_position_embeddings"]?.GetValue<int>() is { } original)
            Assert.Equal(original, described["original_max_position_embeddings"]!.GetValue<int>());
        if (e["factor"]?.GetValue<double>() is { } factor)
            Assert.Equal(factor, described["factor"]!.GetValue<double>());
        if (e["attention_factor"]?.GetValue<double>() is { } attention)
            Assert.Equal(attention, described["attention_factor"]!.GetValue<double>(), 12);
        // Architecture traits that follow from model_type (HF's modeling files).
        Assert.Equal(config.ModelType == "qwen2", config.AttentionBias && !config.OutputBias);
        Assert.Equal(config.ModelType == "qwen3", config.QkNorm);
        Assert.Equal(config.ModelType == "phi3", config.FusedProjections);
    }

    [Fact]
    public void PhiThreesFactorListsAreTheLongRopeFamilysWithItsAttentionFactor()
    {
        var config = ModelConfig.Load(Path.Combine(Root, "phi-3-mini-128k-instruct-su"));
        var rope = Assert.IsType<LongRopeScaling>(RopeScalingFactory.Create(config, config.RopeScaling));
        Assert.Equal(48, rope.ShortFactor.Length);
        Assert.Equal(48, rope.LongFactor.Length);
        Assert.Equal(4096, rope.OriginalMaxPositionEmbeddings);
        Assert.Equal(32.0, rope.Scale);
        Assert.Equal(Math.Sqrt(1 + Math.Log(32) / Math.Log(4096)), rope.AttentionFactor, 12);
    }
}
