using PiServe.Inference.Checkpoints;

namespace PiServe.Inference.Rope;

/// <summary>
/// The context window of a model under a rope scaling, derived as vLLM does: max_position_embeddings,
/// times the factor for linear and dynamic scaling; original_max_position_embeddings × factor for YaRN;
/// LongRoPE, Llama 3 and plain RoPE keep max_position_embeddings (their configs already state the
/// extended length). One rule for the host's limits and /v1/models and for the evaluation suites.
/// </summary>
public static class ContextWindow
{
    public static int For(ModelConfig config, RopeScaling rope)
    {
        int max = config.MaxPositionEmbeddings;
        var family = rope is UnscaledPrefixRope u ? u.Inner : rope;
        double window = family switch
        {
            LinearRopeScaling l => max * l.Factor,
            DynamicNtkRopeScaling d => max * d.Factor,
            YarnRopeScaling y => Math.Max(max, y.OriginalMaxPositionEmbeddings * y.Factor),
            _ => max,
        };
        return (int)Math.Min(int.MaxValue, Math.Round(window));
    }
}
