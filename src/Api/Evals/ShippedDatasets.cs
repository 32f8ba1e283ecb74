using System.Text.Json;
using PiServe.Eval.Datasets;

namespace PiServe.Api.Evals;

/// <summary>The manifest of the shipped datasets (datasets/datasets.json): what is registered when PiServe:Datasets is empty.</summary>
public static class ShippedDatasets
{
    public const string Manifest = "datasets.json";

    private sealed record Entry(string Id, string Kind, string Path);
    private sealed record File(List<Entry> Datasets);

    /// <summary>The registrations the manifest lists; none when the folder or its manifest is absent (a trimmed deployment).</summary>
    public static IReadOnlyList<DatasetRegistration> Read(string folder)
    {
        string path = System.IO.Path.Combine(folder, Manifest);
        if (!System.IO.File.Exists(path)) return [];
        var manifest = JsonSerializer.Deserialize<File>(System.IO.File.ReadAllText(path), new JsonSerializerOptions { PropertyNameCaseInsensitive = true })
            ?? throw new InvalidDataException($"{path}: empty manifest");
        return manifest.Datasets.Select(d => new DatasetRegistration(d.Id, d.Kind, d.Path)).ToList();
    }
}
