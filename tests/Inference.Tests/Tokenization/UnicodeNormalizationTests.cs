using System.IO.Compression;
using System.Text;
using PiServe.Inference.Tokenization;
using Xunit.Abstractions;

namespace PiServe.Inference.Tests.Tokenization;

/// <summary>
/// The managed NFC/NFD/NFKC/NFKD (<see cref="UnicodeNormalization"/>) against two independent references:
/// Unicode's own conformance file NormalizationTest.txt (of the UCD version the tables come from, from Debian's
/// unicode-data package) and Python's unicodedata.normalize recorded by tools/unicode/gen_python_fixture.py.
/// </summary>
public sealed class UnicodeNormalizationTests(ITestOutputHelper output)
{
    private static readonly NormalizationForm[] Forms =
        [NormalizationForm.FormC, NormalizationForm.FormD, NormalizationForm.FormKC, NormalizationForm.FormKD];

    private static string Dir => Path.Combine(RepoPaths.Fixtures, "unicode");

    private static IEnumerable<string> GzLines(string file)
    {
        using var gz = new GZipStream(File.OpenRead(Path.Combine(Dir, file)), CompressionMode.Decompress);
        using var reader = new StreamReader(gz, Encoding.UTF8);
        while (reader.ReadLine() is { } line) yield return line;
    }

    private static string FromCodePoint(int cp) => cp is >= 0xD800 and <= 0xDFFF ? ((char)cp).ToString() : char.ConvertFromUtf32(cp);

    private static string Parse(string hex) =>
        string.Concat(hex.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(h => FromCodePoint(Convert.ToInt32(h, 16))));

    private static string Hex(string s) => string.Join(" ", s.Select(c => ((int)c).ToString("X4")));

    private static string N(string s, NormalizationForm f) => UnicodeNormalization.Normalize(s, f);

    [Fact]
    public void Conformance_file_NormalizationTest_txt()
    {
        string file = $"NormalizationTest-{UnicodeNormalization.UnicodeVersion}.txt.gz";
        Assert.True(File.Exists(Path.Combine(Dir, file)), $"no {file} for the tables' Unicode version");
        var failures = new List<string>();
        var listedInPart1 = new HashSet<int>();
        string part = "";
        int lines = 0;
        foreach (string raw in GzLines(file))
        {
            string line = raw.Split('#')[0].Trim();
            if (line.Length == 0) continue;
            if (line.StartsWith('@')) { part = line; continue; }
            var c = line.Split(';').Take(5).Select(Parse).ToArray();
            lines++;
            if (part == "@Part1") listedInPart1.Add(char.ConvertToUtf32(c[0], 0));
            void Check(string expected, NormalizationForm form, params int[] sources)
            {
                foreach (int i in sources)
                {
                    string got = N(c[i], form);
                    if (got != expected) failures.Add($"{form}(c{i + 1} = {Hex(c[i])}) = {Hex(got)}, expected {Hex(expected)}");
                }
            }
            Check(c[1], NormalizationForm.FormC, 0, 1, 2);
            Check(c[3], NormalizationForm.FormC, 3, 4);
            Check(c[2], NormalizationForm.FormD, 0, 1, 2);
            Check(c[4], NormalizationForm.FormD, 3, 4);
            Check(c[3], NormalizationForm.FormKC, 0, 1, 2, 3, 4);
            Check(c[4], NormalizationForm.FormKD, 0, 1, 2, 3, 4);
        }
        // Every code point not in part 1 normalizes to itself in all forms (surrogates are not code points here).
        int unlisted = 0;
        for (int cp = 0; cp <= 0x10FFFF; cp++)
        {
            if (cp is >= 0xD800 and <= 0xDFFF || listedInPart1.Contains(cp)) continue;
            string s = char.ConvertFromUtf32(cp);
            unlisted++;
            foreach (var f in Forms)
                if (N(s, f) != s) failures.Add($"{f}({cp:X4}) = {Hex(N(s, f))}, expected itself");
        }
        output.WriteLine($"Unicode {UnicodeNormalization.UnicodeVersion}: {lines} NormalizationTest.txt lines (x 18 checks), " +
                         $"{unlisted} unlisted code points x 4 forms; {failures.Count} failures");
        Assert.True(lines > 19000, $"only {lines} lines");
        if (failures.Count > 0) Assert.Fail($"{failures.Count} failures:\n" + string.Join("\n", failures.Take(30)));
    }

    [Fact]
    public void Matches_python_unicodedata()
    {
        var failures = new List<string>();
        var own = new HashSet<int>();
        var assigned = new List<(int Lo, int Hi)>();
        int cases = 0;
        foreach (string line in GzLines("python-unicodedata.txt.gz"))
        {
            if (line.StartsWith('#')) { output.WriteLine(line); continue; }
            if (line.StartsWith("@assigned ", StringComparison.Ordinal))
            {
                foreach (string r in line["@assigned ".Length..].Split(' '))
                {
                    var ends = r.Split("..");
                    assigned.Add((Convert.ToInt32(ends[0], 16), Convert.ToInt32(ends[1], 16)));
                }
                continue;
            }
            var c = line.Split(';').Select(Parse).ToArray();
            cases++;
            if (c[0].Length == 1) own.Add(c[0][0]);
            else if (c[0].Length == 2 && char.IsSurrogatePair(c[0][0], c[0][1])) own.Add(char.ConvertToUtf32(c[0][0], c[0][1]));
            for (int i = 0; i < 4; i++)
            {
                string got = N(c[0], Forms[i]);
                if (got != c[i + 1]) failures.Add($"{Forms[i]}({Hex(c[0])}) = {Hex(got)}, python {Hex(c[i + 1])}");
            }
        }
        int identity = 0;
        foreach (var (lo, hi) in assigned)
            for (int cp = lo; cp <= hi; cp++)
            {
                if (own.Contains(cp)) continue;
                string s = FromCodePoint(cp);
                identity++;
                foreach (var f in Forms)
                    if (N(s, f) != s) failures.Add($"{f}({cp:X4}) = {Hex(N(s, f))}, python: itself");
            }
        output.WriteLine($"{cases} python cases x 4 forms, {identity} further assigned code points (surrogates included) " +
                         $"normalize to themselves; {failures.Count} failures");
        Assert.True(cases > 20000 && identity > 250000, $"fixture too small: {cases} cases, {identity} identities");
        if (failures.Count > 0) Assert.Fail($"{failures.Count} failures:\n" + string.Join("\n", failures.Take(30)));
    }

    [Fact]
    public void Ill_formed_text_passes_through()
    {
        // (xUnit cannot tell InlineData strings with lone surrogates apart, hence a loop.)
        foreach (string s in new[] { "\uFFFE", "\uD800", "a\uDC00\u0301", "\uD83D", "e\u0301\uD800\u0301x\uDFFF" })
            foreach (var f in Forms)
            {
                string got = N(s, f);
                Assert.Equal(s.Count(char.IsSurrogate), got.Count(char.IsSurrogate));
            }
        Assert.Equal("\uFFFE", N("\uFFFE", NormalizationForm.FormKC));
        Assert.Equal("\u00E9\uD800\u0301x\uDFFF", N("e\u0301\uD800\u0301x\uDFFF", NormalizationForm.FormC));
    }

    [Fact]
    public void Examples()
    {
        Assert.Equal("\u00E9", N("e\u0301", NormalizationForm.FormC));
        Assert.Equal("e\u0301", N("\u00E9", NormalizationForm.FormD));
        Assert.Equal("fi", N("\uFB01", NormalizationForm.FormKC));
        Assert.Equal("\uAC01", N("\u1100\u1161\u11A8", NormalizationForm.FormC));
        Assert.Equal("\u1100\u1161\u11A8", N("\uAC01", NormalizationForm.FormD));
        Assert.Equal("\u1E69", N("s\u0323\u0307", NormalizationForm.FormC));
        Assert.Equal("\u1E69", N("s\u0307\u0323", NormalizationForm.FormC));
        Assert.Equal("plain ascii", N("plain ascii", NormalizationForm.FormKC));
        Assert.Same(string.Empty, N(string.Empty, NormalizationForm.FormC));
    }
}
