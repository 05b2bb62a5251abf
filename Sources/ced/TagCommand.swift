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

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case table, json, jsonl, csv
    /// Event formats (`--events`): an Audacity label track, a Raven selection table.
    case audacity, raven
}

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
    var format: OutputFormat?

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
            if format == .audacity || format == .raven { throw ValidationError("--format \(format!.rawValue) needs --events") }
        }
        if jobs < 1 { throw ValidationError("--jobs must be at least 1") }
        if paths.filter({ $0 == "-" }).count > 1 { throw ValidationError("standard input (-) can be given once") }
    }

    struct Segment {
        var start: Double
        var end: Double
        var labels: [CedPrediction]
    }

    struct FileResult {
        var name: String
        var duration: Double
        var labels: [CedPrediction]
        var segments: [Segment]?
        var warnings: [AudioWarning]
    }

    func run() throws {
        if events { return try runEvents() }
        let (files, missing) = expandInputs(paths)
        let tagger = try modelOptions.tagger(quiet: quiet)
        let format = self.format ?? (Terminal.stdoutIsTTY ? .table : .json)
        let writer = ResultWriter(format: format, model: modelOptions.model, config: tagger.config,
                                  files: files.map(\.name), windowed: window != nil)
        var failed = 0
        for (name, reason) in missing {
            Terminal.error("\(name): \(reason)")
            failed += 1
        }
        let progress = Progress(total: files.count, enabled: Terminal.stderrIsTTY && !quiet && files.count > 1)
        let rate = tagger.samplingRate
        let topK = self.topK.limit, threshold = self.threshold, chunking = self.chunking
        let window = self.window, hop = self.hop ?? self.window
        writer.begin()
        runOrdered(count: files.count, jobs: jobs, lookahead: 2 * jobs) { i -> Result<FileResult, Error> in
            Result {
                let file = files[i]
                // Without --window the file is decoded and featurised block by block (a long
                // recording is never held whole); windows need the waveform to cut from.
                let (mel, samples, duration, warnings) = try { () throws -> (Tensor, [Float]?, Double, [AudioWarning]) in
                    if window == nil {
                        let f = try tagger.features(contentsOf: URL(fileURLWithPath: file.path))
                        return (f.mel, nil, f.duration, f.warnings)
                    }
                    let wave = try Waveform(path: file.path, sampleRate: rate)
                    let mel = try tagger.featureExtractor(wave.samples)
                    return (mel, wave.samples, Double(wave.samples.count) / Double(rate), wave.warnings)
                }()
                let scores = try tagger.model(mel, chunking: chunking)
                let labels = tagger.config.predictions(from: scores, topK: topK, threshold: threshold)
                var segments: [Segment]?
                if let window, let hop, let samples {
                    segments = []
                    let w = max(1, Int((window * Double(rate)).rounded()))
                    let h = max(1, Int((hop * Double(rate)).rounded()))
                    var start = 0
                    while start < samples.count {
                        let end = min(start + w, samples.count)
                        let cut = Array(samples[start ..< end])
                        segments!.append(Segment(start: Double(start) / Double(rate), end: Double(end) / Double(rate),
                                                 labels: try tagger.tag(cut, topK: topK, threshold: threshold, chunking: chunking)))
                        if end == samples.count { break }
                        start += h
                    }
                }
                return FileResult(name: file.name, duration: duration, labels: labels, segments: segments, warnings: warnings)
            }
        } consume: { i, result in
            switch result {
            case .success(let r):
                if !quiet { for w in r.warnings { Terminal.warn(w.description) } }
                writer.write(r)
                progress.step(failed: false)
            case .failure(let error):
                writer.output.flush()
                Terminal.error("\(files[i].name): \(describe(error))")
                failed += 1
                progress.step(failed: true)
            }
        }
        writer.end()
        if failed > 0 {
            if files.count + missing.count > 1 && !quiet {
                Terminal.write(to: .standardError, "\(failed) of \(files.count + missing.count) files failed\n")
            }
            throw ExitCode(1)
        }
    }
}

extension Tag {
    /// `--events`: each file through the windowed scorer and the event detector (the same
    /// code as `ced listen`), streamed block by block.
    func runEvents() throws {
        let (files, missing) = expandInputs(paths)
        let format = self.format ?? (Terminal.stdoutIsTTY ? .table : .json)
        if (format == .audacity || format == .raven) && outputDir == nil && files.count + missing.count > 1 {
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
        let writer = EventWriter(format: format, model: modelOptions.model, config: tagger.config,
                                 featureExtractor: tagger.featureExtractor, files: files.map(\.name), outputDir: outputDir)
        var failed = 0
        for (name, reason) in missing {
            Terminal.error("\(name): \(reason)")
            failed += 1
        }
        let progress = Progress(total: files.count, enabled: Terminal.stderrIsTTY && !quiet && files.count > 1)
        writer.begin()
        runOrdered(count: files.count, jobs: jobs, lookahead: 2 * jobs) { i -> Result<CedEventDetection, Error> in
            Result { try tagger.events(contentsOf: URL(fileURLWithPath: files[i].path), windowing: windowing, events: options) }
        } consume: { i, result in
            do {
                let d = try result.get()
                if !quiet { for w in d.warnings { Terminal.warn(w.description) } }
                if let path = try writer.write(name: files[i].name, detection: d), !quiet && !Terminal.stderrIsTTY {
                    Terminal.write(to: .standardError, "\(files[i].name): \(d.events.count) events → \(path)\n")
                }
                progress.step(failed: false)
            } catch {
                writer.output.flush()
                Terminal.error("\(files[i].name): \(describe(error))")
                failed += 1
                progress.step(failed: true)
            }
        }
        writer.end()
        if failed > 0 {
            if files.count + missing.count > 1 && !quiet {
                Terminal.write(to: .standardError, "\(failed) of \(files.count + missing.count) files failed\n")
            }
            throw ExitCode(1)
        }
    }
}

/// An error's message without the type name noise.
func describe(_ error: Error) -> String {
    if let e = error as? LocalizedError, let d = e.errorDescription { return d }
    return "\(error)"
}

/// Writes tagging results in one of the output formats, streaming one file at a time.
final class ResultWriter {
    let format: OutputFormat
    let model: String
    let windowed: Bool
    let output = Output()
    private var count = 0
    private let fileWidth: Int
    private let labelWidth: Int

    init(format: OutputFormat, model: String, config: CedConfig, files: [String], windowed: Bool) {
        self.format = format
        self.model = model
        self.windowed = windowed
        fileWidth = min(60, max(4, files.map(\.count).max() ?? 4))
        let labels = (0..<config.outputdim).map { config.label(for: $0).count }
        labelWidth = min(48, max(5, labels.max() ?? 5))
    }

    func begin() {
        switch format {
        case .json: output.write("[")
        case .csv: output.write(windowed ? "file,start,end,rank,index,label,score\n" : "file,rank,index,label,score\n")
        case .table:
            var header = pad("FILE", fileWidth)
            if windowed { header += "  " + lpad("START", 8) + "  " + lpad("END", 8) }
            header += "  " + lpad("RANK", 4) + "  " + pad("LABEL", labelWidth) + "  " + lpad("SCORE", 6)
            output.write(header + "\n")
        case .jsonl, .audacity, .raven: break  // the event formats are validated away without --events
        }
        output.flush()
    }

    func write(_ r: Tag.FileResult) {
        switch format {
        case .json:
            output.write((count == 0 ? "\n" : ",\n") + jsonObject(r))
        case .jsonl:
            output.write(jsonObject(r) + "\n")
        case .csv:
            if let segments = r.segments {
                for s in segments {
                    for (rank, p) in s.labels.enumerated() {
                        output.write("\(r.name.csvField),\(jsonNumber(s.start)),\(jsonNumber(s.end)),\(rank + 1),\(p.index),\(p.label.csvField),\(jsonNumber(p.score))\n")
                    }
                }
            } else {
                for (rank, p) in r.labels.enumerated() {
                    output.write("\(r.name.csvField),\(rank + 1),\(p.index),\(p.label.csvField),\(jsonNumber(p.score))\n")
                }
            }
        case .table:
            let name = shorten(r.name, fileWidth)
            if let segments = r.segments {
                for s in segments {
                    for (rank, p) in s.labels.enumerated() {
                        output.write(pad(rank == 0 ? name : "", fileWidth) + "  " + lpad(String(format: "%.2f", s.start), 8) + "  "
                                     + lpad(String(format: "%.2f", s.end), 8) + "  " + row(rank, p))
                    }
                }
            } else {
                if r.labels.isEmpty { output.write(pad(name, fileWidth) + "  (no class above the threshold)\n") }
                for (rank, p) in r.labels.enumerated() {
                    output.write(pad(rank == 0 ? name : "", fileWidth) + "  " + row(rank, p))
                }
            }
        case .audacity, .raven:
            break  // validated away without --events
        }
        count += 1
        output.flush()
    }

    func end() {
        if format == .json { output.write(count == 0 ? "]\n" : "\n]\n") }
        output.flush()
    }

    private func row(_ rank: Int, _ p: CedPrediction) -> String {
        lpad(String(rank + 1), 4) + "  " + pad(shorten(p.label, labelWidth), labelWidth) + "  " + lpad(String(format: "%.4f", p.score), 6) + "\n"
    }

    private func jsonObject(_ r: Tag.FileResult) -> String {
        var s = "{\"file\": \(r.name.jsonQuoted), \"duration_s\": \(jsonNumber(r.duration)), \"model\": \(model.jsonQuoted), \"labels\": \(jsonLabels(r.labels))"
        if let segments = r.segments {
            s += ", \"segments\": [" + segments.map {
                "{\"start\": \(jsonNumber($0.start)), \"end\": \(jsonNumber($0.end)), \"labels\": \(jsonLabels($0.labels))}"
            }.joined(separator: ", ") + "]"
        }
        return s + "}"
    }

    private func jsonLabels(_ labels: [CedPrediction]) -> String {
        "[" + labels.map { "{\"index\": \($0.index), \"label\": \($0.label.jsonQuoted), \"score\": \(jsonNumber($0.score))}" }
            .joined(separator: ", ") + "]"
    }

    private func pad(_ s: String, _ w: Int) -> String { s.count >= w ? s : s + String(repeating: " ", count: w - s.count) }
    private func lpad(_ s: String, _ w: Int) -> String { s.count >= w ? s : String(repeating: " ", count: w - s.count) + s }
    private func shorten(_ s: String, _ w: Int) -> String { s.count <= w ? s : "…" + s.suffix(w - 1) }
}
