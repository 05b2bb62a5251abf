import CEDKernels

/// Row-wise kernels of the transformer besides the matrix products (LayerNorm, softmax),
/// vectorised in CEDKernels with the same run-time CPU dispatch as the GEMM microkernels.
enum RowKernels {
    /// `y = (x − mean) / sqrt(var + eps) · w + b` over each row of `cols` floats (`y` may
    /// equal `x`); float32 two-pass statistics, as PyTorch's CPU LayerNorm.
    static func layerNorm(_ x: UnsafePointer<Float>, rows: Int, cols: Int, weight: UnsafePointer<Float>,
                          bias: UnsafePointer<Float>, eps: Float, into y: UnsafeMutablePointer<Float>,
                          kernel: GEMMKernel = .best) {
        ced_layernorm_rows(x, y, Int64(rows), Int64(cols), weight, bias, eps, kernel.geluVariant)
    }

    /// `layerNorm` split by rows across the cores when there is enough work (the encoder's
    /// LayerNorms would otherwise leave the other core idle).
    /// `y` has row stride `ldy` (default `cols`).
    static func layerNormParallel(_ x: UnsafePointer<Float>, rows: Int, cols: Int, weight: UnsafePointer<Float>,
                                  bias: UnsafePointer<Float>, eps: Float, into y: UnsafeMutablePointer<Float>,
                                  ldy: Int? = nil) {
        let pool = ComputePool.shared
        let tasks = rows * cols >= 1 << 14 ? min(rows, 2 * (pool.workerCount + 1)) : 1
        let task = LayerNormTask(x: x, y: y, rows: rows, cols: cols, ldy: ldy ?? cols, weight: weight, bias: bias,
                                 eps: eps, tasks: max(tasks, 1))
        if tasks <= 1 {
            task(0)
            return
        }
        pool.run(tasks, maxThreads: pool.workerCount + 1, task)
    }

    struct LayerNormTask: ComputeTask {
        let x: UnsafePointer<Float>
        let y: UnsafeMutablePointer<Float>
        let rows: Int, cols: Int, ldy: Int
        let weight: UnsafePointer<Float>, bias: UnsafePointer<Float>
        let eps: Float
        let tasks: Int

        func callAsFunction(_ t: Int) {
            let lo = t * rows / tasks, hi = (t + 1) * rows / tasks
            guard lo < hi else { return }
            if ldy == cols {
                RowKernels.layerNorm(x + lo * cols, rows: hi - lo, cols: cols, weight: weight, bias: bias, eps: eps,
                                     into: y + lo * cols)
            } else {
                for r in lo..<hi {
                    RowKernels.layerNorm(x + r * cols, rows: 1, cols: cols, weight: weight, bias: bias, eps: eps,
                                         into: y + r * ldy)
                }
            }
        }
    }

    /// Numerically stable softmax of each row of `cols` floats, in place.
    static func softmax(_ p: UnsafeMutablePointer<Float>, rows: Int, cols: Int, kernel: GEMMKernel = .best) {
        ced_softmax_rows(p, Int64(rows), Int64(cols), kernel.geluVariant)
    }
}
