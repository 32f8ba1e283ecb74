namespace PiServe.Inference.Checkpoints;

/// <summary>Element types we compute with. Weights stay in the dtype they were stored in.</summary>
public enum DType { F32, F16, BF16 }

public static class DTypes
{
    public static int SizeOf(DType t) => t == DType.F32 ? 4 : 2;

    /// <summary>f32 → bf16 bits, rounding to nearest even; NaN stays NaN (rounding would carry it into the sign).</summary>
    public static ushort ToBf16(float f)
    {
        uint u = BitConverter.SingleToUInt32Bits(f);
        if (float.IsNaN(f)) return (ushort)((u >> 16) | 0x40);
        return (ushort)((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
    }

    /// <summary>safetensors spelling → DType; null for dtypes safetensors knows but we do not compute with.</summary>
    public static DType? FromSafetensors(string s) => s switch
    {
        "F32" => DType.F32,
        "F16" => DType.F16,
        "BF16" => DType.BF16,
        _ => null,
    };

    public static string ToSafetensors(DType t) => t switch
    {
        DType.F32 => "F32",
        DType.F16 => "F16",
        _ => "BF16",
    };

    /// <summary>The dtypes the safetensors format defines; anything else is not a safetensors file.</summary>
    public static readonly HashSet<string> KnownSafetensorsDtypes =
        ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64"];
}
