using System.Text;
using System.Text.Json.Nodes;
using PiServe.Inference.Checkpoints;
using PiServe.Inference.Model;
using PiServe.Inference.Generation;

namespace PiServe.Inference.Tests.Checkpoints;

/// <summary>Every way a checkpoint can be broken gets an error naming the file and the field.</summary>
public class CheckpointValidationTests : IDisposable
{
    private readonly TempDir _dir = new();

    public CheckpointValidationTests() => RandomCheckpoint.Write(_dir.Path, RandomCheckpoint.Shape.Tiny, DType.BF16, seed: 1);

    public void Dispose() => _dir.Dispose();

    private string Weights => _dir.File(Checkpoint.SingleFile);

    private CheckpointFormatException LoadFails()
    {
        var e = Assert.Throws<CheckpointFormatException>(() => LlamaModel.Load(_dir.Path).Dispose());
        return e;
    }

    private void EditConfig(Action<JsonObject> edit)
    {
        var path = _dir.File("config.json");
        var c = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        edit(c);
        File.WriteAllText(path, c.ToJsonString());
    }

    /// <summary>Rewrites the safetensors header through an edit of its JSON, keeping the data.</summary>
    private void EditHeader(Action<JsonObject> edit)
    {
        var bytes = File.ReadAllBytes(Weights);
        long n = BitConverter.ToInt64(bytes, 0);
        var header = JsonNode.Parse(Encoding.UTF8.GetString(bytes, 8, (int)n))!.AsObject();
        edit(header);
        var hb = Encoding.UTF8.GetBytes(header.ToJsonString());
        using var f = File.Create(Weights);
        f.Write(BitConverter.GetBytes((long)hb.Length));
        f.Write(hb);
        f.Write(bytes, 8 + (int)n, bytes.Length - 8 - (int)n);
    }

    [Fact]
    public void ValidCheckpointLoads()
    {
        using var model = LlamaModel.Load(_dir.Path);
        Assert.Equal(2, model.Layers.Length);
        Assert.Equal(DType.BF16, model.WeightDType);
    }

    [Fact]
    public void FileShorterThanTheHeaderLength()
    {
        File.WriteAllBytes(Weights, [1, 2, 3]);
        var e = LoadFails();
        Assert.Equal("model.safetensors", e.File);
        Assert.Contains("header length", e.Message);
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void HeaderLengthPastTheEnd()
    {
        var bytes = File.ReadAllBytes(Weights);
        BitConverter.TryWriteBytes(bytes.AsSpan(0, 8), (long)bytes.Length * 2);
        File.WriteAllBytes(Weights, bytes);
        var e = LoadFails();
        Assert.Contains("model.safetensors: header length", e.Message);
        Assert.Contains("runs past the end of the file", e.Message);
    }

    [Fact]
    public void TruncatedData()
    {
        var bytes = File.ReadAllBytes(Weights);
        File.WriteAllBytes(Weights, bytes[..(bytes.Length - 100)]);
        var e = LoadFails();
        Assert.Contains("data_offsets", e.Message);
        Assert.Contains("outside the data section", e.Message);
        Assert.Contains("model.safetensors", e.Message);
    }

    [Fact]
    public void OverlappingTensors()
    {
        EditHeader(h =>
        {
            var a = h["model.norm.weight"]!["data_offsets"]!.AsArray();
            var b = h["model.layers.0.input_layernorm.weight"]!;
            b["data_offsets"] = new JsonArray(a[0]!.GetValue<long>(), a[1]!.GetValue<long>());
        });
        var e = LoadFails();
        Assert.Contains("overlaps tensor", e.Message);
        Assert.Contains("model.safetensors", e.Message);
    }

    [Fact]
    public void ByteSizeDoesNotMatchShape()
    {
        EditHeader(h => h["model.norm.weight"]!["shape"] = new JsonArray(65));
        var e = LoadFails();
        Assert.Contains("tensor 'model.norm.weight'", e.Message);
        Assert.Contains("does not match shape [65] × BF16", e.Message);
    }

    [Fact]
    public void UnknownDtype()
    {
        EditHeader(h => h["model.norm.weight"]!["dtype"] = "Q4_K");
        var e = LoadFails();
        Assert.Contains("tensor 'model.norm.weight'.dtype", e.Message);
        Assert.Contains("unknown dtype 'Q4_K'", e.Message);
    }

    [Fact]
    public void UnsupportedButValidDtype()
    {
        EditHeader(h =>
        {
            h["model.norm.weight"]!["dtype"] = "I8";
            h["model.norm.weight"]!["shape"] = new JsonArray(128);
        });
        var e = LoadFails();
        Assert.Contains("unsupported dtype 'I8'", e.Message);
    }

    [Fact]
    public void HeaderNotJson()
    {
        var bytes = File.ReadAllBytes(Weights);
        bytes[9] = (byte)'#';
        File.WriteAllBytes(Weights, bytes);
        var e = LoadFails();
        Assert.Contains("model.safetensors: header: header is not valid JSON", e.Message);
    }

    [Fact]
    public void MissingTensor()
    {
        EditHeader(h => h.Remove("model.layers.1.mlp.up_proj.weight"));
        var e = LoadFails();
        Assert.Equal("model.safetensors: tensor 'model.layers.1.mlp.up_proj.weight': missing", e.Message);
    }

    [Fact]
    public void MisShapedTensor()
    {
        EditHeader(h => h["model.layers.0.self_attn.k_proj.weight"]!["shape"] = new JsonArray(64, 32));
        var e = LoadFails();
        Assert.Contains("tensor 'model.layers.0.self_attn.k_proj.weight'", e.Message);
        Assert.Contains("shape [64, 32] does not match [32, 64] implied by config.json", e.Message);
    }

    [Fact]
    public void MissingWeightsFile()
    {
        File.Delete(Weights);
        var e = LoadFails();
        Assert.Contains("neither model.safetensors nor model.safetensors.index.json", e.Message);
    }

    [Theory]
    [InlineData("hidden_size")]
    [InlineData("num_hidden_layers")]
    [InlineData("vocab_size")]
    [InlineData("model_type")]
    public void ConfigMissingRequiredField(string field)
    {
        EditConfig(c => c.Remove(field));
        var e = LoadFails();
        Assert.Equal($"config.json: {field}: required field is missing", e.Message);
    }

    [Fact]
    public void ConfigWithWrongType()
    {
        EditConfig(c => c["num_attention_heads"] = "four");
        Assert.Contains("config.json: num_attention_heads: must be an integer", LoadFails().Message);
    }

    [Fact]
    public void UnsupportedModelType()
    {
        EditConfig(c => c["model_type"] = "gpt2");
        Assert.Contains("config.json: model_type: 'gpt2' is not supported", LoadFails().Message);
    }

    [Fact]
    public void KvHeadsMustDivideHeads()
    {
        EditConfig(c => c["num_key_value_heads"] = 3);
        Assert.Contains("config.json: num_key_value_heads: 3 must be positive and divide num_attention_heads (4)", LoadFails().Message);
    }

    [Fact]
    public void UnknownRopeType()
    {
        EditConfig(c => c["rope_scaling"] = new JsonObject { ["rope_type"] = "wibble", ["factor"] = 2.0 });
        var e = LoadFails();
        Assert.Contains("config.json: rope_scaling.rope_type: unknown rope type 'wibble'", e.Message);
    }

    [Fact]
    public void OldTypeSpellingWinsOverRopeType()
    {
        EditConfig(c => c["rope_scaling"] = new JsonObject { ["type"] = "bogus", ["rope_type"] = "linear", ["factor"] = 2.0 });
        Assert.Contains("rope_scaling.type: unknown rope type 'bogus'", LoadFails().Message);
    }

    [Fact]
    public void RopeFactorMissing()
    {
        EditConfig(c => c["rope_scaling"] = new JsonObject { ["rope_type"] = "linear" });
        Assert.Contains("config.json: rope_scaling.factor: required", LoadFails().Message);
    }

    [Theory]
    [InlineData("short_factor", 7, 8)]
    [InlineData("long_factor", 8, 9)]
    public void LongRopeFactorsOfTheWrongLength(string field, int shortLen, int longLen)
    {
        EditConfig(c => c["rope_scaling"] = new JsonObject
        {
            ["rope_type"] = "longrope",
            ["short_factor"] = new JsonArray(Enumerable.Range(0, shortLen).Select(_ => (JsonNode)1.0).ToArray()),
            ["long_factor"] = new JsonArray(Enumerable.Range(0, longLen).Select(_ => (JsonNode)2.0).ToArray()),
        });
        var e = LoadFails();
        Assert.Contains($"config.json: rope_scaling.{field}: has", e.Message);
        Assert.Contains("expected 8 (rotary dimensions / 2)", e.Message);
    }

    [Fact]
    public void ShardIndexNamesMissingShard()
    {
        File.Delete(Weights);
        File.WriteAllText(_dir.File(Checkpoint.IndexFile),
            """{"metadata":{},"weight_map":{"model.norm.weight":"model-00001-of-00002.safetensors"}}""");
        var e = LoadFails();
        Assert.Contains("model.safetensors.index.json: weight_map['model.norm.weight']: shard 'model-00001-of-00002.safetensors' not found", e.Message);
    }

    [Fact]
    public void ShardIndexTensorAbsentFromShard()
    {
        File.Move(Weights, _dir.File("model-00001-of-00001.safetensors"));
        File.WriteAllText(_dir.File(Checkpoint.IndexFile),
            """{"metadata":{},"weight_map":{"model.norm.weight":"model-00001-of-00001.safetensors","lm_head.bias":"model-00001-of-00001.safetensors"}}""");
        var e = LoadFails();
        Assert.Equal("model-00001-of-00001.safetensors: tensor 'lm_head.bias': listed in model.safetensors.index.json but not present in this shard", e.Message);
    }

    [Fact]
    public void ShardIndexRejectsPathsOutsideTheFolder()
    {
        File.Delete(Weights);
        File.WriteAllText(_dir.File(Checkpoint.IndexFile), """{"weight_map":{"model.norm.weight":"../etc/passwd"}}""");
        Assert.Contains("must be a plain file name inside the checkpoint folder", LoadFails().Message);
    }
    // Corruptions that once escaped as DivideByZero/Overflow exceptions and took the whole host down
    // (issue 13): each must become a CheckpointFormatException naming the file and the field.

    [Theory]
    [InlineData("num_attention_heads", 0)]
    [InlineData("num_attention_heads", -4)]
    [InlineData("num_key_value_heads", 0)]
    [InlineData("hidden_size", 0)]
    [InlineData("head_dim", -8)]
    [InlineData("num_hidden_layers", 0)]
    [InlineData("vocab_size", -1)]
    public void ConfigNonPositiveShapeFields(string field, int value)
    {
        EditConfig(c => c[field] = value);
        var e = LoadFails();
        Assert.Equal("config.json", e.File);
        Assert.Contains($"config.json: {field}", e.Message);
    }

    [Theory]
    [InlineData("hidden_size", 2147483647L)]
    [InlineData("intermediate_size", 1073741824L)]
    [InlineData("num_hidden_layers", 100000000L)]
    [InlineData("vocab_size", 2000000000L)]
    [InlineData("head_dim", 1000000000L)]
    public void ConfigShapesTooLargeForThisMachine(string field, long value)
    {
        EditConfig(c => c[field] = value);
        var e = LoadFails();
        Assert.Equal("config.json", e.File);
        Assert.Contains(field, e.Message);
    }

    [Fact]
    public void ConfigIntegerTooLargeSaysSo()
    {
        EditConfig(c => c["hidden_size"] = 2147483648L);
        var e = LoadFails();
        Assert.Contains("config.json: hidden_size", e.Message);
        Assert.Contains("too large", e.Message);
    }

    [Theory]
    [InlineData(1L << 60)]
    [InlineData(long.MaxValue)]
    [InlineData(-1L)]
    public void HeaderLengthAbsurd(long length)
    {
        var bytes = File.ReadAllBytes(Weights);
        BitConverter.TryWriteBytes(bytes.AsSpan(0, 8), length);
        File.WriteAllBytes(Weights, bytes);
        var e = LoadFails();
        Assert.Equal("model.safetensors", e.File);
        Assert.Contains("header length", e.Message);
    }

    [Theory]
    [InlineData("[0, 9223372036854775807]")]
    [InlineData("[9223372036854775807, 9223372036854775807]")]
    [InlineData("[0, 18446744073709551621]")]
    [InlineData("[-5, 10]")]
    [InlineData("[0.5, 10]")]
    [InlineData("[0, 1e300]")]
    public void DataOffsetsAbsurd(string offsets)
    {
        EditHeader(h => h["model.norm.weight"]!["data_offsets"] = JsonNode.Parse(offsets));
        var e = LoadFails();
        Assert.Equal("model.safetensors", e.File);
        Assert.Contains("tensor 'model.norm.weight'.data_offsets", e.Message);
    }

    [Theory]
    [InlineData("[1099511627776, 1099511627776]")]
    [InlineData("[9223372036854775807, 2]")]
    [InlineData("[4294967296, 4294967296, 4294967296]")]
    public void ShapeWhoseSizeOverflows(string shape)
    {
        EditHeader(h => h["model.norm.weight"]!["shape"] = JsonNode.Parse(shape));
        var e = LoadFails();
        Assert.Equal("model.safetensors", e.File);
        Assert.Contains("tensor 'model.norm.weight'", e.Message);
    }
    [Fact]
    public void UnknownModelTypeNamesTheSupportedOnes()
    {
        EditConfig(c => c["model_type"] = "gpt2");
        var e = LoadFails();
        Assert.Contains("config.json: model_type: 'gpt2' is not supported (supported: llama, mistral, phi3, qwen2, qwen3)", e.Message);
    }

    private void WritePhi3() =>
        RandomCheckpoint.Write(_dir.Path, RandomCheckpoint.Shape.Tiny with { ModelType = "phi3" }, DType.BF16, seed: 2);

    [Fact]
    public void Phi3WithoutGateUpProjNamesTheTensor()
    {
        WritePhi3();
        EditHeader(h => h.Remove("model.layers.1.mlp.gate_up_proj.weight"));
        var e = LoadFails();
        Assert.Contains("tensor 'model.layers.1.mlp.gate_up_proj.weight': missing", e.Message);
    }

    [Fact]
    public void Phi3FusedSizesMustMatchTheConfig()
    {
        WritePhi3();
        // qkv_proj of 64 + 2·32 = 128 rows; claiming 4 KV heads of 16 needs 64 + 2·64 = 192.
        EditConfig(c => c["num_key_value_heads"] = 4);
        var e = LoadFails();
        Assert.Contains("tensor 'model.layers.0.self_attn.qkv_proj.weight': shape [128, 64] does not match [192, 64] implied by config.json", e.Message);
    }

    [Fact]
    public void Phi3SeparateProjectionsAreNotAccepted()
    {
        // A Llama tensor layout under model_type phi3: the fused tensor is what is missing.
        EditConfig(c => c["model_type"] = "phi3");
        Assert.Contains("tensor 'model.layers.0.self_attn.qkv_proj.weight': missing", LoadFails().Message);
    }

    [Fact]
    public void Qwen3WithoutQNormNamesTheTensor()
    {
        RandomCheckpoint.Write(_dir.Path, RandomCheckpoint.Shape.Tiny with { ModelType = "qwen3", HeadDim = 16 }, DType.BF16, seed: 2);
        EditHeader(h => h.Remove("model.layers.0.self_attn.q_norm.weight"));
        Assert.Contains("tensor 'model.layers.0.self_attn.q_norm.weight': missing", LoadFails().Message);
    }

    [Theory]
    [InlineData("phi3")]
    [InlineData("qwen2")]
    [InlineData("qwen3")]
    [InlineData("mistral")]
    public void RandomCheckpointsOfEachFamilyLoadAndRun(string modelType)
    {
        RandomCheckpoint.Write(_dir.Path, RandomCheckpoint.Shape.Tiny with { ModelType = modelType }, DType.BF16, seed: 3);
        using var model = LlamaModel.Load(_dir.Path);
        Assert.Equal(modelType, model.Config.ModelType);
        using var session = new PiServe.Inference.Generation.InferenceSession(model);
        var logits = session.Prefill([1, 2, 3, 4]).ToArray();
        Assert.All(logits, x => Assert.True(float.IsFinite(x)));
    }
}
