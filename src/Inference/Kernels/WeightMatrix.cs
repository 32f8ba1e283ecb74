using PiServe.Inference.Checkpoints;

namespace PiServe.Inference.Kernels;

/// <summary>A [Rows, Cols] row-major weight matrix in its stored dtype (memory-mapped, never copied).</summary>
public readonly unsafe struct WeightMatrix(byte* data, int rows, int cols, DType dtype)
{
    public byte* Data { get; } = data;
    public int Rows { get; } = rows;
    public int Cols { get; } = cols;
    public DType DType { get; } = dtype;

    public static WeightMatrix From(TensorView t) =>
        new(t.Data, checked((int)t.Shape[0]), t.Shape.Length > 1 ? checked((int)t.Shape[1]) : 1, t.DType);

    public byte* Row(int r) => Data + (long)r * Cols * DTypes.SizeOf(DType);
}
