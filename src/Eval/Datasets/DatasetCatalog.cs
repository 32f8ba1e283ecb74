namespace PiServe.Eval.Datasets;

/// <summary>A dataset as configured (PiServe:Datasets): id, format and path relative to PiServe:DataRoot.</summary>
public sealed record DatasetRegistration(string Id, string Kind, string Path);

/// <summary>A registered dataset after validation: its full path, or why it is refused.</summary>
public sealed record RegisteredDataset(string Id, DatasetKind Kind, string FullPath, string? Error)
{
    public string KindName => DatasetKinds.Name(Kind);
}

/// <summary>
/// The datasets jobs may name. Paths resolve inside the data root; one that escapes it (.., an
/// absolute path elsewhere) or has an unknown kind is kept with its error and refused when named.
/// Whether the files exist is checked when a job runs, so a job on a missing dataset fails with the reason.
/// </summary>
public sealed class DatasetCatalog
{
    private readonly Dictionary<string, RegisteredDataset> _datasets = new(StringComparer.Ordinal);

    public DatasetCatalog(string dataRoot, IEnumerable<DatasetRegistration> registrations)
    {
        DataRoot = System.IO.Path.GetFullPath(dataRoot);
        int i = 0;
        foreach (var r in registrations)
        {
            string id = string.IsNullOrWhiteSpace(r.Id) ? $"dataset-{i}" : r.Id;
            string? error = null;
            if (!DatasetKinds.TryParse(r.Kind, out var kind))
                error = $"PiServe:Datasets:{i}:Kind '{r.Kind}' is not one of {string.Join(", ", DatasetKinds.Names)}";
            string full = System.IO.Path.GetFullPath(System.IO.Path.Combine(DataRoot, r.Path ?? ""));
            if (error is null && !IsInside(DataRoot, full))
                error = $"PiServe:Datasets:{i}:Path '{r.Path}' resolves to {full}, outside PiServe:DataRoot ({DataRoot})";
            _datasets.TryAdd(id, new RegisteredDataset(id, kind, full, error));
            i++;
        }
    }

    public string DataRoot { get; }
    public IReadOnlyCollection<RegisteredDataset> All => _datasets.Values;
    public RegisteredDataset? Find(string id) => _datasets.GetValueOrDefault(id);

    public static bool IsInside(string root, string full)
    {
        string r = root.TrimEnd(System.IO.Path.DirectorySeparatorChar) + System.IO.Path.DirectorySeparatorChar;
        return full.StartsWith(r, StringComparison.Ordinal) || full == root.TrimEnd(System.IO.Path.DirectorySeparatorChar);
    }
}
