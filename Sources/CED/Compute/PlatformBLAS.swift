import CEDKernels

/// The products of `GEMMKernel.blas`: `cblas_sgemm` (Accelerate on Apple platforms, OpenBLAS
/// elsewhere, see CEDKernels' blas.c), then our epilogue (bias, exact GELU, residual) as one
/// pass over C. The BLAS runs single-threaded; large products are split by rows across the
/// compute pool as the tile kernels' are.
enum BLASDriver {
    /// `C (=|+=) act(A·Wᵀ + bias)` for a packed fp32 weight: its panels are laid out again as
    /// the row-major `k×n` Wᵀ (O(k·n), against the product's O(m·n·k)) and handed to BLAS.
    static func linear(m: Int, a: UnsafePointer<Float>, lda: Int, weight: PackedWeight, bias: UnsafePointer<Float>?,
                       c: UnsafeMutablePointer<Float>, ldc: Int, gelu: Bool, accumulate: Bool, threads: Int?) {
        precondition(GEMMKernel.blasLoads, "the blas GEMM kernel needs a BLAS library (OpenBLAS: apt-get install libopenblas0)")
        let n = weight.outFeatures, k = weight.inFeatures
        // A temporary product is needed only when GELU must see it before the old C is added.
        let separate = accumulate && gelu
        ScratchPool.shared.withFloats(k * n + (separate ? m * n : 0)) { scratch in
            ced_unpack_panels(weight.panels!, Int64(k), Int64(n), scratch, Int64(n))
            let task = LinearRows(m: m, n: n, k: k, a: a, lda: lda, b: UnsafePointer(scratch), bias: bias, c: c, ldc: ldc,
                                  temp: separate ? scratch + k * n : nil, gelu: gelu, accumulate: accumulate,
                                  variant: GEMMKernel.tileKernel.geluVariant,
                                  chunks: chunkCount(m: m, flops: 2 * m * n * k, threads: threads))
            run(task.chunks, threads: threads, flops: 2 * m * n * k, task)
        }
    }

    struct LinearRows: ComputeTask {
        let m: Int, n: Int, k: Int
        let a: UnsafePointer<Float>, lda: Int
        let b: UnsafePointer<Float>
        let bias: UnsafePointer<Float>?
        let c: UnsafeMutablePointer<Float>, ldc: Int
        let temp: UnsafeMutablePointer<Float>?
        let gelu: Bool, accumulate: Bool
        let variant: Int32
        let chunks: Int

        func callAsFunction(_ t: Int) {
            let r0 = t * m / chunks, r1 = (t + 1) * m / chunks
            guard r0 < r1 else { return }
            let rows = Int64(r1 - r0), aRows = a + r0 * lda, cRows = c + r0 * ldc
            if let temp {
                // C += GELU(A·W + b): the product goes to scratch first.
                let t0 = temp + r0 * n
                ced_blas_sgemm(0, 0, rows, Int64(n), Int64(k), 1, aRows, Int64(lda), b, Int64(n), 0, t0, Int64(n))
                ced_bias_act_rows(t0, Int64(n), cRows, Int64(ldc), rows, Int64(n), bias, 1, 1, variant)
                return
            }
            ced_blas_sgemm(0, 0, rows, Int64(n), Int64(k), 1, aRows, Int64(lda), b, Int64(n), accumulate ? 1 : 0,
                           cRows, Int64(ldc))
            if bias != nil || gelu {
                ced_bias_act_rows(cRows, Int64(ldc), cRows, Int64(ldc), rows, Int64(n), bias, gelu ? 1 : 0, 0, variant)
            }
        }
    }

    /// `GEMM.sgemmStridedBatched` through BLAS: one call per item (items across the threads),
    /// or one item's rows split across them.
    static func stridedBatched(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                               a: UnsafePointer<Float>, lda: Int, strideA: Int, b: UnsafePointer<Float>, ldb: Int, strideB: Int,
                               beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, strideC: Int, batchCount: Int,
                               threads: Int?) {
        precondition(GEMMKernel.blasLoads, "the blas GEMM kernel needs a BLAS library (OpenBLAS: apt-get install libopenblas0)")
        let flops = 2 * m * n * k * batchCount
        let perItem = batchCount >= GEMMDriver.threadCount(threads, flops: flops) ? 1 : chunkCount(m: m, flops: flops, threads: threads)
        let task = BatchRows(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, strideA: strideA,
                             b: b, ldb: ldb, strideB: strideB, beta: beta, c: c, ldc: ldc, strideC: strideC, perItem: perItem)
        run(batchCount * perItem, threads: threads, flops: flops, task)
    }

    struct BatchRows: ComputeTask {
        let transA: Bool, transB: Bool
        let m: Int, n: Int, k: Int
        let alpha: Float
        let a: UnsafePointer<Float>, lda: Int, strideA: Int
        let b: UnsafePointer<Float>, ldb: Int, strideB: Int
        let beta: Float
        let c: UnsafeMutablePointer<Float>, ldc: Int, strideC: Int
        let perItem: Int

        func callAsFunction(_ t: Int) {
            let h = t / perItem, part = t % perItem
            let r0 = part * m / perItem, r1 = (part + 1) * m / perItem
            guard r0 < r1 else { return }
            // Rows r0..<r1 of op(A): rows of A, or columns when A is read transposed.
            let aStart = a + h * strideA + (transA ? r0 : r0 * lda)
            ced_blas_sgemm(transA ? 1 : 0, transB ? 1 : 0, Int64(r1 - r0), Int64(n), Int64(k), alpha, aStart, Int64(lda),
                           b + h * strideB, Int64(ldb), beta, c + h * strideC + r0 * ldc, Int64(ldc))
        }
    }

    /// Row chunks for one product: one per thread that the product's size earns (at least
    /// 16 rows each).
    static func chunkCount(m: Int, flops: Int, threads: Int?) -> Int {
        max(1, min(GEMMDriver.threadCount(threads, flops: flops), m / 16))
    }

    static func run<T: ComputeTask>(_ count: Int, threads: Int?, flops: Int, _ task: T) {
        let maxThreads = GEMMDriver.threadCount(threads, flops: flops)
        if count <= 1 || maxThreads <= 1 {
            for t in 0..<count { task(t) }
            return
        }
        ComputePool.shared.run(count, maxThreads: maxThreads, task)
    }
}
