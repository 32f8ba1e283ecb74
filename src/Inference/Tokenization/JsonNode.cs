using System.Text.Json;

namespace PiServe.Inference.Tokenization;

/// <summary>
/// A JSON element that knows the file it came from and its path inside that file, so every
/// error names both ("tokenizer.json: model.merges[17]: ...").
/// </summary>
internal readonly struct JNode
{
    public readonly JsonElement Element;
    public readonly string File;
    public readonly string Path;

    public JNode(JsonElement element, string file, string path)
    {
        Element = element;
        File = file;
        Path = path;
    }

    public JsonValueKind Kind => Element.ValueKind;
    public bool IsNull => Element.ValueKind is JsonValueKind.Null or JsonValueKind.Undefined;

    public TokenizerFormatException Error(string message) =>
        new($"{File}: {(Path.Length == 0 ? "(root)" : Path)}: {message}");

    public TokenizerFormatException FieldError(string field, string message) =>
        new($"{File}: {Child(field)}: {message}");

    private string Child(string field) => Path.Length == 0 ? field : Path + "." + field;

    public static string Describe(JsonValueKind kind) => kind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Null => "null",
        _ => "nothing",
    };

    /// <summary>The field, or null when absent (JSON null counts as present: check <see cref="IsNull"/>).</summary>
    public JNode? Get(string field)
    {
        if (Element.ValueKind != JsonValueKind.Object)
            throw Error($"expected an object but found {Describe(Element.ValueKind)}");
        return Element.TryGetProperty(field, out var v) ? new JNode(v, File, Child(field)) : null;
    }

    /// <summary>The field, or null when absent or JSON null.</summary>
    public JNode? GetNonNull(string field)
    {
        var n = Get(field);
        return n is { IsNull: false } ? n : null;
    }

    public JNode Required(string field)
    {
        var n = Get(field);
        if (n is null) throw FieldError(field, "required field is missing");
        if (n.Value.IsNull) throw FieldError(field, "required field is null");
        return n.Value;
    }

    public IEnumerable<(string Name, JNode Value)> Properties()
    {
        RequireKind(JsonValueKind.Object);
        foreach (var p in Element.EnumerateObject())
            yield return (p.Name, new JNode(p.Value, File, Child(p.Name)));
    }

    public int ArrayLength
    {
        get
        {
            RequireKind(JsonValueKind.Array);
            return Element.GetArrayLength();
        }
    }

    public IEnumerable<JNode> Items()
    {
        RequireKind(JsonValueKind.Array);
        int i = 0;
        foreach (var e in Element.EnumerateArray())
            yield return new JNode(e, File, $"{Path}[{i++}]");
    }

    public void RequireKind(JsonValueKind kind)
    {
        if (Element.ValueKind != kind)
            throw Error($"expected {Describe(kind)} but found {Describe(Element.ValueKind)}");
    }

    public string AsString()
    {
        RequireKind(JsonValueKind.String);
        return Element.GetString()!;
    }

    public int AsInt()
    {
        if (Element.ValueKind != JsonValueKind.Number || !Element.TryGetInt32(out int v))
            throw Error($"expected an integer but found {Describe(Element.ValueKind)}");
        return v;
    }

    public bool AsBool()
    {
        if (Element.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
            throw Error($"expected a boolean but found {Describe(Element.ValueKind)}");
        return Element.GetBoolean();
    }

    public string RequiredString(string field) => Required(field).AsString();

    public string? OptionalString(string field)
    {
        var n = GetNonNull(field);
        return n?.AsString();
    }

    public bool OptionalBool(string field, bool defaultValue)
    {
        var n = GetNonNull(field);
        return n is null ? defaultValue : n.Value.AsBool();
    }

    public int OptionalInt(string field, int defaultValue)
    {
        var n = GetNonNull(field);
        return n is null ? defaultValue : n.Value.AsInt();
    }

    /// <summary>The "type" discriminator of a component object.</summary>
    public string TypeName()
    {
        RequireKind(JsonValueKind.Object);
        return RequiredString("type");
    }
}
