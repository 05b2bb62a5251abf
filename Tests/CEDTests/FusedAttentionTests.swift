import Foundation
import XCTest
@testable import CED

/// `FusedAttention` (strip-wise Q·Kᵀ → softmax → P·V) against a float64 reference, on
/// every fp32 tile kernel and, when the CPU has AMX, in bf16.
final class FusedAttentionTests: XCTestCase {
    typealias Rand = GEMMTests.Rand
    static let u = GEMMTests.unitRoundoff

    struct Reference {
        var out: [Double]      // [sequences·tokens, C]
        var bound: [Double]    // per output: Σ_j P_ij |V_jc|
        var logitError: [Double]  // per query row: bound on the absolute error of its logits
        var maps: [Double]     // [sequences, heads, tokens, tokens]
    }

    /// `round` maps Q, K, V (and P) to what the kernel multiplies (identity for fp32).
    static func reference(_ qkv: [Float], sequences: Int, tokens n: Int, heads: Int, d: Int, scale: Float,
                          round: (Float) -> Float) -> Reference {
        let c = heads * d, ld = 3 * c
        var out = [Double](repeating: 0, count: sequences * n * c), bound = out
        var logitError = [Double](repeating: 0, count: sequences * heads * n)
        var maps = [Double](repeating: 0, count: sequences * heads * n * n)
        for s in 0..<sequences {
            for h in 0..<heads {
                for i in 0..<n {
                    let qi = s * n + i
                    var logits = [Double](repeating: 0, count: n)
                    var worst = 0.0
                    for j in 0..<n {
                        var dot = 0.0, mag = 0.0
                        for p in 0..<d {
                            let q = Double(round(qkv[qi * ld + h * d + p]))
                            let k = Double(round(qkv[(s * n + j) * ld + c + h * d + p]))
                            dot += q * k
                            mag += abs(q * k)
                        }
                        logits[j] = Double(scale) * dot
                        worst = max(worst, Double(scale) * mag)
                    }
                    logitError[(s * heads + h) * n + i] = 4 * u * (Double(d).squareRoot() + 2) * worst
                    let m = logits.max()!
                    let e = logits.map { Foundation.exp($0 - m) }
                    let sum = e.reduce(0, +)
                    for j in 0..<n { maps[((s * heads + h) * n + i) * n + j] = e[j] / sum }
                    for ch in 0..<d {
                        var acc = 0.0, mag = 0.0
                        for j in 0..<n {
                            let p = e[j] / sum
                            let v = Double(round(qkv[(s * n + j) * ld + 2 * c + h * d + ch]))
                            acc += Double(round(Float(p))) * v
                            mag += p * abs(v)
                        }
                        out[qi * c + h * d + ch] = acc
                        bound[qi * c + h * d + ch] = mag
                    }
                }
            }
        }
        return Reference(out: out, bound: bound, logitError: logitError, maps: maps)
    }

    /// Runs every kernel in `kernels` on one random problem (nil: the bf16 path, with
    /// `bf16Kernel`).
    func check(sequences: Int, tokens n: Int, heads: Int, d: Int, precision: CedPrecision,
               kernels: [GEMMKernel?], bf16Kernel: BF16Kernel? = nil, threads: Int?, rng: inout Rand) {
        let c = heads * d
        let qkv = rng.array(sequences * n * 3 * c).map { $0 * 3 }
        // The model folds the scale into q (scale 1); other callers pass head_dim^-0.5.
        let scale = (n + d) % 2 == 0 ? 1 : Float(1 / Double(d).squareRoot())
        let bf16 = precision != .fp32
        let ref = Self.reference(qkv, sequences: sequences, tokens: n, heads: heads, d: d, scale: scale,
                                 round: bf16 ? BF16Tests.bf16 : { $0 })
        for kernel in kernels {
            check(qkv, ref, sequences: sequences, tokens: n, heads: heads, d: d, scale: scale, precision: precision,
                  kernel: kernel, bf16Kernel: bf16Kernel, threads: threads)
        }
    }

    func check(_ qkv: [Float], _ ref: Reference, sequences: Int, tokens n: Int, heads: Int, d: Int, scale: Float,
               precision: CedPrecision, kernel: GEMMKernel?, bf16Kernel: BF16Kernel?, threads: Int?) {
        for withMaps in [true, false] {
            check(qkv, ref, sequences: sequences, tokens: n, heads: heads, d: d, scale: scale, precision: precision,
                  kernel: kernel, bf16Kernel: bf16Kernel, threads: threads, withMaps: withMaps)
        }
    }

    func check(_ qkv: [Float], _ ref: Reference, sequences: Int, tokens n: Int, heads: Int, d: Int, scale: Float,
               precision: CedPrecision, kernel: GEMMKernel?, bf16Kernel: BF16Kernel?, threads: Int?, withMaps: Bool) {
        let c = heads * d
        let bf16 = precision != .fp32
        let ldc = c + 3
        let sentinel: Float = -55
        var context = [Float](repeating: sentinel, count: sequences * n * ldc)
        var maps = [Float](repeating: .nan, count: sequences * heads * n * n)
        qkv.withUnsafeBufferPointer { q in
            context.withUnsafeMutableBufferPointer { cp in
                maps.withUnsafeMutableBufferPointer { mp in
                    FusedAttention.run(.init(sequences: sequences, tokens: n, heads: heads, headDim: d,
                                             qkvStride: 3 * c, contextStride: ldc),
                                       qkv: q.baseAddress!, scale: scale, context: cp.baseAddress!,
                                       maps: withMaps ? mp.baseAddress! : nil,
                                       precision: precision, kernel: kernel, bf16Kernel: bf16Kernel, threads: threads)
                }
            }
        }
        let what = "attention \(precision) \(kernel.map { "\($0)" } ?? "bf16 \(bf16Kernel.map { "\($0)" } ?? "best")") threads \(threads.map(String.init) ?? "auto") sequences \(sequences) tokens \(n) heads \(heads) d \(d) maps \(withMaps)"
        // Output: fp32 accumulation over n terms, the logits' error through the softmax
        // (relative 2·ε), and for bf16 one bf16 ulp of P.
        var worst = 0.0
        for row in 0..<sequences * n {
            for h in 0..<heads {
                let eps = ref.logitError[((row / n) * heads + h) * n + row % n]
                for ch in 0..<d {
                    let i = row * c + h * d + ch
                    var tol = (8 * Self.u * (Double(n).squareRoot() + 2) + 4 * eps) * ref.bound[i] + 1e-30
                    if bf16 { tol += 0x1p-8 * ref.bound[i] }
                    let err = abs(Double(context[row * ldc + h * d + ch]) - ref.out[i]) / tol
                    worst = max(worst, err.isNaN ? .infinity : err)
                }
            }
            for ch in c..<ldc { XCTAssertEqual(context[row * ldc + ch], sentinel, "\(what): wrote past the context columns") }
        }
        XCTAssertLessThanOrEqual(worst, 1, "\(what): error \(worst)× tolerance")
        if !withMaps { return }
        var worstMap = 0.0
        for s in 0..<sequences { for h in 0..<heads { for i in 0..<n {
            let eps = ref.logitError[(s * heads + h) * n + i]
            for j in 0..<n {
                let idx = ((s * heads + h) * n + i) * n + j
                let want = ref.maps[idx]
                let tol = (4 * eps + 8 * Self.u) * want + 1e-30
                let err = abs(Double(maps[idx]) - want) / tol
                worstMap = max(worstMap, err.isNaN ? .infinity : err)
            }
        } } }
        XCTAssertLessThanOrEqual(worstMap, 1, "\(what): attention maps error \(worstMap)× tolerance")
    }

    static let shapes: [(sequences: Int, tokens: Int, heads: Int, d: Int)] = [
        (1, 1, 1, 8), (1, 3, 2, 8), (2, 13, 1, 16), (1, 14, 3, 64), (1, 15, 2, 32), (2, 37, 3, 8),
        (1, 70, 2, 40), (1, 100, 2, 64),
    ]

    func testFP32EveryKernel() {
        var rng = Rand(state: 21)
        for (index, s) in Self.shapes.enumerated() {
            check(sequences: s.sequences, tokens: s.tokens, heads: s.heads, d: s.d, precision: .fp32,
                  kernels: GEMMKernel.available, threads: [1, 2, nil][index % 3], rng: &rng)
        }
    }

    /// bf16 attention on every bf16 kernel this CPU has (AMX 32-row strips, `vdpbf16ps`
    /// 14-row strips), and `.int8`, whose attention products are bf16 too.
    func testBF16EveryKernel() throws {
        if BF16Kernel.best == nil { throw XCTSkip("no bf16 kernel, or CED_BF16_KERNEL=none: bf16 attention runs in fp32") }
        var rng = Rand(state: 22)
        for kernel in BF16Kernel.available {
            for (index, s) in Self.shapes.enumerated() {
                check(sequences: s.sequences, tokens: s.tokens, heads: s.heads, d: s.d, precision: index % 4 == 3 ? .int8 : .bf16,
                      kernels: [nil], bf16Kernel: kernel, threads: [1, 2, nil][index % 3], rng: &rng)
            }
        }
    }
}
