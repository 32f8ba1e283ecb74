namespace PiServe.Inference.Rope;

/// <summary>A rope_scaling object we cannot use; <see cref="Field"/> names the offending key.</summary>
public sealed class RopeScalingException(string field, string problem) : ArgumentException($"rope_scaling.{field}: {problem}")
{
    public string Field { get; } = field;
    public string Problem { get; } = problem;
}
