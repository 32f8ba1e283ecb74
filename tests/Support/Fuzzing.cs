using System.Text;
using System.Text.Json.Nodes;

namespace PiServe.Tests.Support;

/// <summary>
/// Seeded fuzzing: how many iterations (a few hundred in CI, seconds; set PISERVE_FUZZ_ITERATIONS for
/// a longer run, e.g. PISERVE_FUZZ_ITERATIONS=20000 dotnet test --filter FullyQualifiedName~Fuzz), and
/// a mutator of JSON documents that favours the values that break parsers: boundaries of int and
/// long, numbers no integer type holds, wrong types, huge strings, deep nesting, missing fields.
/// Every failure message carries the seed and iteration, so any finding replays exactly.
/// </summary>
public static class Fuzzing
{
    public static int Iterations(int ci) =>
        int.TryParse(Environment.GetEnvironmentVariable("PISERVE_FUZZ_ITERATIONS"), out int n) && n > 0 ? n : ci;

    /// <summary>The seed of a run: PISERVE_FUZZ_SEED to replay one, else fixed, so CI runs are reproducible.</summary>
    public static int Seed(int @default) =>
        int.TryParse(Environment.GetEnvironmentVariable("PISERVE_FUZZ_SEED"), out int s) ? s : @default;

    private static readonly string[] InterestingNumbers =
    [
        "0", "-1", "1", "2", "3", "7", "255", "256", "65535", "2147483647", "2147483648", "-2147483648", "-2147483649", "4294967296",
        "9007199254740993", "9223372036854775807", "9223372036854775808", "18446744073709551621", "-9223372036854775808",
        "1e308", "-1e308", "1e-308", "1e-30", "0.5", "-0.0", "1.0000000000000002", "1152921504606846976", "1099511627776",
    ];

    public static JsonNode? Interesting(Random rng) => rng.Next(12) switch
    {
        0 => null,
        1 => JsonValue.Create(rng.Next(2) == 0),
        2 => JsonValue.Create(""),
        3 => JsonValue.Create(new string((char)rng.Next(32, 0x2fff), rng.Next(1, 4) * 1000)),
        4 => JsonValue.Create(RandomText(rng, rng.Next(1, 40))),
        5 => new JsonArray(),
        6 => new JsonObject(),
        7 => new JsonArray(Enumerable.Range(0, rng.Next(1, 5)).Select(_ => Interesting(rng)).ToArray()),
        8 => Deep(rng.Next(2, 300)),
        _ => JsonNode.Parse(InterestingNumbers[rng.Next(InterestingNumbers.Length)])!,
    };

    private static JsonNode Deep(int depth)
    {
        JsonNode node = new JsonArray();
        for (int i = 0; i < depth; i++) node = new JsonArray(node);
        return node;
    }

    public static string RandomText(Random rng, int length)
    {
        var sb = new StringBuilder(length);
        for (int i = 0; i < length; i++)
            sb.Append(rng.Next(6) switch
            {
                0 => (char)rng.Next(0, 32),
                1 => (char)rng.Next(0x80, 0x800),
                2 => (char)rng.Next(0xd800, 0xe000), // lone surrogates
                3 => "\u202e\ufffe\uffff\u0000"[rng.Next(4)],
                _ => (char)rng.Next(32, 127),
            });
        return sb.ToString();
    }

    /// <summary>Applies 1–4 random mutations to a copy of <paramref name="document"/>.</summary>
    public static JsonNode Mutate(JsonNode document, Random rng)
    {
        var root = document.DeepClone();
        int count = rng.Next(1, 5);
        for (int i = 0; i < count; i++) MutateOnce(ref root, rng);
        return root;
    }

    private static void MutateOnce(ref JsonNode root, Random rng)
    {
        var nodes = new List<JsonNode>();
        Collect(root, nodes, 0);
        var target = nodes[rng.Next(nodes.Count)];
        var parent = target.Parent;
        switch (rng.Next(6))
        {
            case 0 when parent is JsonObject po: // delete a field
                po.Remove(target.GetPropertyName());
                break;
            case 1 when parent is JsonArray pa: // delete or duplicate an element
                int index = target.GetElementIndex();
                if (rng.Next(2) == 0) pa.RemoveAt(index);
                else pa.Insert(index, target.DeepClone());
                break;
            case 2 when target is JsonObject to: // add a field
                to[rng.Next(3) == 0 ? RandomText(rng, 6) : "extra_" + rng.Next(100)] = Interesting(rng);
                break;
            default: // replace a value
                var replacement = Interesting(rng);
                if (parent is JsonObject o) o[target.GetPropertyName()] = replacement;
                else if (parent is JsonArray a) a[target.GetElementIndex()] = replacement;
                else root = replacement ?? new JsonObject();
                break;
        }
    }

    private static void Collect(JsonNode? node, List<JsonNode> into, int depth)
    {
        if (node is null || depth > 40) return;
        into.Add(node);
        // Big arrays (vocabularies, merges, factor lists): sample a few elements, not thousands.
        if (node is JsonArray a)
            for (int i = 0; i < Math.Min(a.Count, 8); i++) Collect(a[i], into, depth + 1);
        else if (node is JsonObject o)
            foreach (var (_, v) in o.Take(64)) Collect(v, into, depth + 1);
    }

    /// <summary>Byte-level damage: flips, truncation, insertion.</summary>
    public static byte[] Damage(byte[] bytes, Random rng)
    {
        var b = bytes.ToList();
        int count = rng.Next(1, 6);
        for (int i = 0; i < count && b.Count > 0; i++)
        {
            switch (rng.Next(3))
            {
                case 0: b[rng.Next(b.Count)] = (byte)rng.Next(256); break;
                case 1:
                    int at = rng.Next(b.Count);
                    b.RemoveRange(at, Math.Min(b.Count - at, rng.Next(1, 64)));
                    break;
                default: b.Insert(rng.Next(b.Count), (byte)rng.Next(256)); break;
            }
        }
        return [.. b];
    }
}
