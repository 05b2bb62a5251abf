import Foundation

// The Swift face of the matrix kernels. Everything here is row-major float32.
//
// PLACEHOLDER implementation (straightforward loops); the kernel layer replaces the
// bodies with packed, cache-blocked, multi-threaded code over the CEDKernels
// microkernels while keeping these signatures.

/// Activation applied in a GEMM epilogue.
public enum Activation: Sendable {
    case none
    /// Exact GELU, `0.5·x·(1 + erf(x/√2))` (PyTorch `nn.GELU()` default).
    case gelu
}

/// The weight of a `Linear` layer, `[outFeatures, inFeatures]` as PyTorch stores it,
/// prepared once at load time for repeated `x · Wᵀ` products.
public final class PackedWeight: @unchecked Sendable {
    public let outFeatures: Int
    public let inFeatures: Int
    /// Row-major `[outFeatures, inFeatures]` copy (the packed layout may differ).
    let rowMajor: [Float]

    public init(weight: [Float], outFeatures: Int, inFeatures: Int) {
        precondition(weight.count == outFeatures * inFeatures, "weight has \(weight.count) values, expected \(outFeatures)×\(inFeatures)")
        self.outFeatures = outFeatures
        self.inFeatures = inFeatures
        self.rowMajor = weight
    }
}

public enum GEMM {
    /// `C[i, j] = act(Σ_k A[i, k]·W[j, k] + bias[j])` for `i < m`, `j < W.outFeatures`,
    /// `k < W.inFeatures`; with `accumulate` the result is added to `C` instead of stored.
    public static func linear(
        m: Int, a: UnsafePointer<Float>, lda: Int,
        weight: PackedWeight, bias: UnsafePointer<Float>?,
        c: UnsafeMutablePointer<Float>, ldc: Int,
        activation: Activation = .none, accumulate: Bool = false
    ) {
        let n = weight.outFeatures, k = weight.inFeatures
        weight.rowMajor.withUnsafeBufferPointer { w in
            for i in 0..<m {
                let arow = a + i * lda
                for j in 0..<n {
                    let wrow = w.baseAddress! + j * k
                    var s: Float = 0
                    for p in 0..<k { s += arow[p] * wrow[p] }
                    if let bias { s += bias[j] }
                    if case .gelu = activation { s = geluExact(s) }
                    if accumulate { c[i * ldc + j] += s } else { c[i * ldc + j] = s }
                }
            }
        }
    }

    /// General row-major `C = α·op(A)·op(B) + β·C` with `op(A)` of size `m×k` and
    /// `op(B)` of size `k×n` (`transA`/`transB` read the stored matrix transposed).
    public static func sgemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        for i in 0..<m {
            for j in 0..<n {
                var s: Float = 0
                for p in 0..<k {
                    let av = transA ? a[p * lda + i] : a[i * lda + p]
                    let bv = transB ? b[j * ldb + p] : b[p * ldb + j]
                    s += av * bv
                }
                let prev = beta == 0 ? 0 : beta * c[i * ldc + j]
                c[i * ldc + j] = alpha * s + prev
            }
        }
    }
}

@inline(__always)
func geluExact(_ x: Float) -> Float {
    0.5 * x * (1 + erff(x * 0.70710678118654752))
}
