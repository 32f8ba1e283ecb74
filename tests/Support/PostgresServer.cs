using System.Net;
using System.Net.Sockets;
using Npgsql;

namespace PiServe.Tests.Support;

/// <summary>
/// A real PostgreSQL server (Debian's postgresql package) for one test class: initdb into a temp
/// folder, started on a free loopback port with trust authentication for the user "piserve", stopped
/// and deleted at the end. Runs as the "postgres" system user when the tests run as root (PostgreSQL
/// refuses to run as root). <see cref="Stop"/> and <see cref="Start"/> restart it on the same port and
/// data, as a database restart mid-job does.
/// </summary>
public sealed class PostgresServer : IDisposable
{
    public const string User = "piserve";
    private readonly string _root;
    private readonly string _data;
    private readonly bool _asPostgres;

    /// <summary>The folder of Debian's PostgreSQL binaries (the newest installed), or null when none is.</summary>
    public static string? BinDir { get; } = FindBinDir();

    private static string? FindBinDir()
    {
        const string lib = "/usr/lib/postgresql";
        if (!Directory.Exists(lib)) return null;
        return Directory.GetDirectories(lib).OrderByDescending(d => int.TryParse(System.IO.Path.GetFileName(d), out int v) ? v : 0)
            .Select(d => System.IO.Path.Combine(d, "bin")).FirstOrDefault(b => File.Exists(System.IO.Path.Combine(b, "initdb")));
    }

    public int Port { get; }
    public string Log => File.Exists(LogPath) ? File.ReadAllText(LogPath) : "";
    private string LogPath => System.IO.Path.Combine(_root, "postgres.log");

    /// <summary>Connection string to <paramref name="database"/> (default: "piserve").</summary>
    public string ConnectionString(string database = "piserve") =>
        $"Host=127.0.0.1;Port={Port};Username={User};Database={database};Timeout=5;Command Timeout=30";

    public PostgresServer()
    {
        if (BinDir is null) throw new InvalidOperationException("PostgreSQL is not installed: apt-get install -y postgresql (.ci/run does)");
        _root = System.IO.Path.Combine("/tmp", "piserve-pg-" + Guid.NewGuid().ToString("N")[..10]);
        _data = System.IO.Path.Combine(_root, "data");
        Directory.CreateDirectory(_root);
        _asPostgres = Environment.UserName == "root";
        if (_asPostgres) Run("chown", ["-R", "postgres:postgres", _root], asPostgres: false);
        Port = FreePort();
        var (code, output) = Run(System.IO.Path.Combine(BinDir, "initdb"), ["-D", _data, "-U", User, "-A", "trust", "-E", "UTF8", "--no-sync", "--no-locale"]);
        if (code != 0) throw new InvalidOperationException($"initdb failed: {output}");
        Start();
        CreateDatabase("piserve");
    }

    private static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    private (int Code, string Output) Run(string file, string[] args, bool? asPostgres = null)
    {
        bool wrap = asPostgres ?? _asPostgres;
        var (code, stdout, stderr) = wrap
            ? ProcessRunner.Run("runuser", ["-u", "postgres", "--", file, .. args], _root, timeout: TimeSpan.FromSeconds(60))
            : ProcessRunner.Run(file, args, _root, timeout: TimeSpan.FromSeconds(60));
        return (code, stdout + stderr);
    }

    /// <summary>Starts the server (again) on <see cref="Port"/>; returns once it accepts connections.</summary>
    public void Start()
    {
        var (code, output) = Run(System.IO.Path.Combine(BinDir!, "pg_ctl"),
            ["-D", _data, "-l", LogPath, "-w", "-t", "60", "-o", $"-p {Port} -k {_root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200", "start"]);
        if (code != 0) throw new InvalidOperationException($"pg_ctl start failed: {output}\n{Log}");
    }

    /// <summary>Stops the server (fast shutdown: open connections are closed, as on a database restart).</summary>
    public void Stop()
    {
        var (code, output) = Run(System.IO.Path.Combine(BinDir!, "pg_ctl"), ["-D", _data, "-m", "fast", "-w", "stop"]);
        if (code != 0) throw new InvalidOperationException($"pg_ctl stop failed: {output}");
    }

    /// <summary>A fresh database (each test class or test its own, so jobs never mix).</summary>
    public string CreateDatabase(string name)
    {
        using var c = new NpgsqlConnection(ConnectionString("postgres"));
        c.Open();
        using var cmd = new NpgsqlCommand($"CREATE DATABASE \"{name}\"", c);
        cmd.ExecuteNonQuery();
        return ConnectionString(name);
    }

    public void Dispose()
    {
        try
        {
            Run(System.IO.Path.Combine(BinDir!, "pg_ctl"), ["-D", _data, "-m", "immediate", "-w", "stop"]);
        }
        catch (Exception) { }
        NpgsqlConnection.ClearAllPools();
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}

/// <summary>A theory skipped, saying why, when PostgreSQL is not installed (.ci/run installs it, so CI skips nothing).</summary>
public sealed class RequiresPostgresTheoryAttribute : TheoryAttribute
{
    public RequiresPostgresTheoryAttribute()
    {
        if (PostgresServer.BinDir is null) Skip = "PostgreSQL is not installed: install the Debian package 'postgresql' (apt-get install -y postgresql; .ci/run does)";
    }
}

/// <summary>A fact skipped, saying why, when PostgreSQL is not installed (.ci/run installs it, so CI skips nothing).</summary>
public sealed class RequiresPostgresFactAttribute : FactAttribute
{
    public RequiresPostgresFactAttribute()
    {
        if (PostgresServer.BinDir is null) Skip = "PostgreSQL is not installed: install the Debian package 'postgresql' (apt-get install -y postgresql; .ci/run does)";
    }
}

/// <summary>One real PostgreSQL server shared by a test collection (started on first use); each test takes a database of its own.</summary>
public sealed class PostgresFixture : IDisposable
{
    private readonly Lazy<PostgresServer> _server = new(() => new PostgresServer());
    private int _databases;
    public PostgresServer Server => _server.Value;
    public string NewDatabase() => Server.CreateDatabase($"t{Interlocked.Increment(ref _databases)}_{Guid.NewGuid().ToString("N")[..6]}");
    public void Dispose()
    {
        if (_server.IsValueCreated) _server.Value.Dispose();
    }
}

