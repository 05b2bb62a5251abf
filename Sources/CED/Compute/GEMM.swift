import CEDKernels
import Foundation

// The Swift face of the matrix kernels. Everything here is row-major float32.
//
// Structure (BLIS-style, sized for the CED shapes):
//   - B is packed into 32-column panels, `[k][32]` each (PackedWeight does this once at
//     load time; `sgemm` packs per call, which is O(k·n) against O(m·n·k) of work).
//   - A is read in place, row-major with its `lda` (the microkernel broadcasts from MR
//     row pointers), so the common case copies nothing; only `transA` or `m < MR` makes
//     a row-major copy.
//   - Loops: k blocks (KC) → column blocks (NC, B block kept in L2) → MR-row strips
//     (A strip in L1) → NR-column tiles → C microkernel (CEDKernels).
//   - Edge tiles are shifted back to overlap the previous tile (A rows and packed B
//     columns stay in bounds) and store only their new rows/columns.
//   - The epilogue (α, β·C, bias, exact GELU, accumulate) is fused into the last k block.
//   - Big calls are split by rows (or by columns when there are few rows, or when packed
//     B is larger than L2) across the cores with ComputePool; small ones (e.g. m = 1)
//     stay on the calling thread.
//   - The AVX-512 and AVX2 k loops (and the AVX-512 epilogue with GELU) are inline
//     assembly, so debug builds, where SwiftPM compiles C at -O0, run them at release
//     speed; only the Swift loops around them are slower in debug.
//   - bf16 weights (CedPrecision.bf16) are packed as bf16 k-pair panels; BF16Driver rounds
//     A to bf16 per call and runs AMX 32×32 blocks or vdpbf16ps 14×32 tiles with the same
//     fp32 epilogue and thread split.
//   - int8 weights (CedPrecision.int8) are quantised per output channel into int8 k-quad
//     panels; Int8Driver quantises A per row per call and runs `vpdpbusd` tiles (AVX-512
//     VNNI 14×32, AVX-VNNI 6×16) or portable ones, int32 sums scaled back to float in the
//     tile before the same fp32 epilogue.
//   - Parallel regions hand ComputePool a value type (ComputeTask), so a forward pass
//     allocates nothing.

/// Activation applied in a GEMM epilogue.
public enum Activation: Sendable {
    /// The affine result as is.
    case none
    /// Exact GELU, `0.5·x·(1 + erf(x/√2))` (PyTorch `nn.GELU()` default), evaluated with
    /// a vectorised erf-accurate approximation (a few float ulps; see CEDKernels/gelu.h).
    case gelu
}

/// The weight of a `Linear` layer, `[outFeatures, inFeatures]` as PyTorch stores it,
/// prepared once at load time for repeated `x · Wᵀ` products: float32 panels, or bfloat16
/// panels for `CedPrecision.bf16` on a CPU that has a `BF16Kernel`.
public final class PackedWeight: @unchecked Sendable {
    public let outFeatures: Int
    public let inFeatures: Int
    /// fp32: `ceil(outFeatures / 32)` panels of `[inFeatures][32]` floats (columns past
    /// `outFeatures` are zero), 64-byte aligned. nil for a bf16 weight. Immutable after init.
    let panels: UnsafeMutablePointer<Float>?
    /// bf16: `ceil(outFeatures / 32)` panels of `[paddedK / 2][32][2]` (see CEDKernels.h),
    /// nil for an fp32 weight.
    let bf16Panels: UnsafeMutablePointer<UInt16>?
    /// int8: `ceil(outFeatures / 32)` panels of `[paddedK / 4][32][4]` (see CEDKernels.h),
    /// then `panelCount·32` float scales and `panelCount·32` int32 `128·Σq` per column;
    /// nil for other precisions.
    let int8Panels: UnsafeMutablePointer<Int8>?
    let int8Scales: UnsafeMutablePointer<Float>?
    let int8Comp: UnsafeMutablePointer<Int32>?
    let panelCount: Int
    /// `inFeatures` rounded up to a multiple of 32 (bf16 panels are zero-padded to it).
    let paddedK: Int
    /// int8: the zero point products with this weight quantise their input rows with
    /// (128: symmetric; less for inputs whose range is mostly positive, such as GELU outputs).
    let inputZeroPoint: Int32

    /// The precision products with this weight run in: `.bf16` only when it was asked for
    /// and the CPU has a `BF16Kernel`, `.int8` when asked for, else `.fp32`.
    public let precision: CedPrecision

    /// Packs a row-major `[outFeatures, inFeatures]` weight (PyTorch `Linear.weight`).
    /// `.bf16` rounds the weight to bfloat16 (nearest even) when the CPU supports it and
    /// keeps float32 otherwise; `.int8` quantises it symmetrically per output row (scale
    /// `max|w| / 127`), and products with it quantise their input rows per row, with zero
    /// point `inputZeroPoint` (see `ced_q8_quantize_rows`). `.auto` packs float32.
    public init(weight: [Float], outFeatures: Int, inFeatures: Int, precision: CedPrecision = .fp32,
                inputZeroPoint: Int32 = 128) {
        precondition(inputZeroPoint > 0 && inputZeroPoint < 255, "zero point \(inputZeroPoint) outside 1...254")
        precondition(outFeatures >= 0 && inFeatures >= 0, "negative Linear size \(outFeatures)×\(inFeatures)")
        precondition(weight.count == outFeatures * inFeatures, "weight has \(weight.count) values, expected \(outFeatures)×\(inFeatures)")
        self.outFeatures = outFeatures
        self.inFeatures = inFeatures
        let effective = precision == .auto ? .fp32 : precision.effective
        self.precision = effective
        self.inputZeroPoint = inputZeroPoint
        let panelCount = (outFeatures + packedPanelWidth - 1) / packedPanelWidth
        let paddedK = (inFeatures + bf16KAlignment - 1) / bf16KAlignment * bf16KAlignment
        self.panelCount = panelCount
        self.paddedK = paddedK
        if effective == .int8 {
            let bytes = max(1, panelCount * paddedK * packedPanelWidth)
            let columns = max(1, panelCount * packedPanelWidth)
            let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes + 8 * columns + 64, alignment: 64)
            let q = raw.bindMemory(to: Int8.self, capacity: bytes)
            let tail = raw + (bytes + 63) / 64 * 64
            let scales = tail.bindMemory(to: Float.self, capacity: columns)
            let comp = (tail + 4 * columns).bindMemory(to: Int32.self, capacity: columns)
            weight.withUnsafeBufferPointer { w in
                ced_q8_pack_weight(w.baseAddress ?? UnsafePointer(scales), Int64(inFeatures), Int64(outFeatures),
                                   Int64(inFeatures), q, Int64(paddedK), scales, comp, inputZeroPoint)
            }
            panels = nil
            bf16Panels = nil
            int8Panels = q
            int8Scales = scales
            int8Comp = comp
            return
        }
        if effective == .bf16 {
            let count = max(1, panelCount * paddedK * packedPanelWidth)
            let raw = UnsafeMutableRawPointer.allocate(byteCount: count * 2, alignment: 64)
            let out = raw.bindMemory(to: UInt16.self, capacity: count)
            weight.withUnsafeBufferPointer { w in
                ced_bf16_pack_panels(w.baseAddress ?? UnsafePointer(bitPattern: 64)!, Int64(inFeatures), 1,
                                     Int64(inFeatures), Int64(outFeatures), out, Int64(paddedK), 1)
            }
            panels = nil
            bf16Panels = out
            int8Panels = nil
            int8Scales = nil
            int8Comp = nil
            return
        }
        let count = max(1, panelCount * inFeatures * packedPanelWidth)
        let raw = UnsafeMutableRawPointer.allocate(byteCount: count * 4, alignment: 64)
        let out = raw.bindMemory(to: Float.self, capacity: count)
        weight.withUnsafeBufferPointer { w in
            GEMMDriver.packB(transposed: true, b: w.baseAddress ?? UnsafePointer(out), ldb: inFeatures,
                             k: inFeatures, n: outFeatures, into: out)
        }
        panels = out
        bf16Panels = nil
        int8Panels = nil
        int8Scales = nil
        int8Comp = nil
    }

    deinit {
        panels?.deallocate()
        bf16Panels?.deallocate()
        int8Panels?.deallocate()   // scales and comp live in the same allocation
    }

    /// Row-major `[outFeatures, inFeatures]` copy of the weight as the products use it
    /// (unpacked on demand; bf16 values widened to float, int8 values times their scale).
    var rowMajor: [Float] {
        var out = [Float](repeating: 0, count: outFeatures * inFeatures)
        let w = packedPanelWidth
        for j in 0..<outFeatures {
            if let panels {
                let panel = panels + (j / w) * inFeatures * w + j % w
                for p in 0..<inFeatures { out[j * inFeatures + p] = panel[p * w] }
            } else if let bf16Panels {
                let panel = bf16Panels + (j / w) * paddedK * w + 2 * (j % w)
                for p in 0..<inFeatures {
                    out[j * inFeatures + p] = Float(bitPattern: UInt32(panel[(p / 2) * 2 * w + p % 2]) << 16)
                }
            } else if let int8Panels, let int8Scales {
                let panel = int8Panels + (j / w) * paddedK * w + 4 * (j % w)
                for p in 0..<inFeatures {
                    out[j * inFeatures + p] = Float(panel[(p / 4) * 4 * w + p % 4]) * int8Scales[j]
                }
            }
        }
        return out
    }
}

public enum GEMM {
    /// `C[i, j] = act(Σ_k A[i, k]·W[j, k] + bias[j])` for `i < m`, `j < W.outFeatures`,
    /// `k < W.inFeatures`; with `accumulate` the result is added to `C` instead of stored
    /// (`C += act(…)`, e.g. a residual connection).
    ///
    /// - Parameters:
    ///   - a: `m` rows of `weight.inFeatures` floats, row stride `lda`.
    ///   - bias: `weight.outFeatures` floats, or nil.
    ///   - c: `m` rows of `weight.outFeatures` floats, row stride `ldc`; must not overlap `a`.
    ///   - threads: at most this many threads (nil: all cores when the product is big
    ///     enough to gain from it, else the calling thread; 1: calling thread only).
    ///   - kernel: force a microkernel family (tests, benchmarks); nil picks the best.
    ///   - bf16Kernel: for a bf16 `weight`, force a bf16 kernel (tests, benchmarks); nil
    ///     picks the best. A bf16 weight rounds `a` to bfloat16 too (nearest even) and
    ///     accumulates in float32; bias, GELU and `accumulate` are applied in float32.
    ///   - int8Kernel: for an int8 `weight`, force an int8 kernel; nil picks the best. An
    ///     int8 weight quantises each row of `a` to int8 (symmetric, scale `max|row| / 127`)
    ///     and accumulates in int32; the epilogue is float32.
    public static func linear(
        m: Int, a: UnsafePointer<Float>, lda: Int,
        weight: PackedWeight, bias: UnsafePointer<Float>?,
        c: UnsafeMutablePointer<Float>, ldc: Int,
        activation: Activation = .none, accumulate: Bool = false,
        threads: Int? = nil, kernel: GEMMKernel? = nil, bf16Kernel: BF16Kernel? = nil,
        int8Kernel: Int8Kernel? = nil
    ) {
        let n = weight.outFeatures, k = weight.inFeatures
        precondition(m >= 0 && lda >= k && ldc >= n, "linear: m=\(m), lda=\(lda) (k=\(k)), ldc=\(ldc) (n=\(n))")
        if m == 0 || n == 0 { return }
        if let q = weight.int8Panels {
            let kernel = int8Kernel ?? Int8Kernel.best
            precondition(Int8Kernel.available.contains(kernel), "the \(kernel) int8 kernel needs a CPU feature this machine lacks")
            Int8Driver.linear(m: m, a: a, lda: lda, weight: weight, panels: UnsafePointer(q), bias: bias, c: c, ldc: ldc,
                              gelu: activation == .gelu, accumulate: accumulate, threads: threads, kernel: kernel)
            return
        }
        if let bf16 = weight.bf16Panels {
            let kernel = bf16Kernel ?? BF16Kernel.best!
            precondition(BF16Kernel.available.contains(kernel), "the \(kernel) bf16 kernel needs a CPU feature this machine lacks")
            BF16Driver.linear(m: m, a: a, lda: lda, panels: UnsafePointer(bf16), k: k, paddedK: weight.paddedK, n: n,
                              bias: bias, c: c, ldc: ldc, gelu: activation == .gelu, accumulate: accumulate,
                              threads: threads, kernel: kernel)
            return
        }
        let kernel = kernel ?? .best
        if kernel == .blas {
            BLASDriver.linear(m: m, a: a, lda: lda, weight: weight, bias: bias, c: c, ldc: ldc,
                              gelu: activation == .gelu, accumulate: accumulate, threads: threads)
            return
        }
        var problem = GEMMDriver.Problem(
            m: m, n: n, k: k, a: a, lda: lda, aRows: m,
            panels: UnsafePointer(weight.panels!), panelStride: k * packedPanelWidth,
            c: c, ldc: ldc, alpha: 1, beta: accumulate ? 1 : 0, bias: bias,
            gelu: activation == .gelu)
        var kc = GEMMDriver.blockK(k)
        if accumulate && activation == .gelu {
            // C += GELU(x·Wᵀ + b): GELU must see the whole dot product, so one k block,
            // and the old C is added after it.
            problem.beta = 0
            problem.addAfter = true
            kc = max(k, 1)
        }
        GEMMDriver.withPaddedA(problem, kernel: kernel) { problem in
            GEMMDriver.run(problem, kc: kc, kernel: kernel, threads: threads)
        }
    }

    /// General row-major `C = α·op(A)·op(B) + β·C` with `op(A)` of size `m×k` and
    /// `op(B)` of size `k×n` (`transA`/`transB` read the stored matrix transposed).
    /// With `beta == 0`, C is not read. `threads` and `kernel` as in `linear`.
    public static func sgemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int,
        threads: Int? = nil, kernel: GEMMKernel? = nil
    ) {
        sgemmStridedBatched(
            transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
            a: a, lda: lda, strideA: 0, b: b, ldb: ldb, strideB: 0,
            beta: beta, c: c, ldc: ldc, strideC: 0, batchCount: 1,
            threads: threads, kernel: kernel)
    }

    /// `batchCount` independent products `C_h = α·op(A_h)·op(B_h) + β·C_h` with
    /// `A_h = a + h·strideA`, `B_h = b + h·strideB`, `C_h = c + h·strideC` (strides in
    /// floats), each as in `sgemm`. Made for attention heads: with a fused `[N, 3·C]` qkv
    /// matrix and head size `d`, scores are `transB: true, m: N, n: N, k: d,
    /// a: qkv, lda: 3C, strideA: d, b: qkv + C, ldb: 3C, strideB: d, c: scores,
    /// ldc: N, strideC: N·N`, and `attn·V` writes its heads side by side into `[N, C]`
    /// with `b: qkv + 2C, ldb: 3C, strideB: d, c: out, ldc: C, strideC: d`.
    /// The C blocks must not overlap each other or the inputs.
    public static func sgemmStridedBatched(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int, strideA: Int,
        b: UnsafePointer<Float>, ldb: Int, strideB: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int, strideC: Int,
        batchCount: Int, threads: Int? = nil, kernel: GEMMKernel? = nil
    ) {
        precondition(m >= 0 && n >= 0 && k >= 0 && batchCount >= 0, "sgemm: m=\(m), n=\(n), k=\(k), batchCount=\(batchCount)")
        precondition(lda >= (transA ? m : k) && ldb >= (transB ? k : n) && ldc >= n,
                     "sgemm: lda=\(lda), ldb=\(ldb), ldc=\(ldc) too small for m=\(m), n=\(n), k=\(k)")
        if m == 0 || n == 0 || batchCount == 0 { return }
        let kernel = kernel ?? .best
        if kernel == .blas {
            BLASDriver.stridedBatched(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
                                      a: a, lda: lda, strideA: strideA, b: b, ldb: ldb, strideB: strideB,
                                      beta: beta, c: c, ldc: ldc, strideC: strideC, batchCount: batchCount,
                                      threads: threads)
            return
        }
        let maxThreads = GEMMDriver.threadCount(threads, flops: 2 * m * n * k * batchCount)
        let kc = GEMMDriver.blockK(k)
        let mr = kernel.mr
        let panelCount = (n + packedPanelWidth - 1) / packedPanelWidth
        let bFloats = panelCount * k * packedPanelWidth
        // A is read in place unless it is transposed or shorter than one register tile.
        let copyA = transA || m < mr
        let aRows = max(m, mr), aFloats = copyA ? aRows * max(k, 1) : 0

        ScratchPool.shared.withFloats(batchCount * (bFloats + aFloats)) { scratch in
            func problem(_ h: Int) -> GEMMDriver.Problem {
                let aCopy = scratch + batchCount * bFloats + h * aFloats
                return GEMMDriver.Problem(
                    m: m, n: n, k: k,
                    a: copyA ? UnsafePointer(aCopy) : a + h * strideA, lda: copyA ? max(k, 1) : lda,
                    aRows: copyA ? aRows : m,
                    panels: UnsafePointer(scratch + h * bFloats), panelStride: k * packedPanelWidth,
                    c: c + h * strideC, ldc: ldc, alpha: alpha, beta: beta, bias: nil, gelu: false)
            }
            // Phase 1: pack every B (and copy A where needed), one batch item per task.
            ComputePool.shared.run(batchCount, maxThreads: maxThreads) { h in
                GEMMDriver.packB(transposed: transB, b: b + h * strideB, ldb: ldb, k: k, n: n, into: scratch + h * bFloats)
                if copyA {
                    GEMMDriver.copyA(transposed: transA, a: a + h * strideA, lda: lda, m: m, k: k,
                                     rows: aRows, into: scratch + batchCount * bFloats + h * aFloats)
                }
            }
            // Phase 2: all tiles of all items.
            if maxThreads == 1 {
                for h in 0..<batchCount {
                    GEMMDriver.compute(problem(h), rows: 0..<m, cols: 0..<n, kc: kc, kernel: kernel)
                }
            } else {
                let split = GEMMDriver.Split(problem(0), kernel: kernel, threads: maxThreads)
                ComputePool.shared.run(batchCount * split.count, maxThreads: maxThreads) { chunk in
                    let (rows, cols) = split.rectangle(chunk % split.count)
                    GEMMDriver.compute(problem(chunk / split.count), rows: rows, cols: cols, kc: kc, kernel: kernel)
                }
            }
        }
    }

    /// Exact GELU of `count` floats, `output` may equal `input` (same approximation as the
    /// `linear` epilogue).
    public static func gelu(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>, count: Int,
                            kernel: GEMMKernel? = nil) {
        ced_gelu(input, output, Int64(count), (kernel ?? .best).geluVariant)
    }
}

/// Blocking, packing and threading behind `GEMM`.
enum GEMMDriver {
    /// One product ready for the microkernels: A row-major in place (at least MR
    /// readable rows), B packed in 32-column panels.
    struct Problem {
        var m: Int, n: Int, k: Int
        var a: UnsafePointer<Float>
        var lda: Int
        /// Rows of `a` that may be read: `m`, or MR when A was padded.
        var aRows: Int
        var panels: UnsafePointer<Float>
        /// Floats from one panel to the next.
        var panelStride: Int
        var c: UnsafeMutablePointer<Float>
        var ldc: Int
        var alpha: Float, beta: Float
        var bias: UnsafePointer<Float>?
        var gelu: Bool
        /// `C += act(…)` after the activation (then `beta` is 0 and there is one k block).
        var addAfter = false
    }

    /// Largest k block; a B block of KC×NC floats is sized for half of L2.
    static let kcMax = 512
    static let l2BlockBytes = 1 << 20
    /// Below this many flops (about 50 µs on one core) a call with `threads: nil` stays on
    /// the calling thread: splitting it would cost more in hand-offs than it saves.
    static let parallelFlops = 8_000_000
    /// Least work per chunk handed to a thread (about 10 µs).
    static let minChunkFlops = 1_500_000

    static func blockK(_ k: Int) -> Int {
        if k <= kcMax { return max(k, 1) }
        let blocks = (k + kcMax - 1) / kcMax
        return (k + blocks - 1) / blocks
    }

    /// Threads to use: an explicit request (capped at the cores), else all cores for
    /// calls of at least `parallelFlops`, else 1.
    static func threadCount(_ requested: Int?, flops: Int) -> Int {
        let available = min(ComputePool.shared.workerCount + 1, CedCompute.threadLimit)
        if let requested { return max(1, min(requested, available)) }
        return flops < parallelFlops ? 1 : available
    }

    /// Packs `op(B)` (`k×n`; `transposed`: B is stored `n×k`) into 32-column panels
    /// `[k][32]`, zero-filling columns past `n` (C, see `ced_pack_panels`).
    static func packB(transposed: Bool, b: UnsafePointer<Float>, ldb: Int, k: Int, n: Int,
                      into out: UnsafeMutablePointer<Float>) {
        ced_pack_panels(b, Int64(ldb), transposed ? 1 : 0, Int64(k), Int64(n), out)
    }

    /// Gives the microkernels an A they can read MR rows of at a time: in place when
    /// possible, else a row-major copy (fewer rows than MR).
    static func withPaddedA(_ problem: Problem, kernel: GEMMKernel, _ body: (Problem) -> Void) {
        let mr = kernel.mr, m = problem.m, k = problem.k
        if m >= mr {
            body(problem)
            return
        }
        ScratchPool.shared.withFloats(mr * max(k, 1)) { buffer in
            copyA(transposed: false, a: problem.a, lda: problem.lda, m: m, k: k, rows: mr, into: buffer)
            var padded = problem
            padded.a = UnsafePointer(buffer)
            padded.lda = max(k, 1)
            padded.aRows = mr
            body(padded)
        }
    }

    /// Row-major copy of `op(A)` (`m×k`; `transposed`: A is stored `k×m`) with row
    /// stride `k`, zero rows appended up to `rows`.
    static func copyA(transposed: Bool, a: UnsafePointer<Float>, lda: Int, m: Int, k: Int, rows: Int,
                      into buffer: UnsafeMutablePointer<Float>) {
        if transposed {
            for i in 0..<m {
                var s = a + i
                let d = buffer + i * k
                for p in 0..<k {
                    d[p] = s.pointee
                    s += lda
                }
            }
        } else {
            for i in 0..<m { (buffer + i * k).update(from: a + i * lda, count: k) }
        }
        if rows > m { (buffer + m * k).update(repeating: 0, count: (rows - m) * k) }
    }

    /// Row stride (floats) for an activation matrix of `cols` columns that a later product
    /// reads as A. The microkernels broadcast from MR rows of A at once; rows a multiple of
    /// 1 KB apart (256, 768, 1024, 3072 columns: CED-Mini/Base activations, every fc2 input)
    /// fall onto 1–4 of the 64 sets of a 48 KB L1 and evict each other every few k steps.
    /// Such matrices get one or two spare cache lines per row, making the stride an odd
    /// number of lines. (Measured on CED-Base shapes, interleaved in one process: the
    /// k = 3072 product 8–17 % faster, the k = 768 ones 3–6 %.)
    static func activationStride(_ cols: Int) -> Int {
        guard cols > 0, cols % 16 == 0 else { return cols }
        var a = cols / 16, b = 64
        while b != 0 { (a, b) = (b, a % b) }   // gcd(lines, 64)
        return 64 / a < maxMR ? (cols / 16 | 1) * 16 : cols
    }

    /// The most rows a microkernel broadcasts from at once.
    static let maxMR = GEMMKernel.allCases.map(\.mr).max()!

    /// Runs a prepared problem, split across up to `threads` threads (nil: all cores).
    static func run(_ p: Problem, kc: Int, kernel: GEMMKernel, threads: Int?) {
        let maxThreads = threadCount(threads, flops: 2 * p.m * p.n * p.k)
        if maxThreads == 1 {
            compute(p, rows: 0..<p.m, cols: 0..<p.n, kc: kc, kernel: kernel)
            return
        }
        let split = Split(p, kernel: kernel, threads: maxThreads)
        ComputePool.shared.run(split.count, maxThreads: maxThreads, Chunks(p: p, split: split, kc: kc, kernel: kernel))
    }

    /// The chunks of a split product, as a `ComputeTask`.
    struct Chunks: ComputeTask {
        let p: Problem
        let split: Split
        let kc: Int
        let kernel: GEMMKernel

        func callAsFunction(_ chunk: Int) {
            let (rows, cols) = split.rectangle(chunk)
            GEMMDriver.compute(p, rows: rows, cols: cols, kc: kc, kernel: kernel)
        }
    }

    /// Cuts C into rectangles that threads claim one by one: row strips when there are
    /// enough of them, else 32-column panels; column panels too when packed B does not fit
    /// the L2 block (each thread then reads its share of B from memory once). Chunks are
    /// as small as possible (a thread slowed down by other load costs at most one chunk of
    /// imbalance) but carry at least `minChunkFlops` of work so claiming stays cheap; with
    /// a large B, chunks group about 8 strips or panels per thread and round.
    struct Split {
        let m: Int, n: Int, mr: Int
        let byRows: Bool
        let count: Int
        let units: Int

        init(_ p: Problem, kernel: GEMMKernel, threads: Int) {
            self.init(m: p.m, n: p.n, k: p.k, mr: kernel.mr, threads: threads,
                      packedBBytes: p.k * ((p.n + packedPanelWidth - 1) / packedPanelWidth) * packedPanelWidth * 4,
                      minChunkFlops: GEMMDriver.minChunkFlops)
        }

        /// `mr`: rows of one row unit; `packedBBytes`: size of the whole packed B.
        init(m: Int, n: Int, k: Int, mr: Int, threads: Int, packedBBytes: Int, minChunkFlops: Int) {
            self.m = m
            self.n = n
            self.mr = mr
            let rowTiles = (m + mr - 1) / mr
            let panels = (n + packedPanelWidth - 1) / packedPanelWidth
            let bigB = packedBBytes > GEMMDriver.l2BlockBytes
            // A B larger than the L2 block is split by column panels, so that each thread
            // streams only its part of B from memory once and reuses it for every row
            // (splitting rows makes every thread stream all of B).
            if bigB && panels >= 4 * threads {
                byRows = false
            } else {
                byRows = rowTiles >= 4 * threads || rowTiles >= panels
            }
            units = byRows ? rowTiles : panels
            var chunks = units
            if bigB {
                // B does not stay in L2: group units so each B block read from memory
                // serves many strips (rows), or is read once for all rows (columns).
                let per = byRows ? rowTiles : panels
                chunks = threads * ((per + 8 * threads - 1) / (8 * threads))
            }
            let unitFlops = 2 * k * (byRows ? mr * n : m * packedPanelWidth)
            let byWork = units * unitFlops / minChunkFlops
            let grouped = max(1, min(chunks, units, max(threads, byWork)))
            // When chunks are grouped, keep their number a multiple of the thread count
            // so the last round of chunks is not run by one thread alone.
            count = grouped < units ? min(units, (grouped + threads - 1) / threads * threads) : grouped
        }

        func rectangle(_ chunk: Int) -> (rows: Range<Int>, cols: Range<Int>) {
            let u0 = chunk * units / count, u1 = (chunk + 1) * units / count
            if byRows {
                return (u0 * mr ..< min(m, u1 * mr), 0..<n)
            }
            return (0..<m, u0 * packedPanelWidth ..< min(n, u1 * packedPanelWidth))
        }
    }

    /// The blocked loops over one rectangle of C (`cols.lowerBound` on a panel boundary).
    @inline(never)
    static func compute(_ p: Problem, rows: Range<Int>, cols: Range<Int>, kc: Int, kernel: GEMMKernel) {
        let mr = kernel.mr, nr = kernel.nr, w = packedPanelWidth
        let function = kernel.tileFunction
        let kBlocks = p.k == 0 ? 1 : (p.k + kc - 1) / kc
        let nc = max(w, l2BlockBytes / (4 * kc) / w * w)
        var tile = ced_tile()
        tile.lda = Int64(p.lda)
        tile.ldb = Int64(w)
        tile.ldc = Int64(p.ldc)
        tile.alpha = p.alpha
        for kb in 0..<kBlocks {
            let p0 = kb * kc
            let last = kb == kBlocks - 1
            tile.k = Int64(min(kc, p.k - p0))
            tile.beta = kb == 0 ? p.beta : 1
            tile.gelu = last && p.gelu ? 1 : 0
            tile.add_c = p.addAfter ? 1 : 0
            var j0 = cols.lowerBound
            while j0 < cols.upperBound {
                let j1 = min(cols.upperBound, j0 + nc)
                var i = rows.lowerBound
                while i < rows.upperBound {
                    let origin = min(i, p.aRows - mr)
                    let rowEnd = min(rows.upperBound - origin, mr)
                    tile.row_begin = Int32(i - origin)
                    tile.row_end = Int32(rowEnd)
                    let aStrip = p.a + origin * p.lda + p0
                    let cRow = p.c + origin * p.ldc
                    var j = j0
                    while j < j1 {
                        tile.a = aStrip
                        tile.b = p.panels + (j / w) * p.panelStride + p0 * w + j % w
                        tile.c = cRow + j
                        tile.bias = last ? p.bias.map { $0 + j } : nil
                        tile.col_begin = 0
                        tile.col_end = Int32(min(nr, j1 - j))
                        function(&tile)
                        j += nr
                    }
                    i = origin + rowEnd
                }
                j0 = j1
            }
        }
    }
}

/// The bfloat16 products behind `GEMM.linear` for bf16 weights: A is rounded to bf16 into
/// a scratch buffer (zero-padded to 32-row, 32-column multiples), then AMX blocks or
/// `vdpbf16ps` tiles run over row units × column panels, split across the cores like fp32.
/// GELU is the fast fp32 approximation (absolute error < 2e-7·max(1, |x|); its output is
/// rounded to bf16 by the next product anyway).
enum BF16Driver {
    /// AMX is several times faster than the fp32 kernels, so its calls need more work
    /// before a split pays off.
    static func parallelFlops(_ kernel: BF16Kernel) -> Int {
        kernel == .amx ? 4 * GEMMDriver.parallelFlops : GEMMDriver.parallelFlops
    }

    static func minChunkFlops(_ kernel: BF16Kernel) -> Int {
        kernel == .amx ? 4 * GEMMDriver.minChunkFlops : GEMMDriver.minChunkFlops
    }

    static func linear(m: Int, a: UnsafePointer<Float>, lda: Int, panels: UnsafePointer<UInt16>, k: Int, paddedK kp: Int,
                       n: Int, bias: UnsafePointer<Float>?, c: UnsafeMutablePointer<Float>, ldc: Int,
                       gelu: Bool, accumulate: Bool, threads: Int?, kernel: BF16Kernel) {
        let rowsPad = max(32, (m + 31) / 32 * 32)
        ScratchPool.shared.withFloats((rowsPad * kp + 1) / 2) { scratch in
            let abf = UnsafeMutableRawPointer(scratch).bindMemory(to: UInt16.self, capacity: rowsPad * kp)
            ced_bf16_pack_rows(a, Int64(lda), Int64(m), Int64(k), abf, Int64(kp), Int64(rowsPad), Int64(kp), 1)
            let flops = 2 * m * n * k
            var maxThreads = GEMMDriver.threadCount(threads, flops: flops)
            if threads == nil && flops < parallelFlops(kernel) { maxThreads = 1 }
            let panelCount = (n + packedPanelWidth - 1) / packedPanelWidth
            let split = Split(m: m, n: n, k: k, mr: kernel.mr, threads: maxThreads,
                              packedBBytes: panelCount * kp * packedPanelWidth * 2, minChunkFlops: minChunkFlops(kernel))
            let task = Chunks(a: UnsafePointer(abf), rowsPad: rowsPad, panels: panels, kp: kp, bias: bias, c: c, ldc: ldc,
                              split: split, gelu: gelu, accumulate: accumulate, kernel: kernel)
            if maxThreads == 1 {
                compute(a: task.a, rowsPad: rowsPad, panels: panels, kp: kp, bias: bias, c: c, ldc: ldc,
                        rows: 0..<m, cols: 0..<n, gelu: gelu, accumulate: accumulate, kernel: kernel)
            } else {
                ComputePool.shared.run(split.count, maxThreads: maxThreads, task)
            }
        }
    }

    /// The chunks of a split bf16 product, as a `ComputeTask`.
    struct Chunks: ComputeTask {
        let a: UnsafePointer<UInt16>
        let rowsPad: Int
        let panels: UnsafePointer<UInt16>
        let kp: Int
        let bias: UnsafePointer<Float>?
        let c: UnsafeMutablePointer<Float>
        let ldc: Int
        let split: GEMMDriver.Split
        let gelu: Bool
        let accumulate: Bool
        let kernel: BF16Kernel

        func callAsFunction(_ chunk: Int) {
            let (rows, cols) = split.rectangle(chunk)
            BF16Driver.compute(a: a, rowsPad: rowsPad, panels: panels, kp: kp, bias: bias, c: c, ldc: ldc,
                               rows: rows, cols: cols, gelu: gelu, accumulate: accumulate, kernel: kernel)
        }
    }

    typealias Split = GEMMDriver.Split

    /// One rectangle of C (`cols.lowerBound` on a panel boundary, `rows.lowerBound` on a
    /// row unit boundary).
    static func compute(a: UnsafePointer<UInt16>, rowsPad: Int, panels: UnsafePointer<UInt16>, kp: Int,
                        bias: UnsafePointer<Float>?, c: UnsafeMutablePointer<Float>, ldc: Int,
                        rows: Range<Int>, cols: Range<Int>, gelu: Bool, accumulate: Bool, kernel: BF16Kernel,
                        alpha: Float = 1) {
        if rows.isEmpty || cols.isEmpty { return }
        let w = packedPanelWidth
        switch kernel {
        case .amx:
            var g = ced_amx_gemm()
            g.a = a
            g.b = panels
            g.c = c
            g.bias = bias
            g.k = Int64(kp)
            g.lda = Int64(kp)
            g.panel_stride = Int64(kp * w)
            g.ldc = Int64(ldc)
            g.alpha = alpha
            g.row_begin = Int32(rows.lowerBound)
            g.row_end = Int32(rows.upperBound)
            g.col_begin = Int32(cols.lowerBound)
            g.col_end = Int32(cols.upperBound)
            g.gelu = gelu ? 2 : 0
            g.add_c = accumulate ? 1 : 0
            ced_gemm_bf16_amx(&g)
        case .avx512, .bfmmla, .bfdot:
            let mr = kernel.mr, nr = kernel.nr
            let function = kernel.tileFunction
            var tile = ced_tile()
            tile.lda = Int64(kp)
            tile.ldb = Int64(2 * w)
            tile.ldc = Int64(ldc)
            tile.k = Int64(kp)
            tile.alpha = alpha
            tile.beta = 0
            tile.gelu = gelu ? 2 : 0
            tile.add_c = accumulate ? 1 : 0
            let aRaw = UnsafeRawPointer(a)
            let bRaw = UnsafeRawPointer(panels)
            var i = rows.lowerBound
            while i < rows.upperBound {
                // Edge strips shift back (A has rowsPad ≥ 32 readable rows) and store only new rows.
                let origin = min(i, rowsPad - mr)
                let rowEnd = min(rows.upperBound - origin, mr)
                tile.row_begin = Int32(i - origin)
                tile.row_end = Int32(rowEnd)
                tile.a = (aRaw + origin * kp * 2).assumingMemoryBound(to: Float.self)
                var j = cols.lowerBound
                while j < cols.upperBound {
                    tile.b = (bRaw + (j / w) * kp * w * 2 + (j % w) * 4).assumingMemoryBound(to: Float.self)
                    tile.c = c + origin * ldc + j
                    tile.bias = bias.map { $0 + j }
                    tile.col_begin = 0
                    tile.col_end = Int32(min(nr, cols.upperBound - j))
                    function(&tile)
                    j += nr
                }
                i = origin + rowEnd
            }
        }
    }
}

/// The int8 products behind `GEMM.linear` for int8 weights: the rows of A are quantised into
/// a scratch buffer (unsigned bytes, +128 offset, one scale per row; zero rows up to a
/// multiple of 32), then `vpdpbusd` (or portable) tiles run over row strips × column panels,
/// split across the cores like fp32. GELU is the fast approximation of the bf16 epilogue on
/// the AVX-512 kernel, exact elsewhere.
enum Int8Driver {
    /// int8 tiles do about four times the work of fp32 ones per cycle: calls need more work
    /// before a split pays off.
    static func parallelFlops(_ kernel: Int8Kernel) -> Int {
        kernel == .portable ? GEMMDriver.parallelFlops / 4 : 2 * GEMMDriver.parallelFlops
    }

    static func minChunkFlops(_ kernel: Int8Kernel) -> Int {
        kernel == .portable ? GEMMDriver.minChunkFlops / 4 : 2 * GEMMDriver.minChunkFlops
    }

    static func linear(m: Int, a: UnsafePointer<Float>, lda: Int, weight: PackedWeight, panels: UnsafePointer<Int8>,
                       bias: UnsafePointer<Float>?, c: UnsafeMutablePointer<Float>, ldc: Int,
                       gelu: Bool, accumulate: Bool, threads: Int?, kernel: Int8Kernel) {
        let k = weight.inFeatures, n = weight.outFeatures, kp = weight.paddedK
        let rowsPad = max(32, (m + 31) / 32 * 32)
        // Scratch: row scales (floats), then the quantised rows (64-byte aligned).
        ScratchPool.shared.withFloats(rowsPad + 16 + (rowsPad * kp + 3) / 4) { scratch in
            let scales = scratch
            let qa = UnsafeMutableRawPointer(scratch + (rowsPad + 15) / 16 * 16).bindMemory(to: UInt8.self, capacity: rowsPad * kp)
            ced_q8_quantize_rows(a, Int64(lda), Int64(m), Int64(k), qa, Int64(kp), Int64(rowsPad), Int64(kp), scales,
                                 weight.inputZeroPoint, kernel.quantizeVariant)
            let flops = 2 * m * n * k
            var maxThreads = GEMMDriver.threadCount(threads, flops: flops)
            if threads == nil && flops < parallelFlops(kernel) { maxThreads = 1 }
            let task = Chunks(a: UnsafePointer(qa), aScales: UnsafePointer(scales), rowsPad: rowsPad, kp: kp,
                              panels: panels, bScales: UnsafePointer(weight.int8Scales!), bComp: UnsafePointer(weight.int8Comp!), aZero: weight.inputZeroPoint,
                              bias: bias, c: c, ldc: ldc, gelu: gelu, accumulate: accumulate, kernel: kernel,
                              split: GEMMDriver.Split(m: m, n: n, k: k, mr: kernel.mr, threads: maxThreads,
                                                      packedBBytes: weight.panelCount * kp * packedPanelWidth,
                                                      minChunkFlops: minChunkFlops(kernel)))
            if maxThreads == 1 {
                task.compute(rows: 0..<m, cols: 0..<n)
            } else {
                ComputePool.shared.run(task.split.count, maxThreads: maxThreads, task)
            }
        }
    }

    /// One quantised product, and its chunks as a `ComputeTask`.
    struct Chunks: ComputeTask {
        let a: UnsafePointer<UInt8>
        let aScales: UnsafePointer<Float>
        let rowsPad: Int
        let kp: Int
        let panels: UnsafePointer<Int8>
        let bScales: UnsafePointer<Float>
        let bComp: UnsafePointer<Int32>
        let aZero: Int32
        let bias: UnsafePointer<Float>?
        let c: UnsafeMutablePointer<Float>
        let ldc: Int
        let gelu: Bool
        let accumulate: Bool
        let kernel: Int8Kernel
        let split: GEMMDriver.Split

        func callAsFunction(_ chunk: Int) {
            let (rows, cols) = split.rectangle(chunk)
            compute(rows: rows, cols: cols)
        }

        /// One rectangle of C (`cols.lowerBound` on a panel boundary).
        func compute(rows: Range<Int>, cols: Range<Int>) {
            if rows.isEmpty || cols.isEmpty { return }
            let w = packedPanelWidth, mr = kernel.mr, nr = kernel.nr
            let function = kernel.tileFunction
            var q = ced_q8_tile()
            q.tile.lda = Int64(kp)
            q.tile.ldb = Int64(4 * w)
            q.tile.ldc = Int64(ldc)
            q.tile.k = Int64(kp)
            q.tile.alpha = 1
            q.tile.beta = 0
            q.tile.gelu = gelu ? 2 : 0
            q.tile.add_c = accumulate ? 1 : 0
            var i = rows.lowerBound
            while i < rows.upperBound {
                // Edge strips shift back (A has rowsPad ≥ 32 readable rows) and store only new rows.
                let origin = min(i, rowsPad - mr)
                let rowEnd = min(rows.upperBound - origin, mr)
                q.tile.row_begin = Int32(i - origin)
                q.tile.row_end = Int32(rowEnd)
                q.tile.a = UnsafeRawPointer(a + origin * kp).assumingMemoryBound(to: Float.self)
                q.a_scale = aScales + origin
                var j = cols.lowerBound
                while j < cols.upperBound {
                    q.tile.b = UnsafeRawPointer(panels + (j / w) * kp * w + 4 * (j % w)).assumingMemoryBound(to: Float.self)
                    q.b_scale = bScales + j
                    q.b_comp = bComp + j
                    q.a_zero = aZero
                    q.tile.c = c + origin * ldc + j
                    q.tile.bias = bias.map { $0 + j }
                    q.tile.col_begin = 0
                    q.tile.col_end = Int32(min(nr, cols.upperBound - j))
                    function(&q)
                    j += nr
                }
                i = origin + rowEnd
            }
        }
    }
}
