#ifndef CED_KERNELS_NEON_H
#define CED_KERNELS_NEON_H

// Shared between the NEON kernel files and the dispatchers of the shared ones (rows.c,
// train.c, tile_portable.c, bf16.c, int8.c); not part of the Swift-visible API. Defined
// only on AArch64.

#include "CEDKernels.h"

#if defined(__aarch64__)
#include <arm_neon.h>
#include "gelu.h"

void ced_gelu_neon(const float *in, float *out, int64_t n);
void ced_softmax_rows_neon(float *p, int64_t rows, int64_t cols);
void ced_softmax_rows_bf16_neon(const float *s, int64_t rows, int64_t cols, int64_t lds,
                                uint16_t *p, int64_t ldp, int64_t rows_pad, int64_t cols_pad, float *inv_sum);
void ced_scale_rows_neon(float *c, int64_t ldc, int64_t rows, int64_t cols, const float *scale);
void ced_layernorm_rows_neon(const float *x, float *y, int64_t rows, int64_t cols,
                             const float *weight, const float *bias, float eps);
void ced_gelu_backward_neon(const float *h, const float *dy, float *dx, int64_t n);
void ced_gelu_and_grad_neon(const float *h, float *y, float *gp, int64_t n);
void ced_transpose_neon(const float *src, int64_t lds, int64_t rows, int64_t cols, float *dst, int64_t ldd, int add);
void ced_bf16_pack_rows_neon(const float *x, int64_t ldx, int64_t rows, int64_t cols,
                             uint16_t *y, int64_t ldy, int64_t rows_pad, int64_t cols_pad);
void ced_q8_quantize_rows_neon(const float *x, int64_t ldx, int64_t rows, int64_t cols,
                               uint8_t *y, int64_t ldy, int64_t rows_pad, int64_t cols_pad, float *scales);

/// The epilogue of the NEON tiles: rows [row_begin, row_end) and columns [col_begin,
/// col_end) of `acc` (row stride 16 floats) → alpha, beta·C, bias, exact GELU, add C.
void ced_epilogue_neon(const float *acc, const ced_tile *tile);

// Exact GELU of four floats: the formula of gelu.h (and of the AVX-512 epilogue), with the
// exp argument t²/2 split exactly by an FMA instead of computed in double.
static inline float32x4_t ced_gelu_f32x4(float32x4_t x) {
    const float32x4_t one = vdupq_n_f32(1.0f), half = vdupq_n_f32(0.5f);
    const float32x4_t tmax = vdupq_n_f32(CED_GELU_TMAX);
    float32x4_t t = vabsq_f32(x);
    // |x| <= 1: Φ = 0.5 + x·P(x²)
    float32x4_t x2 = vmulq_f32(x, x);
    float32x4_t p = vdupq_n_f32(ced_gelu_p[6]);
    for (int i = 5; i >= 0; i--) p = vfmaq_f32(vdupq_n_f32(ced_gelu_p[i]), p, x2);
    float32x4_t small = vfmaq_f32(half, x, p);
    // |x| > 1: Φ(−t) = exp(−t²/2)·S(1/(1 + t/2))
    float32x4_t tc = vminq_f32(t, tmax);
    float32x4_t w = vdivq_f32(one, vfmaq_f32(one, half, tc));
    float32x4_t s = vdupq_n_f32(ced_gelu_s[8]);
    for (int i = 7; i >= 0; i--) s = vfmaq_f32(vdupq_n_f32(ced_gelu_s[i]), s, w);
    float32x4_t hh = vmulq_f32(tc, tc);
    float32x4_t hl = vfmaq_f32(vnegq_f32(hh), tc, tc);           // tc² − hh, exactly
    float32x4_t y = vmulq_f32(hh, vdupq_n_f32(-0.5f)), yl = vmulq_f32(hl, vdupq_n_f32(-0.5f));
    float32x4_t n = vrndnq_f32(vmulq_f32(y, vdupq_n_f32(CED_LOG2E)));
    float32x4_t r = vfmsq_f32(y, n, vdupq_n_f32(CED_LN2_HI));
    r = vaddq_f32(vfmsq_f32(r, n, vdupq_n_f32(CED_LN2_LO)), yl);
    float32x4_t e = vdupq_n_f32(ced_exp_e[4]);
    for (int i = 3; i >= 0; i--) e = vfmaq_f32(vdupq_n_f32(ced_exp_e[i]), e, r);
    float32x4_t ex = vfmaq_f32(vaddq_f32(r, one), vmulq_f32(r, r), e);
    int32x4_t bits = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    float32x4_t lower = vmulq_f32(vmulq_f32(ex, vreinterpretq_f32_s32(bits)), s);
    lower = vbslq_f32(vcleq_f32(t, tmax), lower, vdupq_n_f32(0.0f));   // 0 past TMAX (and for NaN)
    float32x4_t big = vbslq_f32(vcltq_f32(x, vdupq_n_f32(0.0f)), lower, vsubq_f32(one, lower));
    float32x4_t phi = vbslq_f32(vcleq_f32(t, vdupq_n_f32(CED_GELU_SPLIT)), small, big);
    return vmulq_f32(x, phi);
}
#endif

#endif
