using PiServe.Inference.Checkpoints;

namespace PiServe.Inference.Rope;

/// <summary>
/// The context window of a model under a rope scaling, derived as vLLM does: max_position_embeddings,
/// times the factor for linear and dynamic scaling; original_max_position_embeddings × factor for YaRN,
/// and for linear scaling when rope_scaling states original_max_position_embeddings (then
/// max_position_embeddings may already be the extended length, as in PI fine-tuned checkpoints:
/// max(max_position_embeddings, original × factor) counts it once, where vLLM would multiply twice);
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
            LinearRopeScaling { OriginalMaxPositionEmbeddings: { } o } l => Math.Max(max, o * l.Factor),
            LinearRopeScaling l => max * l.Factor,
            DynamicNtkRopeScaling d => max * d.Factor,
            YarnRopeScaling y => Math.Max(max, y.OriginalMaxPositionEmbeddings * y.Factor),
            _ => max,
        };
        return (int)Math.Min(int.MaxValue, Math.Round(window));
    }
}
