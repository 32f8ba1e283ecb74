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
    /// <summary>Characters of primed context still to be cut from the output.</summary>
    private int _skip;

    /// <summary>
    /// Tokens of context before the generated ones, as vLLM's incremental detokenizer keeps (its
    /// prefix offset): enough for any decoder's start-of-sequence rule to act on the context instead of
    /// the first generated token, and for a character split over byte tokens to be whole again.
    /// </summary>
    public const int ContextTokens = 6;

    internal StreamingDecoder(HfTokenizer tokenizer, bool skipSpecialTokens)
    {
        _tokenizer = tokenizer;
        _skipSpecialTokens = skipSpecialTokens;
        _pipeline = tokenizer.CreatePipeline();
    }

    /// <summary>
    /// Decodes what follows <paramref name="context"/> (the prompt) as a continuation of it: the text of
    /// the generated ids is then decode(context + generated) minus decode(context), as vLLM computes
    /// it. Without it the first token is decoded as the start of a sequence, and SentencePiece
    /// decoders drop its leading space ("of the" where the prompt "In the beginning" needs " of the").
    /// Only the last <see cref="ContextTokens"/> ids matter. Call before the first <see cref="Append"/>.
    /// </summary>
    public void Prime(ReadOnlySpan<int> context)
    {
        if (context.Length > ContextTokens) context = context[^ContextTokens..];
        _skip = _tokenizer.Decode(context, _skipSpecialTokens).Length;
        foreach (int id in context)
            if (_tokenizer.PieceForDecode(id, _skipSpecialTokens) is { } piece) _pipeline.Push(piece);
    }

    /// <summary>Adds one generated token; returns the newly completed text (possibly empty).</summary>
    public string Append(int tokenId)
    {
        if (_tokenizer.PieceForDecode(tokenId, _skipSpecialTokens) is not { } piece) return "";
        _pipeline.Push(piece);
        return Unprimed(_pipeline.Take());
    }

    /// <summary>Cuts the primed context's own text from the front of the output.</summary>
    private string Unprimed(string text)
    {
        if (_skip == 0 || text.Length == 0) return text;
        int cut = Math.Min(_skip, text.Length);
        _skip -= cut;
        return text[cut..];
    }

    /// <summary>Ends the sequence: returns whatever was held back (an incomplete character becomes U+FFFD, as
    /// Decode would produce) and resets the decoder for a new sequence.</summary>
    public string Flush()
    {
        _pipeline.End();
        string rest = Unprimed(_pipeline.Take());
        _pipeline = _tokenizer.CreatePipeline();
        _skip = 0;
        return rest;
    }
}
