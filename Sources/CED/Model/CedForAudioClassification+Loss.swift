import Foundation

/// The labels of one example.
public enum CedClassificationLabels: Sendable, Equatable {
    /// One class index (upstream's `labels`: class ids, one-hot encoded for BCE).
    case classIndex(Int)
    /// `[outputdim]` targets in [0, 1]: multi-hot (several classes) or soft targets. For
    /// softmax cross-entropy they must sum to 1.
    case targets([Float])
}

/// What `CedForAudioClassification.forward(_:labels:loss:)` returns.
public struct CedClassificationLossOutput: Sendable {
    /// The ordinary forward output (Hugging Face semantics): scores, per-chunk scores.
    public var output: CedClassificationOutput
    /// `[outputdim]` head outputs before the sigmoid (the logit losses' input); nil for
    /// `dm` pooling, whose per-step scores are averaged as probabilities.
    public var logits: Tensor?
    /// The loss (mean over classes for the binary losses).
    public var loss: Float
}

extension CedForAudioClassification {
    /// The forward pass with a loss, as upstream's `forward(input_values, labels=...)`:
    /// the output under the Hugging Face semantics (`CedChunking.hf`) and the loss against
    /// `labels`, computed by the same `CedLoss` and head as training. `loss` nil:
    /// BCE-with-logits on the head's logits (upstream's `forward(labels=)` loss; unlike
    /// upstream, which applies it to the already sigmoid-ed scores of `mean`/`token`
    /// pooling, it takes the logits), or BCE on the probabilities for `dm` pooling, whose
    /// scores are averages of per-step probabilities.
    ///
    /// Throws `CedInputError` for a class index outside `0..<outputdim`, targets of the
    /// wrong length, outside [0, 1], or (for softmax cross-entropy) not summing to 1, and
    /// for a loss the pooling cannot give (`CedLoss.check`).
    public func forward(_ mel: Tensor, labels: CedClassificationLabels, loss: CedLoss? = nil) throws -> CedClassificationLossOutput {
        let loss = loss ?? (config.pooling == .dm ? .bce : .bceWithLogits)
        try loss.check(pooling: config.pooling)
        let targets = try targetVector(labels)
        try loss.checkTargets(targets, batch: 1, classes: config.outputdim)
        let input = try encoder.prepare(mel)
        let n = config.outputdim
        let (output, logits) = encoder.workspaces.with { ws -> (CedClassificationOutput, [Float]?) in
            let pooled = encoder.encodePooled(input, workspace: ws)
            let (scores, chunkScores) = headOutputs(pooled, chunking: .hf, workspace: ws)
            let output = CedClassificationOutput(scores: scores, chunkScores: chunkScores, chunks: input.chunks, encoder: nil)
            if config.pooling == .dm { return (output, nil) }
            // The head before its activation, on the pooled mean over all chunks (as `.hf`).
            let z = [Float](unsafeUninitializedCapacity: n) { buffer, initialized in
                head(meanPooled(pooled.count, workspace: ws), into: buffer.baseAddress!, workspace: ws, activate: false)
                initialized = n
            }
            return (output, z)
        }
        let outputs = loss == .bce ? output.scores.scalars : logits!
        var grad = [Float](repeating: 0, count: n)
        let value = loss.value(outputs, targets: targets, rows: 1, classes: n, grad: &grad)
        return CedClassificationLossOutput(output: output, logits: logits.map { Tensor(shape: [n], scalars: $0) }, loss: Float(value))
    }

    /// The mean loss over a batch of spectrograms (any lengths), one label each, as
    /// upstream's batched `forward(labels=...)` (BCE: mean over examples and classes).
    public func loss(_ mels: [Tensor], labels: [CedClassificationLabels], loss: CedLoss? = nil) throws -> Float {
        guard mels.count == labels.count, !mels.isEmpty else {
            throw CedInputError("need one label per spectrogram (got \(mels.count) spectrograms, \(labels.count) labels)")
        }
        var total = 0.0
        for (m, l) in zip(mels, labels) { total += Double(try forward(m, labels: l, loss: loss).loss) }
        return Float(total / Double(mels.count))
    }

    func targetVector(_ labels: CedClassificationLabels) throws -> [Float] {
        let n = config.outputdim
        switch labels {
        case .classIndex(let i):
            guard i >= 0 && i < n else { throw CedInputError("label \(i) is outside the model's classes 0..<\(n)") }
            var t = [Float](repeating: 0, count: n)
            t[i] = 1
            return t
        case .targets(let t):
            guard t.count == n else { throw CedInputError("targets have \(t.count) values but the model has \(n) classes") }
            return t
        }
    }
}
