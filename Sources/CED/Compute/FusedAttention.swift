import CEDKernels

/// Multi-head self-attention on a fused `[tokens, 3·C]` q|k|v matrix, one strip of query
/// rows at a time: `S = scale·Q Kᵀ` (a strip × all keys, in L1), softmax in place, then
/// `S·V` straight into the context columns of the head. Keys and values are packed once
/// per head; no `[heads, N, N]` score matrix is materialised (unless the caller asks for
/// the attention maps). Two parallel regions per call: packing (one task per sequence
/// and head), then the strips of every sequence and head.
///
/// `.fp32` uses the fp32 tile kernels; `.bf16` (and `.int8`, whose attention products are
/// bf16) with a `BF16Kernel` rounds Q, K, P and V to bfloat16 and accumulates in float32:
/// AMX blocks on strips of 32 query rows, or `vdpbf16ps` tiles on strips of 14. The softmax
/// is float32 in both.
enum FusedAttention {
    struct Shape {
        var sequences: Int
        var tokens: Int
        var heads: Int
        var headDim: Int
        /// Row stride of `qkv` (3·C) and of the context (C) in floats.
        var qkvStride: Int
        var contextStride: Int
        var channels: Int { heads * headDim }
    }

    /// `context[s·tokens + t, h·d ..< (h+1)·d] = softmax(scale · q_h k_hᵀ)[t] · v_h` for every
    /// sequence s, token t and head h; q, k, v of head h are columns `h·d`, `C + h·d`,
    /// `2C + h·d` of `qkv`. With `maps`, the softmax weights are stored there as
    /// `[sequences, heads, tokens, tokens]`.
    static func run(_ shape: Shape, qkv: UnsafePointer<Float>, scale: Float, context: UnsafeMutablePointer<Float>,
                    maps: UnsafeMutablePointer<Float>?, precision: CedPrecision,
                    kernel: GEMMKernel? = nil, bf16Kernel: BF16Kernel? = nil, threads: Int? = nil) {
        if shape.tokens == 0 || shape.sequences == 0 || shape.heads == 0 { return }
        // Attention has no int8 form: int8 models run it as bf16.
        let bf16 = precision == .bf16 || precision == .int8 ? bf16Kernel ?? BF16Kernel.best : nil
        let flops = 4 * shape.sequences * shape.heads * shape.tokens * shape.tokens * shape.headDim
        let maxThreads = GEMMDriver.threadCount(threads, flops: flops)
        if let bf16 {
            precondition(BF16Kernel.available.contains(bf16), "the \(bf16) bf16 kernel needs a CPU feature this machine lacks")
            runBF16(shape, qkv: qkv, scale: scale, context: context, maps: maps, kernel: bf16, threads: maxThreads)
        } else {
            runFP32(shape, qkv: qkv, scale: scale, context: context, maps: maps, kernel: kernel ?? .best, threads: maxThreads)
        }
    }

    // MARK: fp32

    /// Packed keys (`[d][32]` panels over the tokens) and values (`[tokens][32]` panels over
    /// d) of every (sequence, head) item, then the strips.
    struct FP32Job {
        let shape: Shape
        let qkv: UnsafePointer<Float>
        let scale: Float
        let context: UnsafeMutablePointer<Float>
        let maps: UnsafeMutablePointer<Float>?
        let kernel: GEMMKernel
        let packed: UnsafeMutablePointer<Float>
        var keyFloats: Int { (shape.tokens + packedPanelWidth - 1) / packedPanelWidth * shape.headDim * packedPanelWidth }
        var valueFloats: Int { (shape.headDim + packedPanelWidth - 1) / packedPanelWidth * shape.tokens * packedPanelWidth }
        var items: Int { shape.sequences * shape.heads }
        var strips: Int { (shape.tokens + kernel.mr - 1) / kernel.mr }

        func keys(_ item: Int) -> UnsafeMutablePointer<Float> { packed + item * keyFloats }
        func values(_ item: Int) -> UnsafeMutablePointer<Float> { packed + items * keyFloats + item * valueFloats }

        func pack(_ item: Int) {
            let sh = shape, n = sh.tokens, d = sh.headDim, c = sh.channels
            let s = item / sh.heads, h = item % sh.heads
            let base = qkv + s * n * sh.qkvStride
            GEMMDriver.packB(transposed: true, b: base + c + h * d, ldb: sh.qkvStride, k: d, n: n, into: keys(item))
            GEMMDriver.packB(transposed: false, b: base + 2 * c + h * d, ldb: sh.qkvStride, k: n, n: d, into: values(item))
        }

        func strip(_ task: Int) {
            let sh = shape, n = sh.tokens, d = sh.headDim, mr = kernel.mr, w = packedPanelWidth
            let item = task / strips, s = item / sh.heads, h = item % sh.heads
            let row0 = (task % strips) * mr, rows = min(mr, n - row0)
            // Q copy [mr][d] (zero rows past the end), scores [mr][n].
            ScratchPool.shared.withFloats(mr * d + mr * n) { buffer in
                let q = buffer, scores = buffer + mr * d
                let src = qkv + (s * n + row0) * sh.qkvStride + h * d
                for r in 0..<rows { (q + r * d).update(from: src + r * sh.qkvStride, count: d) }
                if rows < mr { (q + rows * d).update(repeating: 0, count: (mr - rows) * d) }
                let sp = GEMMDriver.Problem(
                    m: mr, n: n, k: d, a: q, lda: d, aRows: mr, panels: keys(item), panelStride: d * w,
                    c: scores, ldc: n, alpha: scale, beta: 0, bias: nil, gelu: false)
                GEMMDriver.compute(sp, rows: 0..<mr, cols: 0..<n, kc: GEMMDriver.blockK(d), kernel: kernel)
                RowKernels.softmax(scores, rows: rows, cols: n, kernel: kernel)
                if let maps {
                    (maps + (item * n + row0) * n).update(from: scores, count: rows * n)
                }
                let pv = GEMMDriver.Problem(
                    m: rows, n: d, k: n, a: scores, lda: n, aRows: mr, panels: values(item), panelStride: n * w,
                    c: context + (s * n + row0) * sh.contextStride + h * d, ldc: sh.contextStride,
                    alpha: 1, beta: 0, bias: nil, gelu: false)
                GEMMDriver.compute(pv, rows: 0..<rows, cols: 0..<d, kc: GEMMDriver.blockK(n), kernel: kernel)
            }
        }
    }

    struct PackTask<Job: AttentionJob>: ComputeTask {
        let job: Job
        func callAsFunction(_ i: Int) { job.pack(i) }
    }

    struct StripTask<Job: AttentionJob>: ComputeTask {
        let job: Job
        func callAsFunction(_ i: Int) { job.strip(i) }
    }

    static func runFP32(_ sh: Shape, qkv: UnsafePointer<Float>, scale: Float, context: UnsafeMutablePointer<Float>,
                        maps: UnsafeMutablePointer<Float>?, kernel: GEMMKernel, threads: Int) {
        let n = sh.tokens, d = sh.headDim, w = packedPanelWidth
        let floats = sh.sequences * sh.heads * ((n + w - 1) / w * d * w + (d + w - 1) / w * n * w)
        ScratchPool.shared.withFloats(floats) { packed in
            let job = FP32Job(shape: sh, qkv: qkv, scale: scale, context: context, maps: maps, kernel: kernel, packed: packed)
            ComputePool.shared.run(job.items, maxThreads: threads, PackTask(job: job))
            ComputePool.shared.run(job.items * job.strips, maxThreads: threads, StripTask(job: job))
        }
    }

    // MARK: bf16 (AMX or vdpbf16ps)

    /// bf16 keys and values of every item (k padded to 32: `dp` for keys, `np` for values),
    /// then strips of the kernel's row count (32 for AMX, 14 for `vdpbf16ps`).
    struct BF16Job {
        let shape: Shape
        let qkv: UnsafePointer<Float>
        let scale: Float
        let context: UnsafeMutablePointer<Float>
        let maps: UnsafeMutablePointer<Float>?
        let packed: UnsafeMutablePointer<UInt16>
        let kernel: BF16Kernel
        var mr: Int { kernel.mr }
        var dp: Int { (shape.headDim + bf16KAlignment - 1) / bf16KAlignment * bf16KAlignment }
        var np: Int { (shape.tokens + bf16KAlignment - 1) / bf16KAlignment * bf16KAlignment }
        var keyElems: Int { (shape.tokens + packedPanelWidth - 1) / packedPanelWidth * dp * packedPanelWidth }
        var valueElems: Int { (shape.headDim + packedPanelWidth - 1) / packedPanelWidth * np * packedPanelWidth }
        var items: Int { shape.sequences * shape.heads }
        var strips: Int { (shape.tokens + mr - 1) / mr }

        func keys(_ item: Int) -> UnsafeMutablePointer<UInt16> { packed + item * keyElems }
        func values(_ item: Int) -> UnsafeMutablePointer<UInt16> { packed + items * keyElems + item * valueElems }

        func pack(_ item: Int) {
            let sh = shape, n = sh.tokens, d = sh.headDim, c = sh.channels
            let s = item / sh.heads, h = item % sh.heads
            let base = qkv + s * n * sh.qkvStride
            ced_bf16_pack_panels(base + c + h * d, Int64(sh.qkvStride), 1, Int64(d), Int64(n), keys(item), Int64(dp), 1)
            ced_bf16_pack_panels(base + 2 * c + h * d, Int64(sh.qkvStride), 0, Int64(n), Int64(d), values(item), Int64(np), 1)
        }

        func strip(_ task: Int) {
            let sh = shape, n = sh.tokens, d = sh.headDim, mr = self.mr
            let dp = self.dp, np = self.np
            let item = task / strips, s = item / sh.heads, h = item % sh.heads
            let row0 = (task % strips) * mr, rows = min(mr, n - row0)
            // Q in bf16 [mr][dp], scores fp32 [mr][n], P in bf16 [mr][np], 1/row sums [mr].
            ScratchPool.shared.withFloats(mr * n + (mr * dp + mr * np + 1) / 2 + mr) { buffer in
                let scores = buffer
                let q = UnsafeMutableRawPointer(buffer + mr * n).bindMemory(to: UInt16.self, capacity: mr * (dp + np))
                let p = q + mr * dp
                ced_bf16_pack_rows(qkv + (s * n + row0) * sh.qkvStride + h * d, Int64(sh.qkvStride), Int64(rows), Int64(d),
                                   q, Int64(dp), Int64(mr), Int64(dp), 1)
                BF16Driver.compute(a: q, rowsPad: mr, panels: keys(item), kp: dp, bias: nil, c: scores, ldc: n,
                                   rows: 0..<rows, cols: 0..<n, gelu: false, accumulate: false, kernel: kernel, alpha: scale)
                // Without maps to return, P stays unnormalised (exp(s − max) straight to bf16)
                // and the context rows are divided by the sums afterwards: one pass less.
                let invSum = buffer + mr * n + (mr * dp + mr * np + 1) / 2
                if let maps {
                    RowKernels.softmax(scores, rows: rows, cols: n)
                    (maps + (item * n + row0) * n).update(from: scores, count: rows * n)
                    ced_bf16_pack_rows(scores, Int64(n), Int64(rows), Int64(n), p, Int64(np), Int64(mr), Int64(np), 1)
                } else {
                    ced_softmax_rows_bf16(scores, Int64(rows), Int64(n), Int64(n), p, Int64(np), Int64(mr), Int64(np), invSum)
                }
                let out = context + (s * n + row0) * sh.contextStride + h * d
                BF16Driver.compute(a: p, rowsPad: mr, panels: values(item), kp: np, bias: nil, c: out, ldc: sh.contextStride,
                                   rows: 0..<rows, cols: 0..<d, gelu: false, accumulate: false, kernel: kernel)
                if maps == nil {
                    ced_scale_rows(out, Int64(sh.contextStride), Int64(rows), Int64(d), invSum, 2)
                }
            }
        }
    }

    static func runBF16(_ sh: Shape, qkv: UnsafePointer<Float>, scale: Float, context: UnsafeMutablePointer<Float>,
                        maps: UnsafeMutablePointer<Float>?, kernel: BF16Kernel, threads: Int) {
        let n = sh.tokens, d = sh.headDim, w = packedPanelWidth, a = bf16KAlignment
        let dp = (d + a - 1) / a * a, np = (n + a - 1) / a * a
        let elems = sh.sequences * sh.heads * ((n + w - 1) / w * dp * w + (d + w - 1) / w * np * w)
        ScratchPool.shared.withFloats((elems + 1) / 2) { raw in
            let packed = UnsafeMutableRawPointer(raw).bindMemory(to: UInt16.self, capacity: elems)
            let job = BF16Job(shape: sh, qkv: qkv, scale: scale, context: context, maps: maps, packed: packed, kernel: kernel)
            ComputePool.shared.run(job.items, maxThreads: threads, PackTask(job: job))
            ComputePool.shared.run(job.items * job.strips, maxThreads: threads, StripTask(job: job))
        }
    }
}

/// The two phases of `FusedAttention` (packing per item, then strips).
protocol AttentionJob {
    func pack(_ item: Int)
    func strip(_ task: Int)
}

extension FusedAttention.FP32Job: AttentionJob {}
extension FusedAttention.BF16Job: AttentionJob {}
