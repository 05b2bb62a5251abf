import XCTest
@testable import CED

/// LayerNorm and softmax kernels, every CPU variant, against float64 references.
final class RowKernelTests: XCTestCase {
    struct Rng {
        var s: UInt64
        mutating func next() -> Double {
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return Double(s >> 11) / Double(1 << 53)
        }
    }

    func testSoftmaxAllVariants() {
        var rng = Rng(s: 1)
        for kernel in GEMMKernel.available {
            for cols in [1, 2, 7, 15, 16, 17, 33, 64, 248, 253] {
                let rows = 5
                var x = (0..<rows * cols).map { _ in Float(rng.next() * 60 - 30) }
                // Peaky rows: differences far below exp's underflow, and a row with -inf.
                x[0] = 200
                if cols > 3 { x[cols + 1] = -1e30; x[2 * cols + 2] = -.infinity }
                var y = x
                y.withUnsafeMutableBufferPointer { RowKernels.softmax($0.baseAddress!, rows: rows, cols: cols, kernel: kernel) }
                for r in 0..<rows {
                    let row = Array(x[r * cols ..< (r + 1) * cols])
                    let m = row.max()!
                    // The argument x − max is a float32 difference in every implementation
                    // (PyTorch too); the kernel's own error is in exp and the normalisation.
                    let e = row.map { Foundation.exp(Double($0 - m)) }
                    let s = e.reduce(0, +)
                    for j in 0..<cols {
                        let expect = e[j] / s
                        let got = Double(y[r * cols + j])
                        XCTAssertEqual(got, expect, accuracy: 1e-6 * expect + 1e-37, "\(kernel) cols \(cols) [\(r), \(j)]")
                    }
                    XCTAssertEqual(y[r * cols ..< (r + 1) * cols].reduce(0, +), 1, accuracy: 1e-5)
                }
            }
        }
    }

    func testLayerNormAllVariants() {
        var rng = Rng(s: 2)
        for kernel in GEMMKernel.available {
            for cols in [1, 3, 16, 17, 48, 64, 192, 200, 768] {
                let rows = 4
                let x = (0..<rows * cols).map { _ in Float(rng.next() * 20 - 7) }
                let w = (0..<cols).map { _ in Float(rng.next() + 0.5) }
                let b = (0..<cols).map { _ in Float(rng.next() - 0.5) }
                var y = [Float](repeating: 0, count: x.count)
                x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in b.withUnsafeBufferPointer { bp in
                    y.withUnsafeMutableBufferPointer { yp in
                        RowKernels.layerNorm(xp.baseAddress!, rows: rows, cols: cols, weight: wp.baseAddress!, bias: bp.baseAddress!,
                                             eps: 1e-6, into: yp.baseAddress!, kernel: kernel)
                    }
                }}}
                // In place gives the same.
                var z = x
                w.withUnsafeBufferPointer { wp in b.withUnsafeBufferPointer { bp in
                    z.withUnsafeMutableBufferPointer { zp in
                        RowKernels.layerNorm(zp.baseAddress!, rows: rows, cols: cols, weight: wp.baseAddress!, bias: bp.baseAddress!,
                                             eps: 1e-6, into: zp.baseAddress!, kernel: kernel)
                    }
                }}
                XCTAssertEqual(z, y)
                for r in 0..<rows {
                    let row = x[r * cols ..< (r + 1) * cols].map(Double.init)
                    let mean = row.reduce(0, +) / Double(cols)
                    let variance = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(cols)
                    for j in 0..<cols {
                        let expect = (row[j] - mean) / (variance + 1e-6).squareRoot() * Double(w[j]) + Double(b[j])
                        XCTAssertEqual(Double(y[r * cols + j]), expect, accuracy: 2e-5 * (1 + abs(expect)), "\(kernel) cols \(cols)")
                    }
                }
            }
        }
    }

    /// LayerNorm into a strided output (the encoder pads rows of 256/768/1024/3072 floats):
    /// the same values as contiguous, the padding untouched, split across threads or not.
    func testLayerNormParallelStridedOutput() {
        var rng = Rng(s: 3)
        for (rows, cols) in [(5, 256), (300, 768), (70, 192)] {
            let ldy = GEMMDriver.activationStride(cols) + (cols == 192 ? 16 : 0)
            XCTAssertGreaterThan(ldy, cols)
            let x = (0..<rows * cols).map { _ in Float(rng.next() * 20 - 7) }
            let w = (0..<cols).map { _ in Float(rng.next() + 0.5) }
            let b = (0..<cols).map { _ in Float(rng.next() - 0.5) }
            var dense = [Float](repeating: 0, count: rows * cols)
            var strided = [Float](repeating: -9, count: rows * ldy)
            x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in b.withUnsafeBufferPointer { bp in
                dense.withUnsafeMutableBufferPointer { dp in
                    RowKernels.layerNorm(xp.baseAddress!, rows: rows, cols: cols, weight: wp.baseAddress!, bias: bp.baseAddress!,
                                         eps: 1e-6, into: dp.baseAddress!)
                }
                strided.withUnsafeMutableBufferPointer { sp in
                    RowKernels.layerNormParallel(xp.baseAddress!, rows: rows, cols: cols, weight: wp.baseAddress!,
                                                 bias: bp.baseAddress!, eps: 1e-6, into: sp.baseAddress!, ldy: ldy)
                }
            }}}
            for r in 0..<rows {
                XCTAssertEqual(Array(strided[r * ldy ..< r * ldy + cols]), Array(dense[r * cols ..< (r + 1) * cols]), "row \(r) of \(cols)")
                XCTAssertTrue(strided[r * ldy + cols ..< (r + 1) * ldy].allSatisfy { $0 == -9 }, "padding of row \(r)")
            }
        }
    }
}
