using PiServe.Inference.Generation;

namespace PiServe.Api.Configuration;

/// <summary>The "PiServe" configuration section (appsettings.json, --PiServe:..., PiServe__... env vars).</summary>
public sealed class PiServeOptions
{
    public const string Section = "PiServe";

    /// <summary>Model paths must resolve inside this folder; anything else is refused.</summary>
    public string ModelsRoot { get; set; } = "models";
    /// <summary>The models to serve. Empty: serve every model folder in <see cref="ShippedModels"/>.</summary>
    public List<ModelOptions> Models { get; set; } = [];
    /// <summary>The folder of shipped models served when <see cref="Models"/> is empty (default: models/ next to the executable).</summary>
    public string ShippedModels { get; set; } = "";
    /// <summary>When non-empty, every endpoint but health and metrics needs "Authorization: Bearer KEY".</summary>
    public List<string> ApiKeys { get; set; } = [];
    public SchedulerSettings Scheduler { get; set; } = new();

    /// <summary>Dataset paths must resolve inside this folder; anything else is refused.</summary>
    public string DataRoot { get; set; } = "data";
    /// <summary>The folder of shipped datasets used when <see cref="Datasets"/> is empty (default: datasets/ next to the executable).</summary>
    public string ShippedDatasets { get; set; } = "";
    /// <summary>
    /// Datasets evaluation jobs may name: {Id, Kind (pg19 | proof-pile | govreport), Path inside DataRoot}.
    /// Empty: the shipped datasets (<see cref="ShippedDatasets"/>, listed in its datasets.json) are registered instead.
    /// </summary>
    public List<DatasetOptions> Datasets { get; set; } = [];
    /// <summary>Where the evaluation jobs and model variants live (SQLite here, or a shared PostgreSQL).</summary>
    public JobStoreOptions JobStore { get; set; } = new();
    /// <summary>Where the server keeps its state: the evaluation job database (evals.db) when JobStore:Kind is sqlite.</summary>
    public string DataDirectory { get; set; } = "piserve-data";
    /// <summary>
    /// Evaluation jobs worked on at once (interactive completions keep priority over all of them); 0 makes
    /// a serving-only replica whose jobs run on the other hosts sharing its PostgreSQL job store.
    /// </summary>
    public int EvalWorkers { get; set; } = 1;
    /// <summary>
    /// Element type of the KV cache for every model without its own: f32 (exact), f16 or bf16 (half
    /// the memory and attention traffic; accuracy cost in docs/PERFORMANCE.md). As vLLM's --kv-cache-dtype.
    /// </summary>
    public string KvCacheDType { get; set; } = "f32";
    /// <summary>
    /// Where models run: cpu (the SIMD engine, default), cuda (an NVIDIA GPU through ILGPU: weights, KV
    /// caches and the whole forward pass in device memory) or ilgpu-cpu (the same GPU kernels on ILGPU's
    /// CPU accelerator: slow, for tests). Per model as PiServe:Models:N:Backend.
    /// </summary>
    public string Backend { get; set; } = "cpu";
    /// <summary>
    /// How activations are multiplied by the weights for every model without its own setting: exact
    /// (f32 activations; results within 1e-3 of the float64 reference, evaluations equal the reference
    /// tools) or bf16 (for bf16 checkpoints on CPUs with AVX512-BF16: activations rounded to bf16, as
    /// llama.cpp and PyTorch's bf16 matmuls do; about 1.6× the prefill speed, accuracy cost in
    /// docs/PERFORMANCE.md). Per model as PiServe:Models:N:MatmulPrecision.
    /// </summary>
    public string MatmulPrecision { get; set; } = "exact";
}
