import ArgumentParser
import CED
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension RawPCMFormat.SampleFormat: ExpressibleByArgument {}
extension CedStreamingTagger.Backpressure: ExpressibleByArgument {}

/// `ced listen`: live tagging of a capture device or of audio arriving on stdin, events
/// printed as they end.
struct Listen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Listen to live audio (a capture device or standard input) and report sound events as they happen.",
        discussion: """
            Audio comes from a capture device through ffmpeg (--input DEVICE: ALSA or \
            PulseAudio on Linux, AVFoundation on macOS; `alsa:hw:1,0`, `pulse:default`, \
            `avfoundation:0`; plain `default` picks the platform's usual backend), or from \
            standard input (-): a WAV stream, header first, or raw PCM with --raw --rate R \
            --channels C --sample-format s16le|f32le. Any sample rate is resampled to 16 kHz.

            The audio is scored in windows of --window seconds every --hop seconds and the \
            scores become events exactly as in `ced tag --events` (the same options; a file \
            and the same audio streamed give the same events). Each event is printed when it \
            has ended: as a JSON line (--format jsonl, the default off a terminal) \
            {"label", "index", "start", "end", "score", "mean_score"} with times in seconds \
            from the start of the stream, or as a row of a live table on a terminal. \
            --ongoing adds {"ongoing": true, "id": N, ...} lines while an event lasts; \
            --windows adds every window's top classes.

            When the model cannot keep up with a live device, windows are dropped and \
            counted (--when-behind drop, the default for --input); standard input is read \
            no faster than the model scores it (--when-behind wait, the default for -), so \
            a file piped in gives every window. Ctrl-C or the end of the input flushes the \
            open events and exits 0; unreadable input exits 1.

            Examples:
              ced listen --input default
              ced listen --model mispeech/ced-base --threshold 0.6 --merge-gap 1 --input pulse:default
              arecord -q -f S16_LE -r 16000 -c 1 -t raw | ced listen --raw --rate 16000 -
              ffmpeg -loglevel error -i rtsp://camera/stream -f wav - | ced listen --format jsonl -
              ced listen --list-devices
            """)

    @OptionGroup var modelOptions: ModelOptions

    @Argument(help: ArgumentHelp("- to read audio from standard input (instead of --input).", valueName: "-"))
    var source: String?

    @Option(name: .shortAndLong, help: ArgumentHelp("Capture device, [backend:]name (alsa, pulse, avfoundation; lavfi for test signals).", valueName: "device"))
    var input: String?

    @Flag(help: "Standard input is raw PCM (no header): give --rate, --channels and --sample-format.")
    var raw = false

    @Option(help: ArgumentHelp("Sample rate of raw input.", valueName: "hz"))
    var rate: Int?

    @Option(help: ArgumentHelp("Channels of raw input (interleaved).", valueName: "n"))
    var channels: Int = 1

    @Option(name: .customLong("sample-format"), help: ArgumentHelp("Sample format of raw input: s16le, s24le, s32le, f32le, f64le or u8.", valueName: "format"))
    var sampleFormat: RawPCMFormat.SampleFormat = .s16le

    @Option(help: ArgumentHelp("A window score of at least this starts an event (default 0.5).", valueName: "p"))
    var threshold: Float?

    @OptionGroup(title: "Event options") var eventOptions: EventOptions

    @Option(help: ArgumentHelp("Window length.", valueName: "seconds"))
    var window: Double = 2

    @Option(help: ArgumentHelp("Step between windows (default: a quarter of the window).", valueName: "seconds"))
    var hop: Double?

    @Option(help: ArgumentHelp("Output: jsonl or table (default: table on a terminal, jsonl otherwise).", valueName: "format"))
    var format: ListenFormat?

    @Flag(help: "Also report events while they last ({\"ongoing\": true, \"id\": N, ...} lines).")
    var ongoing = false

    @Flag(help: "Also print every window's top classes ({\"window\": N, \"start\", \"end\", \"labels\"} lines; jsonl only).")
    var windows = false

    @Option(name: .customLong("when-behind"), help: ArgumentHelp("When the model cannot keep up: drop windows (and count them) or wait for it (default: drop for --input, wait for -).", valueName: "drop|wait"))
    var whenBehind: CedStreamingTagger.Backpressure?

    @Option(help: ArgumentHelp("Stop after this many seconds of audio.", valueName: "seconds"))
    var duration: Double?

    @Flag(name: .customLong("wall-clock"), help: "Add the wall-clock times of onset and offset (\"wall_start\", \"wall_end\", ISO 8601), counted from when the first audio arrived.")
    var wallClock = false

    @Flag(name: .customLong("list-devices"), help: "List the capture devices ffmpeg sees, then exit.")
    var listDevices = false

    @Flag(name: .shortAndLong, help: "No status or summary on stderr (errors are still reported).")
    var quiet = false

    enum ListenFormat: String, ExpressibleByArgument, CaseIterable { case jsonl, table }

    func validate() throws {
        if listDevices { return }
        if let s = source, s != "-" { throw ValidationError("the only argument is - (standard input); give a device with --input") }
        if (source == nil) == (input == nil) { throw ValidationError("give either --input DEVICE or - (standard input)") }
        if raw {
            guard source == "-" else { throw ValidationError("--raw describes standard input: give -") }
            guard rate != nil else { throw ValidationError("--raw needs --rate") }
        } else if rate != nil {
            throw ValidationError("--rate describes raw input: add --raw (a WAV stream carries its own rate)")
        }
        if let r = rate, !supportedSampleRates.contains(r) {
            throw ValidationError("--rate \(r) is outside the supported range \(supportedSampleRates.lowerBound)–\(supportedSampleRates.upperBound) Hz")
        }
        if !(1...1024).contains(channels) { throw ValidationError("--channels must be between 1 and 1024") }
        try requirePositiveSeconds(window, "--window")
        try requirePositiveSeconds(hop, "--hop")
        try requirePositiveSeconds(duration, "--duration")
        if windows && format == .table { throw ValidationError("--windows needs --format jsonl") }
    }

    func run() throws {
        if listDevices { return try printDevices() }
        let tagger = try modelOptions.tagger(quiet: quiet)
        let options = try eventOptions.options(config: tagger.config, threshold: threshold, ongoing: ongoing)
        _ = try EventOptions.windowing(tagger, window: window, hop: hop ?? window / 4)
        let format = self.format ?? (Terminal.stdoutIsTTY ? .table : .jsonl)

        // The input.
        let reader: AudioStreamReader
        let sourceName: String
        do {
            if let input {
                let device = CaptureDevice(parsing: input)
                sourceName = device.description
                reader = try AudioStreamReader(capturing: device)
            } else {
                sourceName = "standard input"
                let rawFormat = try raw ? RawPCMFormat(sampleRate: rate!, channels: channels, sampleFormat: sampleFormat) : nil
                reader = try AudioStreamReader.standardInput(raw: rawFormat)
            }
        } catch let e as AudioError {
            throw ListenError(streamMessage(e) + (input == nil && !raw && e.reason.contains("does not start with a RIFF/WAVE header") ? " (for raw PCM use --raw --rate R --channels C --sample-format F)" : ""))
        }

        let stream = try CedStreamingTagger(
            tagger: tagger, inputSampleRate: reader.sampleRate,
            options: .init(window: window, hop: hop ?? window / 4, whenBehind: whenBehind ?? (input != nil ? .dropWindows : .wait)))
        let detector = try CedEventDetector(options: options, config: tagger.config)
        let feed = CedStreamFeed(stream: stream, reader: reader, maxFrames: duration.map { Int($0 * Double(reader.sampleRate)) })
        let signals = stopOnSignals(feed)
        let printer = EventPrinter(format: format, config: tagger.config, wallClock: wallClock, quiet: quiet)
        printer.ongoingIDs = ongoing
        if !quiet && format == .table {
            Terminal.write(to: .standardError, "Listening to \(sourceName) (\(reader.sampleRate) Hz, \(reader.info.channels) ch) with \(modelOptions.model): window \(stream.windowing.window) s, hop \(stream.windowing.hop) s. Ctrl-C stops.\n")
        }
        printer.begin()
        let wallStart = Date()
        feed.start()

        var eventCount = 0
        var workerFailure: Error?
        do {
            while let r = try stream.next() {
                if printer.startTime == nil { printer.startTime = feed.firstAudio ?? wallStart }
                if windows {
                    try printer.window(r, labels: tagger.config.predictions(from: r.scores, topK: 5))
                }
                let found = try detector.process(r)
                eventCount += found.filter { !$0.ongoing }.count
                try printer.events(found)
                printer.status(audioSeconds: r.end, active: detector.activeEvents, dropped: stream.statistics.droppedWindows)
            }
        } catch {
            workerFailure = error  // the events found so far are still flushed
        }
        let rest = detector.finish()
        eventCount += rest.count
        try printer.events(rest)
        printer.end()

        let stats = stream.statistics
        let elapsed = Date().timeIntervalSince(wallStart)
        if !quiet {
            let audio = Double(reader.frameCount) / Double(reader.sampleRate)
            var line = String(format: "%.1f s of audio in %.1f s (%.1f× real time): %d windows scored, %d dropped; %d events",
                              audio, elapsed, elapsed > 0 ? audio / elapsed : 0, stats.windowsScored, stats.droppedWindows, eventCount)
            if feed.stopped { line += "; stopped by a signal" }
            Terminal.write(to: .standardError, line + "\n")
        }
        if stats.droppedWindows > 0 && !quiet {
            Terminal.warn("\(stats.droppedWindows) windows were dropped because the model could not keep up (a smaller model, a longer --hop or --precision bf16 help)")
        }
        withExtendedLifetime(signals) {}
        if let e = feed.failure ?? workerFailure, !feed.stopped || workerFailure != nil {
            throw ListenError((e as? AudioError).map(streamMessage) ?? describe(e))
        }
    }

    /// "standard input: reason" rather than AudioError's "cannot read audio file standard input: …".
    func streamMessage(_ e: AudioError) -> String {
        "\(e.file)\(e.offset.map { " at byte \($0)" } ?? ""): \(e.reason)"
    }

    func printDevices() throws {
        do { try CaptureDevice.listDevices() } catch let e as AudioError { throw ListenError(streamMessage(e)) }
        print("Give one as --input backend:device, e.g. --input pulse:default or --input alsa:hw:1,0 (Linux), --input avfoundation:0 (macOS).")
    }

    /// Ctrl-C / SIGTERM: the input ends here (open events are flushed); a second one exits at once.
    func stopOnSignals(_ feed: CedStreamFeed) -> [DispatchSourceSignal] {
        [SIGINT, SIGTERM].map { sig in
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { if !feed.stop() { Foundation.exit(130) } }
            source.resume()
            return source
        }
    }
}

struct ListenError: Error, LocalizedError {
    var message: String
    init(_ m: String) { message = m }
    var errorDescription: String? { message }
}

/// Prints events as JSON lines or as a live table with a status line.
final class EventPrinter {
    let format: Listen.ListenFormat
    let wallClock: Bool
    let quiet: Bool
    let table: CedLiveEventTable
    var startTime: Date?
    /// Ongoing updates carry ids; final reports carry them too once updates are on.
    var ongoingIDs = false
    private var statusShown = false
    private var lastStatus = Date.distantPast

    init(format: Listen.ListenFormat, config: CedConfig, wallClock: Bool, quiet: Bool) {
        self.format = format
        self.wallClock = wallClock
        self.quiet = quiet
        table = CedLiveEventTable(labels: config.labels, wallClock: wallClock)
    }

    private var interactive: Bool { format == .table && Terminal.stdoutIsTTY }

    func begin() {
        if format == .table { emit(table.header) }
    }

    func events(_ events: [CedEvent]) throws {
        let t0 = wallClock ? startTime : nil
        for e in events {
            switch format {
            case .jsonl: emit(try CedJSONText.encode(CedEventReport(e, withID: ongoingIDs, wallClockStart: t0)) + "\n")
            case .table where !e.ongoing: emit(table.row(e, wallClockStart: t0))  // the status line shows what is going on
            case .table: break
            }
        }
    }

    func window(_ r: CedWindowResult, labels: [CedPrediction]) throws {
        emit(try CedJSONText.encode(CedWindowReport(r, labels: labels)) + "\n")
    }

    /// The live status line under the table (terminal only, at most 10 times a second).
    func status(audioSeconds: Double, active: [CedEvent], dropped: Int) {
        guard interactive && !quiet else { return }
        let now = Date()
        guard now.timeIntervalSince(lastStatus) >= 0.1 else { return }
        lastStatus = now
        let line = table.status(audioSeconds: audioSeconds, active: active, dropped: dropped)
        Terminal.lock.lock(); defer { Terminal.lock.unlock() }
        FileHandle.standardOutput.write(Data(("\r\u{1B}[K" + line).utf8))
        statusShown = true
    }

    func end() {
        Terminal.lock.lock(); defer { Terminal.lock.unlock() }
        if statusShown {
            FileHandle.standardOutput.write(Data("\r\u{1B}[K".utf8))
            statusShown = false
        }
    }

    /// Writes a line now (events must not wait in a buffer).
    private func emit(_ text: String) {
        Terminal.lock.lock(); defer { Terminal.lock.unlock() }
        if statusShown {
            FileHandle.standardOutput.write(Data("\r\u{1B}[K".utf8))
            statusShown = false
        }
        FileHandle.standardOutput.write(Data(text.utf8))
    }
}
