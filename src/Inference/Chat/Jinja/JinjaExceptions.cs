namespace PiServe.Inference.Chat.Jinja;

/// <summary>An error while rendering (a TypeError, an undefined value used, ...): the interpreter adds the location.</summary>
internal class JinjaRuntimeException(string message) : Exception(message);

/// <summary>raise_exception(msg) from the template itself: its message is passed on verbatim.</summary>
internal sealed class TemplateRaisedException(string message) : Exception(message);

/// <summary>A syntax error at a place in the template source.</summary>
internal sealed class JinjaSyntaxException(string message, int line, int column)
    : Exception($"line {line}, column {column}: {message}")
{
    public string Reason { get; } = message;
    public int Line { get; } = line;
    public int Column { get; } = column;
}
