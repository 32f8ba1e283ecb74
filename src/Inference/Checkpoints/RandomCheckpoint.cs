using System.Text.Json.Nodes;

namespace PiServe.Inference.Checkpoints;

/// <summary>
/// Writes a Llama-family checkpoint folder (llama, mistral, phi3, qwen2, qwen3 tensor layouts) with seeded random weights of a given shape: for benchmarks
/// (known shapes without a download) and for tests that need a valid checkpoint to corrupt.
/// </summary>
public static class RandomCheckpoint
{
    /// <param name="ModelType">llama, mistral, phi3 (fused qkv_proj / gate_up_proj), qwen2 (q/k/v biases) or qwen3 (q/k norms).</param>
    /// <param name="HeadDim">0: hidden / heads.</param>
    public sealed record Shape(int Hidden, int Layers, int Heads, int KvHeads, int Intermediate, int Vocab, bool Tied = false, int MaxPositions = 2048,
        string ModelType = "llama", int HeadDim = 0)
    {
        public static readonly Shape Tiny = new(64, 2, 4, 2, 128, 256);
        public static readonly Shape Small = new(768, 12, 12, 12, 2048, 32000);
        public static readonly Shape TinyLlama1B = new(2048, 22, 32, 4, 5632, 32000);
        /// <summary>Phi-3-mini's layer shape (3072 hidden, 32 heads of 96, MHA, 8192 MLP, vocab 32064) at 8 of its 32 layers.</summary>
        public static readonly Shape Phi3Mini8 = new(3072, 8, 32, 32, 8192, 32064, MaxPositions: 4096, ModelType: "phi3");
        /// <summary>Qwen2.5-1.5B's shape (1536 hidden, 12 heads, 2 KV heads, 8960 MLP, vocab 151936, tied) at 8 of its 28 layers.</summary>
        public static readonly Shape Qwen25Small8 = new(1536, 8, 12, 2, 8960, 151936, Tied: true, MaxPositions: 32768, ModelType: "qwen2");
        /// <summary>Qwen3-0.6B's shape (1024 hidden, 16 heads of 128, 8 KV heads, 3072 MLP, vocab 151936, tied), all 28 layers.</summary>
        public static readonly Shape Qwen3Small = new(1024, 28, 16, 8, 3072, 151936, Tied: true, MaxPositions: 40960, ModelType: "qwen3", HeadDim: 128);
    }

    public static void Write(string directory, Shape shape, DType dtype, int seed = 0, JsonObject? ropeScaling = null)
    {
        Directory.CreateDirectory(directory);
        int headDim = shape.HeadDim > 0 ? shape.HeadDim : shape.Hidden / shape.Heads, kvDim = shape.KvHeads * headDim;
        string architecture = shape.ModelType switch
        {
            "mistral" => "MistralForCausalLM", "phi3" => "Phi3ForCausalLM", "qwen2" => "Qwen2ForCausalLM", "qwen3" => "Qwen3ForCausalLM",
            _ => "LlamaForCausalLM",
        };
        var config = new JsonObject
        {
            ["architectures"] = new JsonArray(architecture),
            ["model_type"] = shape.ModelType,
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
        if (shape.HeadDim > 0 || shape.ModelType == "qwen3") config["head_dim"] = headDim; // Qwen3Config would default it to 128
        if (shape.ModelType is "mistral") config["sliding_window"] = null;
        File.WriteAllText(Path.Combine(directory, ModelConfig.FileName), config.ToJsonString(new() { WriteIndented = true }));

        var rng = new Random(seed);
        var tensors = new List<SafetensorsWriter.Tensor>();
        void Matrix(string name, int rows, int cols, float std) =>
            tensors.Add(new(name, dtype, [rows, cols], SafetensorsWriter.Encode(Normal(rng, rows * cols, std), dtype)));
        void Ones(string name, int n) =>
            tensors.Add(new(name, dtype, [n], SafetensorsWriter.Encode(Enumerable.Repeat(1f, n).ToArray(), dtype)));
        void Bias(string name, int n) =>
            tensors.Add(new(name, dtype, [n], SafetensorsWriter.Encode(Normal(rng, n, 0.05f), dtype)));
        bool fused = shape.ModelType == "phi3";

        Matrix("model.embed_tokens.weight", shape.Vocab, shape.Hidden, 0.5f);
        for (int l = 0; l < shape.Layers; l++)
        {
            string p = $"model.layers.{l}.";
            float std = 1f / MathF.Sqrt(shape.Hidden);
            if (fused)
                Matrix(p + "self_attn.qkv_proj.weight", shape.Heads * headDim + 2 * kvDim, shape.Hidden, std);
            else
            {
                Matrix(p + "self_attn.q_proj.weight", shape.Heads * headDim, shape.Hidden, std);
                Matrix(p + "self_attn.k_proj.weight", kvDim, shape.Hidden, std);
                Matrix(p + "self_attn.v_proj.weight", kvDim, shape.Hidden, std);
            }
            if (shape.ModelType == "qwen2")
            {
                Bias(p + "self_attn.q_proj.bias", shape.Heads * headDim);
                Bias(p + "self_attn.k_proj.bias", kvDim);
                Bias(p + "self_attn.v_proj.bias", kvDim);
            }
            if (shape.ModelType == "qwen3")
            {
                Ones(p + "self_attn.q_norm.weight", headDim);
                Ones(p + "self_attn.k_norm.weight", headDim);
            }
            Matrix(p + "self_attn.o_proj.weight", shape.Hidden, shape.Heads * headDim, std);
            if (fused)
                Matrix(p + "mlp.gate_up_proj.weight", 2 * shape.Intermediate, shape.Hidden, std);
            else
            {
                Matrix(p + "mlp.gate_proj.weight", shape.Intermediate, shape.Hidden, std);
                Matrix(p + "mlp.up_proj.weight", shape.Intermediate, shape.Hidden, std);
            }
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
