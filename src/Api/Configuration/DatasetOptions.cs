using PiServe.Inference.Generation;

namespace PiServe.Api.Configuration;

public sealed class DatasetOptions
{
    public string Id { get; set; } = "";
    public string Kind { get; set; } = "";
    public string Path { get; set; } = "";
}
