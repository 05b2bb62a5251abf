import Foundation

/// Hyperparameters of head training.
public struct HeadTrainingOptions: Sendable, Codable, Equatable {
    /// Maximum number of passes over the training split.
    public var epochs: Int = 100
    /// Adam step size.
    public var learningRate: Double = 1e-3
    /// Decoupled weight decay (AdamW) on the Linear weight.
    public var weightDecay: Double = 1e-2
    /// Examples per mini-batch (the last batch of an epoch may be smaller).
    public var batchSize: Int = 32
    /// Fraction of each class held out for validation (0: no validation, no early stopping).
    public var validationSplit: Double = 0.2
    /// Stop after this many epochs without a lower validation loss (0: never stop early).
    public var patience: Int = 10
    /// Seeds the split, the initial weights and the batch order: the same seed and data
    /// give a bit-identical head.
    public var seed: UInt64 = 0
    /// Several labels per example: sigmoid outputs trained with BCE. Otherwise one label
    /// per example, trained with softmax cross-entropy.
    public var multiLabel: Bool = false

    public init(epochs: Int = 100, learningRate: Double = 1e-3, weightDecay: Double = 1e-2, batchSize: Int = 32,
                validationSplit: Double = 0.2, patience: Int = 10, seed: UInt64 = 0, multiLabel: Bool = false) {
        self.epochs = epochs
        self.learningRate = learningRate
        self.weightDecay = weightDecay
        self.batchSize = batchSize
        self.validationSplit = validationSplit
        self.patience = patience
        self.seed = seed
        self.multiLabel = multiLabel
    }

    /// The loss the options imply.
    public var lossFunction: CedLossFunction { multiLabel ? .bceWithLogits : .softmaxCrossEntropy }

    /// Throws `TrainingError` (`.invalidOption`) naming the first value out of range.
    public func validate() throws {
        func bad(_ name: String, _ why: String) -> TrainingError { TrainingError(.invalidOption, reason: "\(name) \(why)") }
        if epochs < 1 { throw bad("epochs", "must be at least 1, found \(epochs)") }
        if !(learningRate > 0) || !learningRate.isFinite { throw bad("learning rate", "must be a positive number, found \(learningRate)") }
        if !(weightDecay >= 0) || !weightDecay.isFinite { throw bad("weight decay", "must be a number ≥ 0, found \(weightDecay)") }
        if batchSize < 1 { throw bad("batch size", "must be at least 1, found \(batchSize)") }
        if !(validationSplit >= 0 && validationSplit < 1) { throw bad("validation split", "must lie in [0, 1), found \(validationSplit)") }
        if patience < 0 { throw bad("patience", "must be ≥ 0, found \(patience)") }
    }
}

/// The outcome of `HeadTrainer.train`.
public struct TrainedHead: Sendable {
    /// The kept head (lowest validation loss), float64.
    public var head: ClassificationHead
    /// Class names in output order.
    public var classes: [String]
    /// Indices (into the training vectors) of the training and validation examples.
    public var trainIndices: [Int]
    public var validationIndices: [Int]
    /// The model's scores for every evaluation example (validation, or training without
    /// validation), in `evaluationIndices` order, computed from the float32 head exactly as
    /// `CedForAudioClassification` computes them: a model saved with this head gives these
    /// very numbers for those files.
    public var evaluationScores: [[Float]]
    public var evaluationIndices: [Int]
    public var report: TrainingReport

    /// The head as `outputlayer.*` float32 tensors.
    public var stateDict: [String: Tensor] { head.stateDict() }
}

/// Trains a new classification head (`outputlayer`: LayerNorm + Linear) on clip vectors
/// from a frozen CED encoder (`CedEmbedder`): softmax cross-entropy for single-label data
/// or BCE-with-logits for multi-label data, AdamW, shuffled mini-batches, and early
/// stopping on a validation split that is stratified by class (multi-label: by each
/// example's rarest label, moving examples back so every class keeps one for training).
///
/// Everything random comes from `TrainingRandom` seeded by `options.seed` (separate
/// streams for the split, the initial weights and the batch order), and all arithmetic is
/// sequential float64, so equal inputs and options give a bit-identical head.
public struct HeadTrainer: Sendable {
    public var options: HeadTrainingOptions

    public init(options: HeadTrainingOptions = .init()) {
        self.options = options
    }

    /// Trains on `vectors` (one per example, all of one length) with `labels` (class
    /// indices into `classes`; exactly one each unless multi-label). `pooling` decides how
    /// scores are reported (sigmoid, or raw logits for `logit`). `progress` is called after
    /// every epoch.
    public func train(vectors: [[Float]], labels: [[Int]], classes: [String], pooling: CedPooling = .mean,
                      progress: ((EpochReport) -> Void)? = nil) throws -> TrainedHead {
        try options.validate()
        let n = vectors.count, k = classes.count
        guard n > 0, labels.count == n else {
            throw TrainingError(.emptyDataset, reason: "need one label set per vector (\(n) vectors, \(labels.count) label sets)")
        }
        guard k >= 2 else { throw TrainingError(.notEnoughExamples, reason: "training needs at least 2 classes, found \(k)") }
        let d = vectors[0].count
        guard d > 0, vectors.allSatisfy({ $0.count == d }) else {
            throw TrainingError(.invalidOption, reason: "all vectors must have the same, non-zero length")
        }
        if let bad = vectors.firstIndex(where: { !$0.allSatisfy(\.isFinite) }) {
            throw TrainingError(.invalidOption, reason: "vector \(bad) has a non-finite value")
        }
        for (i, l) in labels.enumerated() {
            guard !l.isEmpty, l.allSatisfy({ $0 >= 0 && $0 < k }) else {
                throw TrainingError(.invalidOption, reason: "example \(i) has labels \(l), expected class indices in 0..<\(k)")
            }
            if !options.multiLabel && l.count != 1 {
                throw TrainingError(.invalidOption, reason: "example \(i) has \(l.count) labels; single-label training takes one (use multi-label)")
            }
        }
        let counts = (0..<k).map { c in labels.filter { $0.contains(c) }.count }
        let needed = options.validationSplit > 0 ? 2 : 1
        if let c = counts.firstIndex(where: { $0 < needed }) {
            throw TrainingError(.notEnoughExamples,
                                reason: "class '\(classes[c])' has \(counts[c]) example(s); every class needs at least \(needed)" + (needed == 2 ? " (one to train on, one to validate on)" : ""))
        }

        // Independent streams, so e.g. more epochs never change the split.
        var splitRNG = TrainingRandom(seed: options.seed ^ 0x5350_4C49_5400_0001)
        var initRNG = TrainingRandom(seed: options.seed ^ 0x494E_4954_0000_0002)
        var orderRNG = TrainingRandom(seed: options.seed ^ 0x4F52_4445_5200_0003)

        let (trainIdx, valIdx) = Self.split(labels: labels, classes: k, fraction: options.validationSplit,
                                            multiLabel: options.multiLabel, rng: &splitRNG)
        let targets: [[Double]] = labels.map { l in
            var t = [Double](repeating: 0, count: k)
            for c in l { t[c] = 1 }
            return t
        }
        let lossFunction = options.lossFunction
        var head = ClassificationHead(inputDim: d, outputDim: k, rng: &initRNG)
        var adam = AdamW(learningRate: options.learningRate, weightDecay: options.weightDecay)

        // x̂ (LayerNorm before γ, β) does not depend on the parameters: once per example.
        let normalized: [[Double]] = vectors.map { v in v.withUnsafeBufferPointer { head.normalized($0) } }
        let valInputs = valIdx.map { normalized[$0] }
        let valTargets = valIdx.flatMap { targets[$0] }
        func evaluate(_ h: ClassificationHead, _ idx: [Int]) -> (loss: Double, accuracy: Double?, map: Double?) {
            let (loss, _) = h.lossAndGradients(normalized: valInputs, targets: valTargets, loss: lossFunction)
            let logits = idx.map { h.logits(normalized: normalized[$0]) }
            if options.multiLabel {
                return (loss, nil, TrainingMetrics.meanAveragePrecision(scores: logits, labels: idx.map { labels[$0] }, classes: k))
            }
            let right = zip(idx, logits).filter { TrainingMetrics.argmax($0.1) == labels[$0.0][0] }.count
            return (loss, Double(right) / Double(idx.count), nil)
        }

        var history: [EpochReport] = []
        var best = head
        var bestLoss = Double.infinity
        var bestEpoch = 0
        var sinceBest = 0
        var stoppedEarly = false
        for epoch in 1...options.epochs {
            var order = trainIdx
            orderRNG.shuffle(&order)
            var total = 0.0
            for start in stride(from: 0, to: order.count, by: options.batchSize) {
                let batch = Array(order[start ..< min(start + options.batchSize, order.count)])
                let (loss, grads) = head.lossAndGradients(normalized: batch.map { normalized[$0] }, targets: batch.flatMap { targets[$0] },
                                                          loss: lossFunction)
                guard loss.isFinite else {
                    throw TrainingError(.invalidOption, reason: "the loss became \(loss) in epoch \(epoch); lower the learning rate")
                }
                adam.update(&head, gradients: grads)
                total += loss * Double(batch.count)
            }
            var report = EpochReport(epoch: epoch, trainLoss: total / Double(order.count), validationLoss: nil,
                                     validationAccuracy: nil, validationMAP: nil, isBest: false)
            if valIdx.isEmpty {
                best = head
                bestEpoch = epoch
                report.isBest = true
            } else {
                let e = evaluate(head, valIdx)
                report.validationLoss = e.loss
                report.validationAccuracy = e.accuracy
                report.validationMAP = e.map
                if e.loss < bestLoss {
                    bestLoss = e.loss
                    best = head
                    bestEpoch = epoch
                    sinceBest = 0
                    report.isBest = true
                } else {
                    sinceBest += 1
                }
            }
            history.append(report)
            progress?(report)
            if !valIdx.isEmpty && options.patience > 0 && sinceBest >= options.patience && epoch < options.epochs {
                stoppedEarly = true
                break
            }
        }

        // Final figures from the float32 head, computed as the saved model computes them.
        let evalIdx = valIdx.isEmpty ? trainIdx : valIdx
        let evaluator = try HeadEvaluator(stateDict: best.stateDict(), inputDim: d, outputDim: k, sigmoid: pooling != .logit)
        let scores = evalIdx.map { evaluator.scores(vectors[$0]) }
        let threshold: Float = pooling == .logit ? 0 : 0.5
        var perClass: [ClassReport] = []
        var correct = 0
        var predicted: [[Int]] = []
        for (j, i) in evalIdx.enumerated() {
            if options.multiLabel {
                predicted.append(scores[j].indices.filter { scores[j][$0] > threshold })
            } else {
                let top = TrainingMetrics.argmax(scores[j])
                predicted.append([top])
                if top == labels[i][0] { correct += 1 }
            }
        }
        for c in 0..<k {
            let truth = evalIdx.map { labels[$0].contains(c) }
            let pred = predicted.map { $0.contains(c) }
            let tp = zip(truth, pred).filter { $0 && $1 }.count
            let support = truth.filter { $0 }.count
            let predictedCount = pred.filter { $0 }.count
            let precision = predictedCount > 0 ? Double(tp) / Double(predictedCount) : nil
            let recall = support > 0 ? Double(tp) / Double(support) : nil
            var f1: Double?
            if let p = precision, let r = recall { f1 = p + r > 0 ? 2 * p * r / (p + r) : 0 }
            let ap = options.multiLabel ? TrainingMetrics.averagePrecision(scores: scores.map { Double($0[c]) }, positives: truth) : nil
            perClass.append(ClassReport(label: classes[c], trainCount: trainIdx.filter { labels[$0].contains(c) }.count,
                                        evaluationCount: support, precision: precision, recall: recall, f1: f1, averagePrecision: ap))
        }
        let f1s = perClass.compactMap(\.f1)
        let report = TrainingReport(
            classes: classes, multiLabel: options.multiLabel, lossFunction: lossFunction, options: options,
            trainingExamples: trainIdx.count, validationExamples: valIdx.count, epochs: history, bestEpoch: bestEpoch,
            stoppedEarly: stoppedEarly, evaluatedOn: valIdx.isEmpty ? "training" : "validation",
            accuracy: options.multiLabel ? nil : Double(correct) / Double(evalIdx.count),
            meanAveragePrecision: options.multiLabel
                ? TrainingMetrics.meanAveragePrecision(scores: scores.map { $0.map(Double.init) }, labels: evalIdx.map { labels[$0] }, classes: k)
                : nil,
            macroF1: f1s.isEmpty ? nil : f1s.reduce(0, +) / Double(f1s.count),
            perClass: perClass)
        return TrainedHead(head: best, classes: classes, trainIndices: trainIdx, validationIndices: valIdx,
                           evaluationScores: scores, evaluationIndices: evalIdx, report: report)
    }

    /// Splits example indices into training and validation sets (both ascending).
    ///
    /// Single-label: within every class, the examples are shuffled and
    /// `round(n · fraction)` of them (at least 1, at most n − 1) held out. Multi-label: the
    /// same within groups formed by each example's rarest label; afterwards a class with no
    /// training example gets one back from validation.
    static func split(labels: [[Int]], classes: Int, fraction: Double, multiLabel: Bool,
                      rng: inout TrainingRandom) -> (train: [Int], validation: [Int]) {
        guard fraction > 0 else { return (Array(labels.indices), []) }
        let counts = (0..<classes).map { c in labels.filter { $0.contains(c) }.count }
        var groups = [[Int]](repeating: [], count: classes)
        for (i, l) in labels.enumerated() {
            // Rarest label (lowest index on ties); the only label for single-label data.
            let key = l.min { (counts[$0], $0) < (counts[$1], $1) }!
            groups[key].append(i)
        }
        var isValidation = [Bool](repeating: false, count: labels.count)
        for var g in groups where !g.isEmpty {
            rng.shuffle(&g)
            let take = min(g.count - 1, max(1, Int((Double(g.count) * fraction).rounded())))
            for i in g.prefix(take) { isValidation[i] = true }
        }
        if multiLabel {
            for c in 0..<classes where !labels.indices.contains(where: { !isValidation[$0] && labels[$0].contains(c) }) {
                if let i = labels.indices.first(where: { isValidation[$0] && labels[$0].contains(c) }) { isValidation[i] = false }
            }
        }
        return (labels.indices.filter { !isValidation[$0] }, labels.indices.filter { isValidation[$0] })
    }
}

/// The float32 head exactly as `CedForAudioClassification.applyHead` runs it (the same
/// `LayerNorm` and `Linear` layers and the same sigmoid), so scores computed here equal a
/// saved model's bit for bit (checked by the round-trip test).
struct HeadEvaluator {
    let norm: LayerNorm
    let linear: Linear
    let sigmoid: Bool
    let inputDim: Int
    let outputDim: Int

    init(stateDict: [String: Tensor], inputDim: Int, outputDim: Int, sigmoid: Bool) throws {
        let reader = WeightReader(StateDict(tensors: stateDict, source: "trained head"))
        norm = LayerNorm(reader, "outputlayer.0", dim: inputDim, eps: 1e-5)
        linear = Linear(reader, "outputlayer.1", in: inputDim, out: outputDim)
        try reader.finish()
        self.sigmoid = sigmoid
        self.inputDim = inputDim
        self.outputDim = outputDim
    }

    func scores(_ v: [Float]) -> [Float] {
        var normed = [Float](repeating: 0, count: inputDim)
        var out = [Float](repeating: 0, count: outputDim)
        v.withUnsafeBufferPointer { vb in
            normed.withUnsafeMutableBufferPointer { nb in
                norm(vb.baseAddress!, rows: 1, into: nb.baseAddress!)
                out.withUnsafeMutableBufferPointer { ob in
                    linear(nb.baseAddress!, rows: 1, into: ob.baseAddress!)
                }
            }
        }
        if sigmoid { for i in out.indices { out[i] = 1 / (1 + expf(-out[i])) } }
        return out
    }
}
