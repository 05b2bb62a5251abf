// NEON fp32 microkernel (Armv8.0-A AArch64, arm_neon.h intrinsics; the same source builds
// with Apple clang, Linux clang and gcc): one 5×16 tile of C per call.
//
// Register budget (32 × 128-bit): 20 accumulators (5 rows × 4 vectors of 4 columns), 5 A
// registers holding four consecutive k values of each row (A is read in place, row-major,
// as on x86), 4 B registers (one k row of the 16-column tile). Each k step is 20 `fmla` by
// element (lane q of a row's A register), so a 4-k group is 80 FMAs against 5 A loads and
// 8 B load pairs. A tile 6 rows high would need 24 + 6 + 4 = 34 registers; a 12-column one
// would straddle the 32-column panels shared with the x86 kernels.

#include "neon.h"

#if defined(__aarch64__)

// Keeps the compiler from hoisting the next group's loads above this point (it would run out
// of registers and spill accumulators); the hardware reorders loads anyway.
#define CED_NEON_ORDER() __asm__ volatile("" ::: "memory")

#define FMA_ROW(i, A, q) \
    c##i##0 = vfmaq_laneq_f32(c##i##0, b0, A, q); \
    c##i##1 = vfmaq_laneq_f32(c##i##1, b1, A, q); \
    c##i##2 = vfmaq_laneq_f32(c##i##2, b2, A, q); \
    c##i##3 = vfmaq_laneq_f32(c##i##3, b3, A, q);

#define K_STEP(bp, q) { CED_NEON_ORDER(); \
    const float32x4_t b0 = vld1q_f32((bp)), b1 = vld1q_f32((bp) + 4); \
    const float32x4_t b2 = vld1q_f32((bp) + 8), b3 = vld1q_f32((bp) + 12); \
    FMA_ROW(0, a0, q) FMA_ROW(1, a1, q) FMA_ROW(2, a2, q) FMA_ROW(3, a3, q) FMA_ROW(4, a4, q) }

#define DECL_ROW(i) float32x4_t c##i##0 = vdupq_n_f32(0), c##i##1 = c##i##0, c##i##2 = c##i##0, c##i##3 = c##i##0;
#define STORE_ROW(i) \
    vst1q_f32(acc + 16 * i, c##i##0); vst1q_f32(acc + 16 * i + 4, c##i##1); \
    vst1q_f32(acc + 16 * i + 8, c##i##2); vst1q_f32(acc + 16 * i + 12, c##i##3);

/// The k loop: `acc[5][16] = A[5][k]·B[k][16]` with B rows `ldb` floats apart. Inlined twice,
/// once with the packed panels' ldb of 32 as a constant (immediate load offsets).
static inline __attribute__((always_inline)) void tile_loop(const float *a, int64_t lda, const float *b, int64_t ldb,
                                                            int64_t k, float *acc) {
    DECL_ROW(0) DECL_ROW(1) DECL_ROW(2) DECL_ROW(3) DECL_ROW(4)
    const float *r0 = a, *r1 = a + lda, *r2 = a + 2 * lda, *r3 = a + 3 * lda, *r4 = a + 4 * lda;
    int64_t p = 0;
    // Eight k per iteration: the loop's pointer and counter updates are paid once per 160
    // FMAs.
    for (; p + 8 <= k; p += 8) {
        float32x4_t a0 = vld1q_f32(r0 + p), a1 = vld1q_f32(r1 + p), a2 = vld1q_f32(r2 + p);
        float32x4_t a3 = vld1q_f32(r3 + p), a4 = vld1q_f32(r4 + p);
        K_STEP(b, 0)
        K_STEP(b + ldb, 1)
        K_STEP(b + 2 * ldb, 2)
        K_STEP(b + 3 * ldb, 3)
        CED_NEON_ORDER();
        a0 = vld1q_f32(r0 + p + 4), a1 = vld1q_f32(r1 + p + 4), a2 = vld1q_f32(r2 + p + 4);
        a3 = vld1q_f32(r3 + p + 4), a4 = vld1q_f32(r4 + p + 4);
        K_STEP(b + 4 * ldb, 0)
        K_STEP(b + 5 * ldb, 1)
        K_STEP(b + 6 * ldb, 2)
        K_STEP(b + 7 * ldb, 3)
        b += 8 * ldb;
    }
    for (; p + 4 <= k; p += 4) {
        const float32x4_t a0 = vld1q_f32(r0 + p), a1 = vld1q_f32(r1 + p), a2 = vld1q_f32(r2 + p);
        const float32x4_t a3 = vld1q_f32(r3 + p), a4 = vld1q_f32(r4 + p);
        K_STEP(b, 0)
        K_STEP(b + ldb, 1)
        K_STEP(b + 2 * ldb, 2)
        K_STEP(b + 3 * ldb, 3)
        b += 4 * ldb;
    }
    for (; p < k; p++) {
        const float32x4_t a0 = vld1q_dup_f32(r0 + p), a1 = vld1q_dup_f32(r1 + p), a2 = vld1q_dup_f32(r2 + p);
        const float32x4_t a3 = vld1q_dup_f32(r3 + p), a4 = vld1q_dup_f32(r4 + p);
        K_STEP(b, 0)
        b += ldb;
    }
    STORE_ROW(0) STORE_ROW(1) STORE_ROW(2) STORE_ROW(3) STORE_ROW(4)
}

void ced_epilogue_neon(const float *acc, const ced_tile *tile) {
    const int32_t c0 = tile->col_begin, c1 = tile->col_end;
    const float alpha = tile->alpha, beta = tile->beta;
    const float32x4_t va = vdupq_n_f32(alpha), vb = vdupq_n_f32(beta);
    for (int32_t i = tile->row_begin; i < tile->row_end; i++) {
        float *crow = tile->c + i * tile->ldc;
        const float *arow = acc + 16 * i;
        int32_t j = c0;
        for (; j + 4 <= c1; j += 4) {
            float32x4_t v = vld1q_f32(arow + j);
            if (alpha != 1.0f) v = vmulq_f32(v, va);
            if (beta != 0.0f) v = vfmaq_f32(v, vb, vld1q_f32(crow + j));
            if (tile->bias) v = vaddq_f32(v, vld1q_f32(tile->bias + j));
            if (tile->gelu) v = ced_gelu_f32x4(v);   // gelu == 2 (fast) too: exact here
            if (tile->add_c) v = vaddq_f32(v, vld1q_f32(crow + j));
            vst1q_f32(crow + j, v);
        }
        for (; j < c1; j++) {
            float v = alpha * arow[j];
            if (beta != 0.0f) v += beta * crow[j];
            if (tile->bias) v += tile->bias[j];
            if (tile->gelu) v = ced_gelu_scalar(v);
            if (tile->add_c) v += crow[j];
            crow[j] = v;
        }
    }
}

void ced_tile_neon(const ced_tile *tile) {
    float acc[CED_NEON_MR * 16] __attribute__((aligned(16)));
    if (tile->ldb == 32) tile_loop(tile->a, tile->lda, tile->b, 32, tile->k, acc);
    else tile_loop(tile->a, tile->lda, tile->b, tile->ldb, tile->k, acc);
    ced_epilogue_neon(acc, tile);
}

void ced_gelu_neon(const float *in, float *out, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(out + i, ced_gelu_f32x4(vld1q_f32(in + i)));
    if (i < n) {
        float buf[4] = {0, 0, 0, 0};
        for (int64_t t = i; t < n; t++) buf[t - i] = in[t];
        vst1q_f32(buf, ced_gelu_f32x4(vld1q_f32(buf)));
        for (int64_t t = i; t < n; t++) out[t] = buf[t - i];
    }
}

#else
void ced_tile_neon(const ced_tile *tile) { ced_tile_portable(tile); }
#endif
