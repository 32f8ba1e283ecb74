using PiServe.Inference.Generation;

namespace PiServe.Api.Configuration;

public sealed class ModelOptions
{
    public string Id { get; set; } = "";
    public string Path { get; set; } = "";
    /// <summary>This model's KV cache element type (f32, f16, bf16); empty: PiServe:KvCacheDType.</summary>
    public string KvCacheDType { get; set; } = "";
    /// <summary>This model's backend (cpu, cuda, ilgpu-cpu); empty: PiServe:Backend.</summary>
    public string Backend { get; set; } = "";
    /// <summary>This model's matmul precision (exact, bf16); empty: PiServe:MatmulPrecision.</summary>
    public string MatmulPrecision { get; set; } = "";
    // RopeScaling (optional, same keys as config.json's rope_scaling) is read from the section as
    // JSON by the registry: the options binder cannot bind arbitrary JSON objects.
}
