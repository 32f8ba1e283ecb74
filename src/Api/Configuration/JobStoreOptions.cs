namespace PiServe.Api.Configuration;

/// <summary>
/// PiServe:JobStore — where evaluation jobs and model variants live. "sqlite" (the default): a file
/// in <see cref="PiServeOptions.DataDirectory"/>, one host. "postgres": one PostgreSQL database shared by
/// every replica of a deployment (docs/SCALING.md).
/// </summary>
public sealed class JobStoreOptions
{
    public const string Sqlite = "sqlite", Postgres = "postgres";

    /// <summary>sqlite | postgres.</summary>
    public string Kind { get; set; } = Sqlite;
    /// <summary>Npgsql connection string for <c>postgres</c> (Host=…;Username=…;Password=…;Database=…).</summary>
    public string ConnectionString { get; set; } = "";
    /// <summary>Seconds a unit claim outlives its host's last heartbeat: how soon a killed host's unit is taken over.</summary>
    public double LeaseSeconds { get; set; } = 30;
    /// <summary>Seconds between looks for new work, variant changes and (while notifications are down) progress.</summary>
    public double PollSeconds { get; set; } = 1;
    /// <summary>
    /// PostgreSQL: LISTEN for progress and variant changes of other hosts (true), or only poll every
    /// <see cref="PollSeconds"/> (false: for a connection pooler in transaction mode, such as PgBouncer's, where LISTEN does not work).
    /// </summary>
    public bool Listen { get; set; } = true;
    /// <summary>This host's id in claims and notifications; empty: machine name, process id and a random suffix.</summary>
    public string HostId { get; set; } = "";
}
