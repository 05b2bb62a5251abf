import Foundation
import XCTest
@testable import CED

/// Checks every GEMM entry point, on every microkernel this CPU can run, against a
/// float64 reference computed here with plain loops.
final class GEMMTests: XCTestCase {
    // MARK: helpers

    /// Deterministic values in [-1, 1).
    struct Rand {
        var state: UInt64
        mutating func next() -> Float {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: state) >> 40) / Float(1 << 23)
        }
        mutating func array(_ count: Int) -> [Float] { (0..<count).map { _ in next() } }
    }

    static let unitRoundoff = Double(Float.ulpOfOne) / 2

    static func geluRef(_ x: Double) -> Double { 0.5 * x * erfc(-x / 2.0.squareRoot()) }

    /// float64 `GEMM.linear` result and scale: `act(A·Wᵀ + bias)` on the logical `m×n` block of
    /// `start` (row stride `ldc`); with `accumulate`, `start` is added and the scale also covers
    /// the old C and the sum.
    static func linearReference(m: Int, n: Int, k: Int, a: [Float], lda: Int, w: [Float], bias: [Float]?, gelu: Bool,
                                start: [Float], ldc: Int, accumulate: Bool) -> (value: [Double], scale: [Double]) {
        var ref = reference(transA: false, transB: true, m: m, n: n, k: k, alpha: 1, a: a, lda: lda,
                            b: w, ldb: k, beta: 0, c: start, ldc: ldc, bias: bias, gelu: gelu)
        if accumulate {
            for i in 0..<m { for j in 0..<n {
                ref.value[i * n + j] += Double(start[i * ldc + j])
                ref.scale[i * n + j] += abs(Double(start[i * ldc + j])) + abs(ref.value[i * n + j])
            } }
        }
        return ref
    }

    /// float64 `act(α·op(A)·op(B) + β·C + bias)` and its magnitude scale, on the logical
    /// `m×n` block of a strided `C`.
    static func reference(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                          a: [Float], lda: Int, b: [Float], ldb: Int, beta: Float, c: [Float], ldc: Int,
                          bias: [Float]?, gelu: Bool) -> (value: [Double], scale: [Double]) {
        var value = [Double](repeating: 0, count: m * n), scale = value
        for i in 0..<m {
            for j in 0..<n {
                var s = 0.0, sa = 0.0
                for p in 0..<k {
                    let av = Double(transA ? a[p * lda + i] : a[i * lda + p])
                    let bv = Double(transB ? b[j * ldb + p] : b[p * ldb + j])
                    s += av * bv
                    sa += abs(av * bv)
                }
                var v = Double(alpha) * s
                var sc = abs(Double(alpha)) * sa
                if beta != 0 { v += Double(beta) * Double(c[i * ldc + j]); sc += abs(Double(beta) * Double(c[i * ldc + j])) }
                if let bias { v += Double(bias[j]); sc += abs(Double(bias[j])) }
                if gelu { v = geluRef(v) }
                value[i * n + j] = v
                scale[i * n + j] = sc
            }
        }
        return (value, scale)
    }

    static func block(_ c: [Float], m: Int, n: Int, ldc: Int) -> [Float] {
        (0..<m * n).map { c[($0 / n) * ldc + $0 % n] }
    }

    // Shapes around every kernel's MR (4, 6, 14) and NR (16, 32), the k block (512),
    // plus a few big enough to be split across threads (by rows and by columns).
    static let shapes: [(m: Int, n: Int, k: Int)] = [
        (1, 1, 1), (2, 7, 1), (1, 527, 17), (7, 15, 17), (15, 33, 63), (17, 65, 2), (33, 17, 257),
        (63, 257, 15), (65, 63, 33), (14, 32, 64), (28, 64, 7), (13, 31, 600), (29, 40, 1100),
        (130, 200, 70), (20, 300, 300), (6, 16, 5), (4, 48, 9),
    ]

    // MARK: linear

    func testLinearAllKernelsAllShapes() {
        var rng = Rand(state: 1)
        var worst = 0.0
        for (index, s) in Self.shapes.enumerated() {
            let (m, n, k) = s
            let lda = k + 3, ldc = n + 5
            let a = rng.array(m * lda), w = rng.array(n * k), bias = rng.array(n)
            let weight = PackedWeight(weight: w, outFeatures: n, inFeatures: k)
            // Rotate through the epilogue options so every shape meets several.
            for variant in 0..<4 {
                let useBias = (index + variant) % 2 == 0
                let gelu = variant >= 2
                let accumulate = variant % 2 == 1
                let sentinel: Float = 1234.5
                var start = [Float](repeating: sentinel, count: m * ldc)
                for i in 0..<m { for j in 0..<n { start[i * ldc + j] = rng.next() } }
                // accumulate: C_old + act(x·Wᵀ + b)
                let ref = Self.linearReference(m: m, n: n, k: k, a: a, lda: lda, w: w, bias: useBias ? bias : nil,
                                               gelu: gelu, start: start, ldc: ldc, accumulate: accumulate)
                for kernel in GEMMKernel.available {
                    var c = start
                    c.withUnsafeMutableBufferPointer { cp in
                        a.withUnsafeBufferPointer { ap in
                            bias.withUnsafeBufferPointer { bp in
                                // Half of the calls split across threads whatever their size.
                                GEMM.linear(m: m, a: ap.baseAddress!, lda: lda, weight: weight,
                                            bias: useBias ? bp.baseAddress! : nil, c: cp.baseAddress!, ldc: ldc,
                                            activation: gelu ? .gelu : .none, accumulate: accumulate,
                                            threads: variant % 2 == 0 ? 2 : nil, kernel: kernel)
                            }
                        }
                    }
                    let what = "linear \(kernel) m=\(m) n=\(n) k=\(k) bias=\(useBias) gelu=\(gelu) accumulate=\(accumulate)"
                    worst = max(worst, assertClose(Self.block(c, m: m, n: n, ldc: ldc), ref.value, scale: ref.scale,
                                                   k: k, gelu: gelu, what))
                    assertPaddingUntouched(c, m: m, n: n, ldc: ldc, sentinel: sentinel, what)
                }
            }
        }
        // The tolerance should be tight, not orders of magnitude above the real error.
        XCTAssertGreaterThan(worst, 0.005, "suspiciously exact results")
    }

    func testLinearAccumulateGELUAcrossKBlocks() {
        // accumulate + GELU must apply GELU to the full dot product only, also when k is
        // larger than one k block.
        var rng = Rand(state: 2)
        let m = 15, n = 33, k = GEMMDriver.kcMax + 77
        let a = rng.array(m * k), w = rng.array(n * k), bias = rng.array(n)
        let weight = PackedWeight(weight: w, outFeatures: n, inFeatures: k)
        for kernel in GEMMKernel.available {
            let residual = rng.array(m * n)
            var c = residual
            GEMM.linear(m: m, a: a, lda: k, weight: weight, bias: bias, c: &c, ldc: n,
                        activation: .gelu, accumulate: true, kernel: kernel)
            let ref = Self.reference(transA: false, transB: true, m: m, n: n, k: k, alpha: 1, a: a, lda: k,
                                     b: w, ldb: k, beta: 0, c: c, ldc: n, bias: bias, gelu: true)
            let want = (0..<m * n).map { ref.value[$0] + Double(residual[$0]) }
            let scale = (0..<m * n).map { ref.scale[$0] + abs(Double(residual[$0])) }
            assertClose(c, want, scale: scale, k: k, gelu: true, "accumulate+gelu \(kernel)")
        }
    }

    func testLinearLongKGroupedStrips() {
        // Packed B larger than the L2 block: threads take groups of strips, k is blocked.
        var rng = Rand(state: 8)
        let m = 60, n = 33, k = 4200
        let a = rng.array(m * k), w = rng.array(n * k), bias = rng.array(n)
        let weight = PackedWeight(weight: w, outFeatures: n, inFeatures: k)
        let start = rng.array(m * n)
        var ref = Self.reference(transA: false, transB: true, m: m, n: n, k: k, alpha: 1, a: a, lda: k,
                                 b: w, ldb: k, beta: 0, c: start, ldc: n, bias: bias, gelu: false)
        for i in 0..<m * n {
            ref.value[i] += Double(start[i])
            ref.scale[i] += abs(Double(start[i]))
        }
        for kernel in GEMMKernel.available {
            var c = start
            GEMM.linear(m: m, a: a, lda: k, weight: weight, bias: bias, c: &c, ldc: n, accumulate: true, kernel: kernel)
            assertClose(c, ref.value, scale: ref.scale, k: k, "long k \(kernel)")
        }
    }

    func testLinearLargeBSplitsByColumns() {
        // Packed B above the L2 block with many panels: threads take groups of column panels.
        var rng = Rand(state: 9)
        let m = 20, n = 300, k = 900
        let split = GEMMDriver.Split(m: m, n: n, k: k, mr: 14, threads: 2,
                                     packedBBytes: k * 320 * 4, minChunkFlops: GEMMDriver.minChunkFlops)
        XCTAssertFalse(split.byRows)
        XCTAssertGreaterThanOrEqual(split.count, 2)
        let a = rng.array(m * k), w = rng.array(n * k), bias = rng.array(n)
        let weight = PackedWeight(weight: w, outFeatures: n, inFeatures: k)
        let start = rng.array(m * n)
        for gelu in [false, true] {
            let ref = Self.linearReference(m: m, n: n, k: k, a: a, lda: k, w: w, bias: bias, gelu: gelu,
                                           start: start, ldc: n, accumulate: true)
            for kernel in GEMMKernel.available {
                var c = start
                GEMM.linear(m: m, a: a, lda: k, weight: weight, bias: bias, c: &c, ldc: n,
                            activation: gelu ? .gelu : .none, accumulate: true, threads: 2, kernel: kernel)
                assertClose(c, ref.value, scale: ref.scale, k: k, gelu: gelu, "large B \(kernel) gelu=\(gelu)")
            }
        }
    }

    func testActivationStridesAvoidSetAliasing() {
        // Activations with 256, 768, 1024 or 3072 columns get an odd number of cache lines
        // per row; others keep their width. Products must read either layout alike.
        XCTAssertEqual(GEMMDriver.activationStride(768), 784)
        XCTAssertEqual(GEMMDriver.activationStride(3072), 3088)
        XCTAssertEqual(GEMMDriver.activationStride(256), 272)
        XCTAssertEqual(GEMMDriver.activationStride(1024), 1040)
        XCTAssertEqual(GEMMDriver.activationStride(192), 192)   // 12 lines: rows use 16 sets
        XCTAssertEqual(GEMMDriver.activationStride(64), 64)     // 4 lines: 16 sets
        XCTAssertEqual(GEMMDriver.activationStride(771), 771)
        XCTAssertEqual(GEMMDriver.activationStride(48), 48)
        var rng = Rand(state: 21)
        for (m, n, k, lda) in [(31, 45, 768, 784), (29, 70, 1100, 3088), (14, 33, 256, 272), (20, 40, 700, 768)] {
            let a = rng.array(m * lda), w = rng.array(n * k), bias = rng.array(n)
            let weight = PackedWeight(weight: w, outFeatures: n, inFeatures: k)
            for gelu in [false, true] {
                let ref = Self.reference(transA: false, transB: true, m: m, n: n, k: k, alpha: 1, a: a, lda: lda,
                                         b: w, ldb: k, beta: 0, c: [Float](repeating: 0, count: m * n), ldc: n,
                                         bias: bias, gelu: gelu)
                for kernel in GEMMKernel.available {
                    for threads in [1, 2] {
                        var c = [Float](repeating: .nan, count: m * n)
                        GEMM.linear(m: m, a: a, lda: lda, weight: weight, bias: bias, c: &c, ldc: n,
                                    activation: gelu ? .gelu : .none, threads: threads, kernel: kernel)
                        assertClose(c, ref.value, scale: ref.scale, k: k, gelu: gelu,
                                    "strided A \(kernel) m=\(m) k=\(k) lda=\(lda) gelu=\(gelu) threads=\(threads)")
                    }
                }
            }
        }
    }

    func testLinearKZeroGivesActivationOfBias() {
        let weight = PackedWeight(weight: [], outFeatures: 3, inFeatures: 0)
        let bias: [Float] = [-1, 0.5, 2]
        for kernel in GEMMKernel.available {
            var c = [Float](repeating: .nan, count: 6)
            let a: [Float] = [0]
            GEMM.linear(m: 2, a: a, lda: 0, weight: weight, bias: bias, c: &c, ldc: 3, activation: .gelu, kernel: kernel)
            for i in 0..<6 {
                XCTAssertEqual(Double(c[i]), Self.geluRef(Double(bias[i % 3])), accuracy: 1e-7, "\(kernel) [\(i)]")
            }
        }
    }

    func testPackedWeightKeepsRowMajorValues() {
        var rng = Rand(state: 3)
        let w = rng.array(37 * 5)
        XCTAssertEqual(PackedWeight(weight: w, outFeatures: 37, inFeatures: 5).rowMajor, w)
    }

    // MARK: sgemm

    func testSgemmTransposesAlphaBeta() {
        var rng = Rand(state: 4)
        let shapes: [(Int, Int, Int)] = [(1, 1, 1), (7, 17, 15), (33, 65, 2), (65, 33, 63), (15, 257, 7),
                                         (17, 7, 1), (20, 40, 600), (120, 130, 100)]
        let scalars: [(Float, Float)] = [(1, 0), (0.5, 1), (-2, 0.25), (1, -1)]
        for (index, (m, n, k)) in shapes.enumerated() {
            for transA in [false, true] {
                for transB in [false, true] {
                    let (alpha, beta) = scalars[(index + (transA ? 1 : 0) + (transB ? 2 : 0)) % scalars.count]
                    let lda = (transA ? m : k) + 2, ldb = (transB ? k : n) + 1, ldc = n + 3
                    let a = rng.array((transA ? k : m) * lda), b = rng.array((transB ? n : k) * ldb)
                    let sentinel: Float = -777
                    var start = [Float](repeating: sentinel, count: m * ldc)
                    // With beta == 0, C must not be read: seed it with NaN.
                    for i in 0..<m { for j in 0..<n { start[i * ldc + j] = beta == 0 ? .nan : rng.next() } }
                    let ref = Self.reference(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
                                             a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: start, ldc: ldc,
                                             bias: nil, gelu: false)
                    for kernel in GEMMKernel.available {
                        var c = start
                        GEMM.sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                                   b: b, ldb: ldb, beta: beta, c: &c, ldc: ldc, threads: transB ? 2 : nil, kernel: kernel)
                        let what = "sgemm \(kernel) tA=\(transA) tB=\(transB) m=\(m) n=\(n) k=\(k) α=\(alpha) β=\(beta)"
                        assertClose(Self.block(c, m: m, n: n, ldc: ldc), ref.value, scale: ref.scale, k: k, what)
                        assertPaddingUntouched(c, m: m, n: n, ldc: ldc, sentinel: sentinel, what)
                    }
                }
            }
        }
    }

    func testStridedBatchedAttentionLayout() {
        // qkv is [N, 3·C] with H heads of size d; scores_h = q_h·k_hᵀ, out[:, h·d..] = P_h·v_h.
        var rng = Rand(state: 5)
        let tokens = 37, heads = 3, d = 8, channels = heads * d
        let qkv = rng.array(tokens * 3 * channels)
        for kernel in GEMMKernel.available {
            for threads in [1, 2] {
                var scores = [Float](repeating: 0, count: heads * tokens * tokens)
                qkv.withUnsafeBufferPointer { q in
                    GEMM.sgemmStridedBatched(
                        transA: false, transB: true, m: tokens, n: tokens, k: d, alpha: 0.125,
                        a: q.baseAddress!, lda: 3 * channels, strideA: d,
                        b: q.baseAddress! + channels, ldb: 3 * channels, strideB: d,
                        c: &scores, ldc: tokens, strideC: tokens * tokens, batchCount: heads,
                        threads: threads, kernel: kernel)
                }
                var out = [Float](repeating: 0, count: tokens * channels)
                qkv.withUnsafeBufferPointer { q in
                    GEMM.sgemmStridedBatched(
                        transA: false, transB: false, m: tokens, n: d, k: tokens,
                        a: scores, lda: tokens, strideA: tokens * tokens,
                        b: q.baseAddress! + 2 * channels, ldb: 3 * channels, strideB: d,
                        c: &out, ldc: channels, strideC: d, batchCount: heads,
                        threads: threads, kernel: kernel)
                }
                for h in 0..<heads {
                    // Typed closures: Swift 6.0's type checker gives up on the untyped ones.
                    func column(_ offset: Int) -> [Float] {
                        (0..<tokens * d).map { (i: Int) -> Float in qkv[(i / d) * 3 * channels + offset + h * d + i % d] }
                    }
                    let qh = column(0), kh = column(channels), vh = column(2 * channels)
                    let s = Self.reference(transA: false, transB: true, m: tokens, n: tokens, k: d, alpha: 0.125,
                                           a: qh, lda: d, b: kh, ldb: d, beta: 0, c: [], ldc: 0, bias: nil, gelu: false)
                    let got = Array(scores[h * tokens * tokens ..< (h + 1) * tokens * tokens])
                    assertClose(got, s.value, scale: s.scale, k: d, "scores \(kernel) head \(h) threads \(threads)")
                    let o = Self.reference(transA: false, transB: false, m: tokens, n: d, k: tokens, alpha: 1,
                                           a: got, lda: tokens, b: vh, ldb: d, beta: 0, c: [], ldc: 0, bias: nil, gelu: false)
                    let gotOut = (0..<tokens * d).map { (i: Int) -> Float in out[(i / d) * channels + h * d + i % d] }
                    assertClose(gotOut, o.value, scale: o.scale, k: tokens, "attn·V \(kernel) head \(h) threads \(threads)")
                }
            }
        }
    }

    func testStridedBatchedTransposedAndShortA() {
        // Batch items whose A must be copied (transposed, or fewer rows than MR).
        var rng = Rand(state: 7)
        for (m, n, k, transA, transB) in [(5, 19, 9, true, false), (3, 40, 33, false, true), (70, 45, 90, true, true)] {
            let batch = 3
            let lda = (transA ? m : k) + 1, ldb = (transB ? k : n) + 2, ldc = n + 1
            let aSize = (transA ? k : m) * lda, bSize = (transB ? n : k) * ldb, cSize = m * ldc
            let a = rng.array(batch * aSize), b = rng.array(batch * bSize)
            for kernel in GEMMKernel.available {
                var c = [Float](repeating: 0, count: batch * cSize)
                GEMM.sgemmStridedBatched(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 1.5,
                                         a: a, lda: lda, strideA: aSize, b: b, ldb: ldb, strideB: bSize,
                                         c: &c, ldc: ldc, strideC: cSize, batchCount: batch, threads: 2, kernel: kernel)
                for h in 0..<batch {
                    let ref = Self.reference(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 1.5,
                                             a: Array(a[h * aSize ..< (h + 1) * aSize]), lda: lda,
                                             b: Array(b[h * bSize ..< (h + 1) * bSize]), ldb: ldb,
                                             beta: 0, c: [], ldc: 0, bias: nil, gelu: false)
                    let got = Self.block(Array(c[h * cSize ..< (h + 1) * cSize]), m: m, n: n, ldc: ldc)
                    assertClose(got, ref.value, scale: ref.scale, k: k,
                                "batched \(kernel) item \(h) m=\(m) n=\(n) k=\(k) tA=\(transA) tB=\(transB)")
                }
            }
        }
    }

    // MARK: GELU, concurrency

    func testGELUMatchesErfReference() {
        // Dense sweep of [-12, 12] plus special values; error within a few float ulps.
        var xs: [Float] = (0...24000).map { Float($0 - 12000) / 1000 }
        xs += [0, -0.0, 1e-30, -1e-30, 30, -30, .infinity]
        for kernel in GEMMKernel.available {
            var ys = [Float](repeating: 0, count: xs.count)
            GEMM.gelu(xs, &ys, count: xs.count, kernel: kernel)
            var worst = 0.0, at: Float = 0
            for (x, y) in zip(xs, ys) where x.isFinite {
                let want = Self.geluRef(Double(x))
                let err = abs(Double(y) - want) / (Double(Float(abs(want)).ulp) + 1e-37)
                if err > worst { worst = err; at = x }
            }
            XCTAssertLessThanOrEqual(worst, 8, "\(kernel): \(worst) ulps at x=\(at)")
            XCTAssertEqual(ys[xs.count - 1], .infinity, "\(kernel) gelu(+inf)")
            // In place, with NaN.
            var buffer: [Float] = [.nan, 1]
            buffer.withUnsafeMutableBufferPointer { GEMM.gelu($0.baseAddress!, $0.baseAddress!, count: 2, kernel: kernel) }
            XCTAssertTrue(buffer[0].isNaN, "\(kernel) gelu(nan)")
            XCTAssertEqual(Double(buffer[1]), Self.geluRef(1), accuracy: 1e-7, "\(kernel) gelu(1) in place")
        }
    }

    func testConcurrentCallersShareOneWeight() {
        var rng = Rand(state: 6)
        let m = 120, n = 96, k = 160
        let a = rng.array(m * k), w = rng.array(n * k), bias = rng.array(n)
        let weight = PackedWeight(weight: w, outFeatures: n, inFeatures: k)
        let ref = Self.reference(transA: false, transB: true, m: m, n: n, k: k, alpha: 1, a: a, lda: k,
                                 b: w, ldb: k, beta: 0, c: [], ldc: n, bias: bias, gelu: true)
        let results = UnsafeMutablePointer<[Float]>.allocate(capacity: 6)
        results.initialize(repeating: [], count: 6)
        defer { results.deinitialize(count: 6); results.deallocate() }
        DispatchQueue.concurrentPerform(iterations: 6) { t in
            var c = [Float](repeating: 0, count: m * n)
            for _ in 0..<5 {
                GEMM.linear(m: m, a: a, lda: k, weight: weight, bias: bias, c: &c, ldc: n, activation: .gelu, threads: 2)
            }
            results[t] = c
        }
        for t in 0..<6 {
            assertClose(results[t], ref.value, scale: ref.scale, k: k, gelu: true, "caller \(t)")
        }
    }
}

/// Shared by the GEMM and bf16 tests.
extension XCTestCase {
    /// Compares `got` with `want` where `scale[i]` bounds the magnitude of the terms that
    /// were summed (Σ|α·a·b| + |β·c| + |bias|): float32 accumulation over `k` terms
    /// stays well inside `4·u·(√k + 2)·scale`; GELU adds a few ulps of the result.
    /// Returns the worst error as a fraction of the tolerance.
    @discardableResult
    func assertClose(_ got: [Float], _ want: [Double], scale: [Double], k: Int, gelu: Bool = false,
                     _ what: @autoclosure () -> String, file: StaticString = #filePath, line: UInt = #line) -> Double {
        XCTAssertEqual(got.count, want.count, what(), file: file, line: line)
        let factor = 4 * GEMMTests.unitRoundoff * (Double(k).squareRoot() + 2)
        var worst = 0.0, worstIndex = -1
        for i in 0..<min(got.count, want.count) {
            var tol = factor * scale[i] + 1e-30
            if gelu { tol = 1.2 * tol + 16 * GEMMTests.unitRoundoff * abs(want[i]) }
            let ratio = abs(Double(got[i]) - want[i]) / tol
            if !(ratio <= worst) { worst = ratio; worstIndex = i }
        }
        if worst > 1 || worst.isNaN {
            XCTFail("\(what()): element \(worstIndex) got \(got[worstIndex]) want \(want[worstIndex]) (error \(worst)× tolerance)",
                    file: file, line: line)
        }
        if ProcessInfo.processInfo.environment["CED_GEMM_VERBOSE"] != nil { print("\(what()): worst \(worst)") }
        return worst
    }

    /// Every element outside the logical block must still hold the sentinel.
    func assertPaddingUntouched(_ c: [Float], m: Int, n: Int, ldc: Int, sentinel: Float, _ what: String,
                                file: StaticString = #filePath, line: UInt = #line) {
        for idx in 0..<c.count where !(idx / ldc < m && idx % ldc < n) {
            if c[idx] != sentinel {
                XCTFail("\(what): wrote outside C at row \(idx / ldc), column \(idx % ldc)", file: file, line: line)
                return
            }
        }
    }
}

final class ThreadLimitTests: XCTestCase {
    func testThreadLimitIsPerThreadNestsAndRestores() {
        let all = ComputePool.shared.workerCount + 1
        XCTAssertEqual(CedCompute.threadLimit, all)
        CedCompute.withThreadLimit(1) {
            XCTAssertEqual(CedCompute.threadLimit, 1)
            XCTAssertEqual(GEMMDriver.threadCount(nil, flops: 1 << 40), 1)
            XCTAssertEqual(GEMMDriver.threadCount(8, flops: 1 << 40), 1)
            CedCompute.withThreadLimit(3) { XCTAssertEqual(CedCompute.threadLimit, 3) }
            XCTAssertEqual(CedCompute.threadLimit, 1)
            // Another thread is not limited (a real thread: DispatchQueue.sync may run the
            // block on this one).
            let done = DispatchSemaphore(value: 0)
            nonisolated(unsafe) var seen = 0
            Thread.detachNewThread { seen = CedCompute.threadLimit; done.signal() }
            done.wait()
            XCTAssertEqual(seen, all)
        }
        XCTAssertEqual(CedCompute.threadLimit, all)
        XCTAssertEqual(GEMMDriver.threadCount(nil, flops: 1 << 40), all)
    }

    /// A model call limited to its own thread computes exactly what the shared pool does
    /// (threads only split the work; every value is summed in the same order).
    func testSingleThreadedModelCallGivesIdenticalScores() throws {
        let model = try ModelGoldenTests.loadModel("tiny")
        let mel = try Reference.golden("tiny").tensor("ukulele_speech_32k_mono_s16.wav/mel")
        let pooled = try model(mel).scalars
        let alone = try CedCompute.withThreadLimit(1) { try model(mel).scalars }
        XCTAssertEqual(alone, pooled)
    }
}

final class BatchScoresTests: XCTestCase {
    /// `model([mel…])` runs the clips side by side; every result equals `model(mel)`, in order.
    func testBatchEqualsOneByOne() throws {
        let model = try ModelGoldenTests.loadModel("tiny")
        let golden = try Reference.golden("tiny")
        let mels = try Reference.cases().filter { $0.model == "tiny" }.map { try golden.tensor("\($0.audio)/mel") }
        XCTAssertGreaterThanOrEqual(mels.count, 3)
        for chunking in CedChunking.allCases {
            let batch = try model(mels, chunking: chunking)
            XCTAssertEqual(batch.count, mels.count)
            for (b, m) in zip(batch, mels) { XCTAssertEqual(b.scalars, try model(m, chunking: chunking).scalars) }
        }
        // The first failing spectrogram's error is thrown.
        let bad = Tensor(shape: [3, 100], scalars: [Float](repeating: 0, count: 300))
        XCTAssertThrowsError(try model([mels[0], bad, mels[1]])) { error in
            XCTAssertTrue("\(error)".contains("[3, 100]"), "\(error)")
        }
        XCTAssertEqual(try model([]).count, 0)
    }
}
