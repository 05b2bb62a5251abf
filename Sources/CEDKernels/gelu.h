#ifndef CED_GELU_H
#define CED_GELU_H

// Exact GELU, x·Φ(x) = 0.5·x·(1 + erf(x/√2)), evaluated without libm so that it
// vectorises (glibc erff costs ~35 ns a call, more than the GEMM producing its input).
//
//   |x| <= 1:   Φ(x)  = 0.5 + x·P(x²)
//   |x| >  1:   Φ(-t) = exp(-t²/2)·S(w),  w = 1/(1 + t/2),  t = |x|
//               (Φ(-t) taken as 0 past 12.5, where it is < 4e-36, so it never goes subnormal)
//               Φ(x)  = Φ(-t) for x < 0, 1 - Φ(-t) for x > 0
//   exp(y):     y = n·ln2 + r, exp(r) = 1 + r + r²·E(r), times 2^n
//
// Coefficients: scripts/fit_gelu.py (relative minimax fits against mpmath).

#include <stdint.h>
#include <string.h>

// Coefficient lists (also used to build the AVX-512 constant table).
#define CED_GELU_P_LIST 3.989423e-01f, -6.649038e-02f, 9.97355e-03f, -1.187288e-03f, 1.15319344e-04f, -9.273159e-06f, 5.368517e-07f
#define CED_GELU_S_LIST 3.4663706e-06f, 1.9937515e-01f, 2.0053867e-01f, 1.4372611e-01f, 6.39799e-02f, -5.2034516e-02f, -2.6201358e-01f, 3.144303e-01f, -1.0871232e-01f
#define CED_EXP_E_LIST 5.e-01f, 1.6666578e-01f, 4.1666854e-02f, 8.363145e-03f, 1.3901283e-03f

static const float ced_gelu_p[7] = {CED_GELU_P_LIST};
static const float ced_gelu_s[9] = {CED_GELU_S_LIST};
static const float ced_exp_e[5] = {CED_EXP_E_LIST};

#define CED_GELU_SPLIT 1.0f
#define CED_GELU_TMAX 12.5f
#define CED_LOG2E 1.44269504088896341f
#define CED_LN2_HI 0.693359375f
#define CED_LN2_LO (-2.12194440e-4f)

/// exp(y) for y ≤ 0: y = n·ln2 + r (the reduction in double), exp(r) = 1 + r + r²·E(r),
/// times 2^n; 0 below −87.
static inline float ced_exp_neg_scalar(double y) {
    if (y < -87.0) return 0.0f;
    double n = (double)(int32_t)(y * 1.4426950408889634 - 0.5); // y < 0: round to nearest
    float r = (float)(y - n * 0.6931471805599453);
    float e = ced_exp_e[4];
    for (int i = 3; i >= 0; i--) e = e * r + ced_exp_e[i];
    float ex = 1.0f + r + r * r * e;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, 4);
    return ex * scale;
}

/// Scalar version (portable kernel). Same formula, unfused arithmetic; the exp argument
/// reduction is done in double (exact t², no fma needed).
static inline float ced_gelu_scalar(float x) {
    float t = x < 0 ? -x : x;
    if (!(t <= CED_GELU_TMAX)) {
        // Past 12.5 (or NaN): Φ is 0 or 1 to float precision; x·Φ keeps NaN and ±inf.
        return x < 0 ? x * 0.0f : x;
    }
    if (t <= CED_GELU_SPLIT) {
        float x2 = x * x;
        float p = ced_gelu_p[6];
        for (int i = 5; i >= 0; i--) p = p * x2 + ced_gelu_p[i];
        return x * (0.5f + x * p);
    }
    float w = 1.0f / (1.0f + 0.5f * t);
    float s = ced_gelu_s[8];
    for (int i = 7; i >= 0; i--) s = s * w + ced_gelu_s[i];
    float lower = ced_exp_neg_scalar(-0.5 * (double)t * (double)t) * s;   // Φ(-t); t² exact in double
    return x * (x < 0 ? lower : 1.0f - lower);
}

#endif
