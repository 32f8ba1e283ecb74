using System.Diagnostics;
using System.Text;
using PiServe.Inference.Tokenization;

namespace PiServe.Inference.Tests.Tokenization;

/// <summary>Behaviour of the tokenizer on the real LLaMA-2-style and Llama-3 files.</summary>
public class TokenizerBehaviorTests
{
    [Fact]
    public void Llama2Properties()
    {
        var t = HfReference.Llama2;
        Assert.Equal(32000, t.VocabSize);
        Assert.Equal(1, t.BosTokenId);
        Assert.Equal(2, t.EosTokenId);
        Assert.True(t.AddsBos);
        Assert.True(t.IsSpecial(1));
        Assert.True(t.IsSpecial(2));
        Assert.False(t.IsSpecial(100));
        Assert.False(t.IsSpecial(-1));
        Assert.False(t.IsSpecial(32000));
        Assert.Equal("<0x00>", t.TokenToPiece(3));
        Assert.Equal("<s>", t.TokenToPiece(1));
        Assert.Null(t.TokenToPiece(-1));
        Assert.Null(t.TokenToPiece(32000));
        Assert.Equal(1, t.Encode("hello")[0]);
        Assert.NotEqual(1, t.Encode("hello", addSpecialTokens: false)[0]);
        Assert.Equal([1], t.Encode(""));
        Assert.Empty(t.Encode("", addSpecialTokens: false));
    }

    [Fact]
    public void Llama3Properties()
    {
        var t = HfReference.Llama3;
        Assert.Equal(128256, t.VocabSize);
        Assert.Equal(128000, t.BosTokenId);
        Assert.Equal(128001, t.EosTokenId);
        // This (original release) tokenizer.json has only a ByteLevel post-processor: HF adds no BOS.
        Assert.False(t.AddsBos);
        Assert.True(t.IsSpecial(128009));
        Assert.Equal("<|eot_id|>", t.TokenToPiece(128009));
        Assert.Equal("Ġworld", t.TokenToPiece(1917));
        Assert.Equal([128000, 9906, 128009], t.Encode("<|begin_of_text|>Hello<|eot_id|>"));
        Assert.Equal("Hello", t.Decode([128000, 9906, 128009], skipSpecialTokens: true));
    }

    [Theory]
    [InlineData("🦀 crab")]
    [InlineData("𠀀𠀁𠀂")]
    [InlineData("ꙮ ᚠᛇᚻ ꧁꧂")]
    [InlineData("\u0000\u0001\u001f")]
    [InlineData("mixed 🦀 text ꙮ with 𓀀 hieroglyph")]
    public void ByteFallbackRoundTrip(string text)
    {
        var t = HfReference.Llama2;
        int[] ids = t.Encode(text);
        Assert.Contains(ids, id => t.TokenToPiece(id) is { } p && p.StartsWith("<0x", StringComparison.Ordinal));
        Assert.Equal(text, t.Decode(ids, skipSpecialTokens: true));
        Assert.Equal(text, HfReference.Llama3.Decode(HfReference.Llama3.Encode(text)));
    }

    [Fact]
    public void CorpusRoundTripsThroughBothFamilies()
    {
        foreach (string text in TokenizerCorpus.All())
        {
            // Special-token text is encoded as the special token, and legacy Llama adds a ▁ after it.
            // ▁ in the input decodes to a space.
            if (text.Contains("<s>") || text.Contains("</s>") || text.Contains("<unk>") || text.Contains('▁')) continue;
            Assert.Equal(text, HfReference.Llama2.Decode(HfReference.Llama2.Encode(text), skipSpecialTokens: true));
        }
        var l3 = HfReference.Llama3;
        foreach (string text in TokenizerCorpus.All())
        {
            // Llama-3's tokenizer_config has clean_up_tokenization_spaces: true, which rewrites " ." etc.
            if (CleanupStage.Apply(text) != text) continue;
            Assert.Equal(text, l3.Decode(l3.Encode(text)));
        }
    }

    [Fact]
    public void CleanUpTokenizationSpacesFollowsConfig()
    {
        var l3 = HfReference.Llama3;
        const string text = "Hello , world . I 'm here ! I do n't";
        int[] ids = l3.Encode(text);
        Assert.Equal("Hello, world. I'm here! I don't", l3.Decode(ids));
        Assert.Equal(l3.Decode(ids), Stream(l3, ids, false, out _));
        var l2 = HfReference.Llama2; // clean_up_tokenization_spaces: false
        Assert.Equal(text, l2.Decode(l2.Encode(text), skipSpecialTokens: true));
    }

    [Theory]
    [InlineData("llama2", "I love 🦀 and 👩🏽‍💻!")]
    [InlineData("llama2", "🇯🇵🇺🇸 flags 𠀀𠀁 😀😀😀")]
    [InlineData("llama3", "I love 🦀 and 👩🏽‍💻!")]
    [InlineData("llama3", "🇯🇵🇺🇸 flags 𠀀𠀁 😀😀😀 ꙮ")]
    public void StreamingNeverEmitsBrokenCharacters(string family, string text)
    {
        var t = HfReference.Get(family);
        int[] ids = t.Encode(text);
        foreach (bool skip in new[] { true, false })
        {
            string streamed = Stream(t, ids, skip, out var chunks);
            Assert.Equal(t.Decode(ids, skip), streamed);
            if (skip) Assert.Equal(text, streamed);
            Assert.Contains("", chunks); // some token ended mid-character and was held back
            foreach (string chunk in chunks)
            {
                Assert.DoesNotContain('\uFFFD', chunk);
                Assert.True(IsWellFormed(chunk), $"chunk with a lone surrogate: {chunk}");
            }
        }
    }

    [Fact]
    public void StreamingEmitsEmojiWholeAtItsLastByte()
    {
        var t = HfReference.Llama2;
        int[] ids = t.Encode("🦀", addSpecialTokens: false); // ▁ then four byte tokens
        var dec = t.CreateStreamingDecoder();
        var chunks = ids.Select(dec.Append).ToList();
        chunks.Add(dec.Flush());
        Assert.Equal(5, ids.Length);
        Assert.Equal(["", "", "", "", "🦀", ""], chunks);
    }

    [Fact]
    public void StreamingFlushTurnsIncompleteBytesIntoReplacementCharacter()
    {
        foreach (var t in new[] { HfReference.Llama2, HfReference.Llama3 })
        {
            int[] ids = t.Encode("ab 🦀", addSpecialTokens: false);
            int[] truncated = ids[..^1]; // the crab's last byte is missing
            string streamed = Stream(t, truncated, false, out var chunks);
            Assert.Equal(t.Decode(truncated), streamed);
            Assert.EndsWith("\uFFFD", streamed);
            Assert.DoesNotContain('\uFFFD', string.Concat(chunks.SkipLast(1)));
        }
    }

    [Fact]
    public void StreamingStripsOnlyTheFirstLeadingSpace()
    {
        var t = HfReference.Llama2;
        int[] ids = t.Encode("Hello world again");
        Assert.Equal(4, ids.Length);
        Stream(t, ids, false, out var chunks);
        Assert.Equal(["<s>", " Hello", " world", " again", ""], chunks);
        var skip = t.CreateStreamingDecoder(skipSpecialTokens: true);
        Assert.Equal(["", "Hello", " world", " again", ""], [.. ids.Select(skip.Append).ToList(), skip.Flush()]);
        // After Flush the decoder starts a new sequence (the first space is stripped again).
        Assert.Equal(["Hello", " world", " again"], ids[1..].Select(skip.Append).ToList());
    }

    [Fact]
    public void DecodeSkipsUnknownIds()
    {
        var t = HfReference.Llama3;
        Assert.Equal("Hello world", t.Decode([9906, -5, 1917, 999_999]));
        var dec = t.CreateStreamingDecoder();
        Assert.Equal("", dec.Append(-5));
        Assert.Equal("", t.Decode([]));
    }

    [Fact]
    public void LoneSurrogatesAreEncodedAsReplacementCharacter()
    {
        foreach (var t in new[] { HfReference.Llama2, HfReference.Llama3 })
        {
            Assert.Equal(t.Encode("a\uFFFDb\uFFFD"), t.Encode("a\uD800b\uDC00"));
            Assert.Equal(t.Encode("x\uFFFD"), t.Encode("x\uD83D"));
        }
    }

    [Fact]
    public void EncodeIsThreadSafe()
    {
        var texts = TokenizerCorpus.All();
        foreach (var t in new[] { HfReference.Llama2, HfReference.Llama3 })
        {
            var expected = texts.Select(x => t.Encode(x)).ToArray();
            var fresh = TokenizerLoader.Load(HfReference.ModelDir(t == HfReference.Llama2 ? "llama2" : "llama3"));
            var actual = new int[texts.Count][];
            Parallel.For(0, texts.Count * 4, new ParallelOptions { MaxDegreeOfParallelism = 4 },
                i => actual[i % texts.Count] = fresh.Encode(texts[i % texts.Count]));
            for (int i = 0; i < texts.Count; i++) Assert.Equal(expected[i], actual[i]);
        }
    }

    [Theory]
    [InlineData("llama2")]
    [InlineData("llama3")]
    public void LongInputsAreFast(string family)
    {
        var t = HfReference.Get(family);
        var cases = new (string Name, string Text)[]
        {
            ("100k chars of mixed text", string.Concat(TokenizerCorpus.Random(20000, 5))[..100_000]),
            ("10k spaces", new string(' ', 10_000) + "x"),
            ("one 100k-char word", new string('a', 100_000)),
            ("50k newlines", new string('\n', 50_000)),
            ("30k emoji", string.Concat(Enumerable.Repeat("😀", 30_000))),
            ("20k mixed whitespace", string.Concat(Enumerable.Repeat(" \t\n ", 5_000)) + "end"),
        };
        foreach (var (name, text) in cases)
        {
            var sw = Stopwatch.StartNew();
            int[] ids = t.Encode(text);
            string back = t.Decode(ids, skipSpecialTokens: true);
            sw.Stop();
            Assert.True(sw.Elapsed < TimeSpan.FromSeconds(5), $"{family}: {name} took {sw.Elapsed.TotalMilliseconds:F0} ms");
            if (!text.Contains('<') && (family == "llama2" || CleanupStage.Apply(text) == text)) Assert.Equal(text, back);
        }
    }

    [Fact]
    public void LoadsAFolderWithOnlyTokenizerFiles()
    {
        using var folder = new ToyFolder();
        string src = HfReference.ModelDir("llama2");
        File.Copy(Path.Combine(src, "tokenizer.json"), Path.Combine(folder.Dir, "tokenizer.json"));
        // No tokenizer_config.json, no config.json: BOS comes from the post-processor template.
        var bare = folder.Load();
        Assert.Equal(HfReference.Llama2.Encode("Hello world"), bare.Encode("Hello world"));
        Assert.Equal(1, bare.BosTokenId);
        Assert.True(bare.AddsBos);

        File.Copy(Path.Combine(src, "tokenizer_config.json"), Path.Combine(folder.Dir, "tokenizer_config.json"));
        var withConfig = folder.Load();
        Assert.Equal(2, withConfig.EosTokenId);
        Assert.Equal("Hello world", withConfig.Decode(withConfig.Encode("Hello world"), skipSpecialTokens: true));
        Assert.False(File.Exists(Path.Combine(folder.Dir, "config.json")));
    }

    internal static string Stream(ITokenizer t, int[] ids, bool skip, out List<string> chunks)
    {
        var dec = t.CreateStreamingDecoder(skip);
        chunks = ids.Select(dec.Append).ToList();
        chunks.Add(dec.Flush());
        return string.Concat(chunks);
    }

    private static bool IsWellFormed(string s)
    {
        for (int i = 0; i < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i]))
            {
                if (i + 1 >= s.Length || !char.IsLowSurrogate(s[i + 1])) return false;
                i++;
            }
            else if (char.IsLowSurrogate(s[i])) return false;
        }
        return true;
    }
}
