#ifndef CED_KERNELS_H
#define CED_KERNELS_H

// Innermost compute microkernels for CED. Only the hot loops live here; blocking,
// packing, threading and all model logic are in the Swift `CED` target.

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Bit set of CPU features detected at run time (cpuid on x86-64; 0 elsewhere).
enum {
    CED_CPU_AVX2_FMA = 1 << 0,
    CED_CPU_AVX512F = 1 << 1,
};
int ced_cpu_features(void);

/// One register tile of a GEMM: `C = act(alpha·A·B + beta·C + bias) [+ C]` on an MR×NR tile
/// (MR, NR fixed per kernel, see below), storing only rows [row_begin, row_end) and
/// columns [col_begin, col_end) of the tile.
///
/// - `a`: the tile's first row of A, row-major, MR rows of `k` floats, row stride `lda`.
///   All MR rows must be readable (the caller pads or shifts edge tiles).
/// - `b`: `k` rows of NR contiguous floats, row stride `ldb` (a packed panel has
///   `ldb == NR` or a multiple of it). All NR columns must be readable.
/// - `c`: the tile origin (row 0, column 0); only the selected sub-rectangle is touched.
/// - `beta == 0` means C is not read (NaN/garbage in C is overwritten).
/// - `bias`: NULL, or the bias of tile column 0 (only selected columns are read).
/// - `gelu`: nonzero applies exact GELU `x·Φ(x)` after the bias.
/// - `add_c`: nonzero adds the old C after the activation (`C += act(alpha·A·B + bias)`,
///   a residual connection); use with `beta == 0`.
typedef struct ced_tile {
    const float *a;
    const float *b;
    float *c;
    const float *bias;
    int64_t k;
    int64_t lda;
    int64_t ldb;
    int64_t ldc;
    float alpha;
    float beta;
    int32_t row_begin;
    int32_t row_end;
    int32_t col_begin;
    int32_t col_end;
    int32_t gelu;
    int32_t add_c;
} ced_tile;

/// AVX-512F + FMA kernel, MR = 14, NR = 32. Call only when ced_cpu_features() has
/// CED_CPU_AVX512F.
void ced_tile_avx512(const ced_tile *tile);
enum { CED_AVX512_MR = 14, CED_AVX512_NR = 32 };

/// AVX2 + FMA kernel, MR = 6, NR = 16. Call only when ced_cpu_features() has
/// CED_CPU_AVX2_FMA.
void ced_tile_avx2(const ced_tile *tile);
enum { CED_AVX2_MR = 6, CED_AVX2_NR = 16 };

/// Portable C kernel, MR = 4, NR = 16 (any CPU).
void ced_tile_portable(const ced_tile *tile);
enum { CED_PORTABLE_MR = 4, CED_PORTABLE_NR = 16 };

/// Exact GELU over `n` floats (`out` may equal `in`) with the same approximation the
/// GEMM epilogues use (max error about 2 ulp of the result's scale). `variant`:
/// 2 = AVX-512, 1 = AVX2, 0 = portable; the caller checks the CPU supports it.
void ced_gelu(const float *in, float *out, int64_t n, int32_t variant);

/// Softmax of each of `rows` rows of `cols` floats, in place (max-subtracted; exp accurate
/// to about 1 ulp; arguments below -87.3 give 0). `variant` as for ced_gelu.
void ced_softmax_rows(float *p, int64_t rows, int64_t cols, int32_t variant);

/// LayerNorm of each of `rows` rows of `cols` floats: `(x − mean)/sqrt(var + eps)·w + b`
/// (two passes, float32 sums). `y` may equal `x`. `variant` as for ced_gelu.
void ced_layernorm_rows(const float *x, float *y, int64_t rows, int64_t cols,
                        const float *weight, const float *bias, float eps, int32_t variant);

#ifdef __cplusplus
}
#endif

#endif
