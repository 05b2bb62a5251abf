// Checks every NEON kernel of Sources/CEDKernels against the portable reference, on AArch64
// (scripts/check_arm64.sh runs it under qemu-aarch64). Random shapes with partial tiles,
// every epilogue (alpha, beta, bias, GELU, residual), and every optional-extension path
// (FEAT_DotProd, FEAT_I8MM, FEAT_BF16) with its detection forced on and off.
//
// Usage: kernel_test EXPECT   where EXPECT is the extensions the CPU must report, as a
// subset of "dotprod,i8mm,bf16" ("none" for none). Prints one line per check and
// "N passed, M failed" at the end; exit 1 on any failure.

#include "CEDKernels.h"
#include "../../Sources/CEDKernels/gelu.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}
static int rnd_int(int lo, int hi) { return lo + (int)(rnd() % (uint32_t)(hi - lo + 1)); }
static float rnd_float(float scale) { return scale * ((float)(rnd() & 0xffffff) / 8388608.0f - 1.0f); }
static void fill(float *x, int64_t n, float scale) { for (int64_t i = 0; i < n; i++) x[i] = rnd_float(scale); }

static void check(int ok, const char *what, double err, double tol) {
    if (ok) passed++;
    else failed++;
    if (!ok || getenv("VERBOSE")) printf("%s %s (max error %.3g, tolerance %.3g)\n", ok ? "ok  " : "FAIL", what, err, tol);
}

static void *xmalloc(size_t n) {
    void *p = aligned_alloc(64, (n + 63) / 64 * 64 + 64);
    if (!p) { perror("malloc"); exit(2); }
    memset(p, 0, (n + 63) / 64 * 64 + 64);
    return p;
}

// The epilogue of the ced_tile contract, in double.
typedef struct { float alpha, beta; int bias, gelu, add_c; } epi;

static double apply_epi(double acc, double old, const float *bias, int64_t j, epi e) {
    double v = e.alpha * acc;
    if (e.beta != 0.0f) v += e.beta * old;
    if (e.bias) v += bias[j];
    if (e.gelu) v = 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
    if (e.add_c) v += old;
    return v;
}

static epi random_epi(void) {
    epi e;
    e.alpha = rnd() % 3 == 0 ? 0.5f : 1.0f;
    e.add_c = rnd() % 3 == 0;
    e.beta = e.add_c ? 0.0f : (float[]){0.0f, 1.0f, 0.7f}[rnd() % 3];
    e.bias = rnd() % 2;
    e.gelu = (int)(rnd() % 3);
    return e;
}

static const char *epi_name(epi e, char *buf) {
    sprintf(buf, "alpha %.1f beta %.1f bias %d gelu %d add_c %d", e.alpha, e.beta, e.bias, e.gelu, e.add_c);
    return buf;
}

// Runs a tile kernel over a whole m×n product: A row-major (rows padded to a multiple of
// mr, readable), B a panel array (`panel_stride` elements of `esize` bytes per 32-column
// panel, `ldb` elements between k steps, `col_elems` elements per column within a k step).
typedef void (*tile_fn)(const ced_tile *);
typedef void (*q8_fn)(const ced_q8_tile *);

static void drive(void *fn, int is_q8, int mr, int nr, int64_t m, int64_t n, int64_t k, const void *a, int64_t lda,
                  size_t esize, const void *panels, int64_t panel_stride, int64_t ldb, int64_t col_elems, float *c,
                  int64_t ldc, const float *bias, epi e, const float *a_scale, const float *b_scale, const int32_t *comp,
                  int32_t zero) {
    for (int64_t i = 0; i < m; i += mr) {
        for (int64_t j = 0; j < n; j += nr) {
            ced_q8_tile q;
            memset(&q, 0, sizeof q);
            ced_tile *t = &q.tile;
            t->a = (const float *)((const char *)a + (size_t)(i * lda) * esize);
            t->b = (const float *)((const char *)panels + (size_t)((j / 32) * panel_stride + (j % 32) * col_elems) * esize);
            t->c = c + i * ldc + j;
            t->bias = e.bias ? bias + j : NULL;
            t->k = k;
            t->lda = lda;
            t->ldb = ldb;
            t->ldc = ldc;
            t->alpha = e.alpha;
            t->beta = e.beta;
            t->row_begin = 0;
            t->row_end = (int32_t)(m - i < mr ? m - i : mr);
            t->col_begin = 0;
            t->col_end = (int32_t)(n - j < nr ? n - j : nr);
            t->gelu = e.gelu;
            t->add_c = e.add_c;
            if (is_q8) {
                q.a_scale = a_scale + i;
                q.b_scale = b_scale + j;
                q.b_comp = comp + j;
                q.a_zero = zero;
                ((q8_fn)fn)(&q);
            } else {
                ((tile_fn)fn)(t);
            }
        }
    }
}

// MARK: fp32 tiles

static void test_fp32_tile(const char *name, tile_fn fn, int mr, int nr, int rounds) {
    double worst = 0;
    int ok = 1;
    char what[256], eb[128];
    for (int r = 0; r < rounds; r++) {
        const int64_t m = rnd_int(1, 23), n = rnd_int(1, 70), k = rnd_int(1, 300);
        const int64_t mpad = (m + mr - 1) / mr * mr, lda = k + rnd_int(0, 3), ldc = n + rnd_int(0, 5);
        const int64_t panels = (n + 31) / 32;
        epi e = random_epi();
        float *a = xmalloc(sizeof(float) * mpad * lda), *b = xmalloc(sizeof(float) * k * n);
        float *packed = xmalloc(sizeof(float) * panels * 32 * k), *bias = xmalloc(sizeof(float) * panels * 32);
        float *c = xmalloc(sizeof(float) * m * ldc), *c0 = xmalloc(sizeof(float) * m * ldc);
        fill(a, mpad * lda, 1.0f);
        fill(b, k * n, 1.0f);
        fill(bias, n, 1.0f);
        fill(c0, m * ldc, 1.0f);
        memcpy(c, c0, sizeof(float) * m * ldc);
        ced_pack_panels(b, n, 0, k, n, packed);
        drive((void *)fn, 0, mr, nr, m, n, k, a, lda, 4, packed, k * 32, 32, 1, c, ldc, bias, e, 0, 0, 0, 128);
        double err = 0, scale = 1;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double acc = 0;
                for (int64_t p = 0; p < k; p++) acc += (double)a[i * lda + p] * b[p * n + j];
                const double want = apply_epi(acc, c0[i * ldc + j], bias, j, e);
                const double d = fabs(want - c[i * ldc + j]);
                scale = fmax(scale, sqrt((double)k));
                err = fmax(err, d);
            }
        // columns of C past n in the row stride must be untouched
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = n; j < ldc; j++) if (c[i * ldc + j] != c0[i * ldc + j]) err = INFINITY;
        const double tol = 4e-6 * scale;
        if (!(err <= tol)) {
            ok = 0;
            printf("  %s m=%lld n=%lld k=%lld %s: error %.3g\n", name, (long long)m, (long long)n, (long long)k, epi_name(e, eb), err);
        }
        worst = fmax(worst, err);
        free(a); free(b); free(packed); free(bias); free(c); free(c0);
    }
    sprintf(what, "%s tile (%d×%d) vs float64 reference, %d random shapes and epilogues", name, mr, nr, rounds);
    check(ok, what, worst, 4e-6 * sqrt(300.0));
}

// MARK: row kernels: NEON variant against the portable one

static void test_rows(void) {
    char what[160];
    for (int r = 0; r < 3; r++) {
        const int64_t rows = rnd_int(1, 9), cols = (int64_t[]){1, 7, 64, 251}[r % 4] + r;
        const int64_t n = rows * cols;
        float *x = xmalloc(4 * n), *y0 = xmalloc(4 * n), *y1 = xmalloc(4 * n), *w = xmalloc(4 * cols), *b = xmalloc(4 * cols);
        float *g = xmalloc(4 * n), *y2 = xmalloc(4 * n), *y3 = xmalloc(4 * n);
        fill(x, n, 12.0f);
        fill(w, cols, 1.0f);
        fill(b, cols, 1.0f);
        fill(g, n, 1.0f);
        x[0] = -15.0f; if (n > 2) { x[1] = 13.0f; x[2] = 0.0f; }
        double e;

        e = 0; ced_gelu(x, y0, n, 0); ced_gelu(x, y1, n, CED_VARIANT_NEON);
        for (int64_t i = 0; i < n; i++) e = fmax(e, fabs(y0[i] - y1[i]) / fmax(1.0, fabs(x[i])));
        sprintf(what, "gelu %lld values", (long long)n); check(e <= 2e-6, what, e, 2e-6);

        e = 0; ced_gelu_backward(x, g, y0, n, 0); ced_gelu_backward(x, g, y1, n, CED_VARIANT_NEON);
        for (int64_t i = 0; i < n; i++) e = fmax(e, fabs(y0[i] - y1[i]));
        sprintf(what, "gelu backward %lld values", (long long)n); check(e <= 2e-6, what, e, 2e-6);

        e = 0; ced_gelu_and_grad(x, y0, y2, n, 0); ced_gelu_and_grad(x, y1, y3, n, CED_VARIANT_NEON);
        for (int64_t i = 0; i < n; i++) e = fmax(e, fmax(fabs(y0[i] - y1[i]) / fmax(1.0, fabs(x[i])), fabs(y2[i] - y3[i])));
        sprintf(what, "gelu and grad %lld values", (long long)n); check(e <= 2e-6, what, e, 2e-6);

        e = 0; memcpy(y0, x, 4 * n); memcpy(y1, x, 4 * n);
        ced_softmax_rows(y0, rows, cols, 0); ced_softmax_rows(y1, rows, cols, CED_VARIANT_NEON);
        for (int64_t i = 0; i < n; i++) e = fmax(e, fabs(y0[i] - y1[i]));
        sprintf(what, "softmax %lld×%lld", (long long)rows, (long long)cols); check(e <= 1e-6, what, e, 1e-6);

        e = 0; ced_layernorm_rows(x, y0, rows, cols, w, b, 1e-6f, 0); ced_layernorm_rows(x, y1, rows, cols, w, b, 1e-6f, CED_VARIANT_NEON);
        for (int64_t i = 0; i < n; i++) e = fmax(e, fabs(y0[i] - y1[i]));
        sprintf(what, "layernorm %lld×%lld", (long long)rows, (long long)cols); check(e <= 1e-5, what, e, 1e-5);

        e = 0; memcpy(y0, x, 4 * n); memcpy(y1, x, 4 * n);
        ced_scale_rows(y0, cols, rows, cols, w, 0); ced_scale_rows(y1, cols, rows, cols, w, CED_VARIANT_NEON);
        for (int64_t i = 0; i < n; i++) e = fmax(e, fabs(y0[i] - y1[i]));
        sprintf(what, "scale rows %lld×%lld", (long long)rows, (long long)cols); check(e == 0, what, e, 0);

        for (int add = 0; add < 2; add++) {
            float *t0 = xmalloc(4 * n), *t1 = xmalloc(4 * n);
            fill(t0, n, 1.0f); memcpy(t1, t0, 4 * n);
            ced_transpose(x, cols, rows, cols, t0, rows, add, 0); ced_transpose(x, cols, rows, cols, t1, rows, add, 1);
            e = memcmp(t0, t1, 4 * n) ? 1 : 0;
            sprintf(what, "transpose %lld×%lld add %d", (long long)rows, (long long)cols, add); check(e == 0, what, e, 0);
            free(t0); free(t1);
        }

        // fp32 → bf16 rows, with NaN, infinity and a subnormal among the values
        const int64_t cp = (cols + 31) / 32 * 32, rp = rows + 2;
        uint16_t *p0 = xmalloc(2 * cp * rp), *p1 = xmalloc(2 * cp * rp);
        memcpy(y0, x, 4 * n);
        y0[0] = NAN; if (n > 3) { y0[1] = INFINITY; y0[2] = 1e-40f; y0[3] = -1e-39f; }
        ced_bf16_pack_rows(y0, cols, rows, cols, p0, cp, rp, cp, 0); ced_bf16_pack_rows(y0, cols, rows, cols, p1, cp, rp, cp, 1);
        e = memcmp(p0, p1, 2 * cp * rp) ? 1 : 0;
        sprintf(what, "bf16 pack rows %lld×%lld (same bits)", (long long)rows, (long long)cols); check(e == 0, what, e, 0);

        // unnormalised bf16 softmax of attention against float64
        float *inv = xmalloc(4 * rp);
        ced_softmax_rows_bf16(x, rows, cols, cols, p1, cp, rp, cp, inv);
        e = 0;
        for (int64_t i = 0; i < rows; i++) {
            double mx = -INFINITY, s = 0;
            for (int64_t j = 0; j < cols; j++) mx = fmax(mx, x[i * cols + j]);
            for (int64_t j = 0; j < cols; j++) {
                double v = exp(x[i * cols + j] - mx);
                s += v;
                uint32_t bits = (uint32_t)p1[i * cp + j] << 16;
                float got;
                memcpy(&got, &bits, 4);
                e = fmax(e, fabs(got - v) / fmax(v, 1e-30) * (v > 1e-30));
            }
            for (int64_t j = cols; j < cp; j++) if (p1[i * cp + j]) e = INFINITY;
            e = fmax(e, fabs(inv[i] * s - 1.0));
        }
        for (int64_t i = rows; i < rp; i++) for (int64_t j = 0; j < cp; j++) if (p1[i * cp + j]) e = INFINITY;
        sprintf(what, "bf16 softmax %lld×%lld (relative)", (long long)rows, (long long)cols); check(e <= 4e-3, what, e, 4e-3);

        // int8 row quantisation: same bytes and scales, a NaN row and an all-zero row included
        uint8_t *q0 = xmalloc(cp * rp), *q1 = xmalloc(cp * rp);
        float *s0 = xmalloc(4 * rp), *s1 = xmalloc(4 * rp);
        memcpy(y0, x, 4 * n);
        if (rows > 1) { y0[cols] = NAN; }
        if (rows > 2) memset(y0 + 2 * cols, 0, 4 * cols);
        ced_q8_quantize_rows(y0, cols, rows, cols, q0, cp, rp, cp, s0, 128, 0);
        ced_q8_quantize_rows(y0, cols, rows, cols, q1, cp, rp, cp, s1, 128, 1);
        e = memcmp(q0, q1, cp * rp) ? 1 : 0;
        for (int64_t i = 0; i < rp; i++) if (!(s0[i] == s1[i] || (isnan(s0[i]) && isnan(s1[i])))) e = 1;
        sprintf(what, "int8 quantize rows %lld×%lld (same bytes)", (long long)rows, (long long)cols); check(e == 0, what, e, 0);

        free(x); free(y0); free(y1); free(w); free(b); free(g); free(y2); free(y3); free(p0); free(p1); free(inv);
        free(q0); free(q1); free(s0); free(s1);
    }
}

// MARK: int8 tiles against the portable int8 tile

static void test_q8(const char *name, q8_fn fn, int mr, int nr, int rounds) {
    double worst = 0;
    int ok = 1;
    char what[200], eb[128];
    for (int r = 0; r < rounds; r++) {
        const int64_t m = rnd_int(1, 23), n = rnd_int(1, 70), k = rnd_int(1, 200);
        const int32_t zero = r % 2 ? 16 : 128;   // GELU inputs are quantised with zero point 16
        const int64_t kp = (k + 31) / 32 * 32, rows_pad = (m + 31) / 32 * 32 + 32, panels = (n + 31) / 32;
        epi e = random_epi();
        e.beta = 0; e.alpha = 1;   // the int8 path's contract: overwrite or add_c
        float *x = xmalloc(4 * m * k), *w = xmalloc(4 * n * k), *bias = xmalloc(4 * panels * 32);
        uint8_t *qa = xmalloc(rows_pad * kp);
        int8_t *qb = xmalloc(panels * 32 * kp);
        float *as = xmalloc(4 * rows_pad), *bs = xmalloc(4 * panels * 32);
        int32_t *comp = xmalloc(4 * panels * 32);
        float *c0 = xmalloc(4 * m * n), *c1 = xmalloc(4 * m * n), *c2 = xmalloc(4 * m * n);
        fill(x, m * k, 3.0f); fill(w, n * k, 0.5f); fill(bias, n, 1.0f); fill(c0, m * n, 1.0f);
        memcpy(c1, c0, 4 * m * n); memcpy(c2, c0, 4 * m * n);
        ced_q8_pack_weight(w, k, n, k, qb, kp, bs, comp, zero);
        ced_q8_quantize_rows(x, k, m, k, qa, kp, rows_pad, kp, as, zero, 0);
        drive((void *)ced_tile_q8_portable, 1, CED_Q8_PORTABLE_MR, CED_Q8_PORTABLE_NR, m, n, kp, qa, kp, 1, qb, kp * 32,
              128, 4, c0, n, bias, e, as, bs, comp, zero);
        drive((void *)fn, 1, mr, nr, m, n, kp, qa, kp, 1, qb, kp * 32, 128, 4, c1, n, bias, e, as, bs, comp, zero);
        double err = 0;
        for (int64_t i = 0; i < m * n; i++) err = fmax(err, fabs(c0[i] - c1[i]) / fmax(1.0, fabs(c0[i])));
        if (!(err <= 1e-5)) {
            ok = 0;
            printf("  %s m=%lld n=%lld k=%lld %s: error %.3g\n", name, (long long)m, (long long)n, (long long)k, epi_name(e, eb), err);
        }
        worst = fmax(worst, err);
        free(x); free(w); free(bias); free(qa); free(qb); free(as); free(bs); free(comp); free(c0); free(c1); free(c2);
    }
    sprintf(what, "%s int8 tile (%d×%d) vs the portable int8 tile, %d random shapes", name, mr, nr, rounds);
    check(ok, what, worst, 1e-5);
}

// MARK: bf16 tiles against float64 products of the bf16-rounded operands

static float bf16_to_float(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void test_bf16(const char *name, tile_fn fn, int mr, int nr, int rounds) {
    double worst = 0;
    int ok = 1;
    char what[200], eb[128];
    for (int r = 0; r < rounds; r++) {
        const int64_t m = rnd_int(1, 23), n = rnd_int(1, 70), k = rnd_int(1, 200);
        const int64_t kp = (k + 31) / 32 * 32, rows_pad = (m + 31) / 32 * 32 + 32, panels = (n + 31) / 32;
        epi e = random_epi();
        float *x = xmalloc(4 * m * k), *w = xmalloc(4 * n * k), *bias = xmalloc(4 * panels * 32);
        uint16_t *pa = xmalloc(2 * rows_pad * kp), *pb = xmalloc(2 * panels * 32 * kp);
        float *c0 = xmalloc(4 * m * n), *c1 = xmalloc(4 * m * n);
        fill(x, m * k, 2.0f); fill(w, n * k, 1.0f); fill(bias, n, 1.0f); fill(c0, m * n, 1.0f);
        memcpy(c1, c0, 4 * m * n);
        ced_bf16_pack_rows(x, k, m, k, pa, kp, rows_pad, kp, 0);
        ced_bf16_pack_panels(w, k, 1, k, n, pb, kp, 0);
        drive((void *)fn, 0, mr, nr, m, n, kp, pa, kp, 2, pb, kp * 32, 64, 2, c1, n, bias, e, 0, 0, 0, 128);
        double err = 0;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double acc = 0, mag = 0;
                for (int64_t p = 0; p < k; p++) {
                    const double t = (double)bf16_to_float(pa[i * kp + p]) * bf16_to_float(pb[(j / 32) * kp * 32 + (p / 2) * 64 + (j % 32) * 2 + (p & 1)]);
                    acc += t;
                    mag += fabs(t);
                }
                const double want = apply_epi(acc, c0[i * n + j], bias, j, e);
                err = fmax(err, fabs(want - c1[i * n + j]) / fmax(1.0, mag));
            }
        if (!(err <= 1e-5)) {
            ok = 0;
            printf("  %s m=%lld n=%lld k=%lld %s: error %.3g\n", name, (long long)m, (long long)n, (long long)k, epi_name(e, eb), err);
        }
        worst = fmax(worst, err);
        free(x); free(w); free(bias); free(pa); free(pb); free(c0); free(c1);
    }
    sprintf(what, "%s bf16 tile (%d×%d) vs float64 on bf16 operands, %d random shapes and epilogues", name, mr, nr, rounds);
    check(ok, what, worst, 1e-5);
}

int main(int argc, char **argv) {
    const char *expect = argc > 1 ? argv[1] : "none";
    const int want_dot = strstr(expect, "dotprod") != NULL, want_i8mm = strstr(expect, "i8mm") != NULL,
              want_bf16 = strstr(expect, "bf16") != NULL;
    int f = ced_cpu_features();
    char what[200];
    sprintf(what, "detected features 0x%x: neon %d dotprod %d i8mm %d bf16 %d (expected %s)", f, !!(f & CED_CPU_NEON),
            !!(f & CED_CPU_DOTPROD), !!(f & CED_CPU_I8MM), !!(f & CED_CPU_BF16), expect);
    check((f & CED_CPU_NEON) && !!(f & CED_CPU_DOTPROD) == want_dot && !!(f & CED_CPU_I8MM) == want_i8mm &&
          !!(f & CED_CPU_BF16) == want_bf16, what, 0, 0);
    printf("%s\n", what);

    // Forced off: masking the extensions hides them from dispatch, NEON stays.
    ced_cpu_mask_features(CED_CPU_DOTPROD | CED_CPU_I8MM | CED_CPU_BF16 | CED_CPU_NEON);
    const int masked = ced_cpu_features();
    sprintf(what, "extensions forced off: features 0x%x", masked);
    check(masked == (f & ~(CED_CPU_DOTPROD | CED_CPU_I8MM | CED_CPU_BF16)), what, 0, 0);
    ced_cpu_mask_features(0);
    check(ced_cpu_features() == f, "extensions restored", 0, 0);

    test_fp32_tile("neon", ced_tile_neon, CED_NEON_MR, CED_NEON_NR, 60);
    test_fp32_tile("portable", ced_tile_portable, CED_PORTABLE_MR, CED_PORTABLE_NR, 10);
    test_rows();
    // The extension kernels run only where the CPU has them (forced on by `-cpu max`);
    // elsewhere calling them would be an illegal instruction.
    if (f & CED_CPU_DOTPROD) test_q8("dotprod (sdot)", ced_tile_q8_dotprod, CED_Q8_DOTPROD_MR, CED_Q8_DOTPROD_NR, 40);
    if (f & CED_CPU_I8MM) test_q8("i8mm (usmmla)", ced_tile_q8_i8mm, CED_Q8_I8MM_MR, CED_Q8_I8MM_NR, 40);
    if (f & CED_CPU_BF16) {
        test_bf16("bfdot", ced_tile_bf16_bfdot, CED_BF16_BFDOT_MR, CED_BF16_BFDOT_NR, 40);
        test_bf16("bfmmla", ced_tile_bf16_bfmmla, CED_BF16_BFMMLA_MR, CED_BF16_BFMMLA_NR, 40);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
