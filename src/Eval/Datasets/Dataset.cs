using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace PiServe.Eval.Datasets;

/// <summary>The dataset formats the papers evaluate on.</summary>
public enum DatasetKind
{
    /// <summary>PG-19 test split: a folder of .txt books (one document per file).</summary>
    Pg19,
    /// <summary>proof-pile: JSON Lines with a "text" field.</summary>
    ProofPile,
    /// <summary>GovReport: JSON Lines with "report" + "summary", or SCROLLS' "input" + "output".</summary>
    GovReport,
}

public static class DatasetKinds
{
    public static readonly string[] Names = ["pg19", "proof-pile", "govreport"];

    public static bool TryParse(string? name, out DatasetKind kind)
    {
        switch (name?.Trim().ToLowerInvariant())
        {
            case "pg19" or "pg-19": kind = DatasetKind.Pg19; return true;
            case "proof-pile" or "proofpile" or "proof_pile": kind = DatasetKind.ProofPile; return true;
            case "govreport" or "gov_report" or "gov-report": kind = DatasetKind.GovReport; return true;
            default: kind = default; return false;
        }
    }

    public static string Name(DatasetKind kind) => kind switch
    {
        DatasetKind.Pg19 => "pg19",
        DatasetKind.ProofPile => "proof-pile",
        _ => "govreport",
    };
}

/// <summary>One document: its id (file name or "id" field, else "line N"), its text and, for summarization, the reference.</summary>
public sealed record DatasetDocument(string Id, string Text, string? Reference = null);

/// <summary>A malformed line of a JSON Lines file.</summary>
public sealed record DatasetLineError(int Line, string Message)
{
    public override string ToString() => $"line {Line}: {Message}";
}

/// <summary>The dataset cannot be used: missing, empty, or malformed lines (listed with their line numbers).</summary>
public sealed class DatasetException(string message, IReadOnlyList<DatasetLineError>? lines = null) : Exception(message)
{
    public IReadOnlyList<DatasetLineError> Lines { get; } = lines ?? [];
}

/// <summary>What was read: the documents, and the malformed lines skipped (when allowed).</summary>
public sealed record DatasetContents(IReadOnlyList<DatasetDocument> Documents, IReadOnlyList<DatasetLineError> SkippedLines);

/// <summary>Reads the three formats. Documents come in file order (PG-19: file names in ordinal order).</summary>
public static class DatasetReader
{
    /// <summary>At most this many malformed lines are named in an error message.</summary>
    public const int ListedErrors = 10;

    /// <param name="maxDocuments">Stop after this many documents (lines past them are not read).</param>
    /// <param name="skipMalformed">Skip malformed lines and report them instead of failing.</param>
    public static DatasetContents Read(DatasetKind kind, string path, int? maxDocuments = null, bool skipMalformed = false,
        CancellationToken cancellation = default)
    {
        string label = $"dataset {Path.GetFileName(path.TrimEnd(Path.DirectorySeparatorChar))} ({DatasetKinds.Name(kind)})";
        return kind == DatasetKind.Pg19
            ? new DatasetContents(ReadBooks(path, label, maxDocuments, cancellation), [])
            : ReadJsonLines(kind, path, label, maxDocuments, skipMalformed, cancellation);
    }

    private static List<DatasetDocument> ReadBooks(string path, string label, int? maxDocuments, CancellationToken cancellation)
    {
        List<string> files;
        if (File.Exists(path)) files = [path];
        else if (Directory.Exists(path))
            files = Directory.EnumerateFiles(path, "*.txt", SearchOption.TopDirectoryOnly).Order(StringComparer.Ordinal).ToList();
        else throw new DatasetException($"{label}: {path} does not exist");
        if (files.Count == 0) throw new DatasetException($"{label}: no .txt files in {path}");
        var docs = new List<DatasetDocument>();
        foreach (var f in files)
        {
            if (docs.Count >= maxDocuments) break;
            cancellation.ThrowIfCancellationRequested();
            docs.Add(new DatasetDocument(Path.GetFileNameWithoutExtension(f), File.ReadAllText(f, Encoding.UTF8)));
        }
        return docs;
    }

    private static DatasetContents ReadJsonLines(DatasetKind kind, string path, string label, int? maxDocuments, bool skipMalformed,
        CancellationToken cancellation)
    {
        if (Directory.Exists(path)) throw new DatasetException($"{label}: {path} is a folder; a JSON Lines file is expected");
        if (!File.Exists(path)) throw new DatasetException($"{label}: {path} does not exist");
        var docs = new List<DatasetDocument>();
        var errors = new List<DatasetLineError>();
        int lineNumber = 0;
        using var reader = new StreamReader(path, Encoding.UTF8);
        while (reader.ReadLine() is { } line)
        {
            lineNumber++;
            if (docs.Count >= maxDocuments) break;
            if ((lineNumber & 63) == 0) cancellation.ThrowIfCancellationRequested();
            if (string.IsNullOrWhiteSpace(line)) continue;
            JsonNode? node;
            try
            {
                node = JsonNode.Parse(line);
            }
            catch (JsonException e)
            {
                errors.Add(new DatasetLineError(lineNumber, "invalid JSON: " + FirstSentence(e.Message)));
                continue;
            }
            if (node is not JsonObject o)
            {
                errors.Add(new DatasetLineError(lineNumber, "not a JSON object"));
                continue;
            }
            string id = Id(o) ?? $"line {lineNumber}";
            if (kind == DatasetKind.ProofPile)
            {
                if (Text(o, "text", out string? text, out string? problem)) docs.Add(new DatasetDocument(id, text!));
                else errors.Add(new DatasetLineError(lineNumber, problem!));
                continue;
            }
            // GovReport: the original release's report/summary, or SCROLLS' input/output.
            var (docField, refField) = o.ContainsKey("report") || o.ContainsKey("summary") ? ("report", "summary") : ("input", "output");
            if (!o.ContainsKey(docField) && !o.ContainsKey(refField))
            {
                errors.Add(new DatasetLineError(lineNumber, "expected \"report\" and \"summary\" (GovReport) or \"input\" and \"output\" (SCROLLS)"));
                continue;
            }
            if (!Text(o, docField, out string? report, out string? p1)) { errors.Add(new DatasetLineError(lineNumber, p1!)); continue; }
            if (!Text(o, refField, out string? summary, out string? p2)) { errors.Add(new DatasetLineError(lineNumber, p2!)); continue; }
            docs.Add(new DatasetDocument(id, report!, summary));
        }
        if (errors.Count > 0 && !skipMalformed)
            throw new DatasetException($"{label}: {errors.Count} malformed line{(errors.Count == 1 ? "" : "s")}: "
                + string.Join("; ", errors.Take(ListedErrors)) + (errors.Count > ListedErrors ? $"; and {errors.Count - ListedErrors} more" : ""), errors);
        if (docs.Count == 0)
            throw new DatasetException($"{label}: no documents in {path}" + (errors.Count > 0 ? $" ({errors.Count} malformed lines skipped)" : ""), errors);
        return new DatasetContents(docs, errors);
    }

    /// <summary>A string field, or an array of strings (GovReport sometimes stores paragraphs) joined by newlines.</summary>
    private static bool Text(JsonObject o, string field, out string? text, out string? problem)
    {
        text = null;
        problem = null;
        switch (o[field])
        {
            case null:
                problem = o.ContainsKey(field) ? $"field \"{field}\" is null" : $"missing field \"{field}\"";
                return false;
            case JsonValue v when v.TryGetValue(out string? s):
                text = s;
                return true;
            case JsonArray a when a.All(x => x is JsonValue xv && xv.TryGetValue(out string? _)):
                text = string.Join("\n", a.Select(x => x!.GetValue<string>()));
                return true;
            default:
                problem = $"field \"{field}\" must be a string";
                return false;
        }
    }

    private static string? Id(JsonObject o) => o["id"] switch
    {
        JsonValue v when v.TryGetValue(out string? s) && s.Length > 0 => s,
        JsonValue v when v.TryGetValue(out long l) => l.ToString(System.Globalization.CultureInfo.InvariantCulture),
        _ => null,
    };

    private static string FirstSentence(string message)
    {
        int i = message.IndexOf(". ", StringComparison.Ordinal);
        return i > 0 ? message[..i] : message.TrimEnd('.');
    }
}
