// PiServe's native matmul kernels: the inner loops that .NET cannot express at full speed.
//
// Built by src/Inference/PiServe.Inference.csproj with the machine's gcc (the target
// CompileNativeKernels) into libpiserve_kernels.so next to the assemblies, and loaded at run time by
// Kernels/NativeKernels.cs. Everything here is optional: when the library is missing, fails to
// load, or the CPU lacks the instructions, the managed kernels in Kernels/Gemm.cs run instead.
//
// 1. pk_micro4_f32 — the exact micro-kernel of prefill and batched decode (AVX-512F). It performs,
//    for 4 widened weight rows × any number of tokens, exactly the arithmetic of the managed
//    Gemm.Micro4x4/DotF32: per output one 16-lane accumulator over the pair-layout panel in steps of
//    16, the balanced pairwise horizontal sum of Vector512.Sum, then the scalar tail as separate
//    multiply and add (compiled with -ffp-contract=off so gcc fuses nothing). Results are
//    bit-identical to the managed kernels (tests assert it), so decode, batched decode and prefill
//    keep adding every product in one order. It is faster because it runs 4 rows × 6 tokens (24
//    accumulators, which the JIT spills) and sums four outputs at once. bf16 and f16 rows skip the
//    f32 panel: bf16 rows split in registers, f16 rows convert with F16C (in place for a decode
//    batch, from a panel of halves in the pair layout for a prefill tile: pk_micro4_f16_half_panel).
//    pk_micro4_f32_avx2 is the same at width 256 for CPUs without AVX-512.
// 2. pk_gemm_bf16dot — matmuls with bf16 activations (AVX512-BF16, VDPBF16PS), for bf16 weights
//    when a model opts in (MatmulPrecision = bf16): activations are rounded to bf16 (round to
//    nearest even), products of pairs are added into f32 accumulators, as llama.cpp and PyTorch's
//    bf16 matmuls do. Twice the products per instruction of an f32 FMA. Each output depends only on
//    its weight row and its token, so results do not depend on batching (docs/PERFORMANCE.md).
// 3. pk_scores_f16 / pk_accumulate_f16 — decode attention over an f16 KV cache (AVX-512F): a
//    query's scores against the cached keys and the probability-weighted sum of the values, read
//    in place with VCVTPH2PS. The managed kernels (CpuBackend.Scores / AccumulateValues) convert
//    f16 with several integer operations per vector, which made attention at depth compute bound;
//    these perform the same operations in the same order, so the bits are the managed kernels'.
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define PK_API __attribute__((visibility("default")))
#define PK_ABI_VERSION 9

PK_API int pk_abi_version(void) { return PK_ABI_VERSION; }

// bit 0: AVX-512F (the exact micro-kernel); bit 1: AVX512-BF16 with AVX-512BW (the bf16 dot kernel);
// bit 2: AVX2 + FMA + F16C (the exact micro-kernel at width 256).
PK_API int pk_features(void)
{
    __builtin_cpu_init();
    int f = 0;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) f |= 4;
    if (__builtin_cpu_supports("avx512f")) f |= 1;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512bf16")) f |= 2;
    return f;
}

// ---------------------------------------------------------------------------------------------
// Exact f32 micro-kernel.

// Vector512.Sum: Sum(lower 256) + Sum(upper 256), recursively down to adjacent pairs — a balanced
// pairwise tree over the lanes in order. Float addition is commutative, so adding a vector to its
// lane-swapped copy level by level yields the same value in lane 0.
__attribute__((target("avx512f"), always_inline)) static inline float hsum16(__m512 v)
{
    v = _mm512_add_ps(v, _mm512_permute_ps(v, 0xB1));                                  // (0+1), (2+3), ...
    v = _mm512_add_ps(v, _mm512_permute_ps(v, 0x4E));                                  // 128-bit sums
    v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0xB1));                            // 256-bit sums
    v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0x4E));                            // 512-bit sum
    return _mm512_cvtss_f32(v);
}

// The four horizontal sums of c0..c3 at once, each formed by Vector512.Sum's tree (adjacent pairs,
// then pairs of pairs within each 128-bit block, then adjacent blocks, then the two halves), so
// lane j of the result is bit for bit hsum16(cj): 13 operations for four sums instead of 32.
__attribute__((target("avx512f"), always_inline)) static inline __m128 hsum16x4(__m512 c0, __m512 c1, __m512 c2, __m512 c3)
{
    __m512 x01 = _mm512_add_ps(_mm512_shuffle_ps(c0, c1, 0x88), _mm512_shuffle_ps(c0, c1, 0xDD)); // c0 (0+1),(2+3), c1 (0+1),(2+3)
    __m512 x23 = _mm512_add_ps(_mm512_shuffle_ps(c2, c3, 0x88), _mm512_shuffle_ps(c2, c3, 0xDD));
    __m512 y = _mm512_add_ps(_mm512_shuffle_ps(x01, x23, 0x88), _mm512_shuffle_ps(x01, x23, 0xDD));  // per block: c0..c3 block sums
    y = _mm512_add_ps(y, _mm512_shuffle_f32x4(y, y, 0xB1));                                          // adjacent blocks
    y = _mm512_add_ps(y, _mm512_shuffle_f32x4(y, y, 0x4E));                                          // halves
    return _mm512_castps512_ps128(y);
}

// Four sums without a scalar tail (k a multiple of the vector blocks, the usual case), stored as
// out[j] = sum[j] + (bias ? bias[j] : 0) with one vector add and store: the same values as the scalar
// loop (adding +0 included), without its store, reload and four scalar stores per token, which cost
// ~12% of the AVX2 kernel's time (3 tokens a tile).
__attribute__((target("sse"), always_inline)) static inline void store4_plus_bias(__m128 sums, float* out, const float* bias)
{
    _mm_storeu_ps(out, _mm_add_ps(sums, bias ? _mm_loadu_ps(bias) : _mm_setzero_ps()));
}

// One token's four outputs: the horizontal sums, then each row's scalar tail [i, k) as separate
// multiply and add, then the bias.
__attribute__((target("avx512f"), always_inline)) static inline void finish4_f32(__m512 c0, __m512 c1, __m512 c2, __m512 c3,
                                                                                const float* w, const float* xt, int i, int k,
                                                                                float* out, const float* bias)
{
    __m128 sums = hsum16x4(c0, c1, c2, c3);
    if (i == k) { store4_plus_bias(sums, out, bias); return; }
    float s[4];
    _mm_storeu_ps(s, sums);
    for (int j = 0; j < 4; j++)
    {
        const float* wj = w + (long)j * k;
        for (int ii = i; ii < k; ii++) s[j] += wj[ii] * xt[ii];
        out[j] = s[j] + (bias ? bias[j] : 0.0f);
    }
}

// Accumulators are named variables, not an array: gcc keeps a 24-vector array in memory and
// stores it every iteration. NT is a compile-time constant in every caller, so the `if (NT > t)`
// tests fold away and each instance keeps exactly 4·NT accumulators in registers.
#define PK_DECL(t) __m512 c##t##0 = _mm512_setzero_ps(), c##t##1 = c##t##0, c##t##2 = c##t##0, c##t##3 = c##t##0;
#define PK_FOR_TOKENS(M) M(0) M(1) M(2) M(3) M(4) M(5)

// The caller's next panel — the four 16-bit rows after the four at w, k elements apart — one cache
// line per row ahead of column i: a decode batch streams each row from memory once, and the hardware
// prefetcher follows four interleaved row streams poorly. Into L2 (T1), as the GEMV does: prefetches
// into L1 (T0) compete with the loads for L1's few miss buffers, and one thread streamed bf16 rows at
// 8–11 GB/s with them against 17–21 GB/s into L2 (plain read 24; 1, 4 tokens). (Past the matrix's
// last row a prefetch reads nothing and cannot fault.)
static inline __attribute__((always_inline)) void prefetch_next_panel(const uint16_t* w, int k, int i)
{
    for (int j = 4; j < 8; j++) _mm_prefetch((const char*)(w + (long)j * k + i), _MM_HINT_T1);
}

// Token tiling, shared by every micro-kernel. A kernel KERNEL(NT, w, k, x, y, yStride, bias) is
// always_inline; PK_TILES<MAX> compiles it once per NT = 1..MAX (a constant in each instance) into
// the table NAME_tiles[NT], and pk_run_tiles runs n tokens as tiles of MAX, then one smaller tile.
typedef void (*pk_tile)(const void* w, int k, const void* x, float* y, long yStride, const float* bias);

static void pk_run_tiles(const pk_tile* tiles, int max, const void* w, int k, const void* x, int xBytes, int n,
                         float* y, long yStride, const float* bias)
{
    for (int t = 0; t < n; t += max)
    {
        int nt = n - t < max ? n - t : max;
        tiles[nt](w, k, (const char*)x + (long)t * k * xBytes, y + t * yStride, yStride, bias);
    }
}

#define PK_TILE(NAME, KERNEL, TARGET, WT, XT, NT)                                                       \
    __attribute__((target(TARGET))) static void NAME##_##NT(const void* w, int k, const void* x, float* y, long s, const float* b) \
    {                                                                                                   \
        KERNEL(NT, (const WT*)w, k, (const XT*)x, y, s, b);                                             \
    }
#define PK_TILE_1TO3(NAME, KERNEL, TARGET, WT, XT)                                                      \
    PK_TILE(NAME, KERNEL, TARGET, WT, XT, 1) PK_TILE(NAME, KERNEL, TARGET, WT, XT, 2) PK_TILE(NAME, KERNEL, TARGET, WT, XT, 3)
#define PK_TILE_1TO5(NAME, KERNEL, TARGET, WT, XT)                                                      \
    PK_TILE_1TO3(NAME, KERNEL, TARGET, WT, XT) PK_TILE(NAME, KERNEL, TARGET, WT, XT, 4) PK_TILE(NAME, KERNEL, TARGET, WT, XT, 5)
#define PK_TILES3(NAME, KERNEL, TARGET, WT, XT)                                                         \
    PK_TILE_1TO3(NAME, KERNEL, TARGET, WT, XT)                                                          \
    static const pk_tile NAME##_tiles[] = {0, NAME##_1, NAME##_2, NAME##_3};
#define PK_TILES5(NAME, KERNEL, TARGET, WT, XT)                                                         \
    PK_TILE_1TO5(NAME, KERNEL, TARGET, WT, XT)                                                          \
    static const pk_tile NAME##_tiles[] = {0, NAME##_1, NAME##_2, NAME##_3, NAME##_4, NAME##_5};
#define PK_TILES6(NAME, KERNEL, TARGET, WT, XT)                                                         \
    PK_TILE_1TO5(NAME, KERNEL, TARGET, WT, XT) PK_TILE(NAME, KERNEL, TARGET, WT, XT, 6)                \
    static const pk_tile NAME##_tiles[] = {0, NAME##_1, NAME##_2, NAME##_3, NAME##_4, NAME##_5, NAME##_6};

// NT tokens × 4 rows. w: 4 rows of k floats (stride k), x: NT rows of k floats (stride k).
__attribute__((target("avx512f"), always_inline)) static inline void micro4_f32(int NT, const float* w, int k, const float* x,
                                                                                float* y, long yStride, const float* bias)
{
    PK_FOR_TOKENS(PK_DECL)
    int i = 0;
    for (; i + 16 <= k; i += 16)
    {
        __m512 a0 = _mm512_loadu_ps(w + i), a1 = _mm512_loadu_ps(w + k + i);
        __m512 a2 = _mm512_loadu_ps(w + 2L * k + i), a3 = _mm512_loadu_ps(w + 3L * k + i);
#define PK_STEP(t)                                                                                      \
        if (NT > t)                                                                                     \
        {                                                                                               \
            __m512 b = _mm512_loadu_ps(x + (long)t * k + i);                                            \
            c##t##0 = _mm512_fmadd_ps(a0, b, c##t##0);                                                  \
            c##t##1 = _mm512_fmadd_ps(a1, b, c##t##1);                                                  \
            c##t##2 = _mm512_fmadd_ps(a2, b, c##t##2);                                                  \
            c##t##3 = _mm512_fmadd_ps(a3, b, c##t##3);                                                  \
        }
        PK_FOR_TOKENS(PK_STEP)
#undef PK_STEP
    }
#define PK_FINISH(t) if (NT > t) finish4_f32(c##t##0, c##t##1, c##t##2, c##t##3, w, x + (long)t * k, i, k, y + t * yStride, bias);
    PK_FOR_TOKENS(PK_FINISH)
#undef PK_FINISH
}

PK_TILES6(micro4_f32, micro4_f32, "avx512f", float, float)

// y[t·yStride + j] = Σ_i w[j·k + i]·x[t·k + i] (+ bias[j]) for j < 4, t < n; w is the widened
// panel and x the tile, both in the pair layout of Gemm.ToPairLayout when the weights are bf16/f16.
PK_API void pk_micro4_f32(const float* w, int k, const float* x, int n, float* y, long yStride, const float* bias)
{
    pk_run_tiles(micro4_f32_tiles, 6, w, k, x, 4, n, y, yStride, bias);
}

// The same arithmetic straight from 16-bit rows, without a widened panel: each 32-bit lane of a load
// holds two adjacent weights, split into the even vector and the odd one — which is what the panel
// would hold at i and i + 16 (Gemm.WidenPairs) — so every accumulator sees the same products in the
// same order. bf16 splits with a shift and a mask; finite f16 narrows each half (VPMOVDW) and
// converts it exactly (VCVTPH2PS). Saves the panel pass, which a decode batch of a few tokens cannot
// amortise, and streams the rows from memory overlapped with the FMAs (a prefill splits each f16
// row once into a panel of halves instead, pk_micro4_f16_half_panel; Gemm picks by the number of
// tokens). At most 5 tokens: 20
// accumulators, 4 raw rows and their halves fit 32 registers. F16 is a compile-time constant in
// every instance, so each keeps only its own conversions.
#define PK_ROWS16 "avx512f,f16c"

__attribute__((target(PK_ROWS16), always_inline)) static inline float half16_to_f32(uint16_t h, int F16)
{
    if (F16) return _cvtsh_ss(h);
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

// The even (odd = 0) or odd (odd = 1) weights of 32 packed 16-bit ones, as floats.
__attribute__((target(PK_ROWS16), always_inline)) static inline __m512 half16_pairs(__m512i r, int odd, int F16)
{
    if (F16) return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(odd ? _mm512_srli_epi32(r, 16) : r));
    return _mm512_castsi512_ps(odd ? _mm512_and_si512(r, _mm512_set1_epi32((int)0xFFFF0000u)) : _mm512_slli_epi32(r, 16));
}

// 16 consecutive 16-bit weights as floats, in place (a tail shorter than a pair block).
__attribute__((target(PK_ROWS16), always_inline)) static inline __m512 half16_16(const uint16_t* p, int F16)
{
    __m256i h = _mm256_loadu_si256((const __m256i*)p);
    return F16 ? _mm512_cvtph_ps(h) : _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

__attribute__((target(PK_ROWS16), always_inline)) static inline void finish4_rows16(__m512 c0, __m512 c1, __m512 c2, __m512 c3,
                                                                                   const uint16_t* w, const float* xt, int i, int k,
                                                                                   float* out, const float* bias, int F16)
{
    __m128 sums = hsum16x4(c0, c1, c2, c3);
    if (i == k) { store4_plus_bias(sums, out, bias); return; }
    float s[4];
    _mm_storeu_ps(s, sums);
    for (int j = 0; j < 4; j++)
    {
        const uint16_t* wj = w + (long)j * k;
        for (int ii = i; ii < k; ii++) s[j] += half16_to_f32(wj[ii], F16) * xt[ii];
        out[j] = s[j] + (bias ? bias[j] : 0.0f);
    }
}

#define PK_FOR_TOKENS5(M) M(0) M(1) M(2) M(3) M(4)

#define PK_STEP(t)                                                                                      \
    if (NT > t)                                                                                         \
    {                                                                                                   \
        __m512 b = _mm512_loadu_ps(x + (long)t * k + i + off);                                          \
        c##t##0 = _mm512_fmadd_ps(a0, b, c##t##0);                                                      \
        c##t##1 = _mm512_fmadd_ps(a1, b, c##t##1);                                                      \
        c##t##2 = _mm512_fmadd_ps(a2, b, c##t##2);                                                      \
        c##t##3 = _mm512_fmadd_ps(a3, b, c##t##3);                                                      \
    }
__attribute__((target(PK_ROWS16), always_inline)) static inline void micro4_rows16(int NT, const uint16_t* w, int k, const float* x,
                                                                                  float* y, long yStride, const float* bias, int F16)
{
    PK_FOR_TOKENS5(PK_DECL)
    int i = 0;
    for (; i + 32 <= k; i += 32)
    {
        prefetch_next_panel(w, k, i);
        __m512i r0 = _mm512_loadu_si512((const void*)(w + i)), r1 = _mm512_loadu_si512((const void*)(w + k + i));
        __m512i r2 = _mm512_loadu_si512((const void*)(w + 2L * k + i)), r3 = _mm512_loadu_si512((const void*)(w + 3L * k + i));
        __m512 a0 = half16_pairs(r0, 0, F16), a1 = half16_pairs(r1, 0, F16), a2 = half16_pairs(r2, 0, F16), a3 = half16_pairs(r3, 0, F16);
        int off = 0;
        PK_FOR_TOKENS5(PK_STEP)
        a0 = half16_pairs(r0, 1, F16); a1 = half16_pairs(r1, 1, F16); a2 = half16_pairs(r2, 1, F16); a3 = half16_pairs(r3, 1, F16);
        off = 16;
        PK_FOR_TOKENS5(PK_STEP)
    }
    if (i + 16 <= k)
    {
        // A tail shorter than a pair block stays in place in the panel: one plain widened vector.
        __m512 a0 = half16_16(w + i, F16), a1 = half16_16(w + k + i, F16);
        __m512 a2 = half16_16(w + 2L * k + i, F16), a3 = half16_16(w + 3L * k + i, F16);
        int off = 0;
        PK_FOR_TOKENS5(PK_STEP)
        i += 16;
    }
#define PK_FINISH(t) if (NT > t) finish4_rows16(c##t##0, c##t##1, c##t##2, c##t##3, w, x + (long)t * k, i, k, y + t * yStride, bias, F16);
    PK_FOR_TOKENS5(PK_FINISH)
#undef PK_FINISH
}

// NT ≤ 6 tokens × 4 rows of a half panel: finite f16 rows already in the pair layout (each whole block
// of 32 halves its 16 even ones, then its 16 odd ones; a shorter tail in place), so each half-vector
// converts with one VCVTPH2PS as it is loaded — the floats the f32 panel would hold, in the same
// order, with half its bytes and 6 tokens (24 accumulators) per pass over the rows.
__attribute__((target(PK_ROWS16), always_inline)) static inline void micro4_f16half(int NT, const uint16_t* w, int k, const float* x,
                                                                                   float* y, long yStride, const float* bias)
{
    PK_FOR_TOKENS(PK_DECL)
    int i = 0;
    for (; i + 32 <= k; i += 32)
    {
        __m512 a0 = half16_16(w + i, 1), a1 = half16_16(w + k + i, 1), a2 = half16_16(w + 2L * k + i, 1), a3 = half16_16(w + 3L * k + i, 1);
        int off = 0;
        PK_FOR_TOKENS(PK_STEP)
        a0 = half16_16(w + i + 16, 1); a1 = half16_16(w + k + i + 16, 1); a2 = half16_16(w + 2L * k + i + 16, 1); a3 = half16_16(w + 3L * k + i + 16, 1);
        off = 16;
        PK_FOR_TOKENS(PK_STEP)
    }
    if (i + 16 <= k)
    {
        __m512 a0 = half16_16(w + i, 1), a1 = half16_16(w + k + i, 1), a2 = half16_16(w + 2L * k + i, 1), a3 = half16_16(w + 3L * k + i, 1);
        int off = 0;
        PK_FOR_TOKENS(PK_STEP)
        i += 16;
    }
#define PK_FINISH(t) if (NT > t) finish4_rows16(c##t##0, c##t##1, c##t##2, c##t##3, w, x + (long)t * k, i, k, y + t * yStride, bias, 1);
    PK_FOR_TOKENS(PK_FINISH)
#undef PK_FINISH
}
#undef PK_STEP

PK_TILES6(micro4_f16half, micro4_f16half, PK_ROWS16, uint16_t, float)

// pk_micro4_f32's results for 4 finite f16 rows (w: the first, rows k elements apart) and n tokens
// (x in the pair layout), through a half panel (4·k halves of scratch): each row's whole blocks of 32
// split once into their even and odd halves (VPMOVDW), with the next panel's row prefetched into L2,
// then micro4_f16half over the tokens. For prefill-sized tiles; a decode batch reads the rows in
// place (pk_micro4_f16_rows).
PK_API __attribute__((target(PK_ROWS16))) void pk_micro4_f16_half_panel(const uint16_t* w, int k, uint16_t* panel, const float* x, int n,
                                                                       float* y, long yStride, const float* bias)
{
    for (int j = 0; j < 4; j++)
    {
        const uint16_t* row = w + (long)j * k;
        uint16_t* dst = panel + (long)j * k;
        int i = 0;
        for (; i + 32 <= k; i += 32)
        {
            _mm_prefetch((const char*)(row + 4L * k + i), _MM_HINT_T1);
            __m512i r = _mm512_loadu_si512((const void*)(row + i));
            _mm256_storeu_si256((__m256i*)(dst + i), _mm512_cvtepi32_epi16(r));
            _mm256_storeu_si256((__m256i*)(dst + i + 16), _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16)));
        }
        for (; i < k; i++) dst[i] = row[i];
    }
    pk_run_tiles(micro4_f16half_tiles, 6, panel, k, x, 4, n, y, yStride, bias);
}

__attribute__((target(PK_ROWS16), always_inline)) static inline void micro4_bf16p(int NT, const uint16_t* w, int k, const float* x,
                                                                                 float* y, long yStride, const float* bias)
{
    micro4_rows16(NT, w, k, x, y, yStride, bias, 0);
}

__attribute__((target(PK_ROWS16), always_inline)) static inline void micro4_f16p(int NT, const uint16_t* w, int k, const float* x,
                                                                                float* y, long yStride, const float* bias)
{
    micro4_rows16(NT, w, k, x, y, yStride, bias, 1);
}

PK_TILES5(micro4_bf16p, micro4_bf16p, PK_ROWS16, uint16_t, float)
PK_TILES5(micro4_f16p, micro4_f16p, PK_ROWS16, uint16_t, float)

// pk_micro4_f32's results for 4 bf16 rows (w: the first, rows k elements apart) without a panel;
// x in the pair layout as for pk_micro4_f32.
PK_API void pk_micro4_bf16_rows(const uint16_t* w, int k, const float* x, int n, float* y, long yStride, const float* bias)
{
    pk_run_tiles(micro4_bf16p_tiles, 5, w, k, x, 4, n, y, yStride, bias);
}

// The same for 4 finite f16 rows.
PK_API void pk_micro4_f16_rows(const uint16_t* w, int k, const float* x, int n, float* y, long yStride, const float* bias)
{
    pk_run_tiles(micro4_f16p_tiles, 5, w, k, x, 4, n, y, yStride, bias);
}

// ---------------------------------------------------------------------------------------------
// The same exact kernels at width 256 (AVX2 + FMA + F16C), for CPUs without AVX-512: bit-identical
// to the managed kernels at Vector256 (Gemm.Micro4x2 / DotF32 over the panel, pair blocks of 16).
// 16 registers: 4 rows × 3 tokens of accumulators, the 3 tokens' x vectors, one weight vector. bf16
// rows are widened into the panel by the managed code at this width; f16 rows are split into a panel
// of halves and converted by F16C as they are loaded (below).

#define PK_AVX2 "avx2,fma,f16c"

// Vector256.Sum's tree: Sum(lower 128) + Sum(upper 128), each (e0 + e1) + (e2 + e3).
__attribute__((target(PK_AVX2), always_inline)) static inline __m128 hsum8x4(__m256 a, __m256 b, __m256 c, __m256 d)
{
    __m256 ab = _mm256_add_ps(_mm256_shuffle_ps(a, b, 0x88), _mm256_shuffle_ps(a, b, 0xDD));
    __m256 cd = _mm256_add_ps(_mm256_shuffle_ps(c, d, 0x88), _mm256_shuffle_ps(c, d, 0xDD));
    __m256 y = _mm256_add_ps(_mm256_shuffle_ps(ab, cd, 0x88), _mm256_shuffle_ps(ab, cd, 0xDD));
    return _mm_add_ps(_mm256_castps256_ps128(y), _mm256_extractf128_ps(y, 1));
}

// One token's four outputs at width 256: sums, then each row's scalar tail, separate multiply and
// add, then the bias. Rows of f32, or (HALF) of finite f16 converted exactly.
__attribute__((target(PK_AVX2), always_inline)) static inline void finish4_avx2(__m256 c0, __m256 c1, __m256 c2, __m256 c3,
                                                                               const void* w, const float* xt, int i, int k,
                                                                               float* out, const float* bias, int HALF)
{
    __m128 sums = hsum8x4(c0, c1, c2, c3);
    if (i == k) { store4_plus_bias(sums, out, bias); return; }
    float s[4];
    _mm_storeu_ps(s, sums);
    for (int j = 0; j < 4; j++)
    {
        for (int ii = i; ii < k; ii++)
        {
            long at = (long)j * k + ii;
            s[j] += (HALF ? _cvtsh_ss(((const uint16_t*)w)[at]) : ((const float*)w)[at]) * xt[ii];
        }
        out[j] = s[j] + (bias ? bias[j] : 0.0f);
    }
}

#define PK_DECL8(t) __m256 c##t##0 = _mm256_setzero_ps(), c##t##1 = c##t##0, c##t##2 = c##t##0, c##t##3 = c##t##0;
#define PK_FOR_TOKENS3(M) M(0) M(1) M(2)
// The three tokens' x at offset i + off, then each row's weight vector against them.
#define PK_LOADX(t) __m256 x##t = NT > t ? _mm256_loadu_ps(x + (long)t * k + i + off) : _mm256_setzero_ps();
#define PK_ROW(j, W)                                                                                    \
    {                                                                                                   \
        __m256 a = W;                                                                                   \
        c0##j = _mm256_fmadd_ps(a, x0, c0##j);                                                          \
        if (NT > 1) c1##j = _mm256_fmadd_ps(a, x1, c1##j);                                              \
        if (NT > 2) c2##j = _mm256_fmadd_ps(a, x2, c2##j);                                              \
    }

// 4 rows of a panel in the pair layout × NT ≤ 3 tokens: f32 rows, or (HALF, a compile-time constant
// in every instance) finite f16 rows, each vector converted by VCVTPH2PS as it is loaded.
__attribute__((target(PK_AVX2), always_inline)) static inline void micro4_avx2(int NT, const void* w, int k, const float* x,
                                                                              float* y, long yStride, const float* bias, int HALF)
{
#define PK_W(j) (HALF ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)((const uint16_t*)w + (long)(j) * k + i))) \
                      : _mm256_loadu_ps((const float*)w + (long)(j) * k + i))
    PK_FOR_TOKENS3(PK_DECL8)
    int i = 0;
    for (; i + 8 <= k; i += 8)
    {
        const int off = 0;
        PK_FOR_TOKENS3(PK_LOADX)
        PK_ROW(0, PK_W(0)) PK_ROW(1, PK_W(1)) PK_ROW(2, PK_W(2)) PK_ROW(3, PK_W(3))
    }
#undef PK_W
#define PK_FINISH8(t) if (NT > t) finish4_avx2(c##t##0, c##t##1, c##t##2, c##t##3, w, x + (long)t * k, i, k, y + t * yStride, bias, HALF);
    PK_FOR_TOKENS3(PK_FINISH8)
#undef PK_FINISH8
}

__attribute__((target(PK_AVX2), always_inline)) static inline void micro4_f32_avx2(int NT, const float* w, int k, const float* x,
                                                                                  float* y, long yStride, const float* bias)
{
    micro4_avx2(NT, w, k, x, y, yStride, bias, 0);
}

__attribute__((target(PK_AVX2), always_inline)) static inline void micro4_f16half_avx2(int NT, const uint16_t* w, int k, const float* x,
                                                                                      float* y, long yStride, const float* bias)
{
    micro4_avx2(NT, w, k, x, y, yStride, bias, 1);
}

PK_TILES3(micro4_f32_avx2, micro4_f32_avx2, PK_AVX2, float, float)
PK_TILES3(micro4_f16half_avx2, micro4_f16half_avx2, PK_AVX2, uint16_t, float)

// pk_micro4_f32 at width 256 (x in the pair layout of width 256). bf16 rows go through the panel at
// this width: splitting them in registers for only 3 tokens measured slower (60 against 85 GFLOP/s).
PK_API void pk_micro4_f32_avx2(const float* w, int k, const float* x, int n, float* y, long yStride, const float* bias)
{
    pk_run_tiles(micro4_f32_avx2_tiles, 3, w, k, x, 4, n, y, yStride, bias);
}

// pk_micro4_f32_avx2's results for 4 finite f16 rows (w: the first, rows k elements apart) through a
// panel of halves (4·k of scratch): each whole block of 16 halves of a row becomes its 8 even ones
// then its 8 odd ones — the pair layout of width 256 — and a shorter tail stays in place; the kernel
// converts each vector as it loads it (half the bytes of a widened f32 panel, whose four 2048-wide
// rows alone filled L1). The next panel's row is prefetched into L2 a cache line ahead.
PK_API __attribute__((target(PK_AVX2))) void pk_micro4_f16_half_panel_avx2(const uint16_t* w, int k, uint16_t* panel, const float* x,
                                                                          int n, float* y, long yStride, const float* bias)
{
    const __m256i low = _mm256_set1_epi32(0xFFFF);
    for (int j = 0; j < 4; j++)
    {
        const uint16_t* row = w + (long)j * k;
        uint16_t* dst = panel + (long)j * k;
        int i = 0;
        for (; i + 16 <= k; i += 16)
        {
            if ((i & 31) == 0) _mm_prefetch((const char*)(row + 4L * k + i), _MM_HINT_T1);
            __m256i r = _mm256_loadu_si256((const __m256i*)(row + i));
            // Evens are the low halves of the 32-bit lanes, odds the high ones; packing works per
            // 128-bit lane ([e0..3 o0..3 | e4..7 o4..7]), the permute puts the evens before the odds.
            __m256i packed = _mm256_packus_epi32(_mm256_and_si256(r, low), _mm256_srli_epi32(r, 16));
            _mm256_storeu_si256((__m256i*)(dst + i), _mm256_permute4x64_epi64(packed, 0xD8));
        }
        for (; i < k; i++) dst[i] = row[i];
    }
    pk_run_tiles(micro4_f16half_avx2_tiles, 3, panel, k, x, 4, n, y, yStride, bias);
}

// ---------------------------------------------------------------------------------------------
// bf16 activations × bf16 weights with VDPBF16PS.

#define PK_BF16 "avx512f,avx512bw,avx512bf16"

// x (count f32) → bf16, rounded to nearest even (NaN stays NaN). VCVTNE2PS2BF16 treats subnormal
// inputs as zero; the scalar tail does the same, so an element's bf16 never depends on where it
// falls in the buffer (a token's results must not depend on how a prompt was chunked).
PK_API __attribute__((target(PK_BF16))) void pk_f32_to_bf16(const float* x, uint16_t* out, long count)
{
    long i = 0;
    for (; i + 32 <= count; i += 32)
    {
        __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(x + i));
        _mm512_storeu_si512((void*)(out + i), (__m512i)v);
    }
    for (; i < count; i++)
    {
        uint32_t u;
        memcpy(&u, x + i, 4);
        if ((u & 0x7FFFFFFFu) > 0x7F800000u) out[i] = (uint16_t)((u >> 16) | 0x40); // quiet NaN
        else if ((u & 0x7F800000u) == 0) out[i] = (uint16_t)((u >> 16) & 0x8000u);  // zero or subnormal: signed zero
        else out[i] = (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
    }
}

// The four sums of c0..c3 (lanes 0–3, in order) plus bias, stored to out[0..3]: two unpack levels
// fold the four vectors into one 128-bit lane group each, two shuffles add the four groups — 13
// operations for four sums instead of 32 for four separate horizontal sums.
__attribute__((target(PK_BF16), always_inline)) static inline void store4_sums(__m512 c0, __m512 c1, __m512 c2, __m512 c3,
                                                                              float* out, const float* bias)
{
    __m512 x01 = _mm512_add_ps(_mm512_unpacklo_ps(c0, c1), _mm512_unpackhi_ps(c0, c1));
    __m512 x23 = _mm512_add_ps(_mm512_unpacklo_ps(c2, c3), _mm512_unpackhi_ps(c2, c3));
    __m512 y = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(x01), _mm512_castps_pd(x23))),
                             _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(x01), _mm512_castps_pd(x23))));
    y = _mm512_add_ps(y, _mm512_shuffle_f32x4(y, y, 0x4E));
    y = _mm512_add_ps(y, _mm512_shuffle_f32x4(y, y, 0xB1));
    __m128 s = _mm512_castps512_ps128(y);
    if (bias) s = _mm_add_ps(s, _mm_loadu_ps(bias));
    _mm_storeu_ps(out, s);
}

// NT tokens × 4 rows over bf16 rows of k elements: whole blocks of 32 with plain loads, the last
// partial block loaded masked (zeros add nothing). Row j of the weights is at w + j·k, token t of x
// at x + t·k.
__attribute__((target(PK_BF16), always_inline)) static inline void micro4_bf16(int NT, const uint16_t* w, int k, const uint16_t* x,
                                                                               float* y, long yStride, const float* bias)
{
    PK_FOR_TOKENS(PK_DECL)
    int i = 0;
#define PK_BLOCK(LOAD)                                                                                  \
    {                                                                                                   \
        __m512bh a0 = (__m512bh)LOAD(w + i), a1 = (__m512bh)LOAD(w + k + i);                            \
        __m512bh a2 = (__m512bh)LOAD(w + 2L * k + i), a3 = (__m512bh)LOAD(w + 3L * k + i);              \
        PK_FOR_TOKENS(PK_STEP)                                                                          \
    }
#define PK_STEP(t)                                                                                      \
        if (NT > t)                                                                                     \
        {                                                                                               \
            __m512bh b = (__m512bh)PK_LOAD(x + (long)t * k + i);                                        \
            c##t##0 = _mm512_dpbf16_ps(c##t##0, a0, b);                                                 \
            c##t##1 = _mm512_dpbf16_ps(c##t##1, a1, b);                                                 \
            c##t##2 = _mm512_dpbf16_ps(c##t##2, a2, b);                                                 \
            c##t##3 = _mm512_dpbf16_ps(c##t##3, a3, b);                                                 \
        }
#define PK_LOAD(p) _mm512_loadu_si512((const void*)(p))
    for (; i + 32 <= k; i += 32)
    {
        prefetch_next_panel(w, k, i);
        PK_BLOCK(PK_LOAD)
    }
#undef PK_LOAD
    if (i < k)
    {
        __mmask32 m = (__mmask32)((1u << (k - i)) - 1u);
#define PK_LOAD(p) _mm512_maskz_loadu_epi16(m, (p))
        PK_BLOCK(PK_LOAD)
#undef PK_LOAD
    }
#undef PK_STEP
#undef PK_BLOCK
#define PK_FINISH(t) if (NT > t) store4_sums(c##t##0, c##t##1, c##t##2, c##t##3, y + t * yStride, bias);
    PK_FOR_TOKENS(PK_FINISH)
#undef PK_FINISH
}

PK_TILES6(micro4_bf16, micro4_bf16, PK_BF16, uint16_t, uint16_t)

// Rows that do not fill a block of four, one at a time (same products, another summation tree:
// bf16 results are not meant to be bit-identical to anything but themselves).
__attribute__((target(PK_BF16))) static float dot_bf16(const uint16_t* w, const uint16_t* x, int k)
{
    __m512 c = _mm512_setzero_ps();
    int i = 0;
    for (; i + 32 <= k; i += 32)
        c = _mm512_dpbf16_ps(c, (__m512bh)_mm512_loadu_si512((const void*)(w + i)), (__m512bh)_mm512_loadu_si512((const void*)(x + i)));
    if (i < k)
    {
        __mmask32 m = (__mmask32)((1u << (k - i)) - 1u);
        c = _mm512_dpbf16_ps(c, (__m512bh)_mm512_maskz_loadu_epi16(m, w + i), (__m512bh)_mm512_maskz_loadu_epi16(m, x + i));
    }
    return hsum16(c);
}

// One token (decode): memory-bound, so rows stream eight at a time (two groups of four, each summed
// exactly as micro4_bf16 with one token sums it, so a token's results equal its results in a batch)
// while the next eight rows are prefetched a cache line per line consumed: eight row streams are more
// than the hardware prefetcher follows from DRAM.
__attribute__((target(PK_BF16))) static void gemv_bf16(const uint16_t* w, int k, int r0, int r1, const uint16_t* x, float* y, const float* bias)
{
    int r = r0;
    long rowBytes = (long)k * 2;
    for (; r + 8 <= r1; r += 8)
    {
        const uint16_t* wr = w + (long)r * k;
        const char* next = (const char*)(wr + 8L * k);
        __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
        int i = 0;
#define PK_ROWS8(LOAD)                                                                                  \
        {                                                                                               \
            __m512bh b = (__m512bh)LOAD(x + i);                                                         \
            c0 = _mm512_dpbf16_ps(c0, (__m512bh)LOAD(wr + i), b);                                       \
            c1 = _mm512_dpbf16_ps(c1, (__m512bh)LOAD(wr + k + i), b);                                   \
            c2 = _mm512_dpbf16_ps(c2, (__m512bh)LOAD(wr + 2L * k + i), b);                              \
            c3 = _mm512_dpbf16_ps(c3, (__m512bh)LOAD(wr + 3L * k + i), b);                              \
            c4 = _mm512_dpbf16_ps(c4, (__m512bh)LOAD(wr + 4L * k + i), b);                              \
            c5 = _mm512_dpbf16_ps(c5, (__m512bh)LOAD(wr + 5L * k + i), b);                              \
            c6 = _mm512_dpbf16_ps(c6, (__m512bh)LOAD(wr + 6L * k + i), b);                              \
            c7 = _mm512_dpbf16_ps(c7, (__m512bh)LOAD(wr + 7L * k + i), b);                              \
        }
#define PK_LOAD(p) _mm512_loadu_si512((const void*)(p))
        for (; i + 32 <= k; i += 32)
        {
            if (r + 16 <= r1)
                for (int j = 0; j < 8; j++) _mm_prefetch(next + j * rowBytes + i * 2L, _MM_HINT_T1);
            PK_ROWS8(PK_LOAD)
        }
#undef PK_LOAD
        if (i < k)
        {
            __mmask32 m = (__mmask32)((1u << (k - i)) - 1u);
#define PK_LOAD(p) _mm512_maskz_loadu_epi16(m, (p))
            PK_ROWS8(PK_LOAD)
#undef PK_LOAD
        }
#undef PK_ROWS8
        store4_sums(c0, c1, c2, c3, y + r, bias ? bias + r : 0);
        store4_sums(c4, c5, c6, c7, y + r + 4, bias ? bias + r + 4 : 0);
    }
    for (; r + 4 <= r1; r += 4) micro4_bf16_1(w + (long)r * k, k, x, y + r, 1, bias ? bias + r : 0);
    for (; r < r1; r++) y[r] = dot_bf16(w + (long)r * k, x, k) + (bias ? bias[r] : 0.0f);
}

// y[t·yStride + r] = Σ_i W[r, i]·xb[t, i] (+ bias[r]) for rows [r0, r1) and tokens [0, n).
// W: bf16 rows of k elements; xb: n bf16 rows of k (pk_f32_to_bf16). Tokens are tiled so a tile of
// xb (tileTokens × k × 2 bytes, ≤ 256 KiB) stays in L2 while the rows stream past it.
PK_API __attribute__((target(PK_BF16))) void pk_gemm_bf16dot(const uint16_t* w, int k, int r0, int r1,
                                                             const uint16_t* xb, int n, float* y, long yStride,
                                                             const float* bias)
{
    if (n <= 3)
    {
        for (int t = 0; t < n; t++) gemv_bf16(w, k, r0, r1, xb + (long)t * k, y + t * yStride, bias);
        return;
    }
    int tile = (int)((256L * 1024) / ((long)k * 2));
    tile = tile < 6 ? 6 : tile - tile % 6;
    for (int t0 = 0; t0 < n; t0 += tile)
    {
        int tn = n - t0 < tile ? n - t0 : tile;
        int r = r0;
        for (; r + 4 <= r1; r += 4)
        {
            pk_run_tiles(micro4_bf16_tiles, 6, w + (long)r * k, k, xb + (long)t0 * k, 2, tn, y + t0 * yStride + r, yStride,
                         bias ? bias + r : 0);
        }
        for (; r < r1; r++)
            for (int t = 0; t < tn; t++)
                y[(t0 + t) * yStride + r] = dot_bf16(w + (long)r * k, xb + (long)(t0 + t) * k, k) + (bias ? bias[r] : 0.0f);
    }
}

// ---------------------------------------------------------------------------------------------
// Decode attention over f16 KV rows (finite: the cache scanned what it stored), width 512. Rows are
// read in the pair layout of CpuBackend's FiniteF16Rows: each whole block of 32 halves gives the
// vector of its even elements and the vector of its odd ones (the low and high halves of each
// 32-bit lane), a following block of 16 is read in place, the rest one by one.

__attribute__((target("avx512f"), always_inline)) static inline void f16_pairs(const uint16_t* p, __m512* even, __m512* odd)
{
    __m512i r = _mm512_loadu_si512((const void*)p);
    *even = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(r));
    *odd = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16)));
}

__attribute__((target("avx512f"), always_inline)) static inline __m512 f16_16(const uint16_t* p)
{
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)p));
}

__attribute__((target("f16c"), always_inline)) static inline float f16_to_f32(uint16_t h) { return _cvtsh_ss(h); }

// scores[j] = scale · q·key_j for count keys (key j at keys + j·stride halves), q in the pair layout:
// CpuBackend.Scores — four keys at a time, each as Gemm.Step (even then odd FMA) per block, the
// 16-block as one FMA, the four horizontal sums of Vector512.Sum's tree, the scalar tail as
// multiply then add; a last one to three keys as Gemm.Dot1.
PK_API __attribute__((target("avx512f,f16c"))) void pk_scores_f16(const uint16_t* keys, long stride, int count, const float* q,
                                                                 int headDim, float scale, float* scores)
{
    int jj = 0;
    for (; jj + 4 <= count; jj += 4)
    {
        const uint16_t *r0 = keys + jj * stride, *r1 = r0 + stride, *r2 = r1 + stride, *r3 = r2 + stride;
        __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0, e, o;
        int i = 0;
        for (; i + 32 <= headDim; i += 32)
        {
            __m512 qe = _mm512_loadu_ps(q + i), qo = _mm512_loadu_ps(q + i + 16);
            f16_pairs(r0 + i, &e, &o); s0 = _mm512_fmadd_ps(o, qo, _mm512_fmadd_ps(e, qe, s0));
            f16_pairs(r1 + i, &e, &o); s1 = _mm512_fmadd_ps(o, qo, _mm512_fmadd_ps(e, qe, s1));
            f16_pairs(r2 + i, &e, &o); s2 = _mm512_fmadd_ps(o, qo, _mm512_fmadd_ps(e, qe, s2));
            f16_pairs(r3 + i, &e, &o); s3 = _mm512_fmadd_ps(o, qo, _mm512_fmadd_ps(e, qe, s3));
        }
        if (i + 16 <= headDim)
        {
            __m512 qv = _mm512_loadu_ps(q + i);
            s0 = _mm512_fmadd_ps(f16_16(r0 + i), qv, s0); s1 = _mm512_fmadd_ps(f16_16(r1 + i), qv, s1);
            s2 = _mm512_fmadd_ps(f16_16(r2 + i), qv, s2); s3 = _mm512_fmadd_ps(f16_16(r3 + i), qv, s3);
            i += 16;
        }
        float a[4];
        _mm_storeu_ps(a, hsum16x4(s0, s1, s2, s3));
        for (; i < headDim; i++)
        {
            float qi = q[i];
            a[0] += f16_to_f32(r0[i]) * qi; a[1] += f16_to_f32(r1[i]) * qi;
            a[2] += f16_to_f32(r2[i]) * qi; a[3] += f16_to_f32(r3[i]) * qi;
        }
        for (int t = 0; t < 4; t++) scores[jj + t] = a[t] * scale;
    }
    for (; jj < count; jj++)
    {
        const uint16_t* r = keys + jj * stride;
        __m512 acc = _mm512_setzero_ps(), e, o;
        int i = 0;
        for (; i + 32 <= headDim; i += 32)
        {
            f16_pairs(r + i, &e, &o);
            acc = _mm512_fmadd_ps(o, _mm512_loadu_ps(q + i + 16), _mm512_fmadd_ps(e, _mm512_loadu_ps(q + i), acc));
        }
        if (i + 16 <= headDim) { acc = _mm512_fmadd_ps(f16_16(r + i), _mm512_loadu_ps(q + i), acc); i += 16; }
        float a = hsum16(acc);
        for (; i < headDim; i++) a += f16_to_f32(r[i]) * q[i];
        scores[jj] = a * scale;
    }
}

// acc += Σ_j p[j]·value_j over count values (value j at values + j·stride halves), acc in the pair
// layout: CpuBackend.AccumulateValues — every element adds the keys in order with one FMA each
// (the scalar tail as multiply then add), so its blocking does not change a bit.
PK_API __attribute__((target("avx512f,f16c"))) void pk_accumulate_f16(const uint16_t* values, long stride, int count, const float* p,
                                                                     float* acc, int headDim)
{
    int i = 0;
    for (; i + 64 <= headDim; i += 64)
    {
        __m512 a0 = _mm512_loadu_ps(acc + i), a1 = _mm512_loadu_ps(acc + i + 16);
        __m512 a2 = _mm512_loadu_ps(acc + i + 32), a3 = _mm512_loadu_ps(acc + i + 48), e, o;
        const uint16_t* row = values + i;
        for (int j = 0; j < count; j++, row += stride)
        {
            __m512 pv = _mm512_set1_ps(p[j]);
            f16_pairs(row, &e, &o);
            a0 = _mm512_fmadd_ps(pv, e, a0); a1 = _mm512_fmadd_ps(pv, o, a1);
            f16_pairs(row + 32, &e, &o);
            a2 = _mm512_fmadd_ps(pv, e, a2); a3 = _mm512_fmadd_ps(pv, o, a3);
        }
        _mm512_storeu_ps(acc + i, a0); _mm512_storeu_ps(acc + i + 16, a1);
        _mm512_storeu_ps(acc + i + 32, a2); _mm512_storeu_ps(acc + i + 48, a3);
    }
    for (; i + 32 <= headDim; i += 32)
    {
        __m512 a0 = _mm512_loadu_ps(acc + i), a1 = _mm512_loadu_ps(acc + i + 16), e, o;
        const uint16_t* row = values + i;
        for (int j = 0; j < count; j++, row += stride)
        {
            __m512 pv = _mm512_set1_ps(p[j]);
            f16_pairs(row, &e, &o);
            a0 = _mm512_fmadd_ps(pv, e, a0); a1 = _mm512_fmadd_ps(pv, o, a1);
        }
        _mm512_storeu_ps(acc + i, a0); _mm512_storeu_ps(acc + i + 16, a1);
    }
    for (; i + 16 <= headDim; i += 16)
    {
        __m512 a = _mm512_loadu_ps(acc + i);
        const uint16_t* row = values + i;
        for (int j = 0; j < count; j++, row += stride) a = _mm512_fmadd_ps(_mm512_set1_ps(p[j]), f16_16(row), a);
        _mm512_storeu_ps(acc + i, a);
    }
    for (; i < headDim; i++)
    {
        float a = acc[i];
        const uint16_t* row = values + i;
        for (int j = 0; j < count; j++, row += stride) a += p[j] * f16_to_f32(*row);
        acc[i] = a;
    }
}
