using System.Text.Json.Nodes;
using PiServe.Inference.Checkpoints;
using PiServe.Inference.Generation;
using PiServe.Inference.Model;
using PiServe.Inference.Rope;

namespace PiServe.Eval.Models;

/// <summary>
/// What the evaluation suites need from a model: its tokenizer, scoring of token windows, greedy or
/// sampled generation and rope resolution. <see cref="LlamaEvalModel"/> implements it over the
/// inference core; tests can substitute a fake.
/// </summary>
public interface IEvalModel
{
    string Id { get; }
    ModelConfig Config { get; }

    /// <summary>The rope scaling the model is served with (the checkpoint's, or its configured override).</summary>
    RopeScaling DefaultRope { get; }

    /// <summary>An override (replaces rope_scaling entirely) or null for <see cref="DefaultRope"/>. Throws <see cref="RopeScalingException"/>.</summary>
    RopeScaling ResolveRope(JsonObject? ropeScaling);

    /// <summary>The context window under a rope scaling (as /v1/models reports it).</summary>
    int ContextWindow(RopeScaling rope);

    /// <summary>The model's own tokenization, BOS included when the tokenizer adds it and <paramref name="addSpecialTokens"/>.</summary>
    int[] Encode(string text, bool addSpecialTokens = true);

    string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = true);

    /// <summary>
    /// True while interactive requests are running or waiting on this model's weights: evaluation
    /// work waits before each unit and each forward pass so completions keep priority.
    /// </summary>
    bool InteractiveBusy { get; }

    /// <summary>
    /// One forward pass over <paramref name="tokens"/> (all positions under the rope parameters in
    /// force for the whole window, as <see cref="Scoring.Score"/>); returns log p(tokens[i] | tokens[&lt;i])
    /// for i in [<paramref name="firstScored"/>, n), computing logits only for those positions.
    /// </summary>
    double[] ScoreWindow(ReadOnlySpan<int> tokens, int firstScored, RopeScaling rope, CancellationToken cancellation);

    /// <summary>
    /// Generates up to <paramref name="maxNewTokens"/> tokens after the prompt (exact KV-cache policy),
    /// greedy when the temperature is 0, stopping at an end-of-sequence token (not returned).
    /// </summary>
    int[] Generate(ReadOnlySpan<int> prompt, int maxNewTokens, SamplingParams sampling, RopeScaling rope, CancellationToken cancellation);

    /// <summary>
    /// One forward pass over <paramref name="tokens"/> from position 0 handing each layer's rotated
    /// queries and keys (all rows) to <paramref name="observer"/> (attention diagnostics).
    /// </summary>
    void ObserveQueryKeys(ReadOnlySpan<int> tokens, RopeScaling rope, ForwardScratch.QueryKeyObserver observer);
}

/// <summary>Looks up servable models for the job runner (the host implements it over its model registry).</summary>
public interface IEvalModelProvider
{
    /// <summary>The model, or null with the reason (unknown id, failed to load).</summary>
    IEvalModel? Find(string id, out string? error, out bool exists);

    /// <summary>Registers a new model id serving the same weights as <paramref name="baseModel"/> with a default rope override.</summary>
    void RegisterVariant(string baseModel, string id, JsonObject ropeScaling, int? contextWindow);
}
