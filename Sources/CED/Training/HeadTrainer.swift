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
    public var lossFunction: CedLoss { multiLabel ? .bceWithLogits : .softmaxCrossEntropy }

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
    /// The kept head (lowest validation loss) as the classification head's float32 tensors,
    /// named and shaped as in the model's checkpoints.
    public var stateDict: [String: Tensor]
    /// Class names in output order.
    public var classes: [String]
    /// Indices (into the training vectors) of the training and validation examples.
    public var trainIndices: [Int]
    public var validationIndices: [Int]
    /// The model's scores for every evaluation example (validation, or training without
    /// validation), in `evaluationIndices` order, computed by the same head layer as
    /// `CedForAudioClassification`: a model saved with this head gives these very numbers
    /// for those files.
    public var evaluationScores: [[Float]]
    public var evaluationIndices: [Int]
    public var report: TrainingReport
}

/// Trains a new classification head over clip vectors from a frozen CED encoder
/// (`CedEmbedder`, a linear probe): the model's own head (`CedParameterTable.head`,
/// LayerNorm + Linear) with the training passes of `CedTrainingModel` (`TrainingHead`)
/// and `CedAdamW`, trained on its own over the cached vectors. Softmax cross-entropy for
/// single-label data or BCE-with-logits for multi-label data, shuffled mini-batches, and
/// early stopping on a validation split that is stratified by class (multi-label: by
/// each example's rarest label, moving examples back so every class keeps one for
/// training).
///
/// Everything random comes from `TrainingRandom` seeded by `options.seed` (separate
/// streams for the split, the initial weights and the batch order), so equal inputs and
/// options give a bit-identical head.
public struct HeadTrainer: Sendable {
    public var options: HeadTrainingOptions

    public init(options: HeadTrainingOptions = .init()) {
        self.options = options
    }

    /// Trains on `vectors` (one per example, all of one length) with `labels` (class
    /// indices into `classes`; exactly one each unless multi-label). `model` is the
    /// configuration of the model whose encoder made the vectors: its pooling decides how
    /// scores are reported (sigmoid, or raw logits for `logit`) and it gives the head's
    /// LayerNorm eps (nil: upstream's defaults, mean pooling). `progress` is called after
    /// every epoch.
    public func train(vectors: [[Float]], labels: [[Int]], classes: [String], model: CedConfig? = nil,
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
        if let model, model.embedDim != d {
            throw TrainingError(.invalidOption, reason: "the vectors have \(d) values but the model's embed_dim is \(model.embedDim)")
        }
        if let bad = vectors.firstIndex(where: { !$0.allSatisfy(\.isFinite) }) {
            throw TrainingError(.invalidOption, reason: "vector \(bad) has a non-finite value")
        }
        for (i, l) in labels.enumerated() {
            guard !l.isEmpty, l.allSatisfy({ $0 >= 0 && $0 < k }) else {
                throw TrainingError(.invalidOption, reason: "example \(i) has labels \(l), expected class indices in 0..<\(k)")
            }
            if !options.multiLabel && l.count != 1 {
                throw TrainingError(.tooManyLabels, reason: "example \(i) has \(l.count) labels; single-label training takes one (use multi-label)")
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
        var config = model ?? CedConfig()
        config.embedDim = d
        config.outputdim = k
        let head = try TrainableHead(config: config, rng: &initRNG)
        let targets: [[Float]] = labels.map { l in
            var t = [Float](repeating: 0, count: k)
            for c in l { t[c] = 1 }
            return t
        }
        let lossFunction = options.lossFunction
        let adam = CedAdamW(model: head, options: .init(learningRate: options.learningRate, weightDecay: options.weightDecay))

        func evaluate(_ idx: [Int]) -> (loss: Double, accuracy: Double?, map: Double?) {
            let (loss, logits) = head.evaluate(idx.map { vectors[$0] }, targets: idx.map { targets[$0] }, loss: lossFunction)
            if options.multiLabel {
                return (loss, nil, TrainingMetrics.meanAveragePrecision(scores: logits.map { $0.map(Double.init) },
                                                                        labels: idx.map { labels[$0] }, classes: k))
            }
            let right = zip(idx, logits).filter { TrainingMetrics.argmax($0.1) == labels[$0.0][0] }.count
            return (loss, Double(right) / Double(idx.count), nil)
        }

        var history: [EpochReport] = []
        var best = head.values()
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
                let loss = try head.trainingStep(batch.map { vectors[$0] }, targets: batch.map { targets[$0] }, loss: lossFunction,
                                                 sink: adam.step(), epoch: epoch)
                total += loss * Double(batch.count)
            }
            var report = EpochReport(epoch: epoch, trainLoss: total / Double(order.count), validationLoss: nil,
                                     validationAccuracy: nil, validationMAP: nil, isBest: false)
            if valIdx.isEmpty {
                best = head.values()
                bestEpoch = epoch
                report.isBest = true
            } else {
                let e = evaluate(valIdx)
                report.validationLoss = e.loss
                report.validationAccuracy = e.accuracy
                report.validationMAP = e.map
                if e.loss < bestLoss {
                    bestLoss = e.loss
                    best = head.values()
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

        // Final figures from the kept head, through the inference head layer.
        head.setValues(best)
        let stateDict = head.stateDict()
        let evaluator = try head.inferenceHead()
        let evalIdx = valIdx.isEmpty ? trainIdx : valIdx
        let scores = evalIdx.map { evaluator.scores(vectors[$0]) }
        let threshold: Float = config.pooling.scoresAreProbabilities ? 0.5 : 0
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
        return TrainedHead(stateDict: stateDict, classes: classes, trainIndices: trainIdx, validationIndices: valIdx,
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

/// A classification head trained on its own over fixed pooled vectors: the table's head
/// entries laid out in a buffer of their own, run by the training model's head passes.
final class TrainableHead: CedTrainable {
    let config: CedConfig
    let parameters: CedHeadParameters
    let passes: TrainingHead
    let parameterCount: Int
    let parameterValues: UnsafeMutablePointer<Float>
    var trainableParameters: [CedParameter] { parameters.entries }
    let gradients: UnsafeMutablePointer<Float>
    /// Activations of the last batch (grown as needed).
    private var scratch: [Float] = []

    /// A new head for `config` (its `embed_dim` inputs and `outputdim` classes), initialised
    /// as upstream initialises one.
    init(config: CedConfig, rng: inout TrainingRandom) throws {
        self.config = config
        parameters = CedParameterTable(config: config).head.rebased()
        passes = TrainingHead(p: parameters)
        parameterCount = parameters.entries.reduce(0) { $0 + $1.count }
        parameterValues = .allocate(capacity: parameterCount)
        gradients = .allocate(capacity: parameterCount)
        for p in parameters.entries {
            (parameterValues + p.at).initialize(from: CedParameterTable.values(p.initialization, count: p.count, rng: &rng),
                                                count: p.count)
        }
    }

    deinit {
        parameterValues.deallocate()
        gradients.deallocate()
    }

    func values() -> [Float] { Array(UnsafeBufferPointer(start: parameterValues, count: parameterCount)) }
    func setValues(_ v: [Float]) { parameterValues.update(from: v, count: parameterCount) }

    /// The head's tensors under their table names.
    func stateDict() -> [String: Tensor] {
        Dictionary(uniqueKeysWithValues: parameters.entries.map {
            ($0.name, Tensor(shape: $0.shape, scalars: Array(UnsafeBufferPointer(start: parameterValues + $0.at, count: $0.count))))
        })
    }

    /// The forward pass over `rows` vectors into the scratch; returns the logits' offset.
    private func forward(_ x: [[Float]]) -> (rows: Int, layout: (x: Int, normed: Int, mean: Int, rstd: Int, logits: Int, dz: Int, dNormed: Int, dx: Int)) {
        let rows = x.count, d = passes.dim, k = passes.classes
        var o = 0
        func take(_ n: Int) -> Int { defer { o += n }; return o }
        let layout = (x: take(rows * d), normed: take(rows * d), mean: take(rows), rstd: take(rows), logits: take(rows * k),
                      dz: take(rows * k), dNormed: take(rows * d), dx: take(rows * d))
        if scratch.count < o { scratch = [Float](repeating: 0, count: o) }
        scratch.withUnsafeMutableBufferPointer { s in
            let a = s.baseAddress!
            for (r, v) in x.enumerated() { (a + layout.x + r * d).update(from: v, count: d) }
            passes.forward({ parameterValues + $0.at }, x: a + layout.x, rows: rows, normed: a + layout.normed,
                           mean: a + layout.mean, rstd: a + layout.rstd, logits: a + layout.logits, bf16: nil)
        }
        return (rows, layout)
    }

    /// One step over a batch: forward, loss, and the backward pass into `sink`.
    func trainingStep(_ x: [[Float]], targets: [[Float]], loss: CedLoss, sink: CedGradientSink, epoch: Int) throws -> Double {
        let (rows, l) = forward(x)
        let k = passes.classes
        let t = targets.flatMap { $0 }
        let value = scratch.withUnsafeMutableBufferPointer { s in
            loss.value(s.baseAddress! + l.logits, targets: t, rows: rows, classes: k, grad: s.baseAddress! + l.dz)
        }
        guard value.isFinite else {
            throw TrainingError.nonFiniteLoss(value, at: "in epoch \(epoch)", advice: "lower the learning rate")
        }
        gradients.update(repeating: 0, count: parameterCount)
        scratch.withUnsafeMutableBufferPointer { s in
            let a = s.baseAddress!
            passes.backward({ parameterValues + $0.at }, { gradients + $0.at }, dz: a + l.dz, x: a + l.x, rows: rows,
                            normed: a + l.normed, mean: a + l.mean, rstd: a + l.rstd, dNormed: a + l.dNormed, dx: a + l.dx, bf16: nil)
        }
        sink.receive(offsets: 0..<parameterCount, gradients: gradients)
        sink.finish()
        return value
    }

    /// The loss over a set of vectors, and their logits.
    func evaluate(_ x: [[Float]], targets: [[Float]], loss: CedLoss) -> (Double, [[Float]]) {
        let (rows, l) = forward(x)
        let k = passes.classes
        let t = targets.flatMap { $0 }
        return scratch.withUnsafeMutableBufferPointer { s in
            let a = s.baseAddress!
            let value = loss.value(a + l.logits, targets: t, rows: rows, classes: k, grad: a + l.dz)
            return (value, (0..<rows).map { Array(UnsafeBufferPointer(start: a + l.logits + $0 * k, count: k)) })
        }
    }

    /// The head as inference runs it (`ClassificationHead`, with the pooling's activation),
    /// built from the current values.
    func inferenceHead() throws -> HeadScorer {
        let table = CedParameterTable(config: config)
        let reader = WeightReader(StateDict(tensors: stateDict(), source: "trained head"), table: table)
        let head = ClassificationHead(reader, table.head, pooling: config.pooling)
        try reader.finish()
        return HeadScorer(head: head)
    }
}

/// Scores of single vectors through the inference head layer.
struct HeadScorer {
    let head: ClassificationHead

    func scores(_ v: [Float]) -> [Float] {
        var normed = [Float](repeating: 0, count: head.inputDim)
        var out = [Float](repeating: 0, count: head.classes)
        v.withUnsafeBufferPointer { vb in
            normed.withUnsafeMutableBufferPointer { nb in
                out.withUnsafeMutableBufferPointer { ob in
                    head(vb.baseAddress!, into: ob.baseAddress!, normed: nb.baseAddress!)
                }
            }
        }
        return out
    }
}
