import ArgumentParser
import CED
import Foundation

struct Distill: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Consistent ensemble distillation: store teachers' judgements of augmented audio, then train a student on them without labels.",
        discussion: """
            1. ced distill logits --teacher MODEL [--teacher MODEL2 …] --output STORE AUDIO…
               Every file is cut into --chunk-length pieces; for each of --epochs seeded \
            augmentations of each piece the teachers' mean probabilities are computed and \
            their top --topk kept with the seed (about 88 bytes per view at top 20).
            2. ced distill pack STORE (optional; for large stores): the items' audio written \
            once beside the store, int16 PCM per shard, which training reads by offset.
               ced distill info STORE, ced distill verify STORE
            3. ced distill train --logits STORE --student ced-mini|config.json|MODEL --output DIR
               The student sees exactly the views the teachers judged (the augmentation is \
            replayed from the stored seeds) and learns their top-k outputs: no labels anywhere.

            Examples:
              ced distill logits --teacher mispeech/ced-base --output store/ --epochs 40 recordings/
              ced distill logits ... --shard auto        # one Slurm array task / Indexed Job pod per shard
              ced distill train --logits store/ --student ced-tiny --output my-tiny --eval test.csv
            """,
        subcommands: [DistillLogits.self, DistillPack.self, DistillInfo.self, DistillVerify.self, DistillTrain.self])
}

struct DistillLogits: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logits",
        abstract: "Compute and store the teachers' top-k outputs for every augmented view of every chunk.",
        discussion: """
            Augmentation per (item, epoch), from a seed derived from --seed, the item's path and \
            start and the epoch (documented in the store format): a circular shift of the \
            waveform by a fraction uniform in [−shift, shift] with probability --shift-p, then \
            on the log-mel one time mask (width uniform in [0, --time-mask) frames) and one \
            frequency mask (width in [0, --freq-mask) bins), filled with 0, as upstream.

            A last partial chunk of a file is kept (as upstream) unless shorter than 0.1 s.
            Killed and started again with the same command, a run continues after its last \
            finished block; --shard i/n (or auto, from Slurm/Kubernetes) fills one part of the \
            store, so many processes or machines write one store.
            """)

    @Option(name: .customLong("teacher"), help: ArgumentHelp("A teacher model (repeat for an ensemble; hub id, folder or checkpoint file).", valueName: "model"))
    var teachers: [String] = []

    @Option(name: .shortAndLong, help: ArgumentHelp("The store folder.", valueName: "dir"))
    var output: String

    @Option(help: ArgumentHelp("Augmented views per item (upstream 40).", valueName: "n"))
    var epochs = 40

    @Option(help: ArgumentHelp("Classes kept per view (upstream 20).", valueName: "k"))
    var topk = 20

    @Option(help: ArgumentHelp("Seconds per item.", valueName: "s"))
    var chunkLength = 10.0

    @Option(help: ArgumentHelp("Seed of the augmentation.", valueName: "n"))
    var seed: UInt64 = 0

    @Option(help: ArgumentHelp("Largest waveform shift as a fraction of the chunk (0: none).", valueName: "x"))
    var shift = 0.5

    @Option(name: .customLong("shift-p"), help: ArgumentHelp("Probability of a shift.", valueName: "p"))
    var shiftP = 0.5

    @Option(help: ArgumentHelp("Time-mask width drawn in [0, N) frames (0: none). Default: 192 for a 10 s item, proportionally less for shorter items.", valueName: "n"))
    var timeMask: Int?

    @Option(help: ArgumentHelp("Frequency-mask width drawn in [0, N) mel bins (0: none).", valueName: "n"))
    var freqMask = 24

    @Flag(help: "Draw the two masks' widths and starts independently (default: from one pair of random numbers, as upstream).")
    var independentMasks = false

    @Option(help: ArgumentHelp("This process's part of the store: i/n (0 ≤ i < n), or auto (Slurm array / Kubernetes Indexed Job).", valueName: "i/n|auto"))
    var shard = "0/1"

    @Option(help: ArgumentHelp("The folder item paths are relative to (default: the files' common folder).", valueName: "dir"))
    var dataRoot: String?

    @Option(help: ArgumentHelp("The teachers' arithmetic: fp32, bf16 or int8.", valueName: "fp32|bf16|int8"))
    var precision: CedPrecision = .fp32

    @OptionGroup var common: CommonOptions

    @Argument(help: ArgumentHelp("Audio files, folders (recursive) or list files (.txt: one path per line).", valueName: "path"))
    var paths: [String] = []

    func validate() throws {
        if teachers.isEmpty { throw ValidationError("give at least one --teacher") }
        if paths.isEmpty { throw ValidationError("give the audio to judge (files, folders or a list file)") }
        if epochs < 1 || topk < 1 { throw ValidationError("--epochs and --topk must be at least 1") }
        if !(chunkLength > 0) { throw ValidationError("--chunk-length must be positive") }
        if !(shift >= 0 && shift <= 1) || !(shiftP >= 0 && shiftP <= 1) { throw ValidationError("--shift and --shift-p must lie in [0, 1]") }
        if (timeMask ?? 0) < 0 || freqMask < 0 { throw ValidationError("--time-mask and --freq-mask must be ≥ 0") }
    }

    func run() throws {
        var o = LogitExtractionOptions()
        o.epochs = epochs
        o.topk = topk
        o.chunkLength = chunkLength
        o.seed = seed
        o.augmentation = CedAugmentation(shift: shift, shiftProbability: shiftP, timeMask: timeMask ?? 192, freqMask: freqMask,
                                         timeMaskReference: timeMask == nil ? 1001 : nil, sharedMaskValues: !independentMasks)
        o.precision = precision
        o.jobs = common.jobs
        do { o.shard = try LogitExtractionOptions.parseShard(shard) } catch { throw ValidationError("\(error)") }
        let files: [URL]
        do { files = try AudioFiles.collect(paths) } catch let e as CedFileError { throw ValidationError(e.description) }
        let quiet = common.quiet
        let loaded = try teachers.map { (source: $0, checkpoint: try loadCheckpoint($0, quiet: quiet)) }
        let job = LogitExtractionJob(teachers: loaded, files: files, dataRoot: dataRoot.map { URL(fileURLWithPath: $0) },
                                     store: URL(fileURLWithPath: output), options: o)
        let bar = Progress(enabled: Terminal.stderrIsTTY && !quiet)
        let start = Date()
        let items = try job.run { event in
            switch event {
            case .progress(let done, let total):
                bar.total = total
                bar.step(to: done)
            case .resumed(let n):
                if !quiet { Terminal.warn("resuming: \(n) files of this shard were already done") }
            case .warning(let w):
                if !quiet { Terminal.warn(w) }
            }
        }
        let seconds = Date().timeIntervalSince(start)
        if !quiet {
            let views = items * epochs
            print(String(format: "shard %d/%d: %d items × %d epochs in %.1f s (%.1f views/s) → %@", o.shard.index, o.shard.count,
                         items, epochs, seconds, Double(views) / max(seconds, 1e-9), output))
        }
    }
}

struct DistillPack: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pack",
        abstract: "Write the items' audio once beside the store (int16 PCM, a file per logit shard) for training to read by offset.",
        discussion: """
            Each file is decoded once (any format, resampled as the extraction did), checked \
            against the store's SHA-256, and its items' chunks written to \
            audio-IIIII-of-NNNNN.safetensors with digests of the items and of the audio. \
            ced distill train then reads the samples by offset instead of decoding every file \
            into memory (what a store of millions of clips needs). A killed run started again \
            continues; --shard i/n (or auto) packs the logit shards whose number is i modulo n.
            """)

    @Argument(help: ArgumentHelp("The store folder.", valueName: "store"))
    var store: String

    @Option(help: ArgumentHelp("Where the items' audio is (default: as recorded).", valueName: "dir"))
    var dataRoot: String?

    @Option(help: ArgumentHelp("Pack the logit shards whose number is i modulo n, or auto (Slurm array / Kubernetes Indexed Job).", valueName: "i/n|auto"))
    var shard = "0/1"

    @OptionGroup var common: CommonOptions

    func run() throws {
        let s = try LogitStore(directory: URL(fileURLWithPath: store))
        let part: CedShard
        do { part = try CedShard(parsing: shard) } catch { throw ValidationError("\(error)") }
        guard let root = dataRoot.map({ URL(fileURLWithPath: $0) }) ?? s.recordedDataRoot else {
            throw ValidationError("the store does not record where its audio is; give --data-root")
        }
        let quiet = common.quiet, bar = Progress(enabled: Terminal.stderrIsTTY && !quiet, unit: "items")
        let start = Date()
        let packed = try AudioPack.pack(s, dataRoot: root, shard: part, jobs: common.jobs) { event in
            switch event {
            case .progress(_, let done, let total): (bar.total = total, bar.step(to: done))
            case .resumed(let i, let n): if !quiet { Terminal.warn("resuming shard \(i): \(n) items were already packed") }
            }
        }
        if !quiet {
            print(String(format: "packed %d shard(s) in %.1f s (%@); %d of %d shards of %@ are packed", packed.count, Date().timeIntervalSince(start),
                         packed.map(String.init).joined(separator: ", "), AudioPack.presentShards(of: s).count, s.metadata.shards, store))
        }
    }
}

struct DistillInfo: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "info", abstract: "Describe a logit store: items, epochs, teachers, shards, size, digest.")

    enum Format: String, ExpressibleByArgument { case text, json }

    @Argument(help: ArgumentHelp("The store folder.", valueName: "store"))
    var store: String

    @Option(help: ArgumentHelp("Output: text or json.", valueName: "format"))
    var format: Format = .text

    func run() throws {
        let info = try CedLogitStoreInfo(try LogitStore(directory: URL(fileURLWithPath: store)))
        print(format == .json ? try info.json() : info.text)
    }
}

struct DistillVerify: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Recompute the teachers on sampled stored views and compare them with the store (proves the replay is consistent).")

    @Argument(help: ArgumentHelp("The store folder.", valueName: "store"))
    var store: String

    @Option(help: ArgumentHelp("Items to check (each in one of its epochs; 0: none, e.g. with --audio alone).", valueName: "n"))
    var sample = 16

    @Option(name: .customLong("teacher"), help: ArgumentHelp("Teachers to load instead of the sources the store names (same order).", valueName: "model"))
    var teachers: [String] = []

    @Option(help: ArgumentHelp("Where the items' audio is (default: as recorded).", valueName: "dir"))
    var dataRoot: String?

    @Option(help: ArgumentHelp("Seed of the sample.", valueName: "n"))
    var seed: UInt64 = 0

    @Flag(help: "Also check the audio packs: every item's place and the audio's SHA-256.")
    var audio = false

    func run() throws {
        let s = try LogitStore(directory: URL(fileURLWithPath: store))
        let m = s.metadata
        if audio { print("audio packs: \(try AudioPack.verify(s)) checked, every item in place and every digest right") }
        if sample == 0 { return }
        let sources = teachers.isEmpty ? m.teachers.map(\.source) : teachers
        guard sources.count == m.teachers.count else {
            throw ValidationError("the store was written by \(m.teachers.count) teachers; give as many --teacher")
        }
        let models = try sources.map { src -> CedForAudioClassification in
            let ck = try loadCheckpoint(src, quiet: true)
            return try CedForAudioClassification(config: ck.config, weights: ck.weights, precision: m.precision)
        }
        guard let root = dataRoot.map({ URL(fileURLWithPath: $0) }) ?? s.recordedDataRoot else {
            throw ValidationError("the store does not record where its audio is; give --data-root")
        }
        let r = try s.verify(teachers: models, dataRoot: root, sample: sample, seed: seed)
        for line in r.mismatches.prefix(20) { Terminal.warn("mismatch: \(line)") }
        print("verified \(r.matched) of \(r.checked) sampled views: \(r.matched == r.checked ? "every one matches the store at float16 precision" : "\(r.checked - r.matched) differ")")
        if r.matched != r.checked { throw ExitCode(1) }
    }
}

struct DistillTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a student on a logit store: the stored views replayed, the teachers' top-k as targets, no labels.",
        discussion: """
            --student is a preset (ced-tiny, ced-mini, ced-small, ced-base: randomly \
            initialised as upstream), a config.json of architecture fields, or a model to \
            continue from. Its classes are the store's. Training epoch e replays stored epoch \
            e mod E (upstream's max(epoch % E, 1) never used the first stored epoch; fixed). \
            The student trains with logit pooling and BCE-with-logits and is saved with mean \
            pooling and the teachers' labels. Length: 20 epochs, or more for a small store so \
            that the run has 3000 optimiser steps (600 clips: 75 epochs); --epochs or \
            --min-steps set it. The items' audio comes from the store's packs when every \
            shard has one (ced distill pack), else from the files, decoded once.
            """)

    @Option(help: ArgumentHelp("The logit store.", valueName: "store"))
    var logits: String

    @Option(help: ArgumentHelp("ced-tiny|ced-mini|ced-small|ced-base, a config.json, or a model.", valueName: "student"))
    var student: String

    @OptionGroup var training: TrainingOptions
    @OptionGroup var steps: StepOptions

    @Option(help: ArgumentHelp("Targets outside the top k: zero, or last_mean (min(top k)/(C − k)).", valueName: "zero|last_mean"))
    var labelType: DistillationOptions.LabelType = .zero
    @Flag(help: "Fresh augmentations instead of the stored ones (upstream's disable_consistency ablation).") var noConsistency = false
    @Option(help: ArgumentHelp("fp32 or bf16 products.", valueName: "fp32|bf16")) var precision: CedPrecision = .fp32
    @Option(help: ArgumentHelp("Labelled files to validate on (file,label with the teachers' class names).", valueName: "csv")) var eval: String?
    @Option(help: ArgumentHelp("Validate every N epochs.", valueName: "n")) var evalEvery = 1
    @Option(help: ArgumentHelp("With --eval: save the mean weights of the best N validations (upstream 4; 1: the best).", valueName: "n")) var average = 4
    @Option(help: ArgumentHelp("Where the items' audio is (default: as recorded in the store).", valueName: "dir")) var dataRoot: String?
    @Option(help: ArgumentHelp("The items' samples: auto (the audio packs when every shard has one, else the files), pack, or files.", valueName: "auto|pack|files")) var audio: DistillationOptions.AudioSource = .auto
    @Option(help: ArgumentHelp("Train for at least this many optimiser steps, in whole epochs, instead of --epochs (default: 20 epochs, more for a small store so that the run has 3000 steps).", valueName: "n")) var minSteps: Int?

    func validate() throws {
        if let s = minSteps, s < 1 { throw ValidationError("--min-steps must be at least 1") }
        if minSteps != nil && training.epochs != nil { throw ValidationError("give --epochs or --min-steps, not both") }
    }

    func run() throws {
        let store = try LogitStore(directory: URL(fileURLWithPath: logits))
        let studentSpec: DistillationStudent
        switch CedModelSpec.resolve(student, presets: true) {
        case .preset(let name): studentSpec = .preset(name)
        case .architecture(let url): studentSpec = .architecture(try CedConfig.load(from: url), configFile: url)
        case .checkpoint(let spec): studentSpec = .checkpoint(try loadCheckpoint(spec, quiet: training.common.quiet))
        }
        guard let root = dataRoot.map({ URL(fileURLWithPath: $0) }) ?? store.recordedDataRoot else {
            throw ValidationError("the store does not record where its audio is; give --data-root")
        }
        var o = DistillationOptions()
        o.epochs = training.epochs; o.steps = minSteps; o.audio = audio
        if let learningRate = training.learningRate { o.learningRate = learningRate }
        if let weightDecay = training.weightDecay { o.weightDecay = weightDecay }
        if let mixup = steps.mixup { o.mixup = mixup }
        o.batchSize = training.batchSize; o.warmup = steps.warmup; o.schedule = steps.schedule; o.gradientClip = steps.gradClip
        o.labelType = labelType; o.noConsistency = noConsistency; o.seed = training.seed; o.precision = precision; o.evalEvery = evalEvery
        o.patience = training.patience ?? 0; o.saveEvery = steps.saveEvery; o.average = average
        let evaluation = try eval.map { try TrainingDataset.load(from: URL(fileURLWithPath: $0), multiLabel: true) }
        let job = DistillationJob(store: store, student: studentSpec, output: training.outputURL, options: o, dataRoot: root,
                                  evaluation: evaluation, resume: steps.resume, overwrite: training.overwrite, concurrency: training.common.jobs)
        let json = steps.logFormat == .jsonl, quiet = training.common.quiet
        let bar = Progress(enabled: Terminal.stderrIsTTY && !quiet, unit: "steps"), epochs = Box(0)
        let say = { (line: String) in TrainingLog.say(line, json: json) }
        let result = try job.run { event in
            switch event {
            case .plan(let p):
                (epochs.value, bar.total) = (p.epochs, p.totalSteps)
                if !quiet { say("distilling: \(p.trainItems) items of \(p.trainFiles) files, \(p.classes.count) classes, \(p.stepsPerEpoch) steps per epoch, \(p.totalSteps) in all; \(p.evaluationFiles) evaluation files") }
            case .training(.step(let s)):
                if json { try? TrainingLog.printJSON(CedTrainingLogLine(s)) }
                bar.step(to: s.step, loss: s.loss, lr: s.lr)
            case .training(.validation(let v)):
                TrainingLog.report(v, json: json, quiet: quiet, epochs: epochs.value, metric: "eval")
            case .training(.resumed(let step)):
                bar.resume(at: step)
                if !quiet { say("resumed from the checkpoint after step \(step)") }
            case .training(.stoppedEarly(let e)): if !quiet { say("stopped early after epoch \(e)") }
            case .training(.warning(let w)): if !quiet { Terminal.warn(w) }
            case .opened(let n, let shards): if !quiet && n > 100_000 { say("reading the store: \(n) items in \(shards) shards") }
            case .decoding, .training(.checkpoint): break
            }
        }
        let rep = result.report, saved = rep.savedEpochs.map(String.init).joined(separator: ", ")
        if !quiet, let i = rep.inputSeconds, let st = rep.stepSeconds, let n = rep.timedItems, n > 0 {
            say(String(format: "time: inputs (audio from the %@, log-mels, augmentation, targets) %.1f s, %.0f items/s; optimiser steps %.1f s, %.0f items/s",
                       rep.audio ?? "files", i, Double(n) / max(i, 1e-9), st, Double(n) / max(st, 1e-9)))
        }
        if !quiet { say("saved \(result.output.path) (\(result.config.outputdim) classes, mean pooling, weights of epoch\(result.report.savedEpochs.count > 1 ? "s" : "") \(saved)); use it with: ced tag --model \(training.output) FILE") }
    }
}

extension DistillationOptions.LabelType: ExpressibleByArgument {}
extension DistillationOptions.AudioSource: ExpressibleByArgument {}
