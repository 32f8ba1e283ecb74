namespace PiServe.Inference.Chat;

/// <summary>
/// A chat template that cannot be loaded, parsed or rendered. When the template itself calls
/// raise_exception('...'), <see cref="Exception.Message"/> is exactly the template's message and
/// <see cref="RaisedByTemplate"/> is true. A template that went past its <see cref="RenderLimits"/> throws the
/// subclass <see cref="ChatTemplateLimitException"/> (test with <c>catch (ChatTemplateLimitException)</c> or
/// <c>e is ChatTemplateLimitException</c>); every other template error is this class itself.
/// </summary>
public class ChatTemplateException : Exception
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

/// <summary>
/// A chat template that went past one of its <see cref="RenderLimits"/> (work budget, output size or the size
/// of a value it built): most likely a hostile or broken template rather than a bad request.
/// </summary>
public sealed class ChatTemplateLimitException : ChatTemplateException
{
    /// <summary>The limit the template went past.</summary>
    public RenderLimitKind Limit { get; }
    /// <summary>The value of that limit (steps, or characters / items).</summary>
    public long LimitValue { get; }

    public ChatTemplateLimitException(string message, RenderLimitKind limit, long limitValue, int? line, int? column, Exception? inner = null)
        : base(message, line, column, inner: inner)
    {
        Limit = limit;
        LimitValue = limitValue;
    }
}
