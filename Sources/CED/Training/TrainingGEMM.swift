import CEDKernels
import Foundation

/// The three matrix products of a `Linear` layer in training, on the inference GEMM's
/// microkernels and thread split (`GEMMDriver`), for weights that change every step:
///
/// - forward  `Y (+)= X·Wᵀ + b`
/// - backward `dX (+)= dY·W`
/// - backward `dW (+)= dYᵀ·X`
///
/// W is row-major `[out, in]` as PyTorch stores it. The B operand of each product (Wᵀ, W,
/// or X) is packed into the kernels' 32-column panels per call, split across the cores,
/// into reused scratch memory; dYᵀ is transposed the same way. A is read in place.
enum TrainingGEMM {
    /// `y[rows, out] (=|+=) x[rows, in]·Wᵀ + bias`.
    static func forward(x: UnsafePointer<Float>, ldx: Int, rows: Int, weight: UnsafePointer<Float>, out: Int, in inFeatures: Int,
                        bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>, ldy: Int, accumulate: Bool = false,
                        bf16: BF16Kernel? = nil) {
        // op(B) = Wᵀ: k = in, n = out, stored transposed.
        product(a: x, lda: ldx, m: rows, b: weight, ldb: inFeatures, transB: true, k: inFeatures, n: out,
                c: y, ldc: ldy, beta: accumulate ? 1 : 0, bias: bias, bf16: bf16)
    }

    /// `dx[rows, in] (=|+=) dy[rows, out]·W`.
    static func backwardInput(dy: UnsafePointer<Float>, lddy: Int, rows: Int, weight: UnsafePointer<Float>, out: Int,
                              in inFeatures: Int, dx: UnsafeMutablePointer<Float>, lddx: Int, accumulate: Bool,
                              bf16: BF16Kernel? = nil) {
        // op(B) = W: k = out, n = in, stored as is.
        product(a: dy, lda: lddy, m: rows, b: weight, ldb: inFeatures, transB: false, k: out, n: inFeatures,
                c: dx, ldc: lddx, beta: accumulate ? 1 : 0, bias: nil, bf16: bf16)
    }

    /// `dW[out, in] (=|+=) dy[rows, out]ᵀ·x[rows, in]`. One operand must be transposed
    /// for the kernels (they read A by rows): the narrower one. With `in < out` (qkv, fc1)
    /// that is x, and the product gives dWᵀ, transposed (and added) into dW.
    static func backwardWeight(dy: UnsafePointer<Float>, lddy: Int, x: UnsafePointer<Float>, ldx: Int, rows: Int,
                               out: Int, in inFeatures: Int, dw: UnsafeMutablePointer<Float>, accumulate: Bool,
                               bf16: BF16Kernel? = nil) {
        if rows == 0 {
            if !accumulate { dw.update(repeating: 0, count: out * inFeatures) }
            return
        }
        if inFeatures < out {
            ScratchPool.shared.withFloats(inFeatures * rows + inFeatures * out) { scratch in
                let xT = scratch, dwT = scratch + inFeatures * rows
                TrainingKernels.transpose(x, rows: rows, cols: inFeatures, lds: ldx, into: xT, ldd: rows)
                // A = xᵀ [in, rows]; op(B) = dy: k = rows, n = out.
                product(a: xT, lda: rows, m: inFeatures, b: dy, ldb: lddy, transB: false, k: rows, n: out,
                        c: dwT, ldc: out, beta: 0, bias: nil, bf16: bf16)
                TrainingKernels.transpose(dwT, rows: inFeatures, cols: out, lds: out, into: dw, ldd: inFeatures, add: accumulate)
            }
            return
        }
        ScratchPool.shared.withFloats(out * rows) { dyT in
            TrainingKernels.transpose(dy, rows: rows, cols: out, lds: lddy, into: dyT, ldd: rows)
            // A = dyᵀ [out, rows]; op(B) = x: k = rows, n = in, stored as is.
            product(a: dyT, lda: rows, m: out, b: x, ldb: ldx, transB: false, k: rows, n: inFeatures,
                    c: dw, ldc: inFeatures, beta: accumulate ? 1 : 0, bias: nil, bf16: bf16)
        }
    }

    /// `C[m, n] = A[m, k]·op(B) + bias (+ beta·C)` with op(B) `k×n` (`transB`: B stored `n×k`).
    /// With `bf16`, A and op(B) are rounded to bfloat16 and the products accumulate in
    /// float32 (`beta` must then be 0 or 1).
    static func product(a: UnsafePointer<Float>, lda: Int, m: Int, b: UnsafePointer<Float>, ldb: Int, transB: Bool,
                        k: Int, n: Int, c: UnsafeMutablePointer<Float>, ldc: Int, beta: Float, bias: UnsafePointer<Float>?,
                        bf16: BF16Kernel? = nil) {
        if m == 0 || n == 0 { return }
        if let bf16, k > 0 {
            precondition(beta == 0 || beta == 1, "bf16 products only overwrite or add")
            productBF16(a: a, lda: lda, m: m, b: b, ldb: ldb, transB: transB, k: k, n: n, c: c, ldc: ldc,
                        accumulate: beta == 1, bias: bias, kernel: bf16)
            return
        }
        if k == 0 {
            for i in 0..<m {
                let row = c + i * ldc
                for j in 0..<n { row[j] = (beta == 0 ? 0 : beta * row[j]) + (bias?[j] ?? 0) }
            }
            return
        }
        let w = packedPanelWidth
        let panels = (n + w - 1) / w
        let kernel = GEMMKernel.best
        ScratchPool.shared.withFloats(panels * k * w) { packed in
            let pack = PackPanels(b: b, ldb: ldb, transposed: transB, k: k, n: n, out: packed, panels: panels,
                                  tasks: TrainingKernels.taskCount(rows: panels, work: k * n) > 1 ? min(panels, 8) : 1)
            TrainingKernels.run(pack.tasks, pack)
            let problem = GEMMDriver.Problem(
                m: m, n: n, k: k, a: a, lda: lda, aRows: m,
                panels: UnsafePointer(packed), panelStride: k * w,
                c: c, ldc: ldc, alpha: 1, beta: beta, bias: bias, gelu: false)
            GEMMDriver.withPaddedA(problem, kernel: kernel) { p in
                GEMMDriver.run(p, kc: GEMMDriver.blockK(k), kernel: kernel, threads: nil)
            }
        }
    }

    static func productBF16(a: UnsafePointer<Float>, lda: Int, m: Int, b: UnsafePointer<Float>, ldb: Int, transB: Bool,
                            k: Int, n: Int, c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool,
                            bias: UnsafePointer<Float>?, kernel: BF16Kernel) {
        let w = packedPanelWidth, panels = (n + w - 1) / w
        let kp = (k + bf16KAlignment - 1) / bf16KAlignment * bf16KAlignment
        ScratchPool.shared.withFloats((panels * kp * w + 1) / 2) { raw in
            let packed = UnsafeMutableRawPointer(raw).bindMemory(to: UInt16.self, capacity: panels * kp * w)
            let pack = PackPanelsBF16(b: b, ldb: ldb, transposed: transB, k: k, kp: kp, n: n, out: packed, panels: panels,
                                      tasks: TrainingKernels.taskCount(rows: panels, work: k * n) > 1 ? min(panels, 8) : 1)
            TrainingKernels.run(pack.tasks, pack)
            BF16Driver.linear(m: m, a: a, lda: lda, panels: UnsafePointer(packed), k: k, paddedK: kp, n: n, bias: bias,
                              c: c, ldc: ldc, gelu: false, accumulate: accumulate, threads: nil, kernel: kernel)
        }
    }

    struct PackPanelsBF16: ComputeTask {
        let b: UnsafePointer<Float>, ldb: Int, transposed: Bool, k: Int, kp: Int, n: Int
        let out: UnsafeMutablePointer<UInt16>, panels: Int, tasks: Int

        func callAsFunction(_ t: Int) {
            let w = packedPanelWidth
            let p0 = t * panels / tasks, p1 = (t + 1) * panels / tasks
            guard p0 < p1 else { return }
            let j0 = p0 * w, cols = min(n, p1 * w) - j0
            let src = transposed ? b + j0 * ldb : b + j0
            ced_bf16_pack_panels(src, Int64(ldb), transposed ? 1 : 0, Int64(k), Int64(cols), out + p0 * kp * w, Int64(kp), 1)
        }
    }

    /// Packs panels `[tasks' share]` of op(B) (see `ced_pack_panels`).
    struct PackPanels: ComputeTask {
        let b: UnsafePointer<Float>, ldb: Int, transposed: Bool, k: Int, n: Int
        let out: UnsafeMutablePointer<Float>, panels: Int, tasks: Int

        func callAsFunction(_ t: Int) {
            let w = packedPanelWidth
            let p0 = t * panels / tasks, p1 = (t + 1) * panels / tasks
            guard p0 < p1 else { return }
            let j0 = p0 * w, cols = min(n, p1 * w) - j0
            let src = transposed ? b + j0 * ldb : b + j0
            ced_pack_panels(src, Int64(ldb), transposed ? 1 : 0, Int64(k), Int64(cols), out + p0 * k * w)
        }
    }
}
