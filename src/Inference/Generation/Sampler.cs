using System.Numerics.Tensors;

namespace PiServe.Inference.Generation;

/// <summary>Sampling parameters of one request (OpenAI / vLLM semantics).</summary>
public sealed record SamplingParams
{
    /// <summary>0 = greedy.</summary>
    public float Temperature { get; init; } = 1f;
    /// <summary>Nucleus: keep the smallest set of tokens whose probability reaches TopP (1 = off).</summary>
    public float TopP { get; init; } = 1f;
    /// <summary>Keep the K most likely tokens (0 or -1 = off).</summary>
    public int TopK { get; init; }
    /// <summary>Same seed, same prompt, same parameters → same tokens.</summary>
    public int? Seed { get; init; }
}

/// <summary>
/// Draws the next token from logits: temperature, top-k, then top-p, then a draw from a per-request
/// random stream (seeded when the request gives a seed). Buffers are reused: no allocation per token.
/// </summary>
public sealed class Sampler
{
    private readonly SamplingParams _p;
    private readonly Random _rng;
    private readonly float[] _probs;
    private readonly int[] _order;
    private readonly (int, (float, int))[] _heapItems;
    private readonly PriorityQueue<int, (float, int)> _heap;

    public Sampler(SamplingParams p, int vocabSize)
    {
        _p = p;
        _rng = p.Seed is { } seed ? new Random(seed) : new Random();
        _probs = new float[vocabSize];
        _order = new int[vocabSize];
        _heapItems = new (int, (float, int))[vocabSize];
        _heap = new PriorityQueue<int, (float, int)>(vocabSize);
    }

    public int Sample(ReadOnlySpan<float> logits)
    {
        if (_p.Temperature <= 0 || _p.TopK == 1) return GreedyGenerator.ArgMax(logits);

        var probs = _probs.AsSpan(0, logits.Length);
        TensorPrimitives.Divide(logits, _p.Temperature, probs);
        TensorPrimitives.SoftMax(probs, probs);

        int k = _p.TopK > 0 ? Math.Min(_p.TopK, logits.Length) : logits.Length;
        bool nucleus = _p.TopP < 1f;
        if (k == logits.Length && !nucleus)
            return Draw(probs, null, logits.Length);

        // Pop ids from a max-heap by probability (lower id first on ties) until top-k or top-p is
        // reached: O(V) to build, O(log V) per kept token, instead of sorting the vocabulary.
        _heap.Clear();
        for (int i = 0; i < probs.Length; i++) _heapItems[i] = (i, (-probs[i], i));
        _heap.EnqueueRange(new ArraySegment<(int, (float, int))>(_heapItems, 0, probs.Length));
        int keep = 0;
        double cumulative = 0;
        while (keep < k && _heap.Count > 0)
        {
            int id = _heap.Dequeue();
            _order[keep++] = id;
            cumulative += probs[id];
            if (nucleus && cumulative >= _p.TopP) break;
        }
        return Draw(probs, _order, keep);
    }

    private int Draw(ReadOnlySpan<float> probs, int[]? candidates, int count)
    {
        double total = 0;
        for (int i = 0; i < count; i++) total += probs[candidates?[i] ?? i];
        double u = _rng.NextDouble() * total;
        double acc = 0;
        for (int i = 0; i < count; i++)
        {
            int id = candidates?[i] ?? i;
            acc += probs[id];
            if (u < acc) return id;
        }
        return candidates?[count - 1] ?? count - 1;
    }

    /// <summary>log-softmax of the raw logits at one id (what OpenAI/vLLM report as the token's logprob).</summary>
    public static float LogProb(ReadOnlySpan<float> logits, int id) => (float)(logits[id] - Scoring.LogSumExp(logits));
}
