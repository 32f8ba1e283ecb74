namespace PiServe.Tests.Support;

public static class RepoPaths
{
    /// <summary>The repository root: the folder above the test binaries that holds PiServe.sln.</summary>
    public static string Root { get; } = FindRoot();

    public static string Fixtures => Path.Combine(Root, "tests", "fixtures");

    /// <summary>A model shipped in models/ (kjv-base-256, kjv-pi-1024).</summary>
    public static string ShippedModel(string id) => Path.Combine(Root, "models", id);

    private static string FindRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "PiServe.sln"))) return d.FullName;
        throw new InvalidOperationException("PiServe.sln not found above " + AppContext.BaseDirectory);
    }
}
