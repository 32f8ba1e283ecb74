using System.Text.Json.Nodes;
using PiServe.Eval.Suites;
using PiServe.Inference.Cache;
using PiServe.Inference.Generation;
using PiServe.Inference.Model;
using PiServe.Inference.Rope;
using PiServe.Api.Tests.Serving;
using PiServe.Inference.Tokenization;

namespace PiServe.Api.Tests.Models;

/// <summary>
/// The models shipped in models/ (made by tools/train): they load, their tokenizer equals SentencePiece's
/// (fixture recorded by tools/train/prepare.py), they produce finite, non-degenerate, KJV-like output, the
/// base model retrieves a passkey within its window, and a host with nothing configured serves both and the shipped datasets.
/// </summary>
public sealed class ShippedModelTests
{
    public static string Dir(string id) => Path.Combine(RepoPaths.Root, "models", id);

    private static (LlamaModel Model, ITokenizer Tokenizer) Load(string id) =>
        (LlamaModel.Load(Dir(id)), TokenizerLoader.Load(Dir(id)));

    [Theory]
    [InlineData("kjv-base-256", "default", 256)]
    [InlineData("kjv-pi-1024", "linear", 1024)]
    public void ShippedCheckpointLoadsWithItsRopeAndWindow(string id, string ropeType, int window)
    {
        var (model, tokenizer) = Load(id);
        using var _ = model;
        Assert.Equal(ropeType, model.Rope.RopeType);
        Assert.Equal(window, ContextWindow.For(model.Config, model.Rope));
        Assert.Equal(4096, tokenizer.VocabSize);
        Assert.Equal(4096, model.Config.VocabSize);
    }

    [Fact]
    public void TokenizerEqualsSentencePieceOnRecordedCases()
    {
        var tokenizer = TokenizerLoader.Load(Dir("kjv-base-256"));
        var cases = JsonNode.Parse(File.ReadAllText(Path.Combine(RepoPaths.Fixtures, "kjv", "tokenizer-cases.json")))!["cases"]!.AsArray();
        Assert.True(cases.Count > 50);
        foreach (var c in cases)
        {
            string text = c!["text"]!.GetValue<string>();
            int[] expected = [1, .. c["ids"]!.AsArray().Select(n => n!.GetValue<int>())];
            int[] ids = tokenizer.Encode(text);
            Assert.True(expected.SequenceEqual(ids), $"{text}: expected [{string.Join(",", expected)}], got [{string.Join(",", ids)}]");
            Assert.Equal(text, tokenizer.Decode(ids, skipSpecialTokens: true));
        }
    }

    [Theory]
    [InlineData("kjv-base-256")]
    [InlineData("kjv-pi-1024")]
    public void ScoresKjvLikeTextFarBetterThanTheSameTokensShuffled(string id)
    {
        var (model, tokenizer) = Load(id);
        using var _ = model;
        int[] text = tokenizer.Encode("And it came to pass, when the king heard these words, that he rent his clothes, and said unto them, Go ye, and enquire of the LORD for me.");
        var shuffled = text.ToArray();
        new Random(3).Shuffle(shuffled.AsSpan(1));
        double Nll(int[] tokens)
        {
            var r = Scoring.Score(model, tokens);
            Assert.All(r.LastLogits, v => Assert.True(float.IsFinite(v)));
            return -r.LogProbs.Skip(1).Average(lp => lp!.Value);
        }
        double nll = Nll(text), shuffledNll = Nll(shuffled);
        // A uniform guess costs ln 4096 = 8.3 nats per token.
        Assert.True(nll < 3.5, $"{id}: mean NLL {nll:F2} on KJV-style text");
        Assert.True(shuffledNll > nll + 2, $"{id}: shuffled {shuffledNll:F2} vs {nll:F2}");
    }

    [Theory]
    [InlineData("kjv-base-256")]
    [InlineData("kjv-pi-1024")]
    public void GreedyContinuationIsVariedEnglish(string id)
    {
        var (model, tokenizer) = Load(id);
        using var _ = model;
        var prompt = tokenizer.Encode("In the beginning God");
        var result = GreedyGenerator.Generate(model, prompt, 48, KvCachePolicy.Exact);
        string text = tokenizer.Decode(result.Tokens, skipSpecialTokens: true);
        Assert.True(result.Tokens.Distinct().Count() >= 12, $"{id}: degenerate continuation: {text}");
        var words = text.Split([' ', '\n', ',', '.', ';', ':'], StringSplitOptions.RemoveEmptyEntries);
        Assert.True(words.Length >= 15, $"{id}: {text}");
        Assert.Contains(words, w => w is "the" or "and" or "of" or "unto");
    }

    [Theory]
    [InlineData("kjv-base-256", 256)]
    [InlineData("kjv-pi-1024", 1024)]
    public void RetrievesThePasskeyAcrossItsWindow(string id, int length)
    {
        var (model, tokenizer) = Load(id);
        using var _ = model;
        var eval = new PiServe.Eval.Models.LlamaEvalModel(id, model, tokenizer);
        int fillers = PasskeySuite.FillersFor(eval, length);
        Assert.True(fillers >= 3);
        int hits = 0, trials = 0;
        // Distances up to 3/4 of the window: the PI model's success falls to 20% at the very largest (docs/EVALUATIONS.md).
        foreach (int before in new[] { fillers / 4, fillers / 2, 3 * fillers / 4, fillers })
        {
            for (int t = 0; t < 2; t++)
            {
                int key = PasskeySuite.Key(11, before * 10 + t);
                var prompt = tokenizer.Encode(PasskeySuite.Prompt(key, before, fillers - before));
                Assert.True(prompt.Length <= length);
                var output = GreedyGenerator.Generate(model, prompt, 7, KvCachePolicy.Exact).Tokens;
                trials++;
                if (PasskeySuite.IsCorrect(tokenizer.Decode(output, skipSpecialTokens: true), key)) hits++;
            }
        }
        Assert.True(hits >= trials - 1, $"{id}: {hits}/{trials} passkeys retrieved at {length} tokens");
    }

    [Fact]
    public async Task HostWithNoModelsConfiguredServesTheShippedModels()
    {
        using var dir = new TempDir();
        await using var host = await HostProcess.StartAsync(dir.Path, [$"--PiServe:DataDirectory={Path.Combine(dir.Path, "state")}"], readyPath: "/health/ready");
        var models = JsonNode.Parse(await host.Http.GetStringAsync("/v1/models"))!["data"]!.AsArray();
        var ids = models.Select(m => m!["id"]!.GetValue<string>()).Order().ToArray();
        Assert.Equal(["kjv-base-256", "kjv-pi-1024"], ids);
        Assert.Equal(1024, models.Single(m => m!["id"]!.GetValue<string>() == "kjv-pi-1024")!["max_model_len"]!.GetValue<int>());
        Assert.Equal(256, models.Single(m => m!["id"]!.GetValue<string>() == "kjv-base-256")!["max_model_len"]!.GetValue<int>());
        var response = await host.Http.PostAsync("/v1/completions", new StringContent(
            """{"model":"kjv-pi-1024","prompt":"And the LORD said unto Moses,","max_tokens":24,"temperature":0}""",
            System.Text.Encoding.UTF8, "application/json"));
        var body = JsonNode.Parse(await response.Content.ReadAsStringAsync())!;
        Assert.True(response.IsSuccessStatusCode, body.ToJsonString());
        string text = body["choices"]![0]!["text"]!.GetValue<string>();
        Assert.True(text.Split(' ', StringSplitOptions.RemoveEmptyEntries).Length >= 8, text);
        Assert.Equal(24, body["usage"]!["completion_tokens"]!.GetValue<int>());

        // The shipped datasets are registered too, and a job runs on them from a fresh start.
        var datasets = JsonNode.Parse(await host.Http.GetStringAsync("/v1/datasets"))!["data"]!.AsArray();
        Assert.Equal(["kjv-search", "kjv-test"], datasets.Select(d => d!["id"]!.GetValue<string>()).Order());
        Assert.All(datasets, d => Assert.True(d!["exists"]!.GetValue<bool>() && d["kind"]!.GetValue<string>() == "pg19", d.ToJsonString()));
        var submitted = await host.Http.PostAsync("/v1/evals", new StringContent(
            """{"kind":"perplexity","model":"kjv-base-256","dataset":"kjv-test","parameters":{"windows":[256],"max_tokens":512,"stride":256}}""",
            System.Text.Encoding.UTF8, "application/json"));
        var job = JsonNode.Parse(await submitted.Content.ReadAsStringAsync())!;
        Assert.True(submitted.IsSuccessStatusCode, job.ToJsonString());
        var deadline = DateTime.UtcNow.AddSeconds(120);
        while (job["state"]!.GetValue<string>() is "queued" or "running" && DateTime.UtcNow < deadline)
        {
            await Task.Delay(100);
            job = JsonNode.Parse(await host.Http.GetStringAsync($"/v1/evals/{job["id"]}"))!;
        }
        Assert.Equal("succeeded", job["state"]!.GetValue<string>());
        var window = job["results"]!["windows"]![0]!;
        Assert.Equal(6, window["documents"]!.AsArray().Count);
        // The held-out text is KJV English the base model was trained on the like of: far below the vocabulary's 4096.
        Assert.InRange(window["ppl"]!.GetValue<double>(), 5, 100);
        var ci = window["ppl_ci95"]!.AsArray().Select(x => x!.GetValue<double>()).ToArray();
        Assert.True(ci[0] < window["ppl"]!.GetValue<double>() && window["ppl"]!.GetValue<double>() < ci[1], window.ToJsonString());
    }
}
