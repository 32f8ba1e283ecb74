namespace PiServe.Inference.Tests.Tokenization;

/// <summary>
/// Hugging Face's Rust tokenizers in process, through the Tokenizers.DotNet wrapper (test-only package): the
/// second oracle, consulted where the JS one (@huggingface/tokenizers) departs from Rust, e.g. its TextDecoder
/// dropping a byte-fallback U+FEFF. Its Encode adds the post-processor's special tokens; its Decode keeps them.
/// </summary>
public static class HfRustReference
{
    private static readonly Dictionary<string, Tokenizers.DotNet.Tokenizer> s_tokenizers = new();

    private static Tokenizers.DotNet.Tokenizer Get(string family)
    {
        lock (s_tokenizers)
        {
            if (!s_tokenizers.TryGetValue(family, out var t))
                s_tokenizers[family] = t = new Tokenizers.DotNet.Tokenizer(vocabPath: Path.Combine(HfReference.ModelDir(family), "tokenizer.json"));
            return t;
        }
    }

    public static int[] Encode(string family, string text)
    {
        var t = Get(family);
        lock (t) return t.Encode(text).Select(x => (int)x).ToArray();
    }

    public static string Decode(string family, int[] ids)
    {
        var t = Get(family);
        lock (t) return t.Decode(ids.Select(x => (uint)x).ToArray());
    }
}
