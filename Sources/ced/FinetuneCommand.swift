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

    @Option(help: ArgumentHelp("A folder with one subfolder per class, or a CSV file,label[;label...].", valueName: "dir|csv"))
    var data: String

    @Option(name: .shortAndLong, help: ArgumentHelp("The model folder to write.", valueName: "dir"))
    var output: String

    @Flag(help: "Several labels per file (CSV label1;label2).")
    var multiLabel = false

    @Flag(help: "Train only a new head on the frozen encoder: exactly `ced train-head` (its defaults; --epochs, --lr, --weight-decay, --batch-size, --val-split, --patience, --seed apply).")
    var freezeEncoder = false

    @Option(help: ArgumentHelp("Start from the model's weights or from upstream's random initialisation of its architecture.", valueName: "pretrained|random"))
    var initialization: Initialization = .pretrained

    @Option(help: ArgumentHelp("Passes over the training data (default 10, or 30 from a random initialisation).", valueName: "n"))
    var epochs: Int?

    @Option(help: ArgumentHelp("Segments per optimiser step.", valueName: "n"))
    var batchSize: Int?

    @Option(name: .customLong("lr"), help: ArgumentHelp("Peak learning rate (default 1e-4, or 1e-3 from a random initialisation).", valueName: "x"))
    var learningRate: Double?

    @Option(help: ArgumentHelp("AdamW's decoupled weight decay (matrices only).", valueName: "x"))
    var weightDecay: Double?

    @Option(help: ArgumentHelp("Linear warm-up steps.", valueName: "steps"))
    var warmup: Int = 0

    @Option(help: ArgumentHelp("After warm-up: cosine decay to 0.1·lr (upstream) or constant.", valueName: "cosine|constant"))
    var schedule: FinetuneOptions.Schedule = .cosine

    @Option(help: ArgumentHelp("Clip the global gradient norm to this.", valueName: "norm"))
    var gradClip: Double?

    @Option(name: .customLong("val-split"), help: ArgumentHelp("Fraction of each class's files held out for validation (0: none).", valueName: "x"))
    var validationSplit: Double?

    @Option(help: ArgumentHelp("Stop after this many validations without a better accuracy (mAP for --multi-label); 0: never.", valueName: "n"))
    var patience: Int?

    @Option(help: ArgumentHelp("Seed of the split, batch order, augmentation, dropout and new weights.", valueName: "n"))
    var seed: UInt64 = 0

    @Option(help: ArgumentHelp("The loss (default: softmax cross-entropy for single-label data with a new head, else the pooling's: bce, or bce_with_logits for logit pooling).", valueName: "bce|bce_with_logits|cross_entropy"))
    var loss: CedTrainingLoss?

    @Option(help: ArgumentHelp("Mixup's α (upstream 0.5; 0: off).", valueName: "alpha"))
    var mixup: Double = 0

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

    @Option(help: ArgumentHelp("Output: text (progress bar, a line per epoch) or jsonl (a JSON object per step on stdout).", valueName: "text|jsonl"))
    var logFormat: LogFormat = .text

    @Option(help: ArgumentHelp("Also write a checkpoint every this many steps (besides every epoch).", valueName: "steps"))
    var saveEvery: Int = 0

    @Flag(help: "Continue an interrupted run (same command and data) from its last checkpoint.")
    var resume = false

    @Option(name: .shortAndLong, help: ArgumentHelp("Files decoded in parallel.", valueName: "n"))
    var jobs: Int = defaultJobs

    @Flag(help: "Leave out audio files that cannot be decoded (with a warning) instead of stopping.")
    var skipBadFiles = false

    @Flag(help: "Replace an existing model folder at --output.")
    var overwrite = false

    @Flag(name: .shortAndLong, help: "No progress bar, per-epoch lines or warnings.")
    var quiet = false

    enum LogFormat: String, ExpressibleByArgument, CaseIterable { case text, jsonl }
    enum Initialization: String, ExpressibleByArgument, CaseIterable { case pretrained, random }

    func validate() throws {
        if let e = epochs, e < 1 { throw ValidationError("--epochs must be at least 1") }
        if let b = batchSize, b < 1 { throw ValidationError("--batch-size must be at least 1") }
        if let lr = learningRate, !(lr > 0 && lr.isFinite) { throw ValidationError("--lr must be a positive number") }
        if let w = weightDecay, !(w >= 0 && w.isFinite) { throw ValidationError("--weight-decay must be a number ≥ 0") }
        if warmup < 0 { throw ValidationError("--warmup must be ≥ 0") }
        if let c = gradClip, !(c > 0 && c.isFinite) { throw ValidationError("--grad-clip must be a positive number") }
        if let v = validationSplit, !(v >= 0 && v < 1) { throw ValidationError("--val-split must lie in [0, 1)") }
        if let p = patience, p < 0 { throw ValidationError("--patience must be ≥ 0") }
        if !(mixup >= 0 && mixup.isFinite) { throw ValidationError("--mixup must be ≥ 0") }
        if timeMask < 0 || freqMask < 0 { throw ValidationError("--time-mask and --freq-mask must be ≥ 0") }
        if !(shift >= 0 && shift <= 1) { throw ValidationError("--shift must lie in [0, 1]") }
        if saveEvery < 0 { throw ValidationError("--save-every must be ≥ 0") }
        if jobs < 1 { throw ValidationError("--jobs must be at least 1") }
        if let m = activationMemory, m < 1 { throw ValidationError("--activation-memory must be a positive number of MB") }
        if freezeEncoder && resume { throw ValidationError("--freeze-encoder trains in seconds from cached embeddings; it has no --resume") }
    }

    var options: FinetuneOptions {
        var o = FinetuneOptions()
        o.epochs = epochs
        if let batchSize { o.batchSize = batchSize }
        o.learningRate = learningRate
        if let weightDecay { o.weightDecay = weightDecay }
        o.warmup = warmup
        o.schedule = schedule
        o.gradientClip = gradClip
        if let validationSplit { o.validationSplit = validationSplit }
        if let patience { o.patience = patience }
        o.seed = seed
        o.multiLabel = multiLabel
        o.loss = loss
        o.augmentation = noAugment ? .none
            : CedAugmentation(shift: shift, shiftProbability: shift > 0 ? 0.5 : 0, timeMask: timeMask, freqMask: freqMask)
        o.mixup = noAugment ? 0 : mixup
        o.randomInit = initialization == .random
        o.saveEvery = saveEvery
        o.precision = modelOptions.precision
        o.batchNormStatistics = bnStats
        o.activationMemoryLimit = activationMemory.map { $0 * 1_000_000 }
        return o
    }

    func run() throws {
        let dataset = try TrainingDataset.load(from: URL(fileURLWithPath: (data as NSString).expandingTildeInPath), multiLabel: multiLabel)
        let outputURL = URL(fileURLWithPath: (output as NSString).expandingTildeInPath)
        try dataset.check(validationSplit: validationSplit ?? (freezeEncoder ? HeadTrainingOptions().validationSplit : FinetuneOptions().validationSplit))
        try HeadCheckpointWriter.checkOutput(outputURL, overwrite: overwrite)
        if freezeEncoder { return try runFrozen(dataset: dataset, output: outputURL) }

        let start = try resolveStart()
        let json = logFormat == .jsonl
        // In jsonl mode stdout carries only the JSON lines; everything else goes to stderr.
        let say: (String) -> Void = { line in
            if json { Terminal.write(to: FileHandle.standardError, line + "\n") } else {
                Terminal.write(to: FileHandle.standardOutput, line + "\n")
            }
        }
        let c = start.config
        if !quiet {
            say("model: \(modelOptions.model) (\(c.name ?? "ced"), embed_dim \(c.embedDim), depth \(c.depth), pooling \(c.pooling.rawValue)\(initialization == .random || isArchitecture(start) ? ", random initialisation" : ""))")
            let counts = zip(dataset.classes, dataset.countsPerClass).map { "\($0) \($1)" }.joined(separator: ", ")
            say("data: \(dataset.examples.count) files, \(dataset.classes.count) classes (\(counts))")
        }
        let quiet = self.quiet
        let tty = Terminal.stderrIsTTY && !quiet
        let decodeBar = Progress(total: dataset.examples.count, enabled: tty && dataset.examples.count > 1)
        let lock = NSLock()
        final class Bar: @unchecked Sendable { var bar: StepProgress?; var epochs = 0 }
        let bar = Bar()
        let job = FinetuneJob(start: start, dataset: dataset, output: outputURL, options: options, resume: resume,
                              skipUnreadableFiles: skipBadFiles, overwrite: overwrite, concurrency: jobs)
        final class Total: @unchecked Sendable { var epochs = 0 }
        let total = Total()
        let result = try job.run { event in
            switch event {
            case .decoding(_, _, let failed):
                lock.lock(); decodeBar.step(failed: failed); lock.unlock()
            case .plan(let p):
                bar.bar = StepProgress(total: p.totalSteps, enabled: tty)
                total.epochs = p.epochs
                guard !quiet else { return }
                say("training: \(p.trainFiles) files (\(p.trainSegments) segments), \(p.validationFiles) for validation; \(p.stepsPerEpoch) steps per epoch, \(p.totalSteps) in all; "
                    + "\(p.keptHead ? "the model's head and classes kept" : "a new head for \(p.classes.count) classes"); loss \(p.loss.rawValue); lr \(p.learningRate); "
                    + String(format: "activations %.0f MB", Double(p.activationBytes) / 1e6))
            case .step(let s):
                if json { Terminal.write(to: FileHandle.standardOutput, TrainingLog.json(s) + "\n") }
                bar.bar?.step(to: s.step, loss: s.loss, lr: s.lr)
            case .validation(let v):
                TrainingLog.report(v, json: json, quiet: quiet, epochs: total.epochs, metric: "val", say: say)
            case .checkpoint:
                break
            case .resumed(let step):
                if !quiet { say("resumed from the checkpoint after step \(step)") }
                bar.bar?.step(to: step, loss: nil, lr: nil)
            case .stoppedEarly(let epoch):
                if !quiet { say("stopped early after epoch \(epoch): no better validation for \(options.patience) epochs") }
            case .warning(let w):
                if !quiet { Terminal.warn(w) }
            }
        }
        bar.bar?.finish()
        let r = result.report
        if !quiet {
            var line = "saved \(outputURL.path) (\(result.config.outputdim) classes, weights of epoch \(r.savedEpoch)"
            if let best = r.epochs.first(where: { $0.epoch == r.savedEpoch }) {
                if let a = best.accuracy { line += String(format: ", val acc %.1f%%", 100 * a) }
                if let m = best.meanAveragePrecision { line += String(format: ", val mAP %.1f%%", 100 * m) }
            }
            line += String(format: ", %.0f s); use it with: ced tag --model %@ FILE", r.trainingSeconds, output)
            say(line)
        }
    }

    func isArchitecture(_ s: FinetuneStart) -> Bool {
        if case .architecture = s { return true }
        return false
    }

    /// A config.json (or a folder with only one) is an architecture to initialise; anything
    /// else is a checkpoint (`CedModelSpec`).
    func resolveStart() throws -> FinetuneStart {
        guard case .architecture(let url) = CedModelSpec.resolve(modelOptions.model) else {
            return .checkpoint(try modelOptions.load(quiet: quiet))
        }
        return .architecture(try CedConfig.load(from: url), try CedModelSpec.featureExtractorConfig(besides: url), configFile: url)
    }

    /// `--freeze-encoder`: `ced train-head` with these options.
    func runFrozen(dataset: TrainingDataset, output: URL) throws {
        var o = HeadTrainingOptions()
        if let epochs { o.epochs = epochs }
        if let learningRate { o.learningRate = learningRate }
        if let weightDecay { o.weightDecay = weightDecay }
        if let batchSize { o.batchSize = batchSize }
        if let validationSplit { o.validationSplit = validationSplit }
        if let patience { o.patience = patience }
        o.seed = seed
        o.multiLabel = multiLabel
        let checkpoint = try modelOptions.load(quiet: quiet)
        let json = logFormat == .jsonl, quiet = self.quiet, lr = o.learningRate
        let job = HeadTrainingJob(model: checkpoint, dataset: dataset, output: output, options: o,
                                  skipUnreadableFiles: skipBadFiles, overwrite: overwrite, concurrency: jobs)
        let result = try job.run { event in
            switch event {
            case .epoch(let e):
                if json {
                    var line = "{\"epoch\": \(e.epoch), \"step\": \(e.epoch), \"loss\": \(jsonNumber(e.trainLoss)), \"lr\": \(jsonNumber(lr))"
                    if let v = e.validationAccuracy { line += ", \"val_accuracy\": \(jsonNumber(v))" }
                    if let m = e.validationMAP { line += ", \"val_map\": \(jsonNumber(m))" }
                    Terminal.write(to: FileHandle.standardOutput, line + "}\n")
                }
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
extension CedTrainingLoss: ExpressibleByArgument {}

/// A one-line progress bar of optimiser steps on stderr: step, loss, lr, time left.
final class StepProgress: @unchecked Sendable {
    let total: Int
    let enabled: Bool
    let start = Date()
    var startStep = 0
    var lastDraw = Date.distantPast
    var smoothed: Double?
    var shown = false

    let unit: String

    init(total: Int, enabled: Bool, unit: String = "steps") {
        self.total = total
        self.enabled = enabled
        self.unit = unit
    }

    func step(to step: Int, loss: Double?, lr: Double?) {
        if loss == nil { startStep = step }
        if let loss { smoothed = smoothed.map { 0.9 * $0 + 0.1 * loss } ?? loss }
        guard enabled else { return }
        let now = Date()
        if step < total && now.timeIntervalSince(lastDraw) < 0.2 { return }
        lastDraw = now
        let elapsed = now.timeIntervalSince(start)
        let done = step - startStep
        let rate = elapsed > 0 ? Double(done) / elapsed : 0
        let left = rate > 0 ? Double(total - step) / rate : 0
        let width = 24
        let filled = total > 0 ? width * step / total : width
        var line = "[\(String(repeating: "=", count: filled))\(String(repeating: " ", count: width - filled))] \(unit == "steps" ? "step " : "")\(step)/\(total)\(unit == "steps" ? "" : " " + unit)"
        if let smoothed { line += String(format: "  loss %.4f", smoothed) }
        if let lr { line += String(format: "  lr %.2e", lr) }
        line += "  ETA \(Progress.clock(left))"
        Terminal.lock.lock(); defer { Terminal.lock.unlock() }
        FileHandle.standardError.write(Data(("\r\u{1B}[K" + line).utf8))
        shown = true
        Progress.shown = true
    }

    func finish() {
        guard enabled, shown else { return }
        Terminal.lock.lock(); defer { Terminal.lock.unlock() }
        Progress.clearLineIfShown()
    }
}

/// The lines `ced finetune` and `ced distill train` print per step and per epoch.
enum TrainingLog {
    /// `{"epoch": e, "step": s, "loss": x, "lr": y[, "grad_norm": g]}`
    static func json(_ s: FinetuneStepLog) -> String {
        var line = "{\"epoch\": \(s.epoch), \"step\": \(s.step), \"loss\": \(jsonNumber(s.loss)), \"lr\": \(jsonNumber(s.lr))"
        if let g = s.gradNorm { line += ", \"grad_norm\": \(jsonNumber(g))" }
        return line + "}"
    }

    /// `{"epoch", "step", "validation": true, "train_loss", "val_accuracy"|"val_map", "best"}`
    static func json(_ v: FinetuneValidationLog) -> String {
        var line = "{\"epoch\": \(v.epoch), \"step\": \(v.step), \"validation\": true, \"train_loss\": \(jsonNumber(v.trainLoss))"
        if let a = v.accuracy { line += ", \"val_accuracy\": \(jsonNumber(a))" }
        if let m = v.meanAveragePrecision { line += ", \"val_map\": \(jsonNumber(m))" }
        return line + ", \"best\": \(v.isBest)}"
    }

    /// `epoch  3/10  train loss 0.2345  val acc  95.0%  *`
    static func text(_ v: FinetuneValidationLog, epochs: Int, metric: String) -> String {
        var line = String(format: "epoch %\(String(epochs).count)d/%d  train loss %.4f", v.epoch, epochs, v.trainLoss)
        if let a = v.accuracy { line += String(format: "  \(metric) acc %5.1f%%", 100 * a) }
        if let m = v.meanAveragePrecision { line += String(format: "  \(metric) mAP %5.1f%%", 100 * m) }
        if v.isBest && (v.accuracy != nil || v.meanAveragePrecision != nil) { line += "  *" }
        return line
    }

    /// Prints a validation: its JSON object on stdout with `--log-format jsonl` (only when the
    /// epoch was evaluated), else its text line through `say` unless quiet.
    static func report(_ v: FinetuneValidationLog, json: Bool, quiet: Bool, epochs: Int, metric: String, say: (String) -> Void) {
        let validated = v.accuracy != nil || v.meanAveragePrecision != nil
        if json && validated {
            Terminal.write(to: FileHandle.standardOutput, TrainingLog.json(v) + "\n")
        } else if !json && !quiet {
            say(text(v, epochs: epochs, metric: metric))
        }
    }
}
