using PiServe.Inference.Cache;

namespace PiServe.Inference.Model;

/// <summary>
/// The seam between the sessions/scheduler and whatever runs the decoder: what they need and nothing
/// more — create a KV cache, run tokens of one or more sequences (segments at their positions under
/// their rope parameters) through the decoder into their caches, and turn final hidden rows into
/// logits on the host. <see cref="LlamaModel"/> is the facade every caller uses: its own forward pass
/// is the CPU engine; with a device engine attached (<see cref="LlamaModel.AttachEngine"/>, e.g.
/// <see cref="Gpu.IlgpuLlamaModel"/>) the three operations run there instead, the engine owning its
/// weights, KV caches and activations in device memory. Arguments are validated by the facade.
/// </summary>
public unsafe interface IForwardEngine : IDisposable
{
    /// <summary>"cpu", "cuda", "ilgpu-cpu".</summary>
    string Name { get; }

    /// <summary>An empty cache of the model's KV element type for about initialCapacity positions (device memory for a device engine).</summary>
    KvCache CreateCache(int initialCapacity);

    /// <summary>
    /// Runs the tokens (the segments' tokens back to back) through the decoder, appending each
    /// segment's keys and values to its cache and setting its length; leaves the final-normed hidden
    /// rows [tokens, hidden] in s.Hidden on the host (and, when s.Observer is set, hands it each
    /// layer's rotated queries and keys on the host).
    /// </summary>
    void Forward(ReadOnlySpan<int> tokens, ReadOnlySpan<LlamaModel.Segment> segments, ForwardScratch s);

    /// <summary>logits[t] = lm_head · hidden[t] for n host rows, written to host memory.</summary>
    void Logits(float* hidden, int n, float* logits);
}
