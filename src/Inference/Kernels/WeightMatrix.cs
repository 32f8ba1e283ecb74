using System.Runtime.Intrinsics;
using PiServe.Inference.Checkpoints;

namespace PiServe.Inference.Kernels;

/// <summary>
/// A [Rows, Cols] row-major weight matrix in its stored dtype (memory-mapped, never copied).
/// Finite: known to hold no infinity or NaN, which lets f16 rows be widened with the cheaper exact
/// conversion (<see cref="ISimd{V}.LoadFiniteF16Pairs"/>); false unless checked.
/// </summary>
public readonly unsafe struct WeightMatrix(byte* data, int rows, int cols, DType dtype, bool finite = false)
{
    public byte* Data { get; } = data;
    public int Rows { get; } = rows;
    public int Cols { get; } = cols;
    public DType DType { get; } = dtype;
    public bool Finite { get; } = finite;

    /// <summary>The tensor as a matrix; f16 tensors are scanned once for infinities and NaNs.</summary>
    public static WeightMatrix From(TensorView t)
    {
        int rows = checked((int)t.Shape[0]), cols = t.Shape.Length > 1 ? checked((int)t.Shape[1]) : 1;
        return new(t.Data, rows, cols, t.DType, t.DType == DType.F16 && NoInfOrNaN((ushort*)t.Data, (long)rows * cols));
    }

    public byte* Row(int r) => Data + (long)r * Cols * DTypes.SizeOf(DType);

    /// <summary>
    /// Rows [start, start + count) as a matrix of their own, sharing the memory: how a fused tensor
    /// (Phi-3's qkv_proj, gate_up_proj) is used without a copy — the kernels see three (or two)
    /// ordinary matrices in one parallel region, exactly as for separate q/k/v tensors.
    /// </summary>
    public WeightMatrix RowSlice(int start, int count)
    {
        if (start < 0 || count < 0 || start + count > Rows) throw new ArgumentOutOfRangeException(nameof(start), $"rows [{start}, {start + count}) of {Rows}");
        return new WeightMatrix(Row(start), count, Cols, DType, Finite);
    }

    /// <summary>Whether none of the halves has the all-ones exponent of an infinity or NaN.</summary>
    public static bool NoInfOrNaN(ushort* h, long count)
    {
        long i = 0;
        var exponent = Vector256.Create((ushort)0x7C00);
        for (; i + 16 <= count; i += 16)
            if (Vector256.EqualsAny(Vector256.Load(h + i) & exponent, exponent)) return false;
        for (; i < count; i++)
            if ((h[i] & 0x7C00) == 0x7C00) return false;
        return true;
    }
}
