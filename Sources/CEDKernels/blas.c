// The BLAS kernel path: matrix products through `cblas_sgemm`, found at run time with
// dlopen/dlsym so that the package links against nothing new. On Apple platforms it is
// Accelerate's (which reaches the CPU's matrix units); elsewhere OpenBLAS's
// (`libopenblas.so.0`, Debian's libopenblas0), whose cblas_sgemm has the same interface,
// so the layouts, transposes and epilogues of this path are tested on Linux.

#include "CEDKernels.h"
#include "gelu.h"
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

// CBLAS enum values (identical in Accelerate, OpenBLAS and the reference CBLAS).
enum { CED_CBLAS_ROW_MAJOR = 101, CED_CBLAS_NO_TRANS = 111, CED_CBLAS_TRANS = 112 };
typedef void (*ced_sgemm_fn)(int order, int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a,
                             int lda, const float *b, int ldb, float beta, float *c, int ldc);
typedef void (*ced_set_threads_fn)(int);

static ced_sgemm_fn ced_sgemm_ptr;
static const char *ced_blas_loaded = "";
static int ced_blas_state = -1;   // -1 unknown, 0 none, 1 loaded

static void *ced_try_open(const char *path) { return path && *path ? dlopen(path, RTLD_NOW | RTLD_LOCAL) : NULL; }

static int ced_blas_load(void) {
    const char *forced = getenv("CED_BLAS_LIBRARY");
#if defined(__APPLE__)
    const char *candidates[] = {forced, "/System/Library/Frameworks/Accelerate.framework/Accelerate", NULL};
    const char *names[] = {forced, "Accelerate", NULL};
#else
    const char *candidates[] = {forced, "libopenblas.so.0", "libopenblas.so", NULL};
    const char *names[] = {forced, "libopenblas.so.0", "libopenblas.so", NULL};
    // OpenBLAS starts its own thread pool when it loads; the callers split the work across
    // their threads, so it runs single-threaded (unless the user said otherwise).
    setenv("OPENBLAS_NUM_THREADS", "1", 0);
#endif
    for (int i = 0; i < 3; i++) {
        if (!candidates[i] && i > 0) break;
        void *h = ced_try_open(candidates[i]);
        if (!h) continue;
        ced_sgemm_fn f = (ced_sgemm_fn)dlsym(h, "cblas_sgemm");
        if (!f) {
            dlclose(h);
            continue;
        }
        ced_set_threads_fn threads = (ced_set_threads_fn)dlsym(h, "openblas_set_num_threads");
        if (threads && !getenv("CED_BLAS_THREADS")) threads(1);
        ced_sgemm_ptr = f;
        ced_blas_loaded = names[i];
        return 1;
    }
    return 0;
}

int ced_blas_available(void) {
    int s = __atomic_load_n(&ced_blas_state, __ATOMIC_ACQUIRE);
    if (s < 0) {
        // Racing first calls may both load: dlopen of the same library returns the same
        // handle, and both store the same values.
        s = ced_blas_load();
        __atomic_store_n(&ced_blas_state, s, __ATOMIC_RELEASE);
    }
    return s;
}

const char *ced_blas_name(void) { return ced_blas_available() ? ced_blas_loaded : ""; }

void ced_blas_sgemm(int32_t trans_a, int32_t trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {   // BLAS leaves C alone for k = 0 only when beta = 1
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
        return;
    }
    ced_sgemm_ptr(CED_CBLAS_ROW_MAJOR, trans_a ? CED_CBLAS_TRANS : CED_CBLAS_NO_TRANS,
                  trans_b ? CED_CBLAS_TRANS : CED_CBLAS_NO_TRANS, (int)m, (int)n, (int)k, alpha, a, (int)lda, b,
                  (int)ldb, beta, c, (int)ldc);
}

void ced_bias_act_rows(const float *src, int64_t lds, float *c, int64_t ldc, int64_t rows, int64_t cols,
                       const float *bias, int32_t gelu, int32_t add_c, int32_t variant) {
    float row[256];
    for (int64_t i = 0; i < rows; i++) {
        const float *s = src + i * lds;
        float *d = c + i * ldc;
        for (int64_t j0 = 0; j0 < cols; j0 += 256) {
            const int64_t n = cols - j0 < 256 ? cols - j0 : 256;
            for (int64_t j = 0; j < n; j++) row[j] = s[j0 + j] + (bias ? bias[j0 + j] : 0.0f);
            if (gelu) ced_gelu(row, row, n, variant);
            if (add_c) for (int64_t j = 0; j < n; j++) d[j0 + j] += row[j];
            else memcpy(d + j0, row, (size_t)n * sizeof(float));
        }
    }
}

void ced_unpack_panels(const float *panels, int64_t k, int64_t n, float *out, int64_t ldo) {
    const int64_t w = 32;
    for (int64_t p = 0; p * w < n; p++) {
        const float *src = panels + p * k * w;
        const int64_t cols = n - p * w < w ? n - p * w : w;
        for (int64_t q = 0; q < k; q++) memcpy(out + q * ldo + p * w, src + q * w, (size_t)cols * sizeof(float));
    }
}
