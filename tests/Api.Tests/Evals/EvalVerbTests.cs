using System.Text.Json.Nodes;
using PiServe.Eval.Datasets;
using PiServe.Eval.Suites;

namespace PiServe.Api.Tests.Evals;

/// <summary>The eval verb runs any kind locally and prints the results object a job would hold.</summary>
[Collection("eval-compute")]
public class EvalVerbTests
{
    private static (int Code, string Out, string Err) Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = PiServe.Api.Verbs.Run(args, stdout, stderr);
        string err = stderr.ToString().Trim();
        return (code, stdout.ToString().Trim(), err.Length > 0 ? JsonNode.Parse(err)!["error"]!.GetValue<string>() : "");
    }

    [Fact]
    public void EvalPrintsTheSameResultsAsTheSuite()
    {
        using var tmp = new TempDir();
        var dir = EvalFixtures.WritePg19(tmp.File("pg19"), books: 2, words: 80);
        var parameters = new JsonObject { ["windows"] = new JsonArray(32, 64), ["stride"] = 16 };
        var rope = new JsonObject { ["rope_type"] = "dynamic", ["factor"] = 2.0 };
        var (code, stdout, stderr) = Run("eval", "--model", EvalFixtures.TinyDir, "--kind", "perplexity", "--dataset", dir,
            "--dataset-kind", "pg19", "--parameters", parameters.ToJsonString(), "--rope-scaling", rope.ToJsonString(), "--threads", "1");
        Assert.True(code == 0, stderr);
        var expected = EvalFixtures.Run("perplexity", parameters, new DatasetSource("pg19", DatasetKind.Pg19, dir), ropeScaling: rope);
        Assert.Equal(expected.ToJsonString(), JsonNode.Parse(stdout)!.ToJsonString());

        (code, stdout, stderr) = Run("eval", "--model", EvalFixtures.TinyDir, "--kind", "passkey", "--parameters", """{"target_length": 80, "depths": 2, "trials": 1}""");
        Assert.True(code == 0, stderr);
        Assert.Equal(2, JsonNode.Parse(stdout)!["points"]!.AsArray().Count);
    }

    [Fact]
    public void EvalUsageErrors()
    {
        var (code, _, err) = Run("eval", "--model", EvalFixtures.TinyDir, "--kind", "bleu");
        Assert.Equal(2, code);
        Assert.Contains("unknown kind 'bleu'", err);
        (code, _, err) = Run("eval", "--model", EvalFixtures.TinyDir, "--kind", "perplexity");
        Assert.Equal(2, code);
        Assert.Contains("needs --dataset and --dataset-kind", err);
        (code, _, err) = Run("eval", "--model", EvalFixtures.TinyDir, "--kind", "passkey", "--parameters", """{"trials": 0}""");
        Assert.Equal(2, code);
        Assert.Contains("param: parameters.trials", err);
        (code, _, err) = Run("eval", "--model", EvalFixtures.TinyDir, "--kind", "perplexity", "--dataset", "/nonexistent", "--dataset-kind", "pg19");
        Assert.Equal(1, code);
        Assert.Contains("does not exist", err);
    }
}
