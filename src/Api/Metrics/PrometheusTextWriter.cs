using System.Globalization;
using System.Text;

namespace PiServe.Api.Metrics;

/// <summary>The metric types of the Prometheus text format that this server exposes.</summary>
public enum PrometheusMetricType
{
    Counter,
    Gauge,
    Histogram,
}

/// <summary>
/// Writes the Prometheus text exposition format, version 0.0.4: one <c># HELP</c> and one
/// <c># TYPE</c> line per metric family, then that family's samples, every line ending in <c>\n</c>.
/// Label values are escaped (backslash, double quote, newline), HELP text is escaped (backslash,
/// newline), and numbers are written culture-invariantly in a form Go's <c>ParseFloat</c> reads
/// (<c>+Inf</c>, <c>-Inf</c>, <c>NaN</c>, shortest round-trip digits otherwise).
/// </summary>
/// <remarks>Not thread-safe: one writer renders one scrape.</remarks>
public sealed class PrometheusTextWriter
{
    /// <summary>The HTTP content type of this format.</summary>
    public const string ContentType = "text/plain; version=0.0.4; charset=utf-8";

    private readonly TextWriter _out;
    private readonly HashSet<string> _families = new(StringComparer.Ordinal);
    private string? _family;
    private PrometheusMetricType _type;

    public PrometheusTextWriter(TextWriter output) => _out = output;

    /// <summary>
    /// Starts a metric family: writes its <c># HELP</c> and <c># TYPE</c> lines. Samples written
    /// next belong to it. A family name may be started only once per exposition.
    /// </summary>
    /// <exception cref="ArgumentException">The name is not a valid metric name.</exception>
    /// <exception cref="InvalidOperationException">The family was already written.</exception>
    public void WriteFamily(string name, string help, PrometheusMetricType type)
    {
        if (!IsValidMetricName(name)) throw new ArgumentException($"'{name}' is not a valid Prometheus metric name", nameof(name));
        if (!_families.Add(name)) throw new InvalidOperationException($"metric family '{name}' was already written");
        _family = name;
        _type = type;
        _out.Write("# HELP ");
        _out.Write(name);
        _out.Write(' ');
        WriteEscaped(help, escapeQuote: false);
        _out.Write('\n');
        _out.Write("# TYPE ");
        _out.Write(name);
        _out.Write(' ');
        _out.Write(type switch
        {
            PrometheusMetricType.Counter => "counter",
            PrometheusMetricType.Gauge => "gauge",
            PrometheusMetricType.Histogram => "histogram",
            _ => throw new ArgumentOutOfRangeException(nameof(type)),
        });
        _out.Write('\n');
    }

    /// <summary>
    /// Writes one sample line <c>name{labels} value</c> of the current family. For a counter or
    /// gauge the name is the family name; histograms are written with <see cref="WriteHistogram"/>.
    /// </summary>
    public void WriteSample(string name, ReadOnlySpan<KeyValuePair<string, string>> labels, double value)
    {
        if (_family is null || !string.Equals(name, _family, StringComparison.Ordinal))
            throw new InvalidOperationException($"sample '{name}' does not belong to the current family '{_family}'");
        WriteLine(name, labels, null, value);
    }

    /// <summary>
    /// Writes one histogram series of the current (histogram) family: a cumulative
    /// <c>_bucket{le="..."}</c> line per upper bound, <c>_bucket{le="+Inf"}</c>, <c>_sum</c> and
    /// <c>_count</c>.
    /// </summary>
    /// <param name="labels">The series' labels, without <c>le</c>.</param>
    /// <param name="upperBounds">Finite bucket upper bounds, strictly increasing.</param>
    /// <param name="bucketCounts">
    /// Per-bucket (not cumulative) observation counts: <c>bucketCounts[i]</c> counts observations in
    /// (upperBounds[i-1], upperBounds[i]]; the extra last element counts those above the last bound.
    /// </param>
    /// <param name="sum">The sum of all observations.</param>
    public void WriteHistogram(ReadOnlySpan<KeyValuePair<string, string>> labels, ReadOnlySpan<double> upperBounds, ReadOnlySpan<long> bucketCounts, double sum)
    {
        if (_family is null || _type != PrometheusMetricType.Histogram)
            throw new InvalidOperationException("the current family is not a histogram");
        if (bucketCounts.Length != upperBounds.Length + 1)
            throw new ArgumentException("bucketCounts must have one more element than upperBounds (the +Inf bucket)", nameof(bucketCounts));
        string bucket = _family + "_bucket";
        long cumulative = 0;
        for (int i = 0; i < upperBounds.Length; i++)
        {
            cumulative += bucketCounts[i];
            WriteLine(bucket, labels, FormatValue(upperBounds[i]), cumulative);
        }
        cumulative += bucketCounts[^1];
        WriteLine(bucket, labels, "+Inf", cumulative);
        WriteLine(_family + "_sum", labels, null, sum);
        WriteLine(_family + "_count", labels, null, cumulative);
    }

    private void WriteLine(string name, ReadOnlySpan<KeyValuePair<string, string>> labels, string? le, double value)
    {
        _out.Write(name);
        if (labels.Length > 0 || le is not null)
        {
            _out.Write('{');
            bool first = true;
            foreach (var (label, labelValue) in labels)
            {
                if (!first) _out.Write(',');
                first = false;
                _out.Write(label);
                _out.Write("=\"");
                WriteEscaped(labelValue, escapeQuote: true);
                _out.Write('"');
            }
            if (le is not null)
            {
                if (!first) _out.Write(',');
                _out.Write("le=\"");
                _out.Write(le);
                _out.Write('"');
            }
            _out.Write('}');
        }
        _out.Write(' ');
        _out.Write(FormatValue(value));
        _out.Write('\n');
    }

    private void WriteEscaped(string s, bool escapeQuote)
    {
        int start = 0;
        for (int i = 0; i < s.Length; i++)
        {
            string? replacement = s[i] switch
            {
                '\\' => "\\\\",
                '\n' => "\\n",
                '"' when escapeQuote => "\\\"",
                _ => null,
            };
            if (replacement is null) continue;
            _out.Write(s.AsSpan(start, i - start));
            _out.Write(replacement);
            start = i + 1;
        }
        _out.Write(s.AsSpan(start));
    }

    /// <summary>A sample value or <c>le</c> bound as Prometheus reads it: <c>+Inf</c>, <c>-Inf</c>, <c>NaN</c>, or the shortest round-trip invariant digits.</summary>
    public static string FormatValue(double value) =>
        double.IsNaN(value) ? "NaN"
        : double.IsPositiveInfinity(value) ? "+Inf"
        : double.IsNegativeInfinity(value) ? "-Inf"
        : value.ToString("R", CultureInfo.InvariantCulture);

    /// <summary>A label value escaped for the text format (<c>\\</c>, <c>\"</c>, <c>\n</c>).</summary>
    public static string EscapeLabelValue(string value)
    {
        var sw = new StringWriter(CultureInfo.InvariantCulture);
        new PrometheusTextWriter(sw).WriteEscaped(value, escapeQuote: true);
        return sw.ToString();
    }

    /// <summary>Whether <paramref name="name"/> matches <c>[a-zA-Z_:][a-zA-Z0-9_:]*</c>.</summary>
    public static bool IsValidMetricName(string name)
    {
        if (name.Length == 0) return false;
        for (int i = 0; i < name.Length; i++)
        {
            char c = name[i];
            bool ok = char.IsAsciiLetter(c) || c == '_' || c == ':' || (i > 0 && char.IsAsciiDigit(c));
            if (!ok) return false;
        }
        return true;
    }

    /// <summary>
    /// A metric or label name made valid: every character outside <c>[a-zA-Z0-9_]</c> (and <c>:</c>
    /// for metric names) becomes <c>_</c>, runs of <c>_</c> collapse, and a leading digit gets a
    /// <c>_</c> prefix. <c>http.server.request.duration</c> becomes <c>http_server_request_duration</c>.
    /// </summary>
    public static string SanitizeName(string name, bool allowColon = false)
    {
        var sb = new StringBuilder(name.Length + 1);
        foreach (char c in name)
        {
            bool ok = char.IsAsciiLetterOrDigit(c) || c == '_' || (allowColon && c == ':');
            char next = ok ? c : '_';
            if (next == '_' && sb.Length > 0 && sb[^1] == '_') continue;
            sb.Append(next);
        }
        if (sb.Length == 0 || char.IsAsciiDigit(sb[0])) sb.Insert(0, '_');
        return sb.ToString();
    }
}
