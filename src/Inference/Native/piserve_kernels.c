// PiServe's native prefill kernels: the two inner loops that .NET cannot express at full speed.
//
// Built by src/Inference/PiServe.Inference.csproj with the machine's gcc (the target
// BuildNativeKernels) into libpiserve_kernels.so next to the assemblies, and loaded at run time by
// Kernels/NativeKernels.cs. Everything here is optional: when the library is missing, fails to
// load, or the CPU lacks the instructions, the managed kernels in Kernels/Gemm.cs run instead.
//
// 1. pk_micro4_f32 — the exact prefill micro-kernel (AVX-512F). It performs, for 4 widened weight
//    rows × any number of tokens, exactly the arithmetic of the managed Gemm.Micro4x4/DotF32: per
//    output one 16-lane accumulator over the pair-layout panel in steps of 16, the balanced
//    pairwise horizontal sum of Vector512.Sum, then the scalar tail as separate multiply and add
//    (compiled with -ffp-contract=off so gcc fuses nothing). Results are bit-identical to the
//    managed kernels (tests assert it), so decode, batched decode and prefill keep adding every
//    product in one order. It is faster only because it runs 4 rows × 6 tokens (24 accumulators,
//    which the JIT spills) and keeps every operand in registers.
// 2. pk_gemm_bf16dot — prefill with bf16 activations (AVX512-BF16, VDPBF16PS), for bf16 weights
//    when a model opts in (PrefillPrecision = bf16): activations are rounded to bf16 (round to
//    nearest even), products of pairs are added into f32 accumulators, as llama.cpp and PyTorch's
//    bf16 matmul do. Twice the products per instruction of an f32 FMA; not bit-identical to
//    anything else, so it is used for whole prefills only (see docs/PERFORMANCE.md).
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define PK_API __attribute__((visibility("default")))
#define PK_ABI_VERSION 1

PK_API int pk_abi_version(void) { return PK_ABI_VERSION; }

// bit 0: AVX-512F (the exact micro-kernel); bit 1: AVX512-BF16 with AVX-512BW (the bf16 dot kernel).
PK_API int pk_features(void)
{
    __builtin_cpu_init();
    int f = 0;
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

// The horizontal sum, then the scalar tail [i, k) as separate multiply and add, then the bias.
__attribute__((target("avx512f"), always_inline)) static inline void finish_f32(__m512 c, const float* wj, const float* xt, int i, int k,
                                                                               float* out, const float* bias, int j)
{
    float s = hsum16(c);
    for (; i < k; i++) s += wj[i] * xt[i];
    *out = s + (bias ? bias[j] : 0.0f);
}

// Accumulators are named variables, not an array: gcc keeps a 24-vector array in memory and
// stores it every iteration. NT is a compile-time constant in every caller, so the `if (NT > t)`
// tests fold away and each instance keeps exactly 4·NT accumulators in registers.
#define PK_DECL(t) __m512 c##t##0 = _mm512_setzero_ps(), c##t##1 = c##t##0, c##t##2 = c##t##0, c##t##3 = c##t##0;
#define PK_FOR_TOKENS(M) M(0) M(1) M(2) M(3) M(4) M(5)

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
#define PK_FINISH(t)                                                                                    \
    if (NT > t)                                                                                         \
    {                                                                                                   \
        finish_f32(c##t##0, w, x + (long)t * k, i, k, y + t * yStride + 0, bias, 0);                    \
        finish_f32(c##t##1, w + k, x + (long)t * k, i, k, y + t * yStride + 1, bias, 1);                \
        finish_f32(c##t##2, w + 2L * k, x + (long)t * k, i, k, y + t * yStride + 2, bias, 2);           \
        finish_f32(c##t##3, w + 3L * k, x + (long)t * k, i, k, y + t * yStride + 3, bias, 3);           \
    }
    PK_FOR_TOKENS(PK_FINISH)
#undef PK_FINISH
}

#define PK_MICRO_F32(NT)                                                                                \
    __attribute__((target("avx512f"))) static void micro4_f32_##NT(const float* w, int k, const float* x, \
                                                                   float* y, long yStride, const float* bias) \
    {                                                                                                   \
        micro4_f32(NT, w, k, x, y, yStride, bias);                                                      \
    }

PK_MICRO_F32(6)
PK_MICRO_F32(5)
PK_MICRO_F32(4)
PK_MICRO_F32(3)
PK_MICRO_F32(2)
PK_MICRO_F32(1)

// y[t·yStride + j] = Σ_i w[j·k + i]·x[t·k + i] (+ bias[j]) for j < 4, t < n; w is the widened
// panel and x the tile, both in the pair layout of Gemm.ToPairLayout when the weights are bf16/f16.
PK_API __attribute__((target("avx512f"))) void pk_micro4_f32(const float* w, int k, const float* x, int n,
                                                            float* y, long yStride, const float* bias)
{
    int t = 0;
    for (; t + 6 <= n; t += 6) micro4_f32_6(w, k, x + (long)t * k, y + t * yStride, yStride, bias);
    const float* xt = x + (long)t * k;
    float* yt = y + t * yStride;
    switch (n - t)
    {
        case 5: micro4_f32_5(w, k, xt, yt, yStride, bias); break;
        case 4: micro4_f32_4(w, k, xt, yt, yStride, bias); break;
        case 3: micro4_f32_3(w, k, xt, yt, yStride, bias); break;
        case 2: micro4_f32_2(w, k, xt, yt, yStride, bias); break;
        case 1: micro4_f32_1(w, k, xt, yt, yStride, bias); break;
        default: break;
    }
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
    for (; i + 32 <= k; i += 32) PK_BLOCK(PK_LOAD)
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

#define PK_MICRO_BF16(NT)                                                                               \
    __attribute__((target(PK_BF16))) static void micro4_bf16_##NT(const uint16_t* w, int k, const uint16_t* x, \
                                                                  float* y, long yStride, const float* bias)  \
    {                                                                                                   \
        micro4_bf16(NT, w, k, x, y, yStride, bias);                                                     \
    }

PK_MICRO_BF16(6)
PK_MICRO_BF16(5)
PK_MICRO_BF16(4)
PK_MICRO_BF16(3)
PK_MICRO_BF16(2)
PK_MICRO_BF16(1)

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

// y[t·yStride + r] = Σ_i W[r, i]·xb[t, i] (+ bias[r]) for rows [r0, r1) and tokens [0, n).
// W: bf16 rows of k elements; xb: n bf16 rows of k (pk_f32_to_bf16). Tokens are tiled so a tile of
// xb (tileTokens × k × 2 bytes, ≤ 256 KiB) stays in L2 while the rows stream past it.
PK_API __attribute__((target(PK_BF16))) void pk_gemm_bf16dot(const uint16_t* w, int k, int r0, int r1,
                                                             const uint16_t* xb, int n, float* y, long yStride,
                                                             const float* bias)
{
    int tile = (int)((256L * 1024) / ((long)k * 2));
    tile = tile < 6 ? 6 : tile - tile % 6;
    for (int t0 = 0; t0 < n; t0 += tile)
    {
        int tn = n - t0 < tile ? n - t0 : tile;
        int r = r0;
        for (; r + 4 <= r1; r += 4)
        {
            const uint16_t* wr = w + (long)r * k;
            const float* br = bias ? bias + r : 0;
            int t = 0;
            for (; t + 6 <= tn; t += 6)
                micro4_bf16_6(wr, k, xb + (long)(t0 + t) * k, y + (t0 + t) * yStride + r, yStride, br);
            const uint16_t* xt = xb + (long)(t0 + t) * k;
            float* yt = y + (t0 + t) * yStride + r;
            switch (tn - t)
            {
                case 5: micro4_bf16_5(wr, k, xt, yt, yStride, br); break;
                case 4: micro4_bf16_4(wr, k, xt, yt, yStride, br); break;
                case 3: micro4_bf16_3(wr, k, xt, yt, yStride, br); break;
                case 2: micro4_bf16_2(wr, k, xt, yt, yStride, br); break;
                case 1: micro4_bf16_1(wr, k, xt, yt, yStride, br); break;
                default: break;
            }
        }
        for (; r < r1; r++)
            for (int t = 0; t < tn; t++)
                y[(t0 + t) * yStride + r] = dot_bf16(w + (long)r * k, xb + (long)(t0 + t) * k, k) + (bias ? bias[r] : 0.0f);
    }
}
