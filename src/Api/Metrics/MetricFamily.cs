using System.Collections.Concurrent;
using System.Diagnostics.Metrics;

namespace PiServe.Api.Metrics;

/// <summary>
/// The aggregation of one instrument into one Prometheus metric family: a series per label set.
/// Recording is lock-free for counters and gauges and takes a per-series lock of a few instructions
/// for histograms; rendering reads each series atomically and never holds a lock across series.
/// </summary>
internal abstract class MetricFamily
{
    protected readonly ConcurrentDictionary<LabelSet, Series> SeriesByLabels = new(LabelSetComparer.Instance);
    private readonly ConcurrentDictionary<LabelSet, Series>.AlternateLookup<ReadOnlySpan<KeyValuePair<string, object?>>> _byTags;

    protected MetricFamily(Instrument instrument, string name, PrometheusMetricType type)
    {
        Instrument = instrument;
        Name = name;
        Type = type;
        Help = string.IsNullOrWhiteSpace(instrument.Description) ? instrument.Name : instrument.Description;
        _byTags = SeriesByLabels.GetAlternateLookup<ReadOnlySpan<KeyValuePair<string, object?>>>();
    }

    public Instrument Instrument { get; }
    public string Name { get; }
    public string Help { get; }
    public PrometheusMetricType Type { get; }

    /// <summary>Observable instruments report absolute values at each collection; their series are rebuilt each time.</summary>
    public bool IsObservable => Instrument.IsObservable;

    public abstract void Record(double value, ReadOnlySpan<KeyValuePair<string, object?>> tags);

    /// <summary>Forgets every series (before an observable instrument is observed again).</summary>
    public void Clear() => SeriesByLabels.Clear();

    protected Series GetSeries(ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        if (_byTags.TryGetValue(tags, out var series)) return series;
        var labels = LabelSet.Create(tags);
        return SeriesByLabels.GetOrAdd(labels, NewSeries);
    }

    protected abstract Series NewSeries(LabelSet labels);

    public void Write(PrometheusTextWriter writer)
    {
        var series = SeriesByLabels.Values.ToArray();
        if (series.Length == 0) return;
        Array.Sort(series, (a, b) => LabelSet.Compare(a.Labels, b.Labels));
        writer.WriteFamily(Name, Help, Type);
        foreach (var s in series) s.Write(writer, Name);
    }

    internal abstract class Series(LabelSet labels)
    {
        public LabelSet Labels { get; } = labels;
        public abstract void Write(PrometheusTextWriter writer, string name);
    }

    /// <summary>A double updated with compare-and-swap on its bits (NaN-safe).</summary>
    internal sealed class ScalarSeries(LabelSet labels) : Series(labels)
    {
        private long _bits;

        public double Value => BitConverter.Int64BitsToDouble(Volatile.Read(ref _bits));

        public void Add(double delta)
        {
            long current = Volatile.Read(ref _bits);
            while (true)
            {
                long next = BitConverter.DoubleToInt64Bits(BitConverter.Int64BitsToDouble(current) + delta);
                long seen = Interlocked.CompareExchange(ref _bits, next, current);
                if (seen == current) return;
                current = seen;
            }
        }

        public void Set(double value) => Interlocked.Exchange(ref _bits, BitConverter.DoubleToInt64Bits(value));

        public override void Write(PrometheusTextWriter writer, string name) => writer.WriteSample(name, Labels.Labels, Value);
    }

    internal sealed class HistogramSeries(LabelSet labels, double[] bounds) : Series(labels)
    {
        private readonly long[] _counts = new long[bounds.Length + 1];
        private double _sum;

        public void Observe(double value)
        {
            // Prometheus buckets are upper-inclusive: value v goes to the first bound >= v.
            int i = Array.BinarySearch(bounds, value);
            if (i < 0) i = ~i;
            lock (_counts)
            {
                _counts[i]++;
                _sum += value;
            }
        }

        public override void Write(PrometheusTextWriter writer, string name)
        {
            Span<long> counts = bounds.Length < 128 ? stackalloc long[_counts.Length] : new long[_counts.Length];
            double sum;
            lock (_counts)
            {
                _counts.CopyTo(counts);
                sum = _sum;
            }
            writer.WriteHistogram(Labels.Labels, bounds, counts, sum);
        }
    }
}

/// <summary>Counter and UpDownCounter: measurements are increments.</summary>
internal sealed class SumFamily(Instrument instrument, string name, PrometheusMetricType type, bool monotonic) : MetricFamily(instrument, name, type)
{
    public override void Record(double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        // A counter only goes up: negative or NaN increments are dropped rather than corrupting it.
        if (double.IsNaN(value) || (monotonic && value < 0)) return;
        ((ScalarSeries)GetSeries(tags)).Add(value);
    }

    protected override Series NewSeries(LabelSet labels) => new ScalarSeries(labels);
}

/// <summary>Gauge and the observable instruments: measurements are absolute values, the last one wins.</summary>
internal sealed class LastValueFamily(Instrument instrument, string name, PrometheusMetricType type) : MetricFamily(instrument, name, type)
{
    public override void Record(double value, ReadOnlySpan<KeyValuePair<string, object?>> tags) =>
        ((ScalarSeries)GetSeries(tags)).Set(value);

    protected override Series NewSeries(LabelSet labels) => new ScalarSeries(labels);
}

internal sealed class HistogramFamily(Instrument instrument, string name, double[] bounds) : MetricFamily(instrument, name, PrometheusMetricType.Histogram)
{
    public double[] Bounds { get; } = bounds;

    /// <remarks>
    /// A NaN is not observed, but it creates the label set's series with every bucket at zero:
    /// the one way to declare a histogram series through System.Diagnostics.Metrics
    /// (<see cref="PiServeMetrics.DeclareModel"/>).
    /// </remarks>
    public override void Record(double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        var series = (HistogramSeries)GetSeries(tags);
        if (!double.IsNaN(value)) series.Observe(value);
    }

    protected override Series NewSeries(LabelSet labels) => new HistogramSeries(labels, Bounds);
}
