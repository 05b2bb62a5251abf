// The int8 and bf16 tiles of AArch64's optional extensions, chosen at run time:
//   - int8, FEAT_DotProd: `sdot` by element, 5×16 (Apple M1+, Graviton 2+, Cortex-A76+);
//   - int8, FEAT_I8MM: `usmmla`, 2×8 by 8×2 blocks, 4×16 (Graviton 3+, Apple M2+);
//   - bf16, FEAT_BF16: `bfdot` by element, 5×16, and `bfmmla`, 2×4 by 4×2 blocks, 4×16.
// They read the panel formats of the x86 kernels (CEDKernels.h): int8 k-quad panels, bf16
// k-pair panels. The `mmla` kernels need two columns' consecutive k values in one register:
// `zip1`/`zip2` on 32-bit elements of two k groups make them from those panels.
//
// The extension instructions are single-instruction inline assembly (each with the `.arch`
// the assembler needs), so the file builds with a baseline -march and the same source works
// with gcc, clang and Apple clang whatever their arm_neon.h declares; the rest is intrinsics.

#include "neon.h"

#if defined(__aarch64__)
#include <string.h>

#define ARCH_DOT ".arch armv8.2-a+dotprod\n\t"
#define ARCH_86 ".arch armv8.6-a+bf16+i8mm\n\t"

#define SDOT(acc, b, a, lane) __asm__(ARCH_DOT "sdot %0.4s, %1.16b, %2.4b[" #lane "]" : "+w"(acc) : "w"(b), "w"(a))
#define USMMLA(acc, a, b) __asm__(ARCH_86 "usmmla %0.4s, %1.16b, %2.16b" : "+w"(acc) : "w"(a), "w"(b))
#define BFDOT(acc, b, a, lane) __asm__(ARCH_86 "bfdot %0.4s, %1.8h, %2.2h[" #lane "]" : "+w"(acc) : "w"(b), "w"(a))
#define BFMMLA(acc, a, b) __asm__(ARCH_86 "bfmmla %0.4s, %1.8h, %2.8h" : "+w"(acc) : "w"(a), "w"(b))
#define ORDER() __asm__ volatile("" ::: "memory")

// MARK: int8, sdot by element, 5 × 16

#define I_DECL(i) int32x4_t c##i##0 = vdupq_n_s32(0), c##i##1 = c##i##0, c##i##2 = c##i##0, c##i##3 = c##i##0;
#define SDOT_ROW(i, A, q) SDOT(c##i##0, b0, A, q); SDOT(c##i##1, b1, A, q); SDOT(c##i##2, b2, A, q); SDOT(c##i##3, b3, A, q);
#define SDOT_STEP(bp, q) { ORDER(); \
    const int8x16_t b0 = vld1q_s8((bp)), b1 = vld1q_s8((bp) + 16), b2 = vld1q_s8((bp) + 32), b3 = vld1q_s8((bp) + 48); \
    SDOT_ROW(0, a0, q) SDOT_ROW(1, a1, q) SDOT_ROW(2, a2, q) SDOT_ROW(3, a3, q) SDOT_ROW(4, a4, q) }
#define I_STORE(i) vst1q_s32(iacc + 16 * i, c##i##0); vst1q_s32(iacc + 16 * i + 4, c##i##1); \
    vst1q_s32(iacc + 16 * i + 8, c##i##2); vst1q_s32(iacc + 16 * i + 12, c##i##3);

/// Unsigned +128 bytes → the signed values they stand for.
static inline int8x16_t signed_row(const uint8_t *p) { return vreinterpretq_s8_u8(veorq_u8(vld1q_u8(p), vdupq_n_u8(0x80))); }
static inline int8x16_t signed_quad(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return vreinterpretq_s8_u32(vdupq_n_u32(v ^ 0x80808080u));
}

void ced_tile_q8_dotprod(const ced_q8_tile *q) {
    const ced_tile *t = &q->tile;
    int32_t iacc[5 * 16] __attribute__((aligned(16)));
    float acc[5 * 16] __attribute__((aligned(16)));
    const uint8_t *r0 = (const uint8_t *)t->a, *r1 = r0 + t->lda, *r2 = r1 + t->lda, *r3 = r2 + t->lda, *r4 = r3 + t->lda;
    const int8_t *b = (const int8_t *)t->b;
    const int64_t ldb = t->ldb, k = t->k;
    I_DECL(0) I_DECL(1) I_DECL(2) I_DECL(3) I_DECL(4)
    int64_t p = 0;
    for (; p + 16 <= k; p += 16) {
        const int8x16_t a0 = signed_row(r0 + p), a1 = signed_row(r1 + p), a2 = signed_row(r2 + p);
        const int8x16_t a3 = signed_row(r3 + p), a4 = signed_row(r4 + p);
        SDOT_STEP(b, 0)
        SDOT_STEP(b + ldb, 1)
        SDOT_STEP(b + 2 * ldb, 2)
        SDOT_STEP(b + 3 * ldb, 3)
        b += 4 * ldb;
    }
    for (; p + 4 <= k; p += 4) {
        const int8x16_t a0 = signed_quad(r0 + p), a1 = signed_quad(r1 + p), a2 = signed_quad(r2 + p);
        const int8x16_t a3 = signed_quad(r3 + p), a4 = signed_quad(r4 + p);
        SDOT_STEP(b, 0)
        b += ldb;
    }
    I_STORE(0) I_STORE(1) I_STORE(2) I_STORE(3) I_STORE(4)
    // Signed products Σ (q_a − 128)·q_b; rows quantised with another zero point z need
    // (128 − z)·Σq_b more, with Σq_b = comp / z.
    int32_t fix[16];
    for (int j = 0; j < 16; j++) fix[j] = q->a_zero == 128 ? 0 : (128 - q->a_zero) * (q->b_comp[j] / q->a_zero);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 16; j += 4) {
            const int32x4_t s = vaddq_s32(vld1q_s32(iacc + 16 * i + j), vld1q_s32(fix + j));
            const float32x4_t v = vmulq_f32(vcvtq_f32_s32(s), vld1q_f32(q->b_scale + j));
            vst1q_f32(acc + 16 * i + j, vmulq_n_f32(v, q->a_scale[i]));
        }
    ced_epilogue_neon(acc, t);
}

// MARK: int8, usmmla, 4 × 16

/// Rows 2i, 2i+1 of a 2×2-block accumulator pair → 4 columns each.
static inline void mmla_rows_i32(int32x4_t lo, int32x4_t hi, int32_t *row0, int32_t *row1) {
    vst1q_s32(row0, vreinterpretq_s32_s64(vzip1q_s64(vreinterpretq_s64_s32(lo), vreinterpretq_s64_s32(hi))));
    vst1q_s32(row1, vreinterpretq_s32_s64(vzip2q_s64(vreinterpretq_s64_s32(lo), vreinterpretq_s64_s32(hi))));
}

void ced_tile_q8_i8mm(const ced_q8_tile *q) {
    const ced_tile *t = &q->tile;
    int32_t iacc[4 * 16] __attribute__((aligned(16)));
    float acc[4 * 16] __attribute__((aligned(16)));
    const uint8_t *a = (const uint8_t *)t->a;
    const int64_t lda = t->lda, ldb = t->ldb, k = t->k;
    const int8_t *b = (const int8_t *)t->b;
    // cRC: rows 2R, 2R+1 × columns 2C, 2C+1 (named, so that every compiler keeps them in registers).
    int32x4_t c00 = vdupq_n_s32(0), c01 = c00, c02 = c00, c03 = c00, c04 = c00, c05 = c00, c06 = c00, c07 = c00;
    int32x4_t c10 = c00, c11 = c00, c12 = c00, c13 = c00, c14 = c00, c15 = c00, c16 = c00, c17 = c00;
#define I8MM_COLS(h, C0, C1) { \
        const int32x4_t lo = vreinterpretq_s32_s8(vld1q_s8(b + 16 * h)), hi = vreinterpretq_s32_s8(vld1q_s8(b + ldb + 16 * h)); \
        const int8x16_t m0 = vreinterpretq_s8_s32(vzip1q_s32(lo, hi)), m1 = vreinterpretq_s8_s32(vzip2q_s32(lo, hi)); \
        USMMLA(c0##C0, a01, m0); USMMLA(c0##C1, a01, m1); USMMLA(c1##C0, a23, m0); USMMLA(c1##C1, a23, m1); }
    for (int64_t p = 0; p + 8 <= k; p += 8) {
        ORDER();
        const uint8x16_t a01 = vcombine_u8(vld1_u8(a + p), vld1_u8(a + lda + p));
        const uint8x16_t a23 = vcombine_u8(vld1_u8(a + 2 * lda + p), vld1_u8(a + 3 * lda + p));
        I8MM_COLS(0, 0, 1) I8MM_COLS(1, 2, 3) I8MM_COLS(2, 4, 5) I8MM_COLS(3, 6, 7)
        b += 2 * ldb;
    }
    mmla_rows_i32(c00, c01, iacc + 0, iacc + 16);
    mmla_rows_i32(c02, c03, iacc + 4, iacc + 20);
    mmla_rows_i32(c04, c05, iacc + 8, iacc + 24);
    mmla_rows_i32(c06, c07, iacc + 12, iacc + 28);
    mmla_rows_i32(c10, c11, iacc + 32, iacc + 48);
    mmla_rows_i32(c12, c13, iacc + 36, iacc + 52);
    mmla_rows_i32(c14, c15, iacc + 40, iacc + 56);
    mmla_rows_i32(c16, c17, iacc + 44, iacc + 60);
    // Unsigned A: subtract zero·Σq_b per column (comp), as the x86 kernels do.
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 16; j += 4) {
            const int32x4_t s = vsubq_s32(vld1q_s32(iacc + 16 * i + j), vld1q_s32(q->b_comp + j));
            const float32x4_t v = vmulq_f32(vcvtq_f32_s32(s), vld1q_f32(q->b_scale + j));
            vst1q_f32(acc + 16 * i + j, vmulq_n_f32(v, q->a_scale[i]));
        }
    ced_epilogue_neon(acc, t);
}

// MARK: bf16, bfdot by element, 5 × 16

#define F_DECL(i) float32x4_t c##i##0 = vdupq_n_f32(0), c##i##1 = c##i##0, c##i##2 = c##i##0, c##i##3 = c##i##0;
#define BFDOT_ROW(i, A, q) BFDOT(c##i##0, b0, A, q); BFDOT(c##i##1, b1, A, q); BFDOT(c##i##2, b2, A, q); BFDOT(c##i##3, b3, A, q);
#define BFDOT_STEP(bp, q) { ORDER(); \
    const uint16x8_t b0 = vld1q_u16((bp)), b1 = vld1q_u16((bp) + 8), b2 = vld1q_u16((bp) + 16), b3 = vld1q_u16((bp) + 24); \
    BFDOT_ROW(0, a0, q) BFDOT_ROW(1, a1, q) BFDOT_ROW(2, a2, q) BFDOT_ROW(3, a3, q) BFDOT_ROW(4, a4, q) }
#define F_STORE(i) vst1q_f32(acc + 16 * i, c##i##0); vst1q_f32(acc + 16 * i + 4, c##i##1); \
    vst1q_f32(acc + 16 * i + 8, c##i##2); vst1q_f32(acc + 16 * i + 12, c##i##3);

static inline uint16x8_t bf16_pair(const uint16_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return vreinterpretq_u16_u32(vdupq_n_u32(v));
}

void ced_tile_bf16_bfdot(const ced_tile *t) {
    float acc[5 * 16] __attribute__((aligned(16)));
    const uint16_t *r0 = (const uint16_t *)t->a, *r1 = r0 + t->lda, *r2 = r1 + t->lda, *r3 = r2 + t->lda, *r4 = r3 + t->lda;
    const uint16_t *b = (const uint16_t *)t->b;
    const int64_t ldb = t->ldb, k = t->k;
    F_DECL(0) F_DECL(1) F_DECL(2) F_DECL(3) F_DECL(4)
    int64_t p = 0;
    for (; p + 8 <= k; p += 8) {   // four k pairs
        const uint16x8_t a0 = vld1q_u16(r0 + p), a1 = vld1q_u16(r1 + p), a2 = vld1q_u16(r2 + p);
        const uint16x8_t a3 = vld1q_u16(r3 + p), a4 = vld1q_u16(r4 + p);
        BFDOT_STEP(b, 0)
        BFDOT_STEP(b + ldb, 1)
        BFDOT_STEP(b + 2 * ldb, 2)
        BFDOT_STEP(b + 3 * ldb, 3)
        b += 4 * ldb;
    }
    for (; p + 2 <= k; p += 2) {
        const uint16x8_t a0 = bf16_pair(r0 + p), a1 = bf16_pair(r1 + p), a2 = bf16_pair(r2 + p);
        const uint16x8_t a3 = bf16_pair(r3 + p), a4 = bf16_pair(r4 + p);
        BFDOT_STEP(b, 0)
        b += ldb;
    }
    F_STORE(0) F_STORE(1) F_STORE(2) F_STORE(3) F_STORE(4)
    ced_epilogue_neon(acc, t);
}

// MARK: bf16, bfmmla, 4 × 16

static inline void mmla_rows_f32(float32x4_t lo, float32x4_t hi, float *row0, float *row1) {
    const float64x2_t l = vreinterpretq_f64_f32(lo), h = vreinterpretq_f64_f32(hi);
    vst1q_f32(row0, vreinterpretq_f32_f64(vzip1q_f64(l, h)));
    vst1q_f32(row1, vreinterpretq_f32_f64(vzip2q_f64(l, h)));
}

void ced_tile_bf16_bfmmla(const ced_tile *t) {
    float acc[4 * 16] __attribute__((aligned(16)));
    const uint16_t *a = (const uint16_t *)t->a;
    const int64_t lda = t->lda, ldb = t->ldb, k = t->k;
    const uint16_t *b = (const uint16_t *)t->b;
    float32x4_t c00 = vdupq_n_f32(0), c01 = c00, c02 = c00, c03 = c00, c04 = c00, c05 = c00, c06 = c00, c07 = c00;
    float32x4_t c10 = c00, c11 = c00, c12 = c00, c13 = c00, c14 = c00, c15 = c00, c16 = c00, c17 = c00;
#define BFMMLA_COLS(h, C0, C1) { \
        const uint32x4_t lo = vreinterpretq_u32_u16(vld1q_u16(b + 8 * h)), hi = vreinterpretq_u32_u16(vld1q_u16(b + ldb + 8 * h)); \
        const uint16x8_t m0 = vreinterpretq_u16_u32(vzip1q_u32(lo, hi)), m1 = vreinterpretq_u16_u32(vzip2q_u32(lo, hi)); \
        BFMMLA(c0##C0, a01, m0); BFMMLA(c0##C1, a01, m1); BFMMLA(c1##C0, a23, m0); BFMMLA(c1##C1, a23, m1); }
    for (int64_t p = 0; p + 4 <= k; p += 4) {   // two k pairs
        ORDER();
        const uint16x8_t a01 = vcombine_u16(vld1_u16(a + p), vld1_u16(a + lda + p));
        const uint16x8_t a23 = vcombine_u16(vld1_u16(a + 2 * lda + p), vld1_u16(a + 3 * lda + p));
        BFMMLA_COLS(0, 0, 1) BFMMLA_COLS(1, 2, 3) BFMMLA_COLS(2, 4, 5) BFMMLA_COLS(3, 6, 7)
        b += 2 * ldb;
    }
    mmla_rows_f32(c00, c01, acc + 0, acc + 16);
    mmla_rows_f32(c02, c03, acc + 4, acc + 20);
    mmla_rows_f32(c04, c05, acc + 8, acc + 24);
    mmla_rows_f32(c06, c07, acc + 12, acc + 28);
    mmla_rows_f32(c10, c11, acc + 32, acc + 48);
    mmla_rows_f32(c12, c13, acc + 36, acc + 52);
    mmla_rows_f32(c14, c15, acc + 40, acc + 56);
    mmla_rows_f32(c16, c17, acc + 44, acc + 60);
    ced_epilogue_neon(acc, t);
}

#else
void ced_tile_q8_dotprod(const ced_q8_tile *q) { ced_tile_q8_portable(q); }
void ced_tile_q8_i8mm(const ced_q8_tile *q) { ced_tile_q8_portable(q); }
void ced_tile_bf16_bfdot(const ced_tile *t) { (void)t; __builtin_trap(); }
void ced_tile_bf16_bfmmla(const ced_tile *t) { (void)t; __builtin_trap(); }
#endif
