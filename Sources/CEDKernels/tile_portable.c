// Portable C microkernel: one 4×16 tile of C per call, for CPUs without AVX2/AVX-512
// (and as a cross-check of the SIMD kernels in tests).

#include "CEDKernels.h"
#include "gelu.h"
#include "neon.h"   // the NEON variants (AArch64)

void ced_gelu_avx512(const float *in, float *out, int64_t n);
void ced_gelu_avx2(const float *in, float *out, int64_t n);
void ced_gelu_fast_avx512(const float *in, float *out, int64_t n);

void ced_tile_portable(const ced_tile *tile) {
    enum { MR = CED_PORTABLE_MR, NR = CED_PORTABLE_NR };
    float acc[MR][NR];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) acc[i][j] = 0.0f;
    const float *a = tile->a, *b = tile->b;
    const int64_t lda = tile->lda, ldb = tile->ldb;
    for (int64_t p = 0; p < tile->k; p++) {
        const float *brow = b + p * ldb;
        for (int i = 0; i < MR; i++) {
            const float av = a[i * lda + p];
            for (int j = 0; j < NR; j++) acc[i][j] += av * brow[j];
        }
    }
    for (int32_t i = tile->row_begin; i < tile->row_end; i++) {
        float *crow = tile->c + i * tile->ldc;
        for (int32_t j = tile->col_begin; j < tile->col_end; j++) {
            float v = tile->alpha * acc[i][j];
            if (tile->beta != 0.0f) v += tile->beta * crow[j];
            if (tile->bias) v += tile->bias[j];
            if (tile->gelu) v = ced_gelu_scalar(v);   // gelu == 2 (fast) too: exact here
            if (tile->add_c) v += crow[j];
            crow[j] = v;
        }
    }
}

void ced_gelu(const float *in, float *out, int64_t n, int32_t variant) {
    if (variant == 3) {
        ced_gelu_fast_avx512(in, out, n);
    } else if (variant == 2) {
        ced_gelu_avx512(in, out, n);
    } else if (variant == 1) {
        ced_gelu_avx2(in, out, n);
#if defined(__aarch64__)
    } else if (variant == CED_VARIANT_NEON) {
        ced_gelu_neon(in, out, n);
#endif
    } else {
        for (int64_t i = 0; i < n; i++) out[i] = ced_gelu_scalar(in[i]);
    }
}
