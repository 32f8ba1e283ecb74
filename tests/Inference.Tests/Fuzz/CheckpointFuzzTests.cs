using System.Text;
using System.Text.Json.Nodes;
using PiServe.Inference.Cache;
using PiServe.Inference.Checkpoints;
using PiServe.Inference.Model;
using PiServe.Inference.Tests.Tokenization;
using PiServe.Inference.Tokenization;
using PiServe.Inference.Generation;

namespace PiServe.Inference.Tests.Fuzz;

/// <summary>
/// Mutated model folders: a load either succeeds (and then a forward pass runs) or fails with the
/// loader's own exception naming the file — never another exception type, which at start-up would
/// have been a crash. Seeded; see <see cref="Fuzzing"/> for longer runs.
/// </summary>
public sealed class CheckpointFuzzTests : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly byte[] _weights;
    private readonly string _config;

    public CheckpointFuzzTests()
    {
        RandomCheckpoint.Write(_dir.Path, RandomCheckpoint.Shape.Tiny, DType.BF16, seed: 5);
        _weights = File.ReadAllBytes(_dir.File(Checkpoint.SingleFile));
        _config = File.ReadAllText(_dir.File(ModelConfig.FileName));
    }

    public void Dispose() => _dir.Dispose();

    private void Restore()
    {
        File.WriteAllBytes(_dir.File(Checkpoint.SingleFile), _weights);
        File.WriteAllText(_dir.File(ModelConfig.FileName), _config);
    }

    /// <summary>Loads the folder; a model that loads must also run a short forward pass.</summary>
    private string? LoadOutcome()
    {
        try
        {
            using var model = LlamaModel.Load(_dir.Path, new Inference.Kernels.CpuBackend(1));
            using var session = new InferenceSession(model);
            session.Prefill([1, 2, 3]);
            return null;
        }
        catch (CheckpointFormatException e)
        {
            Assert.False(string.IsNullOrEmpty(e.File), "a checkpoint error names its file");
            return e.Message;
        }
    }

    private static (int Length, byte[] Header) SplitHeader(byte[] weights)
    {
        int n = (int)BitConverter.ToInt64(weights, 0);
        return (n, weights[8..(8 + n)]);
    }

    private void WriteWeights(byte[] header, long? lengthField = null)
    {
        int n = (int)BitConverter.ToInt64(_weights, 0);
        using var f = File.Create(_dir.File(Checkpoint.SingleFile));
        f.Write(BitConverter.GetBytes(lengthField ?? header.Length));
        f.Write(header);
        f.Write(_weights, 8 + n, _weights.Length - 8 - n);
    }

    [Fact]
    public void MutatedSafetensorsHeadersFailCleanly()
    {
        int seed = Fuzzing.Seed(1301);
        var rng = new Random(seed);
        var (_, header) = SplitHeader(_weights);
        var json = JsonNode.Parse(header)!;
        int failures = 0, iterations = Fuzzing.Iterations(150);
        for (int i = 0; i < iterations; i++)
        {
            Restore();
            byte[] mutated = rng.Next(4) == 0 ? Fuzzing.Damage(header, rng) : Encoding.UTF8.GetBytes(Fuzzing.Mutate(json, rng).ToJsonString());
            long? lengthField = rng.Next(8) == 0 ? (long)rng.NextInt64() : null;
            WriteWeights(mutated, lengthField);
            try
            {
                if (LoadOutcome() is not null) failures++;
            }
            catch (Exception e)
            {
                Assert.Fail($"seed {seed} iteration {i}: {e.GetType().Name}: {e.Message}\nheader: {Encoding.UTF8.GetString(mutated)[..Math.Min(mutated.Length, 2000)]}");
            }
        }
        Assert.True(failures > iterations / 2, $"only {failures} of {iterations} mutations were refused: the mutator is too gentle");
    }

    [Fact]
    public void MutatedConfigsFailCleanly()
    {
        int seed = Fuzzing.Seed(1302);
        var rng = new Random(seed);
        var json = JsonNode.Parse(_config)!;
        int failures = 0, iterations = Fuzzing.Iterations(200);
        for (int i = 0; i < iterations; i++)
        {
            Restore();
            string mutated = rng.Next(5) == 0 ? Encoding.UTF8.GetString(Fuzzing.Damage(Encoding.UTF8.GetBytes(_config), rng)) : Fuzzing.Mutate(json, rng).ToJsonString();
            File.WriteAllText(_dir.File(ModelConfig.FileName), mutated);
            try
            {
                if (LoadOutcome() is not null) failures++;
            }
            catch (Exception e)
            {
                Assert.Fail($"seed {seed} iteration {i}: {e.GetType().Name}: {e.Message}\nconfig.json: {mutated[..Math.Min(mutated.Length, 2000)]}");
            }
        }
        Assert.True(failures > iterations / 4, $"only {failures} of {iterations} mutations were refused");
    }

    public static IEnumerable<object[]> Tokenizers() => [["kjv"], ["llama2"], ["llama3"]];

    [Theory]
    [MemberData(nameof(Tokenizers))]
    public void MutatedTokenizersFailCleanlyOrStillEncode(string name)
    {
        string source = name == "kjv" ? RepoPaths.ShippedModel("kjv-base-256") : HfReference.ModelDir(name);
        string text = File.ReadAllText(Path.Combine(source, "tokenizer.json"));
        var json = JsonNode.Parse(text)!;
        int seed = Fuzzing.Seed(1303);
        var rng = new Random(seed);
        using var dir = new TempDir();
        int iterations = Fuzzing.Iterations(40);
        string[] probes = ["In the beginning", "naïve 数字 😀 \u0000 \ufffe", "  12345  ", ""];
        for (int i = 0; i < iterations; i++)
        {
            string mutated = Fuzzing.Mutate(json, rng).ToJsonString();
            File.WriteAllText(dir.File("tokenizer.json"), mutated);
            try
            {
                var tokenizer = TokenizerLoader.Load(dir.Path);
                foreach (string probe in probes)
                {
                    int[] ids = tokenizer.Encode(probe);
                    tokenizer.Decode(ids);
                    var stream = tokenizer.CreateStreamingDecoder(skipSpecialTokens: true);
                    stream.Prime(ids);
                    foreach (int id in ids) stream.Append(id);
                    stream.Flush();
                }
            }
            catch (TokenizerFormatException e)
            {
                Assert.Contains("tokenizer.json", e.Message);
            }
            catch (Exception e)
            {
                File.WriteAllText(Path.Combine(Path.GetTempPath(), $"piserve-fuzz-tokenizer-{name}-{seed}-{i}.json"), mutated);
                Assert.Fail($"{name} seed {seed} iteration {i}: {e.GetType().Name}: {e.Message} (mutated file written to the temp folder)\n{e.StackTrace}");
            }
        }
    }
}
