using System.Runtime.InteropServices;

namespace PiServe.Inference.Kernels;

/// <summary>
/// The optional native matmul kernels (Native/piserve_kernels.c, built with the machine's gcc into
/// libpiserve_kernels.so beside the assemblies). Loaded once; when the library is absent, built for
/// another ABI version, disabled with PISERVE_NATIVE_KERNELS=off, or the CPU lacks the instructions,
/// the managed kernels run and <see cref="Status"/> says why.
/// <list type="bullet">
/// <item><see cref="Micro4F32"/>, <see cref="Micro4Bf16Rows"/>, <see cref="Micro4F16Rows"/>, <see cref="Micro4F16HalfPanel"/> (AVX-512F) and <see cref="Micro4F32Avx2"/>
/// (AVX2 + FMA + F16C): the exact micro-kernel of prefill and batched decode, bit-identical to the
/// managed one at the same width (Gemm.Micro4x4 / Micro4x2), so they change speed only.</item>
/// <item><see cref="GemmBf16Dot"/> and <see cref="ToBf16"/>: matmuls with bf16 activations through
/// VDPBF16PS (AVX512-BF16), for bf16 weights when a model's <see cref="MatmulPrecision"/> is Bf16.</item>
/// <item><see cref="ScoresF16"/> and <see cref="AccumulateF16"/> (AVX-512F): decode attention over an
/// f16 KV cache read in place with VCVTPH2PS, bit-identical to CpuBackend's managed loops.</item>
/// </list>
/// </summary>
public static unsafe class NativeKernels
{
    public const string LibraryFile = "libpiserve_kernels.so";
    private const int AbiVersion = 9;

    private static readonly delegate* unmanaged<float*, int, float*, int, float*, long, float*, void> s_micro4F32;
    private static readonly delegate* unmanaged<ushort*, int, float*, int, float*, long, float*, void> s_micro4Bf16Rows;
    private static readonly delegate* unmanaged<ushort*, int, float*, int, float*, long, float*, void> s_micro4F16Rows;
    private static readonly delegate* unmanaged<ushort*, int, ushort*, float*, int, float*, long, float*, void> s_micro4F16HalfPanel;
    private static readonly delegate* unmanaged<float*, int, float*, int, float*, long, float*, void> s_micro4F32Avx2;
    private static readonly delegate* unmanaged<ushort*, int, ushort*, float*, int, float*, long, float*, void> s_micro4F16HalfPanelAvx2;
    private static readonly delegate* unmanaged<ushort*, int, int, int, ushort*, int, float*, long, float*, void> s_gemmBf16Dot;
    private static readonly delegate* unmanaged<float*, ushort*, long, void> s_toBf16;
    private static readonly delegate* unmanaged<ushort*, long, int, float*, int, float, float*, void> s_scoresF16;
    private static readonly delegate* unmanaged<ushort*, long, int, float*, float*, int, void> s_accumulateF16;

    static NativeKernels()
    {
        string? off = Environment.GetEnvironmentVariable("PISERVE_NATIVE_KERNELS");
        if (off is not null && (off.Equals("off", StringComparison.OrdinalIgnoreCase) || off == "0"))
        {
            Status = "off (PISERVE_NATIVE_KERNELS)";
            return;
        }
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64)
        {
            Status = "not built for this platform (linux-x64 only)";
            return;
        }
        string path = Path.Combine(AppContext.BaseDirectory, LibraryFile);
        if (!File.Exists(path))
        {
            Status = $"not built ({LibraryFile} is not beside the assemblies: gcc was missing or failed at build time)";
            return;
        }
        if (!NativeLibrary.TryLoad(path, out var lib))
        {
            Status = $"{LibraryFile} failed to load";
            return;
        }
        // A library from another build (a stale copy) must not take the process down: every symbol is looked up with TryGetExport.
        nint Export(string name) => NativeLibrary.TryGetExport(lib, name, out var f) ? f : 0;
        nint versionFn = Export("pk_abi_version"), featuresFn = Export("pk_features");
        int version = versionFn == 0 ? 0 : ((delegate* unmanaged<int>)versionFn)();
        if (version != AbiVersion || featuresFn == 0)
        {
            Status = $"{LibraryFile} is ABI version {version}, this build needs {AbiVersion}";
            return;
        }
        int features = ((delegate* unmanaged<int>)featuresFn)();
        // A process whose runtime keeps AVX-512 off (DOTNET_EnableAVX512=0) computes at width 256
        // throughout, as on an AVX2-only CPU: the AVX-512 and BF16 kernels stay off with it, so that
        // setting reproduces the AVX2 machine kind on an AVX-512 one.
        bool avx512Off = (features & 3) != 0 && !System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated;
        if (avx512Off) features &= 4;
        nint micro = Export("pk_micro4_f32"), dot = Export("pk_gemm_bf16dot"), toBf16 = Export("pk_f32_to_bf16");
        nint bf16Rows = Export("pk_micro4_bf16_rows"), microAvx2 = Export("pk_micro4_f32_avx2");
        nint scores = Export("pk_scores_f16"), accumulate = Export("pk_accumulate_f16"), f16HalfPanelAvx2 = Export("pk_micro4_f16_half_panel_avx2");
        nint f16Rows = Export("pk_micro4_f16_rows"), f16HalfPanel = Export("pk_micro4_f16_half_panel");
        if (micro == 0 || dot == 0 || toBf16 == 0 || bf16Rows == 0 || microAvx2 == 0 || scores == 0 || accumulate == 0
            || f16HalfPanelAvx2 == 0 || f16Rows == 0 || f16HalfPanel == 0)
        {
            Status = $"{LibraryFile} lacks exports of ABI version {AbiVersion}";
            return;
        }
        if ((features & 1) != 0)
        {
            s_micro4F32 = (delegate* unmanaged<float*, int, float*, int, float*, long, float*, void>)micro;
            s_micro4Bf16Rows = (delegate* unmanaged<ushort*, int, float*, int, float*, long, float*, void>)bf16Rows;
            s_micro4F16Rows = (delegate* unmanaged<ushort*, int, float*, int, float*, long, float*, void>)f16Rows;
            s_micro4F16HalfPanel = (delegate* unmanaged<ushort*, int, ushort*, float*, int, float*, long, float*, void>)f16HalfPanel;
            s_scoresF16 = (delegate* unmanaged<ushort*, long, int, float*, int, float, float*, void>)scores;
            s_accumulateF16 = (delegate* unmanaged<ushort*, long, int, float*, float*, int, void>)accumulate;
        }
        if ((features & 4) != 0)
        {
            s_micro4F32Avx2 = (delegate* unmanaged<float*, int, float*, int, float*, long, float*, void>)microAvx2;
            s_micro4F16HalfPanelAvx2 = (delegate* unmanaged<ushort*, int, ushort*, float*, int, float*, long, float*, void>)f16HalfPanelAvx2;
        }
        if ((features & 2) != 0)
        {
            s_gemmBf16Dot = (delegate* unmanaged<ushort*, int, int, int, ushort*, int, float*, long, float*, void>)dot;
            s_toBf16 = (delegate* unmanaged<float*, ushort*, long, void>)toBf16;
        }
        Status = (features & 3) == 3 ? "loaded: AVX-512 and AVX2 exact micro-kernels, AVX512-BF16 dot products"
            : (features & 1) != 0 ? "loaded: AVX-512 and AVX2 exact micro-kernels (no AVX512-BF16 on this CPU)"
            : (features & 4) != 0 ? (avx512Off ? "loaded: AVX2 exact micro-kernel (AVX-512 off in the runtime)" : "loaded: AVX2 exact micro-kernel (no AVX-512 on this CPU)")
            : "loaded, unused: this CPU has neither AVX-512 nor AVX2 with FMA and F16C";
    }

    /// <summary>What was loaded, or why nothing was (shown by `bench` and the startup log).</summary>
    public static string Status { get; } = "";

    /// <summary>Whether the exact AVX-512 micro-kernel is available.</summary>
    public static bool HasMicro4F32 => s_micro4F32 != null;

    /// <summary>Whether the exact micro-kernel for a vector width (512: AVX-512, 256: AVX2 + FMA + F16C) is available.</summary>
    public static bool HasMicroFor(SimdWidth width) =>
        width == SimdWidth.V512 ? s_micro4F32 != null : width == SimdWidth.V256 && s_micro4F32Avx2 != null;

    /// <summary>Whether bf16-activation matmuls (VDPBF16PS) are available.</summary>
    public static bool HasBf16Dot => s_gemmBf16Dot != null;

    /// <summary>
    /// y[t·yStride + j] = Σ_i w[j·k + i]·x[t·k + i] (+ bias[j]) for 4 panel rows and n tokens: the
    /// arithmetic of Gemm.Micro4x4 / Gemm.DotF32 at width 512, bit for bit.
    /// </summary>
    public static void Micro4F32(float* w, int k, float* x, int n, float* y, long yStride, float* bias) =>
        s_micro4F32(w, k, x, n, y, yStride, bias);

    /// <summary><see cref="Micro4F32"/> at width 256 (x in the pair layout of width 256): Gemm's managed Vector256 arithmetic, bit for bit.</summary>
    public static void Micro4F32Avx2(float* w, int k, float* x, int n, float* y, long yStride, float* bias) =>
        s_micro4F32Avx2(w, k, x, n, y, yStride, bias);

    /// <summary>
    /// <see cref="Micro4F32"/>'s results for 4 bf16 rows read in place (each load split into its even
    /// and odd weights, as the panel would hold them): no panel pass, bit for bit the same sums.
    /// </summary>
    public static void Micro4Bf16Rows(ushort* w, int k, float* x, int n, float* y, long yStride, float* bias) =>
        s_micro4Bf16Rows(w, k, x, n, y, yStride, bias);

    /// <summary>
    /// <see cref="Micro4F32"/>'s results for 4 finite f16 rows converted in registers (VPMOVDW + VCVTPH2PS
    /// into the even and odd weights the panel would hold): bit for bit the same sums, no panel pass.
    /// </summary>
    public static void Micro4F16Rows(ushort* w, int k, float* x, int n, float* y, long yStride, float* bias) =>
        s_micro4F16Rows(w, k, x, n, y, yStride, bias);

    /// <summary>
    /// <see cref="Micro4F32"/>'s results for 4 finite f16 rows through a half panel (<paramref name="panel"/>:
    /// 4·k halves of scratch): each row split once into the pair layout as halves, then converted with
    /// VCVTPH2PS as the micro-kernel loads it, 6 tokens per pass. Bit for bit the same sums.
    /// </summary>
    public static void Micro4F16HalfPanel(ushort* w, int k, ushort* panel, float* x, int n, float* y, long yStride, float* bias) =>
        s_micro4F16HalfPanel(w, k, panel, x, n, y, yStride, bias);

    /// <summary><see cref="Micro4F16HalfPanel"/> at width 256 (available with <see cref="Micro4F32Avx2"/>): Gemm's managed Vector256 arithmetic, bit for bit.</summary>
    public static void Micro4F16HalfPanelAvx2(ushort* w, int k, ushort* panel, float* x, int n, float* y, long yStride, float* bias) =>
        s_micro4F16HalfPanelAvx2(w, k, panel, x, n, y, yStride, bias);

    /// <summary>Rows [r0, r1) of y[t·yStride + r] = Σ_i W[r, i]·xb[t, i] (+ bias[r]) over bf16 rows of k and n bf16 tokens.</summary>
    public static void GemmBf16Dot(ushort* w, int k, int r0, int r1, ushort* xb, int n, float* y, long yStride, float* bias) =>
        s_gemmBf16Dot(w, k, r0, r1, xb, n, y, yStride, bias);

    /// <summary>Whether the f16 decode-attention kernels (<see cref="ScoresF16"/>, <see cref="AccumulateF16"/>) are available.</summary>
    public static bool HasAttentionF16 => s_scoresF16 != null;

    /// <summary>
    /// scores[j] = scale · q·key_j for count finite f16 keys (key j at keys + j·stride halves), q in the
    /// pair layout of width 512: CpuBackend.Scores over FiniteF16Rows at Vector512, bit for bit.
    /// </summary>
    public static void ScoresF16(ushort* keys, long stride, int count, float* q, int headDim, float scale, float* scores) =>
        s_scoresF16(keys, stride, count, q, headDim, scale, scores);

    /// <summary>acc += Σ_j p[j]·value_j over count finite f16 values, acc in the pair layout of width 512: CpuBackend.AccumulateValues, bit for bit.</summary>
    public static void AccumulateF16(ushort* values, long stride, int count, float* p, float* acc, int headDim) =>
        s_accumulateF16(values, stride, count, p, acc, headDim);

    /// <summary>count floats → bf16, rounded to nearest even.</summary>
    public static void ToBf16(float* x, ushort* xb, long count) => s_toBf16(x, xb, count);
}

/// <summary>
/// How a model's matmuls multiply activations by the weights. Exact (the default): f32 activations,
/// every product added in f32, results within 1e-3 of the float64 reference. Bf16: for bf16 weights
/// on a CPU with AVX512-BF16, activations are rounded to bf16 and pairs of products added by
/// VDPBF16PS, as llama.cpp and PyTorch's bf16 matmuls do — about 1.6× the prefill speed, at the
/// accuracy cost measured in docs/PERFORMANCE.md. Both are per token: a token's results do not
/// depend on the batch or chunk it was computed in.
/// </summary>
public enum MatmulPrecision { Exact, Bf16 }

public static class MatmulPrecisions
{
    public static MatmulPrecision Parse(string? value) => value?.Trim().ToLowerInvariant() switch
    {
        null or "" or "exact" or "f32" => MatmulPrecision.Exact,
        "bf16" => MatmulPrecision.Bf16,
        _ => throw new ArgumentException($"matmul precision '{value}' is not one of exact, bf16"),
    };

    public static string Name(this MatmulPrecision p) => p == MatmulPrecision.Bf16 ? "bf16" : "exact";
}
