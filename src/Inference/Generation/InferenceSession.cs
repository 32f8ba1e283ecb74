using PiServe.Inference.Cache;
using PiServe.Inference.Model;
using PiServe.Inference.Rope;

namespace PiServe.Inference.Generation;

/// <summary>
/// One sequence being scored or generated: its tokens, its KV cache and the rope regime the cache was
/// computed under. The state after every call equals a forward pass over all tokens so far with the
/// parameters the policy puts in force; <see cref="RebuildCount"/> counts re-prefills.
/// </summary>
public sealed unsafe class InferenceSession : IDisposable
{
    /// <summary>Called with the final-normed hidden rows of each processed chunk.</summary>
    public delegate void HiddenRows(int startPos, int count, float* hidden);

    private readonly List<int> _tokens;
    private readonly ForwardScratch _scratch;
    private readonly float[] _logits;
    private readonly int _chunk;
    private RopeFrequencies? _cacheRegime;

    public InferenceSession(LlamaModel model, RopeScaling? rope = null, KvCachePolicy policy = KvCachePolicy.Exact,
        int? plannedLength = null, int prefillChunk = 256, int initialCapacity = 64)
    {
        Model = model;
        Rope = rope ?? model.Rope;
        Policy = policy;
        if (policy == KvCachePolicy.Planned && plannedLength is not > 0)
            throw new ArgumentException("the planned policy needs the planned sequence length (prompt + max_tokens)", nameof(plannedLength));
        PlannedLength = plannedLength;
        _chunk = Math.Max(1, prefillChunk);
        // Sized for the reservation, so the token list does not grow (allocate) while decoding.
        _tokens = new List<int>(Math.Clamp(Math.Max(initialCapacity, plannedLength ?? 0), 16, 1 << 20));
        _scratch = new ForwardScratch(model.Config);
        _logits = new float[model.Config.VocabSize];
        // A caller that reserved memory for the whole request sizes the cache once, so it never doubles past the reservation.
        Cache = model.CreateCache(initialCapacity);
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
    public RopeFrequencies ParametersFor(int length) => ParametersFor(Rope, Policy, PlannedLength, length);

    /// <summary>
    /// The parameters in force for a sequence of <paramref name="length"/> tokens under a policy: the
    /// length's own (exact, hf), or those of the planned length when it is longer (planned). A prompt is
    /// prefilled under the parameters for its whole length (<see cref="PrefillPart"/>), which is what a
    /// prefix cache keys its blocks on.
    /// </summary>
    public static RopeFrequencies ParametersFor(RopeScaling rope, KvCachePolicy policy, int? plannedLength, int length) =>
        rope.FrequenciesFor(policy == KvCachePolicy.Planned ? Math.Max(plannedLength!.Value, length) : length);

    /// <summary>Prefill: same as <see cref="Extend"/> on an empty session.</summary>
    public ReadOnlySpan<float> Prefill(scoped ReadOnlySpan<int> prompt, HiddenRows? rows = null)
    {
        if (Length != 0) throw new InvalidOperationException("prefill needs an empty session");
        return Extend(prompt, rows);
    }

    /// <summary>
    /// Part of a prefill, for a scheduler that interleaves long prompts with decode steps: processes
    /// the next (up to) <paramref name="maxTokens"/> tokens of <paramref name="prompt"/>, all under the
    /// parameters in force for the whole prompt, exactly as <see cref="Prefill"/> processes its
    /// chunks; true once the prompt is complete (then <see cref="Logits"/> holds the logits after its
    /// last token). Calls with the same prompt until it returns true leave the session in the state one
    /// <see cref="Prefill"/> would: same chunks, same regime, the same bits.
    /// </summary>
    public bool PrefillPart(ReadOnlySpan<int> prompt, int maxTokens, HiddenRows? rows = null)
    {
        int start = Length;
        if (start >= prompt.Length) throw new InvalidOperationException("the prompt is already prefilled");
        if (start > 0 && !prompt[..start].SequenceEqual(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_tokens)))
            throw new InvalidOperationException("the session holds tokens that are not this prompt's prefix");
        int n = Math.Min(Math.Max(1, maxTokens), prompt.Length - start);
        _tokens.AddRange(prompt.Slice(start, n));
        var regime = ParametersFor(prompt.Length);
        _cacheRegime = regime;
        ForwardFrom(start, regime, logitsAt: prompt.Length, rows);
        return Length == prompt.Length;
    }

    /// <summary>
    /// Takes the next <paramref name="count"/> tokens of <paramref name="prompt"/> from a prefix cache
    /// instead of computing them: <paramref name="restore"/> appends their keys and values to
    /// <see cref="Cache"/>. They must have been computed under <paramref name="regime"/>, and that must be
    /// the regime <see cref="PrefillPart"/> uses for this prompt (checked: a cache computed under other
    /// rope parameters would not equal a cold prefill). At least the prompt's last token is left to
    /// compute (its logits are needed). Later <see cref="PrefillPart"/> calls continue from there, and the
    /// state after the prompt equals a cold prefill's bit for bit: the restored keys and values are those
    /// a cold prefill computes, since every row of a prefill is computed independently of how the prompt
    /// was chunked.
    /// </summary>
    public void PrefillFromCache(ReadOnlySpan<int> prompt, int count, RopeFrequencies regime, Action<KvCache> restore)
    {
        int start = Length;
        if (count < 1 || start + count >= prompt.Length)
            throw new ArgumentOutOfRangeException(nameof(count), $"{count} cached tokens after {start} leave none of the {prompt.Length}-token prompt to compute");
        if (start > 0 && !prompt[..start].SequenceEqual(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_tokens)))
            throw new InvalidOperationException("the session holds tokens that are not this prompt's prefix");
        if (!regime.SameAs(ParametersFor(prompt.Length)))
            throw new InvalidOperationException($"cached keys and values computed under the rope regime {regime.Regime} cannot stand for a prefill under {ParametersFor(prompt.Length).Regime}");
        if (Cache.Length != start) throw new InvalidOperationException($"the cache holds {Cache.Length} positions for {start} tokens");
        restore(Cache);
        if (Cache.Length != start + count) throw new InvalidOperationException($"the restore wrote {Cache.Length - start} positions, {count} expected");
        _tokens.AddRange(prompt.Slice(start, count));
        _cacheRegime = regime;
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
        ForwardFrom(start, regime, logitsAt: Length, rows);
        return _logits;
    }

    /// <summary>
    /// Runs the tokens from <paramref name="start"/> to <see cref="Length"/> through the model in
    /// chunks under <paramref name="regime"/>, appending to the cache, and sets <see cref="Logits"/>
    /// when the chunk ending at position <paramref name="logitsAt"/> is processed.
    /// </summary>
    private void ForwardFrom(int start, RopeFrequencies regime, int logitsAt, HiddenRows? rows)
    {
        var all = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_tokens);
        for (int pos = start; pos < Length; pos += _chunk)
        {
            int n = Math.Min(_chunk, Length - pos);
            Model.Forward(all.Slice(pos, n), pos, Cache, regime, _scratch);
            rows?.Invoke(pos, n, _scratch.Hidden);
            if (pos + n == logitsAt)
                fixed (float* logits = _logits)
                    Model.Logits(_scratch.Hidden + (long)(n - 1) * Model.Config.HiddenSize, 1, logits);
        }
    }

    /// <summary>The logits after the last processed token.</summary>
    public ReadOnlySpan<float> Logits => _logits;

    /// <summary>
    /// One decode step for several sequences of the same model: each appends one token, and the
    /// weights are read once for all of them. A sequence whose rope regime changes under the exact
    /// policy is rebuilt on its own (re-prefill), the others share the batched forward. Equivalent
    /// to calling <see cref="Append"/> on each; afterwards each session's <see cref="Logits"/> is set.
    /// </summary>
    public static void AppendBatch(IReadOnlyList<InferenceSession> sessions, ReadOnlySpan<int> tokens, ForwardScratch scratch, float[] logitScratch) =>
        Step(sessions, tokens, [], scratch, logitScratch);

    // Per-thread lists, reused step after step (a decode step allocates nothing once they have grown).
    [ThreadStatic] private static List<InferenceSession>? t_batch;
    [ThreadStatic] private static List<int>? t_batchTokens;
    [ThreadStatic] private static List<LlamaModel.Segment>? t_segments;

    /// <summary>
    /// One scheduler step in one forward pass: a decode step for each of <paramref name="decode"/> (as
    /// <see cref="AppendBatch"/>) and the next chunk of each prompt in <paramref name="prefill"/> (as
    /// <see cref="PrefillPart"/> with its count), so the weights are read once for all of them and the
    /// decode tokens ride in the prompt chunks' matmuls. Every row is computed as it would be alone
    /// (matmul rows are independent, attention runs per segment), so each session ends in the state its
    /// own <see cref="Append"/> or <see cref="PrefillPart"/> would leave, bit for bit. Afterwards each
    /// decoded session's <see cref="Logits"/> is set, and each prefilling session's when its prompt completed.
    /// </summary>
    public static void Step(IReadOnlyList<InferenceSession> decode, ReadOnlySpan<int> tokens, IReadOnlyList<PromptChunk> prefill,
                            ForwardScratch scratch, float[] logitScratch)
    {
        if (decode.Count != tokens.Length) throw new ArgumentException("one token per decoding session", nameof(tokens));
        if (decode.Count == 0 && prefill.Count == 0) return;
        var model = decode.Count > 0 ? decode[0].Model : prefill[0].Session.Model;
        var batch = t_batch ??= [];
        var batchTokens = t_batchTokens ??= [];
        var segments = t_segments ??= [];
        batch.Clear();
        batchTokens.Clear();
        segments.Clear();
        try
        {
            for (int i = 0; i < decode.Count; i++)
            {
                var session = decode[i];
                if (!ReferenceEquals(session.Model, model)) throw new ArgumentException("all sessions of a step must share one model", nameof(decode));
                var regime = session.ParametersFor(session.Length + 1);
                if (session.Length == 0 || (session.Policy == KvCachePolicy.Exact && !regime.SameAs(session._cacheRegime!)))
                {
                    session.Append(tokens[i]); // rebuild (or first token): on its own
                    continue;
                }
                session._tokens.Add(tokens[i]);
                session._cacheRegime = regime;
                batch.Add(session);
                batchTokens.Add(tokens[i]);
                segments.Add(new LlamaModel.Segment(session.Cache, session.Length - 1, 1, regime));
            }
            int decoded = batch.Count;
            foreach (var chunk in prefill)
            {
                var session = chunk.Session;
                var prompt = chunk.Prompt;
                if (!ReferenceEquals(session.Model, model)) throw new ArgumentException("all sessions of a step must share one model", nameof(prefill));
                if (batch.Contains(session)) throw new ArgumentException("a session cannot decode and prefill in one step", nameof(prefill));
                int start = session.Length;
                if (start >= prompt.Length) throw new InvalidOperationException("the prompt is already prefilled");
                if (start > 0 && !prompt.AsSpan(0, start).SequenceEqual(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(session._tokens)))
                    throw new InvalidOperationException("the session holds tokens that are not this prompt's prefix");
                int n = Math.Min(Math.Max(1, chunk.Count), prompt.Length - start);
                var regime = session.ParametersFor(prompt.Length);
                session._tokens.AddRange(prompt.AsSpan(start, n));
                session._cacheRegime = regime;
                batch.Add(session);
                batchTokens.AddRange(prompt.AsSpan(start, n));
                segments.Add(new LlamaModel.Segment(session.Cache, start, n, regime));
            }

            if (batch.Count == 0) return; // every decoding session was rebuilt on its own
            int vocab = model.Config.VocabSize, hiddenSize = model.Config.HiddenSize;
            if (logitScratch.Length < decoded * vocab) throw new ArgumentException($"logit scratch needs {decoded * vocab} floats", nameof(logitScratch));
            model.Forward(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(batchTokens), System.Runtime.InteropServices.CollectionsMarshal.AsSpan(segments), scratch);
            // The logits of every decoded token and of every prompt completed in this step come from
            // one lm_head matmul (its weights read once, not once per completed prompt): each completed
            // prompt's last hidden row moves up behind the decoded rows first. A destination never lies
            // past its source, nor on a source still to be moved. Without room in the scratch for them
            // all, completed prompts get theirs one by one (the same values: rows are independent).
            int completed = 0;
            for (int i = decoded; i < batch.Count; i++)
                if (batch[i].Length == prefill[i - decoded].Prompt.Length) completed++;
            bool together = logitScratch.Length >= (long)(decoded + completed) * vocab;
            int rows = decoded, row = decoded;
            for (int i = decoded; i < batch.Count; i++)
            {
                row += segments[i].Count;
                if (batch[i].Length != prefill[i - decoded].Prompt.Length) continue;
                float* last = scratch.Hidden + (long)(row - 1) * hiddenSize;
                if (together)
                {
                    if (row - 1 != rows) Buffer.MemoryCopy(last, scratch.Hidden + (long)rows * hiddenSize, hiddenSize * 4L, hiddenSize * 4L);
                    rows++;
                }
                else
                    fixed (float* own = batch[i]._logits)
                        model.Logits(last, 1, own);
            }
            fixed (float* logits = logitScratch)
            {
                if (rows > 0)
                {
                    model.Logits(scratch.Hidden, rows, logits);
                    int b = 0;
                    for (int i = 0; i < batch.Count; i++)
                    {
                        if (i >= decoded && (!together || batch[i].Length != prefill[i - decoded].Prompt.Length)) continue;
                        new ReadOnlySpan<float>(logits + (long)b++ * vocab, vocab).CopyTo(batch[i]._logits);
                    }
                }
            }
        }
        finally
        {
            batch.Clear();
            segments.Clear();
        }
    }

    /// <summary>The next (up to) <paramref name="Count"/> tokens of <paramref name="Prompt"/> for <paramref name="Session"/>, in a <see cref="Step"/>.</summary>
    public readonly record struct PromptChunk(InferenceSession Session, int[] Prompt, int Count);

    public void Dispose()
    {
        Cache.Dispose();
        _scratch.Dispose();
    }
}
