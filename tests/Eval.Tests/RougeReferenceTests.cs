using System.Text.Json.Nodes;
using PiServe.Eval.Metrics;

namespace PiServe.Eval.Tests;

/// <summary>
/// PiServe's Porter stemmer and ROUGE against fixtures recorded by tools/reference/rouge_fixtures.py:
/// NLTK's own PorterStemmer() (default NLTK_EXTENSIONS mode, what rouge-score uses) on every distinct
/// word of the KJV Bible and of /usr/share/common-licenses, and a Python reference of rouge-score's
/// scorer on 300 prediction/reference pairs cut from the same texts.
/// </summary>
public class RougeReferenceTests
{
    private static string RougeFixture(string name) => Path.Combine(RepoPaths.Fixtures, "rouge", name);

    [Fact]
    public void PorterStemmerMatchesNltkOnEveryFixtureWord()
    {
        var rows = File.ReadAllLines(RougeFixture("porter_nltk_extensions.tsv"))
            .Select(line => line.Split('\t'))
            .ToList();
        Assert.True(rows.Count > 10_000, $"only {rows.Count} words in the stem fixture");
        var mismatches = rows
            .Where(r => PorterStemmer.Stem(r[0]) != r[1])
            .Select(r => $"{r[0]}: NLTK {r[1]}, ours {PorterStemmer.Stem(r[0])}")
            .ToList();
        Assert.True(mismatches.Count == 0,
            $"{mismatches.Count} of {rows.Count} words stem differently from NLTK; first: {string.Join("; ", mismatches.Take(25))}");
    }

    [Fact]
    public void RougeMatchesTheRougeScoreReferenceOnEveryPair()
    {
        var pairs = JsonNode.Parse(File.ReadAllText(RougeFixture("rouge_pairs.json")))!["pairs"]!.AsArray();
        Assert.True(pairs.Count >= 300, $"only {pairs.Count} pairs");
        var failures = new List<string>();
        int checkedValues = 0;
        foreach (var pair in pairs)
        {
            string reference = pair!["reference"]!.GetValue<string>(), prediction = pair["prediction"]!.GetValue<string>();
            foreach (var (mode, useStemmer) in new[] { ("plain", false), ("stemmed", true) })
            {
                var ours = Rouge.Score(reference, prediction, useStemmer);
                var expected = pair["scores"]![mode]!;
                foreach (var (type, score) in new[] { ("rouge1", ours.Rouge1), ("rouge2", ours.Rouge2), ("rougeL", ours.RougeL), ("rougeLsum", ours.RougeLsum) })
                {
                    foreach (var (field, value) in new[] { ("precision", score.Precision), ("recall", score.Recall), ("f1", score.F1) })
                    {
                        double want = expected[type]![field]!.GetValue<double>();
                        checkedValues++;
                        if (!(Math.Abs(want - value) <= 1e-9))
                            failures.Add($"pair {pair["id"]} ({pair["kind"]}) {mode} {type}.{field}: reference {want}, ours {value}");
                    }
                }
            }
        }
        Assert.Equal(pairs.Count * 2 * 4 * 3, checkedValues);
        Assert.True(failures.Count == 0, $"{failures.Count} values differ; first: {string.Join("; ", failures.Take(20))}");
    }
}
