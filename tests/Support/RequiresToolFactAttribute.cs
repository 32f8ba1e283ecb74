namespace PiServe.Tests.Support;

/// <summary>
/// A fact skipped, saying why and which Debian package brings it, when a tool it drives is missing
/// (promtool, prometheus, docker-compose, chromium). .ci/run installs all of them, so CI skips nothing.
/// </summary>
public sealed class RequiresToolFactAttribute : FactAttribute
{
    public RequiresToolFactAttribute(string tool, string debianPackage)
    {
        bool found = Path.IsPathRooted(tool) ? File.Exists(tool) : ProcessRunner.FindOnPath(tool) is not null;
        if (!found) Skip = $"{tool} is not installed: install the Debian package '{debianPackage}' (apt-get install -y {debianPackage}; .ci/run does)";
    }
}
