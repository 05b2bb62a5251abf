import CEDKernels
import Foundation
import XCTest
@testable import CED

/// The bfloat16 path (`CedPrecision.bf16`): rounding, packing, every bf16 kernel this CPU
/// can run against a float64 reference of the bf16-rounded operands, and the accuracy
/// bound on the tiny goldens (max probability error ≤ 0.01, same ordered top 5).
final class BF16Tests: XCTestCase {
    typealias Rand = GEMMTests.Rand

    /// Round to the nearest bfloat16, ties to even, computed from the two candidate
    /// neighbours in double (an implementation independent of the kernels' bit trick).
    /// Subnormal inputs give a signed zero (as the hardware conversion does).
    static func bf16(_ x: Float) -> Float {
        if x.isNaN || x.isInfinite { return x }
        if x.isSubnormal { return x.sign == .minus ? -0.0 : 0 }
        let down = Float(bitPattern: x.bitPattern & 0xFFFF_0000)          // toward zero
        let up = Float(bitPattern: (x.bitPattern & 0xFFFF_0000) &+ 0x1_0000) // away from zero
        // Past the largest bf16 the next value up is infinity, at distance 2^128.
        let upValue = up.isInfinite ? (x.sign == .minus ? -0x1p128 : 0x1p128) : Double(up)
        let dd = abs(Double(x) - Double(down)), du = abs(upValue - Double(x))
        if dd < du { return down }
        if du < dd { return up }
        return (down.bitPattern >> 16) & 1 == 0 ? down : up
    }

    static var packVariants: [Int32] {
        BF16Kernel.available.isEmpty ? [0] : [0, 1]
    }

    func testPackRowsRoundsToNearestEvenAndPads() {
        var values: [Float] = [0, -0.0, 1, -1, 1.00390625, 1.01171875, 1.0078125, -1.01171875, 3.14159265, -2.71828,
                               1e-30, -1e-38, Float.leastNonzeroMagnitude, Float.greatestFiniteMagnitude,
                               3.3961776e38, .infinity, -.infinity, 65504, 1e20, 0.1]
        var rng = Rand(state: 11)
        values += (0..<45).map { _ in rng.next() * 100 }
        let rows = 3, cols = values.count / rows, ldx = cols + 2
        let colsPad = (cols + 31) / 32 * 32, rowsPad = 5, ldy = colsPad + 32
        var x = [Float](repeating: 7, count: rows * ldx)
        for i in 0..<rows { for j in 0..<cols { x[i * ldx + j] = values[i * cols + j] } }
        for variant in Self.packVariants {
            var y = [UInt16](repeating: 0xABCD, count: rowsPad * ldy)
            ced_bf16_pack_rows(x, Int64(ldx), Int64(rows), Int64(cols), &y, Int64(ldy), Int64(rowsPad), Int64(colsPad), variant)
            for i in 0..<rowsPad {
                for j in 0..<ldy {
                    let got = y[i * ldy + j]
                    if j >= colsPad {
                        XCTAssertEqual(got, 0xABCD, "variant \(variant) wrote past cols_pad at [\(i), \(j)]")
                    } else if i >= rows || j >= cols {
                        XCTAssertEqual(got, 0, "variant \(variant) padding [\(i), \(j)]")
                    } else {
                        let want = Self.bf16(values[i * cols + j])
                        XCTAssertEqual(got, UInt16(want.bitPattern >> 16),
                                       "variant \(variant) value \(values[i * cols + j]) → \(Float(bitPattern: UInt32(got) << 16)), want \(want)")
                    }
                }
            }
            // NaN stays NaN.
            var nan = [UInt16](repeating: 0, count: 32)
            ced_bf16_pack_rows([Float.nan, -Float.nan], 2, 1, 2, &nan, 32, 1, 32, variant)
            XCTAssertTrue(Float(bitPattern: UInt32(nan[0]) << 16).isNaN, "variant \(variant) NaN")
            XCTAssertTrue(Float(bitPattern: UInt32(nan[1]) << 16).isNaN, "variant \(variant) -NaN")
        }
    }

    func testPackPanelsLayoutEveryVariant() {
        // Panel p, pair q, column c, half e holds op(B)[2q + e, 32p + c] rounded (0 past k, n).
        var rng = Rand(state: 14)
        for (k, n, transposed) in [(1, 1, true), (3, 5, false), (64, 248, true), (248, 64, false), (33, 40, true),
                                   (70, 31, false), (100, 33, true), (7, 70, false)] {
            let ldb = (transposed ? k : n) + 3
            let b = rng.array((transposed ? n : k) * ldb)
            let kp = (k + 31) / 32 * 32, panels = (n + 31) / 32
            for variant in Self.packVariants {
                var out = [UInt16](repeating: 0xABCD, count: panels * kp * 32 + 7)
                ced_bf16_pack_panels(b, Int64(ldb), transposed ? 1 : 0, Int64(k), Int64(n), &out, Int64(kp), variant)
                var bad = 0
                for p in 0..<panels { for q in 0..<kp / 2 { for c in 0..<32 { for e in 0..<2 {
                    let row = 2 * q + e, col = 32 * p + c
                    var want: UInt16 = 0
                    if row < k && col < n {
                        want = UInt16(Self.bf16(transposed ? b[col * ldb + row] : b[row * ldb + col]).bitPattern >> 16)
                    }
                    if out[((p * kp / 2 + q) * 32 + c) * 2 + e] != want { bad += 1 }
                } } } }
                XCTAssertEqual(bad, 0, "variant \(variant) k=\(k) n=\(n) transposed=\(transposed)")
                XCTAssertEqual(Array(out.suffix(7)), [UInt16](repeating: 0xABCD, count: 7), "wrote past the panels")
            }
        }
    }

    func testPackedWeightIsRoundedOrFallsBack() {
        var rng = Rand(state: 12)
        let w = rng.array(37 * 45)
        let packed = PackedWeight(weight: w, outFeatures: 37, inFeatures: 45, precision: .bf16)
        if CedPrecision.bf16.isSupported {
            XCTAssertEqual(packed.precision, .bf16)
            XCTAssertEqual(packed.rowMajor, w.map(Self.bf16))
        } else {
            XCTAssertEqual(packed.precision, .fp32, ".bf16 must fall back to fp32 without a bf16 kernel")
            XCTAssertEqual(packed.rowMajor, w)
        }
        XCTAssertEqual(PackedWeight(weight: w, outFeatures: 37, inFeatures: 45, precision: .fp32).precision, .fp32)
    }

    /// Shapes around the tiles (14, 32 rows; 32 columns; k pairs and 32-multiples) plus a
    /// few split across threads by rows and by columns.
    static let shapes: [(m: Int, n: Int, k: Int)] = [
        (1, 1, 1), (2, 7, 3), (1, 527, 17), (7, 15, 33), (15, 33, 63), (17, 65, 2), (33, 17, 257),
        (63, 257, 15), (65, 63, 32), (14, 32, 64), (28, 64, 7), (32, 32, 96), (13, 31, 600),
        (130, 200, 70), (20, 300, 300), (248, 100, 192), (70, 40, 1100),
    ]

    func testLinearEveryBF16Kernel() throws {
        if BF16Kernel.best == nil { throw XCTSkip("no bf16 kernel on this CPU, or CED_BF16_KERNEL=none: .bf16 weights are packed as fp32") }
        var rng = Rand(state: 13)
        var worst = 0.0
        for (index, s) in Self.shapes.enumerated() {
            let (m, n, k) = s
            let lda = k + 3, ldc = n + 5
            let a = rng.array(m * lda), w = rng.array(n * k), bias = rng.array(n)
            let weight = PackedWeight(weight: w, outFeatures: n, inFeatures: k, precision: .bf16)
            let aRounded = a.map(Self.bf16), wRounded = w.map(Self.bf16)
            for variant in 0..<4 {
                let useBias = (index + variant) % 2 == 0
                let gelu = variant >= 2
                let accumulate = variant % 2 == 1
                let sentinel: Float = 1234.5
                var start = [Float](repeating: sentinel, count: m * ldc)
                for i in 0..<m { for j in 0..<n { start[i * ldc + j] = rng.next() } }
                let ref = GEMMTests.linearReference(m: m, n: n, k: k, a: aRounded, lda: lda, w: wRounded,
                                                    bias: useBias ? bias : nil, gelu: gelu, start: start, ldc: ldc,
                                                    accumulate: accumulate)
                for kernel in BF16Kernel.available {
                    // Rotate through one thread, two, and automatic.
                    for threads in [[1, 2, nil][(index + variant) % 3]] as [Int?] {
                        var c = start
                        c.withUnsafeMutableBufferPointer { cp in
                            GEMM.linear(m: m, a: a, lda: lda, weight: weight, bias: useBias ? bias : nil,
                                        c: cp.baseAddress!, ldc: ldc, activation: gelu ? .gelu : .none,
                                        accumulate: accumulate, threads: threads, bf16Kernel: kernel)
                        }
                        let what = "bf16 \(kernel) threads \(threads.map(String.init) ?? "auto") m=\(m) n=\(n) k=\(k) bias=\(useBias) gelu=\(gelu) accumulate=\(accumulate)"
                        worst = max(worst, assertClose(GEMMTests.block(c, m: m, n: n, ldc: ldc), ref.value,
                                                                   scale: ref.scale, k: k, gelu: gelu, what))
                        assertPaddingUntouched(c, m: m, n: n, ldc: ldc, sentinel: sentinel, what)
                    }
                }
            }
        }
        XCTAssertGreaterThan(worst, 0.001, "suspiciously exact results")
    }

    func testLinearBF16KZero() throws {
        if BF16Kernel.available.isEmpty { throw XCTSkip("no bf16 kernel on this CPU") }
        let weight = PackedWeight(weight: [], outFeatures: 3, inFeatures: 0, precision: .bf16)
        let bias: [Float] = [-1, 0.5, 2]
        for kernel in BF16Kernel.available {
            var c = [Float](repeating: .nan, count: 6)
            GEMM.linear(m: 2, a: [0], lda: 0, weight: weight, bias: bias, c: &c, ldc: 3, activation: .gelu, bf16Kernel: kernel)
            // The bf16 epilogue's GELU: absolute error below 2e-7·max(1, |x|).
            for i in 0..<6 {
                let x = Double(bias[i % 3])
                XCTAssertEqual(Double(c[i]), GEMMTests.geluRef(x), accuracy: 2e-7 * max(1, abs(x)), "\(kernel) [\(i)]")
            }
        }
    }

    func testFastGELUOfTheBF16Epilogue() throws {
        if !GEMMKernel.available.contains(.avx512) { throw XCTSkip("the fast GELU is AVX-512 only") }
        var xs: [Float] = (0...24000).map { Float($0 - 12000) / 1000 }
        xs += [0, -0.0, 1e-30, -1e-30, 30, -30, 1e30, -1e30, .infinity]
        var ys = [Float](repeating: 0, count: xs.count)
        ced_gelu(xs, &ys, Int64(xs.count), 3)
        var worst = 0.0, at: Float = 0
        for (x, y) in zip(xs, ys) where x.isFinite {
            let err = abs(Double(y) - GEMMTests.geluRef(Double(x))) / max(1, abs(Double(x)))
            if err > worst { worst = err; at = x }
        }
        XCTAssertLessThanOrEqual(worst, 2e-7, "fast GELU: error \(worst)·max(1, |x|) at x=\(at)")
        XCTAssertEqual(ys[xs.count - 1], .infinity)
        var nan: [Float] = [.nan]
        ced_gelu(nan, &nan, 1, 3)
        XCTAssertTrue(nan[0].isNaN)
    }

    // MARK: model accuracy

    /// Indices of the `count` largest scores, largest first.
    static func topK(_ scores: [Float], _ count: Int) -> [Int] {
        Array(scores.indices.sorted { scores[$0] != scores[$1] ? scores[$0] > scores[$1] : $0 < $1 }.prefix(count))
    }

    /// The tiny model at `precision` on every tiny golden case and both chunkings: its
    /// probabilities beside the authors' fp32 ones.
    static func tinyGoldenOutputs(plan: CedPrecisionPlan) throws -> [(name: String, got: [Float], want: [Float])] {
        let golden = try Reference.golden("tiny")
        let cases = try Reference.cases().filter { $0.model == "tiny" }
        XCTAssertFalse(cases.isEmpty)
        let dir = try Reference.model("tiny")
        let config = try CedConfig.load(from: dir.appendingPathComponent("config.json"))
        let weights = try SafeTensorsFile(contentsOf: dir.appendingPathComponent("model.safetensors")).stateDict()
        let model = try CedForAudioClassification(config: config, weights: weights, plan: plan)
        var outputs: [(name: String, got: [Float], want: [Float])] = []
        for c in cases {
            let mel = try golden.tensor("\(c.audio)/mel")
            for chunking in CedChunking.allCases {
                let key = chunking == .hf ? "output_hf" : "output_original"
                let want = try golden.tensor("\(c.audio)/\(c.variant)/\(key)").scalars
                outputs.append(("\(c.audio) \(key)", try model(mel, chunking: chunking).scalars, want))
            }
        }
        return outputs
    }

    func testTinyBF16WithinAccuracyBound() throws {
        var worst: Float = 0
        for (name, got, want) in try Self.tinyGoldenOutputs(plan: .bf16) {
            let d = maxAbsDiff(got, want)
            worst = max(worst, d)
            if CedPrecision.bf16.isSupported {
                XCTAssertLessThanOrEqual(d, 0.01, "tiny bf16 \(name): max probability error")
                XCTAssertEqual(Self.topK(got, 5), Self.topK(want, 5), "tiny bf16 \(name): top 5")
            } else {
                XCTAssertLessThanOrEqual(d, 1e-5, "tiny bf16 fallback (fp32) \(name)")
            }
            print("tiny bf16 \(name): max |Δp| \(d), top5 \(Self.topK(got, 5)) golden \(Self.topK(want, 5))")
        }
        if CedPrecision.bf16.isSupported {
            // The products really ran in bf16 (fp32 stays within 1e-5).
            XCTAssertGreaterThan(worst, 1e-5, "bf16 model output identical to fp32")
        }
    }
}
