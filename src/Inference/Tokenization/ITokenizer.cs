namespace PiServe.Inference.Tokenization;

/// <summary>
/// A text tokenizer loaded from a Hugging Face tokenizer folder (see <see cref="TokenizerLoader"/>).
/// Implementations are thread-safe: one instance may encode and decode from many threads at once.
/// </summary>
public interface ITokenizer
{
    /// <summary>Number of token ids, including added tokens (max id + 1).</summary>
    int VocabSize { get; }

    /// <summary>Beginning-of-sequence token id, if the tokenizer has one.</summary>
    int? BosTokenId { get; }

    /// <summary>End-of-sequence token id, if the tokenizer has one.</summary>
    int? EosTokenId { get; }

    /// <summary>Whether <c>Encode(text, addSpecialTokens: true)</c> prepends <see cref="BosTokenId"/>.</summary>
    bool AddsBos { get; }

    /// <summary>
    /// Encodes <paramref name="text"/> exactly as Hugging Face <c>tokenizer.encode(text)</c> does.
    /// Special-token text (e.g. "&lt;s&gt;") in the input is recognised as the special token.
    /// With <paramref name="addSpecialTokens"/> the post-processor's tokens (BOS, ...) are added.
    /// </summary>
    int[] Encode(string text, bool addSpecialTokens = true);

    /// <summary>Decodes ids as Hugging Face <c>tokenizer.decode(ids)</c> does. Unknown ids are skipped.</summary>
    string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false);

    /// <summary>The raw vocabulary string of a token (e.g. "▁hello", "Ġworld", "&lt;0x0A&gt;"), or null if out of range.</summary>
    string? TokenToPiece(int id);

    /// <summary>Whether <paramref name="id"/> is a special added token (skipped by <c>skipSpecialTokens</c>).</summary>
    bool IsSpecial(int id);

    /// <summary>Creates an incremental decoder for streaming generated tokens.</summary>
    StreamingDecoder CreateStreamingDecoder(bool skipSpecialTokens = false);
}
