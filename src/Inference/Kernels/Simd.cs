using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace PiServe.Inference.Kernels;

/// <summary>The vector width the kernels run at.</summary>
public enum SimdWidth { V128 = 128, V256 = 256, V512 = 512 }

public static class Simd
{
    /// <summary>
    /// The widest vector the hardware executes natively: 512 with AVX-512 (Zen 4/5, recent Xeons),
    /// 256 with AVX2 only (Zen 2/3, older Xeons), 128 elsewhere (Arm NEON). A Vector512 on an
    /// AVX2-only CPU is emulated in software (several times slower than two Vector256s), so every
    /// kernel is compiled for each width and dispatched once per call on this value.
    /// </summary>
    public static SimdWidth Best { get; } =
        Vector512.IsHardwareAccelerated ? SimdWidth.V512 :
        Vector256.IsHardwareAccelerated ? SimdWidth.V256 : SimdWidth.V128;

    /// <summary>
    /// e^x lane-wise for x ≤ 0, as softmax needs it after subtracting the maximum: Cephes expf's
    /// reduction (x = n·ln 2 + r, ln 2 split in two so n·ln 2 is exact enough) and degree-5 polynomial,
    /// about 1 ulp; 0 below about −87.7 and for −∞ (2^−127 has a zero exponent field), NaN stays NaN.
    /// Twelve vector operations, where the runtime's Exp (which widens to double) costs several times
    /// more; decode and prefill call the same code, so they stay bit-identical.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static V ExpNonPositive<S, V>(V x) where S : struct, ISimd<V> where V : struct
    {
        const float RoundingShift = 12582912f; // 1.5·2^23: adding it rounds to a whole number
        x = S.Max(x, S.Broadcast(-88f));
        var n = S.Subtract(S.Fma(x, S.Broadcast(1.44269504088896341f), S.Broadcast(RoundingShift)), S.Broadcast(RoundingShift));
        var r = S.Fma(n, S.Broadcast(-0.693359375f), x);
        r = S.Fma(n, S.Broadcast(2.12194440e-4f), r);
        var p = S.Fma(S.Broadcast(1.9875691500e-4f), r, S.Broadcast(1.3981999507e-3f));
        p = S.Fma(p, r, S.Broadcast(8.3334519073e-3f));
        p = S.Fma(p, r, S.Broadcast(4.1665795894e-2f));
        p = S.Fma(p, r, S.Broadcast(1.6666665459e-1f));
        p = S.Fma(p, r, S.Broadcast(5.0000001201e-1f));
        p = S.Fma(p, S.Multiply(r, r), S.Add(r, S.Broadcast(1f)));
        return S.Multiply(p, S.Pow2(n));
    }
}

/// <summary>
/// The vector operations the kernels need, over one vector type V of float lanes. Kernels are
/// generic over a struct implementing this, so the JIT compiles one specialised copy per width
/// with every call inlined (no interface dispatch in the loops).
/// </summary>
internal unsafe interface ISimd<V> where V : struct
{
    static abstract int Lanes { get; }
    static abstract V Zero { get; }
    static abstract V Load(float* p);
    static abstract void Store(V v, float* p);
    static abstract V Broadcast(float a);
    static abstract V Add(V a, V b);
    static abstract V Subtract(V a, V b);
    static abstract V Multiply(V a, V b);
    /// <summary>a·b + c.</summary>
    static abstract V Fma(V a, V b, V c);
    static abstract float Sum(V v);
    /// <summary>Lane-wise maximum; NaN in either lane gives NaN.</summary>
    static abstract V Max(V a, V b);
    /// <summary>2^n for lanes holding whole numbers n in [−127, 127] (−127 gives 0: its exponent field is 0).</summary>
    static abstract V Pow2(V n);
    /// <summary>
    /// The four sums Sum(a), Sum(b), Sum(c), Sum(d), bit for bit, in lanes 0–3: the same pairwise tree
    /// for four vectors at once (shuffles that pack the partial sums), about half the operations of
    /// four separate horizontal sums.
    /// </summary>
    static abstract Vector128<float> Sum4(V a, V b, V c, V d);
    /// <summary>
    /// Sum(v[0]) … Sum(v[Lanes − 1]) of the Lanes vectors stored at p, bit for bit, in lanes 0 … Lanes − 1:
    /// Sum4's tree for Lanes vectors at once (a transposing reduction, about three operations per sum
    /// and no lane extraction), for kernels that need a horizontal sum per row of many rows.
    /// </summary>
    static abstract V SumEach(float* p);
    /// <summary>Lanes bf16 values from p widened to f32 (bf16 is the top half of an f32).</summary>
    static abstract V LoadBf16(ushort* p);
    /// <summary>Lanes IEEE halves from p widened to f32, exactly (see <see cref="HalfBits"/>).</summary>
    static abstract V LoadF16(ushort* p);
    /// <summary>
    /// 2·Lanes bf16 values from p, split by parity: even = elements 0, 2, 4, …; odd = 1, 3, 5, ….
    /// A 32-bit lane holds one pair, so this costs one shift and one AND per 2·Lanes weights,
    /// against a widening shuffle and a shift per Lanes for <see cref="LoadBf16"/>.
    /// </summary>
    static abstract void LoadBf16Pairs(ushort* p, out V even, out V odd);
    /// <summary>2·Lanes halves split by parity like <see cref="LoadBf16Pairs"/>, converted exactly.</summary>
    static abstract void LoadF16Pairs(ushort* p, out V even, out V odd);
    /// <summary>
    /// <see cref="LoadF16Pairs"/> for halves known to be finite (no infinity or NaN among them): exact
    /// for those, in half the operations (no special-value select). Callers must know, e.g. from a
    /// scan when the values were written.
    /// </summary>
    static abstract void LoadFiniteF16Pairs(ushort* p, out V even, out V odd);
}

/// <summary>
/// IEEE half → single with integer and float ops, because .NET exposes no F16C: place exponent and
/// mantissa 13 bits up and multiply by 2^112, which rescales the exponent bias and turns subnormal
/// halves into the right normal singles; infinities and NaNs get an all-ones exponent.
/// </summary>
internal static class HalfBits
{
    public const uint SignMask = 0x8000, MagnitudeMask = 0x7FFF, InfNanMin = 0x7C00, SingleExponent = 0x7F800000;
    public const float Rebias = 5.192296858534828e33f; // 2^112
    /// <summary>
    /// For a half in the top 16 bits of a 32-bit lane: an arithmetic shift right by 3 puts its
    /// exponent and mantissa 13 bits above a single's and smears the sign into bits 28–31; this mask
    /// keeps the sign bit and the 15 magnitude bits (and drops whatever the low half held).
    /// </summary>
    public const uint HighHalfMask = 0x8FFFE000, HighHalfExponent = 0x7C000000;
}

internal readonly unsafe struct Simd512 : ISimd<Vector512<float>>
{
    public static int Lanes => 16;
    public static Vector512<float> Zero => Vector512<float>.Zero;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Load(float* p) => Vector512.Load(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector512<float> v, float* p) => v.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Broadcast(float a) => Vector512.Create(a);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Add(Vector512<float> a, Vector512<float> b) => a + b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Subtract(Vector512<float> a, Vector512<float> b) => a - b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Multiply(Vector512<float> a, Vector512<float> b) => a * b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Fma(Vector512<float> a, Vector512<float> b, Vector512<float> c) => Vector512.FusedMultiplyAdd(a, b, c);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Sum(Vector512<float> v) => Vector512.Sum(v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Max(Vector512<float> a, Vector512<float> b) => Vector512.Max(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Pow2(Vector512<float> n) => Vector512.ShiftLeft(Vector512.ConvertToInt32(n) + Vector512.Create(127), 23).AsSingle();
    /// <summary>
    /// Vector512.Sum's tree is Sum(lower 256) + Sum(upper 256) down to adjacent pairs: pack the
    /// adjacent-pair sums of a and b (then c and d) into one vector, then the pairs of pairs of all
    /// four, then add adjacent 128-bit blocks and the two halves. Without AVX-512 (the emulated width)
    /// four plain sums, the same values.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Sum4(Vector512<float> a, Vector512<float> b, Vector512<float> c, Vector512<float> d)
    {
        if (!Avx512F.IsSupported) return Vector128.Create(Sum(a), Sum(b), Sum(c), Sum(d));
        var y = BlockSums(a, b, c, d);
        y = Avx512F.Add(y, Avx512F.Shuffle4x128(y, y, 0xB1));
        y = Avx512F.Add(y, Avx512F.Shuffle4x128(y, y, 0x4E));
        return y.GetLower().GetLower();
    }
    /// <summary>
    /// Adjacent pairs of v0…v15 (shuffles within 128-bit blocks), pairs of pairs (then block k of
    /// q_m holds the block-k sums of v4m…v4m+3), adjacent blocks, halves: lane i = Sum(v_i).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> SumEach(float* p)
    {
        if (!Avx512F.IsSupported)
            return Vector512.Create(
                Vector256.Create(Sum4(Load(p), Load(p + 16), Load(p + 32), Load(p + 48)), Sum4(Load(p + 64), Load(p + 80), Load(p + 96), Load(p + 112))),
                Vector256.Create(Sum4(Load(p + 128), Load(p + 144), Load(p + 160), Load(p + 176)), Sum4(Load(p + 192), Load(p + 208), Load(p + 224), Load(p + 240))));
        var q0 = BlockSums(Load(p), Load(p + 16), Load(p + 32), Load(p + 48));
        var q1 = BlockSums(Load(p + 64), Load(p + 80), Load(p + 96), Load(p + 112));
        var q2 = BlockSums(Load(p + 128), Load(p + 144), Load(p + 160), Load(p + 176));
        var q3 = BlockSums(Load(p + 192), Load(p + 208), Load(p + 224), Load(p + 240));
        var r0 = Avx512F.Add(Avx512F.Shuffle4x128(q0, q1, 0x88), Avx512F.Shuffle4x128(q0, q1, 0xDD));
        var r1 = Avx512F.Add(Avx512F.Shuffle4x128(q2, q3, 0x88), Avx512F.Shuffle4x128(q2, q3, 0xDD));
        return Avx512F.Add(Avx512F.Shuffle4x128(r0, r1, 0x88), Avx512F.Shuffle4x128(r0, r1, 0xDD));
    }
    /// <summary>Four vectors → in each 128-bit block k, their four block-k sums ((x0 + x1) + (x2 + x3) each): Sum's first two levels.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> BlockSums(Vector512<float> a, Vector512<float> b, Vector512<float> c, Vector512<float> d)
    {
        var ab = Avx512F.Add(Avx512F.Shuffle(a, b, 0x88), Avx512F.Shuffle(a, b, 0xDD));
        var cd = Avx512F.Add(Avx512F.Shuffle(c, d, 0x88), Avx512F.Shuffle(c, d, 0xDD));
        return Avx512F.Add(Avx512F.Shuffle(ab, cd, 0x88), Avx512F.Shuffle(ab, cd, 0xDD));
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> LoadBf16(ushort* p) =>
        Vector512.ShiftLeft(Vector512.WidenLower(Vector256.Load(p).ToVector512Unsafe()), 16).AsSingle();
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> LoadF16(ushort* p) => HalfToSingle(Vector256.Load(p));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadBf16Pairs(ushort* p, out Vector512<float> even, out Vector512<float> odd)
    {
        var u = Vector512.Load((uint*)p);
        even = Vector512.ShiftLeft(u, 16).AsSingle();
        odd = (u & Vector512.Create(0xFFFF0000u)).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadF16Pairs(ushort* p, out Vector512<float> even, out Vector512<float> odd)
    {
        var u = Vector512.Load((uint*)p);
        even = HighHalfToSingle(Vector512.ShiftLeft(u, 16));
        odd = HighHalfToSingle(u);
    }

    /// <summary>The half in the top 16 bits of each lane → single, exactly (see <see cref="HalfBits.HighHalfMask"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadFiniteF16Pairs(ushort* p, out Vector512<float> even, out Vector512<float> odd)
    {
        var u = Vector512.Load((uint*)p);
        even = FiniteHighHalfToSingle(Vector512.ShiftLeft(u, 16));
        odd = FiniteHighHalfToSingle(u);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> FiniteHighHalfToSingle(Vector512<uint> t) =>
        (Vector512.ShiftRightArithmetic(t.AsInt32(), 3).AsUInt32() & Vector512.Create(HalfBits.HighHalfMask)).AsSingle() * Vector512.Create(HalfBits.Rebias);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> HighHalfToSingle(Vector512<uint> t)
    {
        var m = Vector512.ShiftRightArithmetic(t.AsInt32(), 3).AsUInt32() & Vector512.Create(HalfBits.HighHalfMask);
        var scaled = m.AsSingle() * Vector512.Create(HalfBits.Rebias);
        var infNan = Vector512.Equals(t & Vector512.Create(HalfBits.HighHalfExponent), Vector512.Create(HalfBits.HighHalfExponent));
        return Vector512.ConditionalSelect(infNan.AsSingle(), (m | Vector512.Create(HalfBits.SingleExponent)).AsSingle(), scaled);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> HalfToSingle(Vector256<ushort> h)
    {
        var u = Vector512.WidenLower(h.ToVector512Unsafe());
        var sign = Vector512.ShiftLeft(u & Vector512.Create(HalfBits.SignMask), 16);
        var em = u & Vector512.Create(HalfBits.MagnitudeMask);
        var scaled = Vector512.ShiftLeft(em, 13).AsSingle() * Vector512.Create(HalfBits.Rebias);
        var infNan = Vector512.GreaterThanOrEqual(em, Vector512.Create(HalfBits.InfNanMin));
        var special = Vector512.ShiftLeft(em, 13) | Vector512.Create(HalfBits.SingleExponent);
        return (Vector512.ConditionalSelect(infNan, special, scaled.AsUInt32()) | sign).AsSingle();
    }
}

internal readonly unsafe struct Simd256 : ISimd<Vector256<float>>
{
    public static int Lanes => 8;
    public static Vector256<float> Zero => Vector256<float>.Zero;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Load(float* p) => Vector256.Load(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector256<float> v, float* p) => v.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Broadcast(float a) => Vector256.Create(a);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Add(Vector256<float> a, Vector256<float> b) => a + b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Subtract(Vector256<float> a, Vector256<float> b) => a - b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Multiply(Vector256<float> a, Vector256<float> b) => a * b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Fma(Vector256<float> a, Vector256<float> b, Vector256<float> c) => Vector256.FusedMultiplyAdd(a, b, c);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Sum(Vector256<float> v) => Vector256.Sum(v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Max(Vector256<float> a, Vector256<float> b) => Vector256.Max(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Pow2(Vector256<float> n) => Vector256.ShiftLeft(Vector256.ConvertToInt32(n) + Vector256.Create(127), 23).AsSingle();
    /// <summary>Four sums in one pass of <see cref="Simd512.Sum4"/>'s tree (two 128-bit blocks to add at the end).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Sum4(Vector256<float> a, Vector256<float> b, Vector256<float> c, Vector256<float> d)
    {
        if (!Avx.IsSupported) return Vector128.Create(Sum(a), Sum(b), Sum(c), Sum(d));
        var y = BlockSums(a, b, c, d);
        return Sse.Add(y.GetLower(), y.GetUpper());
    }
    /// <summary>Eight sums in Sum4's tree: two halves of four block sums each, then lower + upper block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> SumEach(float* p)
    {
        if (!Avx.IsSupported)
            return Vector256.Create(Sum4(Load(p), Load(p + 8), Load(p + 16), Load(p + 24)),
                Sum4(Load(p + 32), Load(p + 40), Load(p + 48), Load(p + 56)));
        var q0 = BlockSums(Load(p), Load(p + 8), Load(p + 16), Load(p + 24));
        var q1 = BlockSums(Load(p + 32), Load(p + 40), Load(p + 48), Load(p + 56));
        return Avx.Add(Avx.Permute2x128(q0, q1, 0x20), Avx.Permute2x128(q0, q1, 0x31));
    }
    /// <summary>Four vectors → in each 128-bit block, their four block sums: Sum's first two levels.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> BlockSums(Vector256<float> a, Vector256<float> b, Vector256<float> c, Vector256<float> d)
    {
        var ab = Avx.Add(Avx.Shuffle(a, b, 0x88), Avx.Shuffle(a, b, 0xDD));
        var cd = Avx.Add(Avx.Shuffle(c, d, 0x88), Avx.Shuffle(c, d, 0xDD));
        return Avx.Add(Avx.Shuffle(ab, cd, 0x88), Avx.Shuffle(ab, cd, 0xDD));
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> LoadBf16(ushort* p) =>
        Vector256.ShiftLeft(Vector256.WidenLower(Vector128.Load(p).ToVector256Unsafe()), 16).AsSingle();
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> LoadF16(ushort* p) => HalfToSingle(Vector128.Load(p));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadBf16Pairs(ushort* p, out Vector256<float> even, out Vector256<float> odd)
    {
        var u = Vector256.Load((uint*)p);
        even = Vector256.ShiftLeft(u, 16).AsSingle();
        odd = (u & Vector256.Create(0xFFFF0000u)).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadF16Pairs(ushort* p, out Vector256<float> even, out Vector256<float> odd)
    {
        var u = Vector256.Load((uint*)p);
        even = HighHalfToSingle(Vector256.ShiftLeft(u, 16));
        odd = HighHalfToSingle(u);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadFiniteF16Pairs(ushort* p, out Vector256<float> even, out Vector256<float> odd)
    {
        var u = Vector256.Load((uint*)p);
        even = FiniteHighHalfToSingle(Vector256.ShiftLeft(u, 16));
        odd = FiniteHighHalfToSingle(u);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> FiniteHighHalfToSingle(Vector256<uint> t) =>
        (Vector256.ShiftRightArithmetic(t.AsInt32(), 3).AsUInt32() & Vector256.Create(HalfBits.HighHalfMask)).AsSingle() * Vector256.Create(HalfBits.Rebias);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> HighHalfToSingle(Vector256<uint> t)
    {
        var m = Vector256.ShiftRightArithmetic(t.AsInt32(), 3).AsUInt32() & Vector256.Create(HalfBits.HighHalfMask);
        var scaled = m.AsSingle() * Vector256.Create(HalfBits.Rebias);
        var infNan = Vector256.Equals(t & Vector256.Create(HalfBits.HighHalfExponent), Vector256.Create(HalfBits.HighHalfExponent));
        return Vector256.ConditionalSelect(infNan.AsSingle(), (m | Vector256.Create(HalfBits.SingleExponent)).AsSingle(), scaled);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> HalfToSingle(Vector128<ushort> h)
    {
        var u = Vector256.WidenLower(h.ToVector256Unsafe());
        var sign = Vector256.ShiftLeft(u & Vector256.Create(HalfBits.SignMask), 16);
        var em = u & Vector256.Create(HalfBits.MagnitudeMask);
        var scaled = Vector256.ShiftLeft(em, 13).AsSingle() * Vector256.Create(HalfBits.Rebias);
        var infNan = Vector256.GreaterThanOrEqual(em, Vector256.Create(HalfBits.InfNanMin));
        var special = Vector256.ShiftLeft(em, 13) | Vector256.Create(HalfBits.SingleExponent);
        return (Vector256.ConditionalSelect(infNan, special, scaled.AsUInt32()) | sign).AsSingle();
    }
}

internal readonly unsafe struct Simd128 : ISimd<Vector128<float>>
{
    public static int Lanes => 4;
    public static Vector128<float> Zero => Vector128<float>.Zero;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Load(float* p) => Vector128.Load(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector128<float> v, float* p) => v.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Broadcast(float a) => Vector128.Create(a);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Add(Vector128<float> a, Vector128<float> b) => a + b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Subtract(Vector128<float> a, Vector128<float> b) => a - b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Multiply(Vector128<float> a, Vector128<float> b) => a * b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Fma(Vector128<float> a, Vector128<float> b, Vector128<float> c) => Vector128.FusedMultiplyAdd(a, b, c);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Sum(Vector128<float> v) => Vector128.Sum(v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Max(Vector128<float> a, Vector128<float> b) => Vector128.Max(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Pow2(Vector128<float> n) => Vector128.ShiftLeft(Vector128.ConvertToInt32(n) + Vector128.Create(127), 23).AsSingle();
    /// <summary>Four sums in one pass of <see cref="Simd512.Sum4"/>'s tree (one 128-bit block each).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Sum4(Vector128<float> a, Vector128<float> b, Vector128<float> c, Vector128<float> d)
    {
        if (!Sse.IsSupported) return Vector128.Create(Sum(a), Sum(b), Sum(c), Sum(d));
        var ab = Sse.Add(Sse.Shuffle(a, b, 0x88), Sse.Shuffle(a, b, 0xDD));
        var cd = Sse.Add(Sse.Shuffle(c, d, 0x88), Sse.Shuffle(c, d, 0xDD));
        return Sse.Add(Sse.Shuffle(ab, cd, 0x88), Sse.Shuffle(ab, cd, 0xDD));
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> SumEach(float* p) => Sum4(Load(p), Load(p + 4), Load(p + 8), Load(p + 12));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> LoadBf16(ushort* p) =>
        Vector128.ShiftLeft(Vector128.WidenLower(Vector128.CreateScalar(*(ulong*)p).AsUInt16()), 16).AsSingle();
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> LoadF16(ushort* p)
    {
        var u = Vector128.WidenLower(Vector128.CreateScalar(*(ulong*)p).AsUInt16());
        var sign = Vector128.ShiftLeft(u & Vector128.Create(HalfBits.SignMask), 16);
        var em = u & Vector128.Create(HalfBits.MagnitudeMask);
        var scaled = Vector128.ShiftLeft(em, 13).AsSingle() * Vector128.Create(HalfBits.Rebias);
        var infNan = Vector128.GreaterThanOrEqual(em, Vector128.Create(HalfBits.InfNanMin));
        var special = Vector128.ShiftLeft(em, 13) | Vector128.Create(HalfBits.SingleExponent);
        return (Vector128.ConditionalSelect(infNan, special, scaled.AsUInt32()) | sign).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadBf16Pairs(ushort* p, out Vector128<float> even, out Vector128<float> odd)
    {
        var u = Vector128.Load((uint*)p);
        even = Vector128.ShiftLeft(u, 16).AsSingle();
        odd = (u & Vector128.Create(0xFFFF0000u)).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadF16Pairs(ushort* p, out Vector128<float> even, out Vector128<float> odd)
    {
        var u = Vector128.Load((uint*)p);
        even = HighHalfToSingle(Vector128.ShiftLeft(u, 16));
        odd = HighHalfToSingle(u);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadFiniteF16Pairs(ushort* p, out Vector128<float> even, out Vector128<float> odd)
    {
        var u = Vector128.Load((uint*)p);
        even = FiniteHighHalfToSingle(Vector128.ShiftLeft(u, 16));
        odd = FiniteHighHalfToSingle(u);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> FiniteHighHalfToSingle(Vector128<uint> t) =>
        (Vector128.ShiftRightArithmetic(t.AsInt32(), 3).AsUInt32() & Vector128.Create(HalfBits.HighHalfMask)).AsSingle() * Vector128.Create(HalfBits.Rebias);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> HighHalfToSingle(Vector128<uint> t)
    {
        var m = Vector128.ShiftRightArithmetic(t.AsInt32(), 3).AsUInt32() & Vector128.Create(HalfBits.HighHalfMask);
        var scaled = m.AsSingle() * Vector128.Create(HalfBits.Rebias);
        var infNan = Vector128.Equals(t & Vector128.Create(HalfBits.HighHalfExponent), Vector128.Create(HalfBits.HighHalfExponent));
        return Vector128.ConditionalSelect(infNan.AsSingle(), (m | Vector128.Create(HalfBits.SingleExponent)).AsSingle(), scaled);
    }
}
