// The kernel work of one CED-Tiny clip (10 s: 248 tokens, embed 192, 3 heads of 64, MLP 768,
// 12 blocks, a 527-class head) on one kernel family, for instruction counts under qemu
// (scripts/arm64/insn_count_plugin.c): every product through the fp32 tile of the family
// with the GEMM driver's tiling (32-column packed panels, edge tiles), the epilogues the
// model uses (bias, GELU, residual, the attention scale), LayerNorm, softmax. Swift's own
// loops, the front end and model loading are not in it (scripts/arm64/insn_per_clip.sh
// counts the whole `ced tag`).
//
// Usage: tiny_clip_kernels portable|neon|none   (none: set-up only, to subtract)
#include "CEDKernels.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { N = 248, C = 192, H = 3, D = 64, F = 768, DEPTH = 12, CLASSES = 527 };

static void (*tile_fn)(const ced_tile *);
static int MR, NR, VARIANT;

static float *alloc(size_t n) {
    float *p = aligned_alloc(64, (n * 4 + 63) / 64 * 64 + 256);
    for (size_t i = 0; i < n + 64; i++) p[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
    return p;
}

/// C[m×n] (=|+=) act(alpha·A·op(B) + bias): B packed (k×n panels), A rows padded to MR.
static void product(const float *a, int lda, int m, const float *packed, int k, int n, float *c, int ldc,
                    const float *bias, int gelu, int add_c, float alpha) {
    ced_tile t;
    memset(&t, 0, sizeof t);
    t.k = k; t.lda = lda; t.ldb = 32; t.ldc = ldc; t.alpha = alpha; t.gelu = gelu; t.add_c = add_c;
    for (int i = 0; i < m; i += MR) {
        const int origin = i + MR <= m ? i : (m >= MR ? m - MR : i);
        for (int j = 0; j < n; j += NR) {
            t.a = a + origin * lda;
            t.b = packed + (j / 32) * k * 32 + j % 32;
            t.c = c + origin * ldc + j;
            t.bias = bias ? bias + j : NULL;
            t.row_begin = i - origin;
            t.row_end = m - origin < MR ? m - origin : MR;
            t.col_begin = 0;
            t.col_end = n - j < NR ? n - j : NR;
            tile_fn(&t);
        }
    }
}

int main(int argc, char **argv) {
    const char *which = argc > 1 ? argv[1] : "none";
    if (!strcmp(which, "neon")) { tile_fn = ced_tile_neon; MR = CED_NEON_MR; NR = CED_NEON_NR; VARIANT = CED_VARIANT_NEON; }
    else { tile_fn = ced_tile_portable; MR = CED_PORTABLE_MR; NR = CED_PORTABLE_NR; VARIANT = 0; }
    // Weights packed once (load time), activations.
    float *wqkv = alloc(C * 3 * C), *wproj = alloc(C * C), *wfc1 = alloc(C * F), *wfc2 = alloc(F * C), *whead = alloc(C * CLASSES);
    float *pqkv = alloc(C * 3 * C + 32 * C), *pproj = alloc(C * C + 32 * C), *pfc1 = alloc(C * F), *pfc2 = alloc(F * C),
          *phead = alloc(C * (CLASSES + 32));
    ced_pack_panels(wqkv, C, 1, C, 3 * C, pqkv);
    ced_pack_panels(wproj, C, 1, C, C, pproj);
    ced_pack_panels(wfc1, C, 1, C, F, pfc1);
    ced_pack_panels(wfc2, F, 1, F, C, pfc2);
    ced_pack_panels(whead, C, 1, C, CLASSES, phead);
    float *x = alloc(N * C), *h = alloc((N + 8) * C), *qkv = alloc((N + 8) * 3 * C), *ctx = alloc((N + 8) * C),
          *mlp = alloc((N + 8) * F), *bias = alloc(F), *lnw = alloc(C), *lnb = alloc(C);
    float *keys = alloc(D * (N + 32)), *vals = alloc(N * 64), *q = alloc(8 * D), *scores = alloc(8 * N), *out = alloc(8 * CLASSES);
    if (!strcmp(which, "none")) return 0;
    for (int blk = 0; blk < DEPTH; blk++) {
        ced_layernorm_rows(x, h, N, C, lnw, lnb, 1e-6f, VARIANT);
        product(h, C, N, pqkv, C, 3 * C, qkv, 3 * C, bias, 0, 0, 1.0f);
        for (int hd = 0; hd < H; hd++) {
            ced_pack_panels(qkv + C + hd * D, 3 * C, 1, D, N, keys);
            ced_pack_panels(qkv + 2 * C + hd * D, 3 * C, 0, N, D, vals);
            for (int r0 = 0; r0 < N; r0 += MR) {   // strips of query rows, as FusedAttention
                const int rows = N - r0 < MR ? N - r0 : MR;
                memset(q, 0, sizeof(float) * MR * D);
                for (int r = 0; r < rows; r++) memcpy(q + r * D, qkv + (r0 + r) * 3 * C + hd * D, D * sizeof(float));
                product(q, D, MR, keys, D, N, scores, N, NULL, 0, 0, 0.125f);
                ced_softmax_rows(scores, rows, N, VARIANT);
                product(scores, N, rows < MR ? MR : rows, vals, N, D, ctx + r0 * C + hd * D, C, NULL, 0, 0, 1.0f);
            }
        }
        product(ctx, C, N, pproj, C, C, x, C, bias, 0, 1, 1.0f);
        ced_layernorm_rows(x, h, N, C, lnw, lnb, 1e-6f, VARIANT);
        product(h, C, N, pfc1, C, F, mlp, F, bias, 1, 0, 1.0f);
        product(mlp, F, N, pfc2, F, C, x, C, bias, 0, 1, 1.0f);
    }
    ced_layernorm_rows(x, h, N, C, lnw, lnb, 1e-6f, VARIANT);
    product(h, C, MR, phead, C, CLASSES, out, CLASSES, bias, 0, 0, 1.0f);
    printf("%s %g\n", which, out[0]);
    return 0;
}
