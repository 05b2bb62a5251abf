import Foundation

/// The model a fine-tuning run starts from.
public enum FinetuneStart: Sendable {
    /// A loaded checkpoint: its weights (or, with `FinetuneOptions.randomInit`, only its
    /// architecture).
    case checkpoint(PretrainedCheckpoint)
    /// An architecture alone (a `config.json` without weights): upstream's random
    /// initialisation.
    case architecture(CedConfig, CedFeatureExtractorConfig, configFile: URL?)

    public var config: CedConfig {
        switch self {
        case .checkpoint(let c): return c.config
        case .architecture(let c, _, _): return c
        }
    }

    public var featureExtractorConfig: CedFeatureExtractorConfig {
        switch self {
        case .checkpoint(let c): return c.featureExtractorConfig
        case .architecture(_, let f, _): return f
        }
    }
}

/// One optimiser step of a training run (fine-tuning, distillation), as
/// `--log-format jsonl` prints it.
public struct TrainingStepLog: Sendable, Codable, Equatable {
    /// 1-based epoch and global step.
    public var epoch: Int
    public var step: Int
    public var totalSteps: Int
    /// The batch's loss before the update.
    public var loss: Double
    /// The learning rate of the update.
    public var lr: Double
    /// The global gradient norm before clipping (only when clipping).
    public var gradNorm: Double?
}

/// A validation of a training run (after an epoch).
public struct TrainingValidationLog: Sendable, Codable, Equatable {
    public var epoch: Int
    public var step: Int
    /// Single-label: top-1 accuracy over the data's classes.
    public var accuracy: Double?
    /// Multi-label: mean average precision over the data's classes.
    public var meanAveragePrecision: Double?
    /// Mean training loss of the epoch.
    public var trainLoss: Double
    public var isBest: Bool
}

/// What the epochs of a training run (`TrainingLoop`, shared by fine-tuning and
/// distillation) report.
public enum TrainingEvent: Sendable {
    case step(TrainingStepLog)
    /// The end of an epoch (accuracy or mAP set when there is a validation split).
    case validation(TrainingValidationLog)
    /// A resumable checkpoint was written after this many steps.
    case checkpoint(step: Int)
    /// Training continues from a checkpoint at this step.
    case resumed(step: Int)
    /// Early stopping ended the run after this epoch.
    case stoppedEarly(epoch: Int)
    case warning(String)
}

/// Something a running `FinetuneJob` reports.
public enum FinetuneEvent: Sendable {
    /// Audio decoding progress (called from worker threads).
    case decoding(done: Int, total: Int, failed: Bool)
    /// What will be trained: segments, steps, classes, activation memory.
    case plan(FinetunePlanSummary)
    /// Steps, validations, checkpoints, warnings.
    case training(TrainingEvent)
}

/// What a run is about to do.
public struct FinetunePlanSummary: Sendable, Codable, Equatable {
    public var trainFiles: Int
    public var validationFiles: Int
    public var trainSegments: Int
    public var epochs: Int
    public var stepsPerEpoch: Int
    public var totalSteps: Int
    public var classes: [String]
    /// The model's head and classes are kept (every label is one of the model's classes).
    public var keptHead: Bool
    public var loss: CedLoss
    public var learningRate: Double
    public var activationBytes: Int
}

/// What `FinetuneJob.run` produced.
public struct FinetuneResult: Sendable {
    public var output: URL
    public var config: CedConfig
    public var report: FinetuneReport
}

/// `training_report.json` of a fine-tuned model.
public struct FinetuneReport: Sendable, Codable {
    public var classes: [String]
    public var keptHead: Bool
    public var multiLabel: Bool
    public var loss: CedLoss
    public var options: FinetuneOptions
    public var learningRate: Double
    public var trainFiles: Int
    public var validationFiles: Int
    public var trainSegments: Int
    public var steps: Int
    public var epochs: [TrainingValidationLog]
    /// The epoch whose weights were saved (the best validation, else the last).
    public var savedEpoch: Int
    public var stoppedEarly: Bool
    public var skippedFiles: [String]
    public var trainingSeconds: Double
}

/// Everything `ced finetune` does: check the data and the output path, decode the audio,
/// train the whole network (`CedTrainingModel` + `CedAdamW`) with the authors'
/// augmentation, validate after each epoch, keep the best weights, write resumable
/// checkpoints, and finally write a Hugging Face folder that `ced tag` and the authors'
/// Python code load.
///
/// - Classes: when every label of the data is one of the model's classes (by name), the
///   model's head and class list are kept and training continues on them (targets over
///   all of the model's classes, BCE); otherwise a new head for the data's classes
///   replaces it, initialised as upstream does (LayerNorm 1/0, Linear truncated normal
///   std 0.02, bias 0).
/// - Reproducible: the split, batch order, augmentation draws, mixup, dropout and any new
///   weights come from `options.seed` through counter-based streams keyed by epoch and
///   step, so a run resumed from a checkpoint ends with the same weights, bit for bit, as
///   one that was never interrupted.
/// - Checkpoints live in a hidden folder beside the output (`.<name>.ced-finetune`);
///   `--output` itself is only written, atomically, when training has finished.
public struct FinetuneJob: Sendable {
    public var start: FinetuneStart
    public var dataset: TrainingDataset
    public var output: URL
    public var options: FinetuneOptions
    /// Continue from the checkpoint of an interrupted run with the same options and data.
    public var resume: Bool
    public var skipUnreadableFiles: Bool
    public var overwrite: Bool
    /// Files decoded at once (nil: one per core).
    public var concurrency: Int?

    public init(start: FinetuneStart, dataset: TrainingDataset, output: URL, options: FinetuneOptions = .init(),
                resume: Bool = false, skipUnreadableFiles: Bool = false, overwrite: Bool = false, concurrency: Int? = nil) {
        self.start = start
        self.dataset = dataset
        self.output = output
        self.options = options
        self.resume = resume
        self.skipUnreadableFiles = skipUnreadableFiles
        self.overwrite = overwrite
        self.concurrency = concurrency
    }

    /// The checkpoint folder of a run writing to `output`.
    public static func stateDirectory(for output: URL) -> URL {
        output.deletingLastPathComponent().appendingPathComponent(".\(output.lastPathComponent).ced-finetune")
    }

    public func run(events: (@Sendable (FinetuneEvent) -> Void)? = nil) throws -> FinetuneResult {
        try options.validate()
        try dataset.check(validationSplit: options.validationSplit)
        if !options.multiLabel, let multi = dataset.examples.first(where: { $0.labels.count > 1 }) {
            throw TrainingError(.tooManyLabels, file: multi.file.path,
                                reason: "has \(multi.labels.count) labels; single-label training takes one per file (use multi-label training)")
        }
        try CedModelWriter.checkOutput(output, overwrite: overwrite)
        let stateDir = Self.stateDirectory(for: output)
        let store = TrainingCheckpointStore(directory: stateDir)
        if store.exists && !resume {
            throw TrainingError(.checkpoint, file: stateDir.path,
                                reason: "an earlier run writing to \(output.path) left a checkpoint here; continue it with --resume, or delete the folder to start over")
        }
        for w in dataset.warnings { events?(.training(.warning(w))) }

        // Classes: keep the model's head when every label is one of its classes.
        var config = start.config
        let featureConfig = start.featureExtractorConfig
        let modelIndex = Self.classIndex(config)
        let keepHead = !modelIndex.isEmpty && dataset.classes.allSatisfy { modelIndex[$0] != nil }
        let classIndex: [String: Int]
        if keepHead {
            classIndex = modelIndex
        } else {
            config.outputdim = dataset.classes.count
            config.id2label = Dictionary(uniqueKeysWithValues: dataset.classes.enumerated().map { ($0.offset, $0.element) })
            config.label2id = Dictionary(uniqueKeysWithValues: dataset.classes.enumerated().map { ($0.element, $0.offset) })
            classIndex = config.label2id!
        }
        let lossFunction = options.loss ?? (!options.multiLabel && !keepHead ? .softmaxCrossEntropy : .automatic(for: config.pooling))
        if lossFunction == .softmaxCrossEntropy && options.multiLabel {
            throw TrainingError(.invalidOption, reason: "softmax cross-entropy trains one label per file; multi-label data needs BCE")
        }
        if config.targetLength < config.patchSize.time {
            throw TrainingError(.unsupportedModel, reason: "target_length \(config.targetLength) is shorter than one patch")
        }

        // The model.
        let model = try makeModel(config: config, keepHead: keepHead)
        model.noiseSeed = TrainingNoise.key(options.seed, 0x4E4F_4953_45)   // "NOISE"
        model.precision = options.precision
        model.activationMemoryLimit = options.activationMemoryLimit
        let lr = options.learningRate ?? (startsRandom ? 1e-3 : 1e-4)
        let epochCount = options.epochs ?? (startsRandom ? 30 : 10)
        let adam = CedAdamW(model: model, options: .init(learningRate: lr, beta1: options.beta1, beta2: options.beta2,
                                                         epsilon: options.epsilon, weightDecay: options.weightDecay))

        // Audio.
        let files = dataset.examples.map(\.file)
        let (decoded, failures, warnings) = TrainingAudio.decode(files, sampleRate: featureConfig.samplingRate,
                                                                  workers: concurrency ?? ProcessInfo.processInfo.activeProcessorCount) { done, failed in
            events?(.decoding(done: done, total: files.count, failed: failed))
        }
        for w in warnings { events?(.training(.warning(w))) }
        if !failures.isEmpty && !skipUnreadableFiles {
            let list = failures.prefix(10).map { "\(files[$0.0].path): \($0.1)" }.joined(separator: "\n  ")
            throw TrainingError(.unreadableAudio,
                                reason: "\(failures.count) of \(files.count) audio file(s) cannot be used:\n  \(list)"
                                    + (failures.count > 10 ? "\n  …" : "") + "\n(fix or remove them, or skip them: --skip-bad-files)")
        }
        for (i, reason) in failures { events?(.training(.warning("skipped \(files[i].path): \(reason)"))) }
        let usable = dataset.examples.indices.filter { decoded.waveforms[$0] != nil }
        let kept = TrainingDataset(examples: usable.map { dataset.examples[$0] }, classes: dataset.classes)
        if !failures.isEmpty { try kept.check(validationSplit: options.validationSplit) }

        // Split by file (stratified by class, as train-head), then segments.
        let dataClassIndex = Dictionary(uniqueKeysWithValues: dataset.classes.enumerated().map { ($1, $0) })
        let fileLabels = usable.map { dataset.examples[$0].labels.map { dataClassIndex[$0]! } }
        var splitRNG = TrainingRandom(seed: options.seed ^ 0x5350_4C49_5400_0001)
        let (trainIdx, valIdx) = HeadTrainer.split(labels: fileLabels, classes: dataset.classes.count, fraction: options.validationSplit,
                                                   multiLabel: options.multiLabel, rng: &splitRNG)
        let trainFiles = trainIdx.map { usable[$0] }, valFiles = valIdx.map { usable[$0] }
        let segmentLength = TrainingAudio.segmentSamples(config: config, featureConfig: featureConfig)
        let segments = trainFiles.flatMap { TrainingAudio.segments(file: $0, samples: decoded.waveforms[$0]!.count, segment: segmentLength) }
        let targets: [[Float]] = dataset.examples.map { e in
            var t = [Float](repeating: 0, count: config.outputdim)
            for l in e.labels { t[classIndex[l]!] = 1 }
            return t
        }
        let stepsPerEpoch = (segments.count + options.batchSize - 1) / options.batchSize
        let totalSteps = stepsPerEpoch * epochCount
        let schedule: CedLearningRateSchedule = options.schedule == .cosine
            ? .cosine(warmup: options.warmup, totalSteps: totalSteps, finalFraction: 0.1)
            : .constant(warmup: options.warmup)
        let extractor = try CedFeatureExtractor(config: featureConfig)
        let longest = segments.map(\.count).max() ?? 0
        let activation = model.activationBytes(batch: min(options.batchSize, segments.count),
                                               frames: max(1, extractor.frameCount(sampleCount: longest)))
        let usedClasses = keepHead ? dataset.classes : dataset.classes
        events?(.plan(FinetunePlanSummary(trainFiles: trainFiles.count, validationFiles: valFiles.count, trainSegments: segments.count,
                                          epochs: epochCount, stepsPerEpoch: stepsPerEpoch, totalSteps: totalSteps, classes: usedClasses, keptHead: keepHead,
                                          loss: lossFunction, learningRate: lr, activationBytes: activation)))

        // The BatchNorm over mel bins: upstream's train mode (batch statistics, running
        // statistics updated with momentum 0.01), or normalised with the training data's
        // own statistics throughout (see `FinetuneOptions.batchNormStatistics`).
        let useDataStatistics: Bool
        switch options.batchNormStatistics {
        case .momentum: useDataStatistics = false
        case .data: useDataStatistics = true
        case .auto: useDataStatistics = startsRandom || !keepHead
        }
        let dataStatistics = useDataStatistics && !segments.isEmpty
            ? try Self.melStatistics(segments: segments, audio: decoded, extractor: extractor, bins: config.nMels) : nil
        if let dataStatistics {
            model.runningMean = dataStatistics.mean
            model.runningVariance = dataStatistics.variance
            model.freezeBatchNormStatistics = true
        }

        // Resume.
        let fingerprint = self.fingerprint(config: config, files: files, lossFunction: lossFunction)
        var progress = TrainingProgress()
        if resume, store.exists {
            progress = try store.load(into: model, optimizer: adam, fingerprint: fingerprint)
            events?(.training(.resumed(step: progress.globalStep)))
        } else if resume {
            events?(.training(.warning("--resume: no checkpoint of an earlier run was found in \(stateDir.path); starting from the beginning")))
        }

        // Train.
        let clock = Date()
        let evalIndices = valFiles.map { dataset.examples[$0] }
        let dataIdx = dataset.classes.map { classIndex[$0]! }
        let seed = options.seed
        let augmentation = options.augmentation
        let loop = TrainingLoop(
            model: model, optimizer: adam, store: store, fingerprint: fingerprint, audio: decoded, segments: segments,
            extractor: extractor, epochs: epochCount, batchSize: options.batchSize, schedule: schedule, learningRate: lr,
            loss: lossFunction, mixup: options.mixup, gradientClip: options.gradientClip, saveEvery: options.saveEvery,
            patience: options.patience, seed: seed, classes: config.outputdim,
            targets: { s, _ in targets[segments[s].file] },
            augmentation: augmentation.isNone ? nil : augmentation,
            draw: { s, epoch in augmentation.draw(seed: TrainingNoise.key(TrainingNoise.key(seed, UInt64(epoch)), UInt64(s))) },
            evaluate: evalIndices.isEmpty ? nil : {
                try evaluate(model: model, examples: evalIndices, files: valFiles, audio: decoded, extractor: extractor,
                             classIndex: classIndex, dataIndices: dataIdx)
            },
            metricIsMAP: options.multiLabel, evaluateEvery: 1, events: { events?(.training($0)) })
        try loop.run(&progress)

        // The saved weights: the best validation, else the last.
        let weights = (!evalIndices.isEmpty ? progress.best : nil) ?? model.stateDict()
        let report = FinetuneReport(classes: usedClasses, keptHead: keepHead, multiLabel: options.multiLabel, loss: lossFunction,
                                    options: options, learningRate: lr, trainFiles: trainFiles.count, validationFiles: valFiles.count,
                                    trainSegments: segments.count, steps: progress.globalStep, epochs: progress.history,
                                    savedEpoch: progress.bestEpoch, stoppedEarly: progress.stoppedEarly,
                                    skippedFiles: failures.map { files[$0.0].path },
                                    trainingSeconds: Date().timeIntervalSince(clock))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let (baseConfig, basePreprocessor) = baseFiles()
        try CedModelWriter.writeModel(config: config, featureExtractorConfig: featureConfig, weights: weights.tensors,
                                            baseConfig: baseConfig, basePreprocessorConfig: basePreprocessor, to: output,
                                            overwrite: overwrite, extraFiles: ["training_report.json": try encoder.encode(report)])
        store.remove()
        return FinetuneResult(output: output, config: config, report: report)
    }

    /// Whether the weights start from upstream's random initialisation.
    var startsRandom: Bool {
        if case .architecture = start { return true }
        return options.randomInit
    }

    /// Per-bin mean and unbiased variance of the training segments' log-mels (float64 sums
    /// over every frame of every segment, no augmentation).
    static func melStatistics(segments: [TrainingAudio.Segment], audio: TrainingAudio, extractor: CedFeatureExtractor,
                              bins: Int) throws -> (mean: [Float], variance: [Float]) {
        var sum = [Double](repeating: 0, count: bins), sq = sum
        var n = 0
        for s in segments {
            let mel = try extractor(Array(audio.waveforms[s.file]![s.start ..< s.start + s.count]))
            let t = mel.shape[1]
            mel.scalars.withUnsafeBufferPointer { m in
                for f in 0..<bins {
                    var a = 0.0, b = 0.0
                    for j in 0..<t { let v = Double(m[f * t + j]); a += v; b += v * v }
                    sum[f] += a
                    sq[f] += b
                }
            }
            n += t
        }
        let mean = sum.map { $0 / Double(max(n, 1)) }
        let variance = (0..<bins).map { f in max(1e-6, (sq[f] - Double(n) * mean[f] * mean[f]) / Double(max(n - 1, 1))) }
        return (mean.map { Float($0) }, variance.map { Float($0) })
    }

    /// Class name → output index of a model (`label2id`, else the names of `id2label`).
    static func classIndex(_ config: CedConfig) -> [String: Int] {
        if let l = config.label2id, !l.isEmpty { return l }
        var out: [String: Int] = [:]
        for (i, name) in (config.id2label ?? [:]).sorted(by: { $0.key < $1.key }) where out[name] == nil { out[name] = i }
        return out
    }

    /// The training model: the checkpoint's weights (or upstream's random initialisation),
    /// with a new head when the classes change.
    func makeModel(config: CedConfig, keepHead: Bool) throws -> CedTrainingModel {
        let table = CedParameterTable(config: config)
        var rng = TrainingRandom(seed: options.seed ^ 0x494E_4954_0000_0002)
        switch start {
        case .checkpoint(let checkpoint) where !options.randomInit:
            var tensors = checkpoint.weights.tensors
            if !keepHead {
                for (k, v) in table.randomWeights(rng: &rng, only: { $0.isHead }).tensors { tensors[k] = v }
            }
            return try CedTrainingModel(config: config, weights: StateDict(tensors: tensors, source: checkpoint.weights.source))
        default:
            return try CedTrainingModel(config: config, weights: table.randomWeights(rng: &rng))
        }
    }

    func baseFiles() -> (URL?, URL?) {
        switch start {
        case .checkpoint(let c):
            return (CedModelWriter.baseFile("config.json", of: c), CedModelWriter.baseFile("preprocessor_config.json", of: c))
        case .architecture(_, _, let file):
            return (file, nil)
        }
    }

    /// Accuracy (single-label: argmax over the data's classes) or mAP (multi-label) of the
    /// current weights on the validation files, scored whole as `ced tag` scores them.
    func evaluate(model: CedTrainingModel, examples: [TrainingExample], files: [Int], audio: TrainingAudio,
                  extractor: CedFeatureExtractor, classIndex: [String: Int], dataIndices: [Int]) throws -> Double {
        let inference = try model.inferenceModel(precision: options.precision)
        let mels = try files.map { try extractor(audio.waveforms[$0]!) }
        let scores = try inference(mels)
        let dataClass = Dictionary(uniqueKeysWithValues: dataIndices.enumerated().map { ($1, $0) })
        let restricted: [[Double]] = scores.map { s in dataIndices.map { Double(s.scalars[$0]) } }
        let labels: [[Int]] = examples.map { $0.labels.compactMap { classIndex[$0].flatMap { dataClass[$0] } } }
        if options.multiLabel {
            return TrainingMetrics.meanAveragePrecision(scores: restricted, labels: labels, classes: dataIndices.count) ?? 0
        }
        let right = zip(restricted, labels).filter { TrainingMetrics.argmax($0.0) == $0.1.first }.count
        return Double(right) / Double(max(1, examples.count))
    }

    /// What must be equal for a checkpoint to continue this run: the options that shape
    /// the trajectory (except the learning rate and clipping), the model, the data (files,
    /// sizes, labels).
    func fingerprint(config: CedConfig, files: [URL], lossFunction: CedLoss) -> String {
        var lines = ["ced-finetune v1"]
        // Free to change on --resume: how often to save, early stopping, and the learning
        // rate and clipping (to get past a non-finite loss).
        var o = options
        o.patience = 0
        o.saveEvery = 0
        o.learningRate = nil
        o.gradientClip = nil
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        lines.append(String(decoding: (try? enc.encode(o)) ?? Data(), as: UTF8.self))
        lines.append(String(decoding: (try? enc.encode(config)) ?? Data(), as: UTF8.self))
        lines.append("loss=\(lossFunction.rawValue)")
        if case .checkpoint(let c) = start { lines.append("weights=\(CedEmbedder.identity(of: c))") }
        for e in dataset.examples {
            let size = (try? FileManager.default.attributesOfItem(atPath: e.file.path)[.size] as? Int) ?? -1
            lines.append("\(e.file.path)\t\(size)\t\(e.labels.joined(separator: ";"))")
        }
        var h = SHA256Hasher()
        h.update(Array(lines.joined(separator: "\n").utf8))
        return h.finalizeHex()
    }
}

/// Where a fine-tuning run is.
struct TrainingProgress: Codable {
    var epoch = 0
    var stepInEpoch = 0
    var globalStep = 0
    var lossSum = 0.0
    var lossCount = 0
    var bestMetric = -1.0
    var bestEpoch = 0
    var sinceBest = 0
    var stoppedEarly = false
    var finished = false
    var history: [TrainingValidationLog] = []
    /// The best validations so far, best first: (epoch, metric).
    var top: [Ranked] = []
    /// Their weights, in the same order (not in the JSON; stored beside the state).
    var topStates: [StateDict] = []
    /// The best validation's weights.
    var best: StateDict? { topStates.first }

    struct Ranked: Codable, Equatable {
        var epoch: Int
        var metric: Double
    }

    /// Ranks a validation among the best `keep` (ties: the earlier epoch first).
    mutating func rank(epoch: Int, metric: Double, state: @autoclosure () -> StateDict, keep: Int) {
        let i = top.firstIndex { metric > $0.metric } ?? top.count
        guard i < max(1, keep) else { return }
        top.insert(Ranked(epoch: epoch, metric: metric), at: i)
        topStates.insert(state(), at: i)
        if top.count > max(1, keep) { top.removeLast(); topStates.removeLast() }
    }

    enum CodingKeys: String, CodingKey {
        case epoch, stepInEpoch, globalStep, lossSum, lossCount, bestMetric, bestEpoch, sinceBest, stoppedEarly, finished, history, top
    }
}
