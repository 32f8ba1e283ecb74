using System.Text;
using System.Text.RegularExpressions;

namespace PiServe.Inference.Tokenization;

/// <summary>A tokenizer.json normalizer: rewrites the text of a segment before pre-tokenization.</summary>
internal abstract class Normalizer
{
    public abstract string Normalize(string text);
}

/// <summary>HF "Prepend": adds a prefix to any non-empty text.</summary>
internal sealed class PrependNormalizer(string prepend) : Normalizer
{
    public string Prefix => prepend;

    public override string Normalize(string text) => text.Length == 0 ? text : prepend + text;
}

/// <summary>HF "Replace" with a String or Regex pattern (all non-overlapping occurrences, leftmost first).</summary>
internal sealed class ReplaceNormalizer : Normalizer
{
    private readonly string? _literal;
    private readonly OnigPattern? _regex;
    private readonly string _content;

    public ReplaceNormalizer(string? literal, OnigPattern? regex, string content)
    {
        _literal = literal;
        _regex = regex;
        _content = content;
    }

    public override string Normalize(string text)
    {
        if (_literal is not null)
            return _literal.Length == 0 ? text : text.Replace(_literal, _content, StringComparison.Ordinal);
        return _regex!.For(text).Replace(text, _ => _content);
    }
}

internal sealed class SequenceNormalizer(Normalizer[] normalizers) : Normalizer
{
    public IReadOnlyList<Normalizer> Items => normalizers;

    public override string Normalize(string text)
    {
        foreach (var n in normalizers) text = n.Normalize(text);
        return text;
    }
}

/// <summary>HF "NFC", "NFD", "NFKC", "NFKD": Unicode normalization by the managed <see cref="UnicodeNormalization"/>
/// (string.Normalize is a no-op under InvariantGlobalization).</summary>
internal sealed class UnicodeFormNormalizer(NormalizationForm form) : Normalizer
{
    public NormalizationForm Form => form;

    public override string Normalize(string text) => UnicodeNormalization.Normalize(text, form);
}

/// <summary>HF "Strip": removes leading and/or trailing whitespace (Unicode White_Space).</summary>
internal sealed class StripNormalizer(bool left, bool right) : Normalizer
{
    public override string Normalize(string text)
    {
        int s = 0, e = text.Length;
        if (left) while (s < e && OnigRegex.IsOnigSpace(text[s])) s++;
        if (right) while (e > s && OnigRegex.IsOnigSpace(text[e - 1])) e--;
        return text[s..e];
    }
}
