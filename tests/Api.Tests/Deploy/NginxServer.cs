using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;
using PiServe.Api.Tests.Metrics;

namespace PiServe.Api.Tests.Deploy;

/// <summary>
/// deploy/nginx/piserve.conf for a machine without Docker's DNS, and Debian's real nginx running it.
/// <para>The shipped file is used as it is but for two substitutions, both of what only compose
/// provides: each <c>server api-replica:8080 ...;</c> line becomes one line per given backend
/// (what nginx does itself when Docker's DNS answers the name with one address per replica), and
/// <c>listen 80;</c> becomes a free loopback port. The pid file goes to a scratch folder
/// (<c>-g 'pid ...;'</c>), and <c>-e stderr</c> keeps nginx from opening its compiled-in error log.</para>
/// </summary>
public sealed partial class NginxServer : IDisposable
{
    public const string ShippedConfig = "deploy/nginx/piserve.conf";

    private readonly Process _process;
    private readonly StringBuilder _log = new();
    private readonly TempDir _dir;

    public int Port { get; }
    public string BaseUrl => $"http://127.0.0.1:{Port}";
    public string Log { get { lock (_log) return _log.ToString(); } }

    public static string? Executable => ProcessRunner.FindOnPath("nginx") ?? (File.Exists("/usr/sbin/nginx") ? "/usr/sbin/nginx" : null);

    [GeneratedRegex(@"^(\s*)server api-replica:8080( [^;]*)?;", RegexOptions.Multiline)]
    private static partial Regex ReplicaServerLine();

    /// <summary>The shipped config with the replica name replaced by <paramref name="backends"/> (host:port each) and, when given, the listen port.</summary>
    public static string Retarget(string config, IReadOnlyList<string> backends, int? listenPort = null)
    {
        int lines = ReplicaServerLine().Matches(config).Count;
        if (lines != 2) throw new InvalidOperationException($"expected the two upstreams' `server api-replica:8080` lines, found {lines}");
        string result = ReplicaServerLine().Replace(config, m =>
            string.Join("\n", backends.Select(b => $"{m.Groups[1].Value}server {b}{m.Groups[2].Value};")));
        if (listenPort is int port)
        {
            if (!result.Contains("listen 80;")) throw new InvalidOperationException("the shipped config no longer says `listen 80;`");
            result = result.Replace("listen 80;", $"listen 127.0.0.1:{port};");
        }
        return result;
    }

    /// <summary>Runs <c>nginx -t</c> on a config file; the exit code and nginx's output.</summary>
    public static (int Code, string Output) Test(string configPath)
    {
        using var dir = new TempDir();
        var (code, stdout, stderr) = ProcessRunner.Run(Executable!,
            ["-t", "-p", dir.Path, "-e", "stderr", "-c", configPath, "-g", $"pid {dir.File("nginx.pid")};"], dir.Path, timeout: TimeSpan.FromSeconds(30));
        return (code, stdout + stderr);
    }

    /// <summary>Starts nginx (in the foreground, so the test owns the process) on the retargeted shipped config.</summary>
    public NginxServer(IReadOnlyList<string> backends)
    {
        _dir = new TempDir();
        Port = MetricsTestHost.FreePort();
        string config = _dir.File("nginx.conf");
        File.WriteAllText(config, Retarget(File.ReadAllText(Path.Combine(RepoPaths.Root, ShippedConfig)), backends, Port));
        var psi = new ProcessStartInfo(Executable!) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = _dir.Path };
        foreach (var a in new[] { "-p", _dir.Path, "-e", "stderr", "-c", config, "-g", $"pid {_dir.File("nginx.pid")}; daemon off;" })
            psi.ArgumentList.Add(a);
        _process = Process.Start(psi)!;
        _process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (_log) _log.AppendLine(e.Data); };
        _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_log) _log.AppendLine(e.Data); };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();

        var clock = Stopwatch.StartNew();
        while (true)
        {
            if (_process.HasExited) throw new InvalidOperationException($"nginx exited with {_process.ExitCode}:\n{Log}");
            try
            {
                using var probe = new TcpClient();
                probe.Connect("127.0.0.1", Port);
                return;
            }
            catch (SocketException) when (clock.Elapsed < TimeSpan.FromSeconds(10)) { Thread.Sleep(50); }
        }
    }

    public void Dispose()
    {
        try { if (!_process.HasExited) _process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
        _process.WaitForExit(5_000);
        _process.Dispose();
        _dir.Dispose();
    }
}
