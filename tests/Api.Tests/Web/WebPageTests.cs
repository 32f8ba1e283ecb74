using System.Text.Json.Nodes;
using PiServe.Api.Tests.Evals;

namespace PiServe.Api.Tests.Web;

/// <summary>
/// The page at / in Debian's headless chromium (playwright-core) against the real host: it loads
/// without console errors, a prompt streams tokens into the page over SignalR, Stop stops them, and
/// an evaluation started from the page shows progress and then a chart with data. Screenshots of
/// both views are kept under web-artifacts/ next to the test binaries.
/// </summary>
[Collection("eval-compute")]
public class WebPageTests
{
    private static string Dir => Path.Combine(RepoPaths.Root, "tests", "web-e2e");

    [RequiresToolFact("/usr/bin/chromium", "chromium")]
    public async Task PlaygroundStreamsAndStopsAndEvaluationsDrawACharts()
    {
        NodePackages.EnsureInstalled("web-e2e", "playwright-core");
        using var root = new TempDir();
        EvalHost.Prepare(root.Path, books: 1, words: 120);
        await using var host = await EvalHost.StartAsync(root.Path);
        string screenshots = Path.Combine(AppContext.BaseDirectory, "web-artifacts");
        Directory.CreateDirectory(screenshots);

        var input = new JsonObject { ["baseUrl"] = host.BaseUrl, ["screenshots"] = screenshots, ["dataset"] = "pg" };
        var (exit, stdout, stderr) = ProcessRunner.Run("node", ["run.mjs"], Dir, input.ToJsonString(), TimeSpan.FromMinutes(2));
        Assert.True(exit == 0, $"node run.mjs exited {exit}: {stderr}\n{stdout}");
        var r = JsonNode.Parse(stdout)!;
        Assert.True(r["error"] is null, $"browser scenario failed: {r["error"]}\n{host.Log}");
        Assert.Empty(r["consoleErrors"]!.AsArray());

        var steps = r["steps"]!;
        Assert.Contains("tiny", steps["models"]!.AsArray().Select(m => m!.GetValue<string>()));
        var growth = steps["growth"]!.AsArray().Select(x => x!.GetValue<int>()).ToArray();
        Assert.True(growth.Distinct().Count() >= 3, $"the output did not grow while streaming: [{string.Join(",", growth)}]");
        var afterStop = steps["afterStop"]!.AsArray().Select(x => x!.GetValue<int>()).ToArray();
        Assert.Equal(afterStop[0], afterStop[1]); // nothing arrives after Stop
        Assert.Contains("stopped", steps["status"]!.GetValue<string>());
        var scheduler = JsonNode.Parse(await host.Http.GetStringAsync("/v1/models/tiny/scheduler"))!;
        Assert.Equal(0, scheduler["running"]!.GetValue<int>()); // the server cancelled the 2000-token generation

        Assert.Equal("100%", steps["progress"]!.GetValue<string>());
        Assert.Equal(2, steps["chartPoints"]!.GetValue<int>()); // one point per window
        Assert.True(File.Exists(Path.Combine(screenshots, "playground.png")));
        Assert.True(File.Exists(Path.Combine(screenshots, "evaluations.png")));
    }
}
