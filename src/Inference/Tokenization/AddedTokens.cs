namespace PiServe.Inference.Tokenization;

/// <summary>An entry of tokenizer.json "added_tokens".</summary>
internal sealed record AddedToken(int Id, string Content, bool SingleWord, bool LStrip, bool RStrip, bool Normalized, bool Special);

/// <summary>
/// Finds added tokens in text the way HF's AddedVocabulary does: leftmost-longest matching, then
/// single_word (reject when glued to a word character), lstrip/rstrip (swallow adjacent whitespace).
/// </summary>
internal sealed class AddedTokenMatcher
{
    private sealed class Node
    {
        public Dictionary<char, Node>? Children;
        public AddedToken? Token;
    }

    private readonly Node _root = new();
    public bool IsEmpty { get; }

    /// <param name="patterns">(text to match, token) pairs.</param>
    public AddedTokenMatcher(IEnumerable<(string Pattern, AddedToken Token)> patterns)
    {
        bool any = false;
        foreach (var (pattern, token) in patterns)
        {
            if (pattern.Length == 0) continue;
            var node = _root;
            foreach (char c in pattern)
            {
                node.Children ??= new Dictionary<char, Node>();
                if (!node.Children.TryGetValue(c, out var child))
                    node.Children[c] = child = new Node();
                node = child;
            }
            node.Token ??= token; // first one wins for duplicate patterns
            any = true;
        }
        IsEmpty = !any;
    }

    /// <summary>A split of the text: [Start, End) and the added token it is, or null for plain text.</summary>
    public readonly record struct Segment(int Start, int End, AddedToken? Token);

    public List<Segment> Split(string text)
    {
        var result = new List<Segment>();
        if (IsEmpty || text.Length == 0)
        {
            result.Add(new Segment(0, text.Length, null));
            return result;
        }
        var rootChildren = _root.Children!;
        int startOffset = 0; // end of the last emitted split
        int i = 0;
        while (i < text.Length)
        {
            // leftmost-longest match starting at i
            if (!rootChildren.TryGetValue(text[i], out var node))
            {
                i++;
                continue;
            }
            AddedToken? found = null;
            int foundEnd = -1;
            int j = i;
            while (true)
            {
                if (node.Token is not null)
                {
                    found = node.Token;
                    foundEnd = j + 1;
                }
                j++;
                if (j >= text.Length || node.Children is null || !node.Children.TryGetValue(text[j], out node!)) break;
            }
            if (found is null)
            {
                i++;
                continue;
            }
            int start = i, stop = foundEnd;
            i = foundEnd; // the matcher resumes after the match, whether or not the match is kept
            if (start < startOffset) continue; // inside whitespace swallowed by a previous rstrip

            if (found.SingleWord)
            {
                bool startOk = start == 0 || !IsWordBefore(text, start);
                bool stopOk = stop == text.Length || !IsWordAt(text, stop);
                if (!startOk || !stopOk) continue;
            }
            if (found.LStrip)
            {
                int s = start;
                while (s > 0 && OnigRegex.IsOnigSpace(CodePointBefore(text, s, out int u))) s -= u;
                start = Math.Max(s, startOffset);
            }
            if (found.RStrip)
            {
                while (stop < text.Length && OnigRegex.IsOnigSpace(CodePoints.At(text, stop, out int u))) stop += u;
            }
            if (startOffset < start) result.Add(new Segment(startOffset, start, null));
            result.Add(new Segment(start, stop, found));
            startOffset = stop;
            i = Math.Max(i, stop);
        }
        if (startOffset != text.Length) result.Add(new Segment(startOffset, text.Length, null));
        return result;
    }

    private static int CodePointBefore(string text, int index, out int units)
    {
        char c = text[index - 1];
        if (char.IsLowSurrogate(c) && index >= 2 && char.IsHighSurrogate(text[index - 2]))
        {
            units = 2;
            return char.ConvertToUtf32(text[index - 2], c);
        }
        units = 1;
        return c;
    }

    private static bool IsWordBefore(string text, int index) => OnigRegex.IsOnigWord(CodePointBefore(text, index, out _));

    private static bool IsWordAt(string text, int index) => OnigRegex.IsOnigWord(CodePoints.At(text, index, out _));
}
