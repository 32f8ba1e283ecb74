// TEMPORARY until the tokenizer branch merges.
namespace PiServe.Inference.Tokenization
{
    public interface ITokenizer { int[] Encode(string text, bool addSpecialTokens = true); }
    public static class TokenizerLoader { public static ITokenizer Load(string d) => throw new NotSupportedException(); }
    public sealed class TokenizerFormatException : Exception { }
}
