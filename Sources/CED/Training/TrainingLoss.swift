import Foundation

/// The loss a training step minimises, on the head's outputs `[B, C]`; every one is the
/// mean over the batch (and, for the binary ones, over the classes), as torch's defaults.
public enum CedTrainingLoss: String, Sendable, CaseIterable, Codable {
    /// `nn.BCELoss` on the probabilities (the sigmoid of the head; for `dm` pooling the
    /// mean over time of the per-step sigmoids): the loss upstream trains `mean`/`token`
    /// models with. Logs are clamped at −100 as torch does.
    case bce
    /// `nn.BCEWithLogitsLoss` on the head's raw outputs (upstream's loss for `logit` pooling).
    case bceWithLogits = "bce_with_logits"
    /// `nn.CrossEntropyLoss` on the head's raw outputs with (soft) class-probability targets
    /// that sum to 1 per example: single-label classification.
    case softmaxCrossEntropy = "cross_entropy"

    /// Upstream's loss for a pooling: BCE-with-logits for `logit`, BCE on probabilities otherwise.
    public static func automatic(for pooling: CedPooling) -> CedTrainingLoss {
        pooling == .logit ? .bceWithLogits : .bce
    }
}

/// Loss values and their gradients with respect to the head's outputs, in float32 with the
/// formulas torch's CPU kernels use (so saturated probabilities behave the same).
enum TrainingLossMath {
    /// `nn.BCELoss` (mean): value, and `dL/dp` for probabilities `p` into `grad`.
    static func bce(probabilities p: UnsafePointer<Float>, targets y: UnsafePointer<Float>, count n: Int,
                    weight: Float = 1, grad: UnsafeMutablePointer<Float>) -> Double {
        var total = 0.0
        let scale = weight / Float(n)
        for i in 0..<n {
            let pi = p[i], yi = y[i]
            let logP = max(Foundation.log(Double(pi)), -100), log1mP = max(Foundation.log(Double(1 - pi)), -100)
            total -= Double(yi) * logP + Double(1 - yi) * log1mP
            // torch: grad · (p − y) / max((1 − p)·p, 1e-12)
            grad[i] = scale * (pi - yi) / max((1 - pi) * pi, 1e-12)
        }
        return total / Double(n)
    }

    /// `nn.BCEWithLogitsLoss` (mean): value and `dL/dz` into `grad`.
    static func bceWithLogits(logits z: UnsafePointer<Float>, targets y: UnsafePointer<Float>, count n: Int,
                              grad: UnsafeMutablePointer<Float>) -> Double {
        var total = 0.0
        let scale = 1 / Float(n)
        for i in 0..<n {
            let zi = Double(z[i]), yi = Double(y[i])
            // (1 − y)·z + log(1 + exp(−z)), stable: max(z, 0) − y·z + log1p(exp(−|z|))
            total += max(zi, 0) - yi * zi + Foundation.log1p(Foundation.exp(-abs(zi)))
            let s = 1 / (1 + expf(-z[i]))
            grad[i] = scale * (s - y[i])
        }
        return total / Double(n)
    }

    /// `nn.CrossEntropyLoss` with probability targets (mean over `rows` examples): value
    /// and `dL/dz` into `grad`.
    static func softmaxCrossEntropy(logits z: UnsafePointer<Float>, targets y: UnsafePointer<Float>, rows: Int, classes c: Int,
                                    grad: UnsafeMutablePointer<Float>) -> Double {
        var total = 0.0
        for r in 0..<rows {
            let zr = z + r * c, yr = y + r * c, g = grad + r * c
            var m = -Double.infinity
            for j in 0..<c { m = max(m, Double(zr[j])) }
            var sum = 0.0
            for j in 0..<c { sum += Foundation.exp(Double(zr[j]) - m) }
            let logSum = m + Foundation.log(sum)
            var ySum = 0.0
            for j in 0..<c {
                total -= Double(yr[j]) * (Double(zr[j]) - logSum)
                ySum += Double(yr[j])
            }
            for j in 0..<c {
                g[j] = Float((Foundation.exp(Double(zr[j]) - logSum) * ySum - Double(yr[j])) / Double(rows))
            }
        }
        return total / Double(rows)
    }
}
