using System.Runtime.Intrinsics;
using PiServe.Inference.Checkpoints;
using PiServe.Inference.Kernels;

namespace PiServe.Inference.Tests.Kernels;

public unsafe class GemmTests
{
    /// <summary>Odd shapes hit every tail: rows not a multiple of 8/4/16, k not a multiple of 16, tokens not a multiple of 4 or 64.</summary>
    [Theory]
    [InlineData(DType.F32, 37, 53, 1)]
    [InlineData(DType.BF16, 37, 53, 1)]
    [InlineData(DType.F16, 37, 53, 1)]
    [InlineData(DType.BF16, 45, 130, 3)]
    [InlineData(DType.F16, 29, 96, 7)]
    [InlineData(DType.F32, 64, 64, 70)]
    [InlineData(DType.BF16, 100, 77, 131)]
    [InlineData(DType.F16, 33, 200, 65)]
    public void MatMulMatchesADoublePrecisionReference(DType dtype, int rows, int cols, int tokens)
    {
        var rng = new Random(rows * 1000 + cols + tokens);
        var wf = Enumerable.Range(0, rows * cols).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var bytes = SafetensorsWriter.Encode(wf, dtype);
        var x = Enumerable.Range(0, tokens * cols).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var bias = Enumerable.Range(0, rows).Select(i => (float)i / rows).ToArray();
        var y = new float[tokens * rows];
        var stored = new float[rows * cols];
        fixed (byte* wp = bytes)
        fixed (float* xp = x, yp = y, bp = bias, sp = stored)
        {
            var w = new WeightMatrix(wp, rows, cols, dtype);
            for (int r = 0; r < rows; r++) Widen.Row(w.Row(r), dtype, sp + (long)r * cols, cols);
            new CpuBackend(2).MatMul(w, xp, tokens, yp, bp);
        }
        for (int t = 0; t < tokens; t++)
            for (int r = 0; r < rows; r++)
            {
                double expected = bias[r];
                for (int k = 0; k < cols; k++) expected += (double)stored[r * cols + k] * x[t * cols + k];
                Assert.True(Math.Abs(y[t * rows + r] - expected) < 1e-4 * Math.Sqrt(cols), $"y[{t},{r}] = {y[t * rows + r]}, expected {expected}");
            }
    }

    [Fact]
    public void HalfToSingleIsExactForEveryHalf()
    {
        var halves = new ushort[65536];
        for (int i = 0; i < halves.Length; i++) halves[i] = (ushort)i;
        fixed (ushort* h = halves)
            for (int i = 0; i < halves.Length; i += 16)
            {
                var v = Gemm.HalfToSingle(Vector256.Load(h + i));
                for (int j = 0; j < 16; j++)
                {
                    float expected = (float)BitConverter.UInt16BitsToHalf(halves[i + j]);
                    if (float.IsNaN(expected)) Assert.True(float.IsNaN(v[j]), $"half 0x{i + j:X4} should be NaN");
                    else Assert.Equal(BitConverter.SingleToUInt32Bits(expected), BitConverter.SingleToUInt32Bits(v[j]));
                }
            }
    }
}
