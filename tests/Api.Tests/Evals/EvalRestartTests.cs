using System.Text.Json.Nodes;
using PiServe.Eval.Datasets;
using PiServe.Eval.Jobs;
using PiServe.Eval.Suites;

namespace PiServe.Api.Tests.Evals;

/// <summary>A host killed mid-job (SIGKILL) resumes the job after a restart: nothing lost, nothing recomputed.</summary>
[Collection("eval-compute")]
public class EvalRestartTests
{
    [Fact]
    public async Task AKilledHostResumesTheJobFromItsLastCompletedUnit()
    {
        using var root = new TempDir();
        // Books long enough that the job is still running when its third unit is seen done (with 200
        // words a unit took a few ms once the kernels got faster, and the job could finish between polls).
        EvalHost.Prepare(root.Path, books: 6, words: 1500);
        var request = new JsonObject
        {
            ["kind"] = "perplexity", ["model"] = "tiny", ["dataset"] = "pg",
            ["parameters"] = new JsonObject { ["windows"] = new JsonArray(96), ["stride"] = 8 },
        };
        string id;
        long startedAt;
        await using (var first = await EvalHost.StartAsync(root.Path))
        {
            var (vs, _) = await first.PostAsync("/v1/models/tiny/variants",
                new JsonObject { ["id"] = "tiny-pi2", ["rope_scaling"] = new JsonObject { ["rope_type"] = "linear", ["factor"] = 2.0 } });
            Assert.Equal(201, vs);
            var (status, job) = await first.PostAsync("/v1/evals", request);
            Assert.Equal(202, status);
            id = job!["id"]!.GetValue<string>();
            var running = await first.WaitForAsync(id, j => j["progress"]!["done"]!.GetValue<int>() >= 3, pollMs: 10);
            Assert.Equal("running", running["state"]!.GetValue<string>());
            startedAt = running["started_at"]!.GetValue<long>();
            first.Kill();
        }

        // What the killed process had committed.
        var store = new SqliteEvalStore(EvalHost.StorePath(root.Path));
        var killed = store.Get(id)!;
        Assert.Equal(EvalStates.Running, killed.State);
        Assert.InRange(killed.Done, 3, killed.Total - 1); // killed mid-job
        var before = store.CompletedUnits(id);
        Assert.Equal(killed.Done, before.Count);

        await using (var second = await EvalHost.StartAsync(root.Path))
        {
            var done = await second.WaitForAsync(id, j => EvalStates.IsTerminal(j["state"]!.GetValue<string>()));
            Assert.Equal("succeeded", done["state"]!.GetValue<string>());
            Assert.Equal(startedAt, done["started_at"]!.GetValue<long>());
            Assert.Equal(6, done["progress"]!["done"]!.GetValue<int>());
            // Registered variants survive the restart too.
            var models = (await second.GetAsync("/v1/models")).Body!["data"]!.AsArray();
            Assert.Contains(models, m => m!["id"]!.GetValue<string>() == "tiny-pi2" && m["max_model_len"]!.GetValue<int>() == 1024);

            // Same results as an uninterrupted run of the same job.
            var uninterrupted = EvalFixtures.Run("perplexity", request["parameters"]!.AsObject(),
                new DatasetSource("pg", DatasetKind.Pg19, Path.Combine(EvalHost.DataDir(root.Path), "pg19")));
            Assert.Equal(uninterrupted.ToJsonString(), done["results"]!.ToJsonString());
            long tokens = uninterrupted["windows"]![0]!["tokens"]!.GetValue<long>();
            Assert.Equal(tokens, done["progress"]!["tokens_scored"]!.GetValue<long>()); // nothing counted twice
        }

        // Nothing already computed was computed again: units committed before the kill were started once,
        // kept their stored results, and at most the unit in flight at the kill was started twice.
        var starts = store.UnitStartCounts(id);
        Assert.Equal(6, starts.Count);
        foreach (var (unit, stored) in before)
        {
            Assert.Equal(1, starts[unit]);
            Assert.Equal(stored.Result.ToJsonString(), store.CompletedUnits(id)[unit].Result.ToJsonString());
        }
        Assert.True(starts.Values.Count(c => c > 1) <= 1 && starts.Values.All(c => c <= 2), string.Join(", ", starts));
    }
}
