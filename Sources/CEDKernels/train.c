// Elementwise kernels of training that need a vectorised erf/exp: the GELU derivative.
// (The matrix products of training run on the same microkernels as inference.)
//
// GELU(x) = x·Φ(x), so GELU'(x) = Φ(x) + x·φ(x) with φ(x) = exp(−x²/2)/√(2π).
// Φ uses the approximation of gelu.h (scripts/fit_gelu.py); exp the same range reduction.

#include "CEDKernels.h"
#include "gelu.h"
#include "neon.h"   // the NEON variants (AArch64)

#define CED_INV_SQRT_2PI 0.3989422804014327f

/// Φ(x) and GELU'(x) at once.
static inline void gelu_phi_grad_scalar(float x, float *phi_out, float *grad_out) {
    float t = x < 0 ? -x : x;
    if (!(t <= CED_GELU_TMAX)) {
        float v = (x != x) ? x : (x < 0 ? 0.0f : 1.0f);
        *phi_out = v;
        *grad_out = v;
        return;
    }
    float g = ced_exp_neg_scalar(-0.5 * (double)t * (double)t);
    float phi;
    if (t <= CED_GELU_SPLIT) {
        float x2 = x * x;
        float p = ced_gelu_p[6];
        for (int i = 5; i >= 0; i--) p = p * x2 + ced_gelu_p[i];
        phi = 0.5f + x * p;
    } else {
        float w = 1.0f / (1.0f + 0.5f * t);
        float s = ced_gelu_s[8];
        for (int i = 7; i >= 0; i--) s = s * w + ced_gelu_s[i];
        float lower = g * s;
        phi = x < 0 ? lower : 1.0f - lower;
    }
    *phi_out = phi;
    *grad_out = phi + x * g * CED_INV_SQRT_2PI;
}

static void gelu_and_grad_portable(const float *h, float *y, float *gp, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float phi, grad;
        gelu_phi_grad_scalar(h[i], &phi, &grad);
        y[i] = h[i] * phi;
        gp[i] = grad;
    }
}

static void gelu_backward_portable(const float *h, const float *dy, float *dx, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float phi, grad;
        gelu_phi_grad_scalar(h[i], &phi, &grad);
        dx[i] = dy[i] * grad;
    }
}

#if defined(__x86_64__)
#include <immintrin.h>
#define AVX512 __attribute__((target("avx512f,fma")))

/// exp(y) for 16 values y ≤ 0 (same reduction as the scalar version, in float with a
/// two-part ln 2).
AVX512 static inline __m512 exp_neg_avx512(__m512 y) {
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(y, _mm512_set1_ps(CED_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(CED_LN2_HI), y);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(CED_LN2_LO), r);
    __m512 e = _mm512_set1_ps(ced_exp_e[4]);
    for (int i = 3; i >= 0; i--) e = _mm512_fmadd_ps(e, r, _mm512_set1_ps(ced_exp_e[i]));
    __m512 r2 = _mm512_mul_ps(r, r);
    __m512 ex = _mm512_fmadd_ps(r2, e, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    __m512 out = _mm512_scalef_ps(ex, n);
    __mmask16 tiny = _mm512_cmp_ps_mask(y, _mm512_set1_ps(-87.0f), _CMP_LT_OQ);
    return _mm512_mask_blend_ps(tiny, out, _mm512_setzero_ps());
}

/// Φ(x) (in *phi) and GELU'(x) for 16 values.
AVX512 static inline __m512 gelu_phi_grad_avx512(__m512 x, __m512 *phi_out) {
    const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
    const __m512 split = _mm512_set1_ps(CED_GELU_SPLIT), tmax = _mm512_set1_ps(CED_GELU_TMAX);
    {
        __m512 t = _mm512_abs_ps(x);
        __m512 tc = _mm512_min_ps(t, tmax);
        __m512 g = exp_neg_avx512(_mm512_mul_ps(_mm512_mul_ps(tc, tc), _mm512_set1_ps(-0.5f)));
        // |x| <= 1: Φ = 0.5 + x·P(x²)
        __m512 x2 = _mm512_mul_ps(x, x);
        __m512 p = _mm512_set1_ps(ced_gelu_p[6]);
        for (int k = 5; k >= 0; k--) p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(ced_gelu_p[k]));
        __m512 inner = _mm512_fmadd_ps(x, p, half);
        // |x| > 1: Φ(−t) = exp(−t²/2)·S(1/(1 + t/2))
        __m512 w = _mm512_div_ps(one, _mm512_fmadd_ps(half, tc, one));
        __m512 s = _mm512_set1_ps(ced_gelu_s[8]);
        for (int k = 7; k >= 0; k--) s = _mm512_fmadd_ps(s, w, _mm512_set1_ps(ced_gelu_s[k]));
        __m512 lower = _mm512_mul_ps(g, s);
        __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
        __m512 outer = _mm512_mask_blend_ps(neg, _mm512_sub_ps(one, lower), lower);
        __mmask16 small = _mm512_cmp_ps_mask(t, split, _CMP_LE_OQ);
        __m512 phi = _mm512_mask_blend_ps(small, outer, inner);
        __m512 grad = _mm512_fmadd_ps(_mm512_mul_ps(x, g), _mm512_set1_ps(CED_INV_SQRT_2PI), phi);
        // Past 12.5 the derivative is 0 or 1 (NaN passes through the product with d).
        __mmask16 big = _mm512_cmp_ps_mask(t, tmax, _CMP_GT_OQ);
        grad = _mm512_mask_blend_ps(big, grad, _mm512_mask_blend_ps(neg, one, _mm512_setzero_ps()));
        __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
        grad = _mm512_mask_blend_ps(nan, grad, x);
        phi = _mm512_mask_blend_ps(big, phi, _mm512_mask_blend_ps(neg, one, _mm512_setzero_ps()));
        *phi_out = _mm512_mask_blend_ps(nan, phi, x);
        return grad;
    }
}

AVX512 static void gelu_backward_avx512(const float *h, const float *dy, float *dx, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1u);
        __m512 x = _mm512_maskz_loadu_ps(m, h + i), phi;
        __m512 grad = gelu_phi_grad_avx512(x, &phi);
        _mm512_mask_storeu_ps(dx + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, dy + i), grad));
    }
}

AVX512 static void gelu_and_grad_avx512(const float *h, float *y, float *gp, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1u);
        __m512 x = _mm512_maskz_loadu_ps(m, h + i), phi;
        __m512 grad = gelu_phi_grad_avx512(x, &phi);
        _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(x, phi));
        _mm512_mask_storeu_ps(gp + i, m, grad);
    }
}
#endif

void ced_gelu_and_grad(const float *h, float *y, float *gp, int64_t n, int32_t variant) {
#if defined(__x86_64__)
    if (variant >= 2) {
        gelu_and_grad_avx512(h, y, gp, n);
        return;
    }
#endif
#if defined(__aarch64__)
    if (variant == CED_VARIANT_NEON) { ced_gelu_and_grad_neon(h, y, gp, n); return; }
#endif
    gelu_and_grad_portable(h, y, gp, n);
}

void ced_gelu_backward(const float *h, const float *dy, float *dx, int64_t n, int32_t variant) {
#if defined(__x86_64__)
    if (variant >= 2) {
        gelu_backward_avx512(h, dy, dx, n);
        return;
    }
#endif
#if defined(__aarch64__)
    if (variant == CED_VARIANT_NEON) { ced_gelu_backward_neon(h, dy, dx, n); return; }
#endif
    gelu_backward_portable(h, dy, dx, n);
}

// MARK: transpose

static void transpose_portable(const float *src, int64_t lds, int64_t rows, int64_t cols, float *dst, int64_t ldd, int add) {
    for (int64_t i0 = 0; i0 < rows; i0 += 16) {
        int64_t i1 = i0 + 16 < rows ? i0 + 16 : rows;
        for (int64_t j0 = 0; j0 < cols; j0 += 16) {
            int64_t j1 = j0 + 16 < cols ? j0 + 16 : cols;
            for (int64_t i = i0; i < i1; i++)
                for (int64_t j = j0; j < j1; j++) dst[j * ldd + i] = (add ? dst[j * ldd + i] : 0.0f) + src[i * lds + j];
        }
    }
}

#if defined(__x86_64__)
#define AVX2T __attribute__((target("avx2,fma")))

/// 8×8 block: rows of `s` (stride lds) → columns of `d` (stride ldd).
#define STORE8(p, v) _mm256_storeu_ps((p), add ? _mm256_add_ps(_mm256_loadu_ps(p), (v)) : (v))
AVX2T static inline void transpose8x8(const float *s, int64_t lds, float *d, int64_t ldd, int add) {
    __m256 r0 = _mm256_loadu_ps(s), r1 = _mm256_loadu_ps(s + lds), r2 = _mm256_loadu_ps(s + 2 * lds),
           r3 = _mm256_loadu_ps(s + 3 * lds), r4 = _mm256_loadu_ps(s + 4 * lds), r5 = _mm256_loadu_ps(s + 5 * lds),
           r6 = _mm256_loadu_ps(s + 6 * lds), r7 = _mm256_loadu_ps(s + 7 * lds);
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3),
           t3 = _mm256_unpackhi_ps(r2, r3), t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
           t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE), u2 = _mm256_shuffle_ps(t1, t3, 0x44),
           u3 = _mm256_shuffle_ps(t1, t3, 0xEE), u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE),
           u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    STORE8(d, _mm256_permute2f128_ps(u0, u4, 0x20));
    STORE8(d + ldd, _mm256_permute2f128_ps(u1, u5, 0x20));
    STORE8(d + 2 * ldd, _mm256_permute2f128_ps(u2, u6, 0x20));
    STORE8(d + 3 * ldd, _mm256_permute2f128_ps(u3, u7, 0x20));
    STORE8(d + 4 * ldd, _mm256_permute2f128_ps(u0, u4, 0x31));
    STORE8(d + 5 * ldd, _mm256_permute2f128_ps(u1, u5, 0x31));
    STORE8(d + 6 * ldd, _mm256_permute2f128_ps(u2, u6, 0x31));
    STORE8(d + 7 * ldd, _mm256_permute2f128_ps(u3, u7, 0x31));
}

AVX2T static void transpose_avx2(const float *src, int64_t lds, int64_t rows, int64_t cols, float *dst, int64_t ldd, int add) {
    int64_t r8 = rows / 8 * 8, c8 = cols / 8 * 8;
    // 32×32 cache blocks of 8×8 register blocks.
    for (int64_t i0 = 0; i0 < r8; i0 += 32) {
        int64_t i1 = i0 + 32 < r8 ? i0 + 32 : r8;
        for (int64_t j0 = 0; j0 < c8; j0 += 32) {
            int64_t j1 = j0 + 32 < c8 ? j0 + 32 : c8;
            for (int64_t i = i0; i < i1; i += 8)
                for (int64_t j = j0; j < j1; j += 8) transpose8x8(src + i * lds + j, lds, dst + j * ldd + i, ldd, add);
        }
    }
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = (i < r8 ? c8 : 0); j < cols; j++) dst[j * ldd + i] = (add ? dst[j * ldd + i] : 0.0f) + src[i * lds + j];
}
#endif

void ced_transpose(const float *src, int64_t lds, int64_t rows, int64_t cols, float *dst, int64_t ldd, int32_t add,
                   int32_t variant) {
#if defined(__x86_64__)
    if (variant >= 1) {
        transpose_avx2(src, lds, rows, cols, dst, ldd, add);
        return;
    }
#endif
#if defined(__aarch64__)
    if (variant >= 1) { ced_transpose_neon(src, lds, rows, cols, dst, ldd, add); return; }
#endif
    transpose_portable(src, lds, rows, cols, dst, ldd, add);
}
