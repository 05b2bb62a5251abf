// Row kernels of the transformer besides the matrix products: softmax (with a fast exp
// accurate to about 1 ulp) and LayerNorm. AVX-512, AVX2 and portable variants; the caller
// picks one the CPU supports (variant 2 = AVX-512, 1 = AVX2, 0 = portable).

#include "CEDKernels.h"
#include <math.h>
#include <string.h>
#include "neon.h"   // the NEON variants (AArch64)

// exp(x) for the softmax, x <= 0: x = n·ln2 + r with |r| <= ln2/2, exp(r) by the Cephes
// degree-6 polynomial, times 2^n. Below -87.3 the result would be subnormal and is 0: it
// cannot change a softmax row (whose maximum contributes exactly 1).
#define EXP_LO (-87.3f)
#define LOG2E 1.44269504088896341f
#define LN2_HI 0.693359375f
#define LN2_LO (-2.12194440e-4f)
#define P0 1.9875691500e-4f
#define P1 1.3981999507e-3f
#define P2 8.3334519073e-3f
#define P3 4.1665795894e-2f
#define P4 1.6666665459e-1f
#define P5 5.0000001201e-1f

static inline float exp_scalar(float x) {
    if (!(x >= EXP_LO)) return 0.0f;
    float n = nearbyintf(x * LOG2E);
    float r = x - n * LN2_HI - n * LN2_LO;
    float p = ((((P0 * r + P1) * r + P2) * r + P3) * r + P4) * r + P5;
    float e = p * r * r + r + 1.0f;
    return ldexpf(e, (int)n);
}

static void softmax_portable(float *p, int64_t rows, int64_t cols) {
    for (int64_t i = 0; i < rows; i++) {
        float *row = p + i * cols;
        float m = -INFINITY;
        for (int64_t j = 0; j < cols; j++) m = row[j] > m ? row[j] : m;
        float sum = 0;
        for (int64_t j = 0; j < cols; j++) { float e = exp_scalar(row[j] - m); row[j] = e; sum += e; }
        float inv = 1.0f / sum;
        for (int64_t j = 0; j < cols; j++) row[j] *= inv;
    }
}

static void layernorm_portable(const float *x, float *y, int64_t rows, int64_t cols,
                               const float *w, const float *b, float eps) {
    for (int64_t i = 0; i < rows; i++) {
        const float *xr = x + i * cols;
        float *yr = y + i * cols;
        float sum = 0;
        for (int64_t j = 0; j < cols; j++) sum += xr[j];
        float mean = sum / (float)cols;
        float sq = 0;
        for (int64_t j = 0; j < cols; j++) { float d = xr[j] - mean; sq += d * d; }
        float inv = 1.0f / sqrtf(sq / (float)cols + eps);
        for (int64_t j = 0; j < cols; j++) yr[j] = (xr[j] - mean) * inv * w[j] + b[j];
    }
}

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,fma")))
#define AVX2 __attribute__((target("avx2,fma")))

AVX512 static inline __m512 exp512(__m512 x) {
    __mmask16 small = _mm512_cmp_ps_mask(x, _mm512_set1_ps(EXP_LO), _CMP_LT_OQ);
    x = _mm512_max_ps(x, _mm512_set1_ps(EXP_LO));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
    __m512 p = _mm512_set1_ps(P0);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P5));
    __m512 e = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_maskz_scalef_ps((__mmask16)~small, e, n);
}

AVX512 static void softmax_avx512(float *p, int64_t rows, int64_t cols) {
    // Four independent accumulators for the max and the sum: a single one makes each pass
    // a chain of dependent 4-cycle operations (the row lengths here are a few hundred).
    const int64_t full = cols & ~(int64_t)15;
    const __mmask16 tail = (__mmask16)((1u << (cols - full)) - 1u);
    for (int64_t i = 0; i < rows; i++) {
        float *row = p + i * cols;
        __m512 m0 = _mm512_set1_ps(-INFINITY), m1 = m0, m2 = m0, m3 = m0;
        int64_t j = 0;
        for (; j + 64 <= full; j += 64) {
            m0 = _mm512_max_ps(m0, _mm512_loadu_ps(row + j));
            m1 = _mm512_max_ps(m1, _mm512_loadu_ps(row + j + 16));
            m2 = _mm512_max_ps(m2, _mm512_loadu_ps(row + j + 32));
            m3 = _mm512_max_ps(m3, _mm512_loadu_ps(row + j + 48));
        }
        for (; j < full; j += 16) m0 = _mm512_max_ps(m0, _mm512_loadu_ps(row + j));
        if (tail) m1 = _mm512_mask_max_ps(m1, tail, m1, _mm512_maskz_loadu_ps(tail, row + full));
        __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3))));
        __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        for (j = 0; j + 64 <= full; j += 64) {
            __m512 e0 = exp512(_mm512_sub_ps(_mm512_loadu_ps(row + j), m));
            __m512 e1 = exp512(_mm512_sub_ps(_mm512_loadu_ps(row + j + 16), m));
            __m512 e2 = exp512(_mm512_sub_ps(_mm512_loadu_ps(row + j + 32), m));
            __m512 e3 = exp512(_mm512_sub_ps(_mm512_loadu_ps(row + j + 48), m));
            _mm512_storeu_ps(row + j, e0);
            _mm512_storeu_ps(row + j + 16, e1);
            _mm512_storeu_ps(row + j + 32, e2);
            _mm512_storeu_ps(row + j + 48, e3);
            s0 = _mm512_add_ps(s0, e0);
            s1 = _mm512_add_ps(s1, e1);
            s2 = _mm512_add_ps(s2, e2);
            s3 = _mm512_add_ps(s3, e3);
        }
        for (; j < full; j += 16) {
            __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(row + j), m));
            _mm512_storeu_ps(row + j, e);
            s0 = _mm512_add_ps(s0, e);
        }
        if (tail) {
            __m512 e = _mm512_maskz_mov_ps(tail, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, row + full), m)));
            _mm512_mask_storeu_ps(row + full, tail, e);
            s1 = _mm512_add_ps(s1, e);
        }
        __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3))));
        for (j = 0; j < full; j += 16) _mm512_storeu_ps(row + j, _mm512_mul_ps(_mm512_loadu_ps(row + j), inv));
        if (tail) _mm512_mask_storeu_ps(row + full, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, row + full), inv));
    }
}

AVX512 static void layernorm_avx512(const float *x, float *y, int64_t rows, int64_t cols,
                                    const float *w, const float *b, float eps) {
    for (int64_t i = 0; i < rows; i++) {
        const float *xr = x + i * cols;
        float *yr = y + i * cols;
        __m512 sv = _mm512_setzero_ps();
        int64_t j = 0;
        for (; j + 16 <= cols; j += 16) sv = _mm512_add_ps(sv, _mm512_loadu_ps(xr + j));
        __mmask16 tail = (__mmask16)((1u << (cols - j)) - 1u);
        int64_t vec = j;
        if (j < cols) sv = _mm512_add_ps(sv, _mm512_maskz_loadu_ps(tail, xr + j));
        float mean = _mm512_reduce_add_ps(sv) / (float)cols;
        __m512 m = _mm512_set1_ps(mean);
        __m512 qv = _mm512_setzero_ps();
        for (j = 0; j < vec; j += 16) { __m512 d = _mm512_sub_ps(_mm512_loadu_ps(xr + j), m); qv = _mm512_fmadd_ps(d, d, qv); }
        if (vec < cols) { __m512 d = _mm512_maskz_sub_ps(tail, _mm512_maskz_loadu_ps(tail, xr + vec), m); qv = _mm512_fmadd_ps(d, d, qv); }
        float inv = 1.0f / sqrtf(_mm512_reduce_add_ps(qv) / (float)cols + eps);
        __m512 s = _mm512_set1_ps(inv);
        for (j = 0; j < vec; j += 16) {
            __m512 d = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(xr + j), m), s);
            _mm512_storeu_ps(yr + j, _mm512_fmadd_ps(d, _mm512_loadu_ps(w + j), _mm512_loadu_ps(b + j)));
        }
        if (vec < cols) {
            __m512 d = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, xr + vec), m), s);
            _mm512_mask_storeu_ps(yr + vec, tail, _mm512_fmadd_ps(d, _mm512_maskz_loadu_ps(tail, w + vec), _mm512_maskz_loadu_ps(tail, b + vec)));
        }
    }
}

#define AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512bf16,fma")))

static inline __mmask16 mask_below(int64_t left) {
    return left >= 16 ? (__mmask16)0xffff : left > 0 ? (__mmask16)((1u << left) - 1u) : (__mmask16)0;
}

AVX512BF16 static void softmax_bf16_avx512(const float *s, int64_t rows, int64_t cols, int64_t lds,
                                           uint16_t *p, int64_t ldp, int64_t rows_pad, int64_t cols_pad,
                                           float *inv_sum) {
    for (int64_t i = 0; i < rows; i++) {
        const float *row = s + i * lds;
        uint16_t *out = p + i * ldp;
        __m512 m0 = _mm512_set1_ps(-INFINITY), m1 = m0;
        int64_t j = 0;
        for (; j + 32 <= cols; j += 32) {
            m0 = _mm512_max_ps(m0, _mm512_loadu_ps(row + j));
            m1 = _mm512_max_ps(m1, _mm512_loadu_ps(row + j + 16));
        }
        for (; j < cols; j += 16) {
            __mmask16 k = mask_below(cols - j);
            m0 = _mm512_mask_max_ps(m0, k, m0, _mm512_maskz_loadu_ps(k, row + j));
        }
        __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(_mm512_max_ps(m0, m1)));
        __m512 s0 = _mm512_setzero_ps(), s1 = s0;
        for (j = 0; j < cols_pad; j += 32) {
            __mmask16 k0 = mask_below(cols - j), k1 = mask_below(cols - j - 16);
            __m512 e0 = _mm512_maskz_mov_ps(k0, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k0, row + j), m)));
            __m512 e1 = _mm512_maskz_mov_ps(k1, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k1, row + j + 16), m)));
            s0 = _mm512_add_ps(s0, e0);
            s1 = _mm512_add_ps(s1, e1);
            _mm512_storeu_si512((void *)(out + j), (__m512i)_mm512_cvtne2ps_pbh(e1, e0));
        }
        inv_sum[i] = 1.0f / _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
    }
    for (int64_t i = rows; i < rows_pad; i++) memset(p + i * ldp, 0, (size_t)cols_pad * sizeof(uint16_t));
}

AVX512 static void scale_rows_avx512(float *c, int64_t ldc, int64_t rows, int64_t cols, const float *scale) {
    for (int64_t i = 0; i < rows; i++) {
        float *row = c + i * ldc;
        __m512 f = _mm512_set1_ps(scale[i]);
        for (int64_t j = 0; j < cols; j += 16) {
            __mmask16 k = mask_below(cols - j);
            _mm512_mask_storeu_ps(row + j, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, row + j), f));
        }
    }
}

AVX2 static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

AVX2 static inline float hmax256(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

AVX2 static inline __m256 exp256(__m256 x) {
    __m256 small = _mm256_cmp_ps(x, _mm256_set1_ps(EXP_LO), _CMP_LT_OQ);
    x = _mm256_max_ps(x, _mm256_set1_ps(EXP_LO));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
    __m256 p = _mm256_set1_ps(P0);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P5));
    __m256 e = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(small, _mm256_mul_ps(e, _mm256_castsi256_ps(bits)));
}

AVX2 static void softmax_avx2(float *p, int64_t rows, int64_t cols) {
    for (int64_t i = 0; i < rows; i++) {
        float *row = p + i * cols;
        __m256 mv = _mm256_set1_ps(-INFINITY);
        int64_t j = 0;
        for (; j + 8 <= cols; j += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(row + j));
        float m = hmax256(mv);
        for (int64_t t = j; t < cols; t++) m = row[t] > m ? row[t] : m;
        __m256 mm = _mm256_set1_ps(m);
        __m256 sv = _mm256_setzero_ps();
        for (j = 0; j + 8 <= cols; j += 8) {
            __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(row + j), mm));
            _mm256_storeu_ps(row + j, e);
            sv = _mm256_add_ps(sv, e);
        }
        float sum = hsum256(sv);
        for (; j < cols; j++) { float e = exp_scalar(row[j] - m); row[j] = e; sum += e; }
        float inv = 1.0f / sum;
        __m256 iv = _mm256_set1_ps(inv);
        for (j = 0; j + 8 <= cols; j += 8) _mm256_storeu_ps(row + j, _mm256_mul_ps(_mm256_loadu_ps(row + j), iv));
        for (; j < cols; j++) row[j] *= inv;
    }
}

AVX2 static void layernorm_avx2(const float *x, float *y, int64_t rows, int64_t cols,
                                const float *w, const float *b, float eps) {
    for (int64_t i = 0; i < rows; i++) {
        const float *xr = x + i * cols;
        float *yr = y + i * cols;
        __m256 sv = _mm256_setzero_ps();
        int64_t j = 0;
        for (; j + 8 <= cols; j += 8) sv = _mm256_add_ps(sv, _mm256_loadu_ps(xr + j));
        int64_t vec = j;
        float sum = hsum256(sv);
        for (; j < cols; j++) sum += xr[j];
        float mean = sum / (float)cols;
        __m256 m = _mm256_set1_ps(mean);
        __m256 qv = _mm256_setzero_ps();
        for (j = 0; j < vec; j += 8) { __m256 d = _mm256_sub_ps(_mm256_loadu_ps(xr + j), m); qv = _mm256_fmadd_ps(d, d, qv); }
        float sq = hsum256(qv);
        for (j = vec; j < cols; j++) { float d = xr[j] - mean; sq += d * d; }
        float inv = 1.0f / sqrtf(sq / (float)cols + eps);
        __m256 s = _mm256_set1_ps(inv);
        for (j = 0; j < vec; j += 8) {
            __m256 d = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(xr + j), m), s);
            _mm256_storeu_ps(yr + j, _mm256_fmadd_ps(d, _mm256_loadu_ps(w + j), _mm256_loadu_ps(b + j)));
        }
        for (j = vec; j < cols; j++) yr[j] = (xr[j] - mean) * inv * w[j] + b[j];
    }
}
#endif

void ced_softmax_rows(float *p, int64_t rows, int64_t cols, int32_t variant) {
#if defined(__x86_64__)
    if (variant == 2) { softmax_avx512(p, rows, cols); return; }
    if (variant == 1) { softmax_avx2(p, rows, cols); return; }
#endif
#if defined(__aarch64__)
    if (variant == CED_VARIANT_NEON) { ced_softmax_rows_neon(p, rows, cols); return; }
#endif
    softmax_portable(p, rows, cols);
}

void ced_softmax_rows_bf16(const float *s, int64_t rows, int64_t cols, int64_t lds,
                           uint16_t *p, int64_t ldp, int64_t rows_pad, int64_t cols_pad, float *inv_sum) {
#if defined(__x86_64__)
    softmax_bf16_avx512(s, rows, cols, lds, p, ldp, rows_pad, cols_pad, inv_sum);
    __asm__ volatile("vzeroupper" ::: "memory");
#elif defined(__aarch64__)
    ced_softmax_rows_bf16_neon(s, rows, cols, lds, p, ldp, rows_pad, cols_pad, inv_sum);
#else
    (void)s; (void)rows; (void)cols; (void)lds; (void)p; (void)ldp; (void)rows_pad; (void)cols_pad; (void)inv_sum;
    __builtin_trap();
#endif
}

void ced_scale_rows(float *c, int64_t ldc, int64_t rows, int64_t cols, const float *scale, int32_t variant) {
#if defined(__x86_64__)
    if (variant == 2) {
        scale_rows_avx512(c, ldc, rows, cols, scale);
        __asm__ volatile("vzeroupper" ::: "memory");
        return;
    }
#endif
#if defined(__aarch64__)
    if (variant == CED_VARIANT_NEON) { ced_scale_rows_neon(c, ldc, rows, cols, scale); return; }
#endif
    for (int64_t i = 0; i < rows; i++) for (int64_t j = 0; j < cols; j++) c[i * ldc + j] *= scale[i];
}

void ced_layernorm_rows(const float *x, float *y, int64_t rows, int64_t cols,
                        const float *weight, const float *bias, float eps, int32_t variant) {
#if defined(__x86_64__)
    if (variant == 2) { layernorm_avx512(x, y, rows, cols, weight, bias, eps); return; }
    if (variant == 1) { layernorm_avx2(x, y, rows, cols, weight, bias, eps); return; }
#endif
#if defined(__aarch64__)
    if (variant == CED_VARIANT_NEON) { ced_layernorm_rows_neon(x, y, rows, cols, weight, bias, eps); return; }
#endif
    layernorm_portable(x, y, rows, cols, weight, bias, eps);
}
