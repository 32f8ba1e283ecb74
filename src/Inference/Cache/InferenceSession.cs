using PiServe.Inference.Model;
using PiServe.Inference.Rope;

namespace PiServe.Inference.Cache;

/// <summary>
/// What to do with the KV cache when the rope parameters in force change as the sequence grows
/// (dynamic NTK past max_position_embeddings, LongRoPE past original_max_position_embeddings).
/// </summary>
public enum KvCachePolicy
{
    /// <summary>Re-prefill the whole sequence whenever the parameters change: cached decoding equals a full recompute.</summary>
    Exact,
    /// <summary>Fix the parameters for the request from prompt + max_tokens: one prefill, no rebuilds; not per-step semantics.</summary>
    Planned,
    /// <summary>Keep the stale cache as transformers does (transformers#25104): each new token uses the parameters for its length.</summary>
    Hf,
}

/// <summary>
/// One sequence being scored or generated: its tokens, its KV cache and the rope regime the cache was
/// computed under. The state after every call equals a forward pass over all tokens so far with the
/// parameters the policy puts in force; <see cref="RebuildCount"/> counts re-prefills.
/// </summary>
public sealed unsafe class InferenceSession : IDisposable
{
    /// <summary>Called with the final-normed hidden rows of each processed chunk.</summary>
    public delegate void HiddenRows(int startPos, int count, float* hidden);

    private readonly List<int> _tokens = [];
    private readonly ForwardScratch _scratch;
    private readonly float[] _logits;
    private readonly int _chunk;
    private RopeFrequencies? _cacheRegime;

    public InferenceSession(LlamaModel model, RopeScaling? rope = null, KvCachePolicy policy = KvCachePolicy.Exact,
        int? plannedLength = null, int prefillChunk = 256)
    {
        Model = model;
        Rope = rope ?? model.Rope;
        Policy = policy;
        if (policy == KvCachePolicy.Planned && plannedLength is not > 0)
            throw new ArgumentException("the planned policy needs the planned sequence length (prompt + max_tokens)", nameof(plannedLength));
        PlannedLength = plannedLength;
        _chunk = Math.Max(1, prefillChunk);
        _scratch = new ForwardScratch(model.Config);
        _logits = new float[model.Config.VocabSize];
        Cache = model.CreateCache();
    }

    public LlamaModel Model { get; }
    public RopeScaling Rope { get; }
    public KvCachePolicy Policy { get; }
    public int? PlannedLength { get; }
    public KvCache Cache { get; }
    public IReadOnlyList<int> Tokens => _tokens;
    public int Length => _tokens.Count;
    /// <summary>How many times the cache was thrown away and the sequence re-prefilled.</summary>
    public int RebuildCount { get; private set; }
    /// <summary>The regime of the most recently processed tokens.</summary>
    public RopeFrequencies? Regime => _cacheRegime;

    /// <summary>The parameters in force for a sequence of this length under the policy.</summary>
    public RopeFrequencies ParametersFor(int length) =>
        Rope.FrequenciesFor(Policy == KvCachePolicy.Planned ? Math.Max(PlannedLength!.Value, length) : length);

    /// <summary>Prefill: same as <see cref="Extend"/> on an empty session.</summary>
    public ReadOnlySpan<float> Prefill(scoped ReadOnlySpan<int> prompt, HiddenRows? rows = null)
    {
        if (Length != 0) throw new InvalidOperationException("prefill needs an empty session");
        return Extend(prompt, rows);
    }

    /// <summary>Decode step: appends one token, returns the logits for the next one.</summary>
    public ReadOnlySpan<float> Append(int token) => Extend([token]);

    /// <summary>
    /// Appends tokens and returns the logits after the last one (a view valid until the next call).
    /// All new tokens are processed under the parameters in force for the new length.
    /// </summary>
    public ReadOnlySpan<float> Extend(scoped ReadOnlySpan<int> tokens, HiddenRows? rows = null)
    {
        if (tokens.IsEmpty) throw new ArgumentException("no tokens to process", nameof(tokens));
        int start = Length;
        _tokens.AddRange(tokens);
        var regime = ParametersFor(Length);

        if (start > 0 && Policy == KvCachePolicy.Exact && !regime.SameAs(_cacheRegime!))
        {
            // From layer 2 on, cached keys and values come from hidden states computed under the old
            // parameters, so re-rotating keys is not enough: recompute the whole sequence.
            RebuildCount++;
            Cache.Length = 0;
            start = 0;
        }
        _cacheRegime = regime;

        var all = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_tokens);
        for (int pos = start; pos < Length; pos += _chunk)
        {
            int n = Math.Min(_chunk, Length - pos);
            Model.Forward(all.Slice(pos, n), pos, Cache, regime, _scratch);
            rows?.Invoke(pos, n, _scratch.Hidden);
            if (pos + n == Length)
                fixed (float* logits = _logits)
                    Model.Logits(_scratch.Hidden + (long)(n - 1) * Model.Config.HiddenSize, 1, logits);
        }
        return _logits;
    }

    public void Dispose()
    {
        Cache.Dispose();
        _scratch.Dispose();
    }
}
