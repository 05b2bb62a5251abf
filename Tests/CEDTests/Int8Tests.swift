import CEDKernels
import Foundation
import XCTest
@testable import CED

/// The int8 path (`CedPrecision.int8`): weight and activation quantisation against a
/// reference written here, every int8 kernel this CPU can run against a float64 product of
/// the quantised operands, and the accuracy bound on the tiny goldens (max probability error
/// ≤ 0.01, same ordered top 5).
final class Int8Tests: XCTestCase {
    typealias Rand = GEMMTests.Rand

    /// The documented rounding: nearest, ties to even, clamped to ±127.
    static func q8(_ x: Float) -> Int {
        if x.isNaN { return -127 }
        return Int(max(-127, min(127, x.rounded(.toNearestOrEven))))
    }

    /// Row quantisation as documented in CEDKernels.h: zero point 128: scale max|x|/127,
    /// q = round(x·127/max) + 128; another zero point z: scale max(max x/(255 − z), −min x/z),
    /// q = clamp(round(x/scale) + z, 0, 255).
    static func quantizeRow(_ x: ArraySlice<Float>, zero: Int = 128) -> (bytes: [UInt8], scale: Float) {
        if zero != 128 {
            var lo: Float = 0, hi: Float = 0, finite = true
            for v in x {
                if !v.isFinite { finite = false }
                lo = min(lo, v)
                hi = max(hi, v)
            }
            let s: Float = finite ? max(hi > 0 ? hi / Float(255 - zero) : 0, lo < 0 ? -lo / Float(zero) : 0) : .nan
            let inv: Float = s > 0 ? 1 / s : 0
            return (x.map { v in
                let r = (v * inv).rounded(.toNearestOrEven) + Float(zero)
                return UInt8(r.isNaN ? 0 : max(0, min(255, r)))
            }, s)
        }
        var amax: Float = 0
        var finite = true
        for v in x {
            if !v.isFinite { finite = false }
            amax = max(amax, abs(v))
        }
        if !finite { amax = .nan }
        let inv: Float = amax > 0 ? 127 / amax : 0
        return (x.map { UInt8(q8($0 * inv) + 128) }, amax / 127)
    }

    /// Per-output-row weight quantisation: (q, scale) of row j.
    static func quantizeWeight(_ w: [Float], n: Int, k: Int) -> (q: [Int], scales: [Float]) {
        var q = [Int](repeating: 0, count: n * k), scales = [Float](repeating: 0, count: n)
        for j in 0..<n {
            let row = w[j * k ..< (j + 1) * k]
            let s = (row.map(abs).max() ?? 0) / 127
            scales[j] = s
            for p in 0..<k { q[j * k + p] = s > 0 ? q8(w[j * k + p] / s) : 0 }
        }
        return (q, scales)
    }

    func testQuantizeRowsBothVariants() {
        var rng = Rand(state: 31)
        let rows = 6, cols = 45, ldx = cols + 3, colsPad = 64, rowsPad = 9, ldy = colsPad + 8
        var x = rng.array(rows * ldx).map { $0 * 5 }
        for j in 0..<ldx { x[1 * ldx + j] = 0 }                     // an all-zero row
        x[2 * ldx + 7] = .nan                                          // a NaN
        x[3 * ldx + 44] = -.infinity                                   // an infinity
        x[4 * ldx + 3] = 100; x[4 * ldx + 4] = -100; x[4 * ldx + 5] = 50   // ties: ±127 and 63.5 → 64
        var variants: [Int32] = [0]
        if GEMMKernel.available.contains(.avx512) && Int8Kernel.available.contains(.avx512vnni) { variants.append(1) }
        if GEMMKernel.available.contains(.neon) { variants.append(1) }   // the NEON quantizer (AArch64)
        for (zero, variant) in [128, 16].flatMap({ z in variants.map { (z, $0) } }) {
            var y = [UInt8](repeating: 0xAB, count: rowsPad * ldy)
            var scales = [Float](repeating: -1, count: rowsPad)
            ced_q8_quantize_rows(x, Int64(ldx), Int64(rows), Int64(cols), &y, Int64(ldy), Int64(rowsPad), Int64(colsPad), &scales,
                                 Int32(zero), variant)
            let z = UInt8(zero)
            for i in 0..<rowsPad {
                let want: (bytes: [UInt8], scale: Float) = i < rows ? Self.quantizeRow(x[i * ldx ..< i * ldx + cols], zero: zero)
                    : ([UInt8](repeating: z, count: cols), 0)
                if want.scale.isNaN {
                    XCTAssertTrue(scales[i].isNaN, "variant \(variant) row \(i): a non-finite row has a NaN scale")
                } else {
                    XCTAssertEqual(scales[i], want.scale, "variant \(variant) row \(i) scale")
                    XCTAssertEqual(Array(y[i * ldy ..< i * ldy + cols]), want.bytes, "variant \(variant) row \(i)")
                }
                XCTAssertEqual(Array(y[i * ldy + cols ..< i * ldy + colsPad]), [UInt8](repeating: z, count: colsPad - cols),
                               "variant \(variant) zero \(zero) row \(i) padding")
                XCTAssertEqual(Array(y[i * ldy + colsPad ..< (i + 1) * ldy]), [UInt8](repeating: 0xAB, count: ldy - colsPad),
                               "variant \(variant) row \(i) wrote past cols_pad")
            }
            if zero == 128 {
                XCTAssertEqual(y[4 * ldy + 3], 255)
                XCTAssertEqual(y[4 * ldy + 4], 1)
                XCTAssertEqual(y[4 * ldy + 5], 128 + 64, "63.5 rounds to even")
            } else {
                // Row 4: min −100 needs 100/16 = 6.25 per step, more than 100/239: −100 → 0, 100 → 16 + 16.
                XCTAssertEqual(scales[4], 6.25)
                XCTAssertEqual(y[4 * ldy + 4], 0)
                XCTAssertEqual(y[4 * ldy + 3], 32)
                XCTAssertEqual(y[4 * ldy + 5], 24, "8 steps above zero")
            }
        }
    }

    func testPackedWeightLayoutAndRowMajor() {
        var rng = Rand(state: 32)
        for (n, k) in [(37, 45), (1, 1), (64, 192), (33, 3)] {
            var w = rng.array(n * k)
            if n > 2 { for p in 0..<k { w[2 * k + p] = 0 } }   // an all-zero output row
            let packed = PackedWeight(weight: w, outFeatures: n, inFeatures: k, precision: .int8)
            XCTAssertEqual(packed.precision, .int8)
            let (q, scales) = Self.quantizeWeight(w, n: n, k: k)
            let kp = packed.paddedK
            var bad = 0
            for j in 0..<packed.panelCount * 32 {
                let scale = packed.int8Scales![j], comp = packed.int8Comp![j]
                if j >= n {
                    if scale != 0 || comp != 0 { bad += 1 }
                    continue
                }
                if scale != scales[j] { bad += 1 }
                if Int(comp) != 128 * q[j * k ..< (j + 1) * k].reduce(0, +) { bad += 1 }
                for p in 0..<kp {
                    let got = packed.int8Panels![(j / 32) * kp * 32 + (p / 4) * 128 + (j % 32) * 4 + p % 4]
                    if Int(got) != (p < k ? q[j * k + p] : 0) { bad += 1 }
                }
            }
            XCTAssertEqual(bad, 0, "n=\(n) k=\(k)")
            let dequantized = (0..<n * k).map { Float(q[$0]) * scales[$0 / k] }
            XCTAssertEqual(packed.rowMajor, dequantized, "n=\(n) k=\(k)")
        }
    }

    static let shapes: [(m: Int, n: Int, k: Int)] = [
        (1, 1, 1), (2, 7, 3), (1, 527, 17), (7, 15, 33), (15, 33, 63), (17, 65, 2), (33, 17, 257),
        (63, 257, 15), (65, 63, 32), (14, 32, 64), (6, 16, 8), (28, 64, 7), (13, 31, 600),
        (130, 200, 70), (20, 300, 300), (248, 100, 192), (70, 40, 1100),
    ]

    func testLinearEveryInt8Kernel() {
        var rng = Rand(state: 33)
        var worst = 0.0
        var checked = Set<Int8Kernel>()
        for (index, s) in Self.shapes.enumerated() {
            let (m, n, k) = s
            let lda = k + 3, ldc = n + 5
            let a = rng.array(m * lda).map { $0 * 4 }, w = rng.array(n * k), bias = rng.array(n)
            // Every other shape quantises its inputs with zero point 16 (as GELU outputs are).
            let zero = index % 2 == 0 ? 128 : 16
            let weight = PackedWeight(weight: w, outFeatures: n, inFeatures: k, precision: .int8, inputZeroPoint: Int32(zero))
            let (qw, sw) = Self.quantizeWeight(w, n: n, k: k)
            let rowsQ = (0..<m).map { Self.quantizeRow(a[$0 * lda ..< $0 * lda + k], zero: zero) }
            for variant in 0..<4 {
                let useBias = (index + variant) % 2 == 0
                let gelu = variant >= 2
                let accumulate = variant % 2 == 1
                let sentinel: Float = 1234.5
                var start = [Float](repeating: sentinel, count: m * ldc)
                for i in 0..<m { for j in 0..<n { start[i * ldc + j] = rng.next() } }
                // float64 reference of the quantised product: sa·sw·Σ qa·qw, + bias, GELU, + C.
                var want = [Double](repeating: 0, count: m * n), scale = want
                for i in 0..<m {
                    for j in 0..<n {
                        var dot = 0, mag = 0
                        for p in 0..<k {
                            let prod = (Int(rowsQ[i].bytes[p]) - zero) * qw[j * k + p]
                            dot += prod
                            mag += abs(prod)
                        }
                        let f = Double(rowsQ[i].scale) * Double(sw[j])
                        var v = f * Double(dot), sc = f * Double(mag)
                        if useBias { v += Double(bias[j]); sc += abs(Double(bias[j])) }
                        if gelu { v = GEMMTests.geluRef(v) }
                        if accumulate {
                            v += Double(start[i * ldc + j])
                            sc += abs(Double(start[i * ldc + j])) + abs(v)
                        }
                        want[i * n + j] = v
                        scale[i * n + j] = sc
                    }
                }
                for kernel in Int8Kernel.available {
                    checked.insert(kernel)
                    let threads = [1, 2, nil][(index + variant) % 3]
                    var c = start
                    c.withUnsafeMutableBufferPointer { cp in
                        GEMM.linear(m: m, a: a, lda: lda, weight: weight, bias: useBias ? bias : nil,
                                    c: cp.baseAddress!, ldc: ldc, activation: gelu ? .gelu : .none,
                                    accumulate: accumulate, threads: threads, int8Kernel: kernel)
                    }
                    let what = "int8 \(kernel) zero \(zero) threads \(threads.map(String.init) ?? "auto") m=\(m) n=\(n) k=\(k) bias=\(useBias) gelu=\(gelu) accumulate=\(accumulate)"
                    var bad = 0, first = ""
                    for i in 0..<m {
                        for j in 0..<n {
                            let got = Double(c[i * ldc + j]), ref = want[i * n + j]
                            // The integer sum is exact; float: the int→float conversion, two
                            // products, the bias, the fast GELU (2e-7·max(1, |x|)) and the add.
                            let tol = 8 * GEMMTests.unitRoundoff * scale[i * n + j] + (gelu ? 4e-7 * max(1, abs(ref)) : 0) + 1e-30
                            let err = abs(got - ref) / tol
                            worst = max(worst, err.isNaN ? .infinity : abs(got - ref))
                            if !(err <= 1) { bad += 1; if first.isEmpty { first = "[\(i), \(j)] \(got) vs \(ref)" } }
                        }
                        for j in n..<ldc where c[i * ldc + j] != sentinel { bad += 1; first = "wrote past n at [\(i), \(j)]" }
                    }
                    XCTAssertEqual(bad, 0, "\(what): \(first)")
                }
            }
        }
        XCTAssertEqual(checked, Set(Int8Kernel.available))
        XCTAssertGreaterThan(worst, 0, "suspiciously exact")
        // Quantisation is really there: the int8 product differs from the float one.
        let w = rng.array(64 * 64), a = rng.array(64)
        var c8 = [Float](repeating: 0, count: 64), c32 = c8
        GEMM.linear(m: 1, a: a, lda: 64, weight: PackedWeight(weight: w, outFeatures: 64, inFeatures: 64, precision: .int8),
                    bias: nil, c: &c8, ldc: 64)
        GEMM.linear(m: 1, a: a, lda: 64, weight: PackedWeight(weight: w, outFeatures: 64, inFeatures: 64), bias: nil, c: &c32, ldc: 64)
        let d = maxAbsDiff(c8, c32)
        XCTAssertGreaterThan(d, 1e-4)
        XCTAssertLessThan(d, 0.1)
    }

    func testLinearInt8KZero() {
        let weight = PackedWeight(weight: [], outFeatures: 3, inFeatures: 0, precision: .int8)
        let bias: [Float] = [-1, 0.5, 2]
        for kernel in Int8Kernel.available {
            var c = [Float](repeating: .nan, count: 6)
            GEMM.linear(m: 2, a: [0], lda: 0, weight: weight, bias: bias, c: &c, ldc: 3, int8Kernel: kernel)
            XCTAssertEqual(c, bias + bias, "\(kernel)")
        }
    }

    /// `.int8` runs every Linear product of the blocks in int8 (fc2 with the GELU zero point)
    /// and attention as `.bf16`; `int8FC1` only fc1.
    func testPrecisionPlans() throws {
        let dir = try Reference.model("tiny")
        let config = try CedConfig.load(from: dir.appendingPathComponent("config.json"))
        let weights = try SafeTensorsFile(contentsOf: dir.appendingPathComponent("model.safetensors")).stateDict()
        let bf16: CedPrecision = CedPrecision.bf16.effective
        let model = try CedForAudioClassification(config: config, weights: weights, precision: .int8)
        XCTAssertEqual(model.plan, .int8)
        for block in model.encoder.blocks {
            for w in [block.attn.qkv.weight, block.attn.proj.weight, block.mlp.fc1.weight, block.mlp.fc2.weight] {
                XCTAssertEqual(w.precision, .int8)
            }
            XCTAssertEqual(block.mlp.fc2.weight.inputZeroPoint, 16)
            XCTAssertEqual(block.mlp.fc1.weight.inputZeroPoint, 128)
            XCTAssertEqual(block.attn.precision, bf16)
        }
        let mixed = try CedForAudioClassification(config: config, weights: weights, plan: .int8FC1(rest: .bf16))
        for block in mixed.encoder.blocks {
            XCTAssertEqual(block.mlp.fc1.weight.precision, .int8)
            XCTAssertEqual(block.mlp.fc2.weight.precision, bf16)
            XCTAssertEqual(block.attn.qkv.weight.precision, bf16)
            XCTAssertEqual(block.attn.proj.weight.precision, bf16)
            XCTAssertEqual(block.attn.precision, bf16)
        }
        XCTAssertEqual(CedPrecisionPlan.int8FC1(rest: .fp32).description, "fc1 int8, rest fp32")
    }

    /// Every plan `auto` may choose keeps the bound on the tiny goldens: max probability
    /// error ≤ 0.01, the same ordered top 5.
    func testAccuratePlansKeepTheBound() throws {
        for plan in CedPrecisionPlan.accurate where plan.isReduced {
            var worst: Float = 0
            for (name, got, want) in try BF16Tests.tinyGoldenOutputs(plan: plan) {
                let d = maxAbsDiff(got, want)
                worst = max(worst, d)
                XCTAssertLessThanOrEqual(d, 0.01, "tiny \(plan) \(name): max probability error")
                XCTAssertEqual(BF16Tests.topK(got, 5), BF16Tests.topK(want, 5), "tiny \(plan) \(name): top 5")
            }
            print("tiny \(plan): max |Δp| \(worst)")
            XCTAssertGreaterThan(worst, 1e-5, "\(plan) output identical to fp32")
        }
    }

    /// `.int8` everywhere is the fast, small mode, less accurate than the bound `auto`
    /// keeps: on the tiny goldens within 0.03 of float32 (ONNX Runtime's int8 of the same
    /// weights: 0.03) with the same top class.
    func testTinyInt8WithinItsDocumentedBound() throws {
        var worst: Float = 0
        for (name, got, want) in try BF16Tests.tinyGoldenOutputs(plan: .int8) {
            let d = maxAbsDiff(got, want)
            worst = max(worst, d)
            XCTAssertLessThanOrEqual(d, 0.03, "tiny int8 \(name): max probability error")
            XCTAssertEqual(BF16Tests.topK(got, 1), BF16Tests.topK(want, 1), "tiny int8 \(name): top class")
            print("tiny int8 \(name): max |Δp| \(d), top5 \(BF16Tests.topK(got, 5)) golden \(BF16Tests.topK(want, 5))")
        }
        XCTAssertGreaterThan(worst, 1e-3, "int8 model output close to fp32: is int8 really running?")
    }
}
