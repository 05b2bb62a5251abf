import Foundation

extension CedTrainingModel {
    /// Times each training product shape of CED-Tiny at batch 8 (hidden developer aid).
    public static func benchmarkProducts() throws {
        let rows = 1984, e = 192, h = 768
        func buf(_ n: Int) -> UnsafeMutablePointer<Float> {
            let p = UnsafeMutablePointer<Float>.allocate(capacity: n)
            for i in 0..<n { p[i] = Float(i % 97) * 0.01 - 0.3 }
            return p
        }
        let x = buf(rows * h), y = buf(rows * h * 3), w = buf(h * e * 3), dw = buf(h * e * 3)
        func time(_ name: String, flops: Double, _ body: () -> Void) {
            body()
            var best = Double.infinity
            for _ in 0..<10 {
                let t0 = DispatchTime.now().uptimeNanoseconds
                body()
                best = min(best, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
            }
            print(String(format: "%-28@ %8.3f ms  %6.1f GFLOP/s", name as NSString, best * 1e3, flops / best / 1e9))
        }
        for (label, out, inF) in [("qkv", 3 * e, e), ("proj", e, e), ("fc1", h, e), ("fc2", e, h)] {
            let f = 2.0 * Double(rows * out * inF)
            time("\(label) fwd x·Wᵀ", flops: f) {
                TrainingGEMM.forward(x: x, ldx: inF, rows: rows, weight: w, out: out, in: inF, bias: nil, y: y, ldy: out)
            }
            time("\(label) dX = dY·W", flops: f) {
                TrainingGEMM.backwardInput(dy: y, lddy: out, rows: rows, weight: w, out: out, in: inF, dx: x, lddx: inF, accumulate: false)
            }
            time("\(label) dW = dYᵀ·X", flops: f) {
                TrainingGEMM.backwardWeight(dy: y, lddy: out, x: x, ldx: inF, rows: rows, out: out, in: inF, dw: dw, accumulate: false)
            }
        }
        // Attention of one batch: 24 items of N = 248, d = 64.
        let config = { () -> CedConfig in var c = CedConfig(name: "ced-tiny"); c.pooling = .logit; return c }()
        let pl = TrainingPlan(config: config, batch: 8, frames: 1001)
        let qkv = buf(pl.rows * pl.ld3), probs = buf(8 * 3 * 248 * 248), ctx = buf(pl.rows * pl.ldE), dq = buf(pl.rows * pl.ld3)
        let af = 4.0 * Double(8 * 3 * 248 * 248 * 64)
        time("attention forward", flops: af) {
            TrainingAttention.forward(pl, qkv: qkv, probs: probs, context: ctx, dropout: 0, key: 1)
        }
        time("attention backward", flops: 2 * af) {
            TrainingAttention.backward(pl, qkv: qkv, probs: probs, dContext: ctx, dqkv: dq, dropout: 0, key: 1)
        }
    }
}
