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
    /// <summary>vLLM min_p: drop tokens whose probability is below MinP × the most likely token's (0 = off).</summary>
    public float MinP { get; init; }
    /// <summary>OpenAI: logit −= presence_penalty for every token generated at least once (0 = off).</summary>
    public float PresencePenalty { get; init; }
    /// <summary>OpenAI: logit −= frequency_penalty × the number of times the token was generated (0 = off).</summary>
    public float FrequencyPenalty { get; init; }
    /// <summary>vLLM/HF: for tokens of the prompt or the output, logit / p when positive, logit · p otherwise (1 = off).</summary>
    public float RepetitionPenalty { get; init; } = 1f;
    /// <summary>OpenAI logit_bias: added to the raw logits of these token ids (null = none).</summary>
    public IReadOnlyList<KeyValuePair<int, float>>? LogitBias { get; init; }
    /// <summary>Same seed, same prompt, same parameters → same tokens.</summary>
    public int? Seed { get; init; }

    /// <summary>Whether the logits are changed before temperature (bias or a penalty is set).</summary>
    public bool AdjustsLogits => LogitBias is { Count: > 0 } || PresencePenalty != 0 || FrequencyPenalty != 0 || RepetitionPenalty != 1;
}

/// <summary>
/// Draws the next token from logits in vLLM's order: logit_bias, then the repetition, frequency and
/// presence penalties on the raw logits; then temperature; then top-k, top-p (on the distribution
/// renormalised after top-k) and min-p; then a draw from a per-request random stream (seeded when the
/// request gives a seed). Temperature 0 (or top_k 1) takes the argmax of the biased and penalised
/// logits. Every token the sampler returns counts as generated for the penalties.
/// All buffers belong to the sampler and are reused: no managed allocation per token, on any path.
/// </summary>
public sealed class Sampler
{
    private readonly SamplingParams _p;
    private readonly Random _rng;
    private readonly int _vocab;
    private readonly float[] _probs;
    // Candidate ids: a max-heap over the vocabulary while top-k/top-p pop from it; then the kept ids.
    private readonly int[] _order;
    private readonly float[]? _adjusted;      // biased and penalised logits (only when the request adjusts them)
    private readonly int[]? _counts;           // per token: times generated (presence/frequency penalties)
    private readonly bool[]? _seen;            // per token: in the prompt or the output (repetition penalty)
    private readonly int[]? _touched;          // distinct ids with a count or seen: penalties cost O(distinct), not O(vocab)
    private int _touchedCount;

    public Sampler(SamplingParams p, int vocabSize, ReadOnlySpan<int> prompt = default)
    {
        _p = p;
        _vocab = vocabSize;
        _rng = p.Seed is { } seed ? new Random(seed) : new Random();
        _probs = new float[vocabSize];
        _order = new int[vocabSize];
        if (p.AdjustsLogits) _adjusted = new float[vocabSize];
        bool counting = p.PresencePenalty != 0 || p.FrequencyPenalty != 0;
        bool repetition = p.RepetitionPenalty != 1;
        if (counting) _counts = new int[vocabSize];
        if (repetition) _seen = new bool[vocabSize];
        if (counting || repetition) _touched = new int[vocabSize];
        if (repetition)
            foreach (int t in prompt)
                if ((uint)t < (uint)vocabSize) Touch(t);
    }

    public SamplingParams Params => _p;
    private bool Greedy => _p.Temperature <= 0 || _p.TopK == 1;

    /// <summary>Counts a token as generated (for the penalties). <see cref="Sample"/> does this for the tokens it returns.</summary>
    public void Observe(int token)
    {
        if (_touched is null || (uint)token >= (uint)_vocab) return;
        Touch(token);
        if (_counts is not null) _counts[token]++;
    }

    private void Touch(int token)
    {
        bool known = (_seen?[token] ?? false) || (_counts?[token] ?? 0) > 0;
        if (!known) _touched![_touchedCount++] = token;
        if (_seen is not null) _seen[token] = true;
    }

    public int Sample(ReadOnlySpan<float> logits)
    {
        var adjusted = Adjust(logits);
        int token;
        if (Greedy) token = GreedyGenerator.ArgMax(adjusted);
        else
        {
            int count = Candidates(adjusted);
            token = Draw(count);
        }
        Observe(token);
        return token;
    }

    /// <summary>
    /// The distribution <see cref="Sample"/> would draw from for these logits (one-hot when greedy), in
    /// <paramref name="probs"/> (vocabulary length). Does not draw, and counts nothing as generated.
    /// </summary>
    public void Distribution(ReadOnlySpan<float> logits, Span<double> probs)
    {
        probs.Clear();
        var adjusted = Adjust(logits);
        if (Greedy) { probs[GreedyGenerator.ArgMax(adjusted)] = 1; return; }
        int count = Candidates(adjusted);
        double total = 0;
        for (int i = 0; i < count; i++) total += _probs[Id(i, count)];
        for (int i = 0; i < count; i++) { int id = Id(i, count); probs[id] = _probs[id] / total; }
    }

    /// <summary>The logits after logit_bias and the penalties (before temperature): the raw logits when none is set.</summary>
    public ReadOnlySpan<float> Adjust(ReadOnlySpan<float> logits)
    {
        if (_adjusted is null) return logits;
        var a = _adjusted.AsSpan(0, logits.Length);
        logits.CopyTo(a);
        if (_p.LogitBias is { } bias)
            for (int i = 0; i < bias.Count; i++)
                if ((uint)bias[i].Key < (uint)a.Length) a[bias[i].Key] += bias[i].Value;
        float rep = _p.RepetitionPenalty, presence = _p.PresencePenalty, frequency = _p.FrequencyPenalty;
        for (int i = 0; i < _touchedCount; i++)
        {
            int t = _touched![i];
            if (_seen is not null && _seen[t]) a[t] = a[t] > 0 ? a[t] / rep : a[t] * rep;
            if (_counts is not null && _counts[t] > 0) a[t] -= frequency * _counts[t] + presence;
        }
        return a;
    }

    // count == _vocab: every token is a candidate, in id order (_order unused).
    private int Id(int i, int count) => count == _vocab ? i : _order[i];

    /// <summary>
    /// Temperature softmax of the adjusted logits into _probs, then top-k, top-p and min-p: returns how
    /// many candidates remain (the vocabulary, or the first ids of _order, most likely first).
    /// </summary>
    private int Candidates(ReadOnlySpan<float> adjusted)
    {
        int v = adjusted.Length;
        var probs = _probs.AsSpan(0, v);
        TensorPrimitives.Divide(adjusted, _p.Temperature, probs);
        // TensorPrimitives.SoftMax does not subtract the maximum: a logit of 100 (logit_bias, or a
        // low temperature) would overflow exp to ∞ and every probability to NaN.
        TensorPrimitives.Subtract(probs, TensorPrimitives.Max(probs), probs);
        TensorPrimitives.SoftMax(probs, probs);

        int k = _p.TopK > 0 ? Math.Min(_p.TopK, v) : v;
        bool nucleus = _p.TopP < 1f;
        float maxProb;
        int count;
        if (k == v && !nucleus)
        {
            if (_p.MinP <= 0) return v;
            maxProb = TensorPrimitives.Max(probs);
            count = 0;
            float threshold = _p.MinP * maxProb;
            for (int i = 0; i < v; i++)
                if (probs[i] >= threshold) _order[count++] = i;
            return count == v ? v : count;
        }

        // Pop ids from a max-heap by probability (lower id first on ties): O(V) to build, O(log V)
        // per kept token, instead of sorting the vocabulary.
        var heap = _order.AsSpan(0, v);
        for (int i = 0; i < v; i++) heap[i] = i;
        for (int i = v / 2 - 1; i >= 0; i--) SiftDown(heap, i, v, probs);
        int size = v;
        // The kept ids go to the end of _order as the heap shrinks (heap-sort), most likely at v-1.
        // Top-p alone stops popping as soon as the kept mass reaches top_p; with top-k, the k ids are
        // popped first and top-p applies to their renormalised distribution below.
        bool lazyNucleus = nucleus && k == v;
        double lazyTarget = 0, lazyCumulative = 0;
        if (lazyNucleus)
        {
            double sum = 0;
            for (int i = 0; i < v; i++) sum += probs[i];
            lazyTarget = _p.TopP * sum;
        }
        int keep = 0;
        while (keep < k && size > 0)
        {
            int top = heap[0];
            heap[0] = heap[--size];
            if (size > 0) SiftDown(heap, 0, size, probs);
            heap[v - 1 - keep] = top;
            keep++;
            if (lazyNucleus && (lazyCumulative += probs[top]) >= lazyTarget) break;
        }
        // Most likely first, at the start of _order.
        heap.Slice(v - keep, keep).Reverse();
        heap.Slice(v - keep, keep).CopyTo(heap);
        count = keep;
        if (nucleus && !lazyNucleus)
        {
            // top-p over the distribution renormalised after top-k (HF and vLLM mask, then softmax again).
            double total = 0;
            for (int i = 0; i < count; i++) total += probs[heap[i]];
            double target = _p.TopP * total, cumulative = 0;
            int kept = 0;
            while (kept < count)
            {
                cumulative += probs[heap[kept++]];
                if (cumulative >= target) break;
            }
            count = kept;
        }
        if (_p.MinP > 0)
        {
            // The ratio to the most likely token does not change when top-k/top-p renormalise.
            float threshold = _p.MinP * probs[heap[0]];
            int kept = 1;
            while (kept < count && probs[heap[kept]] >= threshold) kept++;
            count = kept;
        }
        return count;
    }

    /// <summary>Max-heap order: higher probability first, lower id first on ties.</summary>
    private static bool Before(int a, int b, ReadOnlySpan<float> probs) => probs[a] > probs[b] || (probs[a] == probs[b] && a < b);

    private static void SiftDown(Span<int> heap, int i, int size, ReadOnlySpan<float> probs)
    {
        int item = heap[i];
        while (true)
        {
            int child = 2 * i + 1;
            if (child >= size) break;
            if (child + 1 < size && Before(heap[child + 1], heap[child], probs)) child++;
            if (!Before(heap[child], item, probs)) break;
            heap[i] = heap[child];
            i = child;
        }
        heap[i] = item;
    }

    private int Draw(int count)
    {
        double total = 0;
        for (int i = 0; i < count; i++) total += _probs[Id(i, count)];
        double u = _rng.NextDouble() * total;
        double acc = 0;
        for (int i = 0; i < count; i++)
        {
            int id = Id(i, count);
            acc += _probs[id];
            if (u < acc) return id;
        }
        return Id(count - 1, count);
    }

    /// <summary>log-softmax of the raw logits at one id (what OpenAI/vLLM report as the token's logprob).</summary>
    public static float LogProb(ReadOnlySpan<float> logits, int id) => (float)(logits[id] - Scoring.LogSumExp(logits));

    /// <summary>
    /// The logprob of <paramref name="token"/> and the <paramref name="ids"/>.Length most likely tokens
    /// with theirs (most likely first, lower id first on ties), from the raw logits, as vLLM reports
    /// them by default. A partial selection (a fixed-size min-heap): O(V log N), no allocation.
    /// Returns how many entries of ids/logprobs were written (min(N, V)).
    /// </summary>
    public static int TopLogprobs(ReadOnlySpan<float> logits, int token, out float tokenLogprob, Span<int> ids, Span<float> logprobs)
    {
        double lse = Scoring.LogSumExp(logits);
        tokenLogprob = (float)(logits[token] - lse);
        int n = Math.Min(ids.Length, logits.Length);
        int count = TopK(logits, ids[..n]);
        for (int i = 0; i < count; i++) logprobs[i] = (float)(logits[ids[i]] - lse);
        return count;
    }

    /// <summary>The ids.Length highest logits into ids, highest first (lower id first on ties), with a min-heap of that size.</summary>
    public static int TopK(ReadOnlySpan<float> logits, Span<int> ids)
    {
        int n = Math.Min(ids.Length, logits.Length), size = 0;
        if (n == 0) return 0;
        // Min-heap whose root is the worst kept id ("worse" = lower logit, or higher id on a tie).
        for (int i = 0; i < logits.Length; i++)
        {
            if (size < n)
            {
                int c = size++;
                while (c > 0)
                {
                    int parent = (c - 1) / 2;
                    if (!Worse(i, ids[parent], logits)) break;
                    ids[c] = ids[parent];
                    c = parent;
                }
                ids[c] = i;
            }
            else if (Worse(ids[0], i, logits))
                SiftDownMin(ids, 0, n, i, logits);
        }
        // Heap-sort: pop the worst to the end, leaving the best first.
        for (int end = n - 1; end > 0; end--)
        {
            int worst = ids[0];
            SiftDownMin(ids, 0, end, ids[end], logits);
            ids[end] = worst;
        }
        return n;
    }

    private static bool Worse(int a, int b, ReadOnlySpan<float> logits) => logits[a] < logits[b] || (logits[a] == logits[b] && a > b);

    private static void SiftDownMin(Span<int> heap, int i, int size, int item, ReadOnlySpan<float> logits)
    {
        while (true)
        {
            int child = 2 * i + 1;
            if (child >= size) break;
            if (child + 1 < size && Worse(heap[child + 1], heap[child], logits)) child++;
            if (!Worse(heap[child], item, logits)) break;
            heap[i] = heap[child];
            i = child;
        }
        heap[i] = item;
    }
}
