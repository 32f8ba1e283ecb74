namespace PiServe.Inference.Checkpoints;

/// <summary>
/// A checkpoint folder that cannot be loaded. The message always names the file and, where there is
/// one, the field or tensor at fault, so a user can fix the checkpoint without reading our code.
/// </summary>
public sealed class CheckpointFormatException(string file, string? field, string problem)
    : Exception(field is null ? $"{file}: {problem}" : $"{file}: {field}: {problem}")
{
    public string File { get; } = file;
    public string? Field { get; } = field;
}
