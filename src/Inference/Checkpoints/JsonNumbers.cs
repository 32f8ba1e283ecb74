using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace PiServe.Inference.Checkpoints;

/// <summary>
/// Reads a JSON number whatever backs the node: parsed text, or a CLR int/long/double put there by
/// code (JsonValue.TryGetValue&lt;double&gt; fails on a node created from an int).
/// </summary>
internal static class JsonNumbers
{
    public static bool TryGetDouble(JsonNode? node, out double value)
    {
        value = 0;
        if (node is not JsonValue v || v.GetValueKind() != JsonValueKind.Number) return false;
        if (v.TryGetValue(out double d)) { value = d; return true; }
        return double.TryParse(v.ToJsonString(), NumberStyles.Float, CultureInfo.InvariantCulture, out value);
    }
}
