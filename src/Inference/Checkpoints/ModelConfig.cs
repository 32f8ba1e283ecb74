using System.Text.Json;
using System.Text.Json.Nodes;

namespace PiServe.Inference.Checkpoints;

/// <summary>
/// The fields of a Hugging Face config.json that change the forward pass of a Llama-family model.
/// Absent optional fields take transformers' LlamaConfig / MistralConfig defaults. The shape fields
/// (hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, vocab_size) are required:
/// HF would default them to a 7B shape that can never match the tensors, and an error about the
/// config is clearer than one about a mis-shaped tensor.
/// </summary>
public sealed record ModelConfig
{
    public const string FileName = "config.json";

    public required string ModelType { get; init; }
    public required int HiddenSize { get; init; }
    public required int IntermediateSize { get; init; }
    public required int NumLayers { get; init; }
    public required int NumHeads { get; init; }
    public required int NumKvHeads { get; init; }
    public required int HeadDim { get; init; }
    public required int VocabSize { get; init; }
    public required double RmsNormEps { get; init; }
    public required int MaxPositionEmbeddings { get; init; }
    /// <summary>Top-level original_max_position_embeddings (Phi-3 / LongRoPE style); null when absent.</summary>
    public int? OriginalMaxPositionEmbeddings { get; init; }
    public required double RopeTheta { get; init; }
    public double PartialRotaryFactor { get; init; } = 1.0;
    /// <summary>The rope_scaling object as written (null = plain RoPE). Parsed by <see cref="Rope.RopeScalingFactory"/>.</summary>
    public JsonObject? RopeScaling { get; init; }
    public bool TieWordEmbeddings { get; init; }
    public bool AttentionBias { get; init; }
    public bool MlpBias { get; init; }
    /// <summary>Mistral's sliding-window attention: a query attends to the last SlidingWindow keys (itself included).</summary>
    public int? SlidingWindow { get; init; }
    public string HiddenAct { get; init; } = "silu";
    public int? BosTokenId { get; init; }
    public int[] EosTokenIds { get; init; } = [];
    public string? TorchDtype { get; init; }

    /// <summary>Dimensions of each head that are rotated (the rest pass through, GPT-NeoX style).</summary>
    public int RotaryDim => (int)(HeadDim * PartialRotaryFactor);
    public int QueryDim => NumHeads * HeadDim;
    public int KvDim => NumKvHeads * HeadDim;

    public static ModelConfig Load(string directory)
    {
        string path = Path.Combine(directory, FileName);
        if (!File.Exists(path))
            throw new CheckpointFormatException(FileName, null, $"not found in {directory}");
        JsonNode? root;
        try
        {
            root = JsonNode.Parse(File.ReadAllText(path), documentOptions: new JsonDocumentOptions { AllowTrailingCommas = true });
        }
        catch (JsonException e)
        {
            throw new CheckpointFormatException(FileName, null, $"not valid JSON: {e.Message}");
        }
        if (root is not JsonObject obj)
            throw new CheckpointFormatException(FileName, null, "must be a JSON object");
        return Parse(obj);
    }

    public static ModelConfig Parse(JsonObject c)
    {
        string modelType = ReqString(c, "model_type");
        bool mistral = modelType == "mistral";
        if (modelType is not ("llama" or "mistral"))
            throw new CheckpointFormatException(FileName, "model_type", $"'{modelType}' is not supported (supported: llama, mistral)");

        // Shape fields are checked for sign and size before any arithmetic uses them: a zero divides,
        // and a huge one overflows the int products (heads × head_dim, rows × columns) further on.
        int hidden = Bounded(ReqInt(c, "hidden_size"), "hidden_size", MaxDimension);
        int heads = Bounded(ReqInt(c, "num_attention_heads"), "num_attention_heads", MaxHeads);
        int kvHeads = OptInt(c, "num_key_value_heads") ?? heads;
        if (kvHeads <= 0 || heads % kvHeads != 0)
            throw new CheckpointFormatException(FileName, "num_key_value_heads", $"{kvHeads} must be positive and divide num_attention_heads ({heads})");
        int headDim = OptInt(c, "head_dim") ?? 0;
        if (headDim < 0 || (long)headDim * heads > MaxDimension)
            throw new CheckpointFormatException(FileName, "head_dim",
                $"{headDim} must be positive and head_dim × num_attention_heads at most {MaxDimension}, got {(long)headDim * heads}");
        if (headDim == 0)
        {
            if (hidden % heads != 0)
                throw new CheckpointFormatException(FileName, "head_dim", $"absent, and hidden_size {hidden} is not divisible by num_attention_heads {heads}");
            headDim = hidden / heads;
        }

        string act = OptString(c, "hidden_act") ?? "silu";
        if (act is not ("silu" or "swish"))
            throw new CheckpointFormatException(FileName, "hidden_act", $"'{act}' is not supported (Llama-family SwiGLU uses silu)");

        double partial = OptDouble(c, "partial_rotary_factor") ?? 1.0;
        if (partial <= 0 || partial > 1)
            throw new CheckpointFormatException(FileName, "partial_rotary_factor", $"{partial} must be in (0, 1]");
        if ((int)(headDim * partial) % 2 != 0)
            throw new CheckpointFormatException(FileName, "partial_rotary_factor", $"head_dim × {partial} = {(int)(headDim * partial)} rotary dimensions must be even");

        JsonObject? ropeScaling = c["rope_scaling"] switch
        {
            null => null,
            JsonObject o => o,
            _ => throw new CheckpointFormatException(FileName, "rope_scaling", "must be an object or null"),
        };

        // sliding_window is a MistralConfig field: absent means MistralConfig's default 4096, null
        // turns it off. LlamaConfig has none and HF's Llama ignores it, so we do too.
        int? window = !mistral ? null : c.ContainsKey("sliding_window") ? OptInt(c, "sliding_window") : 4096;
        if (window is <= 0) window = null;

        var config = new ModelConfig
        {
            ModelType = modelType,
            HiddenSize = hidden,
            IntermediateSize = Bounded(ReqInt(c, "intermediate_size"), "intermediate_size", MaxDimension),
            NumLayers = Bounded(ReqInt(c, "num_hidden_layers"), "num_hidden_layers", MaxLayers),
            NumHeads = heads,
            NumKvHeads = kvHeads,
            HeadDim = headDim,
            VocabSize = Bounded(ReqInt(c, "vocab_size"), "vocab_size", MaxVocab),
            RmsNormEps = OptDouble(c, "rms_norm_eps") ?? 1e-6,
            MaxPositionEmbeddings = OptInt(c, "max_position_embeddings") ?? (mistral ? 4096 * 32 : 2048),
            OriginalMaxPositionEmbeddings = OptInt(c, "original_max_position_embeddings"),
            RopeTheta = OptDouble(c, "rope_theta") ?? 10000.0,
            PartialRotaryFactor = partial,
            RopeScaling = ropeScaling,
            TieWordEmbeddings = OptBool(c, "tie_word_embeddings") ?? false,
            AttentionBias = OptBool(c, "attention_bias") ?? false,
            MlpBias = !mistral && (OptBool(c, "mlp_bias") ?? false),
            SlidingWindow = window,
            HiddenAct = act,
            BosTokenId = c["bos_token_id"] is { } bos ? TokenId(bos, "bos_token_id") : null,
            EosTokenIds = c["eos_token_id"] switch
            {
                null => [],
                JsonArray a => a.Select((n, i) => n is null ? throw new CheckpointFormatException(FileName, $"eos_token_id[{i}]", "must be a token id")
                    : TokenId(n, $"eos_token_id[{i}]")).ToArray(),
                JsonValue v when JsonNumbers.TryGetDouble(v, out _) => [TokenId(v, "eos_token_id")],
                _ => throw new CheckpointFormatException(FileName, "eos_token_id", "must be an integer or an array of integers"),
            },
            TorchDtype = OptString(c, "torch_dtype") ?? OptString(c, "dtype"),
        };
        foreach (var (name, value) in new[] { ("intermediate_size", config.IntermediateSize), ("num_hidden_layers", config.NumLayers),
                     ("num_attention_heads", heads), ("vocab_size", config.VocabSize), ("hidden_size", hidden), ("max_position_embeddings", config.MaxPositionEmbeddings) })
            if (value <= 0)
                throw new CheckpointFormatException(FileName, name, $"must be positive, got {value}");
        if (config.RopeTheta <= 1)
            throw new CheckpointFormatException(FileName, "rope_theta", $"must be greater than 1, got {config.RopeTheta}");

        // Validate rope_scaling now, so a bad checkpoint fails at load and not at the first request.
        try
        {
            Rope.RopeScalingFactory.Create(config, config.RopeScaling);
        }
        catch (Rope.RopeScalingException e)
        {
            throw new CheckpointFormatException(FileName, "rope_scaling." + e.Field, e.Problem);
        }
        return config;
    }

    /// <summary>
    /// Upper bounds far above any published checkpoint (the largest hidden size is ~16k, vocabularies
    /// ~256k, depths ~128) that keep every size computed from them inside int and long arithmetic.
    /// </summary>
    public const int MaxDimension = 1 << 20, MaxHeads = 1 << 12, MaxLayers = 1 << 12, MaxVocab = 1 << 24;

    private static int Bounded(int value, string name, int max)
    {
        if (value <= 0) throw new CheckpointFormatException(FileName, name, $"must be positive, got {value}");
        if (value > max) throw new CheckpointFormatException(FileName, name, $"{value} is larger than PiServe supports ({max})");
        return value;
    }

    private static JsonNode Req(JsonObject c, string name) =>
        c[name] ?? throw new CheckpointFormatException(FileName, name, "required field is missing");

    private static string ReqString(JsonObject c, string name) =>
        Req(c, name) is JsonValue v && v.TryGetValue(out string? s) ? s
            : throw new CheckpointFormatException(FileName, name, "must be a string");

    private static int ReqInt(JsonObject c, string name) => ToInt(Req(c, name), name);

    private static int? OptInt(JsonObject c, string name) => c[name] is null ? null : ToInt(c[name]!, name);

    private static int TokenId(JsonNode n, string name)
    {
        int id = ToInt(n, name);
        return id >= 0 ? id : throw new CheckpointFormatException(FileName, name, $"must be a token id (non-negative), got {id}");
    }

    private static int ToInt(JsonNode n, string name)
    {
        if (JsonNumbers.TryGetDouble(n, out double d) && d == Math.Floor(d) && double.IsFinite(d))
        {
            if (d >= int.MinValue && d <= int.MaxValue) return (int)d;
            throw new CheckpointFormatException(FileName, name, $"{n.ToJsonString()} is too large (at most {int.MaxValue})");
        }
        throw new CheckpointFormatException(FileName, name, $"must be an integer, got {n.ToJsonString()}");
    }

    private static double? OptDouble(JsonObject c, string name)
    {
        if (c[name] is null) return null;
        if (JsonNumbers.TryGetDouble(c[name], out double d)) return d;
        throw new CheckpointFormatException(FileName, name, $"must be a number, got {c[name]!.ToJsonString()}");
    }

    private static bool? OptBool(JsonObject c, string name)
    {
        if (c[name] is null) return null;
        if (c[name] is JsonValue v && v.TryGetValue(out bool b)) return b;
        throw new CheckpointFormatException(FileName, name, $"must be true or false, got {c[name]!.ToJsonString()}");
    }

    private static string? OptString(JsonObject c, string name)
    {
        if (c[name] is null) return null;
        if (c[name] is JsonValue v && v.TryGetValue(out string? s)) return s;
        throw new CheckpointFormatException(FileName, name, $"must be a string, got {c[name]!.ToJsonString()}");
    }
}
