using System.Text.Json;
using PiServe.Inference.Chat.Jinja;
using PiServe.Inference.Checkpoints;

namespace PiServe.Inference.Chat;

/// <summary>
/// A Hugging Face chat template: the Jinja template of a checkpoint that turns a conversation into the
/// prompt text, rendered the way transformers' apply_chat_template does (trim_blocks and lstrip_blocks on;
/// variables messages, add_generation_prompt, tools=None, documents=None, the special tokens and any extras).
/// </summary>
public sealed class ChatTemplate
{
    public const string TokenizerConfigFile = "tokenizer_config.json";
    public const string JinjaFile = "chat_template.jinja";
    public const string ProcessorTemplateFile = "chat_template.json";

    /// <summary>The special tokens of tokenizer_config.json that transformers passes to templates.</summary>
    private static readonly string[] SpecialTokenFields =
        ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"];

    private readonly List<Stmt> _body;
    private readonly Dictionary<string, string> _specialTokens;

    /// <summary>The template text.</summary>
    public string Source { get; }

    /// <summary>Where the template came from, e.g. "tokenizer_config.json: chat_template"; "template" for Parse.</summary>
    public string Origin { get; }

    /// <summary>Special tokens passed to the template as variables (bos_token, eos_token, ...), from the tokenizer config.</summary>
    public IReadOnlyDictionary<string, string> SpecialTokens => _specialTokens;

    public string? BosToken => _specialTokens.GetValueOrDefault("bos_token");
    public string? EosToken => _specialTokens.GetValueOrDefault("eos_token");

    /// <summary>The clock strftime_now() reads: local time unless <see cref="WithClock"/> replaced it.</summary>
    public Func<DateTime> Clock { get; private init; } = () => DateTime.Now;

    private ChatTemplate(string source, string origin, List<Stmt> body, Dictionary<string, string> specialTokens)
    {
        Source = source;
        Origin = origin;
        _body = body;
        _specialTokens = specialTokens;
    }

    /// <summary>The same template with strftime_now() reading another clock (e.g. pinned, or UTC).</summary>
    public ChatTemplate WithClock(Func<DateTime> clock)
    {
        ArgumentNullException.ThrowIfNull(clock);
        return new ChatTemplate(Source, Origin, _body, _specialTokens) { Clock = clock };
    }

    // ---------------------------------------------------------------- loading

    /// <summary>Parses a template. Syntax errors throw <see cref="ChatTemplateException"/> with line and column.</summary>
    public static ChatTemplate Parse(string template) => Parse(template, null);

    /// <summary>Parses a template that will see the given special tokens (e.g. bos_token, eos_token) as variables.</summary>
    public static ChatTemplate Parse(string template, IReadOnlyDictionary<string, string>? specialTokens) =>
        Parse(template, "template", new Dictionary<string, string>(specialTokens ?? new Dictionary<string, string>(), StringComparer.Ordinal));

    private static ChatTemplate Parse(string template, string origin, Dictionary<string, string> specialTokens)
    {
        ArgumentNullException.ThrowIfNull(template);
        try
        {
            return new ChatTemplate(template, origin, Parser.Parse(template), specialTokens);
        }
        catch (JinjaSyntaxException e)
        {
            string prefix = origin == "template" ? "" : origin + ": ";
            throw new ChatTemplateException($"{prefix}syntax error at line {e.Line}, column {e.Column}: {e.Reason}", e.Line, e.Column, inner: e);
        }
    }

    /// <summary>
    /// The checkpoint's default chat template: chat_template.jinja when present, else tokenizer_config.json's
    /// "chat_template" (a string, or a list of {"name", "template"} from which "default" is taken), else
    /// chat_template.json's. Null when the folder has none; <see cref="ChatTemplateException"/> naming the
    /// file and field when one is malformed.
    /// </summary>
    public static ChatTemplate? FromTokenizerConfig(string directory) => FromTokenizerConfig(directory, null);

    /// <summary>As <see cref="FromTokenizerConfig(string)"/>, picking a named template (e.g. "tool_use") when given.</summary>
    public static ChatTemplate? FromTokenizerConfig(string directory, string? templateName) => FromTokenizerConfig(directory, templateName, null);

    /// <summary>
    /// As <see cref="FromTokenizerConfig(string, string?)"/>, reading symbolic links through to their real
    /// targets and, with <paramref name="confineTo"/>, refusing any whose real path lies outside that root.
    /// A link loop, a dangling link or a link out of the root is a <see cref="CheckpointFormatException"/>
    /// naming the file (it fails the model, unlike a malformed template).
    /// </summary>
    public static ChatTemplate? FromTokenizerConfig(string directory, string? templateName, ConfinementRoot? confineTo)
    {
        ArgumentNullException.ThrowIfNull(directory);
        if (!Directory.Exists(directory)) throw new ChatTemplateException($"{directory}: checkpoint folder not found");
        string? File(string name) => ConfinedPath.ResolveFile(Path.Combine(directory, name), name, confineTo);
        string? configPath = File(TokenizerConfigFile);
        JsonElement? config = configPath is null ? null : ReadJsonObject(configPath, TokenizerConfigFile);
        var specialTokens = config is { } c ? ReadSpecialTokens(c) : new Dictionary<string, string>(StringComparer.Ordinal);

        string? source = null, origin = null;
        if (templateName is not null && templateName != "default")
        {
            string name = $"additional_chat_templates/{templateName}.jinja";
            if (File(name) is { } named) (source, origin) = (System.IO.File.ReadAllText(named), name);
        }
        if (source is null && templateName is null or "default" && File(JinjaFile) is { } jinja)
            (source, origin) = (System.IO.File.ReadAllText(jinja), JinjaFile);
        if (source is null && config is { } cfg && cfg.TryGetProperty("chat_template", out var field) && field.ValueKind != JsonValueKind.Null)
            (source, origin) = FromField(field, TokenizerConfigFile, templateName);
        if (source is null)
        {
            if (File(ProcessorTemplateFile) is { } processorPath && ReadJsonObject(processorPath, ProcessorTemplateFile) is { } proc &&
                proc.TryGetProperty("chat_template", out var pfield) && pfield.ValueKind != JsonValueKind.Null)
                (source, origin) = FromField(pfield, ProcessorTemplateFile, templateName);
        }
        if (source is null)
        {
            if (templateName is not null && templateName != "default")
                throw new ChatTemplateException($"{TokenizerConfigFile}: no chat template named '{templateName}'");
            return null;
        }
        return Parse(source, origin!, specialTokens);
    }

    private static JsonElement? ReadJsonObject(string path, string fileName)
    {
        if (!File.Exists(path)) return null;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new ChatTemplateException($"{fileName}: expected a JSON object at the top level, found {doc.RootElement.ValueKind}");
            return doc.RootElement.Clone();
        }
        catch (JsonException e)
        {
            int? line = (int?)(e.LineNumber + 1), col = (int?)(e.BytePositionInLine + 1);
            throw new ChatTemplateException($"{fileName}: invalid JSON at line {line}, column {col}: {e.Message}", line, col, inner: e);
        }
    }

    private static Dictionary<string, string> ReadSpecialTokens(JsonElement config)
    {
        var tokens = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var name in SpecialTokenFields)
        {
            if (!config.TryGetProperty(name, out var v)) continue;
            switch (v.ValueKind)
            {
                case JsonValueKind.Null: break;
                case JsonValueKind.String: tokens[name] = v.GetString()!; break;
                case JsonValueKind.Object when v.TryGetProperty("content", out var content) && content.ValueKind == JsonValueKind.String:
                    tokens[name] = content.GetString()!;
                    break;
                default:
                    throw new ChatTemplateException($"{TokenizerConfigFile}: field '{name}' must be a string or an object with a string \"content\", found {v.ValueKind}");
            }
        }
        return tokens;
    }

    private static (string Source, string Origin) FromField(JsonElement field, string fileName, string? templateName)
    {
        string wanted = templateName ?? "default";
        switch (field.ValueKind)
        {
            case JsonValueKind.String:
                if (templateName is not null && templateName != "default")
                    throw new ChatTemplateException($"{fileName}: field 'chat_template' is a single template; there is no template named '{templateName}'");
                return (field.GetString()!, $"{fileName}: chat_template");
            case JsonValueKind.Array:
                {
                    var names = new List<string>();
                    int i = 0;
                    foreach (var item in field.EnumerateArray())
                    {
                        if (item.ValueKind != JsonValueKind.Object ||
                            !item.TryGetProperty("name", out var n) || n.ValueKind != JsonValueKind.String ||
                            !item.TryGetProperty("template", out var t) || t.ValueKind != JsonValueKind.String)
                            throw new ChatTemplateException($"{fileName}: field 'chat_template[{i}]' must be an object with string \"name\" and \"template\"");
                        names.Add(n.GetString()!);
                        if (n.GetString() == wanted) return (t.GetString()!, $"{fileName}: chat_template[{i}] ('{wanted}')");
                        i++;
                    }
                    throw new ChatTemplateException($"{fileName}: field 'chat_template' has no template named '{wanted}' (it has: {string.Join(", ", names)})");
                }
            default:
                throw new ChatTemplateException($"{fileName}: field 'chat_template' must be a string or a list of {{\"name\", \"template\"}} objects, found {field.ValueKind}");
        }
    }

    // ---------------------------------------------------------------- rendering

    /// <summary>
    /// Renders a conversation of plain messages. The template may do at most what <paramref name="limits"/>
    /// allows (<see cref="RenderLimits.Default"/> when null): going past a limit throws
    /// <see cref="ChatTemplateLimitException"/>. A cancelled <paramref name="cancellationToken"/> stops the
    /// render within about a thousand steps with <see cref="OperationCanceledException"/>.
    /// </summary>
    public string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt, IReadOnlyDictionary<string, object?>? extraVariables = null,
        CancellationToken cancellationToken = default, RenderLimits? limits = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var list = new List<object?>(messages.Count);
        foreach (var m in messages) list.Add(Py.FromClr(m));
        return RenderValues(list, addGenerationPrompt, extraVariables, cancellationToken, limits);
    }

    /// <summary>
    /// Renders messages given as dictionaries, for fields beyond role and content: tool_calls, content parts,
    /// reasoning_content. Values may be strings, numbers, booleans, null, dictionaries, lists or System.Text.Json values.
    /// Limits and cancellation as for the other overload.
    /// </summary>
    public string Render(IReadOnlyList<IReadOnlyDictionary<string, object?>> messages, bool addGenerationPrompt, IReadOnlyDictionary<string, object?>? extraVariables = null,
        CancellationToken cancellationToken = default, RenderLimits? limits = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var list = new List<object?>(messages.Count);
        foreach (var m in messages) list.Add(Py.FromClr(m));
        return RenderValues(list, addGenerationPrompt, extraVariables, cancellationToken, limits);
    }

    private string RenderValues(List<object?> messages, bool addGenerationPrompt, IReadOnlyDictionary<string, object?>? extra,
        CancellationToken cancellationToken, RenderLimits? limits)
    {
        var vars = new Dictionary<string, object?>(StringComparer.Ordinal)
        {
            ["tools"] = null,
            ["documents"] = null,
        };
        foreach (var (k, v) in _specialTokens) vars[k] = v;
        if (extra is not null)
        {
            foreach (var (k, v) in extra)
            {
                if (k is "messages" or "add_generation_prompt")
                    throw new ArgumentException($"'{k}' is set by Render's own parameter, not by extra variables", nameof(extra));
                vars[k] = Py.FromClr(v);
            }
        }
        vars["messages"] = messages;
        vars["add_generation_prompt"] = addGenerationPrompt;

        try
        {
            var budget = new RenderBudget(limits ?? RenderLimits.Default, cancellationToken);
            return new Interpreter(Clock, budget).Render(_body, vars);
        }
        catch (RenderLimitExceededException e)
        {
            string at = e.Line is null ? "error: " : $"error at line {e.Line}, column {e.Column}: ";
            throw new ChatTemplateLimitException($"{Where()}{at}{e.Message}", e.Limit, e.LimitValue, e.Line, e.Column, e);
        }
        catch (TemplateRaisedException e)
        {
            throw new ChatTemplateException(e.Message, null, null, raisedByTemplate: true, inner: e);
        }
        catch (LocatedRuntimeException e)
        {
            throw new ChatTemplateException($"{Where()}error at line {e.Line}, column {e.Column}: {e.Reason}", e.Line, e.Column, inner: e);
        }
        catch (JinjaRuntimeException e)
        {
            throw new ChatTemplateException($"{Where()}error: {e.Message}", e);
        }
    }

    private string Where() => Origin == "template" ? "" : Origin + ": ";
}
