import ArgumentParser
import CED
import Foundation

// MARK: Terminal helpers

enum Terminal {
    static let stderrIsTTY = isatty(2) != 0
    static let stdoutIsTTY = isatty(1) != 0

    static let lock = NSLock()

    static func error(_ message: String) {
        write(to: FileHandle.standardError, "error: " + message + "\n")
    }

    static func warn(_ message: String) {
        write(to: FileHandle.standardError, (message.hasPrefix("warning:") ? "" : "warning: ") + message + "\n")
    }

    static func write(to handle: FileHandle, _ text: String) {
        lock.lock(); defer { lock.unlock() }
        Progress.clearLineIfShown()
        handle.write(Data(text.utf8))
    }
}

/// Buffered standard output (results can be many thousands of lines).
final class Output {
    private var buffer = [UInt8]()

    func write(_ s: String) {
        buffer.append(contentsOf: s.utf8)
        if buffer.count > 1 << 16 { flush() }
    }

    func flush() {
        guard !buffer.isEmpty else { return }
        Terminal.lock.lock(); defer { Terminal.lock.unlock() }
        Progress.clearLineIfShown()
        FileHandle.standardOutput.write(Data(buffer))
        buffer.removeAll(keepingCapacity: true)
    }
}

/// A one-line progress bar on stderr, drawn on a terminal only: `[=====   ] 3/10 files
/// 1.2 files/s  ETA 0:05` (for optimiser steps also the smoothed loss and the learning rate).
final class Progress: @unchecked Sendable {
    nonisolated(unsafe) static var shown = false
    /// Items in all (settable once known).
    var total: Int
    let enabled: Bool
    let unit: String
    private let start = Date()
    private var done = 0, first = 0, failed = 0
    private var smoothed: Double?
    private var lastDraw = Date.distantPast

    init(total: Int = 0, enabled: Bool, unit: String = "files") {
        self.total = total
        self.enabled = enabled
        self.unit = unit
    }

    /// Erases the bar so other stderr/stdout text starts on a clean line (call with Terminal.lock held).
    static func clearLineIfShown() {
        if shown {
            FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
            shown = false
        }
    }

    /// One more item done.
    func step(failed didFail: Bool) {
        done += 1
        if didFail { failed += 1 }
        draw(failed > 0 ? "  \(failed) failed" : "")
    }

    /// A resumed run starts at item `step` (the rate counts from there).
    func resume(at step: Int) {
        (first, done) = (step, step)
    }

    /// At item `step` of `total` (an optimiser step: with its loss and learning rate).
    func step(to step: Int, loss: Double? = nil, lr: Double? = nil) {
        if let loss { smoothed = smoothed.map { 0.9 * $0 + 0.1 * loss } ?? loss }
        done = step
        draw((smoothed.map { String(format: "  loss %.4f", $0) } ?? "") + (lr.map { String(format: "  lr %.2e", $0) } ?? ""))
    }

    private func draw(_ extra: String) {
        guard enabled else { return }
        let now = Date()
        if done < total && now.timeIntervalSince(lastDraw) < 0.1 { return }
        lastDraw = now
        let elapsed = now.timeIntervalSince(start)
        let rate = elapsed > 0 ? Double(done - first) / elapsed : 0
        let left = rate > 0 ? Double(total - done) / rate : 0
        let filled = total > 0 ? min(24, 24 * done / total) : 24
        let bar = String(repeating: "=", count: filled) + String(repeating: " ", count: 24 - filled)
        let line = "[\(bar)] \(done)/\(total) \(unit)  \(String(format: "%.1f", rate)) \(unit)/s\(extra)  ETA \(Self.clock(left))"
        Terminal.lock.lock(); defer { Terminal.lock.unlock() }
        FileHandle.standardError.write(Data(("\r\u{1B}[K" + line).utf8))
        Self.shown = true
        if done == total {
            FileHandle.standardError.write(Data("\n".utf8))
            Self.shown = false
        }
    }

    static func clock(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
    }
}

/// A value that `@Sendable` event handlers update.
final class Box<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}

// MARK: Inputs

struct InputFile {
    /// As shown to the user (the path given, or a path inside a given directory; "-" for stdin).
    var name: String
    /// Where to read it (a temporary copy for stdin).
    var path: String
}

/// Expands the command-line paths (`AudioFiles.expand`; list files, `.txt`/`.lst`/`.list`,
/// name one path per line), "-" standing for audio bytes on stdin (buffered to a temporary
/// file). Paths that do not exist are returned as failures.
func expandInputs(_ paths: [String]) -> (files: [InputFile], failures: [(path: String, reason: String)]) {
    var files: [InputFile] = []
    var failures: [(path: String, reason: String)] = []
    for p in paths {
        if AudioFiles.isList(p) {
            do {
                let (found, failed) = AudioFiles.expand(try AudioFiles.listed(in: p))
                files += found.map { InputFile(name: $0, path: $0) }
                failures += failed
            } catch {
                failures.append((p, describe(error)))
            }
            continue
        }
        guard p == "-" else {
            let (found, failed) = AudioFiles.expand([p])
            files += found.map { InputFile(name: $0, path: $0) }
            failures += failed
            continue
        }
        do {
            let data = FileHandle.standardInput.readDataToEndOfFile()
            let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("ced-stdin-\(getpid())-\(UUID().uuidString)")
            try data.write(to: tmp)
            atexit { removeStdinCopies() }
            stdinCopies.append(tmp.path)
            files.append(InputFile(name: "-", path: tmp.path))
        } catch {
            failures.append(("-", "cannot buffer standard input: \(error.localizedDescription)"))
        }
    }
    return (files, failures)
}

nonisolated(unsafe) private var stdinCopies: [String] = []
private func removeStdinCopies() {
    for p in stdinCopies { unlink(p) }
}

// MARK: Files in, results out

/// Runs `produce` on each input, `jobs` at a time, and hands the results to `consume` in input
/// order, with a progress bar; an input that fails (either way) is reported on stderr and the
/// others go on. Returns how many inputs failed, the missing ones included.
func processInputs<R>(_ files: [InputFile], missing: [(path: String, reason: String)], jobs: Int, quiet: Bool, output: Output,
                      produce: @escaping @Sendable (InputFile) throws -> R, consume: (InputFile, R) throws -> Void) -> Int {
    var failed = 0
    for (name, reason) in missing {
        Terminal.error("\(name): \(reason)")
        failed += 1
    }
    let progress = Progress(total: files.count, enabled: Terminal.stderrIsTTY && !quiet && files.count > 1)
    CedCompute.forEachInOrder(count: files.count, jobs: jobs, lookahead: 2 * jobs) { i in Result { try produce(files[i]) } } consume: { i, r in
        do {
            try consume(files[i], try r.get())
            progress.step(failed: false)
        } catch {
            output.flush()
            Terminal.error("\(files[i].name): \(describe(error))")
            failed += 1
            progress.step(failed: true)
        }
    }
    return failed
}

/// Exit code 1 (after saying how many of several inputs failed) when any did.
func exitIfFailed(_ failed: Int, of total: Int, quiet: Bool) throws {
    guard failed > 0 else { return }
    if total > 1 && !quiet { Terminal.write(to: .standardError, "\(failed) of \(total) files failed\n") }
    throw ExitCode(1)
}

/// Streams results to stdout through an encoder: the header, each result as it comes, the
/// footer; or, with a log (`--output`), appends each result's line to it.
final class ResultPrinter<Result> {
    let encoder: any CedResultEncoder<Result>
    let output = Output()
    let log: CedResultLog?
    private var count = 0

    init(_ encoder: any CedResultEncoder<Result>, log: CedResultLog? = nil) {
        self.encoder = encoder
        self.log = log
    }

    func begin() {
        guard log == nil else { return }
        output.write(encoder.header)
        output.flush()
    }

    func write(_ result: Result) throws {
        if let log { return try log.append(try encoder.encode(result, position: 0)) }
        output.write(try encoder.encode(result, position: count))
        count += 1
        output.flush()
    }

    func end() {
        guard log == nil else { return }
        output.write(encoder.footer(count: count))
        output.flush()
    }
}

/// An error's message without the type name noise.
func describe(_ error: Error) -> String {
    if let e = error as? LocalizedError, let d = e.errorDescription { return d }
    return "\(error)"
}
