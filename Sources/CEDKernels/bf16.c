// bfloat16 matrix products with float32 accumulation: conversion/packing, a `vdpbf16ps`
// register-tile kernel (AVX-512 BF16) and an AMX kernel (`tdpbf16ps`).
//
// As in tile_avx512.c, the k loops are inline assembly so that -O0 debug builds run them
// at full speed; the epilogue (bias, GELU, residual) is the fp32 AVX-512 one.

#include "CEDKernels.h"
#include "internal.h"
#include <string.h>
#include "neon.h"   // the NEON variants (AArch64)

/// fp32 → bf16, round to nearest even; NaN stays a (quiet) NaN; subnormal inputs become a
/// signed zero, as `vcvtne2ps2bf16` does (and AMX reads bf16 subnormals as zero anyway).
static inline uint16_t ced_bf16_scalar(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    if ((u & 0x7f800000u) == 0) return (uint16_t)((u >> 16) & 0x8000u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static void pack_rows_portable(const float *x, int64_t ldx, int64_t rows, int64_t cols,
                               uint16_t *y, int64_t ldy, int64_t rows_pad, int64_t cols_pad) {
    for (int64_t i = 0; i < rows_pad; i++) {
        uint16_t *yr = y + i * ldy;
        int64_t j = 0;
        if (i < rows) {
            const float *xr = x + i * ldx;
            for (; j < cols; j++) yr[j] = ced_bf16_scalar(xr[j]);
        }
        for (; j < cols_pad; j++) yr[j] = 0;
    }
}

static void pack_panels_portable(const float *b, int64_t ldb, int32_t transposed, int64_t k, int64_t n,
                                 uint16_t *out, int64_t k_pad) {
    int64_t panels = (n + 31) / 32;
    for (int64_t p = 0; p < panels; p++) {
        uint16_t *dst = out + p * k_pad * 32;
        memset(dst, 0, (size_t)(k_pad * 32) * sizeof(uint16_t));
        int64_t j0 = p * 32, cols = n - j0 < 32 ? n - j0 : 32;
        for (int64_t jj = 0; jj < cols; jj++) {
            int64_t j = j0 + jj;
            uint16_t *d = dst + 2 * jj;
            if (transposed) {
                const float *src = b + j * ldb;
                for (int64_t q = 0; q < k; q++) d[(q >> 1) * 64 + (q & 1)] = ced_bf16_scalar(src[q]);
            } else {
                for (int64_t q = 0; q < k; q++) d[(q >> 1) * 64 + (q & 1)] = ced_bf16_scalar(b[q * ldb + j]);
            }
        }
    }
}

#if defined(__x86_64__)
#include <immintrin.h>

#define CED_BF16 __attribute__((target("avx512f,avx512bw,avx512bf16,fma")))

CED_BF16 static void pack_rows_avx512(const float *x, int64_t ldx, int64_t rows, int64_t cols,
                                      uint16_t *y, int64_t ldy, int64_t rows_pad, int64_t cols_pad) {
    for (int64_t i = 0; i < rows_pad; i++) {
        uint16_t *yr = y + i * ldy;
        if (i >= rows) {
            memset(yr, 0, (size_t)cols_pad * sizeof(uint16_t));
            continue;
        }
        const float *xr = x + i * ldx;
        int64_t j = 0;
        for (; j + 32 <= cols; j += 32) {
            __m512 lo = _mm512_loadu_ps(xr + j), hi = _mm512_loadu_ps(xr + j + 16);
            _mm512_storeu_si512((void *)(yr + j), (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
        }
        for (; j < cols_pad; j += 32) {
            int64_t left = cols - j;
            __mmask16 m0 = left >= 16 ? 0xffff : left > 0 ? (__mmask16)((1u << left) - 1u) : 0;
            __mmask16 m1 = left >= 32 ? 0xffff : left > 16 ? (__mmask16)((1u << (left - 16)) - 1u) : 0;
            __m512 lo = _mm512_maskz_loadu_ps(m0, xr + j), hi = _mm512_maskz_loadu_ps(m1, xr + j + 16);
            _mm512_storeu_si512((void *)(yr + j), (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
        }
    }
    __asm__ volatile("vzeroupper" ::: "memory");
}

void ced_bf16_pack_rows(const float *x, int64_t ldx, int64_t rows, int64_t cols,
                        uint16_t *y, int64_t ldy, int64_t rows_pad, int64_t cols_pad, int32_t variant) {
    if (variant == 1) pack_rows_avx512(x, ldx, rows, cols, y, ldy, rows_pad, cols_pad);
    else pack_rows_portable(x, ldx, rows, cols, y, ldy, rows_pad, cols_pad);
}

/// Columns [c0, c0 + 16) of rows r0 and r1 (r1 may be NULL: zeros) as 16 bf16 pairs.
CED_BF16 static inline __m512i pair16(const float *r0, const float *r1, __mmask16 m) {
    __m512i lo = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, r0)));
    if (!r1) return lo;
    __m512i hi = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, r1)));
    return _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16));
}

CED_BF16 static void pack_panels_avx512(const float *b, int64_t ldb, int32_t transposed, int64_t k, int64_t n,
                                        uint16_t *out, int64_t k_pad) {
    const int64_t panels = (n + 31) / 32, pairs = k_pad / 2;
    if (!transposed) {
        // k×n: pair q of a panel interleaves rows 2q and 2q+1, 32 columns = 128 bytes.
        for (int64_t p = 0; p < panels; p++) {
            uint32_t *dst = (uint32_t *)(out + p * k_pad * 32);
            int64_t j0 = p * 32, cols = n - j0 < 32 ? n - j0 : 32;
            __mmask16 m0 = cols >= 16 ? 0xffff : (__mmask16)((1u << cols) - 1u);
            __mmask16 m1 = cols >= 32 ? 0xffff : cols > 16 ? (__mmask16)((1u << (cols - 16)) - 1u) : 0;
            for (int64_t q = 0; q < pairs; q++) {
                __m512i v0 = _mm512_setzero_si512(), v1 = _mm512_setzero_si512();
                if (2 * q < k) {
                    const float *r0 = b + 2 * q * ldb + j0;
                    const float *r1 = 2 * q + 1 < k ? r0 + ldb : 0;
                    v0 = pair16(r0, r1, m0);
                    if (m1) v1 = pair16(r0 + 16, r1 ? r1 + 16 : 0, m1);
                }
                _mm512_storeu_si512((void *)(dst + q * 32), v0);
                _mm512_storeu_si512((void *)(dst + q * 32 + 16), v1);
            }
        }
    } else {
        // n×k: row j holds column j; its k values become pairs (32-bit) that go to
        // dst32[q·32 + j % 32]. Convert 16 pairs of a row at a time and scatter them.
        for (int64_t p = 0; p < panels; p++) {
            uint32_t *dst = (uint32_t *)(out + p * k_pad * 32);
            int64_t j0 = p * 32, cols = n - j0 < 32 ? n - j0 : 32;
            if (cols < 32) memset(dst, 0, (size_t)(pairs * 32) * sizeof(uint32_t));
            for (int64_t jj = 0; jj < cols; jj++) {
                const float *src = b + (j0 + jj) * ldb;
                for (int64_t q = 0; q < pairs; q += 16) {
                    int64_t left = k - 2 * q;   // k values left in this row
                    __mmask16 m0 = left >= 16 ? 0xffff : left > 0 ? (__mmask16)((1u << left) - 1u) : 0;
                    __mmask16 m1 = left >= 32 ? 0xffff : left > 16 ? (__mmask16)((1u << (left - 16)) - 1u) : 0;
                    __m512 lo = _mm512_maskz_loadu_ps(m0, src + 2 * q), hi = _mm512_maskz_loadu_ps(m1, src + 2 * q + 16);
                    uint32_t v[16] __attribute__((aligned(64)));
                    _mm512_store_si512((void *)v, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
                    int64_t count = pairs - q < 16 ? pairs - q : 16;
                    for (int64_t t = 0; t < count; t++) dst[(q + t) * 32 + jj] = v[t];
                }
            }
        }
    }
    __asm__ volatile("vzeroupper" ::: "memory");
}

void ced_bf16_pack_panels(const float *b, int64_t ldb, int32_t transposed, int64_t k, int64_t n,
                          uint16_t *out, int64_t k_pad, int32_t variant) {
    if (variant == 1) pack_panels_avx512(b, ldb, transposed, k, n, out, k_pad);
    else pack_panels_portable(b, ldb, transposed, k, n, out, k_pad);
}

// MARK: vdpbf16ps tile, 14 × 32

CED_BF16 void ced_tile_bf16_avx512(const ced_tile *tile) {
    float acc[14 * 32] __attribute__((aligned(64)));
    const char *a0 = (const char *)tile->a;
    const char *a5 = a0 + 5 * 2 * tile->lda;
    const char *a10 = a0 + 10 * 2 * tile->lda;
    const char *b = (const char *)tile->b;
    int64_t pairs = tile->k / 2;
    int64_t l = tile->lda * 2, l3 = tile->lda * 6, lb = tile->ldb * 2;
    float *accp = acc;
    // As in ced_tile_avx512: whole tiles without GELU or scaling finish in registers
    // (+ bias, + old C, store); everything else goes through `acc` and the generic epilogue.
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
    "vdpbf16ps %%zmm28, %%zmm" #t ", %%zmm" #i0 "\n\t" \
    "vdpbf16ps %%zmm29, %%zmm" #t ", %%zmm" #i1 "\n\t"
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
        CED_REGISTER_EPILOGUE_14x32
        : [a0] "+r"(a0), [a5] "+r"(a5), [a10] "+r"(a10), [b] "+r"(b), [k] "+r"(pairs),
          [l] "+r"(l), [l3] "+r"(l3), [lb] "+r"(lb)
        : [acc] "r"(accp), [ep] "r"(epp)
        : "cc", "memory",
          "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
          "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15",
          "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23",
          "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31");
#undef Z
#undef ROW
#undef ST
    if (!fast) ced_epilogue_avx512(acc, tile);
    __asm__ volatile("vzeroupper" ::: "memory");  // see ced_tile_avx512
}

// MARK: AMX, 32 × 32 blocks

/// Palette 1, tiles 0-7 all 16 rows × 64 bytes: tmm0-3 accumulate a 32×32 fp32 block
/// (2×2 tiles), tmm4-5 hold two 16-row A slices, tmm6-7 two 16-column B slices.
struct ced_tilecfg {
    uint8_t palette;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
};
static const struct ced_tilecfg ced_amx_config __attribute__((aligned(64))) = {
    1, 0, {0}, {64, 64, 64, 64, 64, 64, 64, 64}, {16, 16, 16, 16, 16, 16, 16, 16},
};

CED_BF16 void ced_gemm_bf16_amx(const ced_amx_gemm *g) {
    float acc[32 * 32] __attribute__((aligned(64)));
    const int64_t sa = g->lda * 2;          // A row stride in bytes
    const int64_t sb = 128;                 // one k pair of a 32-column panel
    const int64_t steps = g->k / 32;
    ced_tile t;
    memset(&t, 0, sizeof t);
    t.ldc = g->ldc;
    t.alpha = g->alpha;
    t.gelu = g->gelu;
    t.add_c = g->add_c;
    __asm__ volatile("ldtilecfg %0" : : "m"(ced_amx_config));
    // The larger operand is streamed once: blocks of the same column panel one after the
    // other when the B rectangle is the bigger one (it stays in L1/L2 while A rows pass by),
    // else all panels for one 32-row block of A.
    const int32_t row_blocks = (g->row_end - g->row_begin + 31) / 32;
    const int32_t panels = (g->col_end - g->col_begin + 31) / 32;
    const int panel_outer = panels > row_blocks;
    const int32_t outer = panel_outer ? panels : row_blocks, inner = panel_outer ? row_blocks : panels;
    for (int32_t o = 0; o < outer; o++) {
        for (int32_t q = 0; q < inner; q++) {
            const int32_t r = g->row_begin + 32 * (panel_outer ? q : o);
            const int32_t j = g->col_begin + 32 * (panel_outer ? o : q);
            const char *a0 = (const char *)(g->a + (int64_t)r * g->lda), *a1 = a0 + 16 * sa;
            const char *b = (const char *)(g->b + (int64_t)(j / 32) * g->panel_stride);
            int64_t n = steps;
            const int32_t rows = g->row_end - r < 32 ? g->row_end - r : 32;
            const int32_t cols = g->col_end - j < 32 ? g->col_end - j : 32;
            const int full = rows == 32 && cols == 32;
            // A whole block with nothing to add is stored straight from the tiles.
            const int direct = full && !g->bias && !g->gelu && !g->add_c && g->alpha == 1.0f;
            float *cblock = g->c + (int64_t)r * g->ldc + j;
            float *dst = direct ? cblock : acc;
            const int64_t sd = direct ? g->ldc * 4 : 128;
            const int64_t half = 16 * sd;
            __asm__ volatile(
                "tilezero %%tmm0\n\t"
                "tilezero %%tmm1\n\t"
                "tilezero %%tmm2\n\t"
                "tilezero %%tmm3\n\t"
                "test %[n], %[n]\n\t"
                "jle 2f\n\t"
                ".p2align 5\n"
                "1:\n\t"
                "tileloadd (%[a0],%[sa],1), %%tmm4\n\t"
                "tileloadd (%[b],%[sb],1), %%tmm6\n\t"
                "tileloadd 64(%[b],%[sb],1), %%tmm7\n\t"
                "tileloadd (%[a1],%[sa],1), %%tmm5\n\t"
                "tdpbf16ps %%tmm6, %%tmm4, %%tmm0\n\t"
                "tdpbf16ps %%tmm7, %%tmm4, %%tmm1\n\t"
                "tdpbf16ps %%tmm6, %%tmm5, %%tmm2\n\t"
                "tdpbf16ps %%tmm7, %%tmm5, %%tmm3\n\t"
                "add $64, %[a0]\n\t"
                "add $64, %[a1]\n\t"
                "add $2048, %[b]\n\t"
                "dec %[n]\n\t"
                "jnz 1b\n"
                "2:\n\t"
                "tilestored %%tmm0, (%[d],%[sd],1)\n\t"
                "tilestored %%tmm1, 64(%[d],%[sd],1)\n\t"
                "add %[half], %[d]\n\t"
                "tilestored %%tmm2, (%[d],%[sd],1)\n\t"
                "tilestored %%tmm3, 64(%[d],%[sd],1)\n\t"
                : [a0] "+r"(a0), [a1] "+r"(a1), [b] "+r"(b), [n] "+r"(n), [d] "+r"(dst)
                : [sa] "r"(sa), [sb] "r"(sb), [sd] "r"(sd), [half] "r"(half)
                : "cc", "memory");
            if (direct) continue;
            if (full && !g->gelu && g->alpha == 1.0f) {
                ced_epilogue_rows_avx512(acc, 32, cblock, g->ldc, g->bias ? g->bias + j : 0, g->add_c);
                continue;
            }
            t.c = cblock;
            t.bias = g->bias ? g->bias + j : 0;
            t.row_begin = 0;
            t.row_end = rows;
            t.col_begin = 0;
            t.col_end = cols;
            ced_epilogue_avx512(acc, &t);
        }
    }
    __asm__ volatile("tilerelease" ::: "memory");
    __asm__ volatile("vzeroupper" ::: "memory");
}

#else
void ced_bf16_pack_rows(const float *x, int64_t ldx, int64_t rows, int64_t cols,
                        uint16_t *y, int64_t ldy, int64_t rows_pad, int64_t cols_pad, int32_t variant) {
#if defined(__aarch64__)
    if (variant) { ced_bf16_pack_rows_neon(x, ldx, rows, cols, y, ldy, rows_pad, cols_pad); return; }
#endif
    (void)variant;
    pack_rows_portable(x, ldx, rows, cols, y, ldy, rows_pad, cols_pad);
}
void ced_bf16_pack_panels(const float *b, int64_t ldb, int32_t transposed, int64_t k, int64_t n,
                          uint16_t *out, int64_t k_pad, int32_t variant) {
    (void)variant;
    pack_panels_portable(b, ldb, transposed, k, n, out, k_pad);
}
void ced_tile_bf16_avx512(const ced_tile *tile) { (void)tile; __builtin_trap(); }
void ced_gemm_bf16_amx(const ced_amx_gemm *g) { (void)g; __builtin_trap(); }
#endif
