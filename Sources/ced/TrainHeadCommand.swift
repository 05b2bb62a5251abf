import ArgumentParser
import CED
import Foundation

struct TrainHead: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train-head",
        abstract: "Teach a CED model new sounds: train a new classification head on your own labelled audio.",
        discussion: """
            The encoder stays frozen: every file is encoded once (on all cores) and its \
            embedding cached, so training again with other settings takes seconds. A new head \
            (LayerNorm + Linear, as the checkpoints' outputlayer) is trained with softmax \
            cross-entropy, or with BCE for --multi-label data, using AdamW, mini-batches and \
            early stopping on a validation split stratified by class. The same --seed and data \
            give the same model, bit for bit.

            --data is a folder with one subfolder per class (DATA/<class>/<files>), or a CSV \
            with rows file,label (file,label1;label2 with --multi-label); paths relative to \
            the CSV. The output is a Hugging Face model folder (config.json with the new \
            labels, model.safetensors, preprocessor_config.json, training_report.json) that \
            `ced tag --model OUTPUT` and the authors' Python code load. It is written only \
            when training succeeds.

            Embeddings are cached in --cache-dir (default: $CED_CACHE_DIR/embeddings, else \
            $XDG_CACHE_HOME/ced/embeddings, else ~/.cache/ced/embeddings), keyed by the \
            model's weights and each file's content.

            Examples:
              ced train-head -m mispeech/ced-base --data sounds/ -o doorbell
              ced train-head --data labels.csv --multi-label --lr 3e-3 -o tagger
              ced tag --model doorbell recording.wav
            """)

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: ArgumentHelp("A folder with one subfolder per class, or a CSV file,label[;label...].", valueName: "dir|csv"))
    var data: String

    @Option(name: .shortAndLong, help: ArgumentHelp("The model folder to write.", valueName: "dir"))
    var output: String

    @Option(help: ArgumentHelp("Maximum passes over the training data.", valueName: "n"))
    var epochs = HeadTrainingOptions().epochs

    @Option(name: .customLong("lr"), help: ArgumentHelp("Learning rate (Adam step size).", valueName: "x"))
    var learningRate = HeadTrainingOptions().learningRate

    @Option(help: ArgumentHelp("Decoupled weight decay on the Linear weight (AdamW).", valueName: "x"))
    var weightDecay = HeadTrainingOptions().weightDecay

    @Option(help: ArgumentHelp("Examples per mini-batch.", valueName: "n"))
    var batchSize = HeadTrainingOptions().batchSize

    @Option(name: .customLong("val-split"), help: ArgumentHelp("Fraction of each class held out for validation (0: none, no early stopping).", valueName: "x"))
    var validationSplit = HeadTrainingOptions().validationSplit

    @Option(help: ArgumentHelp("Stop after this many epochs without a lower validation loss (0: never).", valueName: "n"))
    var patience = HeadTrainingOptions().patience

    @Option(help: ArgumentHelp("Seed for the split, the initial weights and the batch order.", valueName: "n"))
    var seed: UInt64 = HeadTrainingOptions().seed

    @Flag(help: "Several labels per file (CSV label1;label2): sigmoid outputs trained with BCE.")
    var multiLabel = false

    @Option(help: ArgumentHelp("Where to cache embeddings.", valueName: "dir"))
    var cacheDir: String?

    @Flag(help: "Do not read or write the embedding cache.")
    var noCache = false

    @Option(name: .shortAndLong, help: ArgumentHelp("Files encoded in parallel.", valueName: "n"))
    var jobs: Int = defaultJobs

    @Flag(help: "Leave out audio files that cannot be decoded (with a warning) instead of stopping.")
    var skipBadFiles = false

    @Flag(help: "Replace an existing model folder at --output.")
    var overwrite = false

    @Flag(name: .shortAndLong, help: "No progress bar, per-epoch lines or warnings.")
    var quiet = false

    func validate() throws {
        if modelOptions.precision != .fp32 {
            throw ValidationError("train-head computes embeddings in fp32 (the saved model can be run at any --precision)")
        }
        if epochs < 1 { throw ValidationError("--epochs must be at least 1") }
        if !(learningRate > 0) || !learningRate.isFinite { throw ValidationError("--lr must be a positive number") }
        if !(weightDecay >= 0) || !weightDecay.isFinite { throw ValidationError("--weight-decay must be a number ≥ 0") }
        if batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
        if !(validationSplit >= 0 && validationSplit < 1) { throw ValidationError("--val-split must lie in [0, 1)") }
        if patience < 0 { throw ValidationError("--patience must be ≥ 0") }
        if jobs < 1 { throw ValidationError("--jobs must be at least 1") }
        if noCache && cacheDir != nil { throw ValidationError("--no-cache and --cache-dir exclude each other") }
    }

    func run() throws {
        let options = HeadTrainingOptions(epochs: epochs, learningRate: learningRate, weightDecay: weightDecay,
                                          batchSize: batchSize, validationSplit: validationSplit, patience: patience,
                                          seed: seed, multiLabel: multiLabel)
        let dataset = try TrainingDataset.load(from: URL(fileURLWithPath: (data as NSString).expandingTildeInPath), multiLabel: multiLabel)
        let outputURL = URL(fileURLWithPath: (output as NSString).expandingTildeInPath)
        // Fail on bad data or an occupied output before loading (maybe downloading) the model.
        try dataset.check(validationSplit: validationSplit)
        try CedModelWriter.checkOutput(outputURL, overwrite: overwrite)
        let checkpoint = try modelOptions.load(quiet: quiet)
        let cache: EmbeddingCache? = noCache ? nil
            : EmbeddingCache(directory: cacheDir.map { URL(fileURLWithPath: ($0 as NSString).expandingTildeInPath) }
                                 ?? EmbeddingCache.defaultDirectory())

        let out = Output()
        let c = checkpoint.config
        let counts = zip(dataset.classes, dataset.countsPerClass).map { "\($0) \($1)" }.joined(separator: ", ")
        out.write("model: \(modelOptions.model) (\(c.name ?? "ced"), embed_dim \(c.embedDim), pooling \(c.pooling.rawValue))\n")
        out.write("data: \(dataset.examples.count) files, \(dataset.classes.count) classes (\(counts))\n")
        out.flush()

        let progress = Progress(total: dataset.examples.count, enabled: Terminal.stderrIsTTY && !quiet && dataset.examples.count > 1)
        let lock = NSLock()
        let quiet = self.quiet
        let epochs = self.epochs
        let job = HeadTrainingJob(model: checkpoint, dataset: dataset, output: outputURL, options: options, cache: cache,
                                  skipUnreadableFiles: skipBadFiles, overwrite: overwrite, concurrency: jobs)
        let result = try job.run { event in
            switch event {
            case .embedding(let p):
                lock.lock(); progress.step(failed: p.failure != nil); lock.unlock()
            case .embedded(let cached, let computed, let seconds):
                var line = "embeddings: \(computed) computed, \(cached) from the cache in \(String(format: "%.1f", seconds)) s"
                if let cache { line += " (cache: \(cache.directory.path))" }
                out.write(line + "\n")
                out.flush()
            case .epoch(let e):
                guard !quiet else { return }
                var line = String(format: "epoch %\(String(epochs).count)d/%d  train loss %.4f", e.epoch, epochs, e.trainLoss)
                if let v = e.validationLoss { line += String(format: "  val loss %.4f", v) }
                if let a = e.validationAccuracy { line += String(format: "  val acc %5.1f%%", 100 * a) }
                if let m = e.validationMAP { line += String(format: "  val mAP %5.1f%%", 100 * m) }
                if e.isBest && e.validationLoss != nil { line += "  *" }
                out.write(line + "\n")
                out.flush()
            case .warning(let w):
                if !quiet { Terminal.warn(w) }
            }
        }
        let report = result.trained.report
        if report.stoppedEarly {
            out.write("stopped early: no lower validation loss for \(patience) epochs; keeping epoch \(report.bestEpoch)\n")
        }
        out.write(report.formatted() + "\n")
        out.write("saved \(outputURL.path) (\(result.config.outputdim) classes); use it with: ced tag --model \(output) FILE\n")
        out.flush()
    }
}
