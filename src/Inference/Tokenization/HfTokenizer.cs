namespace PiServe.Inference.Tokenization;

/// <summary>
/// The HF tokenizers pipeline: added-token extraction → normalizer → added-token extraction on the
/// normalized text (tokens with normalized=true) → pre-tokenizer → BPE model → post-processor; decoding
/// runs the decoder chain (and transformers' clean-up when tokenizer_config.json asks for it).
/// </summary>
internal sealed class HfTokenizer : ITokenizer
{
    private readonly BpeModel _model;
    private readonly string?[] _pieces;       // id → token string (vocab and added tokens)
    private readonly bool[] _special;         // id → special added token
    private readonly AddedTokenMatcher _rawMatcher;        // added tokens with normalized=false
    private readonly AddedTokenMatcher _normalizedMatcher; // added tokens with normalized=true (normalized form)
    private readonly Normalizer? _normalizer;
    private readonly PreTokenizer? _preTokenizer;
    private readonly int[] _prefix;   // ids the post-processor puts before the text
    private readonly int[] _suffix;   // ids the post-processor puts after the text
    private readonly IReadOnlyList<DecoderSpec> _decoder;
    private readonly bool _cleanup;

    public HfTokenizer(BpeModel model, IReadOnlyList<AddedToken> addedTokens, Normalizer? normalizer, PreTokenizer? preTokenizer,
        int[] prefix, int[] suffix, IReadOnlyList<DecoderSpec> decoder, bool cleanupSpaces, int? bosTokenId, int? eosTokenId)
    {
        _model = model;
        _normalizer = normalizer;
        _preTokenizer = preTokenizer;
        _prefix = prefix;
        _suffix = suffix;
        _decoder = decoder;
        _cleanup = cleanupSpaces;
        BosTokenId = bosTokenId;
        EosTokenId = eosTokenId;

        int maxId = -1;
        foreach (var id in model.Vocab.Values) maxId = Math.Max(maxId, id);
        foreach (var t in addedTokens) maxId = Math.Max(maxId, t.Id);
        VocabSize = maxId + 1;
        _pieces = new string?[VocabSize];
        _special = new bool[VocabSize];
        foreach (var (token, id) in model.Vocab) _pieces[id] = token;
        foreach (var t in addedTokens)
        {
            _pieces[t.Id] = t.Content;
            _special[t.Id] = t.Special;
        }

        _rawMatcher = new AddedTokenMatcher(addedTokens.Where(t => !t.Normalized).Select(t => (t.Content, t)));
        _normalizedMatcher = new AddedTokenMatcher(addedTokens.Where(t => t.Normalized)
            .Select(t => (normalizer?.Normalize(t.Content) ?? t.Content, t)));

        AddsBos = bosTokenId is { } bos && prefix.Length > 0 && prefix[0] == bos;
    }

    public int VocabSize { get; }
    public int? BosTokenId { get; }
    public int? EosTokenId { get; }
    public bool AddsBos { get; }

    public int[] Encode(string text, bool addSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(text);
        text = CodePoints.Sanitize(text);
        var ids = new List<int>(text.Length / 3 + 4);
        if (addSpecialTokens) ids.AddRange(_prefix);
        EncodeText(text, ids);
        if (addSpecialTokens) ids.AddRange(_suffix);
        return ids.ToArray();
    }

    private void EncodeText(string text, List<int> ids)
    {
        var pieces = new List<PreToken>();
        foreach (var seg in _rawMatcher.Split(text))
        {
            if (seg.Token is { } token)
            {
                ids.Add(token.Id);
                continue;
            }
            if (seg.End <= seg.Start) continue;
            string part = text[seg.Start..seg.End];
            bool atOrigin = seg.Start == 0;
            string normalized = _normalizer?.Normalize(part) ?? part;
            if (normalized.Length == 0) continue;
            foreach (var sub in _normalizedMatcher.Split(normalized))
            {
                if (sub.Token is { } t2)
                {
                    ids.Add(t2.Id);
                    continue;
                }
                if (sub.End <= sub.Start) continue;
                pieces.Clear();
                pieces.Add(new PreToken(normalized[sub.Start..sub.End], atOrigin && sub.Start == 0));
                _preTokenizer?.PreTokenize(pieces);
                foreach (var p in pieces) _model.Encode(p.Text, ids);
            }
        }
    }

    public string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false)
    {
        var pipeline = CreatePipeline();
        foreach (int id in ids)
        {
            if (PieceForDecode(id, skipSpecialTokens) is { } piece) pipeline.Push(piece);
        }
        pipeline.End();
        return pipeline.Take();
    }

    internal DecodePipeline CreatePipeline() => new(_decoder, _cleanup);

    /// <summary>The token string that enters the decoder, or null when the id is skipped.</summary>
    internal string? PieceForDecode(int id, bool skipSpecialTokens)
    {
        if ((uint)id >= (uint)_pieces.Length) return null;
        if (skipSpecialTokens && _special[id]) return null;
        return _pieces[id];
    }

    public string? TokenToPiece(int id) => (uint)id < (uint)_pieces.Length ? _pieces[id] : null;

    public bool IsSpecial(int id) => (uint)id < (uint)_special.Length && _special[id];

    public StreamingDecoder CreateStreamingDecoder(bool skipSpecialTokens = false) => new(this, skipSpecialTokens);
}
