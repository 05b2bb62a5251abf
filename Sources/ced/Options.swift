import ArgumentParser
import CED
import Foundation

// The options several commands share, each group validated once.

extension CedPrecision: ExpressibleByArgument {}


/// How to read a checkpoint (`ced info` and, with `--model`, every command that loads one).
struct CheckpointOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Hub revision: branch, tag or commit.", valueName: "rev"))
    var revision: String?

    @Option(name: .customLong("labels"),
            help: ArgumentHelp("Class names from a CSV (index,mid,display_name), e.g. for .pt files that carry none.", valueName: "csv"))
    var labels: String?

    @Option(name: .customLong("config"),
            help: ArgumentHelp("config.json to use with a checkpoint file that has none beside it.", valueName: "json"))
    var configFile: String?

    @Option(help: ArgumentHelp("Attention heads of a checkpoint without config.json (default: embed_dim / 64, as every published CED).",
                               valueName: "n"))
    var numHeads: Int?

    func validate() throws {
        if let n = numHeads, n <= 0 { throw ValidationError("--num-heads must be positive") }
    }

    /// Loads `model` with these options.
    func load(_ model: String, quiet: Bool) throws -> PretrainedCheckpoint {
        try loadCheckpoint(model, revision: revision, labels: labels, configFile: configFile, numHeads: numHeads, quiet: quiet)
    }
}

/// Loads a checkpoint for a command: download progress on a terminal, warnings on stderr.
func loadCheckpoint(_ model: String, revision: String? = nil, labels: String? = nil, configFile: String? = nil,
                    numHeads: Int? = nil, quiet: Bool) throws -> PretrainedCheckpoint {
    var hub = HubOptions()
    if Terminal.stderrIsTTY && !quiet { hub.progress = HubOptions.stderrProgressBar() }
    let options = PretrainedCheckpoint.Options(configFile: configFile.map { URL(fileURLWithPath: $0) },
                                               labelsFile: labels.map { URL(fileURLWithPath: $0) }, numHeads: numHeads, hub: hub)
    let checkpoint = try PretrainedCheckpoint.load(model, revision: revision, options: options)
    if !quiet { for w in checkpoint.warnings { Terminal.warn(w) } }
    return checkpoint
}

struct ModelOptions: ParsableArguments {
    @Option(name: .shortAndLong,
            help: ArgumentHelp("Hub id, local folder or checkpoint file (.safetensors, pytorch_model.bin, the authors' .pt).",
                               valueName: "id|path"))
    var model = "mispeech/ced-mini"

    @OptionGroup var checkpoint: CheckpointOptions

    @Option(help: ArgumentHelp("Arithmetic of the encoder's matrix products: fp32 (matches the reference), auto (the fastest plan on this CPU that stays within 0.01 of fp32: bf16, int8 in fc1 or fp32, measured once and cached), bf16, or int8 (every Linear product in int8: smallest and fastest, probabilities within about 0.03).", valueName: "fp32|auto|bf16|int8"))
    var precision: CedPrecision = .fp32

    /// The checkpoint's model and feature extractor, at the requested precision (a mode
    /// slower than fp32 on this CPU says so on stderr).
    func tagger(quiet: Bool) throws -> CedAudioTagger {
        let checkpoint = try load(quiet: quiet)
        if !quiet, let w = CedPrecisionAdvisor.shared.warning(for: precision, config: checkpoint.config) { Terminal.warn(w) }
        return try CedAudioTagger(checkpoint, precision: precision)
    }

    /// Loads the checkpoint, printing download progress when stderr is a terminal.
    func load(quiet: Bool) throws -> PretrainedCheckpoint { try checkpoint.load(model, quiet: quiet) }
}

/// Throws unless `value`, when given, is a positive number of seconds.
func requirePositiveSeconds(_ value: Double?, _ option: String) throws {
    if let v = value, !(v > 0 && v.isFinite) { throw ValidationError("\(option) must be a positive number of seconds") }
}

/// `--jobs` and `--quiet` of the commands that work through many files.
struct CommonOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: ArgumentHelp("Files processed in parallel.", valueName: "n"))
    var jobs: Int = max(1, ProcessInfo.processInfo.activeProcessorCount)

    @Flag(name: .shortAndLong, help: "No progress bar, progress lines or warnings (errors are still reported).")
    var quiet = false

    func validate() throws {
        if jobs < 1 { throw ValidationError("--jobs must be at least 1") }
    }
}

/// How window scores become events (`ced tag --events`, `ced listen`); `--threshold`,
/// `--window` and `--hop` are the commands' own.
struct EventOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Per-class thresholds: a CSV of label,threshold[,release] (classes not listed use --threshold if given, else are not reported).", valueName: "csv"))
    var thresholds: String?

    @Option(help: ArgumentHelp("An event lasts while window scores stay at or above this (hysteresis; default: the threshold).", valueName: "p"))
    var release: Float?

    @Option(name: .customLong("min-duration"), help: ArgumentHelp("Drop events shorter than this (default 0).", valueName: "seconds"))
    var minDuration: Double?

    @Option(name: .customLong("merge-gap"), help: ArgumentHelp("Merge events of one class separated by less than this (default 0).", valueName: "seconds"))
    var mergeGap: Double?

    @Option(help: ArgumentHelp("How much of a window a sound fills when the window's score rises, which places onsets and offsets (0.5: window midpoints; default 0.25).", valueName: "fraction"))
    var fill: Double?

    /// The first of these options given, for "needs --events".
    var firstGiven: String? {
        [("--thresholds", thresholds != nil), ("--release", release != nil), ("--min-duration", minDuration != nil),
         ("--merge-gap", mergeGap != nil), ("--fill", fill != nil)].first { $0.1 }?.0
    }

    func validate() throws {
        if let r = release, !r.isFinite { throw ValidationError("--release must be a number") }
        if let d = minDuration, !(d.isFinite && d >= 0) { throw ValidationError("--min-duration must be a non-negative number of seconds") }
        if let g = mergeGap, !(g.isFinite && g >= 0) { throw ValidationError("--merge-gap must be a non-negative number of seconds") }
        if let f = fill, !(f.isFinite && f >= 0 && f <= 1) { throw ValidationError("--fill must be between 0 and 1") }
    }

    /// The library's rules for `config`'s classes with `--threshold` (see
    /// `CedEventOptions(classCount:threshold:classThresholds:release:...)`).
    func options(config: CedConfig, threshold: Float?, ongoing: Bool) throws -> CedEventOptions {
        if let t = threshold, !t.isFinite { throw ValidationError("--threshold must be a number") }
        if let r = release, let t = threshold, r > t { throw ValidationError("--release (\(r)) must not be above --threshold (\(t))") }
        if let r = release, thresholds == nil && threshold == nil && r > 0.5 {
            throw ValidationError("--release (\(r)) must not be above the threshold (0.5 by default)")
        }
        let classThresholds = try thresholds.map { path in
            do {
                return try CedEventOptions.classThresholds(from: URL(fileURLWithPath: path), labels: config.labels)
            } catch let e as CedFileError {
                throw ValidationError("--thresholds \(e)")
            }
        }
        return try CedEventOptions(classCount: config.outputdim, threshold: threshold, classThresholds: classThresholds, release: release,
                                   minDuration: minDuration ?? 0, mergeGap: mergeGap ?? 0, fill: fill ?? 0.25, reportOngoing: ongoing)
    }

    /// The windows of `window`/`hop` seconds for `tagger`.
    static func windowing(_ tagger: CedAudioTagger, window: Double, hop: Double) throws -> CedWindowing {
        do { return try tagger.windowing(window: window, hop: hop) } catch let e as StreamingError {
            throw ValidationError("--window/--hop: \(e.reason)")
        }
    }
}

/// The options `ced train-head`, `ced finetune` and `ced distill train` share; unset numbers
/// take each command's defaults.
struct TrainingOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: ArgumentHelp("The model folder to write.", valueName: "dir"))
    var output: String

    @Option(help: ArgumentHelp("Passes over the training data (default: train-head 100, finetune 10 or 30 from a random initialisation, distill 20 or more so that a small store gets 3000 steps).", valueName: "n"))
    var epochs: Int?

    @Option(name: .customLong("lr"), help: ArgumentHelp("Peak learning rate (default: 1e-3; finetune 1e-4 from trained weights).", valueName: "x"))
    var learningRate: Double?

    @Option(help: ArgumentHelp("AdamW's decoupled weight decay on the matrices (default: train-head 0.01, finetune 0.05, distill 0).", valueName: "x"))
    var weightDecay: Double?

    @Option(help: ArgumentHelp("Examples per optimiser step (default: train-head 32, finetune 8, distill 32 or fewer so that an epoch has 40 steps).", valueName: "n"))
    var batchSize: Int?

    @Option(help: ArgumentHelp("Stop after this many validations without improvement (0: never; default: train-head 10, else 0).", valueName: "n"))
    var patience: Int?

    @Option(help: ArgumentHelp("Seed of the split, the batch order, augmentation, dropout and new weights.", valueName: "n"))
    var seed: UInt64 = 0

    @Flag(help: "Replace an existing model folder at --output.")
    var overwrite = false

    @OptionGroup var common: CommonOptions

    var outputURL: URL { URL(fileURLWithPath: (output as NSString).expandingTildeInPath) }

    func validate() throws {
        if let e = epochs, e < 1 { throw ValidationError("--epochs must be at least 1") }
        if let lr = learningRate, !(lr > 0 && lr.isFinite) { throw ValidationError("--lr must be a positive number") }
        if let w = weightDecay, !(w >= 0 && w.isFinite) { throw ValidationError("--weight-decay must be a number ≥ 0") }
        if let b = batchSize, b < 1 { throw ValidationError("--batch-size must be at least 1") }
        if let p = patience, p < 0 { throw ValidationError("--patience must be ≥ 0") }
    }

    /// These options over the head trainer's defaults.
    func head(validationSplit: Double?, multiLabel: Bool) -> HeadTrainingOptions {
        var o = HeadTrainingOptions()
        if let epochs { o.epochs = epochs }
        if let learningRate { o.learningRate = learningRate }
        if let weightDecay { o.weightDecay = weightDecay }
        if let batchSize { o.batchSize = batchSize }
        if let validationSplit { o.validationSplit = validationSplit }
        if let patience { o.patience = patience }
        o.seed = seed
        o.multiLabel = multiLabel
        return o
    }
}

/// Labelled training data (`ced train-head`, `ced finetune`).
struct DataOptions: ParsableArguments {
    @Option(help: ArgumentHelp("A folder with one subfolder per class, or a CSV file,label[;label...].", valueName: "dir|csv"))
    var data: String

    @Flag(help: "Several labels per file (CSV label1;label2): sigmoid outputs.")
    var multiLabel = false

    @Option(name: .customLong("val-split"), help: ArgumentHelp("Fraction of each class's files held out for validation (0: none; default: train-head 0.2, finetune 0.1).", valueName: "x"))
    var validationSplit: Double?

    @Flag(help: "Leave out audio files that cannot be decoded (with a warning) instead of stopping.")
    var skipBadFiles = false

    func validate() throws {
        if let v = validationSplit, !(v >= 0 && v < 1) { throw ValidationError("--val-split must lie in [0, 1)") }
    }

    /// The dataset, checked for a validation split of `validationSplit ?? defaultSplit`.
    func load(defaultSplit: Double) throws -> TrainingDataset {
        let dataset = try TrainingDataset.load(from: URL(fileURLWithPath: (data as NSString).expandingTildeInPath), multiLabel: multiLabel)
        try dataset.check(validationSplit: validationSplit ?? defaultSplit)
        return dataset
    }
}

/// The step-based training of `ced finetune` and `ced distill train`.
struct StepOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Linear warm-up steps (default: finetune 0, distill 5 % of the run).", valueName: "steps"))
    var warmup: Int?

    @Option(help: ArgumentHelp("After warm-up: cosine decay to 0.1·lr (upstream) or constant.", valueName: "cosine|constant"))
    var schedule: FinetuneOptions.Schedule = .cosine

    @Option(help: ArgumentHelp("Clip the global gradient norm to this.", valueName: "norm"))
    var gradClip: Double?

    @Option(help: ArgumentHelp("Mixup's α (0: off; default: finetune 0, distill upstream's 0.5).", valueName: "alpha"))
    var mixup: Double?

    @Option(help: ArgumentHelp("Also write a checkpoint every this many steps (besides every epoch).", valueName: "steps"))
    var saveEvery: Int = 0

    @Flag(help: "Continue an interrupted run (same command and data) from its last checkpoint.")
    var resume = false

    @Option(help: ArgumentHelp("Output: text (progress bar, a line per epoch) or jsonl (a JSON object per step on stdout).", valueName: "text|jsonl"))
    var logFormat: LogFormat = .text

    enum LogFormat: String, ExpressibleByArgument, CaseIterable { case text, jsonl }

    func validate() throws {
        if let w = warmup, w < 0 { throw ValidationError("--warmup must be ≥ 0") }
        if let c = gradClip, !(c > 0 && c.isFinite) { throw ValidationError("--grad-clip must be a positive number") }
        if let m = mixup, !(m >= 0 && m.isFinite) { throw ValidationError("--mixup must be ≥ 0") }
        if saveEvery < 0 { throw ValidationError("--save-every must be ≥ 0") }
    }
}

/// `--shard`, `--output` and `--resume` of bulk tagging (`CedShard`, `CedResultLog`).
struct BulkOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Tag a part of the inputs: i/n (0 ≤ i < n) of the sorted files, or auto (the Slurm array task or Kubernetes Indexed Job pod).", valueName: "i/n|auto"))
    var shard: String?

    @Option(help: ArgumentHelp("Append each file's result (JSON Lines) to this file as soon as it is done; one file per shard.", valueName: "file.jsonl"))
    var output: String?

    @Flag(help: "With --output: keep the results already in the file and tag only the files not in it yet.")
    var resume = false

    func validate() throws {
        if resume && output == nil { throw ValidationError("--resume needs --output") }
    }

    /// The inputs of this shard not done yet, the missing ones of this shard, and the log.
    func inputs(_ paths: [String], quiet: Bool) throws -> (files: [InputFile], missing: [(path: String, reason: String)], log: CedResultLog?) {
        var (files, missing) = expandInputs(paths)
        do {
            if let shard {
                let s = try CedShard(parsing: shard)
                let mine = Set(s.select(Set(files.map(\.name) + missing.map(\.path)).sorted()))
                var seen = Set<String>()
                files = files.filter { mine.contains($0.name) && seen.insert($0.name).inserted }
                missing = missing.filter { mine.contains($0.path) }
            }
            guard let output else { return (files, missing, nil) }
            let log = try CedResultLog(url: URL(fileURLWithPath: (output as NSString).expandingTildeInPath), resume: resume)
            let total = files.count
            files = files.filter { !log.isDone($0.name) }
            if !quiet {
                if log.cutBytes > 0 { Terminal.warn("\(output): cut \(log.cutBytes) bytes of an unfinished or damaged last line; those files are tagged again") }
                if log.foundLines > 0 { Terminal.warn("resuming: \(total - files.count) of \(total) files are already in \(output)") }
            }
            return (files, missing, log)
        } catch let e as BulkJobError where e.kind == .shard {
            throw ValidationError(e.description)
        }
    }
}
