using System.Text;
using PiServe.Inference.Tokenization;
using Xunit.Abstractions;

namespace PiServe.Inference.Tests.Tokenization;

/// <summary>
/// Differential tests against Hugging Face's JS tokenizer (@huggingface/tokenizers) on the real LLaMA-2-style
/// (SentencePiece BPE with byte fallback) and Llama-3 (byte-level BPE) tokenizer files: identical ids for every
/// corpus string, identical decodes (with and without special tokens), streaming decode == Decode, and identical
/// decodes of random id sequences (including invalid byte sequences).
/// </summary>
public class HfDifferentialTokenizerTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData("llama2")]
    [InlineData("llama3")]
    public void EncodeAndDecodeMatchHuggingFace(string family)
    {
        var tokenizer = HfReference.Get(family);
        var texts = TokenizerCorpus.All();
        var idLists = RandomIdLists(tokenizer, family, 150, 7);
        var (reference, referenceDecoded) = HfReference.Run(family, texts, idLists);
        Assert.Equal(texts.Count, reference.Length);

        var failures = new List<string>();
        int matched = 0;
        for (int i = 0; i < texts.Count; i++)
        {
            string text = texts[i];
            var expected = reference[i];
            int[] ours = tokenizer.Encode(text);
            bool ok = true;
            if (!ours.SequenceEqual(expected.Ids))
            {
                ok = false;
                failures.Add($"encode {Show(text)}\n  ours:   [{string.Join(",", ours)}]\n  theirs: [{string.Join(",", expected.Ids)}]");
            }
            string decoded = tokenizer.Decode(expected.Ids);
            if (decoded != expected.Decoded)
            {
                ok = false;
                failures.Add($"decode {Show(text)}\n  ours:   {Show(decoded)}\n  theirs: {Show(expected.Decoded)}");
            }
            string decodedSkip = tokenizer.Decode(expected.Ids, skipSpecialTokens: true);
            if (decodedSkip != expected.DecodedSkip)
            {
                ok = false;
                failures.Add($"decode(skip) {Show(text)}\n  ours:   {Show(decodedSkip)}\n  theirs: {Show(expected.DecodedSkip)}");
            }
            foreach (bool skip in new[] { false, true })
            {
                string streamed = Stream(tokenizer, expected.Ids, skip);
                string whole = skip ? decodedSkip : decoded;
                if (streamed != whole)
                {
                    ok = false;
                    failures.Add($"stream(skip={skip}) {Show(text)}\n  streamed: {Show(streamed)}\n  decode:   {Show(whole)}");
                }
            }
            if (ok) matched++;
        }

        int decodeMatched = 0;
        for (int i = 0; i < idLists.Count; i++)
        {
            string ours = tokenizer.Decode(idLists[i]);
            string streamed = Stream(tokenizer, idLists[i], false);
            if (ours != referenceDecoded[i])
                failures.Add($"decode ids [{string.Join(",", idLists[i])}]\n  ours:   {Show(ours)}\n  theirs: {Show(referenceDecoded[i])}");
            else if (streamed != ours)
                failures.Add($"stream ids [{string.Join(",", idLists[i])}]\n  streamed: {Show(streamed)}\n  decode:   {Show(ours)}");
            else decodeMatched++;
        }

        output.WriteLine($"{family}: {matched}/{texts.Count} strings match (encode, decode, decode skip, streaming); " +
                         $"{decodeMatched}/{idLists.Count} random id sequences decode identically");
        if (failures.Count > 0)
            Assert.Fail($"{family}: {failures.Count} mismatches; first ones:\n" + string.Join("\n", failures.Take(15)));
    }

    private static string Stream(ITokenizer tokenizer, int[] ids, bool skip)
    {
        var dec = tokenizer.CreateStreamingDecoder(skip);
        var sb = new StringBuilder();
        foreach (int id in ids) sb.Append(dec.Append(id));
        sb.Append(dec.Flush());
        return sb.ToString();
    }

    /// <summary>Random id sequences biased towards byte tokens, whitespace pieces and special tokens.</summary>
    private static List<int[]> RandomIdLists(ITokenizer tokenizer, string family, int count, int seed)
    {
        var rng = new Random(seed);
        var byteTokens = Enumerable.Range(0, tokenizer.VocabSize)
            .Where(id => tokenizer.TokenToPiece(id) is { Length: 6 } p && p.StartsWith("<0x")).ToArray();
        var specials = Enumerable.Range(0, tokenizer.VocabSize).Where(tokenizer.IsSpecial).ToArray();
        var lists = new List<int[]>();
        while (lists.Count < count)
        {
            int n = rng.Next(1, 20);
            var ids = new int[n];
            for (int i = 0; i < n; i++)
            {
                int kind = rng.Next(10);
                ids[i] = kind switch
                {
                    < 4 when byteTokens.Length > 0 => byteTokens[rng.Next(byteTokens.Length)],
                    4 => specials[rng.Next(specials.Length)],
                    _ => rng.Next(tokenizer.VocabSize),
                };
            }
            // tokenizers.js decodes byte-fallback runs with a BOM-stripping TextDecoder: keep EF BB BF out.
            string pieces = string.Concat(ids.Select(id => tokenizer.TokenToPiece(id)));
            if (pieces.Contains("<0xEF><0xBB><0xBF>", StringComparison.Ordinal) || pieces.Contains("ï»¿", StringComparison.Ordinal))
                continue;
            lists.Add(ids);
        }
        return lists;
    }

    internal static string Show(string s)
    {
        var sb = new StringBuilder("\"");
        foreach (char c in s.Length > 200 ? s[..200] + "…" : s)
        {
            if (c < 0x20 || c is '\u2028' or '\u2029' or '\u0085' or '\ufffd') sb.Append($"\\u{(int)c:X4}");
            else if (c == '"') sb.Append("\\\"");
            else sb.Append(c);
        }
        return sb.Append('"').ToString();
    }
}
