using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using PiServe.Inference.Checkpoints;

namespace PiServe.Inference.Tokenization;

/// <summary>
/// Loads a tokenizer from a Hugging Face model folder: <c>tokenizer.json</c> (required) and
/// <c>tokenizer_config.json</c> (optional). Supported: BPE models (SentencePiece-style with byte fallback, as
/// LLaMA-1/2, Mistral, TinyLlama; and byte-level, as GPT-2 and Llama-3). Any component that is not supported
/// is rejected with a <see cref="TokenizerFormatException"/> naming the file and field — never approximated.
/// </summary>
public static class TokenizerLoader
{
    private const string TokenizerFile = "tokenizer.json";
    private const string ConfigFile = "tokenizer_config.json";

    /// <summary>
    /// Loads the tokenizer in <paramref name="directory"/>. Its files may be symbolic links (a Hugging Face
    /// cache snapshot); with <paramref name="confineTo"/>, their real paths must lie inside that root.
    /// A link loop, a dangling link or a link out of the root is a <see cref="CheckpointFormatException"/>
    /// naming the file.
    /// </summary>
    public static ITokenizer Load(string directory, ConfinementRoot? confineTo = null)
    {
        ArgumentNullException.ThrowIfNull(directory);
        if (!Directory.Exists(directory))
            throw new TokenizerFormatException($"{TokenizerFile}: directory '{directory}' does not exist");
        string tokenizerPath = ConfinedPath.ResolveFile(Path.Combine(directory, TokenizerFile), TokenizerFile, confineTo)
            ?? throw new TokenizerFormatException($"{TokenizerFile}: file not found in '{directory}'");

        using var tokenizerDoc = ParseJson(tokenizerPath, TokenizerFile);
        var root = new JNode(tokenizerDoc.RootElement, TokenizerFile, "");
        root.RequireKind(JsonValueKind.Object);

        JsonDocument? configDoc = null;
        string? configPath = ConfinedPath.ResolveFile(Path.Combine(directory, ConfigFile), ConfigFile, confineTo);
        if (configPath is not null) configDoc = ParseJson(configPath, ConfigFile);
        try
        {
            JNode? config = null;
            if (configDoc is not null)
            {
                config = new JNode(configDoc.RootElement, ConfigFile, "");
                config.Value.RequireKind(JsonValueKind.Object);
            }
            return Build(root, config);
        }
        finally
        {
            configDoc?.Dispose();
        }
    }

    private static JsonDocument ParseJson(string path, string fileName)
    {
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new TokenizerFormatException($"{fileName}: cannot read file: {e.Message}", e);
        }
        try
        {
            return JsonDocument.Parse(bytes, new JsonDocumentOptions { MaxDepth = 256 });
        }
        catch (JsonException e)
        {
            throw new TokenizerFormatException($"{fileName}: invalid JSON: {e.Message}", e);
        }
    }

    private static HfTokenizer Build(JNode root, JNode? config)
    {
        // ---- model
        var model = LoadBpe(root.Required("model"));

        // ---- added tokens
        var added = new List<AddedToken>();
        if (root.GetNonNull("added_tokens") is { } addedNode)
        {
            foreach (var item in addedNode.Items())
            {
                bool special = item.OptionalBool("special", false);
                string content = item.RequiredString("content");
                if (content.Length == 0) throw item.FieldError("content", "empty added token");
                added.Add(new AddedToken(
                    Id: ParseId(item.Required("id")),
                    Content: content,
                    SingleWord: item.OptionalBool("single_word", false),
                    LStrip: item.OptionalBool("lstrip", false),
                    RStrip: item.OptionalBool("rstrip", false),
                    Normalized: item.OptionalBool("normalized", !special),
                    Special: special));
            }
        }

        // ---- pipeline components
        var normalizer = root.GetNonNull("normalizer") is { } n ? LoadNormalizer(n) : null;
        var preTokenizer = root.GetNonNull("pre_tokenizer") is { } pt ? LoadPreTokenizer(pt) : null;
        var prefix = new List<int>();
        var suffix = new List<int>();
        if (root.GetNonNull("post_processor") is { } pp) LoadPostProcessor(pp, prefix, suffix);
        var decoder = new List<DecoderSpec>();
        if (root.GetNonNull("decoder") is { } dec)
        {
            LoadDecoder(dec, decoder);
            ValidateDecoderChain(dec, decoder);
        }

        // ---- tokenizer_config.json
        int? FindId(string token)
        {
            foreach (var t in added)
                if (t.Content == token) return t.Id;
            return model.Vocab.TryGetValue(token, out int id) ? id : null;
        }

        int? bos = null, eos = null;
        bool cleanup = false;
        if (config is { } cfg)
        {
            bos = ConfigTokenId(cfg, "bos_token", FindId);
            eos = ConfigTokenId(cfg, "eos_token", FindId);
            cleanup = cfg.OptionalBool("clean_up_tokenization_spaces", false);

            if (cfg.GetNonNull("add_bos_token") is { } addBosNode)
            {
                bool addBos = addBosNode.AsBool();
                if (addBos && bos is null) throw addBosNode.Error("is true but no bos_token is configured");
                if (bos is { } b)
                {
                    bool has = prefix.Count > 0 && prefix[0] == b;
                    if (addBos && !has) prefix.Insert(0, b);
                    if (!addBos && has) prefix.RemoveAt(0);
                }
            }
            if (cfg.GetNonNull("add_eos_token") is { } addEosNode)
            {
                bool addEos = addEosNode.AsBool();
                if (addEos && eos is null) throw addEosNode.Error("is true but no eos_token is configured");
                if (eos is { } e)
                {
                    bool has = suffix.Count > 0 && suffix[^1] == e;
                    if (addEos && !has) suffix.Add(e);
                    if (!addEos && has) suffix.RemoveAt(suffix.Count - 1);
                }
            }
            if (cfg.GetNonNull("add_prefix_space") is { } apsNode)
            {
                // transformers rewrites the pre-tokenizer (or reconverts tokenizer.model) for this option;
                // accept it only where tokenizer.json already does the same thing.
                if (apsNode.AsBool() != PrependsSpace(normalizer, preTokenizer))
                    throw apsNode.Error("differs from what tokenizer.json does; overriding the prefix space is not supported");
            }
        }
        bos ??= prefix.Count > 0 ? prefix[0] : null;
        eos ??= suffix.Count > 0 ? suffix[^1] : null;

        return new HfTokenizer(model, added, normalizer, preTokenizer, prefix.ToArray(), suffix.ToArray(), decoder, cleanup,
            bos, eos);
    }

    /// <summary>Whether tokenizer.json adds a prefix space (ByteLevel add_prefix_space, Metaspace, Prepend).</summary>
    private static bool PrependsSpace(Normalizer? normalizer, PreTokenizer? preTokenizer)
    {
        bool Pre(PreTokenizer? p) => p switch
        {
            ByteLevelPreTokenizer b => b.AddPrefixSpace,
            MetaspacePreTokenizer m => m.Scheme != PrependScheme.Never,
            SequencePreTokenizer s => s.Items.Any(Pre),
            _ => false,
        };
        bool Norm(Normalizer? n) => n switch
        {
            PrependNormalizer p => p.Prefix.Length > 0,
            SequenceNormalizer s => s.Items.Any(Norm),
            _ => false,
        };
        return Pre(preTokenizer) || Norm(normalizer);
    }

    private static int? ConfigTokenId(JNode cfg, string field, Func<string, int?> findId)
    {
        if (cfg.GetNonNull(field) is not { } node) return null;
        string content = node.Kind switch
        {
            JsonValueKind.String => node.AsString(),
            JsonValueKind.Object => node.RequiredString("content"),
            _ => throw node.Error($"expected a string or an object with \"content\" but found {JNode.Describe(node.Kind)}"),
        };
        return findId(content) ?? throw node.Error($"token '{content}' is not in the vocabulary");
    }

    private static int ParseId(JNode node)
    {
        int id = node.AsInt();
        if (id < 0) throw node.Error("negative token id");
        return id;
    }

    // ---- model ----------------------------------------------------------------------------------------

    private static BpeModel LoadBpe(JNode model)
    {
        model.RequireKind(JsonValueKind.Object);
        string type;
        if (model.GetNonNull("type") is { } typeNode) type = typeNode.AsString();
        else if (model.Get("merges") is not null) type = "BPE"; // old files have no type; HF infers it
        else throw model.FieldError("type", "required field is missing");
        if (type != "BPE")
            throw model.FieldError("type", $"unsupported model type '{type}' (supported: BPE)");

        if (model.GetNonNull("dropout") is { } dropout)
        {
            if (dropout.Kind != JsonValueKind.Number) throw dropout.Error("expected a number or null");
            if (dropout.Element.GetDouble() != 0) throw dropout.Error("BPE dropout is not supported (inference is deterministic)");
        }
        foreach (var field in new[] { "continuing_subword_prefix", "end_of_word_suffix" })
        {
            if (model.OptionalString(field) is { Length: > 0 })
                throw model.FieldError(field, "is not supported (only SentencePiece-style and byte-level BPE are)");
        }

        var vocabNode = model.Required("vocab");
        var vocab = new Dictionary<string, int>(vocabNode.Kind == JsonValueKind.Object ? vocabNode.Element.GetPropertyCount() : 0,
            StringComparer.Ordinal);
        foreach (var (token, idNode) in vocabNode.Properties())
            vocab[token] = ParseId(idNode);

        var merges = new Dictionary<long, long>();
        if (model.GetNonNull("merges") is { } mergesNode)
        {
            merges.EnsureCapacity(mergesNode.ArrayLength);
            int rank = 0;
            foreach (var m in mergesNode.Items())
            {
                string left, right;
                if (m.Kind == JsonValueKind.String)
                {
                    string s = m.AsString();
                    int space = s.IndexOf(' ');
                    if (space <= 0 || space == s.Length - 1 || s.IndexOf(' ', space + 1) >= 0)
                        throw m.Error($"expected \"left right\" (two tokens separated by one space) but found \"{s}\"");
                    left = s[..space];
                    right = s[(space + 1)..];
                }
                else if (m.Kind == JsonValueKind.Array)
                {
                    if (m.ArrayLength != 2) throw m.Error($"expected a pair of tokens but found {m.ArrayLength} elements");
                    var e = m.Items().ToArray();
                    left = e[0].AsString();
                    right = e[1].AsString();
                }
                else throw m.Error($"expected a string or a pair of strings but found {JNode.Describe(m.Kind)}");

                if (!vocab.TryGetValue(left, out int l)) throw m.Error($"token '{left}' is not in model.vocab");
                if (!vocab.TryGetValue(right, out int r)) throw m.Error($"token '{right}' is not in model.vocab");
                if (!vocab.TryGetValue(left + right, out int merged))
                    throw m.Error($"merged token '{left + right}' is not in model.vocab");
                merges[BpeModel.PairKey(l, r)] = ((long)rank << 32) | (uint)merged;
                rank++;
            }
        }

        int unkId = -1;
        if (model.OptionalString("unk_token") is { } unk)
        {
            if (!vocab.TryGetValue(unk, out unkId))
                throw model.FieldError("unk_token", $"token '{unk}' is not in model.vocab");
        }
        bool byteFallback = model.OptionalBool("byte_fallback", false);
        return new BpeModel(vocab, merges, unkId, model.OptionalBool("fuse_unk", false), byteFallback,
            model.OptionalBool("ignore_merges", false));
    }

    // ---- patterns -------------------------------------------------------------------------------------

    /// <summary>A {"String": ...} or {"Regex": ...} pattern as a .NET regex (literal strings escaped).</summary>
    private static OnigPattern LoadPattern(JNode pattern, out string? literal)
    {
        literal = null;
        if (pattern.GetNonNull("String") is { } s)
        {
            literal = s.AsString();
            var escaped = new Regex(Regex.Escape(literal), RegexOptions.CultureInvariant);
            return new OnigPattern(escaped, new Lazy<Regex>(escaped));
        }
        if (pattern.GetNonNull("Regex") is { } r)
        {
            try
            {
                return OnigRegex.Compile(r.AsString());
            }
            catch (FormatException e)
            {
                throw r.Error(e.Message);
            }
        }
        throw pattern.Error("expected {\"String\": ...} or {\"Regex\": ...}");
    }

    private static char SingleChar(JNode node)
    {
        string s = node.AsString();
        if (s.Length != 1) throw node.Error($"expected a single (BMP) character but found \"{s}\"");
        return s[0];
    }

    // ---- normalizers ----------------------------------------------------------------------------------

    private static Normalizer LoadNormalizer(JNode n)
    {
        string type = n.TypeName();
        switch (type)
        {
            case "Sequence":
                return new SequenceNormalizer(n.Required("normalizers").Items().Select(LoadNormalizer).ToArray());
            case "Prepend":
                return new PrependNormalizer(n.RequiredString("prepend"));
            case "Replace":
            {
                var regex = LoadPattern(n.Required("pattern"), out string? literal);
                string content = n.RequiredString("content");
                return new ReplaceNormalizer(literal, literal is null ? regex : null, content);
            }
            case "NFC": return UnicodeForm(n, NormalizationForm.FormC);
            case "NFD": return UnicodeForm(n, NormalizationForm.FormD);
            case "NFKC": return UnicodeForm(n, NormalizationForm.FormKC);
            case "NFKD": return UnicodeForm(n, NormalizationForm.FormKD);
            case "Strip":
                return new StripNormalizer(n.OptionalBool("strip_left", true), n.OptionalBool("strip_right", true));
            default:
                throw n.FieldError("type", $"unsupported normalizer '{type}'");
        }
    }

    private static Normalizer UnicodeForm(JNode n, NormalizationForm form) => new UnicodeFormNormalizer(form);

    // ---- pre-tokenizers -------------------------------------------------------------------------------

    private static PreTokenizer LoadPreTokenizer(JNode p)
    {
        string type = p.TypeName();
        switch (type)
        {
            case "Sequence":
                return new SequencePreTokenizer(p.Required("pretokenizers").Items().Select(LoadPreTokenizer).ToArray());
            case "Split":
            {
                var regex = LoadPattern(p.Required("pattern"), out _);
                var behaviorNode = p.Required("behavior");
                string b = behaviorNode.AsString();
                SplitBehavior behavior = b switch
                {
                    "Removed" => SplitBehavior.Removed,
                    "Isolated" => SplitBehavior.Isolated,
                    "MergedWithPrevious" => SplitBehavior.MergedWithPrevious,
                    "MergedWithNext" => SplitBehavior.MergedWithNext,
                    "Contiguous" => SplitBehavior.Contiguous,
                    _ => throw behaviorNode.Error($"unknown split behavior '{b}'"),
                };
                return new SplitPreTokenizer(regex, behavior, p.OptionalBool("invert", false));
            }
            case "ByteLevel":
                return new ByteLevelPreTokenizer(p.OptionalBool("add_prefix_space", true), p.OptionalBool("use_regex", true));
            case "Metaspace":
            {
                char replacement = p.GetNonNull("replacement") is { } r ? SingleChar(r) : '\u2581';
                var scheme = ParsePrependScheme(p);
                return new MetaspacePreTokenizer(replacement, scheme, p.OptionalBool("split", true));
            }
            case "Digits":
                return new DigitsPreTokenizer(p.OptionalBool("individual_digits", false));
            case "Whitespace":
                return new WhitespacePreTokenizer();
            case "WhitespaceSplit":
                return new WhitespaceSplitPreTokenizer();
            default:
                throw p.FieldError("type", $"unsupported pre-tokenizer '{type}'");
        }
    }

    private static PrependScheme ParsePrependScheme(JNode p)
    {
        if (p.GetNonNull("prepend_scheme") is { } s)
        {
            return s.AsString() switch
            {
                "always" => PrependScheme.Always,
                "first" => PrependScheme.First,
                "never" => PrependScheme.Never,
                var other => throw s.Error($"unknown prepend_scheme '{other}'"),
            };
        }
        return p.OptionalBool("add_prefix_space", true) ? PrependScheme.Always : PrependScheme.Never;
    }

    // ---- post-processors ------------------------------------------------------------------------------

    private static void LoadPostProcessor(JNode p, List<int> prefix, List<int> suffix)
    {
        string type = p.TypeName();
        switch (type)
        {
            case "ByteLevel":
                return; // only adjusts offsets
            case "Sequence":
                foreach (var item in p.Required("processors").Items())
                {
                    var pre = new List<int>();
                    var suf = new List<int>();
                    LoadPostProcessor(item, pre, suf);
                    prefix.InsertRange(0, pre); // each processor wraps the output of the previous one
                    suffix.AddRange(suf);
                }
                return;
            case "TemplateProcessing":
            {
                var specials = new Dictionary<string, int[]>(StringComparer.Ordinal);
                if (p.GetNonNull("special_tokens") is { } st)
                {
                    foreach (var (name, value) in st.Properties())
                        specials[name] = value.Required("ids").Items().Select(ParseId).ToArray();
                }
                bool seenA = false;
                foreach (var piece in p.Required("single").Items())
                {
                    if (piece.GetNonNull("SpecialToken") is { } sp)
                    {
                        var idNode = sp.Required("id");
                        string name = idNode.AsString();
                        if (!specials.TryGetValue(name, out var ids))
                            throw idNode.Error($"special token '{name}' is not listed in post_processor.special_tokens");
                        (seenA ? suffix : prefix).AddRange(ids);
                    }
                    else if (piece.GetNonNull("Sequence") is { } seq)
                    {
                        var idNode = seq.Required("id");
                        if (idNode.AsString() != "A") throw idNode.Error("the single-sequence template may only use sequence A");
                        if (seenA) throw idNode.Error("sequence A appears twice");
                        seenA = true;
                    }
                    else throw piece.Error("expected {\"SpecialToken\": ...} or {\"Sequence\": ...}");
                }
                if (!seenA) throw p.FieldError("single", "template has no sequence A");
                return;
            }
            case "BertProcessing":
            case "RobertaProcessing":
            {
                prefix.Add(PairId(p.Required("cls")));
                suffix.Add(PairId(p.Required("sep")));
                return;
            }
            default:
                throw p.FieldError("type", $"unsupported post-processor '{type}'");
        }
    }

    private static int PairId(JNode pair)
    {
        if (pair.Kind != JsonValueKind.Array || pair.ArrayLength != 2) throw pair.Error("expected [token, id]");
        return ParseId(pair.Items().ElementAt(1));
    }

    // ---- decoders -------------------------------------------------------------------------------------

    private static void LoadDecoder(JNode d, List<DecoderSpec> output)
    {
        string type = d.TypeName();
        switch (type)
        {
            case "Sequence":
                foreach (var item in d.Required("decoders").Items()) LoadDecoder(item, output);
                return;
            case "Replace":
            {
                var pattern = d.Required("pattern");
                if (pattern.GetNonNull("String") is not { } s)
                    throw pattern.Error("only {\"String\": ...} patterns are supported in the Replace decoder");
                output.Add(new ReplaceDecoderSpec(s.AsString(), d.RequiredString("content")));
                return;
            }
            case "ByteFallback":
                output.Add(new ByteFallbackDecoderSpec());
                return;
            case "Fuse":
                output.Add(new FuseDecoderSpec());
                return;
            case "Strip":
            {
                char content = SingleChar(d.Required("content"));
                int start = d.OptionalInt("start", 0), stop = d.OptionalInt("stop", 0);
                if (start < 0 || stop < 0) throw d.Error("start/stop must not be negative");
                output.Add(new StripDecoderSpec(content, start, stop));
                return;
            }
            case "ByteLevel":
                output.Add(new ByteLevelDecoderSpec());
                return;
            case "Metaspace":
            {
                char replacement = d.GetNonNull("replacement") is { } r ? SingleChar(r) : '\u2581';
                output.Add(new MetaspaceDecoderSpec(replacement, ParsePrependScheme(d) != PrependScheme.Never));
                return;
            }
            default:
                throw d.FieldError("type", $"unsupported decoder '{type}'");
        }
    }

    private static void ValidateDecoderChain(JNode d, List<DecoderSpec> specs)
    {
        bool whole = true;
        for (int i = 0; i < specs.Count; i++)
        {
            if (specs[i].NeedsWholeTokens && !whole)
                throw d.Error($"decoder step {i} ({specs[i].GetType().Name.Replace("DecoderSpec", "")}) after a step that merges tokens is not supported");
            whole &= specs[i].PreservesWholeTokens;
        }
    }
}
