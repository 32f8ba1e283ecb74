namespace PiServe.Inference.Chat;

/// <summary>
/// A chat template that cannot be loaded, parsed or rendered. When the template itself calls
/// raise_exception('...'), <see cref="Exception.Message"/> is exactly the template's message and
/// <see cref="RaisedByTemplate"/> is true.
/// </summary>
public sealed class ChatTemplateException : Exception
{
    /// <summary>1-based line of the error in the template source, when known.</summary>
    public int? Line { get; }
    /// <summary>1-based column of the error in the template source, when known.</summary>
    public int? Column { get; }
    /// <summary>True when the template called raise_exception().</summary>
    public bool RaisedByTemplate { get; }

    public ChatTemplateException(string message) : base(message) { }

    public ChatTemplateException(string message, Exception? inner) : base(message, inner) { }

    public ChatTemplateException(string message, int? line, int? column, bool raisedByTemplate = false, Exception? inner = null)
        : base(message, inner)
    {
        Line = line;
        Column = column;
        RaisedByTemplate = raisedByTemplate;
    }
}
