using System.Diagnostics;
using System.Net.Http;
using System.Net.Sockets;
using System.Text.Json.Nodes;
using PiServe.Api;

namespace PiServe.Api.Tests.Verbs;

/// <summary>The executable's verbs: one JSON object on stdout, or a non-zero exit and {"error"} on stderr.</summary>
public class VerbTests
{
    private const string Model = "llama-default-f32";

    private static (int Code, JsonObject? Out, JsonObject? Err) Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = PiServe.Api.Verbs.Run(args, stdout, stderr);
        JsonObject? Parse(string s) => string.IsNullOrWhiteSpace(s) ? null : JsonNode.Parse(s)!.AsObject();
        return (code, Parse(stdout.ToString()), Parse(stderr.ToString()));
    }

    private static GoldenCase Short => GoldenFixtures.All.First(c => c.Model == Model && c.Name == "short");

    [Fact]
    public void ScorePrintsLogProbsAndTheTop20()
    {
        var g = Short;
        var (code, o, _) = Run("score", "--model", GoldenFixtures.ModelDir(Model), "--tokens", string.Join(",", g.Tokens));
        Assert.Equal(0, code);
        Assert.Equal(g.Tokens, o!["tokens"]!.AsArray().Select(t => t!.GetValue<int>()));
        var lps = o["logprobs"]!.AsArray();
        Assert.Null(lps[0]);
        for (int i = 1; i < g.Tokens.Length; i++)
            Assert.InRange(lps[i]!.GetValue<double>() - g.LogProbs[i]!.Value, -1e-3, 1e-3);
        var top = o["last_top"]!.AsArray();
        Assert.Equal(20, top.Count);
        var logits = top.Select(e => e![1]!.GetValue<double>()).ToArray();
        Assert.Equal(logits.OrderByDescending(x => x), logits);
        int best = top[0]![0]!.GetValue<int>();
        Assert.Equal(g.LastLogits.Max(), g.LastLogits[best], 3);
    }

    [Fact]
    public void GenerateCachedAndUncachedAgreeWithTheReference()
    {
        var g = Short;
        string tokens = string.Join(",", g.Tokens);
        var cached = Run("generate", "--model", GoldenFixtures.ModelDir(Model), "--tokens", tokens, "--max-tokens", g.MaxTokens.ToString(), "--ignore-eos");
        var full = Run("generate", "--model", GoldenFixtures.ModelDir(Model), "--tokens", tokens, "--max-tokens", g.MaxTokens.ToString(), "--ignore-eos", "--no-cache");
        Assert.Equal(0, cached.Code);
        Assert.Equal(0, full.Code);
        var a = cached.Out!["tokens"]!.AsArray().Select(t => t!.GetValue<int>()).ToArray();
        Assert.Equal(g.Full.Tokens, a);
        Assert.Equal(a, full.Out!["tokens"]!.AsArray().Select(t => t!.GetValue<int>()));
        Assert.Equal("exact", cached.Out["rope_cache"]!.GetValue<string>());
        Assert.Equal("none", full.Out["rope_cache"]!.GetValue<string>());
    }

    [Fact]
    public void RopeScalingOverrideChangesTheScores()
    {
        var g = GoldenFixtures.All.First(c => c.Model == Model && c.Name == "override-linear-4");
        var (code, o, _) = Run("score", "--model", GoldenFixtures.ModelDir(Model), "--tokens", string.Join(",", g.Tokens),
            "--rope-scaling", g.RopeScaling!.ToJsonString());
        Assert.Equal(0, code);
        Assert.InRange(o!["logprobs"]![5]!.GetValue<double>() - g.LogProbs[5]!.Value, -1e-3, 1e-3);
        var plain = Run("score", "--model", GoldenFixtures.ModelDir(Model), "--tokens", string.Join(",", g.Tokens));
        Assert.NotEqual(plain.Out!["logprobs"]![5]!.GetValue<double>(), o["logprobs"]![5]!.GetValue<double>(), 6);
    }

    [Theory]
    [InlineData("--rope-scaling", "{\"rope_type\":\"linear\"}", "rope_scaling.factor: required")]
    [InlineData("--rope-scaling", "{not json", "invalid JSON")]
    [InlineData("--rope-scaling", "{\"rope_type\":\"nope\",\"factor\":2}", "unknown rope type 'nope'")]
    [InlineData("--tokens", "1,x,3", "--tokens: 'x' is not a token id")]
    [InlineData("--tokens", "1,100000", "token id 100000 is outside the vocabulary")]
    public void BadInputIsAJsonErrorOnStderr(string option, string value, string message)
    {
        var args = new List<string> { "score", "--model", GoldenFixtures.ModelDir(Model) };
        if (option != "--tokens") args.AddRange(["--tokens", "5,6,7"]);
        args.AddRange([option, value]);
        var (code, o, err) = Run(args.ToArray());
        Assert.NotEqual(0, code);
        Assert.Null(o);
        Assert.Contains(message, err!["error"]!.GetValue<string>());
    }

    [Theory]
    [InlineData("llama2")]
    [InlineData("llama3")]
    public void TokenizeMatchesHuggingFace(string family)
    {
        const string text = "Hello world! 你好 😀  spaces\n";
        var dir = NodePackages.TokenizerModelDir(family);
        var (code, o, _) = Run("tokenize", "--model", dir, "--text", text);
        Assert.Equal(0, code);
        var hf = HfReference.Run(family, [text], []).Encoded[0].Ids;
        Assert.Equal(hf, o!["tokens"]!.AsArray().Select(t => t!.GetValue<int>()));
        var bare = Run("tokenize", "--model", dir, "--text", text, "--no-special");
        Assert.Equal(hf.SkipWhile(id => id == 1 && family == "llama2"), bare.Out!["tokens"]!.AsArray().Select(t => t!.GetValue<int>()));
    }

    [Fact]
    public void MissingModelFolderAndUnknownOptionsAreErrors()
    {
        var missing = Run("score", "--model", "/nonexistent/model", "--tokens", "1");
        Assert.Equal(1, missing.Code);
        Assert.Contains("checkpoint folder not found", missing.Err!["error"]!.GetValue<string>());
        var unknown = Run("generate", "--model", "x", "--tokens", "1", "--max-tokens", "2", "--temperature", "1");
        Assert.Equal(2, unknown.Code);
        Assert.Contains("unknown option --temperature", unknown.Err!["error"]!.GetValue<string>());
        var bad = Run("generate", "--model", GoldenFixtures.ModelDir(Model), "--tokens", "1", "--max-tokens", "2", "--rope-cache", "lazy");
        Assert.Contains("--rope-cache must be exact, planned or hf", bad.Err!["error"]!.GetValue<string>());
    }

    private static string Executable => Path.Combine(AppContext.BaseDirectory, "piserve.dll");

    private static (int Code, string Out, string Err) Exec(params string[] args) =>
        ProcessRunner.Run("dotnet", [Executable, .. args], timeout: TimeSpan.FromSeconds(60));

    [Fact]
    public void BenchSmokeRunOnTheTinyShapeReportsItsFigures()
    {
        // The CI smoke run of the benchmark (seconds): the verb works end to end; no speed is asserted.
        var r = Exec("bench", "--shape", "tiny", "--prompt", "32", "--generate", "8", "--threads", "2", "--depth", "64", "--batch", "6");
        Assert.True(r.Code == 0, r.Err);
        var json = JsonNode.Parse(r.Out)!;
        Assert.Equal(32, json["prompt_tokens"]!.GetValue<int>());
        Assert.Equal(8, json["generated_tokens"]!.GetValue<int>());
        Assert.True(json["prefill_tokens_per_second"]!.GetValue<double>() > 0);
        Assert.True(json["decode_tokens_per_second"]!.GetValue<double>() > 0);
        Assert.True(json["decode_tokens_per_second_at_depth"]!.GetValue<double>() > 0);
        Assert.Equal(6, json["batch"]!.GetValue<int>());
        Assert.True(json["batch_decode_tokens_per_second"]!.GetValue<double>() > 0);
        Assert.True(json["kv_bytes_per_token"]!.GetValue<long>() > 0);
        Assert.True(json["peak_working_set_bytes"]!.GetValue<long>() > 0);
        var bad = Exec("bench", "--shape", "huge");
        Assert.Equal(2, bad.Code);
        Assert.Contains("shape", JsonNode.Parse(bad.Err)!["error"]!.GetValue<string>());
        var badBatch = Exec("bench", "--shape", "tiny", "--batch", "-1");
        Assert.Equal(2, badBatch.Code);
        Assert.Contains("--batch", JsonNode.Parse(badBatch.Err)!["error"]!.GetValue<string>());
    }

    [Fact]
    public void TheRealExecutableRunsVerbsAndExitsNonZeroOnErrors()
    {
        var ok = Exec("generate", "--model", GoldenFixtures.ModelDir(Model), "--tokens", "5,6,7", "--max-tokens", "3", "--ignore-eos");
        Assert.Equal(0, ok.Code);
        Assert.Equal(3, JsonNode.Parse(ok.Out)!["tokens"]!.AsArray().Count);
        var bad = Exec("score", "--model", GoldenFixtures.ModelDir(Model));
        Assert.Equal(2, bad.Code);
        Assert.Equal("", bad.Out);
        Assert.Contains("--tokens is required", JsonNode.Parse(bad.Err)!["error"]!.GetValue<string>());
    }

    [Fact]
    public async Task WithNoVerbTheExecutableServesHealthEndpoints()
    {
        using var dir = new TempDir();
        await using var host = await HostProcess.StartAsync(dir.Path, []);
        var body = await host.Http.GetStringAsync("/health/live");
        Assert.Equal("live", JsonNode.Parse(body)!["status"]!.GetValue<string>());
    }
}
