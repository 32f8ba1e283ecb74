using System.Text.Json;
using System.Text.Json.Nodes;

namespace PiServe.Inference.Checkpoints;

/// <summary>
/// The fields of a Hugging Face config.json that change the forward pass of a Llama-family model:
/// model_type llama, mistral, phi3, qwen2 or qwen3. Absent optional fields take transformers'
/// LlamaConfig / MistralConfig / Phi3Config / Qwen2Config / Qwen3Config defaults. What differs between
/// the families is stated here, once, as properties the forward pass reads (biases, q/k norms, fused
/// projections, which layers slide); the maths they share is one forward pass. The shape fields
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
    /// <summary>Bias on q_proj, k_proj and v_proj (Llama's attention_bias; always on for Qwen2).</summary>
    public bool AttentionBias { get; init; }
    /// <summary>Bias on o_proj (Llama's and Qwen3's attention_bias; never for Qwen2, whose o_proj has none).</summary>
    public bool OutputBias { get; init; }
    public bool MlpBias { get; init; }
    /// <summary>Qwen3: RMSNorm over each head's query and key (q_norm, k_norm weights of head_dim) before RoPE.</summary>
    public bool QkNorm { get; init; }
    /// <summary>Phi-3: q, k, v stored as one qkv_proj (rows q, k, v) and gate, up as one gate_up_proj (rows gate, up).</summary>
    public bool FusedProjections { get; init; }
    /// <summary>Sliding-window attention: a query attends to the last SlidingWindow keys (itself included).</summary>
    public int? SlidingWindow { get; init; }
    /// <summary>The first layer that slides (Qwen2/3's max_window_layers); 0 for Mistral and Phi-3, where every layer does.</summary>
    public int SlidingWindowFromLayer { get; init; }

    /// <summary>The sliding window of one layer, null where it attends to the whole sequence.</summary>
    public int? SlidingWindowFor(int layer) => layer >= SlidingWindowFromLayer ? SlidingWindow : null;

    public static readonly string[] SupportedModelTypes = ["llama", "mistral", "phi3", "qwen2", "qwen3"];
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
        if (!SupportedModelTypes.Contains(modelType))
            throw new CheckpointFormatException(FileName, "model_type", $"'{modelType}' is not supported (supported: {string.Join(", ", SupportedModelTypes)})");

        // Shape fields are checked for sign and size before any arithmetic uses them: a zero divides,
        // and a huge one overflows the int products (heads × head_dim, rows × columns) further on.
        int hidden = Bounded(ReqInt(c, "hidden_size"), "hidden_size", MaxDimension);
        int heads = Bounded(ReqInt(c, "num_attention_heads"), "num_attention_heads", MaxHeads);
        int kvHeads = OptInt(c, "num_key_value_heads") ?? heads;
        if (kvHeads <= 0 || heads % kvHeads != 0)
            throw new CheckpointFormatException(FileName, "num_key_value_heads", $"{kvHeads} must be positive and divide num_attention_heads ({heads})");
        // Qwen3Config defaults head_dim to 128 (not hidden / heads): Qwen3-0.6B's 16 heads × 128 exceed its hidden size of 1024.
        int headDim = OptInt(c, "head_dim") ?? (modelType == "qwen3" ? 128 : 0);
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

        var (window, windowFromLayer) = ReadSlidingWindow(c, modelType, ReqInt(c, "num_hidden_layers"));

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
            RmsNormEps = OptDouble(c, "rms_norm_eps") ?? (modelType == "phi3" ? 1e-5 : 1e-6),
            MaxPositionEmbeddings = OptInt(c, "max_position_embeddings") ?? modelType switch
            {
                "mistral" => 4096 * 32, "phi3" => 4096, "qwen2" or "qwen3" => 32768, _ => 2048,
            },
            OriginalMaxPositionEmbeddings = OptInt(c, "original_max_position_embeddings"),
            RopeTheta = OptDouble(c, "rope_theta") ?? 10000.0,
            PartialRotaryFactor = partial,
            RopeScaling = ropeScaling,
            TieWordEmbeddings = OptBool(c, "tie_word_embeddings") ?? false,
            // Qwen2's q/k/v always carry a bias and its o_proj never does; Phi-3 and Mistral have none;
            // Llama and Qwen3 put attention_bias on all four.
            AttentionBias = modelType == "qwen2" || (modelType is "llama" or "qwen3" && (OptBool(c, "attention_bias") ?? false)),
            OutputBias = modelType is "llama" or "qwen3" && (OptBool(c, "attention_bias") ?? false),
            MlpBias = modelType == "llama" && (OptBool(c, "mlp_bias") ?? false),
            QkNorm = modelType == "qwen3",
            FusedProjections = modelType == "phi3",
            SlidingWindow = window,
            SlidingWindowFromLayer = windowFromLayer,
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
        // The shape fields were bounded as they were read (Bounded); the window is the one left.
        if (config.MaxPositionEmbeddings <= 0)
            throw new CheckpointFormatException(FileName, "max_position_embeddings", $"must be positive, got {config.MaxPositionEmbeddings}");
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
    /// Which layers slide, and over how many keys, as transformers decides it per family. Mistral:
    /// sliding_window (absent: MistralConfig's default 4096; null: off) on every layer. Phi-3:
    /// sliding_window (default off) on every layer. Qwen2/Qwen3: only with use_sliding_window, and
    /// then on the layers from max_window_layers on (or as layer_types lists them). Llama: never
    /// (LlamaConfig has no such field and HF's Llama ignores it).
    /// </summary>
    private static (int? Window, int FromLayer) ReadSlidingWindow(JsonObject c, string modelType, int layers)
    {
        int? window = modelType switch
        {
            "mistral" => c.ContainsKey("sliding_window") ? OptInt(c, "sliding_window") : 4096,
            "phi3" => OptInt(c, "sliding_window"),
            "qwen2" or "qwen3" when OptBool(c, "use_sliding_window") == true => OptInt(c, "sliding_window") ?? 4096,
            _ => null,
        };
        if (window is not > 0) return (null, 0);
        if (modelType is not ("qwen2" or "qwen3")) return (window, 0);
        if (c["layer_types"] is JsonArray types)
        {
            // Newer configs list each layer; PiServe supports the shape HF's default produces
            // (full layers first, sliding ones after), which is what max_window_layers describes.
            var kinds = types.Select((t, i) => t is JsonValue v && v.TryGetValue(out string? k) && k is "sliding_attention" or "full_attention" ? k
                : throw new CheckpointFormatException(FileName, $"layer_types[{i}]", "must be \"sliding_attention\" or \"full_attention\"")).ToList();
            if (kinds.Count != layers)
                throw new CheckpointFormatException(FileName, "layer_types", $"has {kinds.Count} entries for {layers} layers");
            int first = kinds.IndexOf("sliding_attention");
            if (first < 0) return (null, 0);
            if (kinds.Skip(first).Any(k => k != "sliding_attention"))
                throw new CheckpointFormatException(FileName, "layer_types", "full-attention layers after sliding ones are not supported");
            return (window, first);
        }
        int from = OptInt(c, "max_window_layers") ?? 28;
        return from >= layers ? (null, 0) : (window, Math.Max(0, from));
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
