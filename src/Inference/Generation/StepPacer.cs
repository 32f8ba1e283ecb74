namespace PiServe.Inference.Generation;

/// <summary>
/// Sizes the prompt chunk of a step that also decodes by time rather than by tokens (Sarathi-Serve's
/// latency budget): the streams decoding wait for the whole step, so its length is their inter-token
/// gap. The target is <see cref="SchedulerOptions.PrefillStepSlowdown"/> times a decode-only step (an
/// average over recent ones); the chunk follows it with a multiplicative controller on measured step
/// times (chunk × target / last step, at most halved or doubled per step), which tracks the cost of a
/// prompt token as it grows with the depth of the prompt's attention. A step's cost is
/// d + c·p (d: the streams' own work in it), so the chunk's fixed point is c = (target − d) / p.
/// Pacing only shortens steps: a chunk never exceeds the token rule's (<see cref="MaxTokens"/>, a
/// quarter of <see cref="SchedulerOptions.PrefillChunk"/>), so it bounds the steps that would run long
/// (a long prompt's chunks deep in its attention, where a fixed chunk's steps grow 1.5× from the first
/// to the last) and leaves a short newcomer's prefill as it was (growing those chunks to the target
/// lengthened every stream's gaps under a 16-stream load and cost 10% of its tokens/s). Until a
/// decode-only step has been seen, or with the slowdown at 0, there is no target and the token rule applies.
/// </summary>
public sealed class StepPacer(SchedulerOptions options)
{
    /// <summary>The fewest prompt tokens a paced step takes, so a long prompt always progresses.</summary>
    public const int MinTokens = 8;
    private const double Smoothing = 0.2;

    private double _decodeMs;
    private double _chunk = TokenRule(options);

    /// <summary>The most prompt tokens a paced step takes: the token rule's chunk.</summary>
    public int MaxTokens => TokenRule(options);

    /// <summary>A quarter of PrefillChunk (at least 16): the chunk of a step with streams decoding when steps are not paced.</summary>
    public static int TokenRule(SchedulerOptions options) => Math.Max(16, options.PrefillChunk / 4);

    /// <summary>The average decode-only step, in milliseconds (0 before the first).</summary>
    public double DecodeStepMilliseconds => _decodeMs;

    /// <summary>The target length of a step that decodes and prefills, or null when steps are not paced.</summary>
    public double? TargetMilliseconds => options.PrefillStepSlowdown > 0 && _decodeMs > 0 ? options.PrefillStepSlowdown * _decodeMs : null;

    /// <summary>Prompt tokens for the next step with streams decoding, or null for the token rule.</summary>
    public int? ChunkTokens => TargetMilliseconds is null ? null : (int)Math.Clamp(Math.Round(_chunk), MinTokens, MaxTokens);

    /// <summary>
    /// Records a finished step: <paramref name="decoded"/> tokens decoded and <paramref name="promptTokens"/>
    /// prefilled in <paramref name="milliseconds"/>; <paramref name="pacedChunk"/>: the <see cref="ChunkTokens"/>
    /// the step was given (null when it was not paced). A step that took less than its chunk (the
    /// prompts ran out) says nothing about the chunk's cost and is not used.
    /// </summary>
    public void Observe(int decoded, int promptTokens, int? pacedChunk, double milliseconds)
    {
        if (decoded == 0 || milliseconds <= 0) return;
        if (promptTokens == 0)
        {
            _decodeMs = _decodeMs == 0 ? milliseconds : (1 - Smoothing) * _decodeMs + Smoothing * milliseconds;
            return;
        }
        if (pacedChunk is not { } chunk || promptTokens < chunk || TargetMilliseconds is not { } target) return;
        double ratio = Math.Clamp(target / milliseconds, 0.5, 2.0);
        _chunk = Math.Clamp(chunk * ratio, MinTokens, MaxTokens);
    }
}
