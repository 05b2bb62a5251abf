// AVX-512F + FMA microkernel: one 14×32 tile of C per call.
//
// The k loop is inline assembly, not intrinsics, on purpose: SwiftPM compiles C targets
// at -O0 in debug builds, where intrinsics code keeps every vector in memory and runs
// several times slower; an assembly loop runs at full speed in every build
// configuration, and needs no compiler flags (only this function's target attribute).

#include "CEDKernels.h"
#include "gelu.h"
#include "internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define CED_AVX512 __attribute__((target("avx512f,fma")))

// Constants of the GELU approximation (gelu.h) laid out for {1to16} broadcasts.
#define G_P 0        /* P[0..6] */
#define G_S 7        /* S[0..8] */
#define G_E 16       /* E[0..4] */
#define G_HALF 21
#define G_ONE 22
#define G_TWO 23
#define G_NEGHALF 24
#define G_LOG2E 25
#define G_LN2HI 26
#define G_LN2LO 27
#define G_TMAX 28
#define G_SPLIT 29
// Fast GELU (bf16 precision only): Abramowitz-Stegun 7.1.26 erf (|error| <= 1.5e-7),
// Φ(−|x|) = 0.5·t·A(t)·exp(−x²/2), t = 1/(1 + p·|x|/√2); coefficients halved.
#define F_RSQRT2 30
#define F_P 31
#define F_A 32       /* A[0..4] = a1/2 .. a5/2 */
#define F_NLOG2E 37
#define F_NLN2HI 38
#define F_NLN2LO 39
#define F_WMAX 40
#define F_X 41       /* exp polynomial X[0..5] (Cephes, as the softmax) */
#define F_AMAX 47
#define G_COUNT 48
static const float ced_gelu_table[G_COUNT] __attribute__((aligned(64))) = {
    CED_GELU_P_LIST, CED_GELU_S_LIST, CED_EXP_E_LIST,
    0.5f, 1.0f, 2.0f, -0.5f, CED_LOG2E, CED_LN2_HI, CED_LN2_LO, CED_GELU_TMAX, CED_GELU_SPLIT,
    0.70710678118654752f, 0.3275911f,
    0.5f * 0.254829592f, 0.5f * -0.284496736f, 0.5f * 1.421413741f, 0.5f * -1.453152027f, 0.5f * 1.061405429f,
    -CED_LOG2E, -CED_LN2_HI, -CED_LN2_LO, 80.0f,
    1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f, 4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f,
    20.0f,
};

#define G_STR2(x) #x
#define G_STR(x) G_STR2(x)
// Broadcast / scalar operand for table entry i (i*4 bytes from %[tab]); i must be a single
// token (a number or one of the G_* names), the assembler sees the text.
#define G_B(i) G_STR(i) "*4(%[tab])%{1to16%}"
#define G_L(i) G_STR(i) "*4(%[tab])"

// GELU of %zmm<X> in place (X = 0 or 1), in assembly so that it runs at full speed in
// -O0 debug builds too. Temporaries: zmm2-zmm9, k3-k5. Same operations as gelu.h.
#define CED_GELU_ASM(X) \
    "vpslld $1, %%zmm" #X ", %%zmm2\n\t" \
    "vpsrld $1, %%zmm2, %%zmm2\n\t"                             /* t = |x| */ \
    "vmulps %%zmm" #X ", %%zmm" #X ", %%zmm3\n\t"               /* x² */ \
    "vbroadcastss " G_L(6) ", %%zmm4\n\t" \
    "vfmadd213ps " G_B(5) ", %%zmm3, %%zmm4\n\t" \
    "vfmadd213ps " G_B(4) ", %%zmm3, %%zmm4\n\t" \
    "vfmadd213ps " G_B(3) ", %%zmm3, %%zmm4\n\t" \
    "vfmadd213ps " G_B(2) ", %%zmm3, %%zmm4\n\t" \
    "vfmadd213ps " G_B(1) ", %%zmm3, %%zmm4\n\t" \
    "vfmadd213ps " G_B(0) ", %%zmm3, %%zmm4\n\t" \
    "vfmadd213ps " G_B(G_HALF) ", %%zmm" #X ", %%zmm4\n\t"     /* Φ small = 0.5 + x·P */ \
    "vminps " G_B(G_TMAX) ", %%zmm2, %%zmm5\n\t"                /* tc */ \
    "vbroadcastss " G_L(G_HALF) ", %%zmm6\n\t" \
    "vfmadd213ps " G_B(G_ONE) ", %%zmm5, %%zmm6\n\t"            /* d = 1 + tc/2 */ \
    "vrcp14ps %%zmm6, %%zmm7\n\t" \
    "vbroadcastss " G_L(G_TWO) ", %%zmm8\n\t" \
    "vfnmadd231ps %%zmm7, %%zmm6, %%zmm8\n\t" \
    "vmulps %%zmm8, %%zmm7, %%zmm7\n\t"                          /* w = 1/d */ \
    "vbroadcastss " G_L(15) ", %%zmm6\n\t" \
    "vfmadd213ps " G_B(14) ", %%zmm7, %%zmm6\n\t" \
    "vfmadd213ps " G_B(13) ", %%zmm7, %%zmm6\n\t" \
    "vfmadd213ps " G_B(12) ", %%zmm7, %%zmm6\n\t" \
    "vfmadd213ps " G_B(11) ", %%zmm7, %%zmm6\n\t" \
    "vfmadd213ps " G_B(10) ", %%zmm7, %%zmm6\n\t" \
    "vfmadd213ps " G_B(9) ", %%zmm7, %%zmm6\n\t" \
    "vfmadd213ps " G_B(8) ", %%zmm7, %%zmm6\n\t" \
    "vfmadd213ps " G_B(7) ", %%zmm7, %%zmm6\n\t"          /* S(w) */ \
    "vmulps %%zmm5, %%zmm5, %%zmm7\n\t"                          /* hh = tc² */ \
    "vmovaps %%zmm7, %%zmm8\n\t" \
    "vfmsub231ps %%zmm5, %%zmm5, %%zmm8\n\t"                     /* hl = tc·tc − hh */ \
    "vmulps " G_B(G_NEGHALF) ", %%zmm7, %%zmm7\n\t"             /* y */ \
    "vmulps " G_B(G_NEGHALF) ", %%zmm8, %%zmm8\n\t"             /* yl */ \
    "vmulps " G_B(G_LOG2E) ", %%zmm7, %%zmm9\n\t" \
    "vrndscaleps $8, %%zmm9, %%zmm9\n\t"                         /* n */ \
    "vfnmadd231ps " G_B(G_LN2HI) ", %%zmm9, %%zmm7\n\t" \
    "vfnmadd231ps " G_B(G_LN2LO) ", %%zmm9, %%zmm7\n\t" \
    "vaddps %%zmm8, %%zmm7, %%zmm7\n\t"                          /* r */ \
    "vbroadcastss " G_L(20) ", %%zmm8\n\t" \
    "vfmadd213ps " G_B(19) ", %%zmm7, %%zmm8\n\t" \
    "vfmadd213ps " G_B(18) ", %%zmm7, %%zmm8\n\t" \
    "vfmadd213ps " G_B(17) ", %%zmm7, %%zmm8\n\t" \
    "vfmadd213ps " G_B(16) ", %%zmm7, %%zmm8\n\t" \
    "vmulps %%zmm7, %%zmm7, %%zmm3\n\t" \
    "vaddps " G_B(G_ONE) ", %%zmm7, %%zmm7\n\t" \
    "vfmadd213ps %%zmm7, %%zmm3, %%zmm8\n\t"                     /* exp(r) */ \
    "vscalefps %%zmm9, %%zmm8, %%zmm8\n\t"                       /* ·2^n */ \
    "vmulps %%zmm6, %%zmm8, %%zmm8\n\t"                          /* Φ(−t) */ \
    "vcmpps $0x12, " G_B(G_TMAX) ", %%zmm2, %%k3\n\t" \
    "vmovaps %%zmm8, %%zmm8%{%%k3%}%{z%}\n\t"                    /* 0 past TMAX */ \
    "vpxord %%zmm3, %%zmm3, %%zmm3\n\t" \
    "vcmpps $0x11, %%zmm3, %%zmm" #X ", %%k4\n\t"                /* x < 0 */ \
    "vbroadcastss " G_L(G_ONE) ", %%zmm3\n\t" \
    "vsubps %%zmm8, %%zmm3, %%zmm3\n\t" \
    "vmovaps %%zmm8, %%zmm3%{%%k4%}\n\t"                         /* Φ large */ \
    "vcmpps $0x12, " G_B(G_SPLIT) ", %%zmm2, %%k5\n\t" \
    "vmovaps %%zmm4, %%zmm3%{%%k5%}\n\t"                         /* |x| <= 1: Φ small */ \
    "vmulps %%zmm3, %%zmm" #X ", %%zmm" #X "\n\t"

// Fast GELU of %zmm<X> in place, for the bf16 precision (whose next product rounds the
// result to bfloat16 anyway): absolute error below 2e-7·max(1, |x|). Temporaries as above.
#define CED_GELU_FAST_ASM(X) \
    "vpslld $1, %%zmm" #X ", %%zmm2\n\t" \
    "vpsrld $1, %%zmm2, %%zmm2\n\t"                             /* a = |x| */ \
    "vminps " G_B(F_AMAX) ", %%zmm2, %%zmm2\n\t"                 /* (Φ(−20) = 0 in float) */ \
    "vmulps " G_B(F_RSQRT2) ", %%zmm2, %%zmm3\n\t"              /* z = a/√2 */ \
    "vbroadcastss " G_L(G_ONE) ", %%zmm4\n\t" \
    "vfmadd231ps " G_B(F_P) ", %%zmm3, %%zmm4\n\t"              /* d = 1 + p·z */ \
    "vrcp14ps %%zmm4, %%zmm5\n\t" \
    "vbroadcastss " G_L(G_TWO) ", %%zmm6\n\t" \
    "vfnmadd231ps %%zmm5, %%zmm4, %%zmm6\n\t" \
    "vmulps %%zmm6, %%zmm5, %%zmm5\n\t"                          /* t = 1/d */ \
    "vbroadcastss " G_L(36) ", %%zmm6\n\t" \
    "vfmadd213ps " G_B(35) ", %%zmm5, %%zmm6\n\t" \
    "vfmadd213ps " G_B(34) ", %%zmm5, %%zmm6\n\t" \
    "vfmadd213ps " G_B(33) ", %%zmm5, %%zmm6\n\t" \
    "vfmadd213ps " G_B(32) ", %%zmm5, %%zmm6\n\t" \
    "vmulps %%zmm5, %%zmm6, %%zmm6\n\t"                          /* 0.5·t·A(t) */ \
    "vmulps %%zmm3, %%zmm3, %%zmm7\n\t" \
    "vminps " G_B(F_WMAX) ", %%zmm7, %%zmm7\n\t"                 /* w = min(z², 80) */ \
    "vmulps " G_B(F_NLOG2E) ", %%zmm7, %%zmm8\n\t" \
    "vrndscaleps $8, %%zmm8, %%zmm8\n\t"                         /* n = round(−w·log2e) */ \
    "vmulps " G_B(F_NLN2HI) ", %%zmm8, %%zmm9\n\t" \
    "vsubps %%zmm7, %%zmm9, %%zmm9\n\t" \
    "vfmadd231ps " G_B(F_NLN2LO) ", %%zmm8, %%zmm9\n\t"         /* r = −w − n·ln2 */ \
    "vbroadcastss " G_L(41) ", %%zmm4\n\t" \
    "vfmadd213ps " G_B(42) ", %%zmm9, %%zmm4\n\t" \
    "vfmadd213ps " G_B(43) ", %%zmm9, %%zmm4\n\t" \
    "vfmadd213ps " G_B(44) ", %%zmm9, %%zmm4\n\t" \
    "vfmadd213ps " G_B(45) ", %%zmm9, %%zmm4\n\t" \
    "vfmadd213ps " G_B(46) ", %%zmm9, %%zmm4\n\t" \
    "vmulps %%zmm9, %%zmm9, %%zmm7\n\t" \
    "vaddps " G_B(G_ONE) ", %%zmm9, %%zmm9\n\t" \
    "vfmadd213ps %%zmm9, %%zmm7, %%zmm4\n\t" \
    "vscalefps %%zmm8, %%zmm4, %%zmm4\n\t"                       /* exp(−w) */ \
    "vmulps %%zmm4, %%zmm6, %%zmm6\n\t"                          /* q = Φ(−|x|) */ \
    "vbroadcastss " G_L(G_ONE) ", %%zmm5\n\t" \
    "vsubps %%zmm6, %%zmm5, %%zmm5\n\t"                          /* 1 − q */ \
    "vpxord %%zmm3, %%zmm3, %%zmm3\n\t" \
    "vcmpps $0x11, %%zmm3, %%zmm" #X ", %%k4\n\t"                /* x < 0 */ \
    "vmovaps %%zmm6, %%zmm5%{%%k4%}\n\t"                         /* Φ(x) */ \
    "vmulps %%zmm5, %%zmm" #X ", %%zmm" #X "\n\t"

#define CED_GELU_CLOBBERS "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "k3", "k4", "k5"

CED_AVX512 static inline __mmask16 ced_cols_mask(int32_t lo, int32_t hi, int32_t base) {
    int32_t a = lo - base, b = hi - base;
    if (a < 0) a = 0;
    if (b > 16) b = 16;
    if (b <= a) return 0;
    return (__mmask16)(((1u << b) - 1u) & ~((1u << a) - 1u));
}

// Epilogue of an AVX-512 tile (shared with the bf16 kernels): rows [row_begin, row_end) of
// `acc` (row stride 32 floats) → alpha, beta·C, bias, GELU, add C, masked store into
// tile->c (columns [col_begin, col_end)). One row per asm block so that it runs at full
// speed in -O0 builds too.
CED_AVX512 void ced_epilogue_avx512(const float *acc, const ced_tile *tile) {
    const __mmask16 m0 = ced_cols_mask(tile->col_begin, tile->col_end, 0);
    const __mmask16 m1 = ced_cols_mask(tile->col_begin, tile->col_end, 16);
    // Masks go through 32-bit registers with kmovw (AVX-512F; kmovd would need BW).
    const uint32_t mask0 = m0, mask1 = m1;
    const int64_t flags = (tile->alpha != 1.0f ? 1 : 0) | (tile->beta != 0.0f ? 2 : 0) |
                          (tile->bias ? 4 : 0) | (tile->gelu == 1 ? 8 : 0) | (tile->add_c ? 16 : 0) |
                          (tile->gelu == 2 ? 32 : 0);
    const float *bias = tile->bias ? tile->bias : acc;   // never read when NULL
    const float *alphap = &tile->alpha, *betap = &tile->beta;
    const float *tab = ced_gelu_table;
    for (int32_t i = tile->row_begin; i < tile->row_end; i++) {
        float *crow = tile->c + i * tile->ldc;
        const float *arow = acc + i * 32;
        __asm__ volatile(
            "kmovw %[mask0], %%k1\n\t"
            "kmovw %[mask1], %%k2\n\t"
            "vmovaps (%[arow]), %%zmm0\n\t"
            "vmovaps 64(%[arow]), %%zmm1\n\t"
            "test $1, %[flags]\n\t"
            "jz 1f\n\t"
            "vmulps (%[alpha])%{1to16%}, %%zmm0, %%zmm0\n\t"
            "vmulps (%[alpha])%{1to16%}, %%zmm1, %%zmm1\n"
            "1:\n\t"
            "test $2, %[flags]\n\t"
            "jz 2f\n\t"
            "vbroadcastss (%[beta]), %%zmm2\n\t"
            "vmovups (%[c]), %%zmm3%{%%k1%}%{z%}\n\t"
            "vmovups 64(%[c]), %%zmm4%{%%k2%}%{z%}\n\t"
            "vfmadd231ps %%zmm2, %%zmm3, %%zmm0\n\t"
            "vfmadd231ps %%zmm2, %%zmm4, %%zmm1\n"
            "2:\n\t"
            "test $4, %[flags]\n\t"
            "jz 3f\n\t"
            "vmovups (%[bias]), %%zmm3%{%%k1%}%{z%}\n\t"
            "vmovups 64(%[bias]), %%zmm4%{%%k2%}%{z%}\n\t"
            "vaddps %%zmm3, %%zmm0, %%zmm0\n\t"
            "vaddps %%zmm4, %%zmm1, %%zmm1\n"
            "3:\n\t"
            "test $8, %[flags]\n\t"
            "jz 6f\n\t"
            CED_GELU_ASM(0)
            CED_GELU_ASM(1)
            "6:\n\t"
            "test $32, %[flags]\n\t"
            "jz 4f\n\t"
            CED_GELU_FAST_ASM(0)
            CED_GELU_FAST_ASM(1)
            "4:\n\t"
            "test $16, %[flags]\n\t"
            "jz 5f\n\t"
            "vmovups (%[c]), %%zmm3%{%%k1%}%{z%}\n\t"
            "vmovups 64(%[c]), %%zmm4%{%%k2%}%{z%}\n\t"
            "vaddps %%zmm3, %%zmm0, %%zmm0\n\t"
            "vaddps %%zmm4, %%zmm1, %%zmm1\n"
            "5:\n\t"
            "vmovups %%zmm0, (%[c])%{%%k1%}\n\t"
            "vmovups %%zmm1, 64(%[c])%{%%k2%}\n\t"
            :
            : [mask0] "r"(mask0), [mask1] "r"(mask1), [arow] "r"(arow), [flags] "r"(flags), [alpha] "r"(alphap),
              [beta] "r"(betap), [c] "r"(crow), [bias] "r"(bias), [tab] "r"(tab)
            : "cc", "memory", "xmm0", "xmm1", CED_GELU_CLOBBERS, "k1", "k2");
    }
    __asm__ volatile("vzeroupper" ::: "memory");  // see ced_tile_avx512
}

// Lean epilogue for whole 32-column rows without scaling or GELU: C (=|+=) acc + bias.
CED_AVX512 void ced_epilogue_rows_avx512(const float *acc, int32_t rows, float *c, int64_t ldc,
                                         const float *bias, int32_t add_c) {
    static const float zeros[32] __attribute__((aligned(64))) = {0};
    const float *b = bias ? bias : zeros;
    int64_t n = rows, ldcb = ldc * 4;
    if (n <= 0) return;
    if (add_c) {
        __asm__ volatile(
            "vmovups (%[b]), %%zmm2\n\t"
            "vmovups 64(%[b]), %%zmm3\n\t"
            "1:\n\t"
            "vaddps (%[acc]), %%zmm2, %%zmm0\n\t"
            "vaddps 64(%[acc]), %%zmm3, %%zmm1\n\t"
            "vaddps (%[c]), %%zmm0, %%zmm0\n\t"
            "vaddps 64(%[c]), %%zmm1, %%zmm1\n\t"
            "vmovups %%zmm0, (%[c])\n\t"
            "vmovups %%zmm1, 64(%[c])\n\t"
            "add $128, %[acc]\n\t"
            "add %[ldc], %[c]\n\t"
            "dec %[n]\n\t"
            "jnz 1b\n\t"
            "vzeroupper\n\t"
            : [acc] "+r"(acc), [c] "+r"(c), [n] "+r"(n)
            : [b] "r"(b), [ldc] "r"(ldcb)
            : "cc", "memory", "xmm0", "xmm1", "xmm2", "xmm3");
    } else {
        __asm__ volatile(
            "vmovups (%[b]), %%zmm2\n\t"
            "vmovups 64(%[b]), %%zmm3\n\t"
            "1:\n\t"
            "vaddps (%[acc]), %%zmm2, %%zmm0\n\t"
            "vaddps 64(%[acc]), %%zmm3, %%zmm1\n\t"
            "vmovups %%zmm0, (%[c])\n\t"
            "vmovups %%zmm1, 64(%[c])\n\t"
            "add $128, %[acc]\n\t"
            "add %[ldc], %[c]\n\t"
            "dec %[n]\n\t"
            "jnz 1b\n\t"
            "vzeroupper\n\t"
            : [acc] "+r"(acc), [c] "+r"(c), [n] "+r"(n)
            : [b] "r"(b), [ldc] "r"(ldcb)
            : "cc", "memory", "xmm0", "xmm1", "xmm2", "xmm3");
    }
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
    // Whole tiles without GELU or scaling (the common case) finish in registers: + bias,
    // + old C (residual or a later k block), store. Everything else goes through `acc` and
    // the generic epilogue.
    const int full = tile->row_begin == 0 && tile->row_end == 14 && tile->col_begin == 0 && tile->col_end == 32;
    const int add_c = tile->add_c || tile->beta == 1.0f;
    const int fast = full && !tile->gelu && tile->alpha == 1.0f && (tile->beta == 0.0f || tile->beta == 1.0f) &&
                     !(tile->add_c && tile->beta != 0.0f);
    struct { const float *bias; float *c; int64_t ldc_bytes; int64_t flags; } ep = {
        tile->bias, tile->c, tile->ldc * 4, (fast ? 1 : 0) | (tile->bias ? 2 : 0) | (add_c ? 4 : 0)};
    const void *epp = &ep;
    // B is prefetched 2 KB (16 k steps) ahead: within a panel, and at its end into the
    // panel of the next tile (measured: 5-8% faster forward passes than without).
    const int64_t pd = 2048;

#define Z(i) "vpxord %%zmm" #i ", %%zmm" #i ", %%zmm" #i "\n\t"
#define ROW(addr, i0, i1, t) \
    "vbroadcastss " addr ", %%zmm" #t "\n\t" \
    "vfmadd231ps %%zmm" #t ", %%zmm28, %%zmm" #i0 "\n\t" \
    "vfmadd231ps %%zmm" #t ", %%zmm29, %%zmm" #i1 "\n\t"
#define ST(i) "vmovaps %%zmm" #i ", " #i "*64(%[acc])\n\t"
#define BIAS(i0, i1) "vaddps %%zmm28, %%zmm" #i0 ", %%zmm" #i0 "\n\t" "vaddps %%zmm29, %%zmm" #i1 ", %%zmm" #i1 "\n\t"
#define ADDC(i0, i1) \
    "vaddps (%[a5]), %%zmm" #i0 ", %%zmm" #i0 "\n\t" \
    "vaddps 64(%[a5]), %%zmm" #i1 ", %%zmm" #i1 "\n\t" \
    "add %[l], %[a5]\n\t"
#define STC(i0, i1) \
    "vmovups %%zmm" #i0 ", (%[a0])\n\t" \
    "vmovups %%zmm" #i1 ", 64(%[a0])\n\t" \
    "add %[l], %[a0]\n\t"
    __asm__ volatile(
        Z(0) Z(1) Z(2) Z(3) Z(4) Z(5) Z(6) Z(7) Z(8) Z(9) Z(10) Z(11) Z(12) Z(13)
        Z(14) Z(15) Z(16) Z(17) Z(18) Z(19) Z(20) Z(21) Z(22) Z(23) Z(24) Z(25) Z(26) Z(27)
        "test %[k], %[k]\n\t"
        "jle 2f\n\t"
        ".p2align 5\n"
        "1:\n\t"
        "vmovups (%[b]), %%zmm28\n\t"
        "vmovups 64(%[b]), %%zmm29\n\t"
        "prefetcht0 (%[b],%[pd],1)\n\t"
        "prefetcht0 64(%[b],%[pd],1)\n\t"
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
        "testq $1, 24(%[ep])\n\t"
        "jz 5f\n\t"
        // Register epilogue; the loop's pointer registers are reused: a0 = C row,
        // a5 = bias / C row to add, l = ldc in bytes.
        "mov 8(%[ep]), %[a0]\n\t"
        "mov 16(%[ep]), %[l]\n\t"
        "testq $2, 24(%[ep])\n\t"
        "jz 3f\n\t"
        "mov (%[ep]), %[a5]\n\t"
        "vmovups (%[a5]), %%zmm28\n\t"
        "vmovups 64(%[a5]), %%zmm29\n\t"
        BIAS(0, 1) BIAS(2, 3) BIAS(4, 5) BIAS(6, 7) BIAS(8, 9) BIAS(10, 11) BIAS(12, 13)
        BIAS(14, 15) BIAS(16, 17) BIAS(18, 19) BIAS(20, 21) BIAS(22, 23) BIAS(24, 25) BIAS(26, 27)
        "3:\n\t"
        "testq $4, 24(%[ep])\n\t"
        "jz 4f\n\t"
        "mov %[a0], %[a5]\n\t"
        ADDC(0, 1) ADDC(2, 3) ADDC(4, 5) ADDC(6, 7) ADDC(8, 9) ADDC(10, 11) ADDC(12, 13)
        ADDC(14, 15) ADDC(16, 17) ADDC(18, 19) ADDC(20, 21) ADDC(22, 23) ADDC(24, 25) ADDC(26, 27)
        "4:\n\t"
        STC(0, 1) STC(2, 3) STC(4, 5) STC(6, 7) STC(8, 9) STC(10, 11) STC(12, 13)
        STC(14, 15) STC(16, 17) STC(18, 19) STC(20, 21) STC(22, 23) STC(24, 25) STC(26, 27)
        "jmp 6f\n"
        "5:\n\t"
        ST(0) ST(1) ST(2) ST(3) ST(4) ST(5) ST(6) ST(7) ST(8) ST(9) ST(10) ST(11) ST(12) ST(13)
        ST(14) ST(15) ST(16) ST(17) ST(18) ST(19) ST(20) ST(21) ST(22) ST(23) ST(24) ST(25) ST(26) ST(27)
        "6:\n\t"
        : [a0] "+r"(a0), [a5] "+r"(a5), [a10] "+r"(a10), [b] "+r"(b), [k] "+r"(k),
          [l] "+r"(l), [l3] "+r"(l3), [lb] "+r"(lb)
        : [acc] "r"(accp), [ep] "r"(epp), [pd] "r"(pd)
        : "cc", "memory",
          "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
          "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15",
          "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23",
          "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31");
#undef Z
#undef ROW
#undef ST
#undef BIAS
#undef ADDC
#undef STC

    if (!fast) ced_epilogue_avx512(acc, tile);
    // The compiler does not see the zmm registers used inside inline asm, so it inserts no
    // vzeroupper: without one, every legacy-SSE instruction the caller runs next (Swift and
    // libm code) pays an AVX-SSE transition penalty (measured: expf 20x slower).
    __asm__ volatile("vzeroupper" ::: "memory");
}

CED_AVX512 void ced_gelu_avx512(const float *in, float *out, int64_t n) {
    const float *tab = ced_gelu_table;
    for (int64_t i = 0; i < n; i += 16) {
        uint32_t mask = n - i >= 16 ? 0xffffu : (uint32_t)((1u << (n - i)) - 1u);
        __asm__ volatile(
            "kmovw %[mask], %%k1\n\t"
            "vmovups (%[in]), %%zmm0%{%%k1%}%{z%}\n\t"
            CED_GELU_ASM(0)
            "vmovups %%zmm0, (%[out])%{%%k1%}\n\t"
            :
            : [mask] "r"(mask), [in] "r"(in + i), [out] "r"(out + i), [tab] "r"(tab)
            : "cc", "memory", "xmm0", CED_GELU_CLOBBERS, "k1");
    }
    __asm__ volatile("vzeroupper" ::: "memory");  // see ced_tile_avx512
}

CED_AVX512 void ced_gelu_fast_avx512(const float *in, float *out, int64_t n) {
    const float *tab = ced_gelu_table;
    for (int64_t i = 0; i < n; i += 16) {
        uint32_t mask = n - i >= 16 ? 0xffffu : (uint32_t)((1u << (n - i)) - 1u);
        __asm__ volatile(
            "kmovw %[mask], %%k1\n\t"
            "vmovups (%[in]), %%zmm0%{%%k1%}%{z%}\n\t"
            CED_GELU_FAST_ASM(0)
            "vmovups %%zmm0, (%[out])%{%%k1%}\n\t"
            :
            : [mask] "r"(mask), [in] "r"(in + i), [out] "r"(out + i), [tab] "r"(tab)
            : "cc", "memory", "xmm0", CED_GELU_CLOBBERS, "k1");
    }
    __asm__ volatile("vzeroupper" ::: "memory");  // see ced_tile_avx512
}

#else
void ced_tile_avx512(const ced_tile *tile) { ced_tile_portable(tile); }
void ced_gelu_avx512(const float *in, float *out, int64_t n);
void ced_gelu_avx512(const float *in, float *out, int64_t n) { ced_gelu(in, out, n, 0); }
void ced_gelu_fast_avx512(const float *in, float *out, int64_t n);
void ced_gelu_fast_avx512(const float *in, float *out, int64_t n) { ced_gelu(in, out, n, 0); }
#endif
