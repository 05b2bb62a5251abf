// int8 matrix products with int32 accumulation (CedPrecision.int8): weight packing
// (symmetric, one scale per output channel), dynamic activation quantisation (symmetric, one
// scale per row, stored as unsigned bytes with a +128 offset), and `vpdpbusd` register tiles
// for AVX-512 VNNI (14×32) and AVX-VNNI (6×16), plus a portable C tile (4×32).
//
// As in tile_avx512.c, the k loops and the int32 → float conversion are inline assembly so
// that -O0 debug builds run them at full speed.

#include "CEDKernels.h"
#include "gelu.h"
#include "internal.h"
#include <math.h>
#include <string.h>
#include "neon.h"   // the NEON variants (AArch64)

static inline int32_t q8_round(float x) {
    // Round half to even (as cvtps2dq under the default MXCSR), then clamp.
    float r = nearbyintf(x);
    if (!(r >= -127.0f)) r = -127.0f;   // NaN → -127 too (the row scale is NaN then anyway)
    if (r > 127.0f) r = 127.0f;
    return (int32_t)r;
}

void ced_q8_pack_weight(const float *w, int64_t ldw, int64_t n, int64_t k, int8_t *panels, int64_t k_pad,
                        float *scales, int32_t *comp, int32_t zero) {
    const int64_t panel_count = (n + 31) / 32;
    memset(panels, 0, (size_t)(panel_count * k_pad * 32));
    for (int64_t j = 0; j < panel_count * 32; j++) {
        scales[j] = 0.0f;
        comp[j] = 0;
    }
    for (int64_t j = 0; j < n; j++) {
        const float *row = w + j * ldw;
        float amax = 0.0f;
        for (int64_t p = 0; p < k; p++) {
            float v = fabsf(row[p]);
            amax = v > amax ? v : amax;
        }
        const float s = amax / 127.0f;
        int8_t *dst = panels + (j / 32) * k_pad * 32 + (j % 32) * 4;
        int32_t sum = 0;
        for (int64_t p = 0; p < k; p++) {
            int32_t q = s > 0.0f ? q8_round(row[p] / s) : 0;
            dst[(p / 4) * 128 + (p % 4)] = (int8_t)q;
            sum += q;
        }
        scales[j] = s;
        comp[j] = zero * sum;
    }
}

/// The scale of a row quantised with zero point `zero` (≠ 128) from its extremes, and the
/// multiplier 1/scale (0 for an all-zero row); NaN when the row is not finite.
static inline float q8_affine_scale(float lo, float hi, int32_t zero, int finite, float *inv) {
    float s = 0.0f;
    if (!finite) s = NAN;
    else {
        float sp = hi > 0.0f ? hi / (float)(255 - zero) : 0.0f;
        float sn = lo < 0.0f ? -lo / (float)zero : 0.0f;
        s = sp > sn ? sp : sn;
    }
    *inv = s > 0.0f ? 1.0f / s : 0.0f;
    return s;
}

static inline uint8_t q8_affine(float v, float inv, int32_t zero) {
    float r = nearbyintf(v * inv) + (float)zero;
    if (!(r >= 0.0f)) r = 0.0f;
    if (r > 255.0f) r = 255.0f;
    return (uint8_t)(int32_t)r;
}

static void quantize_rows_affine_portable(const float *x, int64_t ldx, int64_t rows, int64_t cols, uint8_t *y,
                                          int64_t ldy, int64_t rows_pad, int64_t cols_pad, float *scales, int32_t zero) {
    for (int64_t i = 0; i < rows_pad; i++) {
        uint8_t *yr = y + i * ldy;
        int64_t j = 0;
        float s = 0.0f;
        if (i < rows) {
            const float *xr = x + i * ldx;
            float lo = 0.0f, hi = 0.0f;
            int finite = 1;
            for (int64_t c = 0; c < cols; c++) {
                float v = xr[c];
                if (!(fabsf(v) <= 3.4028234663852886e38f)) finite = 0;
                lo = v < lo ? v : lo;
                hi = v > hi ? v : hi;
            }
            float inv;
            s = q8_affine_scale(lo, hi, zero, finite, &inv);
            for (; j < cols; j++) yr[j] = q8_affine(xr[j], inv, zero);
        }
        for (; j < cols_pad; j++) yr[j] = (uint8_t)zero;
        scales[i] = s;
    }
}

static void quantize_rows_portable(const float *x, int64_t ldx, int64_t rows, int64_t cols,
                                   uint8_t *y, int64_t ldy, int64_t rows_pad, int64_t cols_pad, float *scales) {
    for (int64_t i = 0; i < rows_pad; i++) {
        uint8_t *yr = y + i * ldy;
        int64_t j = 0;
        float s = 0.0f;
        if (i < rows) {
            const float *xr = x + i * ldx;
            float amax = 0.0f;
            int finite = 1;
            for (int64_t c = 0; c < cols; c++) {
                float v = fabsf(xr[c]);
                if (!(v <= 3.4028234663852886e38f)) finite = 0;
                amax = v > amax ? v : amax;
            }
            if (!finite) amax = NAN;
            s = amax / 127.0f;
            const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
            for (; j < cols; j++) yr[j] = (uint8_t)(q8_round(xr[j] * inv) + 128);
        }
        for (; j < cols_pad; j++) yr[j] = 128;
        scales[i] = s;
    }
}

/// The portable epilogue: `acc` rows of 32 floats (row stride 32) → the `ced_tile`
/// contract (alpha, beta, bias, exact GELU for `gelu` 1 and 2, add_c, selected rectangle).
static void epilogue_portable(const float *acc, const ced_tile *tile) {
    for (int32_t i = tile->row_begin; i < tile->row_end; i++) {
        float *crow = tile->c + i * tile->ldc;
        for (int32_t j = tile->col_begin; j < tile->col_end; j++) {
            float v = tile->alpha * acc[i * 32 + j];
            if (tile->beta != 0.0f) v += tile->beta * crow[j];
            if (tile->bias) v += tile->bias[j];
            if (tile->gelu) v = ced_gelu_scalar(v);
            if (tile->add_c) v += crow[j];
            crow[j] = v;
        }
    }
}

void ced_tile_q8_portable(const ced_q8_tile *q) {
    enum { MR = CED_Q8_PORTABLE_MR, NR = CED_Q8_PORTABLE_NR };
    const ced_tile *t = &q->tile;
    int32_t iacc[MR][NR];
    float acc[MR * 32];
    memset(iacc, 0, sizeof iacc);
    const uint8_t *a = (const uint8_t *)t->a;
    const int8_t *b = (const int8_t *)t->b;
    const int64_t quads = t->k / 4;
    for (int64_t p = 0; p < quads; p++) {
        const int8_t *brow = b + p * t->ldb;
        for (int i = 0; i < MR; i++) {
            const uint8_t *ar = a + i * t->lda + 4 * p;
            for (int j = 0; j < NR; j++) {
                const int8_t *bj = brow + 4 * j;
                iacc[i][j] += ar[0] * bj[0] + ar[1] * bj[1] + ar[2] * bj[2] + ar[3] * bj[3];
            }
        }
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++)
            acc[i * 32 + j] = (float)(iacc[i][j] - q->b_comp[j]) * q->b_scale[j] * q->a_scale[i];
    epilogue_portable(acc, t);
}

#if defined(__x86_64__)
#include <immintrin.h>

#define CED_Q8_512 __attribute__((target("avx512f,avx512bw,avx512vnni,fma")))
#define CED_Q8_256 __attribute__((target("avx2,fma,avxvnni")))

CED_Q8_512 static void quantize_rows_avx512(const float *x, int64_t ldx, int64_t rows, int64_t cols,
                                            uint8_t *y, int64_t ldy, int64_t rows_pad, int64_t cols_pad, float *scales) {
    for (int64_t i = 0; i < rows_pad; i++) {
        uint8_t *yr = y + i * ldy;
        if (i >= rows) {
            memset(yr, 128, (size_t)cols_pad);
            scales[i] = 0.0f;
            continue;
        }
        const float *xr = x + i * ldx;
        __m512 m0 = _mm512_setzero_ps(), m1 = m0;
        int64_t j = 0;
        for (; j + 32 <= cols; j += 32) {
            // max of |x|; a NaN makes the lane NaN (max_ps returns the second operand then).
            m0 = _mm512_max_ps(m0, _mm512_abs_ps(_mm512_loadu_ps(xr + j)));
            m1 = _mm512_max_ps(m1, _mm512_abs_ps(_mm512_loadu_ps(xr + j + 16)));
        }
        for (; j < cols; j += 16) {
            __mmask16 m = cols - j >= 16 ? 0xffff : (__mmask16)((1u << (cols - j)) - 1u);
            m0 = _mm512_max_ps(m0, _mm512_abs_ps(_mm512_maskz_loadu_ps(m, xr + j)));
        }
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
        // max_ps may drop a NaN: look for one (x·0 is NaN for NaN and ±inf) unless amax
        // is already infinite. Either way the scale becomes NaN, and so does the row's output.
        if (amax <= 3.4028234663852886e38f) {
            __m512 z = _mm512_setzero_ps();
            for (j = 0; j < cols; j += 16) {
                __mmask16 m = cols - j >= 16 ? 0xffff : (__mmask16)((1u << (cols - j)) - 1u);
                z = _mm512_add_ps(z, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, xr + j), _mm512_setzero_ps()));
            }
            if (_mm512_cmp_ps_mask(z, z, _CMP_UNORD_Q)) amax = NAN;
        } else {
            amax = NAN;
        }
        scales[i] = amax / 127.0f;
        const __m512 inv = _mm512_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
        const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127), off = _mm512_set1_epi32(128);
        for (j = 0; j < cols_pad; j += 16) {
            int64_t left = cols - j;
            __mmask16 m = left >= 16 ? 0xffff : left > 0 ? (__mmask16)((1u << left) - 1u) : 0;
            __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, xr + j), inv));
            q = _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(q, lo), hi), off);
            __mmask16 store = cols_pad - j >= 16 ? 0xffff : (__mmask16)((1u << (cols_pad - j)) - 1u);
            _mm512_mask_cvtepi32_storeu_epi8(yr + j, store, q);
        }
    }
    __asm__ volatile("vzeroupper" ::: "memory");
}

CED_Q8_512 static void quantize_rows_affine_avx512(const float *x, int64_t ldx, int64_t rows, int64_t cols, uint8_t *y,
                                                   int64_t ldy, int64_t rows_pad, int64_t cols_pad, float *scales,
                                                   int32_t zero) {
    for (int64_t i = 0; i < rows_pad; i++) {
        uint8_t *yr = y + i * ldy;
        if (i >= rows) {
            memset(yr, zero, (size_t)cols_pad);
            scales[i] = 0.0f;
            continue;
        }
        const float *xr = x + i * ldx;
        __m512 lo = _mm512_setzero_ps(), hi = lo, bad = lo;
        for (int64_t j = 0; j < cols; j += 16) {
            __mmask16 m = cols - j >= 16 ? 0xffff : (__mmask16)((1u << (cols - j)) - 1u);
            __m512 v = _mm512_maskz_loadu_ps(m, xr + j);
            lo = _mm512_min_ps(lo, v);
            hi = _mm512_max_ps(hi, v);
            bad = _mm512_add_ps(bad, _mm512_mul_ps(v, _mm512_setzero_ps()));   // NaN for NaN and ±inf
        }
        const int finite = !_mm512_cmp_ps_mask(bad, bad, _CMP_UNORD_Q);
        float inv;
        scales[i] = q8_affine_scale(_mm512_reduce_min_ps(lo), _mm512_reduce_max_ps(hi), zero, finite, &inv);
        const __m512 vinv = _mm512_set1_ps(inv);
        const __m512i z = _mm512_set1_epi32(zero), q0 = _mm512_setzero_si512(), q255 = _mm512_set1_epi32(255);
        for (int64_t j = 0; j < cols_pad; j += 16) {
            int64_t left = cols - j;
            __mmask16 m = left >= 16 ? 0xffff : left > 0 ? (__mmask16)((1u << left) - 1u) : 0;
            __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, xr + j), vinv)), z);
            q = _mm512_min_epi32(_mm512_max_epi32(q, q0), q255);
            __mmask16 store = cols_pad - j >= 16 ? 0xffff : (__mmask16)((1u << (cols_pad - j)) - 1u);
            _mm512_mask_cvtepi32_storeu_epi8(yr + j, store, q);
        }
    }
    __asm__ volatile("vzeroupper" ::: "memory");
}

void ced_q8_quantize_rows(const float *x, int64_t ldx, int64_t rows, int64_t cols,
                          uint8_t *y, int64_t ldy, int64_t rows_pad, int64_t cols_pad, float *scales, int32_t zero,
                          int32_t variant) {
    if (zero != 128) {
        if (variant == 1) quantize_rows_affine_avx512(x, ldx, rows, cols, y, ldy, rows_pad, cols_pad, scales, zero);
        else quantize_rows_affine_portable(x, ldx, rows, cols, y, ldy, rows_pad, cols_pad, scales, zero);
    } else if (variant == 1) {
        quantize_rows_avx512(x, ldx, rows, cols, y, ldy, rows_pad, cols_pad, scales);
    } else {
        quantize_rows_portable(x, ldx, rows, cols, y, ldy, rows_pad, cols_pad, scales);
    }
}

// MARK: AVX-512 VNNI, 14 × 32

CED_Q8_512 void ced_tile_q8_avx512(const ced_q8_tile *q) {
    const ced_tile *tile = &q->tile;
    float acc[14 * 32] __attribute__((aligned(64)));
    const char *a0 = (const char *)tile->a;
    const char *a5 = a0 + 5 * tile->lda;
    const char *a10 = a0 + 10 * tile->lda;
    const char *b = (const char *)tile->b;
    int64_t quads = tile->k / 4;
    int64_t l = tile->lda, l3 = tile->lda * 3, lb = tile->ldb;
    float *accp = acc;
    const float *as = q->a_scale, *bs = q->b_scale;
    const int32_t *comp = q->b_comp;
    // Register epilogue for whole tiles without GELU or scaling (see internal.h).
    const int full = tile->row_begin == 0 && tile->row_end == 14 && tile->col_begin == 0 && tile->col_end == 32;
    const int add_c = tile->add_c || tile->beta == 1.0f;
    const int fast = full && !tile->gelu && tile->alpha == 1.0f && (tile->beta == 0.0f || tile->beta == 1.0f) &&
                     !(tile->add_c && tile->beta != 0.0f);
    struct { const float *bias; float *c; int64_t ldc_bytes; int64_t flags; } ep = {
        tile->bias, tile->c, tile->ldc * 4, (fast ? 1 : 0) | (tile->bias ? 2 : 0) | (add_c ? 4 : 0)};
    const void *epp = &ep;

#define Z(i) "vpxord %%zmm" #i ", %%zmm" #i ", %%zmm" #i "\n\t"
#define ROW(addr, i0, i1, t) \
    "vpbroadcastd " addr ", %%zmm" #t "\n\t" \
    "vpdpbusd %%zmm28, %%zmm" #t ", %%zmm" #i0 "\n\t" \
    "vpdpbusd %%zmm29, %%zmm" #t ", %%zmm" #i1 "\n\t"
    // Row r: (int32 − 128·Σw) → float, · weight scales, · the row's scale, to acc.
#define CV(r, i0, i1) \
    "vpsubd %%zmm28, %%zmm" #i0 ", %%zmm" #i0 "\n\t" \
    "vpsubd %%zmm29, %%zmm" #i1 ", %%zmm" #i1 "\n\t" \
    "vcvtdq2ps %%zmm" #i0 ", %%zmm" #i0 "\n\t" \
    "vcvtdq2ps %%zmm" #i1 ", %%zmm" #i1 "\n\t" \
    "vmulps %%zmm30, %%zmm" #i0 ", %%zmm" #i0 "\n\t" \
    "vmulps %%zmm31, %%zmm" #i1 ", %%zmm" #i1 "\n\t" \
    "vmulps " #r "*4(%[as])%{1to16%}, %%zmm" #i0 ", %%zmm" #i0 "\n\t" \
    "vmulps " #r "*4(%[as])%{1to16%}, %%zmm" #i1 ", %%zmm" #i1 "\n\t"
    __asm__ volatile(
        Z(0) Z(1) Z(2) Z(3) Z(4) Z(5) Z(6) Z(7) Z(8) Z(9) Z(10) Z(11) Z(12) Z(13)
        Z(14) Z(15) Z(16) Z(17) Z(18) Z(19) Z(20) Z(21) Z(22) Z(23) Z(24) Z(25) Z(26) Z(27)
        "test %[k], %[k]\n\t"
        "jle 2f\n\t"
        ".p2align 5\n"
        "1:\n\t"
        "vmovdqu64 (%[b]), %%zmm28\n\t"
        "vmovdqu64 64(%[b]), %%zmm29\n\t"
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
        "vmovdqu64 (%[comp]), %%zmm28\n\t"
        "vmovdqu64 64(%[comp]), %%zmm29\n\t"
        "vmovups (%[bs]), %%zmm30\n\t"
        "vmovups 64(%[bs]), %%zmm31\n\t"
        CV(0, 0, 1) CV(1, 2, 3) CV(2, 4, 5) CV(3, 6, 7) CV(4, 8, 9) CV(5, 10, 11) CV(6, 12, 13)
        CV(7, 14, 15) CV(8, 16, 17) CV(9, 18, 19) CV(10, 20, 21) CV(11, 22, 23) CV(12, 24, 25) CV(13, 26, 27)
        CED_REGISTER_EPILOGUE_14x32
        : [a0] "+r"(a0), [a5] "+r"(a5), [a10] "+r"(a10), [b] "+r"(b), [k] "+r"(quads), [l] "+r"(l)
        : [l3] "r"(l3), [lb] "r"(lb), [acc] "r"(accp), [as] "r"(as), [bs] "r"(bs), [comp] "r"(comp), [ep] "r"(epp)
        : "cc", "memory",
          "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
          "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15",
          "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23",
          "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31");
#undef Z
#undef ROW
#undef CV
    if (!fast) ced_epilogue_avx512(acc, tile);
    __asm__ volatile("vzeroupper" ::: "memory");  // see ced_tile_avx512
}

// MARK: AVX-VNNI (VEX, 256-bit), 6 × 16

CED_Q8_256 void ced_tile_q8_avxvnni(const ced_q8_tile *q) {
    const ced_tile *tile = &q->tile;
    float acc[6 * 32] __attribute__((aligned(64)));
    const char *a0 = (const char *)tile->a;
    const char *a3 = a0 + 3 * tile->lda;
    const char *b = (const char *)tile->b;
    int64_t quads = tile->k / 4;
    int64_t l = tile->lda, lb = tile->ldb;
    float *accp = acc;
    const float *as = q->a_scale, *bs = q->b_scale;
    const int32_t *comp = q->b_comp;

#define Z(i) "vpxor %%ymm" #i ", %%ymm" #i ", %%ymm" #i "\n\t"
#define ROW(addr, i0, i1) \
    "vpbroadcastd " addr ", %%ymm14\n\t" \
    "%{vex%} vpdpbusd %%ymm12, %%ymm14, %%ymm" #i0 "\n\t" \
    "%{vex%} vpdpbusd %%ymm13, %%ymm14, %%ymm" #i1 "\n\t"
#define CV(r, i0, i1) \
    "vpsubd (%[comp]), %%ymm" #i0 ", %%ymm" #i0 "\n\t" \
    "vpsubd 32(%[comp]), %%ymm" #i1 ", %%ymm" #i1 "\n\t" \
    "vcvtdq2ps %%ymm" #i0 ", %%ymm" #i0 "\n\t" \
    "vcvtdq2ps %%ymm" #i1 ", %%ymm" #i1 "\n\t" \
    "vmulps (%[bs]), %%ymm" #i0 ", %%ymm" #i0 "\n\t" \
    "vmulps 32(%[bs]), %%ymm" #i1 ", %%ymm" #i1 "\n\t" \
    "vbroadcastss " #r "*4(%[as]), %%ymm15\n\t" \
    "vmulps %%ymm15, %%ymm" #i0 ", %%ymm" #i0 "\n\t" \
    "vmulps %%ymm15, %%ymm" #i1 ", %%ymm" #i1 "\n\t" \
    "vmovaps %%ymm" #i0 ", " #r "*128(%[acc])\n\t" \
    "vmovaps %%ymm" #i1 ", " #r "*128+32(%[acc])\n\t"
    __asm__ volatile(
        Z(0) Z(1) Z(2) Z(3) Z(4) Z(5) Z(6) Z(7) Z(8) Z(9) Z(10) Z(11)
        "test %[k], %[k]\n\t"
        "jle 2f\n\t"
        ".p2align 5\n"
        "1:\n\t"
        "vmovdqu (%[b]), %%ymm12\n\t"
        "vmovdqu 32(%[b]), %%ymm13\n\t"
        ROW("(%[a0])", 0, 1)
        ROW("(%[a0],%[l],1)", 2, 3)
        ROW("(%[a0],%[l],2)", 4, 5)
        ROW("(%[a3])", 6, 7)
        ROW("(%[a3],%[l],1)", 8, 9)
        ROW("(%[a3],%[l],2)", 10, 11)
        "add $4, %[a0]\n\t"
        "add $4, %[a3]\n\t"
        "add %[lb], %[b]\n\t"
        "dec %[k]\n\t"
        "jnz 1b\n"
        "2:\n\t"
        CV(0, 0, 1) CV(1, 2, 3) CV(2, 4, 5) CV(3, 6, 7) CV(4, 8, 9) CV(5, 10, 11)
        "vzeroupper\n\t"
        : [a0] "+r"(a0), [a3] "+r"(a3), [b] "+r"(b), [k] "+r"(quads)
        : [l] "r"(l), [lb] "r"(lb), [acc] "r"(accp), [as] "r"(as), [bs] "r"(bs), [comp] "r"(comp)
        : "cc", "memory",
          "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
          "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
#undef Z
#undef ROW
#undef CV
    epilogue_portable(acc, tile);
}

#else
void ced_q8_quantize_rows(const float *x, int64_t ldx, int64_t rows, int64_t cols,
                          uint8_t *y, int64_t ldy, int64_t rows_pad, int64_t cols_pad, float *scales, int32_t zero,
                          int32_t variant) {
#if defined(__aarch64__)
    if (variant && zero == 128) { ced_q8_quantize_rows_neon(x, ldx, rows, cols, y, ldy, rows_pad, cols_pad, scales); return; }
#endif
    (void)variant;
    if (zero != 128) quantize_rows_affine_portable(x, ldx, rows, cols, y, ldy, rows_pad, cols_pad, scales, zero);
    else quantize_rows_portable(x, ldx, rows, cols, y, ldy, rows_pad, cols_pad, scales);
}
void ced_tile_q8_avx512(const ced_q8_tile *q) { (void)q; __builtin_trap(); }
void ced_tile_q8_avxvnni(const ced_q8_tile *q) { (void)q; __builtin_trap(); }
#endif
