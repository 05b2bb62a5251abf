#ifndef CED_KERNELS_INTERNAL_H
#define CED_KERNELS_INTERNAL_H

// Shared between the kernel files; not part of the Swift-visible API.

#include "CEDKernels.h"

/// Epilogue of an AVX-512 register tile (tile_avx512.c): rows [row_begin, row_end) of
/// `acc` (row stride 32 floats, 64-byte aligned) → alpha, beta·C, bias, GELU, add C,
/// masked store into `tile->c`. Needs AVX-512F; ends with vzeroupper.
void ced_epilogue_avx512(const float *acc, const ced_tile *tile);

/// Whole 32-column rows without scaling or GELU: `C[r] (=|+=) acc[r] + bias` for r < rows
/// (`bias` may be NULL). Needs AVX-512F; ends with vzeroupper.
void ced_epilogue_rows_avx512(const float *acc, int32_t rows, float *c, int64_t ldc,
                              const float *bias, int32_t add_c);

#endif
