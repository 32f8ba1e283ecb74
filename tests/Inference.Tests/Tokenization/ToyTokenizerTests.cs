using System.Text;
using System.Text.Json.Nodes;
using PiServe.Inference.Tokenization;

namespace PiServe.Inference.Tests.Tokenization;

/// <summary>Components that the real files do not exercise, on small hand-made tokenizers.</summary>
public class ToyTokenizerTests
{
    // Toy vocab ids (see ToyFolder.SentencePieceStyle): ▁ 259, a 260, b 261, c 262, h 263, i 264, ab 265,
    // ▁a 266, ▁ab 267, abc 268, ▁▁ 269, hi 270, ▁hi 271.
    private static ITokenizer Toy(Action<JsonObject> edit, string? config = null)
    {
        using var folder = new ToyFolder();
        var json = ToyFolder.SentencePieceStyle();
        edit(json);
        folder.Write(json);
        if (config is not null) folder.Write("tokenizer_config.json", config);
        return folder.Load();
    }

    private static JsonNode Metaspace(string scheme, bool split) => new JsonObject
    {
        ["type"] = "Metaspace", ["replacement"] = "▁", ["prepend_scheme"] = scheme, ["split"] = split,
    };

    [Fact]
    public void MetaspaceSplitMergesEachReplacementWithTheNextPiece()
    {
        var split = Toy(j => { j["normalizer"] = null; j["pre_tokenizer"] = Metaspace("always", true); });
        var whole = Toy(j => { j["normalizer"] = null; j["pre_tokenizer"] = Metaspace("always", false); });
        // "a   " → "▁a▁▁▁": split → "▁a" "▁" "▁" "▁"; unsplit → BPE over the whole string merges "▁ ▁"
        Assert.Equal([266, 259, 259, 259], split.Encode("a   ", false));
        Assert.Equal([266, 269, 259], whole.Encode("a   ", false));
    }

    [Fact]
    public void MetaspacePrependSchemeFirstOnlyPrefixesTheStartOfTheText()
    {
        var first = Toy(j => { j["normalizer"] = null; j["pre_tokenizer"] = Metaspace("first", false); });
        var always = Toy(j => { j["normalizer"] = null; j["pre_tokenizer"] = Metaspace("always", false); });
        Assert.Equal([1, 266, 2, 260], first.Encode("a</s>a"));
        Assert.Equal([1, 266, 2, 266], always.Encode("a</s>a"));
        var legacy = Toy(j => { j["normalizer"] = null; j["pre_tokenizer"] = JsonNode.Parse("""{"type":"Metaspace","replacement":"▁","add_prefix_space":false}"""); });
        Assert.Equal([260], legacy.Encode("a", false));
    }

    [Fact]
    public void MetaspaceDecoderDropsReplacementsOfTheFirstToken()
    {
        var t = Toy(j => j["decoder"] = JsonNode.Parse("""{"type":"Metaspace","replacement":"▁","prepend_scheme":"always","split":true}"""));
        Assert.Equal("a", t.Decode([269, 260]));       // HF: every ▁ of token 0 is removed
        Assert.Equal("a  a", t.Decode([266, 269, 260]));
        AssertStreamingMatchesDecode(t, 300, 11);
    }

    [Fact]
    public void NoDecoderJoinsTokensWithSpaces()
    {
        var t = Toy(j => j["decoder"] = null);
        Assert.Equal("▁ab c <s>", t.Decode([267, 262, 1]));
        AssertStreamingMatchesDecode(t, 200, 12);
    }

    [Fact]
    public void StripDecoderWithStopHoldsBackTrailingCharacters()
    {
        var t = Toy(j => j["decoder"] = JsonNode.Parse("""
            {"type":"Sequence","decoders":[{"type":"Replace","pattern":{"String":"▁"},"content":" "},{"type":"ByteFallback"},
             {"type":"Fuse"},{"type":"Strip","content":" ","start":2,"stop":2}]}
            """));
        Assert.Equal("a   a  ", t.Decode([269, 260, 269, 266, 269, 269])); // "  a   a    " minus 2+2
        AssertStreamingMatchesDecode(t, 300, 13);
    }

    [Fact]
    public void MultiCharacterReplaceAfterFuse()
    {
        var t = Toy(j => j["decoder"] = JsonNode.Parse("""
            {"type":"Sequence","decoders":[{"type":"ByteFallback"},{"type":"Fuse"},{"type":"Replace","pattern":{"String":"▁a"},"content":"_X"}]}
            """));
        Assert.Equal("_Xb_Xa", t.Decode([259, 260, 261, 266, 260]));
        AssertStreamingMatchesDecode(t, 300, 14);
    }

    [Fact]
    public void ByteFallbackAfterFuseIsRejected()
    {
        var e = Assert.Throws<TokenizerFormatException>(() => Toy(j => j["decoder"] = JsonNode.Parse("""
            {"type":"Sequence","decoders":[{"type":"Fuse"},{"type":"ByteFallback"}]}
            """)));
        Assert.StartsWith("tokenizer.json: decoder: ", e.Message);
    }

    [Fact]
    public void CleanupSpacesStreamsConsistently()
    {
        var t = Toy(_ => { }, """{"clean_up_tokenization_spaces": true}""");
        // ▁ a ▁ <0x2E>(.) : " a ." → "a."
        Assert.Equal("a.", t.Decode([266, 259, 3 + '.']));
        AssertStreamingMatchesDecode(t, 400, 15, extra: [.. " .,!?'nmtsvre".Select(c => 3 + c)]);
    }

    [Fact]
    public void SingleWordAddedTokenOnlyMatchesWholeWords()
    {
        var t = Toy(j => j["added_tokens"]!.AsArray().Add(ToyFolder.AddedToken(272, "hi", singleWord: true, normalized: false)));
        Assert.Contains(272, t.Encode("hi ab", false));
        Assert.Contains(272, t.Encode("ab hi", false));
        Assert.DoesNotContain(272, t.Encode("ahi", false));
        Assert.DoesNotContain(272, t.Encode("hia", false));
    }

    [Fact]
    public void LStripAndRStripSwallowWhitespace()
    {
        var t = Toy(j => j["added_tokens"]!.AsArray().Add(ToyFolder.AddedToken(272, "<x>", special: true, lstrip: true, rstrip: true)));
        Assert.Equal([266, 272, 266], t.Encode("a  <x>  a", false));
        Assert.Equal([266, 272], t.Encode("a\t <x>", false));
        var plain = Toy(j => j["added_tokens"]!.AsArray().Add(ToyFolder.AddedToken(272, "<x>", special: true)));
        Assert.Equal([266, 259, 272, 259, 266], plain.Encode("a <x> a", false));
    }

    [Fact]
    public void ConfigOverridesBosAndEos()
    {
        var noBos = Toy(_ => { }, """{"add_bos_token": false, "bos_token": "<s>", "eos_token": {"content": "</s>"}}""");
        Assert.False(noBos.AddsBos);
        Assert.Equal([259, 265], noBos.Encode("ab"));
        Assert.Equal(1, noBos.BosTokenId);
        Assert.Equal(2, noBos.EosTokenId);

        var eos = Toy(_ => { }, """{"add_bos_token": true, "add_eos_token": true, "bos_token": "<s>", "eos_token": "</s>"}""");
        Assert.True(eos.AddsBos);
        Assert.Equal([1, 259, 265, 2], eos.Encode("ab"));
        Assert.Equal([259, 265], eos.Encode("ab", addSpecialTokens: false));

        var addBosWithoutTemplate = Toy(j => j["post_processor"] = null, """{"add_bos_token": true, "bos_token": "<s>"}""");
        Assert.Equal([1, 259, 265], addBosWithoutTemplate.Encode("ab"));
    }

    [Fact]
    public void UnknownCharactersWithoutByteFallbackBecomeFusedUnk()
    {
        var t = Toy(j => j["model"]!["byte_fallback"] = false);
        Assert.Equal([259, 0, 266], t.Encode("xyz a", false)); // ▁ <unk x,y,z fused> ▁a
        Assert.Equal([0], Toy(j => { j["model"]!["byte_fallback"] = false; j["normalizer"] = null; }).Encode("xyz", false));
        Assert.Equal([0, 0, 0], Toy(j => { j["model"]!["byte_fallback"] = false; j["model"]!["fuse_unk"] = false; j["normalizer"] = null; })
            .Encode("xyz", false));
    }

    [Fact]
    public void SplitBehaviors()
    {
        int[] Enc(string behavior, bool invert) => Toy(j =>
        {
            j["normalizer"] = null;
            j["pre_tokenizer"] = new JsonObject
            {
                ["type"] = "Split", ["pattern"] = new JsonObject { ["String"] = "b" }, ["behavior"] = behavior, ["invert"] = invert,
            };
        }).Encode("abcab", false);
        // pieces: Isolated a|b|c|a|b, Removed a|c|a, MergedWithPrevious ab|cab, MergedWithNext a|bca|b, Contiguous a|b|c|a|b
        Assert.Equal([260, 261, 262, 260, 261], Enc("Isolated", false));
        Assert.Equal([260, 262, 260], Enc("Removed", false));
        Assert.Equal([265, 262, 265], Enc("MergedWithPrevious", false));
        Assert.Equal([260, 261, 262, 260, 261], Enc("MergedWithNext", false));
        Assert.Equal([261, 261], Enc("Removed", true));
    }

    /// <summary>Random id sequences: the concatenated streaming output always equals Decode.</summary>
    private static void AssertStreamingMatchesDecode(ITokenizer t, int count, int seed, int[]? extra = null)
    {
        var rng = new Random(seed);
        int[] pool = [.. Enumerable.Range(0, t.VocabSize).Where(i => i < 3 || i >= 259 || rng.Next(8) == 0), .. extra ?? []];
        for (int n = 0; n < count; n++)
        {
            int[] ids = Enumerable.Range(0, rng.Next(0, 12)).Select(_ => pool[rng.Next(pool.Length)]).ToArray();
            foreach (bool skip in new[] { false, true })
            {
                var dec = t.CreateStreamingDecoder(skip);
                var sb = new StringBuilder();
                foreach (int id in ids) sb.Append(dec.Append(id));
                sb.Append(dec.Flush());
                Assert.Equal(t.Decode(ids, skip), sb.ToString());
            }
        }
    }
}
