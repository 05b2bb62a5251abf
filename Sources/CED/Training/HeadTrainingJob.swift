import Foundation

/// Something a running `HeadTrainingJob` reports.
public enum HeadTrainingEvent: Sendable {
    /// A file's vector is ready (called from worker threads).
    case embedding(EmbeddingProgress)
    /// All vectors are ready: how many came from the cache, how many were computed, and
    /// the seconds it took.
    case embedded(cached: Int, computed: Int, seconds: Double)
    /// An epoch finished.
    case epoch(EpochReport)
    /// Something the user should know that does not stop training (skipped files,
    /// decoder warnings, ignored files in the data folder).
    case warning(String)
}

/// What `HeadTrainingJob.run` produced.
public struct HeadTrainingResult: Sendable {
    public var trained: TrainedHead
    /// The configuration written to `config.json`.
    public var config: CedConfig
    /// The output folder.
    public var output: URL
    /// The examples used (unreadable files removed when they were skipped); `trained`'s
    /// indices refer to this list.
    public var examples: [TrainingExample]
    /// Files left out because they could not be decoded (only with `skipUnreadableFiles`).
    public var skipped: [(file: URL, reason: String)]
    public var cachedCount: Int
    public var computedCount: Int
    public var embeddingSeconds: Double
    public var trainingSeconds: Double
}

/// Everything `ced train-head` does, as one call: check the data and the output path,
/// compute (or fetch from the cache) every file's vector with the frozen encoder, train a
/// head (`HeadTrainer`), and write a Hugging Face folder (`CedModelWriter`) that
/// `CedAudioTagger.fromPretrained(output)` loads and that predicts, for every evaluated
/// file, exactly the scores in `trained.evaluationScores`.
///
/// ```swift
/// let job = HeadTrainingJob(model: try PretrainedCheckpoint.load("mispeech/ced-base"),
///                           dataset: try TrainingDataset.load(from: dataURL),
///                           output: URL(fileURLWithPath: "doorbell-model"))
/// let result = try job.run { event in print(event) }
/// print(result.trained.report.formatted())
/// ```
///
/// On any error nothing is written to `output` (the embedding cache may have gained
/// entries, which is harmless).
public struct HeadTrainingJob: Sendable {
    public var model: PretrainedCheckpoint
    public var dataset: TrainingDataset
    public var output: URL
    public var options: HeadTrainingOptions
    /// nil: no cache (every vector is computed).
    public var cache: EmbeddingCache?
    /// Leave out files that cannot be decoded (with a warning) instead of failing.
    public var skipUnreadableFiles: Bool
    /// Replace an existing model folder at `output`.
    public var overwrite: Bool
    /// Files encoded at once (nil: one per core).
    public var concurrency: Int?

    public init(model: PretrainedCheckpoint, dataset: TrainingDataset, output: URL, options: HeadTrainingOptions = .init(),
                cache: EmbeddingCache? = EmbeddingCache(directory: EmbeddingCache.defaultDirectory()),
                skipUnreadableFiles: Bool = false, overwrite: Bool = false, concurrency: Int? = nil) {
        self.model = model
        self.dataset = dataset
        self.output = output
        self.options = options
        self.cache = cache
        self.skipUnreadableFiles = skipUnreadableFiles
        self.overwrite = overwrite
        self.concurrency = concurrency
    }

    public func run(events: (@Sendable (HeadTrainingEvent) -> Void)? = nil) throws -> HeadTrainingResult {
        // Cheap checks first, so bad input fails before minutes of encoding.
        try options.validate()
        try dataset.check(validationSplit: options.validationSplit)
        if !options.multiLabel, let multi = dataset.examples.first(where: { $0.labels.count > 1 }) {
            throw TrainingError(.tooManyLabels, file: multi.file.path,
                                reason: "has \(multi.labels.count) labels; single-label training takes one per file (use multi-label training)")
        }
        try CedModelWriter.checkOutput(output, overwrite: overwrite)
        for w in dataset.warnings { events?(.warning(w)) }
        let embedder = try CedEmbedder(checkpoint: model)

        let start = Date()
        let embedded = try embedder.embed(files: dataset.examples.map(\.file), cache: cache, concurrency: concurrency) { p in
            events?(.embedding(p))
        }
        let embeddingSeconds = Date().timeIntervalSince(start)
        for w in embedded.warnings { events?(.warning(w)) }
        if !embedded.failures.isEmpty && !skipUnreadableFiles {
            let list = embedded.failures.prefix(10).map { "\($0.file.path): \($0.reason)" }.joined(separator: "\n  ")
            throw TrainingError(.unreadableAudio,
                                reason: "\(embedded.failures.count) of \(dataset.examples.count) audio file(s) cannot be used:\n  \(list)"
                                    + (embedded.failures.count > 10 ? "\n  …" : "")
                                    + "\n(fix or remove them, or skip them: skipUnreadableFiles, ced train-head --skip-bad-files)")
        }
        for f in embedded.failures { events?(.warning("skipped \(f.file.path): \(f.reason)")) }
        events?(.embedded(cached: embedded.cachedCount, computed: embedded.computedCount, seconds: embeddingSeconds))

        var examples: [TrainingExample] = []
        var vectors: [[Float]] = []
        for (e, v) in zip(dataset.examples, embedded.vectors) {
            if let v { examples.append(e); vectors.append(v) }
        }
        let kept = TrainingDataset(examples: examples, classes: dataset.classes)
        if !embedded.failures.isEmpty { try kept.check(validationSplit: options.validationSplit) }
        let classIndex = Dictionary(uniqueKeysWithValues: kept.classes.enumerated().map { ($1, $0) })
        let labels = examples.map { $0.labels.compactMap { classIndex[$0] } }

        let trainStart = Date()
        let trained = try HeadTrainer(options: options).train(vectors: vectors, labels: labels, classes: kept.classes,
                                                              model: model.config) { events?(.epoch($0)) }
        let trainingSeconds = Date().timeIntervalSince(trainStart)

        var config = model.config
        config.outputdim = kept.classes.count
        config.id2label = Dictionary(uniqueKeysWithValues: kept.classes.enumerated().map { ($0.offset, $0.element) })
        config.label2id = Dictionary(uniqueKeysWithValues: kept.classes.enumerated().map { ($0.element, $0.offset) })
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let report = try encoder.encode(trained.report)
        try CedModelWriter.write(base: model, config: config, head: trained.stateDict, to: output,
                                       overwrite: overwrite, extraFiles: ["training_report.json": report])
        return HeadTrainingResult(trained: trained, config: config, output: output, examples: examples,
                                  skipped: embedded.failures, cachedCount: embedded.cachedCount,
                                  computedCount: embedded.computedCount, embeddingSeconds: embeddingSeconds,
                                  trainingSeconds: trainingSeconds)
    }
}
