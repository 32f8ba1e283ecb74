namespace PiServe.Inference.Tokenization;

/// <summary>
/// Incremental detokenization for streaming generation. Feed ids one by one with <see cref="Append"/>; each call
/// returns the text that became final with that token (possibly ""). Text is held back while it could still
/// change: an incomplete UTF-8 sequence split across byte tokens, a trailing space that clean-up could remove,
/// and so on, so no result ever contains a broken character. <see cref="Flush"/> ends the sequence and
/// returns the rest. The concatenation of all results equals <see cref="ITokenizer.Decode"/> of all the ids.
/// Not thread-safe: use one instance per sequence. After <see cref="Flush"/> the decoder starts a new sequence.
/// </summary>
public sealed class StreamingDecoder
{
    private readonly HfTokenizer _tokenizer;
    private readonly bool _skipSpecialTokens;
    private DecodePipeline _pipeline;

    internal StreamingDecoder(HfTokenizer tokenizer, bool skipSpecialTokens)
    {
        _tokenizer = tokenizer;
        _skipSpecialTokens = skipSpecialTokens;
        _pipeline = tokenizer.CreatePipeline();
    }

    /// <summary>Adds one generated token; returns the newly completed text (possibly empty).</summary>
    public string Append(int tokenId)
    {
        if (_tokenizer.PieceForDecode(tokenId, _skipSpecialTokens) is not { } piece) return "";
        _pipeline.Push(piece);
        return _pipeline.Take();
    }

    /// <summary>Ends the sequence: returns whatever was held back (an incomplete character becomes U+FFFD, as
    /// Decode would produce) and resets the decoder for a new sequence.</summary>
    public string Flush()
    {
        _pipeline.End();
        string rest = _pipeline.Take();
        _pipeline = _tokenizer.CreatePipeline();
        return rest;
    }
}
