import Foundation

/// Windows of `window` seconds every `hop` seconds over a 16 kHz waveform, as the streaming
/// tagger and the event detector see it.
///
/// Both lengths are rounded to whole mel frames (10 ms for every published CED), so every
/// window starts on the feature stream's frame grid and shares its frames with the windows
/// it overlaps. A window may be at most the model's `target_length` frames (10.11 s for
/// CED) and at least one patch (16 frames, 0.15 s).
public struct CedWindowing: Sendable, Equatable {
    /// Samples per window, at `sampleRate`.
    public let windowSamples: Int
    /// Samples between window starts.
    public let hopSamples: Int
    /// The feature extractor's sample rate (16 kHz).
    public let sampleRate: Int

    /// Window length in seconds (after rounding to frames).
    public var window: Double { Double(windowSamples) / Double(sampleRate) }
    /// Hop in seconds (after rounding to frames).
    public var hop: Double { Double(hopSamples) / Double(sampleRate) }

    /// Validates `window` and `hop` (seconds) for a model and its feature extractor.
    /// - Throws: `StreamingError.invalidOption` saying which value is out of range and why.
    public init(window: Double, hop: Double, featureExtractor: CedFeatureExtractorConfig, model: CedConfig) throws {
        guard window.isFinite, window > 0 else {
            throw StreamingError(.invalidOption, "the window must be a positive number of seconds, got \(window)")
        }
        guard hop.isFinite, hop > 0 else {
            throw StreamingError(.invalidOption, "the hop must be a positive number of seconds, got \(hop)")
        }
        let sr = featureExtractor.samplingRate, step = featureExtractor.hopSize
        let frameSeconds = Double(step) / Double(sr)
        let windowFrames = Int((window / frameSeconds).rounded())
        let hopFrames = Int((hop / frameSeconds).rounded())
        let maxFrames = model.targetLength
        // A window of k mel hops gives k + 1 frames with `center` (k + 1 − n_fft/hop without).
        let samples = windowFrames * step
        let frames = Self.frameCount(samples: samples, featureExtractor)
        guard frames <= maxFrames else {
            let longest = Self.longestWindow(featureExtractor: featureExtractor, model: model)
            throw StreamingError(.invalidOption, "a window of \(window) s gives \(frames) mel frames, but the model sees at most target_length = \(maxFrames) frames at a time: use a window of at most \(String(format: "%.2f", longest)) s")
        }
        guard frames >= model.patchSize.time else {
            var shortest = step
            while Self.frameCount(samples: shortest, featureExtractor) < model.patchSize.time { shortest += step }
            throw StreamingError(.invalidOption, "a window of \(window) s gives \(frames) mel frames, fewer than one patch (\(model.patchSize.time) frames): use a window of at least \(String(format: "%.2f", Double(shortest) / Double(sr))) s")
        }
        guard hopFrames >= 1 else {
            throw StreamingError(.invalidOption, "the hop must be at least one mel frame (\(frameSeconds) s), got \(hop) s")
        }
        windowSamples = samples
        hopSamples = hopFrames * step
        sampleRate = sr
    }

    /// The longest window a model sees at once, in seconds on the frame grid: `target_length`
    /// frames (with `center`, k mel hops give k + 1 frames).
    public static func longestWindow(featureExtractor c: CedFeatureExtractorConfig, model: CedConfig) -> Double {
        var hops = model.targetLength + c.nFft / c.hopSize
        while hops > 0 && frameCount(samples: hops * c.hopSize, c) > model.targetLength { hops -= 1 }
        return Double(hops * c.hopSize) / Double(c.samplingRate)
    }

    /// Frames the extractor makes from `samples` samples.
    static func frameCount(samples: Int, _ c: CedFeatureExtractorConfig) -> Int {
        guard samples > 0 else { return 0 }
        let pad = c.center ? c.nFft / 2 : 0
        let padded = samples + 2 * pad
        return padded >= c.nFft ? 1 + (padded - c.nFft) / c.hopSize : 0
    }
}

/// One window's log-mel features and where it lies in the stream.
public struct CedWindowFeatures: Sendable {
    /// Windows are numbered from 0 in stream order (the final window may be an extra one
    /// aligned to the end of the input, see `CedWindowFeatureStream`).
    public var index: Int
    /// First sample of the window, at the feature extractor's rate, from the stream's start.
    public var startSample: Int
    /// Samples in the window (`windowSamples`, or fewer for an input shorter than a window).
    public var sampleCount: Int
    public var sampleRate: Int
    /// `[n_mels, T]` log-mel features: exactly `featureExtractor(samples of this window)`.
    public var mel: Tensor

    /// Start and end in seconds from the stream's start.
    public var start: Double { Double(startSample) / Double(sampleRate) }
    public var end: Double { Double(startSample + sampleCount) / Double(sampleRate) }
}

/// Cuts a 16 kHz waveform arriving in blocks into overlapping windows and computes each
/// window's log-mel features, sharing the mel frames that overlapping windows have in common
/// (each frame is computed once).
///
/// Every window's features equal, bit for bit, what the feature extractor gives for that
/// window cut out as a clip of its own: the frames inside the window come from the shared
/// stream, the few frames at its edges that the clip reflect-pads are computed from the
/// window's own samples, and the `top_db` floor is the window's. So a window is scored
/// exactly as `ced tag` would score the cut-out clip.
///
/// Windows start every `hopSamples` and are emitted as soon as their last sample has
/// arrived. At `finish()`, input shorter than one window gives one window of all of it, and
/// when the last regular window ends before the input does, one more window covering the
/// last `windowSamples` (its start rounded down to the frame grid) is added so that the end
/// of the input is seen at full context.
///
/// Memory is bounded: about one window of samples and one window of frames, whatever the
/// stream's length.
public final class CedWindowFeatureStream {
    public let windowing: CedWindowing
    let engine: MelEngine
    private let workspace: MelEngine.Workspace

    /// Samples `origin ..< received` of the stream.
    private var buffer: [Float] = []
    private var origin = 0
    private var received = 0

    /// Mel frames (dB before the floor) of the stream, mel-major with `capacity` columns:
    /// frame `t` in column `t % capacity`, frames `framesFrom ..< framesTo` valid.
    private var ring: [Float]
    private let capacity: Int
    private var framesFrom = 0
    private var framesTo = 0

    private var nextWindow = 0
    private var lastStart: Int?
    private var finished = false

    /// Frames of the stream computed so far (each once), for tests and statistics.
    public private(set) var framesComputed = 0

    public init(windowing: CedWindowing, featureExtractor: CedFeatureExtractor) throws {
        guard windowing.sampleRate == featureExtractor.config.samplingRate else {
            throw StreamingError(.invalidOption, "the windowing is for \(windowing.sampleRate) Hz but the feature extractor works at \(featureExtractor.config.samplingRate) Hz")
        }
        self.windowing = windowing
        engine = featureExtractor.engine
        workspace = engine.makeWorkspace()
        capacity = engine.frameCount(windowing.windowSamples) + 2
        ring = [Float](repeating: 0, count: engine.nMels * capacity)
    }

    /// Samples received so far.
    public var sampleCount: Int { received }

    /// Adds the next 16 kHz mono samples and returns the windows completed by them.
    /// - Throws: `CedInputError` for a NaN or infinite sample (naming its index in the stream).
    public func append(_ samples: [Float]) throws -> [CedWindowFeatures] {
        try samples.withUnsafeBufferPointer { try append($0) }
    }

    /// Adds samples from a buffer; see `append(_:)`.
    public func append(_ samples: UnsafeBufferPointer<Float>) throws -> [CedWindowFeatures] {
        guard !finished else { throw StreamingError(.inputEnded, "samples appended after finish()") }
        try engine.checkFinite(samples, firstIndex: received)
        buffer.append(contentsOf: samples)
        received += samples.count
        var out: [CedWindowFeatures] = []
        while nextWindow * windowing.hopSamples + windowing.windowSamples <= received {
            let start = nextWindow * windowing.hopSamples
            out.append(window(index: nextWindow, start: start, count: windowing.windowSamples))
            lastStart = start
            nextWindow += 1
        }
        trim()
        return out
    }

    /// Ends the input and returns the last windows: the one of a short input, or the one
    /// aligned to the end of the input when the regular windows stop short of it.
    public func finish() throws -> [CedWindowFeatures] {
        guard !finished else { return [] }
        finished = true
        defer { buffer = []; ring = [] }
        let w = windowing.windowSamples, step = engine.hop
        guard let last = lastStart else {
            guard received > 0, engine.frameCount(received) > 0 else { return [] }
            return [window(index: 0, start: 0, count: received)]
        }
        guard last + w < received else { return [] }
        let tail = (received - w) / step * step
        guard tail > last else { return [] }
        return [window(index: nextWindow, start: tail, count: received - tail)]
    }

    /// Drops samples and frames no later window needs (the final tail window starts at or
    /// after the last regular one).
    private func trim() {
        let keepFrom = min(lastStart ?? 0, nextWindow * windowing.hopSamples)
        if keepFrom - origin > max(65536, windowing.windowSamples) {
            buffer.removeFirst(keepFrom - origin)
            origin = keepFrom
        }
    }

    /// Sample span `[first, last]` of clip frame `j` (before reflection).
    @inline(__always)
    private func span(_ j: Int) -> (first: Int, last: Int) {
        let first = j * engine.hop - engine.pad + engine.winOffset
        return (first, first + engine.winLength - 1)
    }

    /// The features of samples `start ..< start + count` as a clip of their own.
    private func window(index: Int, start: Int, count: Int) -> CedWindowFeatures {
        let e = engine
        let frames = e.frameCount(count)
        let nMels = e.nMels
        precondition(start % e.hop == 0 && start >= origin && start + count <= received)
        // Clip frames inside the clip: the stream's frames start/hop + j.
        var jLo = 0
        while jLo < frames && span(jLo).first < 0 { jLo += 1 }
        var jHi = frames
        while jHi > jLo && span(jHi - 1).last >= count { jHi -= 1 }
        let base = start / e.hop
        if jHi > jLo { ensureFrames(base + jLo ..< base + jHi) }

        var scalars = [Float](repeating: 0, count: nMels * frames)
        scalars.withUnsafeMutableBufferPointer { out in
            let o = out.baseAddress!
            // Shared frames.
            ring.withUnsafeBufferPointer { r in
                for j in jLo..<jHi {
                    let col = (base + j) % capacity
                    for m in 0..<nMels { o[m * frames + j] = r[m * capacity + col] }
                }
            }
            // Edge frames the clip reflect-pads, from the clip's own samples.
            buffer.withUnsafeBufferPointer { b in
                let clip = UnsafeBufferPointer(rebasing: b[(start - origin) ..< (start - origin + count)])
                if jLo > 0 {
                    _ = e.computeFrames(clip, 0 ..< jLo, frameCount: frames, into: o, workspace: workspace)
                }
                if jHi < frames {
                    _ = e.computeFrames(clip, max(jLo, jHi) ..< frames, frameCount: frames, into: o, workspace: workspace)
                }
            }
            // AmplitudeToDB(top_db) with the clip's own maximum.
            var peak = -Float.infinity
            for i in 0..<out.count { peak = max(peak, o[i]) }
            let floor = peak - e.topDb
            for i in 0..<out.count where o[i] < floor { o[i] = floor }
        }
        return CedWindowFeatures(index: index, startSample: start, sampleCount: count, sampleRate: windowing.sampleRate,
                                 mel: Tensor(shape: [nMels, frames], scalars: scalars))
    }

    /// Makes stream frames `range` available in the ring, computing the ones not yet computed
    /// and forgetting the ones before `range`.
    private func ensureFrames(_ range: Range<Int>) {
        if range.lowerBound > framesTo {
            // A gap between windows (hop longer than the window): frames nobody needs.
            framesFrom = range.lowerBound
            framesTo = range.lowerBound
        }
        framesFrom = max(framesFrom, range.lowerBound)
        guard range.upperBound > framesTo else { return }
        precondition(range.upperBound - framesFrom <= capacity)
        var t = framesTo
        let end = range.upperBound
        buffer.withUnsafeBufferPointer { b in
            ring.withUnsafeMutableBufferPointer { r in
                while t < end {
                    // A run of columns without wrapping around the ring.
                    let col = t % capacity
                    let n = min(end - t, capacity - col)
                    _ = engine.computeFrames(b, t ..< t + n, frameCount: capacity, into: r.baseAddress!, workspace: workspace,
                                             origin: origin, length: received, outBase: t - col)
                    t += n
                }
            }
        }
        framesComputed += end - framesTo
        framesTo = end
    }
}
