using PiServe.Inference.Cache;
using PiServe.Inference.Model;
using PiServe.Inference.Rope;

namespace PiServe.Inference.Generation;

/// <summary>Per-token log-probabilities of a sequence from one full forward pass.</summary>
public sealed record ScoreResult(int[] Tokens, double?[] LogProbs, float[] LastLogits);

public static unsafe class Scoring
{
    /// <summary>
    /// logprobs[i] = log p(tokens[i] | tokens[&lt;i]) (null for the first token), all positions under the
    /// rope parameters in force for the whole sequence, as one HF forward would compute them.
    /// </summary>
    public static ScoreResult Score(LlamaModel model, ReadOnlySpan<int> tokens, RopeScaling? rope = null, int chunk = 256)
    {
        if (tokens.IsEmpty) throw new ArgumentException("nothing to score", nameof(tokens));
        int vocab = model.Config.VocabSize;
        var toks = tokens.ToArray();
        var logprobs = new double?[toks.Length];
        var lastLogits = new float[vocab];
        using var session = new InferenceSession(model, rope, KvCachePolicy.Exact, prefillChunk: chunk);
        const int rowsPerBlock = 16; // logits for a few rows at a time: O(16·vocab) memory, not O(n·vocab)
        var logitBlock = new float[rowsPerBlock * vocab];
        session.Prefill(toks, (start, count, hidden) =>
        {
            for (int r0 = 0; r0 < count; r0 += rowsPerBlock)
            {
                int rows = Math.Min(rowsPerBlock, count - r0);
                fixed (float* lp = logitBlock)
                    model.Logits(hidden + (long)r0 * model.Config.HiddenSize, rows, lp);
                for (int r = 0; r < rows; r++)
                {
                    int pos = start + r0 + r;
                    var row = logitBlock.AsSpan(r * vocab, vocab);
                    if (pos + 1 < toks.Length)
                        logprobs[pos + 1] = row[toks[pos + 1]] - LogSumExp(row);
                    else
                        row.CopyTo(lastLogits);
                }
            }
        });
        return new ScoreResult(toks, logprobs, lastLogits);
    }

    /// <summary>log Σ exp(x), accumulated in double.</summary>
    public static double LogSumExp(ReadOnlySpan<float> x)
    {
        float max = System.Numerics.Tensors.TensorPrimitives.Max(x);
        double sum = 0;
        foreach (float v in x) sum += Math.Exp(v - max);
        return max + Math.Log(sum);
    }

    /// <summary>The k highest logits, by logit descending, lower id first on ties.</summary>
    public static (int Id, float Logit)[] TopK(ReadOnlySpan<float> logits, int k)
    {
        var ids = new int[Math.Clamp(k, 0, logits.Length)];
        Sampler.TopK(logits, ids); // a partial selection, not a sort of the vocabulary
        var top = new (int, float)[ids.Length];
        for (int i = 0; i < ids.Length; i++) top[i] = (ids[i], logits[ids[i]]);
        return top;
    }
}
