using System.Globalization;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Options;
using PiServe.Eval.Models;
using PiServe.Inference.Cache;
using PiServe.Inference.Checkpoints;
using PiServe.Inference.Generation;
using PiServe.Inference.Gpu;
using PiServe.Inference.Kernels;
using PiServe.Inference.Model;
using PiServe.Inference.Rope;
using PiServe.Inference.Tokenization;
using PiServe.Api.Configuration;

namespace PiServe.Api.Models;

/// <summary>
/// The models named in configuration (or, when none is, the models shipped in models/ next to the
/// executable), loaded at start-up. A model that fails to load is kept with its error (reported by
/// /v1/models, readiness and the log) and the others are served.
/// </summary>
public sealed class ModelRegistry : IDisposable
{
    private readonly Dictionary<string, ServedModel> _models = new(StringComparer.Ordinal);
    /// <summary>Folders whose absolute paths are cut from the errors models report (the log keeps them whole).</summary>
    private readonly List<string> _roots = [];
    /// <summary>PiServe:ModelsRoot as a real path, when models are configured; null for the shipped models.</summary>
    private readonly ConfinementRoot? _confine;

    public ModelRegistry(IOptions<PiServeOptions> options, IConfiguration configuration, ILogger<ModelRegistry> log, ISchedulerObserverFactory? observers = null)
    {
        var o = options.Value;
        if (o.Models.Count == 0)
        {
            // Nothing configured: serve the models shipped with the executable (models/ next to it),
            // so a fresh clone answers completions with no configuration and no download.
            string shipped = ShippedModelsFolder(o);
            _roots.Add(shipped);
            var folders = Directory.Exists(shipped)
                ? Directory.GetDirectories(shipped).Where(d => File.Exists(System.IO.Path.Combine(d, "config.json"))).Order(StringComparer.Ordinal).ToList()
                : [];
            if (folders.Count == 0) log.LogWarning("No models configured (PiServe:Models) and none shipped in {Folder}", shipped);
            foreach (string folder in folders)
                Load(System.IO.Path.GetFileName(folder), folder, () => folder, null, o.KvCacheDType, o, observers, log, o.Backend, o.MatmulPrecision);
            return;
        }

        string root = System.IO.Path.GetFullPath(o.ModelsRoot);
        _roots.Add(root);
        // Confinement is decided on real paths: a folder or file inside the root that is a symbolic link
        // to somewhere else is outside it. (The root itself may be a link, e.g. a cache on another disk.)
        ConfinementRoot? confine = null;
        try
        {
            confine = new ConfinementRoot(root, "PiServe:ModelsRoot");
            if (!string.Equals(confine.Path, root, StringComparison.Ordinal)) _roots.Insert(0, confine.Path);
        }
        catch (SymbolicLinkLoopException)
        {
            // Every configured model fails below, naming the root.
        }
        _confine = confine;
        var sections = configuration.GetSection($"{PiServeOptions.Section}:Models").GetChildren().ToList();
        for (int i = 0; i < o.Models.Count; i++)
        {
            var m = o.Models[i];
            int index = i;
            string id = string.IsNullOrWhiteSpace(m.Id) ? $"model-{i}" : m.Id;
            string Resolve()
            {
                if (confine is null) throw new ArgumentException("PiServe:ModelsRoot: a symbolic link loop (too many levels of symbolic links)");
                string full = System.IO.Path.GetFullPath(System.IO.Path.Combine(root, m.Path));
                if (!ConfinedPath.IsInside(root, full))
                    throw new ArgumentException($"PiServe:Models:{index}:Path '{m.Path}' lies outside PiServe:ModelsRoot");
                string name = $"PiServe:Models:{index}:Path '{m.Path}'";
                string real;
                try
                {
                    real = ConfinedPath.RealPath(full);
                }
                catch (SymbolicLinkLoopException)
                {
                    throw new ArgumentException($"{name}: a symbolic link loop (too many levels of symbolic links)");
                }
                if (!confine.Contains(real))
                    throw new ArgumentException($"{name} resolves through a symbolic link to a location outside PiServe:ModelsRoot");
                // A Hugging Face repo cache folder (models--org--name) stands for the snapshot refs/main names.
                return HfCache.ResolveRepoFolder(real, confine);
            }
            var ropeOverride = i < sections.Count ? ToJson(sections[i].GetSection("RopeScaling")) as JsonObject : null;
            string kvType = string.IsNullOrWhiteSpace(m.KvCacheDType) ? o.KvCacheDType : m.KvCacheDType;
            string backend = string.IsNullOrWhiteSpace(m.Backend) ? o.Backend : m.Backend;
            string precision = string.IsNullOrWhiteSpace(m.MatmulPrecision) ? o.MatmulPrecision : m.MatmulPrecision;
            if (!Load(id, m.Path, Resolve, ropeOverride, kvType, o, observers, log, backend, precision))
                log.LogError("PiServe:Models:{Index}: duplicate model id {Id}", i, id);
        }
    }

    /// <summary>Where the shipped models live: PiServe:ShippedModels, else models/ next to the executable.</summary>
    public static string ShippedModelsFolder(PiServeOptions o) => System.IO.Path.GetFullPath(
        string.IsNullOrWhiteSpace(o.ShippedModels) ? System.IO.Path.Combine(AppContext.BaseDirectory, "models") : o.ShippedModels);

    /// <summary>Loads one model under <paramref name="id"/>; false if the id is taken. Load failures are kept with the model.</summary>
    private bool Load(string id, string path, Func<string> resolve, JsonObject? ropeOverride, string kvCacheType, PiServeOptions o,
                      ISchedulerObserverFactory? observers, ILogger log, string backend, string matmulPrecision)
    {
        var served = new ServedModel(id, path);
        if (!_models.TryAdd(id, served)) return false;
        try
        {
            if (ModelIds.Problem(id) is { } bad) throw new ArgumentException($"model id '{id}': {bad}");
            if (_models.Keys.FirstOrDefault(k => k != id && string.Equals(k, id, StringComparison.OrdinalIgnoreCase)) is { } other)
                throw new ArgumentException($"model id '{id}' differs from '{other}' only in case");
            string full = resolve();
            var model = LlamaModel.Load(full, new CpuBackend(o.Scheduler.Threads), _confine);
            try
            {
                try { model.KvCacheType = KvCache.ParseElementType(kvCacheType); }
                catch (ArgumentException e) { throw new ArgumentException($"PiServe KvCacheDType: {e.Message}"); }
                try { model.MatmulPrecision = MatmulPrecisions.Parse(matmulPrecision); }
                catch (ArgumentException e) { throw new ArgumentException($"PiServe MatmulPrecision: {e.Message}"); }
                BackendKind kind;
                try { kind = BackendKinds.Parse(backend); }
                catch (ArgumentException e) { throw new ArgumentException($"PiServe Backend: {e.Message}"); }
                var schedulerOptions = o.Scheduler.ToSchedulerOptions();
                if (kind != BackendKind.Cpu)
                {
                    // Weights go to the device now; KV caches are allocated there per request, so the
                    // KV budget is at most the device memory left after the weights and activations.
                    var engine = IlgpuLlamaModel.Attach(model, kind);
                    long activations = DeviceActivationBytes(model.Config, schedulerOptions);
                    long free = engine.Device.FreeBytes - activations;
                    if (free < schedulerOptions.KvCacheBudgetBytes)
                    {
                        if (free < model.KvBytesPerToken * 256)
                            throw new DeviceOutOfMemoryException($"device {engine.Device.Name} has {Math.Max(0, free)} bytes left for KV caches after the weights and activations: not enough for 256 positions");
                        log.LogWarning("Model {Id}: KV cache budget lowered from {Budget} to the {Free} bytes of device memory left", id, schedulerOptions.KvCacheBudgetBytes, free);
                        schedulerOptions = schedulerOptions with { KvCacheBudgetBytes = free };
                    }
                    log.LogInformation("Model {Id} runs on {Backend} ({Device}): {Bytes} bytes of weights in device memory", id, engine.Name, engine.Device.Name, engine.WeightDeviceBytes);
                }
                var tokenizer = TokenizerLoader.Load(full, _confine);
                // Checkpoints may pad the embedding past the tokenizer; the reverse means the
                // tokenizer can produce ids the model has no row for.
                if (tokenizer.VocabSize > model.Config.VocabSize)
                    throw new ArgumentException($"tokenizer.json has {tokenizer.VocabSize} tokens but config.json vocab_size is {model.Config.VocabSize}: this tokenizer does not belong to this model");
                // Read before the model is marked loaded: a template file linked out of the root (a
                // CheckpointFormatException) fails the whole model, like any other file.
                Inference.Chat.ChatTemplate? chatTemplate = null;
                string? chatTemplateError = null;
                try
                {
                    chatTemplate = Inference.Chat.ChatTemplate.FromTokenizerConfig(full, null, _confine);
                }
                catch (Inference.Chat.ChatTemplateException e)
                {
                    // A broken template costs the model its chat endpoint, not its completions.
                    chatTemplateError = e.Message;
                    log.LogWarning("Model {Id}: chat template unusable: {Error}", id, e.Message);
                }
                var scheduler = new BatchScheduler(model, tokenizer, schedulerOptions, observers?.For(id));
                if (model.MatmulPrecision == MatmulPrecision.Bf16 && model.EffectiveMatmulPrecision != MatmulPrecision.Bf16)
                    log.LogWarning("Model {Id}: MatmulPrecision bf16 needs bf16 weights on the cpu backend with the native bf16 kernel (weights {DType}, backend {Backend}, native kernels {Native}): its matmuls run exact",
                        id, model.WeightDType.ToString().ToLowerInvariant(), model.Name, NativeKernels.Status);
                served.Loaded(model, tokenizer, scheduler, ropeOverride);
                served.ChatTemplate = chatTemplate;
                served.ChatTemplateError = chatTemplateError;
            }
            catch
            {
                model.Dispose();
                throw;
            }
            log.LogInformation("Loaded model {Id} from {Path}: {Layers} layers, {Params} parameters, rope {Rope}, matmuls {Precision} (native kernels: {Native})",
                id, full, model.Config.NumLayers, model.ParameterCount, served.Rope!.RopeType, model.EffectiveMatmulPrecision.Name(), NativeKernels.Status);
        }
        catch (Exception e) when (e is CheckpointFormatException or TokenizerFormatException or RopeScalingException
                                      or ArgumentException or IOException or UnauthorizedAccessException
                                      or DeviceUnavailableException or DeviceOutOfMemoryException)
        {
            served.Failed(Relative(e.Message));
            log.LogError("Model {Id} failed to load: {Error}", id, e.Message);
        }
        catch (Exception e)
        {
            // Whatever a model folder holds, it may fail only that model: the loaders turn every
            // corruption they know into one of the errors above, and anything they miss still must
            // not take the host (and every other model) down at start-up.
            served.Failed(Relative($"unexpected {e.GetType().Name} while loading: {e.Message}"));
            log.LogError(e, "Model {Id} failed to load", id);
        }
        return true;
    }

    /// <summary>Device memory the largest step's forward (a burst of prompts beside a full decode batch) and its logits take.</summary>
    private static long DeviceActivationBytes(ModelConfig c, SchedulerOptions s)
    {
        long tokens = (long)Math.Max(s.PrefillChunk, s.MaxStepPromptTokens) + s.MaxBatch;
        long perToken = 4L * c.HiddenSize + 2L * c.QueryDim + 2L * c.KvDim + 2L * c.IntermediateSize + Math.Max(1, c.RotaryDim);
        return 4 * (tokens * perToken + (long)s.MaxBatch * (c.VocabSize + c.HiddenSize));
    }

    /// <summary>An error message with the models root (and shipped folder) written as relative paths.</summary>
    private string Relative(string message)
    {
        foreach (string root in _roots)
        {
            string trimmed = root.TrimEnd(System.IO.Path.DirectorySeparatorChar);
            message = message.Replace(trimmed + System.IO.Path.DirectorySeparatorChar, "", StringComparison.Ordinal)
                             .Replace(trimmed, ".", StringComparison.Ordinal);
        }
        return message;
    }

    public IReadOnlyCollection<ServedModel> All { get { lock (_models) return _models.Values.ToList(); } }
    public bool AllLoaded => All.All(m => m.IsLoaded);

    public ServedModel? Find(string id) { lock (_models) return _models.GetValueOrDefault(id); }

    /// <summary>
    /// Registers a new model id that serves <paramref name="baseId"/>'s weights (and shares its scheduler)
    /// with <paramref name="ropeScaling"/> as its default rope override, e.g. factors found by a LongRoPE search.
    /// Throws ArgumentException (id taken, base not loaded) or RopeScalingException.
    /// </summary>
    public ServedModel RegisterVariant(string baseId, string id, JsonObject ropeScaling, int? contextWindow = null)
    {
        if (ModelIds.Problem(id) is { } bad) throw new ArgumentException(bad);
        lock (_models)
        {
            if (_models.Keys.FirstOrDefault(k => string.Equals(k, id, StringComparison.OrdinalIgnoreCase)) is { } taken)
                throw new ArgumentException(taken == id ? $"a model with id '{id}' already exists" : $"the id '{id}' differs from the existing model '{taken}' only in case");
            var baseModel = _models.GetValueOrDefault(baseId) ?? throw new ArgumentException($"the model '{baseId}' does not exist");
            if (!baseModel.IsLoaded) throw new ArgumentException($"the model '{baseId}' is not loaded: {baseModel.Error}");
            var variant = new ServedModel(id, baseModel.Path);
            variant.LoadedVariant(baseModel, ropeScaling, contextWindow);
            _models.Add(id, variant);
            return variant;
        }
    }

    /// <summary>
    /// Removes a variant (configured models stay: they own weights and a scheduler). Requests already
    /// running on it finish; the shared weights belong to the base model. Throws
    /// <see cref="KeyNotFoundException"/> (no such model) or <see cref="InvalidOperationException"/>
    /// (a configured model, or a variant other variants are built on).
    /// </summary>
    public ServedModel RemoveVariant(string id)
    {
        lock (_models)
        {
            var model = _models.GetValueOrDefault(id) ?? throw new KeyNotFoundException($"The model '{id}' does not exist");
            if (model.BaseModelId is null)
                throw new InvalidOperationException($"'{id}' is a model the host loads (configured or shipped), not a variant: only variants can be deleted");
            if (_models.Values.FirstOrDefault(m => m.BaseModelId == id) is { } child)
                throw new InvalidOperationException($"the variant '{child.Id}' is built on '{id}': delete it first");
            _models.Remove(id);
            return model;
        }
    }

    /// <summary>A configuration section as JSON: children with keys 0..n-1 become arrays, values numbers/bools where they parse.</summary>
    public static JsonNode? ToJson(IConfigurationSection section)
    {
        var children = section.GetChildren().ToList();
        if (children.Count == 0)
        {
            if (section.Value is not { } v) return null;
            if (double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out double d)) return d;
            if (bool.TryParse(v, out bool b)) return b;
            return v;
        }
        if (children.All(c => int.TryParse(c.Key, out _)))
            return new JsonArray(children.OrderBy(c => int.Parse(c.Key, CultureInfo.InvariantCulture)).Select(ToJson).ToArray());
        var obj = new JsonObject();
        foreach (var c in children) obj[c.Key] = ToJson(c);
        return obj;
    }

    public void Dispose()
    {
        foreach (var m in _models.Values) m.Dispose();
    }
}
