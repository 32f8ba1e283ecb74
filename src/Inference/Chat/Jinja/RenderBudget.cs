using System.Runtime.CompilerServices;
using System.Text;

namespace PiServe.Inference.Chat.Jinja;

/// <summary>A template went past one of its <see cref="RenderLimits"/>; the interpreter adds the location.</summary>
internal sealed class RenderLimitExceededException(string message, RenderLimitKind limit, long limitValue) : Exception(message)
{
    public RenderLimitKind Limit { get; } = limit;
    public long LimitValue { get; } = limitValue;
    /// <summary>Where the innermost expression or statement that went past the limit starts; set once, by the interpreter.</summary>
    public int? Line { get; set; }
    public int? Column { get; set; }
}

/// <summary>
/// The work and size budget of one render, and its cancellation token. The Python-semantics helpers (Py,
/// Filters, Methods, Format, PyJson) are static and called from deep inside expressions, so the render in
/// progress on this thread is found through a thread-static rather than passed down every call: rendering is
/// synchronous and never leaves its thread. Outside a render the default limits still bound value sizes.
/// </summary>
internal sealed class RenderBudget
{
    /// <summary>One step is about one node evaluation, which costs about as much as copying this many characters.</summary>
    public const int CharsPerStep = 256;

    /// <summary>The token is read every this many steps: often enough to stop within milliseconds, rarely enough to cost nothing.</summary>
    private const int CancellationCheckInterval = 1024;

    [ThreadStatic] private static RenderBudget? t_current;

    private readonly CancellationToken _cancellation;
    private long _steps;
    private long _nextCancellationCheck;

    public RenderLimits Limits { get; }

    public RenderBudget(RenderLimits limits, CancellationToken cancellation)
    {
        Limits = limits;
        _cancellation = cancellation;
    }

    public long StepsTaken => _steps;

    /// <summary>Makes this the budget of the render on this thread until the returned scope is disposed.</summary>
    public Activation Activate()
    {
        var previous = t_current;
        t_current = this;
        _cancellation.ThrowIfCancellationRequested();
        return new Activation(previous);
    }

    public readonly struct Activation(RenderBudget? previous) : IDisposable
    {
        public void Dispose() => t_current = previous;
    }

    private static RenderLimits CurrentLimits => t_current?.Limits ?? RenderLimits.Default;

    // ---------------------------------------------------------------- work

    /// <summary>Spends steps of the render in progress (none outside a render).</summary>
    public static void Charge(long steps) => t_current?.Spend(steps);

    /// <summary>Spends what reading or building a value of this size costs: its items, or its characters / 256.</summary>
    public static void ChargeFor(object? value) => t_current?.Spend(WorkOf(value));

    public static long WorkOf(object? value) => value switch
    {
        string s => s.Length / CharsPerStep,
        List<object?> l => l.Count,
        PyTuple t => t.Count,
        PyDict d => d.Count,
        _ => 0,
    };

    /// <summary>What sorting n items costs: n·log2(n) comparisons.</summary>
    public static void ChargeSort(long n)
    {
        if (n > 1) Charge(n * (64 - long.LeadingZeroCount(n - 1)));
    }

    public void Spend(long steps)
    {
        _steps += steps;
        if (_steps > Limits.MaxSteps || _steps < 0)
            throw new RenderLimitExceededException($"the chat template exceeded its work budget of {Limits.MaxSteps} steps",
                RenderLimitKind.Steps, Limits.MaxSteps);
        if (_steps >= _nextCancellationCheck)
        {
            _cancellation.ThrowIfCancellationRequested();
            _nextCancellationCheck = _steps + CancellationCheckInterval;
        }
    }

    // ---------------------------------------------------------------- sizes

    /// <summary>Throws unless a string of this many characters may be built. Call before allocating it.</summary>
    public static void CheckStringLength(long length)
    {
        var limits = CurrentLimits;
        if (length > limits.MaxStringChars || length < 0)
            throw new RenderLimitExceededException(
                $"the chat template exceeded its limit of {limits.MaxStringChars} characters for a string value",
                RenderLimitKind.StringChars, limits.MaxStringChars);
    }

    /// <summary>Throws unless a list of this many items may be built. Call before allocating it.</summary>
    public static void CheckListLength(long count)
    {
        var limits = CurrentLimits;
        if (count > limits.MaxStringChars || count < 0)
            throw new RenderLimitExceededException(
                $"the chat template exceeded its limit of {limits.MaxStringChars} items for a list value",
                RenderLimitKind.StringChars, limits.MaxStringChars);
    }

    /// <summary>n copies of something of this length: checked without overflowing.</summary>
    public static void CheckRepeatedStringLength(long length, long copies)
    {
        if (length == 0 || copies <= 0) return;
        CheckStringLength(copies > long.MaxValue / length ? long.MaxValue : length * copies);
    }

    public static void CheckRepeatedListLength(long count, long copies)
    {
        if (count == 0 || copies <= 0) return;
        CheckListLength(copies > long.MaxValue / count ? long.MaxValue : count * copies);
    }

    /// <summary>Appends to a string value under construction, checking its size first.</summary>
    public static StringBuilder Append(StringBuilder sb, string text)
    {
        CheckStringLength((long)sb.Length + text.Length);
        return sb.Append(text);
    }

    /// <summary>Appends count copies of a character to a string value under construction, checking its size first.</summary>
    public static StringBuilder Append(StringBuilder sb, char c, long count)
    {
        CheckStringLength(sb.Length + Math.Max(0, count));
        return count > 0 ? sb.Append(c, (int)count) : sb;
    }

    /// <summary>count copies of a character as a string value, checked before allocating.</summary>
    public static string Repeat(char c, long count)
    {
        if (count <= 0) return "";
        CheckStringLength(count);
        return new string(c, (int)count);
    }

    // ---------------------------------------------------------------- recursion

    /// <summary>
    /// Stops recursion over values (repr of a list that contains itself, equality of deep structures) before the
    /// stack runs out: a StackOverflowException would take down the whole server.
    /// </summary>
    public static void EnsureStack()
    {
        if (!RuntimeHelpers.TryEnsureSufficientExecutionStack())
            throw new JinjaRuntimeException("the value or template is nested too deeply (or contains itself)");
    }
}
