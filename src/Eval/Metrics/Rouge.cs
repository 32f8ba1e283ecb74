using System.Text.Json.Nodes;

namespace PiServe.Eval.Metrics;

/// <summary>Precision, recall and F1 of one ROUGE variant.</summary>
public readonly record struct RougeScore(double Precision, double Recall, double F1)
{
    public static RougeScore From(double precision, double recall) =>
        new(precision, recall, precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0);

    public JsonObject ToJson() => new() { ["precision"] = Precision, ["recall"] = Recall, ["f1"] = F1 };
}

/// <summary>ROUGE-1, ROUGE-2, ROUGE-L and ROUGE-Lsum of one prediction against one reference.</summary>
public sealed record RougeScores(RougeScore Rouge1, RougeScore Rouge2, RougeScore RougeL, RougeScore RougeLsum)
{
    public JsonObject ToJson() => new()
    {
        ["rouge1"] = Rouge1.ToJson(), ["rouge2"] = Rouge2.ToJson(), ["rougeL"] = RougeL.ToJson(), ["rougeLsum"] = RougeLsum.ToJson(),
    };

    /// <summary>The mean of each precision, recall and F1 over documents (what rouge-score's aggregator's "mid" estimates).</summary>
    public static RougeScores Mean(IReadOnlyCollection<RougeScores> all)
    {
        if (all.Count == 0) return new(default, default, default, default);
        RougeScore M(Func<RougeScores, RougeScore> f) =>
            new(all.Average(s => f(s).Precision), all.Average(s => f(s).Recall), all.Average(s => f(s).F1));
        return new(M(s => s.Rouge1), M(s => s.Rouge2), M(s => s.RougeL), M(s => s.RougeLsum));
    }
}

/// <summary>
/// ROUGE with the conventions of Google's rouge-score: lowercase, every run of characters outside
/// [a-z0-9] is a separator, tokens longer than 3 characters optionally Porter-stemmed (NLTK's default
/// NLTK_EXTENSIONS mode, as rouge-score uses it: <see cref="PorterStemmer"/>); ROUGE-N from
/// clipped n-gram counts, ROUGE-L from the longest common subsequence, ROUGE-Lsum from the union LCS of
/// newline-separated sentences. P = overlap / prediction size, R = overlap / reference size (0 when empty).
/// </summary>
public static class Rouge
{
    public static RougeScores Score(string reference, string prediction, bool useStemmer)
    {
        var r = Tokenize(reference, useStemmer);
        var p = Tokenize(prediction, useStemmer);
        return new RougeScores(RougeN(r, p, 1), RougeN(r, p, 2), RougeL(r, p), RougeLsum(reference, prediction, useStemmer));
    }

    public static List<string> Tokenize(string text, bool useStemmer)
    {
        var tokens = new List<string>();
        var current = new System.Text.StringBuilder();
        void Flush()
        {
            if (current.Length == 0) return;
            string t = current.ToString();
            current.Clear();
            tokens.Add(useStemmer && t.Length > 3 ? PorterStemmer.Stem(t) : t);
        }
        foreach (char ch in text)
        {
            char lower = PythonLowerToAscii(ch);
            if (lower is >= 'a' and <= 'z' or >= '0' and <= '9') current.Append(lower);
            else Flush();
            if (ch == '\u0130') Flush(); // Python lowers İ to "i" plus a combining dot, which separates
        }
        Flush();
        return tokens;
    }

    /// <summary>
    /// rouge-score lowercases with Python's <c>str.lower()</c> before dropping everything outside [a-z0-9].
    /// Only three kinds of character lower to a token character there: A–Z, the Kelvin sign (to k) and
    /// İ (to i, followed by a combining dot). .NET's ToLowerInvariant leaves İ unchanged, which would drop
    /// the i, so the mapping is spelled out; any other character is a separator either way.
    /// </summary>
    private static char PythonLowerToAscii(char ch) => ch switch
    {
        >= 'A' and <= 'Z' => (char)(ch + ('a' - 'A')),
        '\u212A' => 'k',
        '\u0130' => 'i',
        _ => ch,
    };

    public static RougeScore RougeN(IReadOnlyList<string> reference, IReadOnlyList<string> prediction, int n)
    {
        var refGrams = NGrams(reference, n);
        var predGrams = NGrams(prediction, n);
        long overlap = 0;
        foreach (var (gram, count) in predGrams)
            if (refGrams.TryGetValue(gram, out int rc)) overlap += Math.Min(count, rc);
        long refTotal = refGrams.Values.Sum(), predTotal = predGrams.Values.Sum();
        return RougeScore.From(overlap / (double)Math.Max(predTotal, 1), overlap / (double)Math.Max(refTotal, 1));
    }

    private static Dictionary<string, int> NGrams(IReadOnlyList<string> tokens, int n)
    {
        var grams = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i + n <= tokens.Count; i++)
        {
            string g = n == 1 ? tokens[i] : string.Join(' ', Enumerable.Range(i, n).Select(k => tokens[k]));
            grams[g] = grams.GetValueOrDefault(g) + 1;
        }
        return grams;
    }

    public static RougeScore RougeL(IReadOnlyList<string> reference, IReadOnlyList<string> prediction)
    {
        if (reference.Count == 0 || prediction.Count == 0) return default;
        int lcs = LcsTable(reference, prediction)[reference.Count, prediction.Count];
        return RougeScore.From(lcs / (double)prediction.Count, lcs / (double)reference.Count);
    }

    /// <summary>
    /// Summary-level LCS: for each reference sentence, the union of its LCS token positions with every
    /// prediction sentence; each hit is counted at most as often as the token occurs on both sides.
    /// </summary>
    public static RougeScore RougeLsum(string reference, string prediction, bool useStemmer)
    {
        var refSents = Sentences(reference).Select(s => Tokenize(s, useStemmer)).ToList();
        var predSents = Sentences(prediction).Select(s => Tokenize(s, useStemmer)).ToList();
        int m = refSents.Sum(s => s.Count), n = predSents.Sum(s => s.Count);
        if (m == 0 || n == 0) return default;
        var refCounts = Counts(refSents);
        var predCounts = Counts(predSents);
        int hits = 0;
        foreach (var r in refSents)
        {
            var union = new SortedSet<int>();
            foreach (var c in predSents) union.UnionWith(LcsIndices(r, c));
            foreach (int i in union)
            {
                string t = r[i];
                if (predCounts.GetValueOrDefault(t) > 0 && refCounts.GetValueOrDefault(t) > 0)
                {
                    hits++;
                    predCounts[t]--;
                    refCounts[t]--;
                }
            }
        }
        return RougeScore.From(hits / (double)n, hits / (double)m);
    }

    /// <summary>rouge-score's default sentence split for ROUGE-Lsum: newlines, empty lines dropped.</summary>
    public static IEnumerable<string> Sentences(string text) => text.Split('\n').Where(s => s.Length > 0);

    private static Dictionary<string, int> Counts(IEnumerable<List<string>> sentences)
    {
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var s in sentences)
            foreach (var t in s) counts[t] = counts.GetValueOrDefault(t) + 1;
        return counts;
    }

    private static int[,] LcsTable(IReadOnlyList<string> a, IReadOnlyList<string> b)
    {
        var t = new int[a.Count + 1, b.Count + 1];
        for (int i = 1; i <= a.Count; i++)
            for (int j = 1; j <= b.Count; j++)
                t[i, j] = a[i - 1] == b[j - 1] ? t[i - 1, j - 1] + 1 : Math.Max(t[i - 1, j], t[i, j - 1]);
        return t;
    }

    /// <summary>Positions in <paramref name="a"/> of one LCS, backtracking as rouge-score does (ties move up in a).</summary>
    public static List<int> LcsIndices(IReadOnlyList<string> a, IReadOnlyList<string> b)
    {
        var t = LcsTable(a, b);
        var indices = new List<int>();
        int i = a.Count, j = b.Count;
        while (i > 0 && j > 0)
        {
            if (a[i - 1] == b[j - 1]) { indices.Add(i - 1); i--; j--; }
            else if (t[i, j - 1] > t[i - 1, j]) j--;
            else i--;
        }
        indices.Reverse();
        return indices;
    }
}
