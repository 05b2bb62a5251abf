// AVX2 + FMA microkernel: one 6×16 tile of C per call. The k loop is inline assembly
// for the same reason as in tile_avx512.c (full speed in -O0 debug builds too).

#include "CEDKernels.h"
#include "gelu.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define CED_AVX2 __attribute__((target("avx2,fma")))

CED_AVX2 static inline __m256 ced_gelu_v8(__m256 x) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 t = _mm256_andnot_ps(sign, x);
    __m256 x2 = _mm256_mul_ps(x, x);
    __m256 p = _mm256_set1_ps(ced_gelu_p[6]);
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(ced_gelu_p[5]));
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(ced_gelu_p[4]));
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(ced_gelu_p[3]));
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(ced_gelu_p[2]));
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(ced_gelu_p[1]));
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(ced_gelu_p[0]));
    __m256 phi_small = _mm256_fmadd_ps(x, p, _mm256_set1_ps(0.5f));
    __m256 tc = _mm256_min_ps(t, _mm256_set1_ps(CED_GELU_TMAX));
    __m256 w = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_fmadd_ps(tc, _mm256_set1_ps(0.5f), _mm256_set1_ps(1.0f)));
    __m256 s = _mm256_set1_ps(ced_gelu_s[8]);
    s = _mm256_fmadd_ps(s, w, _mm256_set1_ps(ced_gelu_s[7]));
    s = _mm256_fmadd_ps(s, w, _mm256_set1_ps(ced_gelu_s[6]));
    s = _mm256_fmadd_ps(s, w, _mm256_set1_ps(ced_gelu_s[5]));
    s = _mm256_fmadd_ps(s, w, _mm256_set1_ps(ced_gelu_s[4]));
    s = _mm256_fmadd_ps(s, w, _mm256_set1_ps(ced_gelu_s[3]));
    s = _mm256_fmadd_ps(s, w, _mm256_set1_ps(ced_gelu_s[2]));
    s = _mm256_fmadd_ps(s, w, _mm256_set1_ps(ced_gelu_s[1]));
    s = _mm256_fmadd_ps(s, w, _mm256_set1_ps(ced_gelu_s[0]));
    __m256 hh = _mm256_mul_ps(tc, tc);
    __m256 hl = _mm256_fmsub_ps(tc, tc, hh);
    __m256 y = _mm256_mul_ps(hh, _mm256_set1_ps(-0.5f));
    __m256 yl = _mm256_mul_ps(hl, _mm256_set1_ps(-0.5f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(y, _mm256_set1_ps(CED_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(CED_LN2_HI), y);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(CED_LN2_LO), r);
    r = _mm256_add_ps(r, yl);
    __m256 e = _mm256_set1_ps(ced_exp_e[4]);
    e = _mm256_fmadd_ps(e, r, _mm256_set1_ps(ced_exp_e[3]));
    e = _mm256_fmadd_ps(e, r, _mm256_set1_ps(ced_exp_e[2]));
    e = _mm256_fmadd_ps(e, r, _mm256_set1_ps(ced_exp_e[1]));
    e = _mm256_fmadd_ps(e, r, _mm256_set1_ps(ced_exp_e[0]));
    __m256 ex = _mm256_fmadd_ps(_mm256_mul_ps(r, r), e, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    __m256 lower = _mm256_mul_ps(_mm256_mul_ps(ex, _mm256_castsi256_ps(bits)), s);
    __m256 past = _mm256_cmp_ps(t, _mm256_set1_ps(CED_GELU_TMAX), _CMP_GT_OQ);
    lower = _mm256_andnot_ps(past, lower);
    __m256 neg = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ);
    __m256 phi_large = _mm256_blendv_ps(_mm256_sub_ps(_mm256_set1_ps(1.0f), lower), lower, neg);
    __m256 small = _mm256_cmp_ps(t, _mm256_set1_ps(CED_GELU_SPLIT), _CMP_LE_OQ);
    __m256 phi = _mm256_blendv_ps(phi_large, phi_small, small);
    return _mm256_mul_ps(x, phi);
}

CED_AVX2 static inline __m256i ced_cols_mask8(int32_t lo, int32_t hi, int32_t base) {
    __m256i idx = _mm256_add_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(base));
    __m256i ge = _mm256_cmpgt_epi32(idx, _mm256_set1_epi32(lo - 1));
    __m256i lt = _mm256_cmpgt_epi32(_mm256_set1_epi32(hi), idx);
    return _mm256_and_si256(ge, lt);
}

CED_AVX2 void ced_tile_avx2(const ced_tile *tile) {
    float acc[6 * 16] __attribute__((aligned(32)));
    const float *a0 = tile->a;
    const float *a3 = tile->a + 3 * tile->lda;
    const float *b = tile->b;
    int64_t k = tile->k;
    int64_t l = tile->lda * 4, lb = tile->ldb * 4;
    float *accp = acc;

#define Z(i) "vxorps %%ymm" #i ", %%ymm" #i ", %%ymm" #i "\n\t"
#define ROW(addr, i0, i1, t) \
    "vbroadcastss " addr ", %%ymm" #t "\n\t" \
    "vfmadd231ps %%ymm" #t ", %%ymm12, %%ymm" #i0 "\n\t" \
    "vfmadd231ps %%ymm" #t ", %%ymm13, %%ymm" #i1 "\n\t"
#define ST(i) "vmovaps %%ymm" #i ", " #i "*32(%[acc])\n\t"
    __asm__ volatile(
        Z(0) Z(1) Z(2) Z(3) Z(4) Z(5) Z(6) Z(7) Z(8) Z(9) Z(10) Z(11)
        "test %[k], %[k]\n\t"
        "jle 2f\n\t"
        ".p2align 5\n"
        "1:\n\t"
        "vmovups (%[b]), %%ymm12\n\t"
        "vmovups 32(%[b]), %%ymm13\n\t"
        ROW("(%[a0])", 0, 1, 14)
        ROW("(%[a0],%[l],1)", 2, 3, 15)
        ROW("(%[a0],%[l],2)", 4, 5, 14)
        ROW("(%[a3])", 6, 7, 15)
        ROW("(%[a3],%[l],1)", 8, 9, 14)
        ROW("(%[a3],%[l],2)", 10, 11, 15)
        "add $4, %[a0]\n\t"
        "add $4, %[a3]\n\t"
        "add %[lb], %[b]\n\t"
        "dec %[k]\n\t"
        "jnz 1b\n"
        "2:\n\t"
        ST(0) ST(1) ST(2) ST(3) ST(4) ST(5) ST(6) ST(7) ST(8) ST(9) ST(10) ST(11)
        "vzeroupper\n\t"
        : [a0] "+r"(a0), [a3] "+r"(a3), [b] "+r"(b), [k] "+r"(k)
        : [l] "r"(l), [lb] "r"(lb), [acc] "r"(accp)
        : "cc", "memory",
          "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
          "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
#undef Z
#undef ROW
#undef ST

    const __m256i m0 = ced_cols_mask8(tile->col_begin, tile->col_end, 0);
    const __m256i m1 = ced_cols_mask8(tile->col_begin, tile->col_end, 8);
    const __m256 alpha = _mm256_set1_ps(tile->alpha);
    const __m256 beta = _mm256_set1_ps(tile->beta);
    const int scale = tile->alpha != 1.0f, useBeta = tile->beta != 0.0f, gelu = tile->gelu != 0;
    const int hasBias = tile->bias != 0, addC = tile->add_c != 0;
    __m256 bias0 = _mm256_setzero_ps(), bias1 = _mm256_setzero_ps();
    if (hasBias) {
        bias0 = _mm256_maskload_ps(tile->bias, m0);
        bias1 = _mm256_maskload_ps(tile->bias + 8, m1);
    }
    for (int32_t i = tile->row_begin; i < tile->row_end; i++) {
        float *crow = tile->c + i * tile->ldc;
        __m256 v0 = _mm256_load_ps(acc + i * 16), v1 = _mm256_load_ps(acc + i * 16 + 8);
        if (scale) {
            v0 = _mm256_mul_ps(v0, alpha);
            v1 = _mm256_mul_ps(v1, alpha);
        }
        if (useBeta) {
            v0 = _mm256_fmadd_ps(beta, _mm256_maskload_ps(crow, m0), v0);
            v1 = _mm256_fmadd_ps(beta, _mm256_maskload_ps(crow + 8, m1), v1);
        }
        if (hasBias) {
            v0 = _mm256_add_ps(v0, bias0);
            v1 = _mm256_add_ps(v1, bias1);
        }
        if (gelu) {
            v0 = ced_gelu_v8(v0);
            v1 = ced_gelu_v8(v1);
        }
        if (addC) {
            v0 = _mm256_add_ps(v0, _mm256_maskload_ps(crow, m0));
            v1 = _mm256_add_ps(v1, _mm256_maskload_ps(crow + 8, m1));
        }
        _mm256_maskstore_ps(crow, m0, v0);
        _mm256_maskstore_ps(crow + 8, m1, v1);
    }
}

CED_AVX2 void ced_gelu_avx2(const float *in, float *out, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, ced_gelu_v8(_mm256_loadu_ps(in + i)));
    if (i < n) {
        __m256i m = ced_cols_mask8(0, (int32_t)(n - i), 0);
        _mm256_maskstore_ps(out + i, m, ced_gelu_v8(_mm256_maskload_ps(in + i, m)));
    }
}

#else
void ced_tile_avx2(const ced_tile *tile) { ced_tile_portable(tile); }
void ced_gelu_avx2(const float *in, float *out, int64_t n);
void ced_gelu_avx2(const float *in, float *out, int64_t n) { ced_gelu(in, out, n, 0); }
#endif
