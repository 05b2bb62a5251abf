import Foundation

/// Decoded training audio and how it is cut into model inputs.
///
/// Training inputs are at most `target_length` frames (10.12 s for the published models).
/// A longer file is cut into consecutive segments of exactly `target_length` frames
/// (`(target_length − 1)·hop` samples); the last one ends at the file's end, overlapping
/// the one before it, so every part of the recording is seen and every segment is full.
/// Each segment is a training example carrying the file's labels. A file that fits is one
/// example as it is. A batch of examples of different lengths is zero-padded at the end to
/// the longest (upstream's `sequential_pad`) before the log-mel is computed.
struct TrainingAudio: Sendable {
    /// One model input: samples `[start, start + count)` of file `file`.
    struct Segment: Sendable, Hashable {
        var file: Int
        var start: Int
        var count: Int
    }

    /// Samples of each file (16 kHz mono), nil for files that could not be decoded.
    var waveforms: [[Float]?]
    /// Where a segment's samples come from instead, when set (`Segment.file` is then the
    /// source's own item number): audio packs read by offset.
    var source: (@Sendable (Segment) throws -> [Float])?

    init(waveforms: [[Float]?], source: (@Sendable (Segment) throws -> [Float])? = nil) {
        self.waveforms = waveforms
        self.source = source
    }

    /// Samples of a full segment.
    static func segmentSamples(config: CedConfig, featureConfig: CedFeatureExtractorConfig) -> Int {
        (config.targetLength - 1) * featureConfig.hopSize
    }

    /// The segments of file `i` (see the type's documentation).
    static func segments(file i: Int, samples n: Int, segment s: Int) -> [Segment] {
        guard n > 0 else { return [] }
        if n <= s { return [Segment(file: i, start: 0, count: n)] }
        var out: [Segment] = []
        var start = 0
        while start + s < n {
            out.append(Segment(file: i, start: start, count: s))
            start += s
        }
        out.append(Segment(file: i, start: n - s, count: s))
        return out
    }

    /// Decodes every file (on `workers` threads), reporting progress; files that fail are
    /// nil, with their error in `failures`.
    static func decode(_ files: [URL], sampleRate: Int, workers: Int,
                       progress: (@Sendable (_ done: Int, _ failed: Bool) -> Void)?) -> (TrainingAudio, failures: [(Int, String)], warnings: [String]) {
        final class State: @unchecked Sendable {
            let lock = NSLock()
            var waves: [[Float]?]
            var failures: [Int: String] = [:]
            var warnings: [Int: [String]] = [:]
            var done = 0
            init(_ n: Int) { waves = .init(repeating: nil, count: n) }
        }
        let state = State(files.count)
        CedCompute.forEachConcurrently(files.count, workers: max(1, min(workers, files.count))) { i in
            var wave: [Float]?
            var failure: String?
            var notes: [String] = []
            do {
                let w = try Waveform(contentsOf: files[i], sampleRate: sampleRate)
                if w.samples.isEmpty { failure = "the file holds no audio samples" }
                else if let bad = w.samples.firstIndex(where: { !$0.isFinite }) { failure = "sample \(bad) is not a finite number" }
                else { wave = w.samples }
                notes = w.warnings.map { "\(files[i].path): \($0)" }
            } catch {
                failure = (error as? LocalizedError)?.errorDescription ?? "\(error)"
            }
            state.lock.lock()
            state.waves[i] = wave
            if let failure { state.failures[i] = failure }
            if !notes.isEmpty { state.warnings[i] = notes }
            state.done += 1
            let done = state.done
            state.lock.unlock()
            progress?(done, failure != nil)
            return true
        }
        let failures = state.failures.keys.sorted().map { ($0, state.failures[$0]!) }
        let warnings = state.warnings.keys.sorted().flatMap { state.warnings[$0]! }
        return (TrainingAudio(waveforms: state.waves), failures, warnings)
    }

    /// The log-mels `[B, n_mels, T]` of a batch of segments (T of the longest; shorter
    /// segments zero-padded in the waveform), each augmented with its draw when given
    /// (shift before the mel, masks after), computed side by side on the cores.
    func batch(_ segments: [Segment], extractor: CedFeatureExtractor, augmentation: CedAugmentation?,
               draws: [CedAugmentation.Draw]) throws -> Tensor {
        let longest = segments.map(\.count).max() ?? 0
        let frames = extractor.frameCount(sampleCount: longest)
        let bins = extractor.melBinCount
        final class Out: @unchecked Sendable {
            let values: UnsafeMutablePointer<Float>
            var error: Error?
            let lock = NSLock()
            init(_ n: Int) { values = .allocate(capacity: max(1, n)) }
            deinit { values.deallocate() }
        }
        let total = segments.count * bins * frames
        let out = Out(total)
        let waves = waveforms, source = self.source
        DispatchQueue.concurrentPerform(iterations: segments.count) { i in
            let s = segments[i]
            do {
                var samples = try source?(s) ?? Array(waves[s.file]![s.start ..< s.start + s.count])
                if augmentation != nil { samples = CedAugmentation.shifted(samples, draw: draws[i]) }
                if samples.count < longest { samples += [Float](repeating: 0, count: longest - samples.count) }
                var mel = try extractor(samples)
                if let augmentation { augmentation.mask(&mel, draw: draws[i]) }
                mel.scalars.withUnsafeBufferPointer { src in
                    (out.values + i * bins * frames).update(from: src.baseAddress!, count: bins * frames)
                }
            } catch {
                out.lock.lock(); out.error = out.error ?? error; out.lock.unlock()
            }
        }
        if let e = out.error { throw e }
        return Tensor(shape: [segments.count, bins, frames], scalars: Array(UnsafeBufferPointer(start: out.values, count: total)))
    }
}
