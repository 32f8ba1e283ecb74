using PiServe.Inference.Cache;
using PiServe.Inference.Model;
using PiServe.Inference.Rope;

namespace PiServe.Inference.Generation;

/// <summary>Greedy decoding, cached (one of the KV-cache policies) or by full recompute.</summary>
public static class GreedyGenerator
{
    public sealed record Result(int[] Tokens, int Rebuilds, string FinishReason);

    /// <summary>Argmax with the lowest id winning exact ties (torch.argmax's choice).</summary>
    public static int ArgMax(ReadOnlySpan<float> logits)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++)
            if (logits[i] > logits[best]) best = i;
        return best;
    }

    public static Result Generate(LlamaModel model, ReadOnlySpan<int> prompt, int maxTokens, KvCachePolicy policy,
        RopeScaling? rope = null, IReadOnlyCollection<int>? stopTokens = null)
    {
        if (prompt.IsEmpty) throw new ArgumentException("the prompt is empty", nameof(prompt));
        var output = new List<int>(maxTokens);
        if (maxTokens <= 0) return new Result([], 0, "length");
        using var session = new InferenceSession(model, rope, policy, plannedLength: prompt.Length + maxTokens);
        var logits = session.Prefill(prompt);
        while (true)
        {
            int next = ArgMax(logits);
            output.Add(next);
            if (stopTokens?.Contains(next) == true) return new Result(output.ToArray(), session.RebuildCount, "stop");
            if (output.Count == maxTokens) return new Result(output.ToArray(), session.RebuildCount, "length");
            logits = session.Append(next);
        }
    }

    /// <summary>The reference semantics: every step recomputes the whole sequence with the parameters for its length.</summary>
    public static Result GenerateWithoutCache(LlamaModel model, ReadOnlySpan<int> prompt, int maxTokens,
        RopeScaling? rope = null, IReadOnlyCollection<int>? stopTokens = null)
    {
        if (prompt.IsEmpty) throw new ArgumentException("the prompt is empty", nameof(prompt));
        var sequence = new List<int>(prompt.ToArray());
        var output = new List<int>();
        while (output.Count < maxTokens)
        {
            using var session = new InferenceSession(model, rope, KvCachePolicy.Exact);
            int next = ArgMax(session.Prefill(sequence.ToArray()));
            output.Add(next);
            sequence.Add(next);
            if (stopTokens?.Contains(next) == true) return new Result(output.ToArray(), 0, "stop");
        }
        return new Result(output.ToArray(), 0, "length");
    }
}
