import ArgumentParser
import CED
import Foundation

struct Finetune: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "finetune",
        abstract: "Adapt a CED model to your own sounds: train the whole network on your labelled audio.",
        discussion: """
            --data is a folder with one subfolder per class (DATA/<class>/<files>), or a CSV \
            with rows file,label (file,label1;label2 with --multi-label), as for train-head. \
            When every label is one of the model's classes (by name), the model's head and \
            classes are kept and training continues on them; otherwise a new head for your \
            classes replaces it.

            Files longer than the model's target_length (10.12 s) are cut into consecutive \
            full-length segments (the last one ends at the file's end); each is a training \
            example with the file's labels. Validation scores whole files, as `ced tag` does.

            --model also takes a config.json (or a folder holding only one): that \
            architecture, randomly initialised as upstream does; --init random does the same \
            for any model. The default --lr is 1e-4 from trained weights, 1e-3 from random ones.

            Augmentation follows the authors' recipe (a random circular shift of the waveform, \
            one time and one frequency mask on the log-mel, mixup on the batch); by default \
            only the shift is on. --no-augment turns all of it off.

            Checkpoints are written to a hidden folder beside --output after every epoch \
            (and every --save-every steps); --resume continues a killed run to the same final \
            weights as an uninterrupted one. --output is written only when training finished.

            --log-format jsonl prints one JSON object per optimiser step on stdout \
            ({"epoch", "step", "loss", "lr"}) and one per validation ({"epoch", "step", \
            "validation": true, "train_loss", "val_accuracy" or "val_map", "best"}).

            Examples:
              ced finetune -m mispeech/ced-mini --data sounds/ -o my-model
              ced finetune -m ced-tiny --data labels.csv --multi-label --epochs 20 --mixup 0.5 -o tagger
              ced finetune -m micro/config.json --data sounds/ --epochs 30 -o from-scratch
              ced finetune ... --resume      # after an interruption, the same command again
            """)

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var dataOptions: DataOptions
    @OptionGroup var training: TrainingOptions
    @OptionGroup var steps: StepOptions

    @Flag(help: "Train only a new head on the frozen encoder: exactly `ced train-head` (its defaults; --epochs, --lr, --weight-decay, --batch-size, --val-split, --patience, --seed apply).")
    var freezeEncoder = false

    @Option(help: ArgumentHelp("Start from the model's weights or from upstream's random initialisation of its architecture.", valueName: "pretrained|random"))
    var initialization: Initialization = .pretrained

    @Option(help: ArgumentHelp("The loss (default: softmax cross-entropy for single-label data with a new head, else the pooling's: bce, or bce_with_logits for logit pooling).", valueName: "bce|bce_with_logits|cross_entropy"))
    var loss: CedLoss?

    @Option(help: ArgumentHelp("Time-mask width drawn in [0, N) frames (upstream 192; 0: off).", valueName: "n"))
    var timeMask: Int = 0

    @Option(help: ArgumentHelp("Frequency-mask width drawn in [0, N) mel bins (upstream 24; 0: off).", valueName: "n"))
    var freqMask: Int = 0

    @Option(help: ArgumentHelp("Largest circular waveform shift as a fraction of the clip, applied with probability 0.5 (upstream 0.5; 0: off).", valueName: "s"))
    var shift: Double = 0.5

    @Flag(help: "No augmentation at all (no shift, masks or mixup).")
    var noAugment = false

    @Option(help: ArgumentHelp("BatchNorm running statistics of the saved model: the training data's, upstream's momentum updates, or auto (data for a new head or random weights, momentum when the model's head is kept).", valueName: "auto|data|momentum"))
    var bnStats: FinetuneOptions.BatchNormStatistics = .auto

    @Option(help: ArgumentHelp("Cap the activation memory of a step (MB): the backward pass then recomputes attention weights, MLP layers or whole blocks as needed (slower).", valueName: "MB"))
    var activationMemory: Int?

    enum Initialization: String, ExpressibleByArgument, CaseIterable { case pretrained, random }

    func validate() throws {
        if timeMask < 0 || freqMask < 0 { throw ValidationError("--time-mask and --freq-mask must be ≥ 0") }
        if !(shift >= 0 && shift <= 1) { throw ValidationError("--shift must lie in [0, 1]") }
        if let m = activationMemory, m < 1 { throw ValidationError("--activation-memory must be a positive number of MB") }
        if freezeEncoder && steps.resume { throw ValidationError("--freeze-encoder trains in seconds from cached embeddings; it has no --resume") }
    }

    var options: FinetuneOptions {
        var o = FinetuneOptions()
        o.epochs = training.epochs
        if let batchSize = training.batchSize { o.batchSize = batchSize }
        o.learningRate = training.learningRate
        if let weightDecay = training.weightDecay { o.weightDecay = weightDecay }
        o.warmup = steps.warmup ?? 0
        o.schedule = steps.schedule
        o.gradientClip = steps.gradClip
        if let validationSplit = dataOptions.validationSplit { o.validationSplit = validationSplit }
        if let patience = training.patience { o.patience = patience }
        o.seed = training.seed
        o.multiLabel = dataOptions.multiLabel
        o.loss = loss
        o.augmentation = noAugment ? .none
            : CedAugmentation(shift: shift, shiftProbability: shift > 0 ? 0.5 : 0, timeMask: timeMask, freqMask: freqMask)
        o.mixup = noAugment ? 0 : steps.mixup ?? 0
        o.randomInit = initialization == .random
        o.saveEvery = steps.saveEvery
        o.precision = modelOptions.precision
        o.batchNormStatistics = bnStats
        o.activationMemoryLimit = activationMemory.map { $0 * 1_000_000 }
        return o
    }

    func run() throws {
        let head = training.head(validationSplit: dataOptions.validationSplit, multiLabel: dataOptions.multiLabel)
        let dataset = try dataOptions.load(defaultSplit: freezeEncoder ? head.validationSplit : FinetuneOptions().validationSplit)
        let outputURL = training.outputURL, quiet = training.common.quiet, options = self.options
        try CedModelWriter.checkOutput(outputURL, overwrite: training.overwrite)
        if freezeEncoder { return try runFrozen(dataset: dataset, options: head) }

        let start = try resolveStart()
        let json = steps.logFormat == .jsonl
        let say = { (line: String) in TrainingLog.say(line, json: json) }
        let c = start.config
        let random: Bool = if case .architecture = start { true } else { initialization == .random }
        if !quiet {
            say("model: \(modelOptions.model) (\(c.name ?? "ced"), embed_dim \(c.embedDim), depth \(c.depth), pooling \(c.pooling.rawValue)\(random ? ", random initialisation" : ""))")
            let counts = zip(dataset.classes, dataset.countsPerClass).map { "\($0) \($1)" }.joined(separator: ", ")
            say("data: \(dataset.examples.count) files, \(dataset.classes.count) classes (\(counts))")
        }
        let tty = Terminal.stderrIsTTY && !quiet
        let decodeBar = Progress(total: dataset.examples.count, enabled: tty && dataset.examples.count > 1)
        let lock = NSLock()
        let bar = Progress(enabled: tty, unit: "steps"), epochs = Box(0)
        let job = FinetuneJob(start: start, dataset: dataset, output: outputURL, options: options, resume: steps.resume,
                              skipUnreadableFiles: dataOptions.skipBadFiles, overwrite: training.overwrite, concurrency: training.common.jobs)
        let result = try job.run { event in
            switch event {
            case .decoding(_, _, let failed):
                lock.lock(); decodeBar.step(failed: failed); lock.unlock()
            case .plan(let p):
                bar.total = p.totalSteps
                epochs.value = p.epochs
                guard !quiet else { return }
                say("training: \(p.trainFiles) files (\(p.trainSegments) segments), \(p.validationFiles) for validation; \(p.stepsPerEpoch) steps per epoch, \(p.totalSteps) in all; "
                    + "\(p.keptHead ? "the model's head and classes kept" : "a new head for \(p.classes.count) classes"); loss \(p.loss.rawValue); lr \(p.learningRate); "
                    + String(format: "activations %.0f MB", Double(p.activationBytes) / 1e6))
            case .training(.step(let s)):
                if json { try? TrainingLog.printJSON(CedTrainingLogLine(s)) }
                bar.step(to: s.step, loss: s.loss, lr: s.lr)
            case .training(.validation(let v)):
                TrainingLog.report(v, json: json, quiet: quiet, epochs: epochs.value, metric: "val")
            case .training(.checkpoint):
                break
            case .training(.resumed(let step)):
                if !quiet { say("resumed from the checkpoint after step \(step)") }
                bar.resume(at: step)
            case .training(.stoppedEarly(let epoch)):
                if !quiet { say("stopped early after epoch \(epoch): no better validation for \(options.patience) epochs") }
            case .training(.warning(let w)):
                if !quiet { Terminal.warn(w) }
            }
        }
        let r = result.report
        if !quiet {
            var line = "saved \(outputURL.path) (\(result.config.outputdim) classes, weights of epoch \(r.savedEpoch)"
            if let best = r.epochs.first(where: { $0.epoch == r.savedEpoch }) {
                if let a = best.accuracy { line += String(format: ", val acc %.1f%%", 100 * a) }
                if let m = best.meanAveragePrecision { line += String(format: ", val mAP %.1f%%", 100 * m) }
            }
            line += String(format: ", %.0f s); use it with: ced tag --model %@ FILE", r.trainingSeconds, training.output)
            say(line)
        }
    }

    /// A config.json (or a folder with only one) is an architecture to initialise; anything
    /// else is a checkpoint (`CedModelSpec`).
    func resolveStart() throws -> FinetuneStart {
        guard case .architecture(let url) = CedModelSpec.resolve(modelOptions.model) else {
            return .checkpoint(try modelOptions.load(quiet: training.common.quiet))
        }
        return .architecture(try CedConfig.load(from: url), try CedModelSpec.featureExtractorConfig(besides: url), configFile: url)
    }

    /// `--freeze-encoder`: `ced train-head` with these options.
    func runFrozen(dataset: TrainingDataset, options o: HeadTrainingOptions) throws {
        let checkpoint = try modelOptions.load(quiet: training.common.quiet)
        let json = steps.logFormat == .jsonl, quiet = training.common.quiet, lr = o.learningRate, output = training.outputURL
        let job = HeadTrainingJob(model: checkpoint, dataset: dataset, output: output, options: o, skipUnreadableFiles: dataOptions.skipBadFiles,
                                  overwrite: training.overwrite, concurrency: training.common.jobs)
        let result = try job.run { event in
            switch event {
            case .epoch(let e) where json:
                try? TrainingLog.printJSON(CedTrainingLogLine(epoch: e.epoch, step: e.epoch, loss: e.trainLoss, lr: lr,
                                                              accuracy: e.validationAccuracy, meanAveragePrecision: e.validationMAP))
            case .warning(let w):
                if !quiet { Terminal.warn(w) }
            default:
                break
            }
        }
        if !quiet {
            Terminal.write(to: json ? FileHandle.standardError : FileHandle.standardOutput,
                           result.trained.report.formatted() + "\nsaved \(output.path) (encoder frozen, new head for \(result.config.outputdim) classes)\n")
        }
    }
}

extension FinetuneOptions.Schedule: ExpressibleByArgument {}
extension FinetuneOptions.BatchNormStatistics: ExpressibleByArgument {}
extension CedLoss: ExpressibleByArgument {}

/// The log lines `ced finetune` and `ced distill train` print (`CedTrainingLogLine`).
enum TrainingLog {
    /// A line of `--log-format jsonl` on stdout.
    static func printJSON(_ line: CedTrainingLogLine) throws {
        Terminal.write(to: FileHandle.standardOutput, try CedJSONText.encode(line) + "\n")
    }

    /// A progress line: on stdout, or on stderr when stdout carries the JSON lines.
    static func say(_ line: String, json: Bool) {
        Terminal.write(to: json ? FileHandle.standardError : FileHandle.standardOutput, line + "\n")
    }

    /// Prints a validation: its JSON line with `--log-format jsonl` (only when the epoch was
    /// evaluated), else its text line unless quiet.
    static func report(_ v: TrainingValidationLog, json: Bool, quiet: Bool, epochs: Int, metric: String) {
        let line = CedTrainingLogLine(v)
        if json && line.isValidated {
            try? printJSON(line)
        } else if !json && !quiet {
            say(line.text(epochs: epochs, metric: metric), json: false)
        }
    }
}
