using PiServe.Inference.Tokenization;

namespace PiServe.Inference.Tests.Tokenization;

/// <summary>The Oniguruma → .NET translation matches code points, not UTF-16 units.</summary>
public class OnigRegexTests
{
    private static string[] Matches(string pattern, string input) =>
        OnigRegex.Compile(pattern).For(input).Matches(input).Select(m => m.Value).ToArray();

    [Theory]
    [InlineData(@"\p{L}+", "ab𝐀𝐁c 𠀀x", new[] { "ab𝐀𝐁c", "𠀀x" })]
    [InlineData(@"\p{N}{1,3}", "𝟙𝟚𝟛𝟜5", new[] { "𝟙𝟚𝟛", "𝟜5" })]
    [InlineData(@"[^\s\p{L}\p{N}]+", "a😀🎉b !?", new[] { "😀🎉", "!?" })]
    [InlineData(@"[^\r\n\p{L}\p{N}]?\p{L}+", "😀abc 𝐀", new[] { "😀abc", " 𝐀" })]
    [InlineData(@".", "a😀", new[] { "a", "😀" })]
    [InlineData(@"\S+", "x😀y\u3000z", new[] { "x😀y", "z" })]
    [InlineData(@"\s+(?!\S)|\s+", "a   b", new[] { "  ", " " })]
    [InlineData(@"a{,2}b", "aaab", new[] { "aab" })]
    [InlineData(@"a++b", "aaab", new[] { "aaab" })]
    [InlineData(@"\x{1F600}+", "😀😀x", new[] { "😀😀" })]
    [InlineData(@"(?i:'s|'t)", "'S 't 'x", new[] { "'S", "'t" })]
    [InlineData(@"(?i:[a-c])+", "xAbCd", new[] { "AbC" })]
    [InlineData(@"(?i:[^a])", "Aab", new[] { "b" })]
    [InlineData(@"^\w+$", "ab\ncd", new[] { "ab", "cd" })]
    [InlineData(@"\d+", "12٣٤ x", new[] { "12٣٤" })]
    [InlineData(@"[\u4e00-\u9fa5]+", "abc中文def", new[] { "中文" })]
    [InlineData(@"[😀-😂]", "😁x", new[] { "😁" })]
    public void TranslatesToCodePointSemantics(string pattern, string input, string[] expected) =>
        Assert.Equal(expected, Matches(pattern, input));

    [Theory]
    [InlineData(@"\p{Han}")]
    [InlineData(@"[[:alpha:]]")]
    [InlineData(@"[a-z&&[^aeiou]]")]
    [InlineData(@"\R")]
    [InlineData(@"(?m:.)")]
    public void RejectsConstructsItCannotReproduce(string pattern) =>
        Assert.Throws<FormatException>(() => OnigRegex.Compile(pattern));
}
