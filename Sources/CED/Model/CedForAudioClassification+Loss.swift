import Foundation

/// The loss `CedForAudioClassification` computes when labels are given.
public enum CedLossFunction: String, Sendable, CaseIterable, Codable {
    /// `nn.BCEWithLogitsLoss()` (mean over examples and classes): multi-label tagging, the
    /// default, as upstream's `forward(labels=...)`.
    case bceWithLogits
    /// `nn.CrossEntropyLoss()` (softmax over classes, mean over examples): single-label
    /// classification.
    case softmaxCrossEntropy
}

/// The labels of one example.
public enum CedClassificationLabels: Sendable, Equatable {
    /// One class index (upstream's `labels`: class ids, one-hot encoded for BCE).
    case classIndex(Int)
    /// `[outputdim]` targets in [0, 1]: multi-hot (several classes) or soft targets. For
    /// softmax cross-entropy they must sum to 1.
    case targets([Float])
}

/// What `CedForAudioClassification.forward(_:labels:lossFunction:)` returns.
public struct CedClassificationLossOutput: Sendable {
    /// The ordinary forward output (Hugging Face semantics): scores, per-chunk scores.
    public var output: CedClassificationOutput
    /// `[outputdim]` head outputs before the sigmoid (the loss's input); nil for `dm`
    /// pooling, whose per-step logits are averaged as probabilities.
    public var headLogits: Tensor?
    /// The loss (mean over classes for BCE, as `nn.BCEWithLogitsLoss`).
    public var loss: Float
}

/// The loss functions on raw head outputs, row-major `[examples, classes]`, with their
/// gradients, in float64 (the form head training uses; float inputs convert exactly).
public enum CedLoss {
    /// `nn.BCEWithLogitsLoss` (mean over every element): loss and dLoss/dLogits.
    /// `targets` has the same layout as `logits`.
    public static func bceWithLogits(logits: [Double], targets: [Double]) -> (loss: Double, gradient: [Double]) {
        precondition(logits.count == targets.count, "logits and targets differ in size")
        let n = Double(max(logits.count, 1))
        var loss = 0.0
        var grad = [Double](repeating: 0, count: logits.count)
        for i in logits.indices {
            let z = logits[i], y = targets[i]
            // max(z, 0) − z·y + log(1 + e^−|z|), the stable form PyTorch uses.
            loss += max(z, 0) - z * y + Foundation.log1p(Foundation.exp(-abs(z)))
            grad[i] = (sigmoid(z) - y) / n
        }
        return (loss / n, grad)
    }

    /// `nn.CrossEntropyLoss` with probability targets (one-hot for class indices), mean
    /// over the `rows` examples: loss and dLoss/dLogits.
    public static func softmaxCrossEntropy(logits: [Double], targets: [Double], classes: Int) -> (loss: Double, gradient: [Double]) {
        precondition(classes > 0 && logits.count % classes == 0 && logits.count == targets.count, "bad logits/targets layout")
        let rows = logits.count / classes
        var loss = 0.0
        var grad = [Double](repeating: 0, count: logits.count)
        for r in 0..<rows {
            let base = r * classes
            var m = -Double.infinity
            for k in 0..<classes { m = max(m, logits[base + k]) }
            var sum = 0.0
            for k in 0..<classes { sum += Foundation.exp(logits[base + k] - m) }
            let logSum = m + Foundation.log(sum)
            var ySum = 0.0
            for k in 0..<classes {
                let y = targets[base + k]
                loss -= y * (logits[base + k] - logSum)
                ySum += y
            }
            for k in 0..<classes {
                let p = Foundation.exp(logits[base + k] - logSum)
                grad[base + k] = (p * ySum - targets[base + k]) / Double(rows)
            }
        }
        return (loss / Double(max(rows, 1)), grad)
    }

    /// `nn.BCELoss` on probabilities (logs clamped at −100 as PyTorch does), mean over
    /// every element.
    public static func binaryCrossEntropy(probabilities: [Double], targets: [Double]) -> Double {
        precondition(probabilities.count == targets.count, "probabilities and targets differ in size")
        var loss = 0.0
        for (p, y) in zip(probabilities, targets) {
            loss -= y * max(Foundation.log(p), -100) + (1 - y) * max(Foundation.log(1 - p), -100)
        }
        return loss / Double(max(probabilities.count, 1))
    }

    @inline(__always) static func sigmoid(_ z: Double) -> Double {
        z >= 0 ? 1 / (1 + Foundation.exp(-z)) : Foundation.exp(z) / (1 + Foundation.exp(z))
    }
}

extension CedForAudioClassification {
    /// The forward pass with a loss, as upstream's `forward(input_values, labels=...)`:
    /// the output under the Hugging Face semantics (`CedChunking.hf`) and the loss against
    /// `labels`, BCE-with-logits by default or softmax cross-entropy for single-label
    /// classification.
    ///
    /// Unlike upstream, which applies `BCEWithLogitsLoss` to the already sigmoid-ed scores
    /// of `mean`/`token` pooling, the loss here takes the head's outputs before the
    /// sigmoid (the logits), which is what a BCE-with-logits loss means. For `logit`
    /// pooling the two agree. For `dm` pooling, whose scores are averages of per-step
    /// probabilities, BCE is computed on those probabilities (`nn.BCELoss`), and softmax
    /// cross-entropy is not available.
    ///
    /// Throws `CedInputError` for a class index outside `0..<outputdim` or targets of the
    /// wrong length, outside [0, 1], or (for softmax cross-entropy) not summing to 1.
    public func forward(_ mel: Tensor, labels: CedClassificationLabels,
                        lossFunction: CedLossFunction = .bceWithLogits) throws -> CedClassificationLossOutput {
        let targets = try targetVector(labels, lossFunction: lossFunction)
        let input = try encoder.prepare(mel)
        let n = config.outputdim
        let (output, headLogits) = encoder.workspaces.with { ws -> (CedClassificationOutput, [Float]?) in
            let pooled = encodePooled(input, workspace: ws)
            let (combined, perChunk) = headOutputs(pooled, chunking: .hf, workspace: ws)
            let output = CedClassificationOutput(logits: combined, chunkLogits: perChunk, chunks: input.chunks, encoder: nil)
            if config.pooling == .dm { return (output, nil) }
            // The head before the sigmoid, on the pooled mean over all chunks (as `.hf`).
            let z = [Float](unsafeUninitializedCapacity: n) { buffer, initialized in
                applyHead(meanPooled(pooled, workspace: ws), into: buffer.baseAddress!, sigmoid: false, workspace: ws)
                initialized = n
            }
            return (output, z)
        }
        guard let z = headLogits else {
            guard lossFunction == .bceWithLogits else {
                throw CedInputError("softmax cross-entropy needs logits, but 'dm' pooling averages per-step probabilities; use BCE")
            }
            let loss = CedLoss.binaryCrossEntropy(probabilities: output.logits.scalars.map(Double.init), targets: targets)
            return CedClassificationLossOutput(output: output, headLogits: nil, loss: Float(loss))
        }
        let zd = z.map(Double.init)
        let loss = lossFunction == .bceWithLogits
            ? CedLoss.bceWithLogits(logits: zd, targets: targets).loss
            : CedLoss.softmaxCrossEntropy(logits: zd, targets: targets, classes: config.outputdim).loss
        return CedClassificationLossOutput(output: output, headLogits: Tensor(shape: [z.count], scalars: z), loss: Float(loss))
    }

    /// The mean loss over a batch of spectrograms (any lengths), one label each, as
    /// upstream's batched `forward(labels=...)` (BCE: mean over examples and classes).
    public func loss(_ mels: [Tensor], labels: [CedClassificationLabels],
                     lossFunction: CedLossFunction = .bceWithLogits) throws -> Float {
        guard mels.count == labels.count, !mels.isEmpty else {
            throw CedInputError("need one label per spectrogram (got \(mels.count) spectrograms, \(labels.count) labels)")
        }
        var total = 0.0
        for (m, l) in zip(mels, labels) { total += Double(try forward(m, labels: l, lossFunction: lossFunction).loss) }
        return Float(total / Double(mels.count))
    }

    func targetVector(_ labels: CedClassificationLabels, lossFunction: CedLossFunction) throws -> [Double] {
        let n = config.outputdim
        switch labels {
        case .classIndex(let i):
            guard i >= 0 && i < n else { throw CedInputError("label \(i) is outside the model's classes 0..<\(n)") }
            var t = [Double](repeating: 0, count: n)
            t[i] = 1
            return t
        case .targets(let t):
            guard t.count == n else { throw CedInputError("targets have \(t.count) values but the model has \(n) classes") }
            if let bad = t.firstIndex(where: { !($0 >= 0 && $0 <= 1) }) {
                throw CedInputError("target \(bad) is \(t[bad]), outside [0, 1]")
            }
            if lossFunction == .softmaxCrossEntropy {
                let s = t.reduce(0.0) { $0 + Double($1) }
                guard abs(s - 1) < 1e-4 else { throw CedInputError("softmax cross-entropy targets must sum to 1, they sum to \(s)") }
            }
            return t.map(Double.init)
        }
    }
}
