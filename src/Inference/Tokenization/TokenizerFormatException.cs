namespace PiServe.Inference.Tokenization;

/// <summary>
/// A tokenizer folder is missing, malformed, or uses a component this implementation does not support.
/// The message names the file and the JSON field, e.g. <c>tokenizer.json: model.merges[17]: ...</c>.
/// </summary>
public sealed class TokenizerFormatException : Exception
{
    public TokenizerFormatException(string message) : base(message) { }

    public TokenizerFormatException(string message, Exception? innerException) : base(message, innerException) { }
}
