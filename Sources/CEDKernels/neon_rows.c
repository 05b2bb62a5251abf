// NEON versions of the row and elementwise kernels (rows.c, train.c, tile_portable.c) and of
// the O(m·k) conversions of the bf16 and int8 paths (bf16.c, int8.c): softmax, LayerNorm,
// GELU, the unnormalised bf16 softmax of attention, row scaling, GELU' of training,
// transposes, fp32 → bf16 rows and int8 row quantisation. Same formulas as the x86
// versions (rows.c's exp, gelu.h's GELU), Armv8.0-A intrinsics only.

#include "neon.h"

#if defined(__aarch64__)
#include <math.h>
#include <string.h>

// MARK: exp (softmax), as rows.c

#define EXP_LO (-87.3f)
#define LN2_HI 0.693359375f
#define LN2_LO (-2.12194440e-4f)

static inline float32x4_t exp_neon(float32x4_t x) {
    const uint32x4_t small = vcltq_f32(x, vdupq_n_f32(EXP_LO));
    x = vmaxq_f32(x, vdupq_n_f32(EXP_LO));
    const float32x4_t n = vrndnq_f32(vmulq_f32(x, vdupq_n_f32(CED_LOG2E)));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(LN2_HI));
    r = vfmsq_f32(r, n, vdupq_n_f32(LN2_LO));
    float32x4_t p = vdupq_n_f32(1.9875691500e-4f);
    p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
    p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
    const float32x4_t e = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), p, vmulq_f32(r, r));
    const int32x4_t bits = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    return vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(vmulq_f32(e, vreinterpretq_f32_s32(bits))), small));
}

/// Loads the `left` (< 4) floats at p into the low lanes, `fill` elsewhere.
static inline float32x4_t load_partial(const float *p, int64_t left, float fill) {
    float buf[4] = {fill, fill, fill, fill};
    for (int64_t i = 0; i < left; i++) buf[i] = p[i];
    return vld1q_f32(buf);
}

static inline void store_partial(float *p, int64_t left, float32x4_t v) {
    float buf[4];
    vst1q_f32(buf, v);
    for (int64_t i = 0; i < left; i++) p[i] = buf[i];
}

// MARK: softmax

void ced_softmax_rows_neon(float *p, int64_t rows, int64_t cols) {
    const int64_t full = cols & ~(int64_t)3, left = cols - full;
    for (int64_t i = 0; i < rows; i++) {
        float *row = p + i * cols;
        float32x4_t m0 = vdupq_n_f32(-INFINITY), m1 = m0;
        int64_t j = 0;
        for (; j + 8 <= full; j += 8) {
            m0 = vmaxq_f32(m0, vld1q_f32(row + j));
            m1 = vmaxq_f32(m1, vld1q_f32(row + j + 4));
        }
        for (; j < full; j += 4) m0 = vmaxq_f32(m0, vld1q_f32(row + j));
        if (left) m1 = vmaxq_f32(m1, load_partial(row + full, left, -INFINITY));
        const float32x4_t m = vdupq_n_f32(vmaxvq_f32(vmaxq_f32(m0, m1)));
        float32x4_t s0 = vdupq_n_f32(0), s1 = s0;
        for (j = 0; j + 8 <= full; j += 8) {
            const float32x4_t e0 = exp_neon(vsubq_f32(vld1q_f32(row + j), m));
            const float32x4_t e1 = exp_neon(vsubq_f32(vld1q_f32(row + j + 4), m));
            vst1q_f32(row + j, e0);
            vst1q_f32(row + j + 4, e1);
            s0 = vaddq_f32(s0, e0);
            s1 = vaddq_f32(s1, e1);
        }
        for (; j < full; j += 4) {
            const float32x4_t e = exp_neon(vsubq_f32(vld1q_f32(row + j), m));
            vst1q_f32(row + j, e);
            s0 = vaddq_f32(s0, e);
        }
        if (left) {
            const float32x4_t e = exp_neon(vsubq_f32(load_partial(row + full, left, -INFINITY), m));
            store_partial(row + full, left, e);
            s1 = vaddq_f32(s1, e);
        }
        const float32x4_t inv = vdupq_n_f32(1.0f / vaddvq_f32(vaddq_f32(s0, s1)));
        for (j = 0; j < full; j += 4) vst1q_f32(row + j, vmulq_f32(vld1q_f32(row + j), inv));
        for (; j < cols; j++) row[j] *= vgetq_lane_f32(inv, 0);
    }
}

// MARK: fp32 → bf16 (the rounding of ced_bf16_scalar: nearest even, NaN stays NaN,
// subnormals become signed zeros)

static inline uint16x4_t bf16_neon(float32x4_t x) {
    const uint32x4_t u = vreinterpretq_u32_f32(x);
    const uint32x4_t mag = vandq_u32(u, vdupq_n_u32(0x7fffffffu));
    const uint32x4_t nan = vcgtq_u32(mag, vdupq_n_u32(0x7f800000u));
    const uint32x4_t sub = vceqq_u32(vandq_u32(u, vdupq_n_u32(0x7f800000u)), vdupq_n_u32(0));
    const uint32x4_t rounded = vaddq_u32(u, vaddq_u32(vdupq_n_u32(0x7fffu), vandq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(1))));
    uint32x4_t r = vshrq_n_u32(rounded, 16);
    r = vbslq_u32(sub, vandq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(0x8000u)), r);
    r = vbslq_u32(nan, vorrq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(0x40u)), r);
    return vmovn_u32(r);
}

void ced_bf16_pack_rows_neon(const float *x, int64_t ldx, int64_t rows, int64_t cols,
                             uint16_t *y, int64_t ldy, int64_t rows_pad, int64_t cols_pad) {
    for (int64_t i = 0; i < rows_pad; i++) {
        uint16_t *yr = y + i * ldy;
        int64_t j = 0;
        if (i < rows) {
            const float *xr = x + i * ldx;
            for (; j + 4 <= cols; j += 4) vst1_u16(yr + j, bf16_neon(vld1q_f32(xr + j)));
            if (j < cols) {
                uint16_t buf[4];
                vst1_u16(buf, bf16_neon(load_partial(xr + j, cols - j, 0.0f)));
                for (int64_t t = j; t < cols; t++) yr[t] = buf[t - j];
                j = cols;
            }
        }
        for (; j < cols_pad; j++) yr[j] = 0;
    }
}

void ced_softmax_rows_bf16_neon(const float *s, int64_t rows, int64_t cols, int64_t lds,
                                uint16_t *p, int64_t ldp, int64_t rows_pad, int64_t cols_pad, float *inv_sum) {
    const int64_t full = cols & ~(int64_t)3, left = cols - full;
    for (int64_t i = 0; i < rows; i++) {
        const float *row = s + i * lds;
        uint16_t *out = p + i * ldp;
        float32x4_t m0 = vdupq_n_f32(-INFINITY);
        int64_t j = 0;
        for (; j < full; j += 4) m0 = vmaxq_f32(m0, vld1q_f32(row + j));
        if (left) m0 = vmaxq_f32(m0, load_partial(row + full, left, -INFINITY));
        const float32x4_t m = vdupq_n_f32(vmaxvq_f32(m0));
        float32x4_t s0 = vdupq_n_f32(0);
        for (j = 0; j < full; j += 4) {
            const float32x4_t e = exp_neon(vsubq_f32(vld1q_f32(row + j), m));
            s0 = vaddq_f32(s0, e);
            vst1_u16(out + j, bf16_neon(e));
        }
        if (left) {
            float32x4_t e = exp_neon(vsubq_f32(load_partial(row + full, left, -INFINITY), m));
            s0 = vaddq_f32(s0, e);
            uint16_t buf[4];
            vst1_u16(buf, bf16_neon(e));
            for (int64_t t = 0; t < left; t++) out[full + t] = buf[t];
        }
        for (j = cols; j < cols_pad; j++) out[j] = 0;
        inv_sum[i] = 1.0f / vaddvq_f32(s0);
    }
    for (int64_t i = rows; i < rows_pad; i++) memset(p + i * ldp, 0, (size_t)cols_pad * sizeof(uint16_t));
}

void ced_scale_rows_neon(float *c, int64_t ldc, int64_t rows, int64_t cols, const float *scale) {
    for (int64_t i = 0; i < rows; i++) {
        float *row = c + i * ldc;
        const float32x4_t f = vdupq_n_f32(scale[i]);
        int64_t j = 0;
        for (; j + 4 <= cols; j += 4) vst1q_f32(row + j, vmulq_f32(vld1q_f32(row + j), f));
        for (; j < cols; j++) row[j] *= scale[i];
    }
}

// MARK: LayerNorm (two passes, float32 sums)

void ced_layernorm_rows_neon(const float *x, float *y, int64_t rows, int64_t cols,
                             const float *w, const float *b, float eps) {
    for (int64_t i = 0; i < rows; i++) {
        const float *xr = x + i * cols;
        float *yr = y + i * cols;
        float32x4_t s0 = vdupq_n_f32(0), s1 = s0;
        int64_t j = 0;
        for (; j + 8 <= cols; j += 8) {
            s0 = vaddq_f32(s0, vld1q_f32(xr + j));
            s1 = vaddq_f32(s1, vld1q_f32(xr + j + 4));
        }
        for (; j + 4 <= cols; j += 4) s0 = vaddq_f32(s0, vld1q_f32(xr + j));
        const int64_t vec = j;
        float sum = vaddvq_f32(vaddq_f32(s0, s1));
        for (; j < cols; j++) sum += xr[j];
        const float mean = sum / (float)cols;
        const float32x4_t m = vdupq_n_f32(mean);
        float32x4_t q0 = vdupq_n_f32(0), q1 = q0;
        for (j = 0; j + 8 <= vec; j += 8) {
            const float32x4_t d0 = vsubq_f32(vld1q_f32(xr + j), m), d1 = vsubq_f32(vld1q_f32(xr + j + 4), m);
            q0 = vfmaq_f32(q0, d0, d0);
            q1 = vfmaq_f32(q1, d1, d1);
        }
        for (; j < vec; j += 4) {
            const float32x4_t d = vsubq_f32(vld1q_f32(xr + j), m);
            q0 = vfmaq_f32(q0, d, d);
        }
        float sq = vaddvq_f32(vaddq_f32(q0, q1));
        for (j = vec; j < cols; j++) { const float d = xr[j] - mean; sq += d * d; }
        const float inv = 1.0f / sqrtf(sq / (float)cols + eps);
        const float32x4_t sv = vdupq_n_f32(inv);
        for (j = 0; j < vec; j += 4) {
            const float32x4_t d = vmulq_f32(vsubq_f32(vld1q_f32(xr + j), m), sv);
            vst1q_f32(yr + j, vfmaq_f32(vld1q_f32(b + j), d, vld1q_f32(w + j)));
        }
        for (j = vec; j < cols; j++) yr[j] = (xr[j] - mean) * inv * w[j] + b[j];
    }
}

// MARK: GELU' (training), as train.c's AVX-512 version

#define CED_INV_SQRT_2PI 0.3989422804014327f

static inline float32x4_t exp_neg_neon(float32x4_t y) {
    const float32x4_t n = vrndnq_f32(vmulq_f32(y, vdupq_n_f32(CED_LOG2E)));
    float32x4_t r = vfmsq_f32(y, n, vdupq_n_f32(CED_LN2_HI));
    r = vfmsq_f32(r, n, vdupq_n_f32(CED_LN2_LO));
    float32x4_t e = vdupq_n_f32(ced_exp_e[4]);
    for (int i = 3; i >= 0; i--) e = vfmaq_f32(vdupq_n_f32(ced_exp_e[i]), e, r);
    const float32x4_t ex = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), vmulq_f32(r, r), e);
    const float32x4_t nc = vmaxq_f32(n, vdupq_n_f32(-126.0f));
    const int32x4_t bits = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(nc), vdupq_n_s32(127)), 23);
    const float32x4_t out = vmulq_f32(ex, vreinterpretq_f32_s32(bits));
    return vbslq_f32(vcltq_f32(y, vdupq_n_f32(-87.0f)), vdupq_n_f32(0.0f), out);
}

/// GELU'(x), and Φ(x) in *phi_out.
static inline float32x4_t gelu_phi_grad_neon(float32x4_t x, float32x4_t *phi_out) {
    const float32x4_t half = vdupq_n_f32(0.5f), one = vdupq_n_f32(1.0f), zero = vdupq_n_f32(0.0f);
    const float32x4_t tmax = vdupq_n_f32(CED_GELU_TMAX);
    const float32x4_t t = vabsq_f32(x);
    const float32x4_t tc = vminq_f32(t, tmax);
    const float32x4_t g = exp_neg_neon(vmulq_f32(vmulq_f32(tc, tc), vdupq_n_f32(-0.5f)));
    const float32x4_t x2 = vmulq_f32(x, x);
    float32x4_t p = vdupq_n_f32(ced_gelu_p[6]);
    for (int k = 5; k >= 0; k--) p = vfmaq_f32(vdupq_n_f32(ced_gelu_p[k]), p, x2);
    const float32x4_t inner = vfmaq_f32(half, x, p);
    const float32x4_t w = vdivq_f32(one, vfmaq_f32(one, half, tc));
    float32x4_t s = vdupq_n_f32(ced_gelu_s[8]);
    for (int k = 7; k >= 0; k--) s = vfmaq_f32(vdupq_n_f32(ced_gelu_s[k]), s, w);
    const float32x4_t lower = vmulq_f32(g, s);
    const uint32x4_t neg = vcltq_f32(x, zero);
    const float32x4_t outer = vbslq_f32(neg, lower, vsubq_f32(one, lower));
    float32x4_t phi = vbslq_f32(vcleq_f32(t, vdupq_n_f32(CED_GELU_SPLIT)), inner, outer);
    float32x4_t grad = vfmaq_f32(phi, vmulq_f32(x, g), vdupq_n_f32(CED_INV_SQRT_2PI));
    const uint32x4_t big = vcgtq_f32(t, tmax);
    const float32x4_t limit = vbslq_f32(neg, zero, one);
    grad = vbslq_f32(big, limit, grad);
    phi = vbslq_f32(big, limit, phi);
    const uint32x4_t nan = vmvnq_u32(vceqq_f32(x, x));
    *phi_out = vbslq_f32(nan, x, phi);
    return vbslq_f32(nan, x, grad);
}

void ced_gelu_backward_neon(const float *h, const float *dy, float *dx, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t phi;
        const float32x4_t grad = gelu_phi_grad_neon(vld1q_f32(h + i), &phi);
        vst1q_f32(dx + i, vmulq_f32(vld1q_f32(dy + i), grad));
    }
    if (i < n) {
        float32x4_t phi;
        const float32x4_t grad = gelu_phi_grad_neon(load_partial(h + i, n - i, 0.0f), &phi);
        store_partial(dx + i, n - i, vmulq_f32(load_partial(dy + i, n - i, 0.0f), grad));
    }
}

void ced_gelu_and_grad_neon(const float *h, float *y, float *gp, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t phi;
        const float32x4_t x = vld1q_f32(h + i);
        const float32x4_t grad = gelu_phi_grad_neon(x, &phi);
        vst1q_f32(y + i, vmulq_f32(x, phi));
        vst1q_f32(gp + i, grad);
    }
    if (i < n) {
        float32x4_t phi;
        const float32x4_t x = load_partial(h + i, n - i, 0.0f);
        const float32x4_t grad = gelu_phi_grad_neon(x, &phi);
        store_partial(y + i, n - i, vmulq_f32(x, phi));
        store_partial(gp + i, n - i, grad);
    }
}

// MARK: transpose, 4×4 register blocks in 16×16 cache blocks

static inline void transpose4x4(const float *s, int64_t lds, float *d, int64_t ldd, int add) {
    const float32x4_t r0 = vld1q_f32(s), r1 = vld1q_f32(s + lds), r2 = vld1q_f32(s + 2 * lds), r3 = vld1q_f32(s + 3 * lds);
    const float32x4_t t0 = vtrn1q_f32(r0, r1), t1 = vtrn2q_f32(r0, r1), t2 = vtrn1q_f32(r2, r3), t3 = vtrn2q_f32(r2, r3);
    float32x4_t o0 = vreinterpretq_f32_f64(vtrn1q_f64(vreinterpretq_f64_f32(t0), vreinterpretq_f64_f32(t2)));
    float32x4_t o1 = vreinterpretq_f32_f64(vtrn1q_f64(vreinterpretq_f64_f32(t1), vreinterpretq_f64_f32(t3)));
    float32x4_t o2 = vreinterpretq_f32_f64(vtrn2q_f64(vreinterpretq_f64_f32(t0), vreinterpretq_f64_f32(t2)));
    float32x4_t o3 = vreinterpretq_f32_f64(vtrn2q_f64(vreinterpretq_f64_f32(t1), vreinterpretq_f64_f32(t3)));
    if (add) {
        o0 = vaddq_f32(o0, vld1q_f32(d));
        o1 = vaddq_f32(o1, vld1q_f32(d + ldd));
        o2 = vaddq_f32(o2, vld1q_f32(d + 2 * ldd));
        o3 = vaddq_f32(o3, vld1q_f32(d + 3 * ldd));
    }
    vst1q_f32(d, o0);
    vst1q_f32(d + ldd, o1);
    vst1q_f32(d + 2 * ldd, o2);
    vst1q_f32(d + 3 * ldd, o3);
}

void ced_transpose_neon(const float *src, int64_t lds, int64_t rows, int64_t cols, float *dst, int64_t ldd, int add) {
    const int64_t r4 = rows / 4 * 4, c4 = cols / 4 * 4;
    for (int64_t i0 = 0; i0 < r4; i0 += 16) {
        const int64_t i1 = i0 + 16 < r4 ? i0 + 16 : r4;
        for (int64_t j0 = 0; j0 < c4; j0 += 16) {
            const int64_t j1 = j0 + 16 < c4 ? j0 + 16 : c4;
            for (int64_t i = i0; i < i1; i += 4)
                for (int64_t j = j0; j < j1; j += 4) transpose4x4(src + i * lds + j, lds, dst + j * ldd + i, ldd, add);
        }
    }
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = (i < r4 ? c4 : 0); j < cols; j++) dst[j * ldd + i] = (add ? dst[j * ldd + i] : 0.0f) + src[i * lds + j];
}

// MARK: int8 row quantisation (the bytes of the portable version)

void ced_q8_quantize_rows_neon(const float *x, int64_t ldx, int64_t rows, int64_t cols,
                               uint8_t *y, int64_t ldy, int64_t rows_pad, int64_t cols_pad, float *scales) {
    for (int64_t i = 0; i < rows_pad; i++) {
        uint8_t *yr = y + i * ldy;
        if (i >= rows) {
            memset(yr, 128, (size_t)cols_pad);
            scales[i] = 0.0f;
            continue;
        }
        const float *xr = x + i * ldx;
        // max |x|, and whether every value is finite (x − x is 0 only for finite x).
        float32x4_t m = vdupq_n_f32(0.0f);
        uint32x4_t finite = vdupq_n_u32(~0u);
        int64_t j = 0;
        for (; j + 4 <= cols; j += 4) {
            const float32x4_t v = vld1q_f32(xr + j);
            m = vmaxq_f32(m, vabsq_f32(v));
            finite = vandq_u32(finite, vceqq_f32(vsubq_f32(v, v), vdupq_n_f32(0.0f)));
        }
        float amax = vmaxvq_f32(m);
        int all_finite = vminvq_u32(finite) != 0;
        for (; j < cols; j++) {
            const float v = fabsf(xr[j]);
            if (!(v <= 3.4028234663852886e38f)) all_finite = 0;
            amax = v > amax ? v : amax;
        }
        if (!all_finite) amax = NAN;
        scales[i] = amax / 127.0f;
        const float32x4_t inv = vdupq_n_f32(amax > 0.0f ? 127.0f / amax : 0.0f);
        const int32x4_t lo = vdupq_n_s32(-127), hi = vdupq_n_s32(127), off = vdupq_n_s32(128);
        for (j = 0; j < cols_pad; j += 4) {
            const int64_t left = cols - j;
            const float32x4_t v = left >= 4 ? vld1q_f32(xr + j) : load_partial(xr + j, left > 0 ? left : 0, 0.0f);
            const float32x4_t s = vmulq_f32(v, inv);
            int32x4_t q = vcvtnq_s32_f32(s);   // nearest, ties to even
            q = vbslq_s32(vceqq_f32(s, s), q, lo);   // NaN → −127, as the portable version
            q = vaddq_s32(vminq_s32(vmaxq_s32(q, lo), hi), off);
            uint8_t b[8];
            vst1_u8(b, vmovn_u16(vcombine_u16(vmovn_u32(vreinterpretq_u32_s32(q)), vdup_n_u16(0))));
            const int64_t n = cols_pad - j < 4 ? cols_pad - j : 4;
            for (int64_t t = 0; t < n; t++) yr[j + t] = j + t < cols ? b[t] : 128;
        }
    }
}

#endif
