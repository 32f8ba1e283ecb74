using System.Text.RegularExpressions;

namespace PiServe.Inference.Tokenization;

/// <summary>A piece of text produced by pre-tokenization. <see cref="AtOrigin"/>: starts at offset 0 of the input.</summary>
internal readonly record struct PreToken(string Text, bool AtOrigin);

internal enum SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous }

/// <summary>A tokenizer.json pre-tokenizer: splits pieces into smaller pieces (and may rewrite them).</summary>
internal abstract class PreTokenizer
{
    public abstract void PreTokenize(List<PreToken> pieces);

    /// <summary>
    /// HF's NormalizedString::split: <paramref name="spans"/> cover the text in order (start, end, isMatch);
    /// applies the delimiter behavior and appends the non-empty resulting pieces.
    /// </summary>
    protected static void ApplyBehavior(PreToken piece, List<(int Start, int End, bool IsMatch)> spans, SplitBehavior behavior,
        List<PreToken> output)
    {
        var result = new List<(int Start, int End, bool Remove)>(spans.Count);
        switch (behavior)
        {
            case SplitBehavior.Isolated:
                foreach (var s in spans) result.Add((s.Start, s.End, false));
                break;
            case SplitBehavior.Removed:
                foreach (var s in spans) result.Add((s.Start, s.End, s.IsMatch));
                break;
            case SplitBehavior.Contiguous:
            {
                bool previousMatch = false;
                foreach (var s in spans)
                {
                    if (s.IsMatch == previousMatch && result.Count > 0)
                        result[^1] = (result[^1].Start, s.End, false);
                    else
                        result.Add((s.Start, s.End, false));
                    previousMatch = s.IsMatch;
                }
                break;
            }
            case SplitBehavior.MergedWithPrevious:
            {
                bool previousMatch = false;
                foreach (var s in spans)
                {
                    if (s.IsMatch && !previousMatch && result.Count > 0)
                        result[^1] = (result[^1].Start, s.End, false);
                    else
                        result.Add((s.Start, s.End, false));
                    previousMatch = s.IsMatch;
                }
                break;
            }
            case SplitBehavior.MergedWithNext:
            {
                bool previousMatch = false;
                for (int i = spans.Count - 1; i >= 0; i--)
                {
                    var s = spans[i];
                    if (s.IsMatch && !previousMatch && result.Count > 0)
                        result[^1] = (s.Start, result[^1].End, false);
                    else
                        result.Add((s.Start, s.End, false));
                    previousMatch = s.IsMatch;
                }
                result.Reverse();
                break;
            }
        }
        foreach (var r in result)
        {
            if (r.Remove || r.End <= r.Start) continue;
            output.Add(new PreToken(piece.Text[r.Start..r.End], piece.AtOrigin && r.Start == 0));
        }
    }

    /// <summary>Spans of regex matches and the gaps between them (HF Pattern::find_matches).</summary>
    protected static List<(int, int, bool)> RegexSpans(OnigPattern pattern, string text, bool invert)
    {
        var regex = pattern.For(text);
        var spans = new List<(int, int, bool)>();
        if (text.Length == 0)
        {
            spans.Add((0, 0, invert));
            return spans;
        }
        int prev = 0;
        foreach (var m in regex.EnumerateMatches(text))
        {
            if (prev != m.Index) spans.Add((prev, m.Index, invert));
            spans.Add((m.Index, m.Index + m.Length, !invert));
            prev = m.Index + m.Length;
        }
        if (prev != text.Length) spans.Add((prev, text.Length, invert));
        return spans;
    }

    /// <summary>Spans where every character matching <paramref name="isDelimiter"/> is its own match.</summary>
    protected static List<(int, int, bool)> CharSpans(string text, Func<int, bool> isDelimiter)
    {
        var spans = new List<(int, int, bool)>();
        int last = 0;
        for (int i = 0; i < text.Length;)
        {
            int cp = CodePoints.At(text, i, out int units);
            if (isDelimiter(cp))
            {
                if (last < i) spans.Add((last, i, false));
                spans.Add((i, i + units, true));
                last = i + units;
            }
            i += units;
        }
        if (last < text.Length) spans.Add((last, text.Length, false));
        if (spans.Count == 0) spans.Add((0, 0, false));
        return spans;
    }

    protected void SplitEach(List<PreToken> pieces, Func<PreToken, List<(int, int, bool)>> spans, SplitBehavior behavior)
    {
        var output = new List<PreToken>(pieces.Count * 2);
        foreach (var p in pieces) ApplyBehavior(p, spans(p), behavior, output);
        pieces.Clear();
        pieces.AddRange(output);
    }
}

internal sealed class SequencePreTokenizer(PreTokenizer[] items) : PreTokenizer
{
    public IReadOnlyList<PreTokenizer> Items => items;

    public override void PreTokenize(List<PreToken> pieces)
    {
        foreach (var p in items) p.PreTokenize(pieces);
    }
}

/// <summary>HF "Split": split on a regex or literal pattern with a delimiter behavior, optionally inverted.</summary>
internal sealed class SplitPreTokenizer(OnigPattern regex, SplitBehavior behavior, bool invert) : PreTokenizer
{
    public override void PreTokenize(List<PreToken> pieces) =>
        SplitEach(pieces, p => RegexSpans(regex, p.Text, invert), behavior);
}

/// <summary>HF "ByteLevel": optional prefix space, optional GPT-2 regex split, then bytes → GPT-2 characters.</summary>
internal sealed class ByteLevelPreTokenizer(bool addPrefixSpace, bool useRegex) : PreTokenizer
{
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
    private static OnigPattern? s_regex;
    private static OnigPattern Gpt2Regex => s_regex ??= OnigRegex.Compile(Gpt2Pattern);

    public bool AddPrefixSpace { get; } = addPrefixSpace;

    public override void PreTokenize(List<PreToken> pieces)
    {
        if (AddPrefixSpace)
        {
            for (int i = 0; i < pieces.Count; i++)
                if (!pieces[i].Text.StartsWith(' '))
                    pieces[i] = pieces[i] with { Text = " " + pieces[i].Text };
        }
        if (useRegex)
        {
            var regex = Gpt2Regex;
            SplitEach(pieces, p => RegexSpans(regex, p.Text, false), SplitBehavior.Isolated);
        }
        for (int i = 0; i < pieces.Count; i++)
            pieces[i] = pieces[i] with { Text = ByteLevelMap.Encode(pieces[i].Text) };
    }
}

internal enum PrependScheme { Always, First, Never }

/// <summary>HF "Metaspace": spaces → replacement, prefix per scheme, optional split before each replacement.</summary>
internal sealed class MetaspacePreTokenizer(char replacement, PrependScheme scheme, bool split) : PreTokenizer
{
    public PrependScheme Scheme => scheme;

    public override void PreTokenize(List<PreToken> pieces)
    {
        string rep = replacement.ToString();
        for (int i = 0; i < pieces.Count; i++)
        {
            var p = pieces[i];
            string t = p.Text.Replace(" ", rep, StringComparison.Ordinal);
            bool prepend = scheme switch
            {
                PrependScheme.Always => !t.StartsWith(replacement),
                PrependScheme.First => !t.StartsWith(replacement) && p.AtOrigin,
                _ => false,
            };
            if (prepend) t = rep + t;
            pieces[i] = p with { Text = t };
        }
        if (split)
            SplitEach(pieces, p => CharSpans(p.Text, cp => cp == replacement), SplitBehavior.MergedWithNext);
    }
}

/// <summary>HF "Digits": numbers (Unicode N) isolated individually or as contiguous runs.</summary>
internal sealed class DigitsPreTokenizer(bool individual) : PreTokenizer
{
    private static bool IsNumeric(int cp) => System.Globalization.CharUnicodeInfo.GetUnicodeCategory(cp) is
        System.Globalization.UnicodeCategory.DecimalDigitNumber or System.Globalization.UnicodeCategory.LetterNumber
        or System.Globalization.UnicodeCategory.OtherNumber;

    public override void PreTokenize(List<PreToken> pieces) =>
        SplitEach(pieces, p => CharSpans(p.Text, IsNumeric), individual ? SplitBehavior.Isolated : SplitBehavior.Contiguous);
}

/// <summary>HF "WhitespaceSplit": split on whitespace, removing it.</summary>
internal sealed class WhitespaceSplitPreTokenizer : PreTokenizer
{
    public override void PreTokenize(List<PreToken> pieces) =>
        SplitEach(pieces, p => CharSpans(p.Text, OnigRegex.IsOnigSpace), SplitBehavior.Removed);
}

/// <summary>HF "Whitespace": keeps runs of \w+ and of [^\w\s]+.</summary>
internal sealed class WhitespacePreTokenizer : PreTokenizer
{
    private static OnigPattern? s_regex;
    private static OnigPattern Pattern => s_regex ??= OnigRegex.Compile(@"\w+|[^\w\s]+");

    public override void PreTokenize(List<PreToken> pieces) =>
        SplitEach(pieces, p => RegexSpans(Pattern, p.Text, true), SplitBehavior.Removed);
}
