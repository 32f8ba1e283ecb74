using PiServe.Inference.Checkpoints;

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
    private readonly ConfinementRoot? _confine;
    private readonly string? _rootError;

    public DatasetCatalog(string dataRoot, IEnumerable<DatasetRegistration> registrations)
    {
        DataRoot = System.IO.Path.GetFullPath(dataRoot);
        try
        {
            _confine = new ConfinementRoot(DataRoot, "PiServe:DataRoot");
        }
        catch (SymbolicLinkLoopException)
        {
            _rootError = "PiServe:DataRoot: a symbolic link loop (too many levels of symbolic links)";
        }
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
            if (error is null)
                error = RealPathProblem($"PiServe:Datasets:{i}:Path '{r.Path}'", full);
            _datasets.TryAdd(id, new RegisteredDataset(id, kind, full, error));
            i++;
        }
    }

    public string DataRoot { get; }
    public IReadOnlyCollection<RegisteredDataset> All => _datasets.Values;
    public RegisteredDataset? Find(string id) => _datasets.GetValueOrDefault(id);

    /// <summary>
    /// Why the dataset's files may not be read, checked on real paths (every symbolic link resolved): the
    /// path, or for a folder each .txt file in it, must lie inside the real PiServe:DataRoot. Null when
    /// they do (or do not exist yet: that is reported when a job runs). Call again before reading, as
    /// links can change after registration.
    /// </summary>
    public string? RealPathProblem(RegisteredDataset dataset) => RealPathProblem($"dataset '{dataset.Id}'", dataset.FullPath);

    private string? RealPathProblem(string name, string full)
    {
        if (_rootError is not null) return _rootError;
        try
        {
            string real = ConfinedPath.RealPath(full);
            if (!_confine!.Contains(real))
                return $"{name} resolves through a symbolic link to a location outside PiServe:DataRoot";
            if (Directory.Exists(real))
                foreach (string file in Directory.EnumerateFiles(real, "*.txt", SearchOption.TopDirectoryOnly))
                    if (!_confine.Contains(ConfinedPath.RealPath(file)))
                        return $"{name}: {System.IO.Path.GetFileName(file)} is a symbolic link to a file outside PiServe:DataRoot";
            return null;
        }
        catch (SymbolicLinkLoopException)
        {
            return $"{name}: a symbolic link loop (too many levels of symbolic links)";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null; // unreadable: the job that reads it reports why
        }
    }

    public static bool IsInside(string root, string full)
    {
        string r = root.TrimEnd(System.IO.Path.DirectorySeparatorChar) + System.IO.Path.DirectorySeparatorChar;
        return full.StartsWith(r, StringComparison.Ordinal) || full == root.TrimEnd(System.IO.Path.DirectorySeparatorChar);
    }
}
