using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using PiServe.Eval.Datasets;
using PiServe.Inference.Chat;
using PiServe.Inference.Checkpoints;
using PiServe.Inference.Generation;
using PiServe.Inference.Model;
using PiServe.Api.Tests.Serving;
using PiServe.Inference.Tokenization;

namespace PiServe.Api.Tests.Models;

/// <summary>
/// Checkpoint folders in the Hugging Face hub cache layout (issue 12 item 2): snapshots/&lt;rev&gt;/ of
/// relative symbolic links into blobs/, refs/main naming the revision. Loaded through their real
/// targets, and confined on real paths: a link out of PiServe:ModelsRoot fails that model alone.
/// </summary>
public sealed class HfCacheLayoutTests : IDisposable
{
    private const string Rev = "0123456789abcdef0123456789abcdef01234567";
    private readonly TempDir _tmp = new();

    public void Dispose() => _tmp.Dispose();

    /// <summary>A good checkpoint (kjv tokenizer, a chat template); sharded in two when asked.</summary>
    private static void WritePlain(string dir, bool sharded)
    {
        CorruptModelStartupTests.WriteGood(dir);
        File.WriteAllText(Path.Combine(dir, ChatTemplate.JinjaFile), "{% for m in messages %}{{ m['content'] }}\n{% endfor %}");
        File.WriteAllText(Path.Combine(dir, ChatTemplate.TokenizerConfigFile), """{"bos_token":"<s>","eos_token":"</s>"}""");
        if (!sharded) return;
        string single = Path.Combine(dir, Checkpoint.SingleFile);
        var tensors = new List<SafetensorsWriter.Tensor>();
        using (var f = new SafetensorsFile(single))
            foreach (var t in f.Tensors.Values.OrderBy(t => t.Name, StringComparer.Ordinal))
                unsafe { tensors.Add(new(t.Name, t.DType, t.Shape, new ReadOnlySpan<byte>(t.Data, (int)t.ByteLength).ToArray())); }
        File.Delete(single);
        var map = new JsonObject();
        for (int s = 0; s < 2; s++)
        {
            string name = $"model-0000{s + 1}-of-00002.safetensors";
            var part = tensors.Where((_, i) => i % 2 == s).ToList();
            SafetensorsWriter.Write(Path.Combine(dir, name), part);
            foreach (var t in part) map[t.Name] = name;
        }
        File.WriteAllText(Path.Combine(dir, Checkpoint.IndexFile), new JsonObject { ["metadata"] = new JsonObject(), ["weight_map"] = map }.ToJsonString());
    }

    /// <summary>
    /// Lays <paramref name="plain"/> out as the hub does under <paramref name="cache"/>: blobs named by the
    /// sha256 of their content, snapshots/&lt;rev&gt;/ of relative links to ../../blobs/, refs/main.
    /// Returns the snapshot folder.
    /// </summary>
    internal static string WriteHfRepo(string cache, string repo, string plain, string rev = Rev)
    {
        string repoDir = Path.Combine(cache, repo);
        string blobs = Path.Combine(repoDir, "blobs"), snapshot = Path.Combine(repoDir, "snapshots", rev);
        Directory.CreateDirectory(blobs);
        Directory.CreateDirectory(snapshot);
        Directory.CreateDirectory(Path.Combine(repoDir, "refs"));
        foreach (string file in Directory.GetFiles(plain))
        {
            byte[] bytes = File.ReadAllBytes(file);
            string sha = Convert.ToHexStringLower(SHA256.HashData(bytes));
            File.WriteAllBytes(Path.Combine(blobs, sha), bytes);
            File.CreateSymbolicLink(Path.Combine(snapshot, Path.GetFileName(file)), "../../blobs/" + sha);
        }
        File.WriteAllText(Path.Combine(repoDir, "refs", "main"), rev);
        return snapshot;
    }

    private static float[] Logits(LlamaModel model)
    {
        int[] tokens = [1, 17, 300, 4000, 42, 9];
        return Scoring.Score(model, tokens).LastLogits;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void SnapshotLoadsWithLogitsIdenticalToThePlainFolder(bool sharded)
    {
        string plain = _tmp.File("plain"), cache = _tmp.File("hub");
        WritePlain(plain, sharded);
        string snapshot = WriteHfRepo(cache, "models--org--tiny", plain);
        Assert.True(ConfinedPath.IsLink(Path.Combine(snapshot, ModelConfig.FileName)));

        float[] expected;
        using (var model = LlamaModel.Load(plain)) expected = Logits(model);
        var root = new ConfinementRoot(cache, "PiServe:ModelsRoot");
        using (var model = LlamaModel.Load(snapshot, null, root)) Assert.Equal(expected, Logits(model));
        // The repo folder stands for the snapshot refs/main names.
        string resolved = HfCache.ResolveRepoFolder(Path.Combine(cache, "models--org--tiny"), root);
        Assert.Equal(ConfinedPath.RealPath(snapshot), resolved);
        using (var model = LlamaModel.Load(resolved, null, root)) Assert.Equal(expected, Logits(model));
        // A snapshot folder reached through a symlinked folder (chained with the hub's own links).
        Directory.CreateSymbolicLink(Path.Combine(cache, "current"), Path.Combine("models--org--tiny", "snapshots", Rev));
        using (var model = LlamaModel.Load(Path.Combine(cache, "current"), null, root)) Assert.Equal(expected, Logits(model));

        Assert.Equal(TokenizerLoader.Load(plain).Encode("In the beginning"), TokenizerLoader.Load(snapshot, root).Encode("In the beginning"));
        Assert.NotNull(ChatTemplate.FromTokenizerConfig(snapshot, null, root));
    }

    [Fact]
    public void ChainsOfLinksAreFollowedAndTheTargetIsMeasured()
    {
        string plain = _tmp.File("plain");
        WritePlain(plain, sharded: false);
        string dir = _tmp.File("chain");
        Directory.CreateDirectory(dir);
        foreach (string p in Directory.GetFiles(plain)) File.Copy(p, Path.Combine(dir, Path.GetFileName(p)));
        File.Move(Path.Combine(dir, Checkpoint.SingleFile), Path.Combine(dir, "real.bin"));
        File.CreateSymbolicLink(Path.Combine(dir, "hop2"), "real.bin");
        File.CreateSymbolicLink(Path.Combine(dir, "hop1"), Path.Combine(dir, "hop2")); // absolute
        File.CreateSymbolicLink(Path.Combine(dir, Checkpoint.SingleFile), "./hop1");
        using var f = new SafetensorsFile(Path.Combine(dir, Checkpoint.SingleFile));
        Assert.Equal(Checkpoint.SingleFile, f.FileName);
        Assert.Equal(ConfinedPath.RealPath(Path.Combine(dir, "real.bin")), f.RealPath);
        using var plainFile = new SafetensorsFile(Path.Combine(plain, Checkpoint.SingleFile));
        Assert.Equal(plainFile.Tensors.Keys.Order(), f.Tensors.Keys.Order());
    }

    [Fact]
    public void DanglingLinksAreNamedFormatErrors()
    {
        string dir = _tmp.File("dangling");
        WritePlain(dir, sharded: false);
        File.Delete(Path.Combine(dir, Checkpoint.SingleFile));
        File.CreateSymbolicLink(Path.Combine(dir, Checkpoint.SingleFile), "../../blobs/gone");
        var e = Assert.Throws<CheckpointFormatException>(() => LlamaModel.Load(dir));
        Assert.Equal(Checkpoint.SingleFile, e.File);
        Assert.Contains("dangling symbolic link", e.Message);

        File.Delete(Path.Combine(dir, "tokenizer.json"));
        File.CreateSymbolicLink(Path.Combine(dir, "tokenizer.json"), "nowhere.json");
        e = Assert.Throws<CheckpointFormatException>(() => TokenizerLoader.Load(dir));
        Assert.Equal("tokenizer.json", e.File);
        Assert.Contains("dangling", e.Message);
    }

    [Fact]
    public void LinkLoopsAreNamedErrorsNotHangs()
    {
        string dir = _tmp.File("loop");
        WritePlain(dir, sharded: false);
        File.Delete(Path.Combine(dir, Checkpoint.SingleFile));
        File.CreateSymbolicLink(Path.Combine(dir, "a"), Checkpoint.SingleFile);
        File.CreateSymbolicLink(Path.Combine(dir, Checkpoint.SingleFile), "a");
        var e = Assert.Throws<CheckpointFormatException>(() => LlamaModel.Load(dir));
        Assert.Equal(Checkpoint.SingleFile, e.File);
        Assert.Contains("symbolic link loop", e.Message);

        File.CreateSymbolicLink(Path.Combine(dir, "self"), "self");
        Assert.Throws<SymbolicLinkLoopException>(() => ConfinedPath.RealPath(Path.Combine(dir, "self", "config.json")));
    }

    [Fact]
    public void ConfinementIsOnRealPathsWithATrailingSeparator()
    {
        string root = _tmp.File("models"), outside = _tmp.File("models-evil");
        Directory.CreateDirectory(root);
        WritePlain(outside, sharded: false);
        Assert.False(ConfinedPath.IsInside(root, outside));
        Assert.True(ConfinedPath.IsInside(root, Path.Combine(root, "a")));
        Assert.True(ConfinedPath.IsInside(root, root));

        var confine = new ConfinementRoot(root, "PiServe:ModelsRoot");
        string inside = Path.Combine(root, "m");
        WritePlain(inside, sharded: false);
        File.Delete(Path.Combine(inside, Checkpoint.SingleFile));
        File.CreateSymbolicLink(Path.Combine(inside, Checkpoint.SingleFile), Path.Combine(outside, Checkpoint.SingleFile));
        using (LlamaModel.Load(inside)) { } // unconfined, the link is simply followed
        var e = Assert.Throws<CheckpointFormatException>(() => LlamaModel.Load(inside, null, confine));
        Assert.Equal("model.safetensors: a symbolic link to a file outside PiServe:ModelsRoot", e.Message);

        Directory.CreateSymbolicLink(Path.Combine(root, "evil"), outside);
        e = Assert.Throws<CheckpointFormatException>(() => LlamaModel.Load(Path.Combine(root, "evil"), null, confine));
        Assert.DoesNotContain(outside, e.Message);
        Assert.Contains("outside PiServe:ModelsRoot", e.Message);
    }

    [Fact]
    public void DatasetLinksOutOfTheDataRootAreRefused()
    {
        string data = _tmp.File("data"), outside = _tmp.File("secret");
        Directory.CreateDirectory(data);
        Directory.CreateDirectory(outside);
        File.WriteAllText(Path.Combine(outside, "book.txt"), "secret");
        File.WriteAllText(Path.Combine(data, "ok.jsonl"), "{}\n");
        File.CreateSymbolicLink(Path.Combine(data, "evil.jsonl"), Path.Combine(outside, "book.txt"));
        Directory.CreateSymbolicLink(Path.Combine(data, "evil-books"), outside);
        Directory.CreateDirectory(Path.Combine(data, "books"));
        File.CreateSymbolicLink(Path.Combine(data, "books", "b.txt"), Path.Combine(outside, "book.txt"));
        var catalog = new DatasetCatalog(data, [
            new("ok", "proof-pile", "ok.jsonl"), new("evil", "proof-pile", "evil.jsonl"),
            new("evil-books", "pg19", "evil-books"), new("books", "pg19", "books")]);
        Assert.Null(catalog.Find("ok")!.Error);
        foreach (string id in new[] { "evil", "evil-books", "books" })
        {
            string error = catalog.Find(id)!.Error!;
            Assert.Contains("outside PiServe:DataRoot", error);
            Assert.DoesNotContain(outside, error);
        }
    }

    [Fact]
    public async Task HostServesTheCacheLayoutAndRefusesLinksOutOfTheRoot()
    {
        string cache = _tmp.File("hub"), outside = _tmp.File("outside");
        string plain = _tmp.File("plain"), plainSharded = _tmp.File("plain-sharded");
        WritePlain(plain, sharded: false);
        WritePlain(plainSharded, sharded: true);
        WriteHfRepo(cache, "models--org--tiny", plain);
        WriteHfRepo(cache, "models--org--sharded", plainSharded);
        WritePlain(outside, sharded: true);
        File.Copy(Path.Combine(plain, Checkpoint.SingleFile), Path.Combine(outside, Checkpoint.SingleFile));

        // Escapes: each a good checkpoint inside the root with one link out of it.
        Directory.CreateSymbolicLink(Path.Combine(cache, "evil-folder"), outside);
        string Escape(string name, string file)
        {
            string dir = Path.Combine(cache, name);
            WritePlain(dir, sharded: file.StartsWith("model-", StringComparison.Ordinal));
            File.Delete(Path.Combine(dir, file));
            File.CreateSymbolicLink(Path.Combine(dir, file), Path.Combine(outside, file));
            return name;
        }
        var escapes = new Dictionary<string, string>
        {
            [Escape("evil-weights", Checkpoint.SingleFile)] = "model.safetensors: a symbolic link to a file outside PiServe:ModelsRoot",
            [Escape("evil-tokenizer", "tokenizer.json")] = "tokenizer.json: a symbolic link to a file outside PiServe:ModelsRoot",
            [Escape("evil-config", "config.json")] = "config.json: a symbolic link to a file outside PiServe:ModelsRoot",
            [Escape("evil-shard", "model-00002-of-00002.safetensors")] = "model-00002-of-00002.safetensors: a symbolic link to a file outside PiServe:ModelsRoot",
            [Escape("evil-template", ChatTemplate.JinjaFile)] = "chat_template.jinja: a symbolic link to a file outside PiServe:ModelsRoot",
        };
        string dangling = Path.Combine(cache, "dangling");
        WritePlain(dangling, sharded: false);
        File.Delete(Path.Combine(dangling, Checkpoint.SingleFile));
        File.CreateSymbolicLink(Path.Combine(dangling, Checkpoint.SingleFile), "../blobs/none");
        string loop = Path.Combine(cache, "loop");
        WritePlain(loop, sharded: false);
        File.Delete(Path.Combine(loop, "config.json"));
        File.CreateSymbolicLink(Path.Combine(loop, "config.json"), "config.json");

        var models = new List<(string Id, string Path)>
        {
            ("snap", $"models--org--tiny/snapshots/{Rev}"), ("repo", "models--org--tiny"), ("sharded", "models--org--sharded"),
            ("evil-folder", "evil-folder"), ("dangling", "dangling"), ("loop", "loop"),
        };
        models.AddRange(escapes.Keys.Select(k => (k, k)));
        var args = new List<string> { $"--PiServe:ModelsRoot={cache}" };
        for (int i = 0; i < models.Count; i++)
        {
            args.Add($"--PiServe:Models:{i}:Id={models[i].Id}");
            args.Add($"--PiServe:Models:{i}:Path={models[i].Path}");
        }

        await using var host = await HostProcess.StartAsync(_tmp.Path, args);
        string modelsBody = await host.Http.GetStringAsync("/v1/models");
        string readyBody = await (await host.Http.GetAsync("/health/ready")).Content.ReadAsStringAsync();
        var cards = JsonNode.Parse(modelsBody)!["data"]!.AsArray();
        string Status(string id) => cards.Single(m => m!["id"]!.GetValue<string>() == id)!["status"]!.GetValue<string>();
        string Error(string id) => cards.Single(m => m!["id"]!.GetValue<string>() == id)!["error"]!.GetValue<string>();

        foreach (string id in new[] { "snap", "repo", "sharded" })
        {
            Assert.Equal("loaded", Status(id));
            var r = await host.Http.PostAsync("/v1/completions", new StringContent(
                $$"""{"model":"{{id}}","prompt":"In the beginning","max_tokens":4}""", Encoding.UTF8, "application/json"));
            Assert.Equal(200, (int)r.StatusCode);
        }
        int evilIndex = models.FindIndex(m => m.Id == "evil-folder");
        Assert.Equal("failed", Status("evil-folder"));
        Assert.Contains($"PiServe:Models:{evilIndex}:Path 'evil-folder' resolves through a symbolic link to a location outside PiServe:ModelsRoot", Error("evil-folder"));
        foreach (var (id, expected) in escapes)
        {
            Assert.Equal("failed", Status(id));
            Assert.Contains(expected, Error(id));
        }
        Assert.Equal("failed", Status("dangling"));
        Assert.Contains("model.safetensors: a dangling symbolic link", Error("dangling"));
        Assert.Equal("failed", Status("loop"));
        Assert.Contains("config.json: a symbolic link loop", Error("loop"));
        foreach (string body in new[] { modelsBody, readyBody })
        {
            Assert.DoesNotContain(outside, body);
            Assert.DoesNotContain(_tmp.Path, body);
        }
    }
}
