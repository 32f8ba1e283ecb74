using System.Diagnostics;
using System.Net.Http;
using System.Text;
using System.Text.Json.Nodes;

namespace PiServe.Api.Tests.Metrics;

/// <summary>Debian's real Prometheus server on a loopback port, with a given configuration, for the tests.</summary>
public sealed class PrometheusServer : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _log = new();
    private readonly TempDir _dir;
    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(3) };

    public int Port { get; }
    public bool HasExited => _process.HasExited;
    public string Log { get { lock (_log) return _log.ToString(); } }

    public PrometheusServer(string configYaml)
    {
        _dir = new TempDir();
        Port = MetricsTestHost.FreePort();
        File.WriteAllText(_dir.File("prometheus.yml"), configYaml);
        var psi = new ProcessStartInfo(ProcessRunner.FindOnPath("prometheus")!)
        {
            RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = _dir.Path,
        };
        foreach (var a in new[]
        {
            "--config.file=" + _dir.File("prometheus.yml"),
            "--storage.tsdb.path=" + _dir.File("data"),
            $"--web.listen-address=127.0.0.1:{Port}",
            "--log.level=warn",
        })
            psi.ArgumentList.Add(a);
        _process = Process.Start(psi)!;
        _process.OutputDataReceived += (_, e) => { lock (_log) _log.AppendLine(e.Data); };
        _process.ErrorDataReceived += (_, e) => { lock (_log) _log.AppendLine(e.Data); };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    /// <summary>The result vector of an instant query.</summary>
    public async Task<JsonArray> QueryAsync(string promql)
    {
        var body = await _http.GetStringAsync($"http://127.0.0.1:{Port}/api/v1/query?query={Uri.EscapeDataString(promql)}");
        var json = JsonNode.Parse(body)!;
        if (json["status"]!.GetValue<string>() != "success") throw new InvalidOperationException($"query failed: {body}");
        return json["data"]!["result"]!.AsArray();
    }

    /// <summary>Polls (bounded) until the query returns at least one sample; null if it never does.</summary>
    public async Task<JsonArray?> WaitForDataAsync(string promql, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < timeout && !_process.HasExited)
        {
            try
            {
                var result = await QueryAsync(promql);
                if (result.Count > 0) return result;
            }
            catch (HttpRequestException) { }
            catch (TaskCanceledException) { }
            await Task.Delay(250);
        }
        return null;
    }

    public void Dispose()
    {
        if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        _process.WaitForExit(5_000);
        _process.Dispose();
        _http.Dispose();
        _dir.Dispose();
    }
}
