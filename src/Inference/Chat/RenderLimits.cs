namespace PiServe.Inference.Chat;

/// <summary>
/// How much a chat template may do in one <see cref="ChatTemplate.Render(IReadOnlyList{ChatMessage}, bool, IReadOnlyDictionary{string, object?}?, CancellationToken, RenderLimits?)"/>.
/// Templates come with checkpoints, so a hostile one must not be able to hang a request or exhaust memory:
/// going past any limit throws <see cref="ChatTemplateLimitException"/>. The defaults leave real templates
/// (a few thousand steps per conversation turn) orders of magnitude of room.
/// </summary>
public sealed record RenderLimits
{
    /// <summary>The limits Render uses when given none.</summary>
    public static RenderLimits Default { get; } = new();

    private readonly long _maxSteps = 5_000_000;
    private readonly int _maxOutputChars = 1_000_000;
    private readonly int _maxStringChars = 1_000_000;

    /// <summary>
    /// The work budget. A step is one statement, one expression evaluation or one loop iteration; calls on
    /// large values also pay for their work: one step per list, tuple or dict item and one per
    /// 256 characters of string they read or build, and a sort n·log2(n) steps.
    /// </summary>
    public long MaxSteps
    {
        get => _maxSteps;
        init => _maxSteps = value > 0 ? value : throw new ArgumentOutOfRangeException(nameof(MaxSteps), value, "must be positive");
    }

    /// <summary>The most characters the rendered prompt may have.</summary>
    public int MaxOutputChars
    {
        get => _maxOutputChars;
        init => _maxOutputChars = value > 0 ? value : throw new ArgumentOutOfRangeException(nameof(MaxOutputChars), value, "must be positive");
    }

    /// <summary>
    /// The most characters of any one string, and the most items of any one list, the template builds while
    /// rendering (checked before the value is allocated; range() is checked before it is materialised).
    /// </summary>
    public int MaxStringChars
    {
        get => _maxStringChars;
        init => _maxStringChars = value > 0 ? value : throw new ArgumentOutOfRangeException(nameof(MaxStringChars), value, "must be positive");
    }
}

/// <summary>Which of <see cref="RenderLimits"/> a template went past.</summary>
public enum RenderLimitKind
{
    /// <summary><see cref="RenderLimits.MaxSteps"/>.</summary>
    Steps,
    /// <summary><see cref="RenderLimits.MaxOutputChars"/>.</summary>
    OutputChars,
    /// <summary><see cref="RenderLimits.MaxStringChars"/>.</summary>
    StringChars,
}
