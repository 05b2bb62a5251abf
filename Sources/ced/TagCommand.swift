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

    @Option(help: ArgumentHelp("Per-class thresholds for --events: a CSV of label,threshold[,release] (classes not listed use --threshold if given, else are not reported).", valueName: "csv"))
    var thresholds: String?

    @Option(help: ArgumentHelp("With --events: an event lasts while window scores stay at or above this (hysteresis; default: the threshold).", valueName: "p"))
    var release: Float?

    @Option(name: .customLong("min-duration"), help: ArgumentHelp("With --events: drop events shorter than this (default 0).", valueName: "seconds"))
    var minDuration: Double?

    @Option(name: .customLong("merge-gap"), help: ArgumentHelp("With --events: merge events of one class separated by less than this (default 0).", valueName: "seconds"))
    var mergeGap: Double?

    @Option(help: ArgumentHelp("With --events: how much of a window a sound fills when the window's score rises, which places onsets and offsets (0.5: window midpoints; default 0.25).", valueName: "fraction"))
    var fill: Double?

    @Option(name: .customLong("output-dir"), help: ArgumentHelp("With --events: write each input's events to its own file here (needed for audacity and raven with several inputs).", valueName: "dir"))
    var outputDir: String?

    @Option(help: ArgumentHelp("How clips longer than the model's 10 s window are combined: hf (tokens of all chunks pooled once, Hugging Face) or original (per-chunk predictions averaged, the authors' repository).", valueName: "hf|original"))
    var chunking: CedChunking = .hf

    @Option(name: .shortAndLong, help: ArgumentHelp("Files processed in parallel.", valueName: "n"))
    var jobs: Int = defaultJobs

    @Flag(name: .shortAndLong, help: "No progress bar or warnings on stderr (errors are still reported).")
    var quiet = false

    func validate() throws {
        if paths.isEmpty { throw ValidationError("give at least one audio file, directory or - (stdin)") }
        if let t = threshold, !t.isFinite { throw ValidationError("--threshold must be a number") }
        if let w = window, !(w > 0 && w.isFinite) { throw ValidationError("--window must be a positive number of seconds") }
        if let h = hop {
            guard window != nil || events else { throw ValidationError("--hop needs --window") }
            if !(h > 0 && h.isFinite) { throw ValidationError("--hop must be a positive number of seconds") }
        }
        if !events {
            let eventOnly: [(String, Bool)] = [("--thresholds", thresholds != nil), ("--release", release != nil),
                                               ("--min-duration", minDuration != nil), ("--merge-gap", mergeGap != nil),
                                               ("--fill", fill != nil), ("--output-dir", outputDir != nil)]
            if let (name, _) = eventOnly.first(where: { $0.1 }) { throw ValidationError("\(name) needs --events") }
            if let format, format.isEventOnly { throw ValidationError("--format \(format.rawValue) needs --events") }
        }
        if jobs < 1 { throw ValidationError("--jobs must be at least 1") }
        if paths.filter({ $0 == "-" }).count > 1 { throw ValidationError("standard input (-) can be given once") }
    }

    func run() throws {
        if events { return try runEvents() }
        let (files, missing) = expandInputs(paths)
        let tagger = try modelOptions.tagger(quiet: quiet)
        let format = self.format ?? (Terminal.stdoutIsTTY ? .table : .json)
        let printer = ResultPrinter(format.tagEncoder(files: files.map(\.name), labels: tagger.config.labels, windowed: window != nil)!)
        let windowing = try window.map { try tagWindowing($0, tagger: tagger) }
        let model = modelOptions.model, topK = self.topK.limit, threshold = self.threshold, chunking = self.chunking
        printer.begin()
        let failed = processInputs(files, missing: missing, jobs: jobs, quiet: quiet, output: printer.output) { file in
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
        if w < window && !quiet {
            Terminal.warn("--window \(window) s is longer than the model sees at once (target_length): windows of \(w) s")
        }
        do { return try tagger.windowing(window: w, hop: hop ?? w) } catch let e as StreamingError {
            throw ValidationError("--window/--hop: \(e.reason)")
        }
    }

    /// `--events`: each file through the windowed scorer and the event detector (the same
    /// code as `ced listen`), streamed block by block.
    func runEvents() throws {
        let (files, missing) = expandInputs(paths)
        let format = self.format ?? (Terminal.stdoutIsTTY ? .table : .json)
        if format.isEventOnly && outputDir == nil && files.count + missing.count > 1 {
            throw ValidationError("--format \(format.rawValue) writes one table per recording: give --output-dir for \(files.count + missing.count) inputs")
        }
        let tagger = try modelOptions.tagger(quiet: quiet)
        let windowSeconds = window ?? 2
        let windowing: CedWindowing
        do {
            windowing = try tagger.windowing(window: windowSeconds, hop: hop ?? windowSeconds / 4)
        } catch let e as StreamingError {
            throw ValidationError("--window/--hop: \(e.reason)")
        }
        let options = try eventOptions(config: tagger.config, threshold: threshold, thresholdsFile: thresholds, release: release,
                                       minDuration: minDuration ?? 0, mergeGap: mergeGap ?? 0, fill: fill ?? 0.25, ongoing: false)
        let encoder = format.eventEncoder(files: files.map(\.name), labels: tagger.config.labels, featureExtractor: tagger.featureExtractor)
        let printer = ResultPrinter(encoder)
        let model = modelOptions.model, outputDir = self.outputDir
        if outputDir == nil { printer.begin() }
        let failed = processInputs(files, missing: missing, jobs: jobs, quiet: quiet, output: printer.output) { file in
            let d = try tagger.events(contentsOf: URL(fileURLWithPath: file.path), windowing: windowing, events: options)
            return CedEventResult(file: file.name, model: model, detection: d)
        } consume: { file, r in
            if !quiet { for w in r.warnings { Terminal.warn(w.description) } }
            guard let outputDir else { return try printer.write(r) }
            // One file per input (as before, csv and table files without their header row).
            let url = Self.outputURL(for: file.name, in: outputDir, suffix: format.eventFileSuffix)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            let text = format == .json ? try encoder.document([r]) : try encoder.encode(r, position: 0)
            try Data(text.utf8).write(to: url, options: .atomic)
            if !quiet && !Terminal.stderrIsTTY { Terminal.write(to: .standardError, "\(file.name): \(r.events.count) events → \(url.path)\n") }
        }
        if outputDir == nil { printer.end() }
        try exitIfFailed(failed, of: files.count + missing.count, quiet: quiet)
    }

    /// `DIR/<input path without extension><suffix>` (absolute and `..` components dropped,
    /// so outputs stay inside DIR).
    static func outputURL(for name: String, in dir: String, suffix: String) -> URL {
        let stem = name == "-" ? "stdin" : (name as NSString).deletingPathExtension
        let parts = stem.split(separator: "/").filter { $0 != ".." && $0 != "." }
        var url = URL(fileURLWithPath: dir)
        for p in parts { url.appendPathComponent(String(p)) }
        return url.deletingLastPathComponent().appendingPathComponent(url.lastPathComponent + suffix)
    }
}
