using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Globalization;

namespace PiServe.Api.Metrics;

/// <summary>What <see cref="PrometheusExposition"/> collects besides the "PiServe" meter.</summary>
public sealed class PrometheusExpositionOptions
{
    /// <summary>The .NET runtime's "System.Runtime" meter: <c>dotnet_gc_*</c>, <c>dotnet_jit_*</c>, <c>dotnet_thread_pool_*</c>, ... Default true.</summary>
    public bool IncludeRuntimeMetrics { get; set; } = true;

    /// <summary>ASP.NET Core's "Microsoft.AspNetCore.Hosting" meter of this host: <c>http_server_request_duration_seconds</c>, <c>http_server_active_requests</c>. Default true.</summary>
    public bool IncludeAspNetCoreMetrics { get; set; } = true;

    /// <summary>The standard Prometheus process metrics: <c>process_cpu_seconds_total</c>, <c>process_resident_memory_bytes</c>, ... Default true.</summary>
    public bool IncludeProcessMetrics { get; set; } = true;

    /// <summary>Further meter names to collect (meters of this host's <see cref="IMeterFactory"/>, or global meters).</summary>
    public IList<string> AdditionalMeters { get; } = new List<string>();
}

/// <summary>
/// Collects instruments with a <see cref="MeterListener"/> and renders them in the Prometheus text
/// exposition format 0.0.4 (<see cref="PrometheusTextWriter"/>).
/// </summary>
/// <remarks>
/// <para>Naming follows the OpenTelemetry-to-Prometheus conventions: the instrument name with
/// every character outside <c>[a-zA-Z0-9_:]</c> turned to <c>_</c>; then the unit as a suffix unless
/// the name already holds it (<c>s</c> → <c>_seconds</c>, <c>By</c> → <c>_bytes</c>, <c>ms</c> →
/// <c>_milliseconds</c>; annotations such as <c>{token}</c> add nothing); then, for monotonic counters,
/// <c>_total</c>, while other families that would end in <c>_total</c>, <c>_count</c>, <c>_sum</c> or
/// <c>_bucket</c> get <c>_value</c> appended (<c>dotnet.assembly.count</c> → <c>dotnet_assembly_count_value</c>). Counter and ObservableCounter become counters; UpDownCounter, Gauge and their
/// observable forms become gauges; Histogram becomes a histogram with the instrument's advised
/// bucket boundaries (<see cref="InstrumentAdvice{T}.HistogramBucketBoundaries"/>), or the
/// Prometheus default buckets when it has none.</para>
/// <para>Thread-safe. Recording never waits for a scrape: counters and gauges are updated with
/// atomic operations and histogram series hold a tiny lock only to update or copy their buckets.
/// Scrapes run one at a time; observable instruments are observed during the scrape.</para>
/// </remarks>
public sealed class PrometheusExposition : IDisposable
{
    /// <summary>The HTTP content type of the exposition.</summary>
    public const string ContentType = PrometheusTextWriter.ContentType;

    /// <summary>The Prometheus client libraries' default buckets, for histograms without advice.</summary>
    public static readonly IReadOnlyList<double> DefaultBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

    private static readonly HashSet<string> ProcessFamilyNames =
        ["process_cpu_seconds_total", "process_resident_memory_bytes", "process_virtual_memory_bytes", "process_start_time_seconds", "process_open_fds", "process_max_fds"];

    private readonly Func<Meter, bool> _meterFilter;
    private readonly bool _includeProcessMetrics;
    private readonly MeterListener _listener;
    private readonly object _familiesLock = new();
    private readonly object _renderLock = new();
    private MetricFamily[] _families = []; // copy-on-write, sorted by name

    /// <summary>
    /// Collects the "PiServe" meter and, per <paramref name="options"/>, the runtime, ASP.NET Core
    /// and process metrics. Meters are matched by name and by <see cref="Meter.Scope"/>: only meters
    /// that <paramref name="meterFactory"/> created (or global meters such as "System.Runtime"), so
    /// that two hosts in one process do not expose each other's values.
    /// </summary>
    public PrometheusExposition(IMeterFactory meterFactory, PrometheusExpositionOptions? options = null)
        : this(BuildFilter(meterFactory, options ??= new PrometheusExpositionOptions()), options.IncludeProcessMetrics)
    {
    }

    /// <summary>Collects every instrument of the meters that <paramref name="meterFilter"/> accepts.</summary>
    public PrometheusExposition(Func<Meter, bool> meterFilter, bool includeProcessMetrics = false)
    {
        _meterFilter = meterFilter;
        _includeProcessMetrics = includeProcessMetrics;
        _listener = new MeterListener
        {
            InstrumentPublished = OnInstrumentPublished,
            MeasurementsCompleted = OnMeasurementsCompleted,
        };
        _listener.SetMeasurementEventCallback<double>(static (_, m, tags, state) => ((MetricFamily)state!).Record(m, tags));
        _listener.SetMeasurementEventCallback<float>(static (_, m, tags, state) => ((MetricFamily)state!).Record(m, tags));
        _listener.SetMeasurementEventCallback<long>(static (_, m, tags, state) => ((MetricFamily)state!).Record(m, tags));
        _listener.SetMeasurementEventCallback<int>(static (_, m, tags, state) => ((MetricFamily)state!).Record(m, tags));
        _listener.SetMeasurementEventCallback<short>(static (_, m, tags, state) => ((MetricFamily)state!).Record(m, tags));
        _listener.SetMeasurementEventCallback<byte>(static (_, m, tags, state) => ((MetricFamily)state!).Record(m, tags));
        _listener.SetMeasurementEventCallback<decimal>(static (_, m, tags, state) => ((MetricFamily)state!).Record((double)m, tags));
        _listener.Start();
    }

    private static Func<Meter, bool> BuildFilter(IMeterFactory factory, PrometheusExpositionOptions options)
    {
        var scoped = new HashSet<string>(StringComparer.Ordinal) { PiServeMetrics.MeterName };
        var global = new HashSet<string>(StringComparer.Ordinal);
        if (options.IncludeAspNetCoreMetrics) scoped.Add("Microsoft.AspNetCore.Hosting");
        if (options.IncludeRuntimeMetrics) global.Add("System.Runtime");
        foreach (var name in options.AdditionalMeters) { scoped.Add(name); global.Add(name); }
        return meter => meter.Scope is null
            ? global.Contains(meter.Name)
            : ReferenceEquals(meter.Scope, factory) && scoped.Contains(meter.Name);
    }

    /// <summary>The Prometheus family name of an instrument (see the class remarks).</summary>
    public static string FamilyName(Instrument instrument)
    {
        bool counter = IsMonotonic(instrument);
        string name = PrometheusTextWriter.SanitizeName(instrument.Name, allowColon: true);
        if (counter && name.EndsWith("_total", StringComparison.Ordinal)) name = name[..^"_total".Length];
        string? unit = UnitSuffix(instrument.Unit);
        if (unit is not null && !name.Split('_').Contains(unit, StringComparer.Ordinal)
            && !name.EndsWith("_" + unit, StringComparison.Ordinal))
            name += "_" + unit;
        if (counter) return name + "_total";
        // _total belongs to counters and _count/_sum/_bucket to histogram series: a gauge or
        // histogram family named so would be misread (promtool lints it), so it gets a _value suffix.
        foreach (var reserved in (string[])["_total", "_count", "_sum", "_bucket"])
            if (name.EndsWith(reserved, StringComparison.Ordinal)) return name + "_value";
        return name;
    }

    private static bool IsMonotonic(Instrument instrument)
    {
        var type = instrument.GetType();
        if (!type.IsGenericType) return false;
        var def = type.GetGenericTypeDefinition();
        return def == typeof(Counter<>) || def == typeof(ObservableCounter<>);
    }

    private static string? UnitSuffix(string? unit)
    {
        if (string.IsNullOrWhiteSpace(unit) || unit == "1") return null;
        // Drop UCUM annotations ({token}, {request}); what is left, if anything, is the unit.
        var plain = new System.Text.StringBuilder();
        int depth = 0;
        foreach (char c in unit)
        {
            if (c == '{') depth++;
            else if (c == '}') depth = Math.Max(0, depth - 1);
            else if (depth == 0) plain.Append(c);
        }
        string u = plain.ToString().Trim();
        if (u.Length == 0) return null;
        string Word(string part) => part switch
        {
            "s" => "seconds", "ms" => "milliseconds", "us" => "microseconds", "ns" => "nanoseconds",
            "min" => "minutes", "h" => "hours", "d" => "days",
            "By" => "bytes", "KBy" => "kilobytes", "MBy" => "megabytes", "GBy" => "gigabytes",
            "KiBy" => "kibibytes", "MiBy" => "mebibytes", "GiBy" => "gibibytes",
            "bit" => "bits", "%" => "percent", "Hz" => "hertz", "Cel" => "celsius",
            _ => PrometheusTextWriter.SanitizeName(part).Trim('_'),
        };
        int slash = u.IndexOf('/');
        string suffix = slash < 0 ? Word(u) : Word(u[..slash]) + "_per_" + Word(u[(slash + 1)..]).TrimEnd('s');
        suffix = suffix.Trim('_');
        return suffix.Length == 0 ? null : suffix;
    }

    private void OnInstrumentPublished(Instrument instrument, MeterListener listener)
    {
        if (!_meterFilter(instrument.Meter)) return;
        string name = FamilyName(instrument);
        if (!PrometheusTextWriter.IsValidMetricName(name) || (_includeProcessMetrics && ProcessFamilyNames.Contains(name))) return;
        MetricFamily? family = Create(instrument, name);
        if (family is null) return;
        lock (_familiesLock)
        {
            // One instrument per family name: a second instrument mapping to the same name is not exposed.
            if (_families.Any(f => f.Name == name || f.Instrument == instrument)) return;
            var next = _families.Append(family).ToArray();
            Array.Sort(next, (a, b) => string.CompareOrdinal(a.Name, b.Name));
            _families = next;
        }
        listener.EnableMeasurementEvents(instrument, family);
    }

    private static MetricFamily? Create(Instrument instrument, string name)
    {
        var type = instrument.GetType();
        if (!type.IsGenericType) return null;
        var def = type.GetGenericTypeDefinition();
        if (def == typeof(Counter<>)) return new SumFamily(instrument, name, PrometheusMetricType.Counter, monotonic: true);
        if (def == typeof(UpDownCounter<>)) return new SumFamily(instrument, name, PrometheusMetricType.Gauge, monotonic: false);
        if (def == typeof(ObservableCounter<>)) return new LastValueFamily(instrument, name, PrometheusMetricType.Counter);
        if (def == typeof(ObservableUpDownCounter<>) || def == typeof(ObservableGauge<>) || def == typeof(Gauge<>))
            return new LastValueFamily(instrument, name, PrometheusMetricType.Gauge);
        if (def == typeof(Histogram<>)) return new HistogramFamily(instrument, name, Boundaries(instrument));
        return null;
    }

    private static double[] Boundaries(Instrument instrument)
    {
        IEnumerable<double>? advised = instrument switch
        {
            Instrument<double> d => d.Advice?.HistogramBucketBoundaries,
            Instrument<float> f => f.Advice?.HistogramBucketBoundaries?.Select(x => (double)x),
            Instrument<long> l => l.Advice?.HistogramBucketBoundaries?.Select(x => (double)x),
            Instrument<int> i => i.Advice?.HistogramBucketBoundaries?.Select(x => (double)x),
            Instrument<short> s => s.Advice?.HistogramBucketBoundaries?.Select(x => (double)x),
            Instrument<byte> b => b.Advice?.HistogramBucketBoundaries?.Select(x => (double)x),
            Instrument<decimal> m => m.Advice?.HistogramBucketBoundaries?.Select(x => (double)x),
            _ => null,
        };
        var bounds = (advised ?? DefaultBuckets).Where(double.IsFinite).Distinct().Order().ToArray();
        return bounds;
    }

    private void OnMeasurementsCompleted(Instrument instrument, object? state)
    {
        lock (_familiesLock)
            _families = _families.Where(f => f.Instrument != instrument).ToArray();
    }

    /// <summary>Renders every collected family (sorted by name; families without series are left out).</summary>
    public string Render()
    {
        var sw = new StringWriter(CultureInfo.InvariantCulture) { NewLine = "\n" };
        Render(sw);
        return sw.ToString();
    }

    /// <summary>Renders every collected family to <paramref name="output"/>.</summary>
    public void Render(TextWriter output)
    {
        var writer = new PrometheusTextWriter(output);
        lock (_renderLock)
        {
            var families = Volatile.Read(ref _families);
            foreach (var f in families)
                if (f.IsObservable) f.Clear();
            try { _listener.RecordObservableInstruments(); }
            catch (Exception e) when (e is not OutOfMemoryException) { /* one failing callback must not fail the scrape */ }
            foreach (var f in families) f.Write(writer);
            if (_includeProcessMetrics) WriteProcessMetrics(writer);
        }
    }

    private static void WriteProcessMetrics(PrometheusTextWriter writer)
    {
        using var p = Process.GetCurrentProcess();
        writer.WriteFamily("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", PrometheusMetricType.Counter);
        writer.WriteSample("process_cpu_seconds_total", [], p.TotalProcessorTime.TotalSeconds);
        if (OperatingSystem.IsLinux() && TryCountOpenFds(out int open))
        {
            writer.WriteFamily("process_open_fds", "Number of open file descriptors.", PrometheusMetricType.Gauge);
            writer.WriteSample("process_open_fds", [], open);
        }
        if (OperatingSystem.IsLinux() && TryReadMaxFds(out double max))
        {
            writer.WriteFamily("process_max_fds", "Maximum number of open file descriptors.", PrometheusMetricType.Gauge);
            writer.WriteSample("process_max_fds", [], max);
        }
        writer.WriteFamily("process_resident_memory_bytes", "Resident memory size in bytes.", PrometheusMetricType.Gauge);
        writer.WriteSample("process_resident_memory_bytes", [], p.WorkingSet64);
        writer.WriteFamily("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", PrometheusMetricType.Gauge);
        writer.WriteSample("process_start_time_seconds", [], new DateTimeOffset(p.StartTime.ToUniversalTime()).ToUnixTimeMilliseconds() / 1000.0);
        writer.WriteFamily("process_virtual_memory_bytes", "Virtual memory size in bytes.", PrometheusMetricType.Gauge);
        writer.WriteSample("process_virtual_memory_bytes", [], p.VirtualMemorySize64);
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

    public void Dispose() => _listener.Dispose();
}
