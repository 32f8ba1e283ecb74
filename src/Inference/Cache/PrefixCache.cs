using PiServe.Inference.Checkpoints;
using PiServe.Inference.Kernels;
using PiServe.Inference.Rope;

namespace PiServe.Inference.Cache;

/// <summary>
/// Automatic prefix caching (vLLM's APC, llama.cpp's prompt cache): the keys and values of full
/// blocks of <see cref="BlockTokens"/> prompt tokens, kept after the sequence that computed them and
/// copied into later sequences whose prompts start with the same tokens under the same
/// <see cref="Regime"/>. Blocks are chained as vLLM chains them: block j is found by a hash of block
/// j − 1's hash and its own tokens, and the root's hash starts from the regime's fingerprint. A hash
/// only finds a candidate: a match also compares the block's tokens, its parent (by identity) and, at
/// the root, the regime itself, so a hash collision costs a miss, never a wrong cache.
/// </summary>
/// <remarks>
/// <para>Memory is bounded by <see cref="BudgetBytes"/> (and by whatever the caller leaves it, see
/// <see cref="Publish"/> and <see cref="EvictTo"/>); blocks are evicted least recently used first,
/// leaves before their parents (a block is always older in the LRU order than its parent: a hit touches
/// its path from the leaf to the root, a new block is placed just before its parent), and never while
/// pinned (<see cref="Pin"/>: blocks a sequence is about to copy).</para>
/// <para>Not thread-safe: one scheduler loop owns it. The counters may be read from any thread.</para>
/// </remarks>
public sealed unsafe class PrefixCache : IDisposable
{
    private readonly Dictionary<ulong, Block> _blocks = [];
    /// <summary>First = least recently used.</summary>
    private readonly LinkedList<Block> _lru = new();
    private long _bytes;
    private int _count;
    /// <summary>Block buffers already in memory (touched) and holding nothing: taken before new ones.</summary>
    private readonly Stack<NativeBuffer> _spare = new();
    private long _spareBytes;

    /// <param name="blockTokens">Tokens per block.</param>
    /// <param name="budgetBytes">The most bytes the cached blocks may hold together.</param>
    /// <param name="bytesPerToken">KV bytes per position of the caches whose blocks are kept (<see cref="KvCache.BytesPerToken"/>).</param>
    public PrefixCache(int blockTokens, long budgetBytes, long bytesPerToken)
    {
        if (blockTokens < 1) throw new ArgumentOutOfRangeException(nameof(blockTokens), $"a prefix-cache block (PrefixBlockTokens) holds at least one token, not {blockTokens}");
        if (budgetBytes < 0) throw new ArgumentOutOfRangeException(nameof(budgetBytes), "the budget is not negative");
        if (bytesPerToken < 1 || bytesPerToken % sizeof(float) != 0) throw new ArgumentOutOfRangeException(nameof(bytesPerToken));
        BlockTokens = blockTokens;
        BudgetBytes = budgetBytes;
        BlockBytes = checked(blockTokens * bytesPerToken);
    }

    public int BlockTokens { get; }
    public long BudgetBytes { get; }
    public long BlockBytes { get; }
    /// <summary>Blocks held now.</summary>
    public int BlockCount => Volatile.Read(ref _count);
    /// <summary>Bytes the held blocks take (<see cref="BlockCount"/> · <see cref="BlockBytes"/>).</summary>
    public long Bytes => Interlocked.Read(ref _bytes);
    /// <summary>
    /// Bytes of spare block buffers: memory the cache holds besides its blocks (within the same bounds,
    /// and released first when room is needed), so that publishing a block copies into memory already
    /// faulted in (see <see cref="Refill"/>).
    /// </summary>
    public long SpareBytes => Interlocked.Read(ref _spareBytes);
    /// <summary>Blocks evicted so far.</summary>
    public long Evictions => Interlocked.Read(ref _evictions);
    private long _evictions;

    /// <summary>
    /// What a block's keys and values depend on besides its tokens and position: the rope parameters in
    /// force when it was computed (inverse frequencies, attention factor, LongRoPE's unscaled prefix)
    /// and the cache's element type. The model is the cache's owner (one per scheduler, one model).
    /// </summary>
    public sealed class Regime
    {
        public Regime(RopeFrequencies rope, DType kvType)
        {
            Rope = rope;
            KvType = kvType;
            ulong h = Mix(0x9E3779B97F4A7C15UL, (ulong)kvType);
            h = Mix(h, BitConverter.DoubleToUInt64Bits(rope.AttentionFactor));
            foreach (float f in rope.InvFreq) h = Mix(h, BitConverter.SingleToUInt32Bits(f));
            h = Mix(h, (ulong)rope.UnscaledPrefix);
            if (rope.UnscaledPrefix > 0)
                foreach (float f in rope.UnscaledInvFreq!) h = Mix(h, BitConverter.SingleToUInt32Bits(f));
            Fingerprint = h;
        }

        public RopeFrequencies Rope { get; }
        public DType KvType { get; }
        public ulong Fingerprint { get; }

        /// <summary>Same rotation at every position and same element type: cached keys and values are interchangeable.</summary>
        public bool SameAs(Regime other) => ReferenceEquals(this, other) || (KvType == other.KvType && Fingerprint == other.Fingerprint && Rope.SameAs(other.Rope));
    }

    /// <summary>One cached block: its tokens, parent, regime (at the root) and keys and values.</summary>
    public sealed class Block
    {
        internal Block(ulong key, Block? parent, int[] tokens, Regime regime, NativeBuffer data, bool nonFinite)
        {
            Key = key;
            Parent = parent;
            Tokens = tokens;
            Regime = regime;
            Data = data;
            NonFinite = nonFinite;
        }

        internal ulong Key { get; }
        internal Block? Parent { get; }
        internal int[] Tokens { get; }
        internal Regime Regime { get; }
        internal NativeBuffer Data { get; }
        internal bool NonFinite { get; }
        internal LinkedListNode<Block>? Node { get; set; }
        internal int Children { get; set; }
        internal int Pins { get; set; }
        /// <summary>No longer in the cache (its memory is freed): a path holding it ends before it.</summary>
        public bool Evicted { get; internal set; }
    }

    /// <summary>
    /// The token-chain hashes of the full blocks of <paramref name="tokens"/>: h[j] depends on tokens
    /// [0, (j + 1)·blockTokens). Pure (no regime): computed once per request, off the scheduler loop.
    /// </summary>
    public static ulong[] ChainHashes(ReadOnlySpan<int> tokens, int blockTokens)
    {
        var hashes = new ulong[tokens.Length / blockTokens];
        ulong h = 0xCBF29CE484222325UL;
        for (int j = 0; j < hashes.Length; j++)
        {
            foreach (int t in tokens.Slice(j * blockTokens, blockTokens)) h = Mix(h, (uint)t);
            hashes[j] = h = Mix(h, (ulong)j);
        }
        return hashes;
    }

    private static ulong Mix(ulong h, ulong v)
    {
        // splitmix64's finaliser over (h ^ v): cheap, and every input bit reaches every output bit.
        ulong z = (h ^ v) + 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    private static ulong KeyOf(Regime regime, ulong chainHash) => Mix(regime.Fingerprint, chainHash);

    /// <summary>
    /// Appends to <paramref name="path"/> (which holds the blocks already matched, from block 0) the
    /// cached blocks that continue <paramref name="tokens"/> under <paramref name="regime"/>, up to
    /// <paramref name="maxBlocks"/> in all; returns the path's length. A path whose last block was evicted
    /// is cut back first. Does not touch the LRU order (see <see cref="Touch"/>).
    /// </summary>
    public int Match(Regime regime, ReadOnlySpan<int> tokens, ReadOnlySpan<ulong> chainHashes, int maxBlocks, List<Block> path)
    {
        int firstEvicted = path.FindIndex(b => b.Evicted);
        if (firstEvicted >= 0) path.RemoveRange(firstEvicted, path.Count - firstEvicted);
        maxBlocks = Math.Min(maxBlocks, Math.Min(chainHashes.Length, tokens.Length / BlockTokens));
        while (path.Count < maxBlocks)
        {
            int j = path.Count;
            var parent = j == 0 ? null : path[j - 1];
            if (!_blocks.TryGetValue(KeyOf(regime, chainHashes[j]), out var b) || !Continues(b, parent, regime, tokens.Slice(j * BlockTokens, BlockTokens)))
                break;
            path.Add(b);
        }
        return path.Count;
    }

    private static bool Continues(Block b, Block? parent, Regime regime, ReadOnlySpan<int> tokens) =>
        ReferenceEquals(b.Parent, parent) && (parent is not null || b.Regime.SameAs(regime)) && tokens.SequenceEqual(b.Tokens);

    /// <summary>Marks the blocks most recently used, from the last to the first (so parents stay newer than children).</summary>
    public void Touch(List<Block> path)
    {
        for (int i = path.Count - 1; i >= 0; i--)
        {
            var node = path[i].Node!;
            _lru.Remove(node);
            _lru.AddLast(node);
        }
    }

    /// <summary>Pinned blocks are not evicted (pins count: each <see cref="Pin"/> needs its <see cref="Unpin"/>).</summary>
    public void Pin(List<Block> path) { foreach (var b in path) b.Pins++; }
    public void Unpin(List<Block> path) { foreach (var b in path) b.Pins--; }

    /// <summary>
    /// Copies blocks [<paramref name="from"/>, <paramref name="to"/>) of <paramref name="path"/> into
    /// <paramref name="cache"/> (which must hold exactly from · BlockTokens positions), appending them.
    /// </summary>
    public void Restore(List<Block> path, int from, int to, KvCache cache)
    {
        if (cache.Length != from * BlockTokens) throw new InvalidOperationException($"the cache holds {cache.Length} positions, block {from} starts at {from * BlockTokens}");
        if (cache.BytesPerToken * BlockTokens != BlockBytes) throw new ArgumentException("the cache's shape or element type differs from the cached blocks'", nameof(cache));
        for (int j = from; j < to; j++)
        {
            var b = path[j];
            if (b.Evicted) throw new InvalidOperationException("a cached block was evicted before it was restored (it was not pinned)");
            cache.CopyIn(BlockTokens, (byte*)b.Data.Ptr, b.NonFinite);
        }
    }

    /// <summary>
    /// Caches block <paramref name="index"/> of a sequence: the keys and values at positions
    /// [index·BlockTokens, (index + 1)·BlockTokens) of <paramref name="cache"/>, computed under
    /// <paramref name="regime"/> after the blocks of <paramref name="path"/> (which holds blocks 0 ..
    /// index − 1 and receives this one). An equal block already cached is reused. Makes room by
    /// eviction so that the blocks never exceed <see cref="BudgetBytes"/> nor <paramref name="maxBytes"/>;
    /// returns false (caching nothing) when there is no room or the path was broken by an eviction.
    /// </summary>
    public bool Publish(Regime regime, ReadOnlySpan<int> tokens, ReadOnlySpan<ulong> chainHashes, int index, KvCache cache, List<Block> path, long maxBytes)
    {
        if (cache.BytesPerToken * BlockTokens != BlockBytes) throw new ArgumentException("the cache's shape or element type differs from the cached blocks'", nameof(cache));
        if (path.Count != index) throw new ArgumentException($"the path holds {path.Count} blocks, block {index} follows {index} blocks", nameof(path));
        var parent = index == 0 ? null : path[index - 1];
        if (parent is { Evicted: true }) return false;
        var blockTokens = tokens.Slice(index * BlockTokens, BlockTokens);
        ulong key = KeyOf(regime, chainHashes[index]);
        if (_blocks.TryGetValue(key, out var existing))
        {
            if (!Continues(existing, parent, regime, blockTokens)) return false; // a hash collision: keep the one cached
            path.Add(existing);
            return true;
        }
        long limit = Math.Min(BudgetBytes, maxBytes) - BlockBytes;
        if (limit < 0) return false;
        // A spare buffer in hand counts as the new block's bytes, not twice.
        var data = TakeSpare();
        if (parent is not null) parent.Pins++;
        bool room = EvictTo(limit);
        if (parent is not null) parent.Pins--;
        if (!room)
        {
            data?.Dispose();
            return false;
        }

        data ??= new NativeBuffer(BlockBytes / sizeof(float));
        bool nonFinite = cache.CopyOut(index * BlockTokens, BlockTokens, (byte*)data.Ptr);
        var b = new Block(key, parent, blockTokens.ToArray(), regime, data, nonFinite);
        // Newest, but older than its parent (so the parent, no longer a leaf, is never evicted first).
        b.Node = parent is null ? _lru.AddLast(b) : _lru.AddBefore(parent.Node!, b);
        if (parent is not null) parent.Children++;
        _blocks.Add(key, b);
        Interlocked.Add(ref _bytes, BlockBytes);
        Interlocked.Increment(ref _count);
        path.Add(b);
        return true;
    }

    /// <summary>
    /// Releases the spare buffers, then evicts least recently used blocks (unpinned leaves), until the
    /// cache holds at most <paramref name="maxBytes"/>; false when pinned blocks keep it above that.
    /// </summary>
    public bool EvictTo(long maxBytes)
    {
        while (Bytes + SpareBytes > maxBytes && TakeSpare() is { } spare) spare.Dispose();
        var node = _lru.First;
        while (Bytes > maxBytes && node is not null)
        {
            var next = node.Next;
            var b = node.Value;
            if (b.Pins == 0 && b.Children == 0)
            {
                Evict(b);
                // Its parent may have become an evictable leaf; it is newer, so the scan meets it later.
            }
            node = next;
        }
        return Bytes + SpareBytes <= maxBytes;
    }

    private void Evict(Block b)
    {
        _blocks.Remove(b.Key);
        _lru.Remove(b.Node!);
        b.Node = null;
        if (b.Parent is not null) b.Parent.Children--;
        b.Data.Dispose();
        b.Evicted = true;
        Interlocked.Add(ref _bytes, -BlockBytes);
        Interlocked.Decrement(ref _count);
        Interlocked.Increment(ref _evictions);
    }

    /// <summary>Spare buffers <see cref="Refill"/> keeps ready; 0 keeps none.</summary>
    public int SpareTarget { get; set; }

    /// <summary>Spare buffers held now.</summary>
    public int SpareCount => _spare.Count;

    /// <summary>
    /// Adds one spare buffer, its pages written so the kernel has faulted them in, when fewer than
    /// <see cref="SpareTarget"/> are held and blocks and spares stay within the budget and
    /// <paramref name="maxBytes"/>; returns whether it added one. Fresh memory costs its page faults
    /// and zeroing when first written (~0.4 ms per MB on a 2-core VM, several times the copy): the
    /// scheduler refills while idle so that a burst of prompts publishes its blocks into memory
    /// already in place instead of paying that between two decode steps.
    /// </summary>
    public bool Refill(long maxBytes)
    {
        if (_spare.Count >= SpareTarget || Bytes + SpareBytes + BlockBytes > Math.Min(BudgetBytes, maxBytes)) return false;
        var buffer = new NativeBuffer(BlockBytes / sizeof(float));
        buffer.AsSpan(0, (int)buffer.Length).Clear();
        PutSpare(buffer);
        return true;
    }

    private void PutSpare(NativeBuffer buffer)
    {
        _spare.Push(buffer);
        Interlocked.Add(ref _spareBytes, BlockBytes);
    }

    private NativeBuffer? TakeSpare()
    {
        if (!_spare.TryPop(out var buffer)) return null;
        Interlocked.Add(ref _spareBytes, -BlockBytes);
        return buffer;
    }

    /// <summary>Drops every block (pinned ones too: call only when no sequence uses the cache).</summary>
    public void Dispose()
    {
        while (TakeSpare() is { } spare) spare.Dispose();
        foreach (var b in _lru) { b.Data.Dispose(); b.Evicted = true; }
        _lru.Clear();
        _blocks.Clear();
        Interlocked.Exchange(ref _bytes, 0);
        Interlocked.Exchange(ref _count, 0);
    }
}
