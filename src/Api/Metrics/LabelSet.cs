using System.Globalization;

namespace PiServe.Api.Metrics;

/// <summary>
/// The label set of one series: the measurement's tags with names sanitized, values formatted
/// invariantly, sorted by name. Equality and hash ignore tag order.
/// </summary>
internal sealed class LabelSet
{
    public static readonly LabelSet Empty = new([], []);

    /// <summary>The original tag names, sorted ordinally (the key).</summary>
    public readonly string[] Keys;
    /// <summary>The formatted tag values, in <see cref="Keys"/> order.</summary>
    public readonly string[] Values;
    /// <summary>The labels as written: sanitized names, values.</summary>
    public readonly KeyValuePair<string, string>[] Labels;
    public readonly int Hash;

    private LabelSet(string[] keys, string[] values)
    {
        Keys = keys;
        Values = values;
        Labels = new KeyValuePair<string, string>[keys.Length];
        int hash = 0;
        for (int i = 0; i < keys.Length; i++)
        {
            Labels[i] = new(PrometheusTextWriter.SanitizeName(keys[i]), values[i]);
            hash += PairHash(keys[i], values[i]);
        }
        Hash = hash;
    }

    public static LabelSet Create(ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        if (tags.Length == 0) return Empty;
        var map = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var tag in tags) map[tag.Key] = Format(tag.Value);
        return new LabelSet(map.Keys.ToArray(), map.Values.ToArray());
    }

    /// <summary>Order-independent: the sum of the pairs' hashes.</summary>
    internal static int PairHash(string key, string value) => HashCode.Combine(key, value);

    public static string Format(object? value) => value switch
    {
        null => "",
        string s => s,
        bool b => b ? "true" : "false",
        double d => PrometheusTextWriter.FormatValue(d),
        float f => PrometheusTextWriter.FormatValue(f),
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };

    /// <summary>Orders series of a family for a deterministic exposition.</summary>
    public static int Compare(LabelSet a, LabelSet b)
    {
        int n = Math.Min(a.Labels.Length, b.Labels.Length);
        for (int i = 0; i < n; i++)
        {
            int c = string.CompareOrdinal(a.Labels[i].Key, b.Labels[i].Key);
            if (c != 0) return c;
            c = string.CompareOrdinal(a.Labels[i].Value, b.Labels[i].Value);
            if (c != 0) return c;
        }
        return a.Labels.Length.CompareTo(b.Labels.Length);
    }
}

/// <summary>
/// Compares label sets, and lets a dictionary keyed by <see cref="LabelSet"/> be probed with the raw
/// measurement tags so that recording into an existing series allocates nothing.
/// </summary>
internal sealed class LabelSetComparer : IEqualityComparer<LabelSet>, IAlternateEqualityComparer<ReadOnlySpan<KeyValuePair<string, object?>>, LabelSet>
{
    public static readonly LabelSetComparer Instance = new();

    public bool Equals(LabelSet? x, LabelSet? y)
    {
        if (ReferenceEquals(x, y)) return true;
        if (x is null || y is null || x.Hash != y.Hash) return false;
        return x.Keys.AsSpan().SequenceEqual(y.Keys) && x.Values.AsSpan().SequenceEqual(y.Values);
    }

    public int GetHashCode(LabelSet obj) => obj.Hash;

    public bool Equals(ReadOnlySpan<KeyValuePair<string, object?>> tags, LabelSet other)
    {
        if (tags.Length != other.Keys.Length) return false;
        foreach (var tag in tags)
        {
            int i = Array.IndexOf(other.Keys, tag.Key);
            if (i < 0) return false;
            bool same = tag.Value is string s ? string.Equals(s, other.Values[i], StringComparison.Ordinal)
                : string.Equals(LabelSet.Format(tag.Value), other.Values[i], StringComparison.Ordinal);
            if (!same) return false;
        }
        return true;
    }

    public int GetHashCode(ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        int hash = 0;
        foreach (var tag in tags) hash += LabelSet.PairHash(tag.Key, LabelSet.Format(tag.Value));
        return hash;
    }

    public LabelSet Create(ReadOnlySpan<KeyValuePair<string, object?>> tags) => LabelSet.Create(tags);
}
