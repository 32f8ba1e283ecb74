using System.Diagnostics;
using System.Globalization;
using Prometheus;

namespace PiServe.Api.Metrics;

/// <summary>
/// The process and runtime metrics of a registry: prometheus-net's <see cref="DotNetStats"/>
/// (<c>process_cpu_seconds_total</c>, <c>process_virtual_memory_bytes</c>, <c>process_start_time_seconds</c>,
/// <c>process_working_set_bytes</c>, ..., <c>dotnet_collection_count_total</c>, <c>dotnet_total_memory_bytes</c>),
/// plus the standard Prometheus process gauges it lacks: <c>process_resident_memory_bytes</c>
/// and, on Linux, <c>process_open_fds</c> and <c>process_max_fds</c>.
/// </summary>
public static class ProcessMetrics
{
    /// <summary>Adds the process and runtime metrics to <paramref name="registry"/> (call once per registry); returns it.</summary>
    public static CollectorRegistry Register(CollectorRegistry registry)
    {
        DotNetStats.Register(registry);
        var f = Prometheus.Metrics.WithCustomRegistry(registry);
        var resident = f.CreateGauge("process_resident_memory_bytes", "Resident memory size in bytes.");
        Gauge? openFds = null, maxFds = null;
        if (OperatingSystem.IsLinux())
        {
            openFds = f.CreateGauge("process_open_fds", "Number of open file descriptors.");
            maxFds = f.CreateGauge("process_max_fds", "Maximum number of open file descriptors.");
        }
        var process = Process.GetCurrentProcess();
        var gate = new object();
        registry.AddBeforeCollectCallback(() =>
        {
            lock (gate) // Process is not thread-safe; scrapes may overlap.
            {
                try
                {
                    process.Refresh();
                    resident.Set(process.WorkingSet64);
                }
                catch (InvalidOperationException) { }
                if (openFds is not null && TryCountOpenFds(out int open)) openFds.Set(open);
                if (maxFds is not null && TryReadMaxFds(out double max)) maxFds.Set(max);
            }
        });
        return registry;
    }

    private static bool TryCountOpenFds(out int count)
    {
        count = 0;
        try { count = Directory.EnumerateFileSystemEntries("/proc/self/fd").Count(); return true; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; }
    }

    private static bool TryReadMaxFds(out double max)
    {
        max = 0;
        try
        {
            foreach (var line in File.ReadLines("/proc/self/limits"))
            {
                if (!line.StartsWith("Max open files", StringComparison.Ordinal)) continue;
                var soft = line["Max open files".Length..].Split(' ', StringSplitOptions.RemoveEmptyEntries)[0];
                max = soft == "unlimited" ? double.PositiveInfinity : double.Parse(soft, CultureInfo.InvariantCulture);
                return true;
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException) { }
        return false;
    }
}
