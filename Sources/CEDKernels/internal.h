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

/// The register epilogue of the 14×32 AVX-512 tiles (fp32, bf16, int8), as inline assembly
/// text for the end of a tile's asm block: accumulators zmm0–27 (row r in zmm 2r, 2r+1).
/// Operands it uses: `%[ep]` → `{const float *bias; float *c; int64_t ldc_bytes; int64_t
/// flags}` (flags: 1 = finish here, 2 = add bias, 4 = add the old C), `%[acc]` (where the
/// accumulators go when flags has no 1, for the generic epilogue), and the registers
/// `%[a0]`, `%[a5]`, `%[l]` (clobbered: they must be "+r" operands). zmm28/29 are clobbered.
#define CED_EPI_BIAS(i0, i1) "vaddps %%zmm28, %%zmm" #i0 ", %%zmm" #i0 "\n\t" "vaddps %%zmm29, %%zmm" #i1 ", %%zmm" #i1 "\n\t"
#define CED_EPI_ADDC(i0, i1) \
    "vaddps (%[a5]), %%zmm" #i0 ", %%zmm" #i0 "\n\t" \
    "vaddps 64(%[a5]), %%zmm" #i1 ", %%zmm" #i1 "\n\t" \
    "add %[l], %[a5]\n\t"
#define CED_EPI_STC(i0, i1) \
    "vmovups %%zmm" #i0 ", (%[a0])\n\t" \
    "vmovups %%zmm" #i1 ", 64(%[a0])\n\t" \
    "add %[l], %[a0]\n\t"
#define CED_EPI_ST(i) "vmovaps %%zmm" #i ", " #i "*64(%[acc])\n\t"
#define CED_REGISTER_EPILOGUE_14x32 \
        "testq $1, 24(%[ep])\n\t" \
        "jz 5f\n\t" \
        "mov 8(%[ep]), %[a0]\n\t" \
        "mov 16(%[ep]), %[l]\n\t" \
        "testq $2, 24(%[ep])\n\t" \
        "jz 3f\n\t" \
        "mov (%[ep]), %[a5]\n\t" \
        "vmovups (%[a5]), %%zmm28\n\t" \
        "vmovups 64(%[a5]), %%zmm29\n\t" \
        CED_EPI_BIAS(0, 1) CED_EPI_BIAS(2, 3) CED_EPI_BIAS(4, 5) CED_EPI_BIAS(6, 7) CED_EPI_BIAS(8, 9) \
        CED_EPI_BIAS(10, 11) CED_EPI_BIAS(12, 13) CED_EPI_BIAS(14, 15) CED_EPI_BIAS(16, 17) CED_EPI_BIAS(18, 19) \
        CED_EPI_BIAS(20, 21) CED_EPI_BIAS(22, 23) CED_EPI_BIAS(24, 25) CED_EPI_BIAS(26, 27) \
        "3:\n\t" \
        "testq $4, 24(%[ep])\n\t" \
        "jz 4f\n\t" \
        "mov %[a0], %[a5]\n\t" \
        CED_EPI_ADDC(0, 1) CED_EPI_ADDC(2, 3) CED_EPI_ADDC(4, 5) CED_EPI_ADDC(6, 7) CED_EPI_ADDC(8, 9) \
        CED_EPI_ADDC(10, 11) CED_EPI_ADDC(12, 13) CED_EPI_ADDC(14, 15) CED_EPI_ADDC(16, 17) CED_EPI_ADDC(18, 19) \
        CED_EPI_ADDC(20, 21) CED_EPI_ADDC(22, 23) CED_EPI_ADDC(24, 25) CED_EPI_ADDC(26, 27) \
        "4:\n\t" \
        CED_EPI_STC(0, 1) CED_EPI_STC(2, 3) CED_EPI_STC(4, 5) CED_EPI_STC(6, 7) CED_EPI_STC(8, 9) \
        CED_EPI_STC(10, 11) CED_EPI_STC(12, 13) CED_EPI_STC(14, 15) CED_EPI_STC(16, 17) CED_EPI_STC(18, 19) \
        CED_EPI_STC(20, 21) CED_EPI_STC(22, 23) CED_EPI_STC(24, 25) CED_EPI_STC(26, 27) \
        "jmp 6f\n" \
        "5:\n\t" \
        CED_EPI_ST(0) CED_EPI_ST(1) CED_EPI_ST(2) CED_EPI_ST(3) CED_EPI_ST(4) CED_EPI_ST(5) CED_EPI_ST(6) \
        CED_EPI_ST(7) CED_EPI_ST(8) CED_EPI_ST(9) CED_EPI_ST(10) CED_EPI_ST(11) CED_EPI_ST(12) CED_EPI_ST(13) \
        CED_EPI_ST(14) CED_EPI_ST(15) CED_EPI_ST(16) CED_EPI_ST(17) CED_EPI_ST(18) CED_EPI_ST(19) CED_EPI_ST(20) \
        CED_EPI_ST(21) CED_EPI_ST(22) CED_EPI_ST(23) CED_EPI_ST(24) CED_EPI_ST(25) CED_EPI_ST(26) CED_EPI_ST(27) \
        "6:\n\t"

#endif
