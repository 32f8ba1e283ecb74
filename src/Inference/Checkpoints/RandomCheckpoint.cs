using System.Text.Json.Nodes;

namespace PiServe.Inference.Checkpoints;

/// <summary>
/// Writes a Llama checkpoint folder with seeded random weights of a given shape: for benchmarks
/// (known shapes without a download) and for tests that need a valid checkpoint to corrupt.
/// </summary>
public static class RandomCheckpoint
{
    public sealed record Shape(int Hidden, int Layers, int Heads, int KvHeads, int Intermediate, int Vocab, bool Tied = false, int MaxPositions = 2048)
    {
        public static readonly Shape Tiny = new(64, 2, 4, 2, 128, 256);
        public static readonly Shape Small = new(768, 12, 12, 12, 2048, 32000);
        public static readonly Shape TinyLlama1B = new(2048, 22, 32, 4, 5632, 32000);
    }

    public static void Write(string directory, Shape shape, DType dtype, int seed = 0, JsonObject? ropeScaling = null)
    {
        Directory.CreateDirectory(directory);
        int headDim = shape.Hidden / shape.Heads, kvDim = shape.KvHeads * headDim;
        var config = new JsonObject
        {
            ["architectures"] = new JsonArray("LlamaForCausalLM"),
            ["model_type"] = "llama",
            ["hidden_size"] = shape.Hidden,
            ["intermediate_size"] = shape.Intermediate,
            ["num_hidden_layers"] = shape.Layers,
            ["num_attention_heads"] = shape.Heads,
            ["num_key_value_heads"] = shape.KvHeads,
            ["vocab_size"] = shape.Vocab,
            ["max_position_embeddings"] = shape.MaxPositions,
            ["rms_norm_eps"] = 1e-5,
            ["rope_theta"] = 10000.0,
            ["rope_scaling"] = ropeScaling?.DeepClone(),
            ["tie_word_embeddings"] = shape.Tied,
            ["hidden_act"] = "silu",
            ["bos_token_id"] = 1,
            ["eos_token_id"] = 2,
            ["torch_dtype"] = dtype switch { DType.F32 => "float32", DType.F16 => "float16", _ => "bfloat16" },
        };
        File.WriteAllText(Path.Combine(directory, ModelConfig.FileName), config.ToJsonString(new() { WriteIndented = true }));

        var rng = new Random(seed);
        var tensors = new List<SafetensorsWriter.Tensor>();
        void Matrix(string name, int rows, int cols, float std) =>
            tensors.Add(new(name, dtype, [rows, cols], SafetensorsWriter.Encode(Normal(rng, rows * cols, std), dtype)));
        void Ones(string name, int n) =>
            tensors.Add(new(name, dtype, [n], SafetensorsWriter.Encode(Enumerable.Repeat(1f, n).ToArray(), dtype)));

        Matrix("model.embed_tokens.weight", shape.Vocab, shape.Hidden, 0.5f);
        for (int l = 0; l < shape.Layers; l++)
        {
            string p = $"model.layers.{l}.";
            float std = 1f / MathF.Sqrt(shape.Hidden);
            Matrix(p + "self_attn.q_proj.weight", shape.Heads * headDim, shape.Hidden, std);
            Matrix(p + "self_attn.k_proj.weight", kvDim, shape.Hidden, std);
            Matrix(p + "self_attn.v_proj.weight", kvDim, shape.Hidden, std);
            Matrix(p + "self_attn.o_proj.weight", shape.Hidden, shape.Heads * headDim, std);
            Matrix(p + "mlp.gate_proj.weight", shape.Intermediate, shape.Hidden, std);
            Matrix(p + "mlp.up_proj.weight", shape.Intermediate, shape.Hidden, std);
            Matrix(p + "mlp.down_proj.weight", shape.Hidden, shape.Intermediate, 1f / MathF.Sqrt(shape.Intermediate));
            Ones(p + "input_layernorm.weight", shape.Hidden);
            Ones(p + "post_attention_layernorm.weight", shape.Hidden);
        }
        Ones("model.norm.weight", shape.Hidden);
        if (!shape.Tied) Matrix("lm_head.weight", shape.Vocab, shape.Hidden, 1f / MathF.Sqrt(shape.Hidden));
        SafetensorsWriter.Write(Path.Combine(directory, Checkpoint.SingleFile), tensors);
    }

    private static float[] Normal(Random rng, int n, float std)
    {
        var v = new float[n];
        for (int i = 0; i < n; i += 2)
        {
            // Box–Muller: two normals per pair of uniforms.
            double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
            double r = Math.Sqrt(-2 * Math.Log(u1)) * std;
            v[i] = (float)(r * Math.Cos(2 * Math.PI * u2));
            if (i + 1 < n) v[i + 1] = (float)(r * Math.Sin(2 * Math.PI * u2));
        }
        return v;
    }
}
