using System.Text;
using System.Text.Json.Nodes;
using PiServe.Inference.Checkpoints;

namespace PiServe.Api.Tests.Serving;

/// <summary>
/// Corrupt model folders beside a good one: the host starts, serves the good model, and reports each
/// corrupt one as failed with an error naming the file and the field (issue 13: these once ended the
/// process with exit 134 at start-up).
/// </summary>
public sealed class CorruptModelStartupTests
{
    internal static void WriteGood(string dir)
    {
        RandomCheckpoint.Write(dir, new RandomCheckpoint.Shape(64, 2, 4, 2, 128, 4096, MaxPositions: 256), DType.BF16, seed: 3);
        File.Copy(Path.Combine(RepoPaths.ShippedModel("kjv-base-256"), "tokenizer.json"), Path.Combine(dir, "tokenizer.json"));
    }

    private static void EditConfig(string dir, Action<JsonObject> edit)
    {
        string path = Path.Combine(dir, "config.json");
        var c = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        edit(c);
        File.WriteAllText(path, c.ToJsonString());
    }

    /// <summary>Rewrites the safetensors header text, keeping the data (and the header's length field honest).</summary>
    private static void EditHeaderText(string dir, Func<string, string> edit)
    {
        string path = Path.Combine(dir, Checkpoint.SingleFile);
        var bytes = File.ReadAllBytes(path);
        int n = (int)BitConverter.ToInt64(bytes, 0);
        var header = Encoding.UTF8.GetBytes(edit(Encoding.UTF8.GetString(bytes, 8, n)));
        using var f = File.Create(path);
        f.Write(BitConverter.GetBytes((long)header.Length));
        f.Write(header);
        f.Write(bytes, 8 + n, bytes.Length - 8 - n);
    }

    [Fact]
    public async Task EachCorruptModelFailsAloneAndTheHostServes()
    {
        using var root = new TempDir();
        var corruptions = new Dictionary<string, (Action<string> Corrupt, string Expected)>
        {
            ["heads0"] = (d => EditConfig(d, c => c["num_attention_heads"] = 0), "config.json: num_attention_heads: must be positive"),
            ["kvheads0"] = (d => EditConfig(d, c => c["num_key_value_heads"] = 0), "config.json: num_key_value_heads"),
            ["hidden-huge"] = (d => EditConfig(d, c => c["hidden_size"] = 2147483647), "config.json: hidden_size"),
            ["header-2e60"] = (d =>
            {
                string p = Path.Combine(d, Checkpoint.SingleFile);
                var b = File.ReadAllBytes(p);
                BitConverter.TryWriteBytes(b.AsSpan(0, 8), 1L << 60);
                File.WriteAllBytes(p, b);
            }, "model.safetensors: header length"),
            ["offsets-2e63"] = (d => EditHeaderText(d, h =>
            {
                var o = JsonNode.Parse(h)!.AsObject();
                o["model.norm.weight"]!["data_offsets"] = new JsonArray(0, long.MaxValue);
                return o.ToJsonString();
            }), "model.safetensors: tensor 'model.norm.weight'.data_offsets"),
            ["offsets-2e64"] = (d => EditHeaderText(d, h =>
            {
                var o = JsonNode.Parse(h)!.AsObject();
                o["model.norm.weight"]!["data_offsets"] = JsonNode.Parse("[0, 18446744073709551621]"); // 2^64 + 5, kept as written
                return o.ToJsonString();
            }), "model.safetensors: tensor 'model.norm.weight'.data_offsets"),
            ["shape-2e40"] = (d => EditHeaderText(d, h =>
            {
                var o = JsonNode.Parse(h)!.AsObject();
                o["model.norm.weight"]!["shape"] = new JsonArray(1L << 40, 1L << 40);
                return o.ToJsonString();
            }), "model.safetensors: tensor 'model.norm.weight'.shape"),
            ["tokenizer-garbage"] = (d => File.WriteAllText(Path.Combine(d, "tokenizer.json"), "{\"model\": {\"type\": \"BPE\", \"vocab\": 7}}"), "tokenizer.json"),
        };
        var args = new List<string> { $"--PiServe:ModelsRoot={root.Path}", "--PiServe:Models:0:Id=good", "--PiServe:Models:0:Path=good" };
        WriteGood(Path.Combine(root.Path, "good"));
        int i = 1;
        foreach (var (name, (corrupt, _)) in corruptions)
        {
            string dir = Path.Combine(root.Path, name);
            WriteGood(dir);
            corrupt(dir);
            args.Add($"--PiServe:Models:{i}:Id={name}");
            args.Add($"--PiServe:Models:{i++}:Path={name}");
        }

        await using var host = await HostProcess.StartAsync(root.Path, args);
        var models = JsonNode.Parse(await host.Http.GetStringAsync("/v1/models"))!["data"]!.AsArray();
        Assert.Equal("loaded", models.Single(m => m!["id"]!.GetValue<string>() == "good")!["status"]!.GetValue<string>());
        foreach (var (name, (_, expected)) in corruptions)
        {
            var card = models.Single(m => m!["id"]!.GetValue<string>() == name)!;
            Assert.Equal("failed", card["status"]!.GetValue<string>());
            string error = card["error"]!.GetValue<string>();
            Assert.Contains(expected, error);
            Assert.DoesNotContain("unexpected", error); // each corruption is one the loader names, not the last-resort catch
        }
        var completion = await host.Http.PostAsync("/v1/completions", new StringContent(
            """{"model":"good","prompt":"In the beginning","max_tokens":4}""", Encoding.UTF8, "application/json"));
        Assert.Equal(200, (int)completion.StatusCode);
    }
}
