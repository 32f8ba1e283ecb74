// Single-thread throughput of the native matmul kernels (src/Inference/Native/piserve_kernels.c), the
// way Kernels/Gemm.cs and CpuBackend call them: y[t, r] = Σ_k W[r, k]·x[t, k] for R rows, K columns
// and N tokens in tiles of T tokens. Prints GFLOP/s (2·R·K·N per pass), best of 5 passes, for
//   exact, panel   pk_micro4_f32 over a 4-row f32 panel (f32/f16 weights; the panel copy is counted)
//   exact, bf16    pk_micro4_bf16_rows, bf16 rows read in place (bf16 weights)
//   bf16 matmuls   pk_gemm_bf16dot, activations rounded to bf16 (MatmulPrecision=bf16; conversion counted)
// Build and run with tools/bench/native/kernels_bench.sh.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int pk_features(void);
void pk_micro4_f32(const float* w, int k, const float* x, int n, float* y, long yStride, const float* bias);
void pk_micro4_bf16_rows(const uint16_t* w, int k, const float* x, int n, float* y, long yStride, const float* bias);
void pk_gemm_bf16dot(const uint16_t* w, int k, int r0, int r1, const uint16_t* xb, int n, float* y, long yStride, const float* bias);
void pk_f32_to_bf16(const float* x, uint16_t* out, long count);

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char** argv)
{
    int K = argc > 1 ? atoi(argv[1]) : 768, R = argc > 2 ? atoi(argv[2]) : 768;
    int N = argc > 3 ? atoi(argv[3]) : 512, T = argc > 4 ? atoi(argv[4]) : 64;
    if ((pk_features() & 3) != 3) { fprintf(stderr, "needs AVX-512 with AVX512-BF16\n"); return 1; }
    float* w = aligned_alloc(64, (size_t)R * K * 4 + 64);
    float* x = aligned_alloc(64, (size_t)N * K * 4 + 64);
    float* y = aligned_alloc(64, (size_t)N * R * 4 + 64);
    float* panel = aligned_alloc(64, (size_t)4 * K * 4 + 64);
    uint16_t* wb = aligned_alloc(64, (size_t)R * K * 2 + 64);
    uint16_t* xb = aligned_alloc(64, (size_t)N * K * 2 + 64);
    srand(1);
    for (long i = 0; i < (long)R * K; i++) w[i] = rand() / (float)RAND_MAX - 0.5f;
    for (long i = 0; i < (long)N * K; i++) x[i] = rand() / (float)RAND_MAX - 0.5f;
    pk_f32_to_bf16(w, wb, (long)R * K);
    double flops = 2.0 * R * K * N, best[3] = {0, 0, 0};
    for (int pass = 0; pass < 5; pass++)
    {
        double t0 = now();
        for (int t = 0; t < N; t += T)
            for (int r = 0; r + 4 <= R; r += 4)
            {
                memcpy(panel, w + (long)r * K, (size_t)4 * K * 4);
                pk_micro4_f32(panel, K, x + (long)t * K, N - t < T ? N - t : T, y + (long)t * R + r, R, 0);
            }
        double t1 = now();
        for (int t = 0; t < N; t += T)
            for (int r = 0; r + 4 <= R; r += 4)
                pk_micro4_bf16_rows(wb + (long)r * K, K, x + (long)t * K, N - t < T ? N - t : T, y + (long)t * R + r, R, 0);
        double t2 = now();
        pk_f32_to_bf16(x, xb, (long)N * K);
        pk_gemm_bf16dot(wb, K, 0, R, xb, N, y, R, 0);
        double t3 = now();
        double g[3] = {flops / (t1 - t0) / 1e9, flops / (t2 - t1) / 1e9, flops / (t3 - t2) / 1e9};
        for (int i = 0; i < 3; i++) if (g[i] > best[i]) best[i] = g[i];
    }
    printf("{\"k\": %d, \"rows\": %d, \"tokens\": %d, \"tile\": %d, \"exact_panel_gflops\": %.1f, \"exact_bf16_rows_gflops\": %.1f, \"bf16_matmul_gflops\": %.1f}\n",
           K, R, N, T, best[0], best[1], best[2]);
    return 0;
}
