using System.Text.Json.Nodes;
using PiServe.Inference.Tokenization;

namespace PiServe.Inference.Tests.Tokenization;

/// <summary>Malformed or unsupported tokenizer folders fail with a message naming the file and the field.</summary>
public class TokenizerFormatExceptionTests
{
    private static TokenizerFormatException LoadFails(Action<JsonObject> edit, string? config = null)
    {
        using var folder = new ToyFolder();
        var json = ToyFolder.SentencePieceStyle();
        edit(json);
        folder.Write(json);
        if (config is not null) folder.Write("tokenizer_config.json", config);
        return Assert.Throws<TokenizerFormatException>(() => folder.Load());
    }

    [Fact]
    public void ToyTokenizerLoads()
    {
        using var folder = new ToyFolder();
        folder.Write(ToyFolder.SentencePieceStyle());
        var tok = folder.Load();
        Assert.Equal([1, 259, 265], tok.Encode("ab")); // <s> ▁ ab: "a b" (rank 0) wins over "▁ a" (rank 1)
    }

    [Fact]
    public void MissingTokenizerJson()
    {
        using var folder = new ToyFolder();
        folder.Write("tokenizer_config.json", "{}");
        var e = Assert.Throws<TokenizerFormatException>(() => folder.Load());
        Assert.StartsWith("tokenizer.json: ", e.Message);
        Assert.Contains("not found", e.Message);
    }

    [Fact]
    public void MissingDirectory()
    {
        var e = Assert.Throws<TokenizerFormatException>(() => TokenizerLoader.Load("/nonexistent/piserve/model"));
        Assert.StartsWith("tokenizer.json: ", e.Message);
    }

    [Fact]
    public void InvalidJson()
    {
        using var folder = new ToyFolder();
        folder.Write("tokenizer.json", "{\"model\": {\"type\": \"BPE\", ");
        var e = Assert.Throws<TokenizerFormatException>(() => folder.Load());
        Assert.StartsWith("tokenizer.json: invalid JSON", e.Message);
    }

    [Fact]
    public void InvalidConfigJson()
    {
        using var folder = new ToyFolder();
        folder.Write(ToyFolder.SentencePieceStyle()).Write("tokenizer_config.json", "{ bos_token: <s> }");
        var e = Assert.Throws<TokenizerFormatException>(() => folder.Load());
        Assert.StartsWith("tokenizer_config.json: invalid JSON", e.Message);
    }

    [Fact]
    public void MissingModel()
    {
        var e = LoadFails(j => j.Remove("model"));
        Assert.Equal("tokenizer.json: model: required field is missing", e.Message);
    }

    [Fact]
    public void UnknownModelType()
    {
        var e = LoadFails(j => j["model"]!["type"] = "WordPiece");
        Assert.StartsWith("tokenizer.json: model.type: ", e.Message);
        Assert.Contains("WordPiece", e.Message);
    }

    [Fact]
    public void MergeReferringToTokenNotInVocab()
    {
        var e = LoadFails(j => j["model"]!["merges"]!.AsArray().Add("a zz"));
        Assert.StartsWith("tokenizer.json: model.merges[7]: ", e.Message);
        Assert.Contains("'zz' is not in model.vocab", e.Message);
    }

    [Fact]
    public void MergeWhoseResultIsNotInVocab()
    {
        var e = LoadFails(j => j["model"]!["merges"]!.AsArray().Insert(1, new JsonArray("b", "a")));
        Assert.StartsWith("tokenizer.json: model.merges[1]: ", e.Message);
        Assert.Contains("'ba'", e.Message);
    }

    [Fact]
    public void MalformedMerge()
    {
        var e = LoadFails(j => j["model"]!["merges"]![0] = "ab");
        Assert.StartsWith("tokenizer.json: model.merges[0]: ", e.Message);
    }

    [Fact]
    public void UnsupportedNormalizer()
    {
        var e = LoadFails(j => j["normalizer"]!["normalizers"]!.AsArray().Add(new JsonObject { ["type"] = "Lowercase" }));
        Assert.StartsWith("tokenizer.json: normalizer.normalizers[2].type: ", e.Message);
        Assert.Contains("Lowercase", e.Message);
    }

    [Fact]
    public void UnsupportedTopLevelNormalizer()
    {
        var e = LoadFails(j => j["normalizer"] = new JsonObject { ["type"] = "BertNormalizer" });
        Assert.StartsWith("tokenizer.json: normalizer.type: ", e.Message);
    }

    [Fact]
    public void UnsupportedPreTokenizer()
    {
        var e = LoadFails(j => j["pre_tokenizer"] = new JsonObject { ["type"] = "BertPreTokenizer" });
        Assert.StartsWith("tokenizer.json: pre_tokenizer.type: ", e.Message);
    }

    [Fact]
    public void UnsupportedRegexConstruct()
    {
        var e = LoadFails(j => j["pre_tokenizer"] = JsonNode.Parse("""
            {"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"\\p{Han}+|\\s+"},"behavior":"Isolated","invert":false}]}
            """));
        Assert.StartsWith("tokenizer.json: pre_tokenizer.pretokenizers[0].pattern.Regex: ", e.Message);
        Assert.Contains("Han", e.Message);
    }

    [Fact]
    public void UnsupportedDecoder()
    {
        var e = LoadFails(j => j["decoder"]!["decoders"]![1] = new JsonObject { ["type"] = "CTC" });
        Assert.StartsWith("tokenizer.json: decoder.decoders[1].type: ", e.Message);
    }

    [Fact]
    public void UnsupportedPostProcessor()
    {
        var e = LoadFails(j => j["post_processor"] = new JsonObject { ["type"] = "Unknown" });
        Assert.StartsWith("tokenizer.json: post_processor.type: ", e.Message);
    }

    [Fact]
    public void TemplateWithUnknownSpecialToken()
    {
        var e = LoadFails(j => j["post_processor"]!["special_tokens"] = new JsonObject());
        Assert.StartsWith("tokenizer.json: post_processor.single[0].SpecialToken.id: ", e.Message);
    }

    [Fact]
    public void BpeDropoutRejected()
    {
        var e = LoadFails(j => j["model"]!["dropout"] = 0.1);
        Assert.StartsWith("tokenizer.json: model.dropout: ", e.Message);
    }

    [Fact]
    public void WrongFieldType()
    {
        var e = LoadFails(j => j["model"]!["vocab"]!["a"] = "four");
        Assert.StartsWith("tokenizer.json: model.vocab.a: expected an integer", e.Message);
    }

    [Fact]
    public void UnknownBosTokenInConfig()
    {
        var e = LoadFails(_ => { }, """{"bos_token": {"content": "<nope>"}}""");
        Assert.StartsWith("tokenizer_config.json: bos_token: ", e.Message);
        Assert.Contains("<nope>", e.Message);
    }

    [Fact]
    public void AddPrefixSpaceMustAgreeWithTokenizerJson()
    {
        using (var ok = new ToyFolder())
        {
            ok.Write(ToyFolder.SentencePieceStyle()).Write("tokenizer_config.json", """{"add_prefix_space": true}""");
            Assert.Equal([1, 259, 265], ok.Load().Encode("ab")); // the Prepend normalizer already adds it
        }
        var e = LoadFails(_ => { }, """{"add_prefix_space": false}""");
        Assert.StartsWith("tokenizer_config.json: add_prefix_space: ", e.Message);
    }

    [Fact]
    public void AddBosWithoutBosToken()
    {
        var e = LoadFails(j => j["post_processor"] = null, """{"add_bos_token": true}""");
        Assert.StartsWith("tokenizer_config.json: add_bos_token: ", e.Message);
    }
}
