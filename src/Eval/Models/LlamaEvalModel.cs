using System.Text.Json.Nodes;
using PiServe.Inference.Cache;
using PiServe.Inference.Checkpoints;
using PiServe.Inference.Generation;
using PiServe.Inference.Model;
using PiServe.Inference.Rope;
using PiServe.Inference.Tokenization;

namespace PiServe.Eval.Models;

/// <summary>
/// <see cref="IEvalModel"/> over a loaded <see cref="LlamaModel"/> and its tokenizer. Every call uses
/// its own KV cache and scratch, so several eval workers (and the serving scheduler) can share the
/// weights at once.
/// </summary>
public sealed unsafe class LlamaEvalModel : IEvalModel
{
    private readonly ITokenizer _tokenizer;
    private readonly Func<bool>? _busy;
    private readonly Func<RopeScaling, int>? _contextWindow;
    private readonly HashSet<int> _stop;

    /// <param name="busy">True while interactive requests need the model (the host passes its scheduler's counts).</param>
    /// <param name="contextWindow">The host's context-window rule; null for <see cref="ContextWindow.For"/>.</param>
    public LlamaEvalModel(string id, LlamaModel model, ITokenizer tokenizer, RopeScaling? defaultRope = null,
        Func<bool>? busy = null, Func<RopeScaling, int>? contextWindow = null)
    {
        Id = id;
        Model = model;
        _tokenizer = tokenizer;
        DefaultRope = defaultRope ?? model.Rope;
        _busy = busy;
        _contextWindow = contextWindow;
        _stop = [.. model.Config.EosTokenIds];
        if (tokenizer.EosTokenId is { } eos) _stop.Add(eos);
    }

    public string Id { get; }
    public LlamaModel Model { get; }
    public ModelConfig Config => Model.Config;
    public RopeScaling DefaultRope { get; }
    public bool InteractiveBusy => _busy?.Invoke() ?? false;

    /// <summary>Prompt tokens per forward chunk (bounds activation memory, as the scheduler's prefill).</summary>
    public int PrefillChunk { get; init; } = 256;

    public RopeScaling ResolveRope(JsonObject? ropeScaling) => ropeScaling is null ? DefaultRope : Model.ResolveRope(ropeScaling);

    public int ContextWindow(RopeScaling rope) => _contextWindow?.Invoke(rope) ?? Inference.Rope.ContextWindow.For(Config, rope);

    public int[] Encode(string text, bool addSpecialTokens = true) => _tokenizer.Encode(text, addSpecialTokens);

    public string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = true) => _tokenizer.Decode(ids, skipSpecialTokens);

    public double[] ScoreWindow(ReadOnlySpan<int> tokens, int firstScored, RopeScaling rope, CancellationToken cancellation)
    {
        int n = tokens.Length;
        if (n < 2) throw new ArgumentException("a window needs at least two tokens", nameof(tokens));
        if (firstScored < 1 || firstScored >= n) throw new ArgumentOutOfRangeException(nameof(firstScored), $"must be in [1, {n})");
        cancellation.ThrowIfCancellationRequested();
        var toks = tokens.ToArray();
        var result = new double[n - firstScored];
        int vocab = Config.VocabSize, hiddenSize = Config.HiddenSize;
        const int rowsPerBlock = 16; // logits for a few rows at a time: O(16·vocab) memory
        var block = new float[rowsPerBlock * vocab];
        using var session = new InferenceSession(Model, rope, KvCachePolicy.Exact, prefillChunk: PrefillChunk, initialCapacity: n);
        session.Prefill(toks, (start, count, hidden) =>
        {
            // Row p predicts token p + 1: only rows firstScored - 1 .. n - 2 are needed.
            int lo = Math.Max(start, firstScored - 1), hi = Math.Min(start + count, n - 1);
            for (int r0 = lo; r0 < hi; r0 += rowsPerBlock)
            {
                int rows = Math.Min(rowsPerBlock, hi - r0);
                fixed (float* lp = block)
                    Model.Logits(hidden + (long)(r0 - start) * hiddenSize, rows, lp);
                for (int r = 0; r < rows; r++)
                {
                    int pos = r0 + r;
                    var row = block.AsSpan(r * vocab, vocab);
                    result[pos + 1 - firstScored] = row[toks[pos + 1]] - Scoring.LogSumExp(row);
                }
            }
        });
        return result;
    }

    public int[] Generate(ReadOnlySpan<int> prompt, int maxNewTokens, SamplingParams sampling, RopeScaling rope, CancellationToken cancellation)
    {
        if (prompt.IsEmpty) throw new ArgumentException("the prompt is empty", nameof(prompt));
        if (maxNewTokens <= 0) return [];
        cancellation.ThrowIfCancellationRequested();
        var output = new List<int>(maxNewTokens);
        var sampler = new Sampler(sampling, Config.VocabSize);
        using var session = new InferenceSession(Model, rope, KvCachePolicy.Exact, prefillChunk: PrefillChunk,
            initialCapacity: prompt.Length + maxNewTokens);
        var logits = session.Prefill(prompt);
        while (true)
        {
            int next = sampler.Sample(logits);
            if (_stop.Contains(next)) break;
            output.Add(next);
            if (output.Count == maxNewTokens) break;
            cancellation.ThrowIfCancellationRequested();
            logits = session.Append(next);
        }
        return output.ToArray();
    }

    public void ObserveQueryKeys(ReadOnlySpan<int> tokens, RopeScaling rope, ForwardScratch.QueryKeyObserver observer)
    {
        if (tokens.IsEmpty) throw new ArgumentException("no tokens", nameof(tokens));
        // One forward over all rows so the observer sees every query and key of the sequence at once.
        using var scratch = new ForwardScratch(Config) { Observer = observer };
        using var cache = Model.CreateCache(tokens.Length);
        Model.Forward(tokens, 0, cache, rope.FrequenciesFor(tokens.Length), scratch);
    }
}
