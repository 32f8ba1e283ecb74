using System.Globalization;
using PiServe.Api.Metrics;

namespace PiServe.Api.Tests.Metrics;

/// <summary>The text format 0.0.4 writer, byte for byte.</summary>
public class PrometheusTextWriterTests
{
    private static (PrometheusTextWriter Writer, StringWriter Text) NewWriter()
    {
        var text = new StringWriter(CultureInfo.InvariantCulture);
        return (new PrometheusTextWriter(text), text);
    }

    [Fact]
    public void CountersGaugesAndHistogramsWithLabelsRenderExactly()
    {
        var (w, text) = NewWriter();
        w.WriteFamily("piserve_requests_total", "Requests finished.", PrometheusMetricType.Counter);
        w.WriteSample("piserve_requests_total", [new("finish_reason", "length"), new("model", "m1")], 3);
        w.WriteSample("piserve_requests_total", [new("finish_reason", "stop"), new("model", "m1")], 12);
        w.WriteFamily("piserve_requests_running", "Running requests.", PrometheusMetricType.Gauge);
        w.WriteSample("piserve_requests_running", [], -2);
        w.WriteFamily("piserve_ttft_seconds", "Time to first token.", PrometheusMetricType.Histogram);
        w.WriteHistogram([new("model", "a")], [0.1, 1, 10], [1, 0, 2, 3], 25.5);
        w.WriteHistogram([new("model", "b")], [0.1, 1, 10], [0, 0, 0, 0], 0);

        const string expected = """
            # HELP piserve_requests_total Requests finished.
            # TYPE piserve_requests_total counter
            piserve_requests_total{finish_reason="length",model="m1"} 3
            piserve_requests_total{finish_reason="stop",model="m1"} 12
            # HELP piserve_requests_running Running requests.
            # TYPE piserve_requests_running gauge
            piserve_requests_running -2
            # HELP piserve_ttft_seconds Time to first token.
            # TYPE piserve_ttft_seconds histogram
            piserve_ttft_seconds_bucket{model="a",le="0.1"} 1
            piserve_ttft_seconds_bucket{model="a",le="1"} 1
            piserve_ttft_seconds_bucket{model="a",le="10"} 3
            piserve_ttft_seconds_bucket{model="a",le="+Inf"} 6
            piserve_ttft_seconds_sum{model="a"} 25.5
            piserve_ttft_seconds_count{model="a"} 6
            piserve_ttft_seconds_bucket{model="b",le="0.1"} 0
            piserve_ttft_seconds_bucket{model="b",le="1"} 0
            piserve_ttft_seconds_bucket{model="b",le="10"} 0
            piserve_ttft_seconds_bucket{model="b",le="+Inf"} 0
            piserve_ttft_seconds_sum{model="b"} 0
            piserve_ttft_seconds_count{model="b"} 0

            """;
        Assert.Equal(expected.ReplaceLineEndings("\n"), text.ToString());
    }

    [Fact]
    public void HistogramWithoutLabelsPutsLeAlone()
    {
        var (w, text) = NewWriter();
        w.WriteFamily("h", "h", PrometheusMetricType.Histogram);
        w.WriteHistogram([], [0.0005], [2, 1], 1.5);
        Assert.Equal("# HELP h h\n# TYPE h histogram\nh_bucket{le=\"0.0005\"} 2\nh_bucket{le=\"+Inf\"} 3\nh_sum 1.5\nh_count 3\n", text.ToString());
    }

    [Fact]
    public void LabelValuesEscapeBackslashQuoteAndNewlineAndHelpEscapesBackslashAndNewline()
    {
        var (w, text) = NewWriter();
        w.WriteFamily("g", "line one\nline two \\ \"quoted\"", PrometheusMetricType.Gauge);
        w.WriteSample("g", [new("path", "C:\\models\\\"x\"\nend")], 1);
        Assert.Equal(
            "# HELP g line one\\nline two \\\\ \"quoted\"\n" +
            "# TYPE g gauge\n" +
            "g{path=\"C:\\\\models\\\\\\\"x\\\"\\nend\"} 1\n",
            text.ToString());
        Assert.Equal("a\\\\b\\\"c\\nd", PrometheusTextWriter.EscapeLabelValue("a\\b\"c\nd"));
        Assert.Equal("ünïcode ✓", PrometheusTextWriter.EscapeLabelValue("ünïcode ✓"));
    }

    [Theory]
    [InlineData(double.PositiveInfinity, "+Inf")]
    [InlineData(double.NegativeInfinity, "-Inf")]
    [InlineData(double.NaN, "NaN")]
    [InlineData(0.0, "0")]
    [InlineData(-0.0, "-0")]
    [InlineData(12.0, "12")]
    [InlineData(0.1, "0.1")]
    [InlineData(0.0005, "0.0005")]
    [InlineData(1e-7, "1E-07")]
    [InlineData(1.5e21, "1.5E+21")]
    [InlineData(123456789012.0, "123456789012")]
    [InlineData(-2.25, "-2.25")]
    public void ValuesAreFormattedAsPrometheusParsesThem(double value, string expected) =>
        Assert.Equal(expected, PrometheusTextWriter.FormatValue(value));

    [Fact]
    public void FormattingIgnoresTheCurrentCulture()
    {
        var saved = CultureInfo.CurrentCulture;
        var comma = (CultureInfo)CultureInfo.InvariantCulture.Clone();
        comma.NumberFormat.NumberDecimalSeparator = ",";
        comma.NumberFormat.NegativeSign = "~";
        try
        {
            CultureInfo.CurrentCulture = comma;
            var (w, text) = NewWriter();
            w.WriteFamily("g", "g", PrometheusMetricType.Gauge);
            w.WriteSample("g", [], -0.25);
            w.WriteFamily("h", "h", PrometheusMetricType.Histogram);
            w.WriteHistogram([], [2.5], [1, 0], 1.25);
            Assert.Equal("# HELP g g\n# TYPE g gauge\ng -0.25\n# HELP h h\n# TYPE h histogram\nh_bucket{le=\"2.5\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 1.25\nh_count 1\n", text.ToString());
        }
        finally
        {
            CultureInfo.CurrentCulture = saved;
        }
    }

    [Fact]
    public void AFamilyIsWrittenOnceAndSamplesMustBelongToIt()
    {
        var (w, _) = NewWriter();
        Assert.Throws<InvalidOperationException>(() => w.WriteSample("x", [], 1));
        w.WriteFamily("x_total", "x", PrometheusMetricType.Counter);
        Assert.Throws<InvalidOperationException>(() => w.WriteFamily("x_total", "again", PrometheusMetricType.Counter));
        Assert.Throws<InvalidOperationException>(() => w.WriteSample("y_total", [], 1));
        Assert.Throws<InvalidOperationException>(() => w.WriteHistogram([], [1], [0, 0], 0));
        Assert.Throws<ArgumentException>(() => w.WriteFamily("9lives", "x", PrometheusMetricType.Gauge));
        w.WriteFamily("h", "h", PrometheusMetricType.Histogram);
        Assert.Throws<ArgumentException>(() => w.WriteHistogram([], [1, 2], [0, 0], 0));
    }

    [Theory]
    [InlineData("http.server.request.duration", "http_server_request_duration")]
    [InlineData("gc.heap.generation", "gc_heap_generation")]
    [InlineData("a..b--c", "a_b_c")]
    [InlineData("2xx", "_2xx")]
    [InlineData("", "_")]
    public void NamesAreSanitized(string name, string expected) =>
        Assert.Equal(expected, PrometheusTextWriter.SanitizeName(name));
}
