using System.Text;
using System.Text.Json.Nodes;
using PiServe.Inference.Tokenization;
using Xunit.Abstractions;

namespace PiServe.Inference.Tests.Tokenization;

/// <summary>
/// The real tokenizer files rewritten into the other forms the loader supports (older Metaspace pre-tokenizer,
/// GPT-2 ByteLevel regex, ["a","b"] merges, a Llama-3 TemplateProcessing post-processor, extra added tokens with
/// lstrip/rstrip/normalized) and compared with Hugging Face's JS tokenizer on the same rewritten files.
/// </summary>
public class HfVariantDifferentialTests(ITestOutputHelper output)
{
    private static readonly string[] AddedTokenTexts =
    [
        "<tag>", "a <tag> b", "a<tag>b", "  <tag>  x", "x\n<tag>\ny", "<tag><tag>", "<tag> <tag>",
        "say hello world", "hello world", "hello  world", " hello world ", "xhello worldy", "hello world<tag>hello world",
        "<br/>", "line<br/>  next", "line   <br/>next", "<tag><br/><s></s>",
    ];

    public static TheoryData<string> Variants => new()
    {
        "llama2-metaspace-always", "llama2-metaspace-first", "llama2-added-tokens", "llama3-gpt2-pairs-template",
        "llama3-added-tokens",
    };

    [Theory]
    [MemberData(nameof(Variants))]
    public void VariantMatchesHuggingFace(string variant)
    {
        string family = variant[..6];
        string dir = Path.Combine(Path.GetTempPath(), "piserve-tok-" + variant + "-" + Environment.ProcessId);
        Directory.CreateDirectory(dir);
        try
        {
            string source = HfReference.ModelDir(family);
            var json = JsonNode.Parse(File.ReadAllText(Path.Combine(source, "tokenizer.json")))!.AsObject();
            Rewrite(variant, json);
            File.WriteAllText(Path.Combine(dir, "tokenizer.json"), json.ToJsonString());
            File.Copy(Path.Combine(source, "tokenizer_config.json"), Path.Combine(dir, "tokenizer_config.json"), true);

            var tokenizer = TokenizerLoader.Load(dir);
            var texts = TokenizerCorpus.All().Concat(AddedTokenTexts).ToList();
            var (reference, _) = HfReference.Run(dir, texts, []);

            var failures = new List<string>();
            for (int i = 0; i < texts.Count; i++)
            {
                int[] ours = tokenizer.Encode(texts[i]);
                if (!ours.SequenceEqual(reference[i].Ids))
                    failures.Add($"encode {HfDifferentialTokenizerTests.Show(texts[i])}\n  ours:   [{string.Join(",", ours)}]\n  theirs: [{string.Join(",", reference[i].Ids)}]");
                else if (variant.Contains("added") || variant.Contains("template"))
                {
                    string decoded = tokenizer.Decode(ours), skip = tokenizer.Decode(ours, true);
                    if (decoded != reference[i].Decoded || skip != reference[i].DecodedSkip)
                        failures.Add($"decode {HfDifferentialTokenizerTests.Show(texts[i])}\n  ours:   {HfDifferentialTokenizerTests.Show(decoded)} / {HfDifferentialTokenizerTests.Show(skip)}\n  theirs: {HfDifferentialTokenizerTests.Show(reference[i].Decoded)} / {HfDifferentialTokenizerTests.Show(reference[i].DecodedSkip)}");
                }
            }
            output.WriteLine($"{variant}: {texts.Count - failures.Count}/{texts.Count} strings match");
            if (failures.Count > 0)
                Assert.Fail($"{variant}: {failures.Count} mismatches; first ones:\n" + string.Join("\n", failures.Take(15)));

            if (variant == "llama3-gpt2-pairs-template")
            {
                Assert.True(tokenizer.AddsBos);
                Assert.Equal(128000, tokenizer.Encode("hi")[0]);
            }
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    private static void Rewrite(string variant, JsonObject json)
    {
        switch (variant)
        {
            case "llama2-metaspace-always":
            case "llama2-metaspace-first":
                // The form transformers' LlamaConverter writes with legacy=False (and older "always" files).
                json["normalizer"] = null;
                json["pre_tokenizer"] = new JsonObject
                {
                    ["type"] = "Metaspace",
                    ["replacement"] = "\u2581",
                    ["prepend_scheme"] = variant.EndsWith("first") ? "first" : "always",
                    ["split"] = false,
                };
                break;
            case "llama2-added-tokens":
                AddTokens(json, 32000);
                break;
            case "llama3-gpt2-pairs-template":
            {
                json["pre_tokenizer"] = new JsonObject
                {
                    ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = true,
                };
                var model = json["model"]!.AsObject();
                var pairs = new JsonArray();
                foreach (var m in model["merges"]!.AsArray())
                {
                    var parts = m!.GetValue<string>().Split(' ');
                    pairs.Add(new JsonArray(parts[0], parts[1]));
                }
                model["merges"] = pairs;
                json["post_processor"] = JsonNode.Parse("""
                    {"type":"Sequence","processors":[
                      {"type":"ByteLevel","add_prefix_space":true,"trim_offsets":false,"use_regex":true},
                      {"type":"TemplateProcessing",
                       "single":[{"SpecialToken":{"id":"<|begin_of_text|>","type_id":0}},{"Sequence":{"id":"A","type_id":0}}],
                       "pair":[{"SpecialToken":{"id":"<|begin_of_text|>","type_id":0}},{"Sequence":{"id":"A","type_id":0}},
                               {"SpecialToken":{"id":"<|begin_of_text|>","type_id":1}},{"Sequence":{"id":"B","type_id":1}}],
                       "special_tokens":{"<|begin_of_text|>":{"id":"<|begin_of_text|>","ids":[128000],"tokens":["<|begin_of_text|>"]}}}]}
                    """);
                break;
            }
            case "llama3-added-tokens":
                AddTokens(json, 128256);
                break;
        }
    }

    private static void AddTokens(JsonObject json, int firstId)
    {
        var added = json["added_tokens"]!.AsArray();
        added.Add(Token(firstId, "<tag>", lstrip: true, rstrip: true, normalized: false, special: false));
        added.Add(Token(firstId + 1, "hello world", lstrip: false, rstrip: false, normalized: true, special: false));
        added.Add(Token(firstId + 2, "<br/>", lstrip: false, rstrip: true, normalized: false, special: true));
    }

    private static JsonObject Token(int id, string content, bool lstrip, bool rstrip, bool normalized, bool special) => new()
    {
        ["id"] = id, ["content"] = content, ["single_word"] = false, ["lstrip"] = lstrip, ["rstrip"] = rstrip,
        ["normalized"] = normalized, ["special"] = special,
    };
}
