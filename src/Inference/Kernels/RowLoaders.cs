using System.Runtime.CompilerServices;

namespace PiServe.Inference.Kernels;

/// <summary>Loads rows of one stored dtype (weights, cached keys and values) widened to f32; a struct type argument so each dtype gets its own compiled loop.</summary>
internal unsafe interface IRowLoader
{
    /// <summary>Bytes per stored element.</summary>
    static abstract int Size { get; }
    /// <summary>Whether rows are read in the pair layout (<see cref="LoadPairs"/>).</summary>
    static abstract bool Paired { get; }
    static abstract V Load<S, V>(byte* row, int i) where S : struct, ISimd<V> where V : struct;
    static abstract void LoadPairs<S, V>(byte* row, int i, out V even, out V odd) where S : struct, ISimd<V> where V : struct;
    static abstract float Scalar(byte* row, int i);
}

internal readonly unsafe struct Bf16Rows : IRowLoader
{
    public static int Size => 2;
    public static bool Paired => true;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V Load<S, V>(byte* row, int i) where S : struct, ISimd<V> where V : struct => S.LoadBf16((ushort*)row + i);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadPairs<S, V>(byte* row, int i, out V even, out V odd) where S : struct, ISimd<V> where V : struct =>
        S.LoadBf16Pairs((ushort*)row + i, out even, out odd);
    public static float Scalar(byte* row, int i) => BitConverter.UInt32BitsToSingle((uint)((ushort*)row)[i] << 16);
}

internal readonly unsafe struct F16Rows : IRowLoader
{
    public static int Size => 2;
    public static bool Paired => true;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V Load<S, V>(byte* row, int i) where S : struct, ISimd<V> where V : struct => S.LoadF16((ushort*)row + i);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadPairs<S, V>(byte* row, int i, out V even, out V odd) where S : struct, ISimd<V> where V : struct =>
        S.LoadF16Pairs((ushort*)row + i, out even, out odd);
    public static float Scalar(byte* row, int i) => (float)((Half*)row)[i];
}

/// <summary>
/// f16 rows known to hold no infinity or NaN (weights scanned at load, a KV cache that scanned what it
/// stored): pairs take the cheaper exact conversion; single vectors and scalars as <see cref="F16Rows"/>.
/// </summary>
internal readonly unsafe struct FiniteF16Rows : IRowLoader
{
    public static int Size => F16Rows.Size;
    public static bool Paired => F16Rows.Paired;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V Load<S, V>(byte* row, int i) where S : struct, ISimd<V> where V : struct => F16Rows.Load<S, V>(row, i);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadPairs<S, V>(byte* row, int i, out V even, out V odd) where S : struct, ISimd<V> where V : struct =>
        S.LoadFiniteF16Pairs((ushort*)row + i, out even, out odd);
    public static float Scalar(byte* row, int i) => F16Rows.Scalar(row, i);
}

internal readonly unsafe struct F32Rows : IRowLoader
{
    public static int Size => 4;
    public static bool Paired => false;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V Load<S, V>(byte* row, int i) where S : struct, ISimd<V> where V : struct => S.Load((float*)row + i);
    public static void LoadPairs<S, V>(byte* row, int i, out V even, out V odd) where S : struct, ISimd<V> where V : struct =>
        throw new NotSupportedException("f32 rows are not paired");
    public static float Scalar(byte* row, int i) => ((float*)row)[i];
}

/// <summary>
/// f32 rows already widened into the pair layout (each whole block of 2·Lanes floats: its even
/// elements, then its odd ones; the tail in place): the same values and order as reading the
/// f16/bf16 row they came from with its own loader, from plain loads.
/// </summary>
internal readonly unsafe struct PairedF32Rows : IRowLoader
{
    public static int Size => 4;
    public static bool Paired => true;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V Load<S, V>(byte* row, int i) where S : struct, ISimd<V> where V : struct => S.Load((float*)row + i);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadPairs<S, V>(byte* row, int i, out V even, out V odd) where S : struct, ISimd<V> where V : struct
    {
        even = S.Load((float*)row + i);
        odd = S.Load((float*)row + i + S.Lanes);
    }
    public static float Scalar(byte* row, int i) => ((float*)row)[i];
}
