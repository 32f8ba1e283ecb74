using System.Text.Json;
using System.Text.Json.Nodes;

namespace PiServe.Inference.Checkpoints;

/// <summary>
/// A Hugging Face checkpoint folder: config.json plus model.safetensors, or shards listed by
/// model.safetensors.index.json. The tensors stay memory-mapped in their stored dtype.
/// </summary>
public sealed class Checkpoint : IDisposable
{
    public const string SingleFile = "model.safetensors";
    public const string IndexFile = "model.safetensors.index.json";

    private readonly List<SafetensorsFile> _files = [];
    private readonly Dictionary<string, TensorView> _tensors = new(StringComparer.Ordinal);

    public string Directory { get; }
    public ModelConfig Config { get; }
    /// <summary>The file that lists the tensors: model.safetensors or the index; named in "missing tensor" errors.</summary>
    public string TensorListFile { get; }
    public IReadOnlyDictionary<string, TensorView> Tensors => _tensors;
    public long WeightBytes => _tensors.Values.Sum(t => t.ByteLength);

    private readonly ConfinementRoot? _confineTo;

    private Checkpoint(string directory, ModelConfig config, string tensorListFile, ConfinementRoot? confineTo)
    {
        _confineTo = confineTo;
        Directory = directory;
        Config = config;
        TensorListFile = tensorListFile;
    }

    /// <summary>
    /// Opens the checkpoint in <paramref name="directory"/>. Its files may be symbolic links (a Hugging
    /// Face cache snapshot: snapshots/&lt;rev&gt;/model.safetensors → ../../blobs/&lt;sha256&gt;); their real
    /// targets are what is read, measured and mapped. With <paramref name="confineTo"/>, the real path
    /// of the folder and of every file read must lie inside that root, else
    /// <see cref="CheckpointFormatException"/> naming the file (and no path outside the root).
    /// </summary>
    public static Checkpoint Open(string directory, ConfinementRoot? confineTo = null)
    {
        if (!System.IO.Directory.Exists(directory))
            throw new CheckpointFormatException(directory, null, "checkpoint folder not found");
        directory = ConfinedPath.ResolveFolder(directory, "checkpoint folder", confineTo);
        // ModelConfig.Load reads config.json through the link, if it is one; its real path is checked first.
        ConfinedPath.ResolveFile(Path.Combine(directory, ModelConfig.FileName), ModelConfig.FileName, confineTo);
        var config = ModelConfig.Load(directory);
        string? single = ConfinedPath.ResolveFile(Path.Combine(directory, SingleFile), SingleFile, confineTo);
        string? index = ConfinedPath.ResolveFile(Path.Combine(directory, IndexFile), IndexFile, confineTo);
        var ckpt = new Checkpoint(directory, config, index is not null && single is null ? IndexFile : SingleFile, confineTo);
        try
        {
            if (single is not null)
                ckpt.Add(new SafetensorsFile(Path.Combine(directory, SingleFile), confineTo), null);
            else if (index is not null)
                ckpt.OpenShards(index);
            else
                throw new CheckpointFormatException(SingleFile, null, $"neither {SingleFile} nor {IndexFile} found in {directory}");
            return ckpt;
        }
        catch
        {
            ckpt.Dispose();
            throw;
        }
    }

    private void OpenShards(string indexPath)
    {
        JsonNode? root;
        try
        {
            root = JsonNode.Parse(File.ReadAllText(indexPath));
        }
        catch (JsonException e)
        {
            throw new CheckpointFormatException(IndexFile, null, $"not valid JSON: {e.Message}");
        }
        if (root?["weight_map"] is not JsonObject map)
            throw new CheckpointFormatException(IndexFile, "weight_map", "missing or not an object");

        var byFile = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        foreach (var (tensor, fileNode) in map)
        {
            if (fileNode is not JsonValue v || !v.TryGetValue(out string? file) || string.IsNullOrEmpty(file))
                throw new CheckpointFormatException(IndexFile, $"weight_map['{tensor}']", "must be a file name");
            if (file.Contains('/') || file.Contains('\\') || file.Contains(".."))
                throw new CheckpointFormatException(IndexFile, $"weight_map['{tensor}']", $"'{file}' must be a plain file name inside the checkpoint folder");
            if (!byFile.TryGetValue(file, out var list)) byFile[file] = list = [];
            list.Add(tensor);
        }
        foreach (var (file, names) in byFile.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            string path = Path.Combine(Directory, file);
            if (ConfinedPath.ResolveFile(path, file, _confineTo) is null)
                throw new CheckpointFormatException(IndexFile, $"weight_map['{names[0]}']", $"shard '{file}' not found");
            Add(new SafetensorsFile(path, _confineTo), names);
        }
    }

    private void Add(SafetensorsFile file, List<string>? expectedNames)
    {
        _files.Add(file);
        foreach (var (name, view) in file.Tensors)
        {
            if (_tensors.TryGetValue(name, out var earlier))
                throw new CheckpointFormatException(file.FileName, $"tensor '{name}'", $"also present in {earlier.File}");
            _tensors[name] = view;
        }
        if (expectedNames is not null)
            foreach (var name in expectedNames)
                if (!file.Tensors.ContainsKey(name))
                    throw new CheckpointFormatException(file.FileName, $"tensor '{name}'", $"listed in {IndexFile} but not present in this shard");
    }

    /// <summary>The tensor with this name, checked against the shape the config implies.</summary>
    public TensorView Require(string name, params long[] shape)
    {
        if (!_tensors.TryGetValue(name, out var t))
            throw new CheckpointFormatException(TensorListFile, $"tensor '{name}'", "missing");
        if (!t.Shape.AsSpan().SequenceEqual(shape))
            throw new CheckpointFormatException(t.File, $"tensor '{name}'",
                $"shape {t.ShapeText} does not match [{string.Join(", ", shape)}] implied by config.json");
        return t;
    }

    public bool Has(string name) => _tensors.ContainsKey(name);

    public void Dispose()
    {
        foreach (var f in _files) f.Dispose();
        _files.Clear();
    }
}
