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
            (LayerNorm + Linear, the checkpoints' classification head) is trained with softmax \
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
    @OptionGroup var dataOptions: DataOptions
    @OptionGroup var training: TrainingOptions

    @Option(help: ArgumentHelp("Where to cache embeddings.", valueName: "dir"))
    var cacheDir: String?

    @Flag(help: "Do not read or write the embedding cache.")
    var noCache = false

    func validate() throws {
        if modelOptions.precision != .fp32 {
            throw ValidationError("train-head computes embeddings in fp32 (the saved model can be run at any --precision)")
        }
        if noCache && cacheDir != nil { throw ValidationError("--no-cache and --cache-dir exclude each other") }
    }

    func run() throws {
        let options = training.head(validationSplit: dataOptions.validationSplit, multiLabel: dataOptions.multiLabel)
        // Fail on bad data or an occupied output before loading (maybe downloading) the model.
        let dataset = try dataOptions.load(defaultSplit: options.validationSplit)
        let outputURL = training.outputURL, quiet = training.common.quiet
        try CedModelWriter.checkOutput(outputURL, overwrite: training.overwrite)
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
        let epochs = options.epochs
        let job = HeadTrainingJob(model: checkpoint, dataset: dataset, output: outputURL, options: options, cache: cache,
                                  skipUnreadableFiles: dataOptions.skipBadFiles, overwrite: training.overwrite,
                                  concurrency: training.common.jobs)
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
                let line = CedTrainingLogLine(epoch: e.epoch, step: e.epoch, trainLoss: e.trainLoss, validationLoss: e.validationLoss,
                                              accuracy: e.validationAccuracy, meanAveragePrecision: e.validationMAP, best: e.isBest)
                out.write(line.text(epochs: epochs) + "\n")
                out.flush()
            case .warning(let w):
                if !quiet { Terminal.warn(w) }
            }
        }
        let report = result.trained.report
        if report.stoppedEarly {
            out.write("stopped early: no lower validation loss for \(options.patience) epochs; keeping epoch \(report.bestEpoch)\n")
        }
        out.write(report.formatted() + "\n")
        out.write("saved \(outputURL.path) (\(result.config.outputdim) classes); use it with: ced tag --model \(training.output) FILE\n")
        out.flush()
    }
}
