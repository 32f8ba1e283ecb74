using System.Collections.Concurrent;
using System.Text;

namespace PiServe.Inference.Tokenization;

/// <summary>
/// Byte-pair-encoding model with HF tokenizers semantics: initial symbols are the word's characters
/// (unknown characters become byte-fallback tokens &lt;0xAB&gt; or the unk token, consecutive unks fused
/// with fuse_unk), then merges are applied lowest rank first, leftmost first on ties. The merge loop is a
/// priority queue over a doubly linked symbol list, O(n log n) per word; results of short words are cached.
/// </summary>
internal sealed class BpeModel
{
    private const int MaxCachedWordLength = 256;
    private const int MaxCacheEntries = 200_000;

    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<long, long> _merges; // (left id, right id) → (rank << 32 | merged id)
    private readonly int[] _bmpCharIds;               // single BMP char token → id, -1 when absent
    private readonly int[]? _byteIds;                 // byte → id of "<0xAB>" (byte_fallback only), -1 when absent
    private readonly int _unkId;                      // -1 when no unk token
    private readonly bool _fuseUnk;
    private readonly bool _ignoreMerges;
    private readonly ConcurrentDictionary<string, int[]> _cache = new(StringComparer.Ordinal);

    public BpeModel(Dictionary<string, int> vocab, Dictionary<long, long> merges, int unkId, bool fuseUnk, bool byteFallback,
        bool ignoreMerges)
    {
        _vocab = vocab;
        _merges = merges;
        _unkId = unkId;
        _fuseUnk = fuseUnk;
        _ignoreMerges = ignoreMerges;
        _bmpCharIds = new int[65536];
        Array.Fill(_bmpCharIds, -1);
        foreach (var (token, id) in vocab)
            if (token.Length == 1) _bmpCharIds[token[0]] = id;
        if (byteFallback)
        {
            _byteIds = new int[256];
            for (int b = 0; b < 256; b++)
                _byteIds[b] = vocab.TryGetValue($"<0x{b:X2}>", out int id) ? id : -1;
        }
    }

    public IReadOnlyDictionary<string, int> Vocab => _vocab;

    public static long PairKey(int left, int right) => ((long)left << 32) | (uint)right;

    /// <summary>Appends the ids of <paramref name="word"/> (one pre-token) to <paramref name="output"/>.</summary>
    public void Encode(string word, List<int> output)
    {
        if (word.Length == 0) return;
        if (_ignoreMerges && _vocab.TryGetValue(word, out int whole))
        {
            output.Add(whole);
            return;
        }
        bool cacheable = word.Length <= MaxCachedWordLength;
        if (cacheable && _cache.TryGetValue(word, out var cached))
        {
            output.AddRange(cached);
            return;
        }
        var ids = EncodeUncached(word);
        if (cacheable)
        {
            if (_cache.Count >= MaxCacheEntries) _cache.Clear();
            _cache.TryAdd(word, ids);
        }
        output.AddRange(ids);
    }

    private int[] EncodeUncached(string word)
    {
        // 1. Initial symbols.
        var symbols = new List<int>(word.Length);
        int pendingUnk = -1; // HF keeps at most one pending unk (fused with fuse_unk) and flushes it lazily
        Span<byte> utf8 = stackalloc byte[4];
        for (int i = 0; i < word.Length;)
        {
            int cp = CodePoints.At(word, i, out int units);
            int id;
            if (units == 1) id = _bmpCharIds[word[i]];
            else id = _vocab.TryGetValue(word.Substring(i, units), out int v) ? v : -1;
            i += units;

            if (id >= 0)
            {
                if (pendingUnk >= 0)
                {
                    symbols.Add(pendingUnk);
                    pendingUnk = -1;
                }
                symbols.Add(id);
                continue;
            }
            if (_byteIds is not null)
            {
                int n = new Rune(cp).EncodeToUtf8(utf8);
                bool all = true;
                for (int b = 0; b < n; b++) all &= _byteIds[utf8[b]] >= 0;
                if (all)
                {
                    for (int b = 0; b < n; b++) symbols.Add(_byteIds[utf8[b]]);
                    continue;
                }
            }
            if (_unkId >= 0)
            {
                if (pendingUnk >= 0 && !_fuseUnk) symbols.Add(pendingUnk);
                pendingUnk = _unkId;
            }
            // no unk token: the character is dropped, as HF does
        }
        if (pendingUnk >= 0) symbols.Add(pendingUnk);

        int count = symbols.Count;
        if (count < 2) return symbols.ToArray();

        // 2. Merge: priority queue of (rank, position) over a linked list of symbols.
        var id_ = new int[count];
        var next = new int[count];
        var prev = new int[count];
        for (int i = 0; i < count; i++)
        {
            id_[i] = symbols[i];
            next[i] = i + 1 < count ? i + 1 : -1;
            prev[i] = i - 1;
        }
        var queue = new PriorityQueue<int, long>(count);
        for (int i = 0; i + 1 < count; i++)
            if (_merges.TryGetValue(PairKey(id_[i], id_[i + 1]), out long m))
                queue.Enqueue(i, (m & ~0xFFFFFFFFL) | (uint)i);

        while (queue.TryDequeue(out int pos, out long priority))
        {
            if (id_[pos] < 0) continue;             // merged into its left neighbour
            int right = next[pos];
            if (right < 0) continue;
            int rank = (int)(priority >> 32);
            if (!_merges.TryGetValue(PairKey(id_[pos], id_[right]), out long m) || (int)(m >> 32) != rank)
                continue;                           // stale entry: the pair changed since it was queued
            id_[pos] = (int)m;
            id_[right] = -1;
            int after = next[right];
            next[pos] = after;
            if (after >= 0) prev[after] = pos;
            int before = prev[pos];
            if (before >= 0 && _merges.TryGetValue(PairKey(id_[before], id_[pos]), out long mb))
                queue.Enqueue(before, (mb & ~0xFFFFFFFFL) | (uint)before);
            if (after >= 0 && _merges.TryGetValue(PairKey(id_[pos], id_[after]), out long ma))
                queue.Enqueue(pos, (ma & ~0xFFFFFFFFL) | (uint)pos);
        }

        var result = new List<int>();
        for (int i = 0; i >= 0; i = next[i]) result.Add(id_[i]);
        return result.ToArray();
    }
}
