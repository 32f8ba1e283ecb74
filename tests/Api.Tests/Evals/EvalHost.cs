using System.Text;
using System.Text.Json.Nodes;
using PiServe.Api.Tests.Serving;

namespace PiServe.Api.Tests.Evals;

/// <summary>
/// The real PiServe executable serving "tiny" (with its tokenizer) and registered datasets, keeping its
/// job database under ROOT/state, so a test can SIGKILL it and start another on the same files.
/// </summary>
public sealed class EvalHost : IAsyncDisposable
{
    private readonly HostProcess _host;
    public string BaseUrl => _host.BaseUrl;
    public HttpClient Http => _host.Http;
    public string Log => _host.Log;

    private EvalHost(HostProcess host) => _host = host;

    public static string DataDir(string root) => Path.Combine(root, "data");
    public static string StorePath(string root) => Path.Combine(root, "state", PiServe.Eval.Jobs.SqliteEvalStore.FileName);

    /// <summary>Writes tiny and the datasets: pg (PG-19 books), gov (GovReport), bad (malformed proof-pile), gone (missing).</summary>
    public static void Prepare(string root, int books = 4, int words = 150)
    {
        EvalFixtures.WriteTinyModel(Path.Combine(root, "tiny"));
        var data = DataDir(root);
        EvalFixtures.WritePg19(Path.Combine(data, "pg19"), books, words);
        EvalFixtures.WriteGovReport(Path.Combine(data, "gov.jsonl"), docs: 2, words: 60);
        File.WriteAllLines(Path.Combine(data, "bad.jsonl"), ["{\"text\": \"fine\"}", "not json", "{\"text\": null}"]);
    }

    public static Task<EvalHost> StartAsync(string root, params string[] extraArgs) => StartAsync(root, "/health/ready", extraArgs);

    /// <summary>Started once <paramref name="readyPath"/> answers 2xx (/health/live for a host whose job store is away).</summary>
    public static async Task<EvalHost> StartAsync(string root, string readyPath, params string[] extraArgs)
    {
        string[] args =
        [
            $"--PiServe:ModelsRoot={root}", "--PiServe:Models:0:Id=tiny", "--PiServe:Models:0:Path=tiny",
            $"--PiServe:DataRoot={DataDir(root)}", $"--PiServe:DataDirectory={Path.Combine(root, "state")}",
            "--PiServe:Datasets:0:Id=pg", "--PiServe:Datasets:0:Kind=pg19", "--PiServe:Datasets:0:Path=pg19",
            "--PiServe:Datasets:1:Id=gov", "--PiServe:Datasets:1:Kind=govreport", "--PiServe:Datasets:1:Path=gov.jsonl",
            "--PiServe:Datasets:2:Id=bad", "--PiServe:Datasets:2:Kind=proof-pile", "--PiServe:Datasets:2:Path=bad.jsonl",
            "--PiServe:Datasets:3:Id=gone", "--PiServe:Datasets:3:Kind=pg19", "--PiServe:Datasets:3:Path=missing",
            "--PiServe:Datasets:4:Id=escape", "--PiServe:Datasets:4:Kind=pg19", "--PiServe:Datasets:4:Path=../tiny",
            "--PiServe:Scheduler:Threads=1", "--Logging:LogLevel:Default=Warning", "--Logging:LogLevel:PiServe=Information",
            .. extraArgs,
        ];
        return new EvalHost(await HostProcess.StartAsync(root, args, readyPath));
    }

    public async Task<(int Status, JsonNode? Body)> SendAsync(HttpMethod method, string path, string? json = null)
    {
        using var req = new HttpRequestMessage(method, path);
        if (json is not null) req.Content = new StringContent(json, Encoding.UTF8, "application/json");
        var response = await Http.SendAsync(req);
        string text = await response.Content.ReadAsStringAsync();
        JsonNode? body = null;
        try { body = text.Length > 0 ? JsonNode.Parse(text) : null; } catch (System.Text.Json.JsonException) { }
        return ((int)response.StatusCode, body);
    }

    public Task<(int Status, JsonNode? Body)> PostAsync(string path, JsonNode body) => SendAsync(HttpMethod.Post, path, body.ToJsonString());
    public Task<(int Status, JsonNode? Body)> GetAsync(string path) => SendAsync(HttpMethod.Get, path);

    /// <summary>Polls GET /v1/evals/{id} until the condition holds.</summary>
    public async Task<JsonNode> WaitForAsync(string id, Func<JsonNode, bool> condition, int seconds = 120, int pollMs = 25)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (true)
        {
            var (status, job) = await GetAsync($"/v1/evals/{id}");
            if (status != 200) throw new InvalidOperationException($"GET /v1/evals/{id}: {status} {job}\n{Log}");
            if (condition(job!)) return job!;
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"job {id}: {job}\n{Log}");
            await Task.Delay(pollMs);
        }
    }

    /// <summary>Ends the process at once (SIGKILL): no shutdown code runs.</summary>
    public void Kill() => _host.Kill();

    /// <summary>Runs a scenario of tests/api-clients/run.mjs against this host (<see cref="HostProcess.RunClient"/>).</summary>
    public JsonNode RunClient(string scenario, JsonObject input) => _host.RunClient(scenario, input);

    public ValueTask DisposeAsync() => _host.DisposeAsync();
}
