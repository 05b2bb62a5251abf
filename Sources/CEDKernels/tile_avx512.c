// AVX-512F + FMA microkernel: one 14×32 tile of C per call.
//
// The k loop is inline assembly, not intrinsics, on purpose: SwiftPM compiles C targets
// at -O0 in debug builds, where intrinsics code keeps every vector in memory and runs
// several times slower; an assembly loop runs at full speed in every build
// configuration, and needs no compiler flags (only this function's target attribute).

#include "CEDKernels.h"
#include "gelu.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define CED_AVX512 __attribute__((target("avx512f,fma")))

CED_AVX512 static inline __m512 ced_gelu_v16(__m512 x) {
    const __m512 sign = _mm512_set1_ps(-0.0f);
    __m512 t = _mm512_castsi512_ps(_mm512_andnot_si512(_mm512_castps_si512(sign), _mm512_castps_si512(x)));
    // |x| <= 2: Φ = 0.5 + x·P(x²)
    __m512 x2 = _mm512_mul_ps(x, x);
    __m512 p = _mm512_set1_ps(ced_gelu_p[6]);
    p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(ced_gelu_p[5]));
    p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(ced_gelu_p[4]));
    p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(ced_gelu_p[3]));
    p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(ced_gelu_p[2]));
    p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(ced_gelu_p[1]));
    p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(ced_gelu_p[0]));
    __m512 phi_small = _mm512_fmadd_ps(x, p, _mm512_set1_ps(0.5f));
    // |x| > 2: Φ(-t) = exp(-t²/2)·S(1/(1+t/2))
    __m512 tc = _mm512_min_ps(t, _mm512_set1_ps(CED_GELU_TMAX));
    __m512 d = _mm512_fmadd_ps(tc, _mm512_set1_ps(0.5f), _mm512_set1_ps(1.0f));
    __m512 w = _mm512_rcp14_ps(d);
    w = _mm512_mul_ps(w, _mm512_fnmadd_ps(d, w, _mm512_set1_ps(2.0f)));
    __m512 s = _mm512_set1_ps(ced_gelu_s[8]);
    s = _mm512_fmadd_ps(s, w, _mm512_set1_ps(ced_gelu_s[7]));
    s = _mm512_fmadd_ps(s, w, _mm512_set1_ps(ced_gelu_s[6]));
    s = _mm512_fmadd_ps(s, w, _mm512_set1_ps(ced_gelu_s[5]));
    s = _mm512_fmadd_ps(s, w, _mm512_set1_ps(ced_gelu_s[4]));
    s = _mm512_fmadd_ps(s, w, _mm512_set1_ps(ced_gelu_s[3]));
    s = _mm512_fmadd_ps(s, w, _mm512_set1_ps(ced_gelu_s[2]));
    s = _mm512_fmadd_ps(s, w, _mm512_set1_ps(ced_gelu_s[1]));
    s = _mm512_fmadd_ps(s, w, _mm512_set1_ps(ced_gelu_s[0]));
    // y = -t²/2 as hi + lo
    __m512 hh = _mm512_mul_ps(tc, tc);
    __m512 hl = _mm512_fmsub_ps(tc, tc, hh);
    __m512 y = _mm512_mul_ps(hh, _mm512_set1_ps(-0.5f));
    __m512 yl = _mm512_mul_ps(hl, _mm512_set1_ps(-0.5f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(y, _mm512_set1_ps(CED_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(CED_LN2_HI), y);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(CED_LN2_LO), r);
    r = _mm512_add_ps(r, yl);
    __m512 e = _mm512_set1_ps(ced_exp_e[4]);
    e = _mm512_fmadd_ps(e, r, _mm512_set1_ps(ced_exp_e[3]));
    e = _mm512_fmadd_ps(e, r, _mm512_set1_ps(ced_exp_e[2]));
    e = _mm512_fmadd_ps(e, r, _mm512_set1_ps(ced_exp_e[1]));
    e = _mm512_fmadd_ps(e, r, _mm512_set1_ps(ced_exp_e[0]));
    __m512 ex = _mm512_fmadd_ps(_mm512_mul_ps(r, r), e, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    __m512 lower = _mm512_mul_ps(_mm512_mul_ps(ex, _mm512_castsi512_ps(bits)), s);
    __mmask16 past = _mm512_cmp_ps_mask(t, _mm512_set1_ps(CED_GELU_TMAX), _CMP_GT_OQ);
    lower = _mm512_maskz_mov_ps((__mmask16)~past, lower);
    __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
    __m512 phi_large = _mm512_mask_mov_ps(_mm512_sub_ps(_mm512_set1_ps(1.0f), lower), neg, lower);
    __mmask16 small = _mm512_cmp_ps_mask(t, _mm512_set1_ps(CED_GELU_SPLIT), _CMP_LE_OQ);
    __m512 phi = _mm512_mask_mov_ps(phi_large, small, phi_small);
    return _mm512_mul_ps(x, phi);
}

CED_AVX512 static inline __mmask16 ced_cols_mask(int32_t lo, int32_t hi, int32_t base) {
    int32_t a = lo - base, b = hi - base;
    if (a < 0) a = 0;
    if (b > 16) b = 16;
    if (b <= a) return 0;
    return (__mmask16)(((1u << b) - 1u) & ~((1u << a) - 1u));
}

CED_AVX512 void ced_tile_avx512(const ced_tile *tile) {
    float acc[14 * 32] __attribute__((aligned(64)));
    const float *a0 = tile->a;
    const float *a5 = tile->a + 5 * tile->lda;
    const float *a10 = tile->a + 10 * tile->lda;
    const float *b = tile->b;
    int64_t k = tile->k;
    int64_t l = tile->lda * 4, l3 = tile->lda * 12, lb = tile->ldb * 4;
    float *accp = acc;

#define Z(i) "vpxord %%zmm" #i ", %%zmm" #i ", %%zmm" #i "\n\t"
#define ROW(addr, i0, i1, t) \
    "vbroadcastss " addr ", %%zmm" #t "\n\t" \
    "vfmadd231ps %%zmm" #t ", %%zmm28, %%zmm" #i0 "\n\t" \
    "vfmadd231ps %%zmm" #t ", %%zmm29, %%zmm" #i1 "\n\t"
#define ST(i) "vmovaps %%zmm" #i ", " #i "*64(%[acc])\n\t"
    __asm__ volatile(
        Z(0) Z(1) Z(2) Z(3) Z(4) Z(5) Z(6) Z(7) Z(8) Z(9) Z(10) Z(11) Z(12) Z(13)
        Z(14) Z(15) Z(16) Z(17) Z(18) Z(19) Z(20) Z(21) Z(22) Z(23) Z(24) Z(25) Z(26) Z(27)
        "test %[k], %[k]\n\t"
        "jle 2f\n\t"
        ".p2align 5\n"
        "1:\n\t"
        "vmovups (%[b]), %%zmm28\n\t"
        "vmovups 64(%[b]), %%zmm29\n\t"
        ROW("(%[a0])", 0, 1, 30)
        ROW("(%[a0],%[l],1)", 2, 3, 31)
        ROW("(%[a0],%[l],2)", 4, 5, 30)
        ROW("(%[a0],%[l3],1)", 6, 7, 31)
        ROW("(%[a0],%[l],4)", 8, 9, 30)
        ROW("(%[a5])", 10, 11, 31)
        ROW("(%[a0],%[l3],2)", 12, 13, 30)
        ROW("(%[a5],%[l],2)", 14, 15, 31)
        ROW("(%[a0],%[l],8)", 16, 17, 30)
        ROW("(%[a5],%[l],4)", 18, 19, 31)
        ROW("(%[a10])", 20, 21, 30)
        ROW("(%[a5],%[l3],2)", 22, 23, 31)
        ROW("(%[a10],%[l],2)", 24, 25, 30)
        ROW("(%[a5],%[l],8)", 26, 27, 31)
        "add $4, %[a0]\n\t"
        "add $4, %[a5]\n\t"
        "add $4, %[a10]\n\t"
        "add %[lb], %[b]\n\t"
        "dec %[k]\n\t"
        "jnz 1b\n"
        "2:\n\t"
        ST(0) ST(1) ST(2) ST(3) ST(4) ST(5) ST(6) ST(7) ST(8) ST(9) ST(10) ST(11) ST(12) ST(13)
        ST(14) ST(15) ST(16) ST(17) ST(18) ST(19) ST(20) ST(21) ST(22) ST(23) ST(24) ST(25) ST(26) ST(27)
        : [a0] "+r"(a0), [a5] "+r"(a5), [a10] "+r"(a10), [b] "+r"(b), [k] "+r"(k)
        : [l] "r"(l), [l3] "r"(l3), [lb] "r"(lb), [acc] "r"(accp)
        : "cc", "memory",
          "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
          "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15",
          "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23",
          "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31");
#undef Z
#undef ROW
#undef ST

    // Epilogue: alpha, beta·C, bias, GELU, masked store of the selected sub-tile.
    const __mmask16 m0 = ced_cols_mask(tile->col_begin, tile->col_end, 0);
    const __mmask16 m1 = ced_cols_mask(tile->col_begin, tile->col_end, 16);
    const __m512 alpha = _mm512_set1_ps(tile->alpha);
    const __m512 beta = _mm512_set1_ps(tile->beta);
    const int scale = tile->alpha != 1.0f, useBeta = tile->beta != 0.0f, gelu = tile->gelu != 0;
    const int hasBias = tile->bias != 0, addC = tile->add_c != 0;
    __m512 bias0 = _mm512_setzero_ps(), bias1 = _mm512_setzero_ps();
    if (tile->bias) {
        bias0 = _mm512_maskz_loadu_ps(m0, tile->bias);
        bias1 = _mm512_maskz_loadu_ps(m1, tile->bias + 16);
    }
    for (int32_t i = tile->row_begin; i < tile->row_end; i++) {
        float *crow = tile->c + i * tile->ldc;
        __m512 v0 = _mm512_load_ps(acc + i * 32), v1 = _mm512_load_ps(acc + i * 32 + 16);
        if (scale) {
            v0 = _mm512_mul_ps(v0, alpha);
            v1 = _mm512_mul_ps(v1, alpha);
        }
        if (useBeta) {
            v0 = _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(m0, crow), v0);
            v1 = _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(m1, crow + 16), v1);
        }
        if (hasBias) {
            v0 = _mm512_add_ps(v0, bias0);
            v1 = _mm512_add_ps(v1, bias1);
        }
        if (gelu) {
            v0 = ced_gelu_v16(v0);
            v1 = ced_gelu_v16(v1);
        }
        if (addC) {
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, crow));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, crow + 16));
        }
        _mm512_mask_storeu_ps(crow, m0, v0);
        _mm512_mask_storeu_ps(crow + 16, m1, v1);
    }
}

CED_AVX512 void ced_gelu_avx512(const float *in, float *out, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, ced_gelu_v16(_mm512_loadu_ps(in + i)));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
        _mm512_mask_storeu_ps(out + i, m, ced_gelu_v16(_mm512_maskz_loadu_ps(m, in + i)));
    }
}

#else
void ced_tile_avx512(const ced_tile *tile) { ced_tile_portable(tile); }
void ced_gelu_avx512(const float *in, float *out, int64_t n);
void ced_gelu_avx512(const float *in, float *out, int64_t n) { ced_gelu(in, out, n, 0); }
#endif
