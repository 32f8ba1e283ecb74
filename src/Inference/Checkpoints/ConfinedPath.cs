namespace PiServe.Inference.Checkpoints;

/// <summary>Following symbolic links met more links than any real path needs: a loop.</summary>
public sealed class SymbolicLinkLoopException(string message) : IOException(message);

/// <summary>
/// A folder that reads are confined to (PiServe:ModelsRoot, PiServe:DataRoot), held as its real path
/// (every symbolic link resolved), with the name errors call it by.
/// </summary>
public sealed class ConfinementRoot
{
    public ConfinementRoot(string path, string name)
    {
        Path = ConfinedPath.RealPath(path);
        Name = name;
    }

    /// <summary>The real path of the root.</summary>
    public string Path { get; }
    /// <summary>How errors name the root, e.g. "PiServe:ModelsRoot"; never its absolute path.</summary>
    public string Name { get; }

    /// <summary>Whether a real path lies inside the root (or is the root).</summary>
    public bool Contains(string realPath) => ConfinedPath.IsInside(Path, realPath);

    /// <summary>A real path inside the root written relative to it ("." for the root itself).</summary>
    public string Relative(string realPath) => System.IO.Path.GetRelativePath(Path, realPath);
}

/// <summary>
/// Real paths and confinement. A lexical check of a path ("does it start with the root?") says nothing
/// once a folder or file on the way is a symbolic link: Hugging Face's cache is built of them
/// (snapshots/&lt;rev&gt;/model.safetensors → ../../blobs/&lt;sha256&gt;). So files are read through their
/// real paths, and confinement is checked on those.
/// </summary>
public static class ConfinedPath
{
    /// <summary>Links followed while resolving one path before it is called a loop (Linux's own limit is 40).</summary>
    public const int MaxLinks = 40;

    private static readonly StringComparison PathComparison =
        OperatingSystem.IsWindows() || OperatingSystem.IsMacOS() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;

    /// <summary>
    /// The real absolute path of <paramref name="path"/>: every component that is a symbolic link
    /// (chains included, relative targets taken against the link's own folder, ".." taken after the
    /// link is followed) replaced by what it points at. Components that do not exist are kept as
    /// written. Throws <see cref="SymbolicLinkLoopException"/> after <see cref="MaxLinks"/> links.
    /// </summary>
    public static string RealPath(string path)
    {
        string full = Path.GetFullPath(path);
        string current = Path.GetPathRoot(full)!;
        var pending = new Stack<string>();
        Push(pending, full[current.Length..]);
        int links = 0;
        bool missing = false;
        while (pending.Count > 0)
        {
            string part = pending.Pop();
            if (part is "" or ".") continue;
            if (part == "..")
            {
                current = Path.GetDirectoryName(current) ?? current;
                continue;
            }
            string next = Path.Join(current, part);
            if (!missing)
            {
                string? target = new FileInfo(next).LinkTarget;
                if (target is not null)
                {
                    if (++links > MaxLinks)
                        throw new SymbolicLinkLoopException("too many levels of symbolic links (a symbolic link loop)");
                    if (Path.IsPathRooted(target))
                    {
                        string targetRoot = Path.GetPathRoot(target)!;
                        current = Path.GetFullPath(targetRoot);
                        Push(pending, target[targetRoot.Length..]);
                    }
                    else
                    {
                        Push(pending, target);
                    }
                    continue;
                }
                if (!Path.Exists(next)) missing = true;
            }
            current = next;
        }
        return current;
    }

    private static void Push(Stack<string> pending, string relative)
    {
        var parts = relative.Split([Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar]);
        for (int i = parts.Length - 1; i >= 0; i--) pending.Push(parts[i]);
    }

    /// <summary>Whether <paramref name="path"/> is <paramref name="root"/> or lies under it (both real paths; the check has a trailing separator, so /models-evil is not inside /models).</summary>
    public static bool IsInside(string root, string path)
    {
        string trimmed = root.Length > 1 ? root.TrimEnd(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar) : root;
        if (string.Equals(path.TrimEnd(Path.DirectorySeparatorChar), trimmed, PathComparison)) return true;
        string prefix = trimmed.EndsWith(Path.DirectorySeparatorChar) ? trimmed : trimmed + Path.DirectorySeparatorChar;
        return path.StartsWith(prefix, PathComparison);
    }

    /// <summary>Whether the last component of <paramref name="path"/> is itself a symbolic link.</summary>
    public static bool IsLink(string path)
    {
        try { return new FileInfo(Path.GetFullPath(path)).LinkTarget is not null; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; }
    }

    /// <summary>
    /// The real path of a file a loader is about to read, or null when there is nothing there (no file
    /// and no link: the caller reports it missing as it always has). <paramref name="displayName"/>
    /// names the file in errors (its name in the checkpoint folder, never the blob it points at).
    /// Throws <see cref="CheckpointFormatException"/> for a link loop, a dangling link, or a real path
    /// outside <paramref name="confineTo"/> — messages that name no absolute path.
    /// </summary>
    public static string? ResolveFile(string path, string displayName, ConfinementRoot? confineTo)
    {
        string real;
        try
        {
            real = RealPath(path);
        }
        catch (SymbolicLinkLoopException)
        {
            throw new CheckpointFormatException(displayName, null, "a symbolic link loop (too many levels of symbolic links)");
        }
        bool isLink = IsLink(path);
        if (confineTo is not null && !confineTo.Contains(real))
            throw new CheckpointFormatException(displayName, null, isLink
                ? $"a symbolic link to a file outside {confineTo.Name}"
                : $"resolves through a symbolic link to a location outside {confineTo.Name}");
        if (!Path.Exists(real))
        {
            if (isLink)
                throw new CheckpointFormatException(displayName, null, "a dangling symbolic link: the file it points to does not exist");
            return null;
        }
        if (Directory.Exists(real))
            throw new CheckpointFormatException(displayName, null, "is a folder, not a file");
        return real;
    }

    /// <summary>
    /// The real path of a folder to load from, confined when <paramref name="confineTo"/> is given.
    /// Throws <see cref="CheckpointFormatException"/> (naming <paramref name="displayName"/>) for a
    /// loop or a real path outside the root. Whether the folder exists is left to the caller.
    /// </summary>
    public static string ResolveFolder(string path, string displayName, ConfinementRoot? confineTo)
    {
        string real;
        try
        {
            real = RealPath(path);
        }
        catch (SymbolicLinkLoopException)
        {
            throw new CheckpointFormatException(displayName, null, "a symbolic link loop (too many levels of symbolic links)");
        }
        if (confineTo is not null && !confineTo.Contains(real))
            throw new CheckpointFormatException(displayName, null, $"resolves through a symbolic link to a location outside {confineTo.Name}");
        return real;
    }
}
