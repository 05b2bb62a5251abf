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
    /// AVX-512 BF16 (`vdpbf16ps`, `vcvtne2ps2bf16`) with AVX-512F/BW and OS zmm support.
    CED_CPU_AVX512_BF16 = 1 << 2,
    /// AMX tiles with BF16 (`tdpbf16ps`), OS support for the tile state, and (on Linux)
    /// permission granted to this process to use it; implies CED_CPU_AVX512_BF16.
    CED_CPU_AMX_BF16 = 1 << 3,
    /// AVX-512 VNNI (`vpdpbusd` on zmm) with AVX-512F/BW and OS zmm support.
    CED_CPU_AVX512_VNNI = 1 << 4,
    /// AVX-VNNI (the VEX-encoded `vpdpbusd` on ymm) with AVX2 and OS ymm support.
    CED_CPU_AVX_VNNI = 1 << 5,
    /// AMX tiles with INT8 (`tdpbusd`) usable by this process (detected and reported only:
    /// no kernel uses it yet).
    CED_CPU_AMX_INT8 = 1 << 6,
};
/// Detected once; on Linux the first call also asks the kernel for permission to use the AMX
/// tile state (arch_prctl ARCH_REQ_XCOMP_PERM), which a process must do before its first
/// tile instruction.
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
/// - `gelu`: 1 applies exact GELU `x·Φ(x)` after the bias; 2 a faster GELU with absolute
///   error below 2e-7·max(1, |x|), used by the bf16 precision (AVX-512 epilogue; the other
///   kernels compute the exact one).
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

/// Packs `op(B)` (`k`×`n`) into fp32 panels of 32 columns, `[k][32]` each (panel p at
/// `out + p·k·32`, columns past n zero), the B format of the fp32 tile kernels.
/// `transposed` nonzero: B is stored `n`×`k` (a Linear weight, attention keys), else `k`×`n`;
/// `ldb` is the row stride of the stored matrix.
void ced_pack_panels(const float *b, int64_t ldb, int32_t transposed, int64_t k, int64_t n, float *out);

/// Exact GELU over `n` floats (`out` may equal `in`) with the same approximation the
/// GEMM epilogues use (max error about 2 ulp of the result's scale). `variant`:
/// 2 = AVX-512, 1 = AVX2, 0 = portable; 3 = the fast AVX-512 GELU of the bf16 epilogue
/// (`gelu == 2`); the caller checks the CPU supports it.
void ced_gelu(const float *in, float *out, int64_t n, int32_t variant);

/// Softmax of each of `rows` rows of `cols` floats, in place (max-subtracted; exp accurate
/// to about 1 ulp; arguments below -87.3 give 0). `variant` as for ced_gelu.
void ced_softmax_rows(float *p, int64_t rows, int64_t cols, int32_t variant);

/// Unnormalised softmax into bf16, for bf16 attention: for each of `rows` rows of `s`
/// (`cols` floats, row stride `lds`), `p[j] = bf16(exp(s[j] − max))` (row stride `ldp`,
/// zeros for columns [cols, cols_pad) and rows [rows, rows_pad)) and `inv_sum[i] =
/// 1/Σ exp(s[j] − max)`; the caller scales the product P·V by it (`ced_scale_rows`).
/// `cols_pad` a multiple of 32. Call only when ced_cpu_features() has CED_CPU_AVX512_BF16.
void ced_softmax_rows_bf16(const float *s, int64_t rows, int64_t cols, int64_t lds,
                           uint16_t *p, int64_t ldp, int64_t rows_pad, int64_t cols_pad, float *inv_sum);

/// `c[i][j] *= scale[i]` for `rows` rows of `cols` floats (row stride `ldc`). `variant` as
/// for ced_gelu (2 = AVX-512, else portable).
void ced_scale_rows(float *c, int64_t ldc, int64_t rows, int64_t cols, const float *scale, int32_t variant);

/// LayerNorm of each of `rows` rows of `cols` floats: `(x − mean)/sqrt(var + eps)·w + b`
/// (two passes, float32 sums). `y` may equal `x`. `variant` as for ced_gelu.
void ced_layernorm_rows(const float *x, float *y, int64_t rows, int64_t cols,
                        const float *weight, const float *bias, float eps, int32_t variant);

// MARK: bfloat16 matrix products (fp32 accumulation)
//
// Shared formats: A is bf16 row-major (row stride `lda` elements) with k padded with zeros to
// a multiple of 32; B is packed in 32-column panels, each `[k/2][32][2]` bf16 (the two
// values of a k pair of one column side by side, as `vdpbf16ps` and AMX `tdpbf16ps` read
// them), k padded with zeros to the same multiple of 32, columns past n zero.

/// fp32 → bf16 (round to nearest even, NaN stays NaN, subnormals become signed zeros as in
/// the hardware conversion) of a `rows`×`cols` block `x` (row
/// stride `ldx` floats) into `y` (row stride `ldy` bf16), zero-filling columns
/// [cols, cols_pad) and rows [rows, rows_pad). `cols_pad` must be a multiple of 32 and at
/// most `ldy`. `variant`: 1 = AVX-512 BF16 (`vcvtne2ps2bf16`), 0 = portable C.
void ced_bf16_pack_rows(const float *x, int64_t ldx, int64_t rows, int64_t cols,
                        uint16_t *y, int64_t ldy, int64_t rows_pad, int64_t cols_pad, int32_t variant);

/// Packs `op(B)` (`k`×`n`) into bf16 panels (format above) at `out`, `k_pad` (a multiple of
/// 32, at least k) pair rows per panel: panel p holds columns [32p, 32p + 32) and starts at
/// `out + p·k_pad·32`. `transposed` nonzero: B is stored `n`×`k` (row j = column j of
/// op(B), e.g. a PyTorch Linear weight or attention keys), else `k`×`n`; `ldb` is the row
/// stride of the stored matrix in floats. Rounding as ced_bf16_pack_rows; `variant` too.
void ced_bf16_pack_panels(const float *b, int64_t ldb, int32_t transposed, int64_t k, int64_t n,
                          uint16_t *out, int64_t k_pad, int32_t variant);

/// One register tile with `vdpbf16ps` (AVX-512 BF16), MR = 14, NR = 32: the `ced_tile`
/// contract with `a` = bf16 rows (`lda` in bf16 elements), `b` = a bf16 panel (`ldb` = bf16
/// elements from one k pair to the next, 64 for a packed panel), `k` = number of k values
/// (even). Call only when ced_cpu_features() has CED_CPU_AVX512_BF16.
void ced_tile_bf16_avx512(const ced_tile *tile);
enum { CED_BF16_AVX512_MR = 14, CED_BF16_AVX512_NR = 32 };

/// A rectangle of C with AMX (`tdpbf16ps`, 32×32 blocks of 2×2 tiles), the whole k at once:
/// `C[i, j] (=|+=) act(alpha·Σ_k A[i, k]·B[k, j] + bias[j])` for rows [row_begin, row_end)
/// and columns [col_begin, col_end).
typedef struct ced_amx_gemm {
    /// bf16 A (format above): rows up to row_begin + 32·ceil((row_end − row_begin)/32)
    /// must be readable (the caller pads with zero rows).
    const uint16_t *a;
    /// bf16 panels (format above); `col_begin` must be a multiple of 32.
    const uint16_t *b;
    float *c;
    /// NULL or `bias[j]` for column j.
    const float *bias;
    /// A multiple of 32 (A and B zero-padded).
    int64_t k;
    /// Row stride of A in bf16 elements (a multiple of 32 is fastest).
    int64_t lda;
    /// bf16 elements from one panel to the next (`k·32`).
    int64_t panel_stride;
    int64_t ldc;
    float alpha;
    int32_t row_begin;
    int32_t row_end;
    int32_t col_begin;
    int32_t col_end;
    /// GELU after the bias: 0 none, 1 exact, 2 fast (see `ced_tile.gelu`).
    int32_t gelu;
    /// Nonzero: add the old C after the activation.
    int32_t add_c;
} ced_amx_gemm;
/// Call only when ced_cpu_features() has CED_CPU_AMX_BF16 (configures and releases the
/// tiles itself, so any thread may call it).
void ced_gemm_bf16_amx(const ced_amx_gemm *g);
enum { CED_AMX_MR = 32, CED_AMX_NR = 32 };

// MARK: int8 matrix products (int32 accumulation, CedPrecision.int8)
//
// Weights: symmetric per output channel, `q = clamp(round(w / s), −127, 127)` with
// `s = max|w| / 127` (round half to even), packed in 32-column panels `[k_pad/4][32][4]` int8
// (the four k values of one column side by side, as `vpdpbusd` reads them; zeros past k and
// n), plus per column the scale `s` and `comp = 128·Σ_k q` (zeros past n).
// Activations: symmetric per row, `q = clamp(round(x·(127/m)), −127, 127) + 128` as unsigned
// bytes with `m = max|x|` over the row and the row scale `m / 127` (0 for an all-zero row,
// NaN when the row holds a NaN or infinity); columns past `cols` are 128 (zero).
// A product is `C[i, j] = a_scale[i]·b_scale[j]·(Σ_k qa[i, k]·qb[j, k] − comp[j])`, then the
// `ced_tile` epilogue.

/// Packs a row-major `[n][k]` float weight (row stride `ldw`, a PyTorch Linear weight) into
/// `ceil(n/32)` int8 panels at `panels` (`k_pad` a multiple of 4, at least k; panel p at
/// `panels + p·k_pad·32`), and `scales`, `comp` (`ceil(n/32)·32` entries each;
/// `comp[j] = zero·Σ_k qb[j, k]` for activations quantised with zero point `zero`).
void ced_q8_pack_weight(const float *w, int64_t ldw, int64_t n, int64_t k, int8_t *panels, int64_t k_pad,
                        float *scales, int32_t *comp, int32_t zero);

/// Quantises `rows` rows of `x` (`cols` floats, row stride `ldx`) into `y` (row stride `ldy`
/// bytes) and `scales[i]`: `x ≈ scale·(q − zero)`. `zero` 128: symmetric, scale
/// `max|x|/127`, q in [1, 255]. Another `zero` (0 < zero < 255): the row's negative values
/// get `zero` steps and its positive ones `255 − zero` (scale `max(max x/(255 − zero),
/// −min x/zero)`), for inputs whose range is one-sided, such as GELU outputs. Rows
/// [rows, rows_pad) are written as `zero` with scale 0, columns [cols, cols_pad) as `zero`.
/// `variant`: 1 = AVX-512 (needs CED_CPU_AVX512F and BW), 0 = portable; both give the
/// same bytes.
void ced_q8_quantize_rows(const float *x, int64_t ldx, int64_t rows, int64_t cols,
                          uint8_t *y, int64_t ldy, int64_t rows_pad, int64_t cols_pad, float *scales, int32_t zero,
                          int32_t variant);

/// One int8 register tile: the `ced_tile` contract with `tile.a` = quantised rows (`lda` in
/// bytes; all MR rows readable), `tile.b` = the tile's first column in a panel (`ldb` = bytes
/// from one k quad to the next, 128 for a packed panel), `tile.k` a multiple of 4, and the
/// row scales of the tile's rows, the scales and `comp` of its columns (all MR rows / NR
/// columns readable).
typedef struct ced_q8_tile {
    ced_tile tile;
    const float *a_scale;
    const float *b_scale;
    const int32_t *b_comp;
    /// The zero point the rows of A were quantised with (`comp` = zero·Σq_b).
    int32_t a_zero;
} ced_q8_tile;

/// `vpdpbusd` on zmm, MR = 14, NR = 32. Needs CED_CPU_AVX512_VNNI.
void ced_tile_q8_avx512(const ced_q8_tile *tile);
enum { CED_Q8_AVX512_MR = 14, CED_Q8_AVX512_NR = 32 };
/// `vpdpbusd` on ymm (VEX), MR = 6, NR = 16. Needs CED_CPU_AVX_VNNI. Exact GELU.
void ced_tile_q8_avxvnni(const ced_q8_tile *tile);
enum { CED_Q8_AVXVNNI_MR = 6, CED_Q8_AVXVNNI_NR = 16 };
/// Portable C, MR = 4, NR = 32 (any CPU). Exact GELU.
void ced_tile_q8_portable(const ced_q8_tile *tile);
enum { CED_Q8_PORTABLE_MR = 4, CED_Q8_PORTABLE_NR = 32 };

// MARK: training

/// `dx[i] = dy[i]·GELU'(h[i])` for the exact GELU (`GELU'(x) = Φ(x) + x·φ(x)`, with the Φ
/// approximation of the forward kernels), `n` floats; `dx` may equal `dy`. `variant`:
/// 2 = AVX-512 (the caller checks the CPU), anything else portable C.
void ced_gelu_backward(const float *h, const float *dy, float *dx, int64_t n, int32_t variant);

/// `y[i] = GELU(h[i])` and `gp[i] = GELU'(h[i])` in one pass (the backward pass needs both),
/// same approximation and `variant` as ced_gelu_backward.
void ced_gelu_and_grad(const float *h, float *y, float *gp, int64_t n, int32_t variant);

/// `dst[j·ldd + i] (=|+=) src[i·lds + j]` for a `rows`×`cols` block (`add` nonzero: +=).
/// `variant` ≥ 1: AVX2 8×8 register blocks (the caller checks the CPU), 0 portable C.
void ced_transpose(const float *src, int64_t lds, int64_t rows, int64_t cols, float *dst, int64_t ldd, int32_t add,
                   int32_t variant);

// MARK: - arm64 (NEON) and BLAS kernels (issue 20)
//
// Everything of the arm64 port and of the BLAS path is declared in this section; the
// kernels live in neon_*.c and blas.c. On other CPUs the NEON entry points are not called
// (their CPU bits are never set); if called anyway they fall back to portable C.

/// Bits of `ced_cpu_features()` on AArch64 (the x86 bits are never set there). Advanced
/// SIMD is part of the AArch64 baseline, so CED_CPU_NEON is always set on it. Detected with
/// getauxval(AT_HWCAP/AT_HWCAP2) on Linux, sysctlbyname("hw.optional.arm.FEAT_…") on Apple.
enum {
    CED_CPU_NEON = 1 << 16,
    /// FEAT_DotProd: `sdot`/`udot` (Armv8.2, mandatory from 8.4; Apple M1+, Graviton 2+).
    CED_CPU_DOTPROD = 1 << 17,
    /// FEAT_I8MM: `smmla`, `usmmla`, `usdot` (Graviton 3+, Apple M2+, Ampere One).
    CED_CPU_I8MM = 1 << 18,
    /// FEAT_BF16: `bfdot`, `bfmmla`, `bfcvt` (Graviton 3+, Apple M2+, Ampere One).
    CED_CPU_BF16 = 1 << 19,
};

/// `variant` argument of the row and elementwise kernels (ced_gelu, ced_softmax_rows,
/// ced_layernorm_rows, ced_scale_rows, ced_gelu_backward, ced_gelu_and_grad, ced_transpose)
/// that selects their NEON versions (AArch64 only; elsewhere it means portable C).
enum { CED_VARIANT_NEON = 8 };

/// Overrides what `ced_cpu_features()` reports for the optional AArch64 extensions (tests:
/// run every path of one machine with extensions "absent"). `mask` bits that are set are
/// cleared from the detected features; 0 restores detection.
void ced_cpu_mask_features(int mask);

/// NEON fp32 tile (Armv8.0-A, `fmla` by element), MR = 5, NR = 16: the `ced_tile` contract
/// (every epilogue: alpha, beta, bias, exact GELU for `gelu` 1 and 2, add_c, partial tiles).
/// 20 accumulators + 5 A registers (four k values of each row) + 4 B registers = 29 of
/// the 32 vector registers.
void ced_tile_neon(const ced_tile *tile);
enum { CED_NEON_MR = 5, CED_NEON_NR = 16 };

/// bf16 tile with `bfdot` by element (FEAT_BF16), MR = 5, NR = 16: the contract of
/// ced_tile_bf16_avx512 (bf16 A rows, a bf16 k-pair panel with `ldb` 64, `k` even).
void ced_tile_bf16_bfdot(const ced_tile *tile);
enum { CED_BF16_BFDOT_MR = 5, CED_BF16_BFDOT_NR = 16 };
/// bf16 tile with `bfmmla` (FEAT_BF16, 2×4 by 4×2 blocks), MR = 4, NR = 16; same contract,
/// `k` a multiple of 4.
void ced_tile_bf16_bfmmla(const ced_tile *tile);
enum { CED_BF16_BFMMLA_MR = 4, CED_BF16_BFMMLA_NR = 16 };

/// int8 tile with `sdot` by element (FEAT_DotProd), MR = 5, NR = 16: the ced_q8_tile
/// contract (unsigned +128 A bytes are turned into signed ones in registers, so no `comp`).
void ced_tile_q8_dotprod(const ced_q8_tile *tile);
enum { CED_Q8_DOTPROD_MR = 5, CED_Q8_DOTPROD_NR = 16 };
/// int8 tile with `usmmla` (FEAT_I8MM, 2×8 by 8×2 blocks, unsigned A, signed B), MR = 4,
/// NR = 16; `k` a multiple of 8 (k_pad is a multiple of 32).
void ced_tile_q8_i8mm(const ced_q8_tile *tile);
enum { CED_Q8_I8MM_MR = 4, CED_Q8_I8MM_NR = 16 };

// MARK: BLAS (cblas_sgemm: Accelerate on Apple platforms, OpenBLAS loaded at run time elsewhere)

/// Loads the BLAS library once (Apple: Accelerate; elsewhere `libopenblas.so.0`, then
/// `libopenblas.so`, or the file named by the environment variable CED_BLAS_LIBRARY) with
/// dlopen, and returns 1 when `cblas_sgemm` was found. No link-time dependency. OpenBLAS is
/// asked to run single-threaded: the callers split the work across their own threads.
int ced_blas_available(void);
/// The library that was loaded ("Accelerate", "libopenblas.so.0", …), or "" when none.
const char *ced_blas_name(void);
/// Row-major `C = alpha·op(A)·op(B) + beta·C` through cblas_sgemm (`trans_a`/`trans_b`
/// nonzero: the stored matrix is read transposed). Call only after ced_blas_available().
void ced_blas_sgemm(int32_t trans_a, int32_t trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
/// The `k`×`n` matrix held in 32-column fp32 panels (`ced_pack_panels`' format) as a
/// row-major matrix with row stride `ldo` (the B operand BLAS reads).
void ced_unpack_panels(const float *panels, int64_t k, int64_t n, float *out, int64_t ldo);
/// The epilogue after a BLAS product, for `rows`×`cols` of C (row stride `ldc`):
/// `C = act(src + bias) [+ C]`, where `src` (row stride `lds`) may equal `c` (then
/// `add_c` must be 0). `bias` NULL or `cols` floats; `gelu` nonzero: exact GELU
/// (`variant` as for ced_gelu).
void ced_bias_act_rows(const float *src, int64_t lds, float *c, int64_t ldc, int64_t rows, int64_t cols,
                       const float *bias, int32_t gelu, int32_t add_c, int32_t variant);

#ifdef __cplusplus
}
#endif

#endif
