using System.Text.Json.Nodes;
using PiServe.Inference.Tokenization;

namespace PiServe.Inference.Tests.Tokenization;

/// <summary>Writes small hand-made tokenizer folders into a temp directory (deleted on dispose).</summary>
public sealed class ToyFolder : IDisposable
{
    public string Dir { get; } = Path.Combine(Path.GetTempPath(), "piserve-toytok-" + Guid.NewGuid().ToString("N"));

    public ToyFolder() => Directory.CreateDirectory(Dir);

    public ToyFolder Write(string file, string content)
    {
        File.WriteAllText(Path.Combine(Dir, file), content);
        return this;
    }

    public ToyFolder Write(JsonNode tokenizerJson) => Write("tokenizer.json", tokenizerJson.ToJsonString());

    public ITokenizer Load() => TokenizerLoader.Load(Dir);

    public void Dispose()
    {
        try { Directory.Delete(Dir, true); }
        catch (IOException) { }
    }

    /// <summary>A SentencePiece-style BPE: ▁ words, byte fallback for everything else.</summary>
    public static JsonObject SentencePieceStyle()
    {
        var vocab = new JsonObject { ["<unk>"] = 0, ["<s>"] = 1, ["</s>"] = 2 };
        for (int b = 0; b < 256; b++) vocab[$"<0x{b:X2}>"] = 3 + b;
        int next = 259;
        foreach (var t in new[] { "▁", "a", "b", "c", "h", "i", "ab", "▁a", "▁ab", "abc", "▁▁", "hi", "▁hi" }) vocab[t] = next++;
        return new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = new JsonArray(
                AddedToken(0, "<unk>", special: true), AddedToken(1, "<s>", special: true), AddedToken(2, "</s>", special: true)),
            ["normalizer"] = JsonNode.Parse("""
                {"type":"Sequence","normalizers":[{"type":"Prepend","prepend":"▁"},{"type":"Replace","pattern":{"String":" "},"content":"▁"}]}
                """),
            ["pre_tokenizer"] = null,
            ["post_processor"] = JsonNode.Parse("""
                {"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>","type_id":0}},{"Sequence":{"id":"A","type_id":0}}],
                 "pair":[],"special_tokens":{"<s>":{"id":"<s>","ids":[1],"tokens":["<s>"]}}}
                """),
            ["decoder"] = JsonNode.Parse("""
                {"type":"Sequence","decoders":[{"type":"Replace","pattern":{"String":"▁"},"content":" "},{"type":"ByteFallback"},
                 {"type":"Fuse"},{"type":"Strip","content":" ","start":1,"stop":0}]}
                """),
            ["model"] = new JsonObject
            {
                ["type"] = "BPE",
                ["dropout"] = null,
                ["unk_token"] = "<unk>",
                ["fuse_unk"] = true,
                ["byte_fallback"] = true,
                ["vocab"] = vocab,
                ["merges"] = new JsonArray("a b", "▁ a", "▁a b", "ab c", "▁ ▁", "h i", "▁ hi"),
            },
        };
    }

    public static JsonObject AddedToken(int id, string content, bool special = false, bool lstrip = false, bool rstrip = false,
        bool singleWord = false, bool? normalized = null) => new()
    {
        ["id"] = id, ["content"] = content, ["single_word"] = singleWord, ["lstrip"] = lstrip, ["rstrip"] = rstrip,
        ["normalized"] = normalized ?? !special, ["special"] = special,
    };
}
