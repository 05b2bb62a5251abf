import CEDKernels
import Foundation

// The elementwise and row-wise halves of training, each forward paired with its backward:
// LayerNorm (statistics kept for the backward pass), bias gradients (column sums), GELU,
// softmax, transposes. Reductions over rows go through fixed-size row chunks whose partial
// sums are added in chunk order, so every result is the same whatever the thread count
// and scheduling (a resumed run reproduces an uninterrupted one bit for bit).

enum TrainingKernels {
    /// Rows per reduction chunk (partials are added in chunk order).
    static let chunkRows = 32

    /// Tasks for `rows` rows of `cols` values: one unless there is enough work to split.
    static func taskCount(rows: Int, work: Int) -> Int {
        let threads = min(ComputePool.shared.workerCount + 1, CedCompute.threadLimit)
        if threads <= 1 || work < 1 << 15 { return 1 }
        return max(1, min(rows, 4 * threads))
    }

    static func run<T: ComputeTask>(_ tasks: Int, _ task: T) {
        if tasks <= 1 { task(0); return }
        ComputePool.shared.run(tasks, maxThreads: ComputePool.shared.workerCount + 1, task)
    }

    // MARK: LayerNorm

    /// `y = (x − mean)·rstd·w + b` per row of `cols` values (biased variance, `eps` inside
    /// the root, as `nn.LayerNorm`); `mean`, `rstd` receive each row's statistics.
    static func layerNormForward(_ x: UnsafePointer<Float>, ldx: Int, rows: Int, cols: Int,
                                 weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, eps: Float,
                                 y: UnsafeMutablePointer<Float>, ldy: Int,
                                 mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>) {
        let task = LayerNormForward(x: x, ldx: ldx, rows: rows, cols: cols, weight: weight, bias: bias, eps: eps,
                                    y: y, ldy: ldy, mean: mean, rstd: rstd, tasks: taskCount(rows: rows, work: rows * cols))
        run(task.tasks, task)
    }

    struct LayerNormForward: ComputeTask {
        let x: UnsafePointer<Float>, ldx: Int, rows: Int, cols: Int
        let weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, eps: Float
        let y: UnsafeMutablePointer<Float>, ldy: Int
        let mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>
        let tasks: Int

        func callAsFunction(_ t: Int) {
            let n = cols
            for r in (t * rows / tasks) ..< ((t + 1) * rows / tasks) {
                let xr = x + r * ldx, yr = y + r * ldy
                let m = TrainingKernels.rowSum(xr, n) / Float(n)
                var v0: Float = 0, v1: Float = 0, v2: Float = 0, v3: Float = 0
                var i = 0
                while i + 4 <= n {
                    let a = xr[i] - m, b = xr[i + 1] - m, c = xr[i + 2] - m, d = xr[i + 3] - m
                    v0 += a * a; v1 += b * b; v2 += c * c; v3 += d * d
                    i += 4
                }
                while i < n { let a = xr[i] - m; v0 += a * a; i += 1 }
                let variance = ((v0 + v1) + (v2 + v3)) / Float(n)
                let inv = 1 / (variance + eps).squareRoot()
                mean[r] = m
                rstd[r] = inv
                for i in 0..<n { yr[i] = (xr[i] - m) * inv * weight[i] + bias[i] }
            }
        }
    }

    /// The LayerNorm output again from saved statistics (for a weight gradient that needs
    /// it, instead of keeping it in memory).
    static func layerNormApply(_ x: UnsafePointer<Float>, ldx: Int, rows: Int, cols: Int,
                               mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>,
                               weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
                               y: UnsafeMutablePointer<Float>, ldy: Int) {
        let task = LayerNormApply(x: x, ldx: ldx, rows: rows, cols: cols, mean: mean, rstd: rstd, weight: weight,
                                  bias: bias, y: y, ldy: ldy, tasks: taskCount(rows: rows, work: rows * cols))
        run(task.tasks, task)
    }

    struct LayerNormApply: ComputeTask {
        let x: UnsafePointer<Float>, ldx: Int, rows: Int, cols: Int
        let mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>
        let weight: UnsafePointer<Float>, bias: UnsafePointer<Float>
        let y: UnsafeMutablePointer<Float>, ldy: Int
        let tasks: Int

        func callAsFunction(_ t: Int) {
            for r in (t * rows / tasks) ..< ((t + 1) * rows / tasks) {
                let xr = x + r * ldx, yr = y + r * ldy, m = mean[r], inv = rstd[r]
                for i in 0..<cols { yr[i] = (xr[i] - m) * inv * weight[i] + bias[i] }
            }
        }
    }

    /// LayerNorm backward: with `x̂ = (x − mean)·rstd` and `g = dy ⊙ w`,
    /// `dx = rstd·(g − mean(g) − x̂·mean(g ⊙ x̂))` (added to `dx` with `accumulate`),
    /// `dw += Σ_rows dy ⊙ x̂`, `db += Σ_rows dy`.
    static func layerNormBackward(dy: UnsafePointer<Float>, lddy: Int, x: UnsafePointer<Float>, ldx: Int,
                                  mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                  rows: Int, cols: Int, dx: UnsafeMutablePointer<Float>, lddx: Int, accumulate: Bool,
                                  dweight: UnsafeMutablePointer<Float>, dbias: UnsafeMutablePointer<Float>) {
        let chunks = (rows + chunkRows - 1) / chunkRows
        ScratchPool.shared.withFloats(max(1, chunks * 2 * cols)) { partials in
            let tasks = taskCount(rows: rows, work: rows * cols) > 1 ? chunks : 1
            let task = LayerNormBackward(dy: dy, lddy: lddy, x: x, ldx: ldx, mean: mean, rstd: rstd, weight: weight,
                                         rows: rows, cols: cols, dx: dx, lddx: lddx, accumulate: accumulate,
                                         partials: partials, chunks: chunks, perTask: (chunks + tasks - 1) / tasks)
            run(tasks, task)
            addPartials(partials, chunks: chunks, width: 2 * cols) { j, v in
                if j < cols { dweight[j] += v } else { dbias[j - cols] += v }
            }
        }
    }

    struct LayerNormBackward: ComputeTask {
        let dy: UnsafePointer<Float>, lddy: Int
        let x: UnsafePointer<Float>, ldx: Int
        let mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, weight: UnsafePointer<Float>
        let rows: Int, cols: Int
        let dx: UnsafeMutablePointer<Float>, lddx: Int, accumulate: Bool
        let partials: UnsafeMutablePointer<Float>
        let chunks: Int, perTask: Int

        func callAsFunction(_ t: Int) {
            for chunk in (t * perTask) ..< min(chunks, (t + 1) * perTask) { runChunk(chunk) }
        }

        func runChunk(_ chunk: Int) {
            let n = cols
            let pw = partials + chunk * 2 * n, pb = pw + n
            for j in 0..<n { pw[j] = 0; pb[j] = 0 }
            let r0 = chunk * TrainingKernels.chunkRows, r1 = min(rows, r0 + TrainingKernels.chunkRows)
            for r in r0..<r1 {
                let dyr = dy + r * lddy, xr = x + r * ldx, dxr = dx + r * lddx
                let m = mean[r], inv = rstd[r]
                var s1: Float = 0, s2: Float = 0, s3: Float = 0, s4: Float = 0
                var i = 0
                while i + 2 <= n {
                    let h0 = (xr[i] - m) * inv, h1 = (xr[i + 1] - m) * inv
                    let g0 = dyr[i] * weight[i], g1 = dyr[i + 1] * weight[i + 1]
                    s1 += g0; s2 += g1; s3 += g0 * h0; s4 += g1 * h1
                    pw[i] += dyr[i] * h0; pw[i + 1] += dyr[i + 1] * h1
                    pb[i] += dyr[i]; pb[i + 1] += dyr[i + 1]
                    i += 2
                }
                while i < n {
                    let h0 = (xr[i] - m) * inv, g0 = dyr[i] * weight[i]
                    s1 += g0; s3 += g0 * h0
                    pw[i] += dyr[i] * h0; pb[i] += dyr[i]
                    i += 1
                }
                let meanG = (s1 + s2) / Float(n), meanGX = (s3 + s4) / Float(n)
                if accumulate {
                    for i in 0..<n { dxr[i] += inv * (dyr[i] * weight[i] - meanG - (xr[i] - m) * inv * meanGX) }
                } else {
                    for i in 0..<n { dxr[i] = inv * (dyr[i] * weight[i] - meanG - (xr[i] - m) * inv * meanGX) }
                }
            }
        }
    }

    // MARK: Bias gradients

    /// `db (+)= Σ_rows dy` for `rows` rows of `cols` values (row stride `lddy`).
    static func columnSums(_ dy: UnsafePointer<Float>, lddy: Int, rows: Int, cols: Int,
                           into db: UnsafeMutablePointer<Float>, accumulate: Bool) {
        if !accumulate { db.update(repeating: 0, count: cols) }
        let chunks = (rows + chunkRows - 1) / chunkRows
        guard chunks > 0 else { return }
        ScratchPool.shared.withFloats(chunks * cols) { partials in
            let tasks = taskCount(rows: rows, work: rows * cols) > 1 ? chunks : 1
            let task = ColumnSums(dy: dy, lddy: lddy, rows: rows, cols: cols, partials: partials, chunks: chunks,
                                  perTask: (chunks + tasks - 1) / tasks)
            run(tasks, task)
            addPartials(partials, chunks: chunks, width: cols) { j, v in db[j] += v }
        }
    }

    struct ColumnSums: ComputeTask {
        let dy: UnsafePointer<Float>, lddy: Int, rows: Int, cols: Int
        let partials: UnsafeMutablePointer<Float>, chunks: Int, perTask: Int

        func callAsFunction(_ t: Int) {
            for chunk in (t * perTask) ..< min(chunks, (t + 1) * perTask) {
                let p = partials + chunk * cols
                let r0 = chunk * TrainingKernels.chunkRows, r1 = min(rows, r0 + TrainingKernels.chunkRows)
                p.update(from: dy + r0 * lddy, count: cols)
                for r in (r0 + 1) ..< max(r0 + 1, r1) {
                    let row = dy + r * lddy
                    for j in 0..<cols { p[j] += row[j] }
                }
            }
        }
    }

    /// Sums `chunks` partial rows of `width` values in chunk order and hands each total to `add`.
    static func addPartials(_ partials: UnsafeMutablePointer<Float>, chunks: Int, width: Int, _ add: (Int, Float) -> Void) {
        guard chunks > 0 else { return }
        for c in 1..<max(1, chunks) {
            let p = partials + c * width
            for j in 0..<width { partials[j] += p[j] }
        }
        for j in 0..<width { add(j, partials[j]) }
    }

    // MARK: GELU

    /// Exact GELU of `count` values (the epilogue's approximation, a few float ulps).
    static func gelu(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int) {
        let task = Elementwise(a: x, b: nil, out: y, count: count, op: .gelu, tasks: taskCount(rows: count / 64 + 1, work: 8 * count))
        run(task.tasks, task)
    }

    /// `dx = dy ⊙ GELU'(h)` (`dx` may equal `dy`).
    static func geluBackward(_ h: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, into dx: UnsafeMutablePointer<Float>, count: Int) {
        let task = Elementwise(a: h, b: dy, out: dx, count: count, op: .geluBackward, tasks: taskCount(rows: count / 64 + 1, work: 8 * count))
        run(task.tasks, task)
    }

    /// `y = GELU(h)`, `gp = GELU'(h)` in one pass.
    static func geluAndGrad(_ h: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, gradient gp: UnsafeMutablePointer<Float>,
                            count: Int) {
        let task = Elementwise(a: h, b: nil, out: y, out2: gp, count: count, op: .geluAndGrad, tasks: taskCount(rows: count / 64 + 1, work: 8 * count))
        run(task.tasks, task)
    }

    /// `x ⊙= y` elementwise.
    static func multiply(_ x: UnsafeMutablePointer<Float>, by y: UnsafePointer<Float>, count: Int) {
        let task = Elementwise(a: y, b: nil, out: x, count: count, op: .multiply, tasks: taskCount(rows: count / 64 + 1, work: count))
        run(task.tasks, task)
    }

    struct Elementwise: ComputeTask {
        enum Op { case gelu, geluBackward, geluAndGrad, multiply }
        let a: UnsafePointer<Float>, b: UnsafePointer<Float>?, out: UnsafeMutablePointer<Float>
        var out2: UnsafeMutablePointer<Float>? = nil
        let count: Int
        let op: Op
        let tasks: Int

        func callAsFunction(_ t: Int) {
            // Split on 16-value boundaries.
            let blocks = (count + 15) / 16
            let lo = min(count, t * blocks / tasks * 16), hi = min(count, (t + 1) * blocks / tasks * 16)
            guard lo < hi else { return }
            let variant = GEMMKernel.best.geluVariant
            switch op {
            case .gelu: ced_gelu(a + lo, out + lo, Int64(hi - lo), variant)
            case .geluBackward: ced_gelu_backward(a + lo, b! + lo, out + lo, Int64(hi - lo), variant)
            case .geluAndGrad: ced_gelu_and_grad(a + lo, out + lo, out2! + lo, Int64(hi - lo), variant)
            case .multiply: for i in lo..<hi { out[i] *= a[i] }
            }
        }
    }

    // MARK: Softmax

    /// Softmax backward in place: `d ← p ⊙ (d − Σ_j p_j d_j)` per row (`rows` rows of `cols`).
    static func softmaxBackward(_ p: UnsafePointer<Float>, _ d: UnsafeMutablePointer<Float>, rows: Int, cols: Int) {
        for r in 0..<rows {
            let pr = p + r * cols, dr = d + r * cols
            var s0: Float = 0, s1: Float = 0, s2: Float = 0, s3: Float = 0
            var i = 0
            while i + 4 <= cols {
                s0 += pr[i] * dr[i]; s1 += pr[i + 1] * dr[i + 1]; s2 += pr[i + 2] * dr[i + 2]; s3 += pr[i + 3] * dr[i + 3]
                i += 4
            }
            while i < cols { s0 += pr[i] * dr[i]; i += 1 }
            let s = (s0 + s1) + (s2 + s3)
            for j in 0..<cols { dr[j] = pr[j] * (dr[j] - s) }
        }
    }

    // MARK: Transpose

    /// `dst[j, i] (=|+=) src[i, j]` for a `rows`×`cols` block (row strides `lds`, `ldd`),
    /// split across the cores by 32-row bands when large.
    static func transpose(_ src: UnsafePointer<Float>, rows: Int, cols: Int, lds: Int,
                          into dst: UnsafeMutablePointer<Float>, ldd: Int, add: Bool = false) {
        let bands = (rows + 31) / 32
        let task = Transpose(src: src, rows: rows, cols: cols, lds: lds, dst: dst, ldd: ldd, add: add, bands: bands,
                             tasks: min(bands, taskCount(rows: bands, work: rows * cols)))
        run(task.tasks, task)
    }

    /// The transpose kernel variant for this CPU.
    static var transposeVariant: Int32 { GEMMKernel.best.tile == .portable ? 0 : 1 }

    struct Transpose: ComputeTask {
        let src: UnsafePointer<Float>, rows: Int, cols: Int, lds: Int
        let dst: UnsafeMutablePointer<Float>, ldd: Int, add: Bool
        let bands: Int, tasks: Int

        func callAsFunction(_ t: Int) {
            let b0 = t * bands / tasks, b1 = (t + 1) * bands / tasks
            let i0 = b0 * 32, i1 = min(rows, b1 * 32)
            guard i0 < i1 else { return }
            ced_transpose(src + i0 * lds, Int64(lds), Int64(i1 - i0), Int64(cols), dst + i0, Int64(ldd), add ? 1 : 0,
                          TrainingKernels.transposeVariant)
        }
    }

    // MARK: Helpers

    @inline(__always)
    static func rowSum(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
        var a: Float = 0, b: Float = 0, c: Float = 0, d: Float = 0
        var i = 0
        while i + 4 <= n { a += x[i]; b += x[i + 1]; c += x[i + 2]; d += x[i + 3]; i += 4 }
        while i < n { a += x[i]; i += 1 }
        return (a + b) + (c + d)
    }
}
