using System.Text;

namespace PiServe.Inference.Tests.Tokenization;

/// <summary>Deterministic test strings for the differential tests: a fixed list of tricky cases plus
/// seeded random mixtures of fragments from many scripts and character classes.</summary>
public static class TokenizerCorpus
{
    public static readonly string[] Fixed =
    [
        "",
        " ",
        "  ",
        "   ",
        "\n",
        "\n\n",
        "\t",
        "Hello world",
        "Hello, world!",
        "hello",
        " hello",
        "  hello",
        "   hello   ",
        "hello ",
        "hello  ",
        "Hello . world , really ? yes ! don't I'm you're we've it's they'll he'd",
        "I can 't , won 't and shouldn 't ' quoted ' text .",
        "The quick brown fox jumps over the lazy dog.",
        "THE QUICK BROWN FOX'S JUMP'S",
        "'s 't 're 've 'm 'll 'd 'S 'T 'RE 'VE 'M 'LL 'D",
        "don'T WON'T I'M",
        "Ünïcödé àccents: café, naïve, résumé, Ångström, Øresund, Straße",
        "Ελληνικά: Γειά σου κόσμε, αβγδεζηθ",
        "Русский: Привет, мир! Съешь же ещё этих мягких французских булок.",
        "العربية: مرحبا بالعالم",
        "עברית: שלום עולם",
        "हिन्दी: नमस्ते दुनिया",
        "ภาษาไทย สวัสดีชาวโลก",
        "中文：你好，世界！我们的测试。",
        "日本語：こんにちは世界、カタカナ、ひらがな。",
        "한국어: 안녕하세요 세계",
        "Emoji: 😀 😃 😄 🎉 🚀 ❤️ 👍🏽",
        "ZWJ: 👨‍👩‍👧‍👦 👩🏽‍💻 🏳️‍🌈 🧑‍🤝‍🧑",
        "Flags: 🇺🇸🇬🇧🇯🇵🇩🇪🇫🇷",
        "😀",
        "😀😀😀😀",
        "a😀b",
        "🤖",
        "𝐀𝐁𝐂 𝒜𝒷𝒸 𝔸𝕓𝕔 𝟙𝟚𝟛",
        "𠀀𠀁𠀂 𪚥 𩸽",
        "Gothic 𐌰𐌱𐌲 Linear B 𐀀𐀁",
        "12345",
        "1234567890123456789012345678901234567890",
        "3.14159265358979 2.71828 -42 +7 1e10 0x1F",
        "Phone: +1 (555) 123-4567, $1,234.56, 50%",
        "٣٤٥ ١٢ ۱۲۳ १२३ ๑๒๓",
        "a\nb\n\nc\n\n\nd",
        "line1\r\nline2\rline3",
        "\n\n\nHello\n\n\n",
        "tabs\tand\t\tmore\t\t\ttabs",
        "   leading and trailing   ",
        "multiple     spaces     between",
        "        ",
        " \n \n ",
        "\t \n\r \u000b \u000c",
        "no-break\u00a0space and\u2009thin\u3000ideographic",
        "\u2028line sep\u2029para sep\u0085nel",
        "control \u0001\u0002\u0003\u001b[31m bell\u0007",
        "\u0000null\u0000",
        "zero\u200bwidth\u200cnon\u200djoiner",
        "<s>",
        "</s>",
        "<unk>",
        "<s>hello</s>",
        "Hello<s>world</s>!",
        " <s> spaced </s> ",
        "<s><s></s></s>",
        "text with <s inside and s> outside",
        "<|begin_of_text|>",
        "<|eot_id|>",
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>",
        "prefix<|eot_id|>suffix",
        " <|eot_id|> ",
        "<|end_of_text|><|reserved_special_token_0|><|reserved_special_token_250|>",
        "<|not_a_token|>",
        "<0x41> <0xFF> byte token text",
        "▁already▁has▁metaspace",
        "Ġ looks like byte level Ċ",
        "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
        "public static void Main(string[] args) { Console.WriteLine(\"Hello\"); }",
        "for (int i = 0; i < 10; ++i) {\n\tprintf(\"%d\\n\", i);\n}",
        "SELECT * FROM users WHERE id = 42 AND name LIKE '%smith%';",
        "<html><body><div class=\"x\">Hi &amp; bye</div></body></html>",
        "{\"key\": [1, 2, 3], \"nested\": {\"a\": null, \"b\": true}}",
        "https://example.com/path?query=1&other=two#fragment",
        "user@example.com",
        "$ ls -la | grep foo > out.txt 2>&1",
        "Supercalifragilisticexpialidocious",
        "pneumonoultramicroscopicsilicovolcanoconiosis",
        "antidisestablishmentarianism_and_more_words_glued_together_with_underscores",
        new string('a', 300),
        new string('z', 1000),
        string.Concat(Enumerable.Repeat("ab", 400)),
        new string(' ', 100),
        new string('\n', 50),
        new string('!', 200),
        string.Concat(Enumerable.Repeat("😀", 50)),
        string.Concat(Enumerable.Repeat("你好", 100)),
        string.Concat(Enumerable.Repeat("hello world ", 100)),
        "....,,,,;;;;::::!!!!????",
        "---===___+++***&&&^^^%%%$$$###@@@",
        "~`!@#$%^&*()_+-={}[]|\\:\";'<>?,./",
        "«guillemets» „quotes“ ‘single’ “double” — en–dash … ellipsis",
        "© ® ™ § ¶ † ‡ • ° ± × ÷ ≠ ≤ ≥ ∞ √ ∑ ∫",
        "Math: ∀x∈ℝ, ∃y: x² + y² = z²",
        "Currency: € £ ¥ ₹ ₽ ₿ ¢",
        "Combining: e\u0301 a\u0300 n\u0303 o\u0308\u0301",
        "Hangul jamo: \u1100\u1161\u11a8",
        "Private use: \ue000\uf8ff",
        "Non-characters: \ufffe\uffff",
        "Replacement char: \ufffd",
        "Mixed: Hello 世界 мир 🌍 مرحبا 123",
        "The year 2024 had 366 days; 1,000,000 people; 3rd place; 21st century.",
        "CamelCaseWordsAndALLCAPSandlowercase",
        "snake_case_words and kebab-case-words",
        "a  b   c    d     e",
        " a",
        "a ",
        " ",
        "\u3000",
        "x\u00a0",
        "ﬁ ﬂ ligatures and ｆｕｌｌｗｉｄｔｈ",
        "İstanbul ıi ſ K Å",
        "a\uFEFFb", "x \uFEFF y", "\uFEFF", "a\u180Eb", "it'ſ IT'S it\u2019s", "x\u200B y", "𝟙𝟚𝟛𝟜 ١٢٣٤", "ǅungla",
    ];

    private static readonly string[] Fragments =
    [
        "the", "The", " of", " and", "Hello", "world", " ", "  ", "   ", "\n", "\n\n", "\t", "\r\n", ".", ",", "!", "?", "'s", "'ll",
        "n't", " '", "\"", "(", ")", "[", "]", "{", "}", "<", ">", "<s>", "</s>", "<|eot_id|>", "<|begin_of_text|>", "<|start_header_id|>",
        "0", "7", "42", "123", "2024", "99999", "3.14", "1,000", "café", "naïve", "Ελλάδα", "Москва", "日本", "中文", "한국", "हिन्दी",
        "عربي", "עברית", "ไทย", "😀", "👍🏽", "👨‍👩‍👧", "🇯🇵", "🏳️‍🌈", "❤️", "𝐀", "𠀀", "ß", "ÆØÅ", "€", "™", "…", "—", "\u00a0",
        "\u200b", "\u0001", "\u0301", "ŉ", "ǅ", "x", "ab", "xyz", "QWERTY", "foo_bar", "fooBar", "http://", "www.", "@", "#", "$", "%",
        "&&", "||", "==", "=>", "->", "::", "//", "/*", "*/", "def ", "return ", "    ", "\t\t", "I'm", "you're", "DON'T",
    ];

    /// <summary>Seeded random mixtures of <see cref="Fragments"/> (same strings on every run).</summary>
    public static IEnumerable<string> Random(int count, int seed)
    {
        var rng = new Random(seed);
        for (int i = 0; i < count; i++)
        {
            int n = rng.Next(1, 25);
            var sb = new StringBuilder();
            for (int j = 0; j < n; j++) sb.Append(Fragments[rng.Next(Fragments.Length)]);
            yield return sb.ToString();
        }
    }

    /// <summary>Random code points from several ranges (letters, marks, symbols, emoji, CJK, supplementary).</summary>
    public static IEnumerable<string> RandomCodePoints(int count, int seed)
    {
        (int Lo, int Hi)[] ranges =
        [
            (0x20, 0x7E), (0x09, 0x0D), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF), (0x900, 0x97F),
            (0xE00, 0xE7F), (0x2000, 0x206F), (0x2190, 0x23FF), (0x3040, 0x30FF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3),
            (0xFF00, 0xFFEF), (0x1F300, 0x1FAFF), (0x1D400, 0x1D7FF), (0x20000, 0x2A6DF), (0x10000, 0x1013F),
        ];
        var rng = new Random(seed);
        for (int i = 0; i < count; i++)
        {
            int n = rng.Next(1, 30);
            var sb = new StringBuilder();
            for (int j = 0; j < n; j++)
            {
                var (lo, hi) = ranges[rng.Next(ranges.Length)];
                int cp = rng.Next(lo, hi + 1);
                if (cp == 0xFEFF || cp is >= 0xD800 and <= 0xDFFF) cp = 'x';
                sb.Append(char.ConvertFromUtf32(cp));
            }
            yield return sb.ToString();
        }
    }

    public static List<string> All() => [.. Fixed, .. Random(250, 1234), .. RandomCodePoints(120, 99)];
}
