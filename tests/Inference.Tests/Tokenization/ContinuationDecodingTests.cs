using PiServe.Inference.Generation;
using PiServe.Inference.Model;
using PiServe.Inference.Tokenization;

namespace PiServe.Inference.Tests.Tokenization;

/// <summary>
/// Completion text continues the prompt (issue 13, item 9): prompt_text + completion_text ==
/// decode(prompt_ids + completion_ids), as vLLM's incremental detokenization gives — the first
/// generated token keeps its leading space ("In the beginning" + " of the").
/// </summary>
public sealed class ContinuationDecodingTests
{
    public static IEnumerable<object[]> Tokenizers() => [["llama2"], ["llama3"], ["kjv"]];

    private static ITokenizer Load(string name) => name == "kjv"
        ? TokenizerLoader.Load(RepoPaths.ShippedModel("kjv-base-256"))
        : HfReference.Get(name);

    private static readonly string[] Prompts =
    [
        "In the beginning", "And God said,", "The pass key is 12345.", "naïve café — ", "数字 1 2 3", "Hello\n", "a", "  two spaces",
        "emoji 😀", "ends with a space ",
    ];

    [Theory]
    [MemberData(nameof(Tokenizers))]
    public void PromptTextPlusStreamedTextEqualsTheWholeDecode(string name)
    {
        var tokenizer = Load(name);
        var rng = new Random(13);
        int checkedPairs = 0;
        foreach (string prompt in Prompts)
        {
            int[] promptIds = tokenizer.Encode(prompt);
            string promptText = tokenizer.Decode(promptIds, skipSpecialTokens: true);
            for (int trial = 0; trial < 20; trial++)
            {
                // Random continuations, also of byte tokens that split characters and of special tokens.
                int[] generated = Enumerable.Range(0, rng.Next(1, 12)).Select(_ => rng.Next(tokenizer.VocabSize)).ToArray();
                var decoder = tokenizer.CreateStreamingDecoder(skipSpecialTokens: true);
                decoder.Prime(promptIds);
                string streamed = string.Concat(generated.Select(decoder.Append)) + decoder.Flush();
                string whole = tokenizer.Decode([.. promptIds, .. generated], skipSpecialTokens: true);
                // Where cleanup rewrites the prompt's own end, decode(prompt) is no prefix and vLLM's rule
                // (cut len(decode(prompt)) characters) is all there is to check; those pairs are counted out.
                if (!whole.StartsWith(promptText, StringComparison.Ordinal)) continue;
                checkedPairs++;
                Assert.True(promptText + streamed == whole,
                    $"{name}: prompt {prompt} + [{string.Join(",", generated)}]: '{promptText}' + '{streamed}' != '{whole}'");
            }
        }
        // Cleanup rules may rewrite the prompt's own end (" ." → "."); every other case must have been checked.
        Assert.True(checkedPairs >= Prompts.Length * 20 * 9 / 10, $"only {checkedPairs} pairs had the prompt's text as a prefix");
    }

    [Theory]
    [MemberData(nameof(Tokenizers))]
    public void LeadingSpaceOfTheFirstGeneratedWordIsKept(string name)
    {
        var tokenizer = Load(name);
        int[] prompt = tokenizer.Encode("In the beginning");
        int[] of = tokenizer.Encode("In the beginning of").Skip(prompt.Length).ToArray();
        Assert.NotEmpty(of);
        var decoder = tokenizer.CreateStreamingDecoder(skipSpecialTokens: true);
        decoder.Prime(prompt);
        Assert.Equal(" of", string.Concat(of.Select(decoder.Append)) + decoder.Flush());
        // Unprimed, a SentencePiece decoder strips it as the start of a sequence (the old behaviour).
        if (name != "llama3")
        {
            var unprimed = tokenizer.CreateStreamingDecoder(skipSpecialTokens: true);
            Assert.Equal("of", string.Concat(of.Select(unprimed.Append)) + unprimed.Flush());
        }
    }

    [Fact]
    public void TheSchedulerStreamsTextThatContinuesThePrompt()
    {
        string dir = RepoPaths.ShippedModel("kjv-base-256");
        using var model = LlamaModel.Load(dir);
        var tokenizer = TokenizerLoader.Load(dir);
        using var scheduler = new BatchScheduler(model, tokenizer, new SchedulerOptions());
        const string prompt = "In the beginning";
        int[] promptIds = tokenizer.Encode(prompt);
        Assert.Equal(prompt, tokenizer.Decode(promptIds, skipSpecialTokens: true));
        for (int seed = 0; seed < 4; seed++)
        {
            var events = scheduler.Submit(new CompletionJob
            {
                Prompt = promptIds, MaxTokens = 24, IgnoreEos = true,
                Sampling = new SamplingParams { Temperature = 0.9f, Seed = seed },
            });
            var ids = new List<int>();
            var text = new System.Text.StringBuilder();
            foreach (var e in events.ReadAllAsync().ToBlockingEnumerable())
            {
                if (e is TokenEvent t) { ids.Add(t.TokenId); text.Append(t.Text); }
                if (e is FinishEvent f) text.Append(f.TrailingText);
                Assert.IsNotType<ErrorEvent>(e);
            }
            Assert.Equal(24, ids.Count);
            Assert.Equal(tokenizer.Decode([.. promptIds, .. ids], skipSpecialTokens: true), prompt + text);
        }
    }
}
