using System.Text.Json.Nodes;
using Microsoft.Data.Sqlite;

namespace PiServe.Api.Tests.Evals;

/// <summary>Issue 13's probes of the eval endpoints: unbounded grids and lengths, and variant ids.</summary>
[Collection("evalhost")]
public class EvalHardeningTests(EvalHostFixture fixture)
{
    private EvalHost Host => fixture.Host;

    private static JsonObject Job(string kind, JsonObject parameters) => new()
    {
        ["kind"] = kind, ["model"] = "tiny", ["dataset"] = kind == "passkey" ? null : "pg", ["parameters"] = parameters,
    };

    private async Task<string> Refused(JsonObject request, string param)
    {
        var (status, body) = await Host.PostAsync("/v1/evals", request);
        Assert.True(status == 400, $"expected 400, got {status}: {body?.ToJsonString()}");
        Assert.Equal(param, body!["error"]!["param"]!.GetValue<string>());
        return body["error"]!["message"]!.GetValue<string>();
    }

    [Fact]
    public async Task GridsAndLengthsAreBounded()
    {
        // windows 2..100001: 100,000 grid entries.
        var huge = new JsonArray(Enumerable.Range(2, 100_000).Select(w => (JsonNode)w).ToArray());
        Assert.Contains("at most 64", await Refused(Job("perplexity", new JsonObject { ["windows"] = huge }), "parameters.windows"));
        // Past the 512-token window without asking.
        string m = await Refused(Job("perplexity", new JsonObject { ["windows"] = new JsonArray(16_777_216) }), "parameters.windows");
        Assert.Contains("context window (512 tokens)", m);
        Assert.Contains("beyond_window", m);
        m = await Refused(Job("perplexity", new JsonObject { ["windows"] = new JsonArray(16_777_216), ["beyond_window"] = true }), "parameters.windows");
        Assert.Contains("131072", m);
        Assert.Contains("context window", await Refused(Job("passkey", new JsonObject { ["target_length"] = 4096 }), "parameters.target_length"));
        Assert.Contains("context window", await Refused(Job("passkey", new JsonObject { ["lengths"] = new JsonArray(100, 600) }), "parameters.lengths"));
        Assert.Contains("units of work", await Refused(Job("passkey", new JsonObject { ["depths"] = 1000, ["trials"] = 10000 }), "parameters.trials"));
        Assert.Contains("units of work", await Refused(Job("longrope-search",
            new JsonObject { ["population"] = 4096, ["generations"] = 1000, ["original_length"] = 64, ["target_length"] = 128 }), "parameters.generations"));
        Assert.Contains("131072", await Refused(Job("longrope-search", new JsonObject { ["target_length"] = 16_777_216 }), "parameters.target_length"));
        Assert.Contains("out of range", await Refused(Job("perplexity", new JsonObject { ["stride"] = 2147483648L }), "parameters.stride"));

        // Measuring past the window is allowed when asked for (and then cancelled: only acceptance is checked here).
        var (status, job) = await Host.PostAsync("/v1/evals", Job("perplexity", new JsonObject { ["windows"] = new JsonArray(1024), ["beyond_window"] = true, ["max_documents"] = 1 }));
        Assert.Equal(202, status);
        Assert.True(job!["parameters"]!["beyond_window"]!.GetValue<bool>());
        await Host.SendAsync(HttpMethod.Delete, $"/v1/evals/{job["id"]!.GetValue<string>()}");
    }

    [Theory]
    [InlineData("a/b")]
    [InlineData("../../etc")]
    [InlineData("x\u0000y")]
    [InlineData("\u202eevil")]
    [InlineData("caf\u00e9")]
    [InlineData(" padded")]
    [InlineData("-leading-dash")]
    [InlineData("")]
    public async Task VariantIdsFollowTheOneIdRule(string id)
    {
        var (status, body) = await Host.PostAsync("/v1/models/tiny/variants",
            new JsonObject { ["id"] = id, ["rope_scaling"] = new JsonObject { ["rope_type"] = "linear", ["factor"] = 2.0 } });
        Assert.Equal(400, status);
        Assert.Equal("id", body!["error"]!["param"]!.GetValue<string>());
        Assert.DoesNotContain(Variants(), v => v == id);
    }

    [Fact]
    public async Task AHundredKilobyteIdAndACaseTwinAreRefused()
    {
        var rope = new JsonObject { ["rope_type"] = "linear", ["factor"] = 2.0 };
        var (status, body) = await Host.PostAsync("/v1/models/tiny/variants", new JsonObject { ["id"] = new string('a', 100_000), ["rope_scaling"] = rope.DeepClone() });
        Assert.Equal(400, status);
        Assert.Contains("at most 128", body!["error"]!["message"]!.GetValue<string>());
        (status, body) = await Host.PostAsync("/v1/models/tiny/variants", new JsonObject { ["id"] = "TINY", ["rope_scaling"] = rope.DeepClone() });
        Assert.Equal(400, status);
        Assert.Contains("only in case", body!["error"]!["message"]!.GetValue<string>());
    }

    [Fact]
    public async Task VariantsCanBeDeletedButConfiguredModelsCannot()
    {
        var rope = new JsonObject { ["rope_type"] = "linear", ["factor"] = 2.0 };
        Assert.Equal(201, (await Host.PostAsync("/v1/models/tiny/variants", new JsonObject { ["id"] = "tiny-del", ["rope_scaling"] = rope.DeepClone() })).Status);
        Assert.Equal(201, (await Host.PostAsync("/v1/models/tiny-del/variants", new JsonObject { ["id"] = "tiny-del-child", ["rope_scaling"] = rope.DeepClone() })).Status);
        Assert.Contains("tiny-del", Variants());

        var (status, body) = await Host.SendAsync(HttpMethod.Delete, "/v1/models/tiny-del");
        Assert.Equal(409, status); // another variant is built on it
        Assert.Contains("tiny-del-child", body!["error"]!["message"]!.GetValue<string>());
        (status, body) = await Host.SendAsync(HttpMethod.Delete, "/v1/models/tiny-del-child");
        Assert.Equal(200, status);
        Assert.True(body!["deleted"]!.GetValue<bool>());
        (status, _) = await Host.SendAsync(HttpMethod.Delete, "/v1/models/tiny-del");
        Assert.Equal(200, status);

        Assert.DoesNotContain("tiny-del", Variants());
        var (_, models) = await Host.GetAsync("/v1/models");
        Assert.DoesNotContain(models!["data"]!.AsArray(), m => m!["id"]!.GetValue<string>().StartsWith("tiny-del", StringComparison.Ordinal));
        Assert.Equal(404, (await Host.PostAsync("/v1/completions", new JsonObject { ["model"] = "tiny-del", ["prompt"] = "x", ["max_tokens"] = 1 })).Status);
        Assert.Equal(404, (await Host.SendAsync(HttpMethod.Delete, "/v1/models/tiny-del")).Status);

        (status, body) = await Host.SendAsync(HttpMethod.Delete, "/v1/models/tiny");
        Assert.Equal(403, status);
        Assert.Contains("not a variant", body!["error"]!["message"]!.GetValue<string>());
        Assert.Equal(200, (await Host.PostAsync("/v1/completions", new JsonObject { ["model"] = "tiny", ["prompt"] = "x", ["max_tokens"] = 1 })).Status);
    }

    /// <summary>The variant ids persisted in the job store (read from the SQLite file itself).</summary>
    private List<string> Variants()
    {
        using var c = new SqliteConnection($"Data Source={EvalHost.StorePath(fixture.Root.Path)};Mode=ReadOnly;Pooling=False");
        c.Open();
        using var cmd = c.CreateCommand();
        cmd.CommandText = "SELECT id FROM model_variants";
        using var r = cmd.ExecuteReader();
        var ids = new List<string>();
        while (r.Read()) ids.Add(r.GetString(0));
        return ids;
    }
}
