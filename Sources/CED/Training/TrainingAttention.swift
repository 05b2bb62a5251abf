import CEDKernels
import Foundation

/// Multi-head softmax attention of training, one (clip, head) item per task across the
/// cores, each item's products on the GEMM microkernels (single-threaded inside the task):
///
/// forward   `P = softmax(scale·Q Kᵀ)` (kept), `P' = dropout(P)`, `ctx = P' V`
/// backward  `dV = P'ᵀ dctx`, `dP' = dctx Vᵀ`, `dP = dropout(dP')`,
///           `dS = P ⊙ (dP − rowsum(P ⊙ dP))`, `dQ = scale·dS K`, `dK = scale·dSᵀ Q`
///
/// q, k, v of head h are columns `h·d`, `E + h·d`, `2E + h·d` of the fused `[rows, 3E]`
/// matrix; `P` is `[B, heads, N, N]`.
enum TrainingAttention {
    static func forward(_ pl: TrainingPlan, qkv: UnsafePointer<Float>, probs: UnsafeMutablePointer<Float>,
                        context: UnsafeMutablePointer<Float>, dropout p: Float, key: UInt64) {
        let task = Task(pl: pl, qkv: qkv, probs: probs, context: context, dContext: nil, dqkv: nil, p: p, key: key, backward: false)
        ComputePool.shared.run(pl.batch * pl.heads, maxThreads: threads(pl), task)
    }

    static func backward(_ pl: TrainingPlan, qkv: UnsafePointer<Float>, probs: UnsafeMutablePointer<Float>,
                         dContext: UnsafePointer<Float>, dqkv: UnsafeMutablePointer<Float>, dropout p: Float, key: UInt64) {
        let task = Task(pl: pl, qkv: qkv, probs: probs, context: nil, dContext: dContext, dqkv: dqkv, p: p, key: key, backward: true)
        ComputePool.shared.run(pl.batch * pl.heads, maxThreads: threads(pl), task)
    }

    /// All cores, unless the problem is small enough for the calling thread alone.
    static func threads(_ pl: TrainingPlan) -> Int {
        let work = pl.tokens * pl.tokens * pl.headDim * pl.batch * pl.heads
        return work >= 1 << 16 ? ComputePool.shared.workerCount + 1 : 1
    }

    struct Task: ComputeTask {
        let pl: TrainingPlan
        let qkv: UnsafePointer<Float>
        let probs: UnsafeMutablePointer<Float>
        let context: UnsafeMutablePointer<Float>?
        let dContext: UnsafePointer<Float>?
        let dqkv: UnsafeMutablePointer<Float>?
        let p: Float
        let key: UInt64
        let backward: Bool

        func callAsFunction(_ item: Int) {
            if backward { itemBackward(item) } else { itemForward(item) }
        }

        var scale: Float { 1 / Float(pl.headDim).squareRoot() }

        /// The item's dropped-out probabilities into `out` (`[N, N]`).
        func dropped(_ P: UnsafePointer<Float>, item: Int, into out: UnsafeMutablePointer<Float>) {
            let n = pl.tokens, s = 1 / (1 - p)
            for i in 0..<n * n { out[i] = P[i] * TrainingNoise.dropoutScale(key, item * n * n + i, p: p, scale: s) }
        }

        func itemForward(_ item: Int) {
            let n = pl.tokens, d = pl.headDim, e = pl.embed
            let b = item / pl.heads, h = item % pl.heads
            let base = qkv + b * n * pl.ld3
            let q = base + h * d, k = base + e + h * d, v = base + 2 * e + h * d
            let P = probs + item * n * n
            // S = scale·Q Kᵀ → P (softmax in place).
            TrainingAttention.product(a: q, lda: pl.ld3, m: n, b: k, ldb: pl.ld3, transB: true, k: d, n: n,
                                      c: P, ldc: n, alpha: scale, beta: 0)
            RowKernels.softmax(P, rows: n, cols: n)
            let ctx = context! + b * n * pl.ldE + h * d
            if p > 0 {
                ScratchPool.shared.withFloats(n * n) { pd in
                    dropped(P, item: item, into: pd)
                    TrainingAttention.product(a: pd, lda: n, m: n, b: v, ldb: pl.ld3, transB: false, k: n, n: d,
                                              c: ctx, ldc: pl.ldE, alpha: 1, beta: 0)
                }
            } else {
                TrainingAttention.product(a: P, lda: n, m: n, b: v, ldb: pl.ld3, transB: false, k: n, n: d,
                                          c: ctx, ldc: pl.ldE, alpha: 1, beta: 0)
            }
        }

        func itemBackward(_ item: Int) {
            let n = pl.tokens, d = pl.headDim, e = pl.embed
            let b = item / pl.heads, h = item % pl.heads
            let base = qkv + b * n * pl.ld3
            let q = base + h * d, k = base + e + h * d, v = base + 2 * e + h * d
            let P = UnsafePointer(probs + item * n * n)
            let dctx = dContext! + b * n * pl.ldE + h * d
            let dbase = dqkv! + b * n * pl.ld3
            ScratchPool.shared.withFloats(3 * n * n) { scratch in
                let pd = scratch, t = scratch + n * n, dP = scratch + 2 * n * n
                let used: UnsafePointer<Float>
                if p > 0 { dropped(P, item: item, into: pd); used = UnsafePointer(pd) } else { used = P }
                // dV = P'ᵀ dctx
                TrainingAttention.transposeSerial(used, n: n, into: t)
                TrainingAttention.product(a: t, lda: n, m: n, b: dctx, ldb: pl.ldE, transB: false, k: n, n: d,
                                          c: dbase + 2 * e + h * d, ldc: pl.ld3, alpha: 1, beta: 0)
                // dP' = dctx Vᵀ, then dropout's mask, then the softmax backward.
                TrainingAttention.product(a: dctx, lda: pl.ldE, m: n, b: v, ldb: pl.ld3, transB: true, k: d, n: n,
                                          c: dP, ldc: n, alpha: 1, beta: 0)
                if p > 0 {
                    let s = 1 / (1 - p)
                    for i in 0..<n * n { dP[i] *= TrainingNoise.dropoutScale(key, item * n * n + i, p: p, scale: s) }
                }
                TrainingKernels.softmaxBackward(P, dP, rows: n, cols: n)
                // dQ = scale·dS K, dK = scale·dSᵀ Q
                TrainingAttention.product(a: dP, lda: n, m: n, b: k, ldb: pl.ld3, transB: false, k: n, n: d,
                                          c: dbase + h * d, ldc: pl.ld3, alpha: scale, beta: 0)
                TrainingAttention.transposeSerial(dP, n: n, into: t)
                TrainingAttention.product(a: t, lda: n, m: n, b: q, ldb: pl.ld3, transB: false, k: n, n: d,
                                          c: dbase + e + h * d, ldc: pl.ld3, alpha: scale, beta: 0)
            }
        }
    }

    /// `C = alpha·A·op(B) + beta·C` on the calling thread only (B packed into scratch).
    static func product(a: UnsafePointer<Float>, lda: Int, m: Int, b: UnsafePointer<Float>, ldb: Int, transB: Bool,
                        k: Int, n: Int, c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float, beta: Float) {
        let w = packedPanelWidth, panels = (n + w - 1) / w
        let kernel = GEMMKernel.best
        ScratchPool.shared.withFloats(panels * k * w) { packed in
            ced_pack_panels(b, Int64(ldb), transB ? 1 : 0, Int64(k), Int64(n), packed)
            let problem = GEMMDriver.Problem(m: m, n: n, k: k, a: a, lda: lda, aRows: m, panels: UnsafePointer(packed),
                                             panelStride: k * w, c: c, ldc: ldc, alpha: alpha, beta: beta, bias: nil, gelu: false)
            GEMMDriver.withPaddedA(problem, kernel: kernel) { p in
                GEMMDriver.compute(p, rows: 0..<m, cols: 0..<n, kc: GEMMDriver.blockK(k), kernel: kernel)
            }
        }
    }

    /// `[n, n]` transpose on the calling thread.
    static func transposeSerial(_ src: UnsafePointer<Float>, n: Int, into dst: UnsafeMutablePointer<Float>) {
        ced_transpose(src, Int64(n), Int64(n), Int64(n), dst, Int64(n), 0, TrainingKernels.transposeVariant)
    }
}
