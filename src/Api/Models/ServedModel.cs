using System.Text.Json.Nodes;
using PiServe.Inference.Generation;
using PiServe.Inference.Model;
using PiServe.Inference.Rope;
using PiServe.Inference.Tokenization;

namespace PiServe.Api.Models;

/// <summary>A configured model: loaded (weights, tokenizer, scheduler) or failed with the reason.</summary>
public sealed class ServedModel(string id, string path) : IDisposable
{
    public string Id { get; } = id;
    public string Path { get; } = path;
    public string Status { get; private set; } = "loading";
    public string? Error { get; private set; }
    public LlamaModel? Model { get; private set; }
    public ITokenizer? Tokenizer { get; private set; }
    public BatchScheduler? Scheduler { get; private set; }
    /// <summary>The chat template from tokenizer_config.json (null: /v1/chat/completions is refused for this model).</summary>
    public Inference.Chat.ChatTemplate? ChatTemplate { get; set; }
    public string? ChatTemplateError { get; set; }
    /// <summary>The rope scaling requests get by default: the checkpoint's, or the configured override.</summary>
    public RopeScaling? Rope { get; private set; }
    public JsonObject? RopeOverride { get; private set; }
    public DateTimeOffset Created { get; } = DateTimeOffset.UtcNow;

    public bool IsLoaded => Status == "loaded";

    public void Loaded(LlamaModel model, ITokenizer tokenizer, BatchScheduler scheduler, JsonObject? ropeOverride)
    {
        Model = model;
        Tokenizer = tokenizer;
        Scheduler = scheduler;
        RopeOverride = ropeOverride;
        Rope = model.ResolveRope(ropeOverride);
        Status = "loaded";
    }

    /// <summary>The model this variant shares weights, tokenizer and scheduler with (null for a configured model).</summary>
    public string? BaseModelId { get; private set; }
    /// <summary>A variant's context window when its rope override extends it (e.g. a LongRoPE search's target length).</summary>
    public int? ContextWindowOverride { get; private set; }

    /// <summary>Serves <paramref name="baseModel"/>'s weights under this id with another default rope scaling.</summary>
    public void LoadedVariant(ServedModel baseModel, JsonObject ropeOverride, int? contextWindow)
    {
        Model = baseModel.Model;
        Tokenizer = baseModel.Tokenizer;
        Scheduler = baseModel.Scheduler;
        RopeOverride = ropeOverride;
        Rope = Model!.ResolveRope(ropeOverride);
        BaseModelId = baseModel.Id;
        ContextWindowOverride = contextWindow;
        Status = "loaded";
    }

    public void Failed(string error)
    {
        Status = "failed";
        Error = error;
    }

    /// <summary>The context window under a rope scaling (<see cref="ContextWindow.For"/>), at least a variant's configured window.</summary>
    public int ContextWindowFor(RopeScaling rope)
    {
        int window = ContextWindow.For(Model!.Config, rope);
        return ContextWindowOverride is { } w ? Math.Max(window, w) : window;
    }

    public void Dispose()
    {
        if (BaseModelId is not null) return; // the base model owns the shared weights and scheduler
        Scheduler?.Dispose();
        Model?.Dispose();
    }
}
