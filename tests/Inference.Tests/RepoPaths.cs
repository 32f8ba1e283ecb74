namespace PiServe.Inference.Tests;

public static class RepoPaths
{
    /// <summary>The repository root: the folder above the test binaries that holds PiServe.sln.</summary>
    public static string Root { get; } = FindRoot();

    public static string Fixtures => Path.Combine(Root, "tests", "fixtures");

    private static string FindRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "PiServe.sln"))) return d.FullName;
        throw new InvalidOperationException("PiServe.sln not found above " + AppContext.BaseDirectory);
    }
}
