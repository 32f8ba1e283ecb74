using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace PiServe.Tests.Support;

/// <summary>
/// The real PiServe executable (piserve.dll next to the test binaries) on a free loopback port:
/// started with configuration arguments, its output captured, ready once a health path answers.
/// </summary>
public sealed class HostProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _log = new();

    private HostProcess(Process process, string baseUrl)
    {
        _process = process;
        BaseUrl = baseUrl;
        Http = new HttpClient { BaseAddress = new Uri(baseUrl), Timeout = TimeSpan.FromSeconds(60) };
    }

    public string BaseUrl { get; }
    public HttpClient Http { get; }
    public string Log { get { lock (_log) return _log.ToString(); } }

    public static async Task<HostProcess> StartAsync(string workingDirectory, IEnumerable<string> args, string readyPath = "/health/live")
    {
        int port;
        using (var l = new TcpListener(IPAddress.Loopback, 0)) { l.Start(); port = ((IPEndPoint)l.LocalEndpoint).Port; }
        string url = $"http://127.0.0.1:{port}";
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = workingDirectory };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "piserve.dll"));
        psi.ArgumentList.Add("--urls");
        psi.ArgumentList.Add(url);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["ASPNETCORE_ENVIRONMENT"] = "Production";
        var process = Process.Start(psi)!;
        var host = new HostProcess(process, url);
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (host._log) host._log.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (host._log) host._log.AppendLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();

        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (DateTime.UtcNow < deadline)
        {
            if (process.HasExited) throw new InvalidOperationException($"the host exited with {process.ExitCode}:\n{host.Log}");
            try
            {
                if ((await host.Http.GetAsync(readyPath)).IsSuccessStatusCode) return host;
            }
            catch (HttpRequestException) { }
            await Task.Delay(100);
        }
        await host.DisposeAsync();
        throw new TimeoutException($"the host did not answer {readyPath} within 60 s");
    }

    /// <summary>Ends the process at once (SIGKILL): no shutdown code runs.</summary>
    /// <summary>Runs a scenario of tests/api-clients/run.mjs (the official openai and SignalR npm clients) against this host.</summary>
    public System.Text.Json.Nodes.JsonNode RunClient(string scenario, System.Text.Json.Nodes.JsonObject input)
    {
        string dir = NodePackages.EnsureInstalled("api-clients", "@apidevtools/swagger-parser");
        input["baseUrl"] = BaseUrl;
        var (code, stdout, stderr) = ProcessRunner.Run("node", ["run.mjs", scenario], dir, input.ToJsonString(), TimeSpan.FromMinutes(2));
        if (code != 0) throw new InvalidOperationException($"node {scenario} exited {code}: {stderr}\n{stdout}");
        return System.Text.Json.Nodes.JsonNode.Parse(stdout)!;
    }

    public void Kill()
    {
        _process.Kill(entireProcessTree: true);
        _process.WaitForExit(10_000);
    }

    public async ValueTask DisposeAsync()
    {
        try { if (!_process.HasExited) _process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
        await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10)).ContinueWith(_ => { });
        _process.Dispose();
        Http.Dispose();
    }
}
