import ArgumentParser
import CED
import Foundation

extension CedChunking: ExpressibleByArgument {}

/// `--top-k N|all`.
enum TopK: ExpressibleByArgument, Equatable {
    case count(Int)
    case all

    init?(argument: String) {
        if argument.lowercased() == "all" { self = .all; return }
        guard let n = Int(argument), n >= 0 else { return nil }
        self = .count(n)
    }

    var limit: Int? { if case .count(let n) = self { return n } else { return nil } }
    var defaultValueDescription: String { limit.map(String.init) ?? "all" }
}

extension CedResultFormat: ExpressibleByArgument {}

struct Tag: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Tag audio files with the sound classes CED hears in them.",
        discussion: """
            PATH can be an audio or video file (WAV natively; FLAC, MP3, Ogg, M4A, video \
            files and others through ffmpeg), a directory (searched recursively for audio \
            files) or - for audio bytes on standard input. A file that fails is reported on \
            stderr and the others go on; the exit code is 0 when every file succeeded, 1 when \
            some failed, 2 for usage errors.

            Examples:
              ced tag dog.wav
              ced tag --top-k all --format json --model mispeech/ced-base clips/
              ced tag --threshold 0.3 --format csv recordings/ > tags.csv
              ced tag --window 10 --hop 5 --format jsonl field-recording.flac
              curl -s https://example.org/clip.mp3 | ced tag -

            Bulk tagging on a scheduler: --shard i/n (or auto: the Slurm array task or \
            Kubernetes Indexed Job pod) tags the sorted inputs whose position is i modulo n; \
            --output FILE.jsonl appends each file's result as one line the moment it is done, \
            and --resume skips the files already in FILE (a killed run started again tags \
            each file exactly once). Give each shard its own FILE.
              ced tag --shard auto --output tags-$SLURM_ARRAY_TASK_ID.jsonl --resume /data/clips/

            With --events, each file is scored in windows of --window seconds (default 2) \
            every --hop seconds (default a quarter of the window) and the scores become \
            events, one per occurrence, with onset, offset, label, peak and mean score. A \
            window score of at least --threshold (default 0.5; per class with --thresholds) \
            starts an event, which lasts while scores stay at or above --release (default: \
            the threshold); events of one class closer than --merge-gap seconds are merged, \
            events shorter than --min-duration are dropped. Formats: json (default off a \
            terminal), jsonl, csv, table, audacity (label track) and raven (selection table); \
            --output-dir writes one file per input. `ced listen` does the same on live input.

              ced tag --events --window 2 --hop 0.5 --threshold 0.7 --merge-gap 0.5 --min-duration 0.5 rec.wav
              ced tag --events --thresholds birds.csv --format raven --output-dir tables/ recordings/
            """)

    @OptionGroup var modelOptions: ModelOptions

    @Argument(help: ArgumentHelp("Audio files, directories, or - for standard input.", valueName: "path"))
    var paths: [String] = []

    @Option(name: .customLong("top-k"), help: ArgumentHelp("Classes to report per file (or per segment): a number or 'all'.", valueName: "n|all"))
    var topK: TopK = .count(5)

    @Option(help: ArgumentHelp("Report only classes scoring at least this (with --events: a window score that starts an event, default 0.5).", valueName: "p"))
    var threshold: Float?

    @Option(help: ArgumentHelp("Output format: table, json, jsonl or csv (default: table on a terminal, json otherwise); with --events also audacity or raven.", valueName: "format"))
    var format: CedResultFormat?

    @Option(help: ArgumentHelp("Also tag consecutive windows of this many seconds: a timeline of segments per file (with --events: the window the events are found with, default 2).", valueName: "seconds"))
    var window: Double?

    @Option(help: ArgumentHelp("Step between window starts (default: the window length; with --events a quarter of it).", valueName: "seconds"))
    var hop: Double?

    @Flag(help: "Report sound events (label, onset, offset, peak and mean score) instead of clip tags.")
    var events = false

    @OptionGroup(title: "Event options (with --events)") var eventOptions: EventOptions

    @Option(name: .customLong("output-dir"), help: ArgumentHelp("With --events: write each input's events to its own file here (needed for audacity and raven with several inputs).", valueName: "dir"))
    var outputDir: String?

    @Option(help: ArgumentHelp("With --events: also draw each file (log-mel, score curves, events, top tags) in a self-contained HTML page: one page for every input, or in a directory (an existing one, or a path ending in /) one page per input.", valueName: "file.html|dir/"))
    var report: String?

    @Option(help: ArgumentHelp("How clips longer than the model's 10 s window are combined: hf (tokens of all chunks pooled once, Hugging Face) or original (per-chunk predictions averaged, the authors' repository).", valueName: "hf|original"))
    var chunking: CedChunking = .hf

    @OptionGroup var bulk: BulkOptions

    @OptionGroup var common: CommonOptions

    func validate() throws {
        if paths.isEmpty { throw ValidationError("give at least one audio file, directory or - (stdin)") }
        if let t = threshold, !t.isFinite { throw ValidationError("--threshold must be a number") }
        try requirePositiveSeconds(window, "--window")
        if hop != nil && window == nil && !events { throw ValidationError("--hop needs --window") }
        try requirePositiveSeconds(hop, "--hop")
        if !events {
            if let name = eventOptions.firstGiven ?? (outputDir != nil ? "--output-dir" : report != nil ? "--report" : nil) { throw ValidationError("\(name) needs --events") }
            if let format, format.isEventOnly { throw ValidationError("--format \(format.rawValue) needs --events") }
        }
        if paths.filter({ $0 == "-" }).count > 1 { throw ValidationError("standard input (-) can be given once") }
        if bulk.output != nil, let format, format != .jsonl { throw ValidationError("--output writes JSON Lines: --format \(format.rawValue) cannot go with it") }
        if bulk.output != nil && outputDir != nil { throw ValidationError("give --output or --output-dir, not both") }
        if (bulk.shard != nil || bulk.output != nil) && paths.contains("-") { throw ValidationError("--shard and --output tag files, not standard input (-)") }
    }

    func run() throws {
        if events { return try runEvents() }
        let (files, missing, log) = try bulk.inputs(paths, quiet: common.quiet)
        let tagger = try modelOptions.tagger(quiet: common.quiet)
        let format = log != nil ? .jsonl : self.format ?? (Terminal.stdoutIsTTY ? .table : .json)
        let printer = ResultPrinter(format.tagEncoder(files: files.map(\.name), labels: tagger.config.labels, windowed: window != nil)!, log: log)
        let windowing = try window.map { try tagWindowing($0, tagger: tagger) }
        let model = modelOptions.model, topK = self.topK.limit, threshold = self.threshold
        let chunking = self.chunking, quiet = common.quiet
        printer.begin()
        let failed = processInputs(files, missing: missing, jobs: common.jobs, quiet: quiet, output: printer.output) { file in
            try tagger.tagResult(contentsOf: URL(fileURLWithPath: file.path), file: file.name, model: model, topK: topK,
                                 threshold: threshold, chunking: chunking, windowing: windowing)
        } consume: { _, r in
            if !quiet { for w in r.warnings { Terminal.warn(w.description) } }
            try printer.write(r)
        }
        printer.end()
        try exitIfFailed(failed, of: files.count + missing.count, quiet: quiet)
    }
}

extension Tag {
    /// `--window`/`--hop` of clip tags: on the mel frame grid, the window capped at the
    /// longest the model sees at once, the hop by default the window.
    func tagWindowing(_ window: Double, tagger: CedAudioTagger) throws -> CedWindowing {
        let w = min(window, tagger.longestWindow)
        if w < window && !common.quiet {
            Terminal.warn("--window \(window) s is longer than the model sees at once (target_length): windows of \(w) s")
        }
        return try EventOptions.windowing(tagger, window: w, hop: hop ?? w)
    }

    /// `--events`: each file through the windowed scorer and the event detector (the same
    /// code as `ced listen`), streamed block by block.
    func runEvents() throws {
        let (files, missing, log) = try bulk.inputs(paths, quiet: common.quiet)
        let format = log != nil ? .jsonl : self.format ?? (Terminal.stdoutIsTTY ? .table : .json)
        if format.isEventOnly && outputDir == nil && files.count + missing.count > 1 {
            throw ValidationError("--format \(format.rawValue) writes one table per recording: give --output-dir for \(files.count + missing.count) inputs")
        }
        let tagger = try modelOptions.tagger(quiet: common.quiet)
        let windowing = try EventOptions.windowing(tagger, window: window ?? 2, hop: hop ?? (window ?? 2) / 4)
        let options = try eventOptions.options(config: tagger.config, threshold: threshold, ongoing: false)
        let encoder = format.eventEncoder(files: files.map(\.name), labels: tagger.config.labels, featureExtractor: tagger.featureExtractor)
        let printer = ResultPrinter(encoder, log: log)
        let model = modelOptions.model, outputDir = self.outputDir, quiet = common.quiet
        if outputDir == nil { printer.begin() }
        let (reportPath, topK) = (report, self.topK.limit)
        let reportDirectory = reportPath.map { $0.hasSuffix("/") || (try? URL(fileURLWithPath: $0).resourceValues(forKeys: [.isDirectoryKey]).isDirectory) == true }
        var reports: [CedReport] = []
        let failed = processInputs(files, missing: missing, jobs: common.jobs, quiet: quiet, output: printer.output) { file in
            let url = URL(fileURLWithPath: file.path)
            guard reportPath != nil else {
                return (CedEventResult(file: file.name, model: model, detection: try tagger.events(contentsOf: url, windowing: windowing, events: options)), nil)
            }
            let r = try tagger.report(.file(url), file: file.name, model: model, topK: topK, windowing: windowing, events: options)
            return (r.eventResult, r)
        } consume: { (file: InputFile, produced: (CedEventResult, CedReport?)) in
            let r = produced.0
            if let page = produced.1, let reportPath {
                if reportDirectory == true {
                    let url = CedResultFormat.outputFile(for: file.name, in: URL(fileURLWithPath: reportPath), suffix: ".report.html")
                    try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
                    try Data(CedReportPage.document([page], title: "CED — \(file.name)").utf8).write(to: url, options: .atomic)
                } else {
                    reports.append(page)
                }
            }
            if !quiet { for w in r.warnings { Terminal.warn(w.description) } }
            guard let outputDir else { return try printer.write(r) }
            // One file per input (as before, csv and table files without their header row).
            let url = format.eventFile(for: file.name, in: URL(fileURLWithPath: outputDir))
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            let text = format == .json ? try encoder.document([r]) : try encoder.encode(r, position: 0)
            try Data(text.utf8).write(to: url, options: .atomic)
            if !quiet && !Terminal.stderrIsTTY { Terminal.write(to: .standardError, "\(file.name): \(r.events.count) events → \(url.path)\n") }
        }
        if outputDir == nil { printer.end() }
        if let reportPath, reportDirectory == false {
            try Data(CedReportPage.document(reports, title: "CED — \(reports.count == 1 ? reports[0].file : "\(reports.count) recordings")").utf8)
                .write(to: URL(fileURLWithPath: reportPath), options: .atomic)
        }
        try exitIfFailed(failed, of: files.count + missing.count, quiet: quiet)
    }
}
