import Foundation

/// The loss between a model's outputs `[B, C]` and targets in [0, 1], for training (every
/// kind: fine-tuning, head training, distillation) and for
/// `CedForAudioClassification.forward(_:labels:loss:)`. Every one is the mean over the
/// batch (and, for the binary ones, over the classes), as torch's defaults.
public enum CedLoss: String, Sendable, CaseIterable, Codable {
    /// `nn.BCELoss` on the probabilities (the sigmoid of the head; for `dm` pooling the
    /// mean over time of the per-step sigmoids): the loss upstream trains `mean`/`token`
    /// models with. Logs are clamped at −100 as torch does.
    case bce
    /// `nn.BCEWithLogitsLoss` on the head's raw outputs (upstream's loss for `logit`
    /// pooling; multi-label head training).
    case bceWithLogits = "bce_with_logits"
    /// `nn.CrossEntropyLoss` on the head's raw outputs with (soft) class-probability targets
    /// that sum to 1 per example: single-label classification.
    case softmaxCrossEntropy = "cross_entropy"

    /// Upstream's training loss for a pooling: BCE-with-logits for `logit`, BCE on
    /// probabilities otherwise.
    public static func automatic(for pooling: CedPooling) -> CedLoss {
        pooling == .logit ? .bceWithLogits : .bce
    }

    /// Also reads the spellings of earlier versions' reports (`bceWithLogits`,
    /// `softmaxCrossEntropy`).
    public init(from decoder: Decoder) throws {
        let raw = try decoder.singleValueContainer().decode(String.self)
        switch raw {
        case "bceWithLogits": self = .bceWithLogits
        case "softmaxCrossEntropy": self = .softmaxCrossEntropy
        default:
            guard let v = CedLoss(rawValue: raw) else {
                throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                                                        debugDescription: "unknown loss '\(raw)' (bce, bce_with_logits, cross_entropy)"))
            }
            self = v
        }
    }

    /// Throws `CedInputError` when a model with this pooling cannot be trained with this
    /// loss: BCE on probabilities needs a sigmoid head, the logit losses need logits.
    public func check(pooling: CedPooling) throws {
        switch self {
        case .bce where pooling == .logit:
            throw CedInputError("BCE on probabilities needs a sigmoid head, but 'logit' pooling outputs raw logits; use bce_with_logits")
        case .bceWithLogits where pooling == .dm:
            throw CedInputError("'dm' pooling averages per-step probabilities, so it has no clip logits; use BCE")
        case .softmaxCrossEntropy where pooling == .dm:
            throw CedInputError("softmax cross-entropy needs logits, but 'dm' pooling averages per-step probabilities; use BCE")
        default:
            return
        }
    }

    /// Checks a batch of targets `[batch, classes]` (row-major): values in [0, 1], rows
    /// summing to 1 for softmax cross-entropy. Throws `CedInputError` naming the row.
    func checkTargets(_ t: [Float], batch: Int, classes c: Int) throws {
        guard t.count == batch * c else {
            throw CedInputError("targets have \(t.count) values, expected \(batch) × \(c) (one row of \(c) class targets per clip)")
        }
        if let bad = t.firstIndex(where: { !($0 >= 0 && $0 <= 1) }) {
            throw CedInputError("target [\(bad / c), \(bad % c)] is \(t[bad]), outside [0, 1]")
        }
        if self == .softmaxCrossEntropy {
            for b in 0..<batch {
                var s = 0.0
                for j in 0..<c { s += Double(t[b * c + j]) }
                if abs(s - 1) > 1e-4 {
                    throw CedInputError("softmax cross-entropy targets must sum to 1 per clip, clip \(b)'s sum to \(s)")
                }
            }
        }
    }

    /// The loss of outputs `[rows, classes]` (probabilities for `.bce`, logits otherwise)
    /// and its gradient with respect to them, into `grad`.
    func value(_ outputs: UnsafePointer<Float>, targets: UnsafePointer<Float>, rows: Int, classes: Int,
               grad: UnsafeMutablePointer<Float>) -> Double {
        switch self {
        case .bce: return LossMath.bce(probabilities: outputs, targets: targets, count: rows * classes, grad: grad)
        case .bceWithLogits: return LossMath.bceWithLogits(logits: outputs, targets: targets, count: rows * classes, grad: grad)
        case .softmaxCrossEntropy:
            return LossMath.softmaxCrossEntropy(logits: outputs, targets: targets, rows: rows, classes: classes, grad: grad)
        }
    }
}

/// Loss values and their gradients with respect to the head's outputs, in float32 with the
/// formulas torch's CPU kernels use (so saturated probabilities behave the same).
enum LossMath {
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
