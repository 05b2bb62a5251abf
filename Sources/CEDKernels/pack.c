// Packing of fp32 B operands into the 32-column panels the fp32 microkernels read.
// Plain C: it is O(k·n) against the O(m·n·k) product, and as C it stays reasonably fast
// in -O0 debug builds (Swift loops there are an order of magnitude slower).

#include "CEDKernels.h"
#include <string.h>

void ced_pack_panels(const float *b, int64_t ldb, int32_t transposed, int64_t k, int64_t n, float *out) {
    const int64_t w = 32;
    const int64_t panels = (n + w - 1) / w;
    for (int64_t p = 0; p < panels; p++) {
        float *dst = out + p * k * w;
        const int64_t j0 = p * w;
        const int64_t cols = n - j0 < w ? n - j0 : w;
        if (!transposed) {
            for (int64_t q = 0; q < k; q++) {
                float *row = dst + q * w;
                memcpy(row, b + q * ldb + j0, (size_t)cols * sizeof(float));
                if (cols < w) memset(row + cols, 0, (size_t)(w - cols) * sizeof(float));
            }
            continue;
        }
        if (cols < w) memset(dst, 0, (size_t)(k * w) * sizeof(float));
        // Eight source rows (output columns) at a time: reads stay in eight streams.
        int64_t jj = 0;
        for (; jj + 8 <= cols; jj += 8) {
            const float *s = b + (j0 + jj) * ldb;
            for (int64_t q = 0; q < k; q++) {
                float *d = dst + q * w + jj;
                d[0] = s[q];
                d[1] = s[ldb + q];
                d[2] = s[2 * ldb + q];
                d[3] = s[3 * ldb + q];
                d[4] = s[4 * ldb + q];
                d[5] = s[5 * ldb + q];
                d[6] = s[6 * ldb + q];
                d[7] = s[7 * ldb + q];
            }
        }
        for (; jj < cols; jj++) {
            const float *s = b + (j0 + jj) * ldb;
            for (int64_t q = 0; q < k; q++) dst[q * w + jj] = s[q];
        }
    }
}
