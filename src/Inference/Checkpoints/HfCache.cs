namespace PiServe.Inference.Checkpoints;

/// <summary>
/// The Hugging Face hub cache layout: models--org--name/{blobs/&lt;sha256&gt;, snapshots/&lt;rev&gt;/&lt;file&gt; → ../../blobs/&lt;sha256&gt;,
/// refs/main holding the revision}. A snapshot folder loads as any checkpoint folder (its files are
/// links, followed by the loaders); the repo folder itself stands for the snapshot refs/main names, as
/// transformers and vLLM accept it.
/// </summary>
public static class HfCache
{
    public const string RefsMain = "refs/main";

    /// <summary>Whether <paramref name="folder"/> looks like a repo cache folder: snapshots/ and refs/, no config.json of its own.</summary>
    public static bool IsRepoFolder(string folder) =>
        Directory.Exists(Path.Combine(folder, "snapshots")) && Directory.Exists(Path.Combine(folder, "refs"))
        && !Path.Exists(Path.Combine(folder, ModelConfig.FileName));

    /// <summary>
    /// For a repo cache folder, the real path of the snapshot its refs/main names; any other folder is
    /// returned unchanged. With <paramref name="confineTo"/>, refs/main and the snapshot must resolve
    /// inside that root. Throws <see cref="CheckpointFormatException"/> naming refs/main or the snapshot.
    /// </summary>
    public static string ResolveRepoFolder(string folder, ConfinementRoot? confineTo = null)
    {
        if (!IsRepoFolder(folder)) return folder;
        string refPath = ConfinedPath.ResolveFile(Path.Combine(folder, "refs", "main"), RefsMain, confineTo)
            ?? throw new CheckpointFormatException(RefsMain, null,
                "not found: this Hugging Face repo cache folder has no refs/main naming the snapshot to serve (name snapshots/<revision> instead)");
        string revision;
        using (var reader = new StreamReader(refPath))
        {
            var buffer = new char[257];
            int n = reader.ReadBlock(buffer, 0, buffer.Length);
            revision = new string(buffer, 0, n).Trim();
        }
        if (revision.Length is 0 or > 256 || revision is "." or ".."
            || !revision.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '-' or '_'))
            throw new CheckpointFormatException(RefsMain, null, "does not hold a revision (the commit hash of a folder in snapshots/)");
        string name = $"snapshots/{revision}";
        string snapshot = ConfinedPath.ResolveFolder(Path.Combine(folder, "snapshots", revision), name, confineTo);
        if (!Directory.Exists(snapshot))
            throw new CheckpointFormatException(name, null, "the snapshot refs/main names is not in snapshots/ (an interrupted download?)");
        return snapshot;
    }
}
