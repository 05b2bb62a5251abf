import Foundation

/// Live tagging: audio buffers of any size and sample rate go in, the scores of overlapping
/// windows come out, computed on a thread of its own.
///
/// ```swift
/// let stream = try CedStreamingTagger(tagger: tagger, inputSampleRate: 48000,
///                                     options: .init(window: 2, hop: 0.5))
/// // Producer (e.g. an audio callback), any thread, any buffer size:
/// try stream.append(samples)            // mono; or append(interleaved:channels:)
/// // Consumer, pull:
/// while let r = try stream.next() { print(r.start, r.end, r.scores) }
/// // ... or Swift concurrency:
/// for try await r in stream { ... }
/// for try await e in stream.events(eventOptions) { print(e.label, e.start, e.end) }
/// stream.finish()                        // end of input: the last windows are flushed
/// ```
///
/// The input is resampled to 16 kHz incrementally (`SincResampler`, torchaudio's filter),
/// cut into windows whose mel frames are shared (`CedWindowFeatureStream`: each window is
/// featurised exactly as the cut-out clip would be), and the windows are scored by the model
/// on the stream's worker thread, several at once when they queue up. The producer only
/// copies (and downmixes) its buffer.
///
/// Memory is bounded whatever the stream's length: at most `maxPendingSeconds` of input
/// waiting, `maxQueuedWindows` windows waiting for the model, `maxBufferedResults` results
/// waiting for the consumer. When the model cannot keep up, `whenBehind` decides:
/// `.dropWindows` (for live sources: the oldest waiting windows are dropped and counted in
/// `statistics.droppedWindows`, results keep their true times), or `.wait` (for input that
/// is not real time, e.g. a file or a pipe: `append` blocks until there is room, nothing is
/// lost).
public final class CedStreamingTagger: @unchecked Sendable {
    public enum Backpressure: String, Sendable, CaseIterable {
        /// `append` waits for room: every window is scored (files, pipes).
        case wait
        /// `append` never waits for the model: windows it cannot score in time are dropped.
        case dropWindows = "drop"
    }

    public struct Options: Sendable, Equatable {
        /// Window length and hop, seconds (rounded to mel frames; see `CedWindowing`).
        public var window: Double
        public var hop: Double
        public var whenBehind: Backpressure
        /// Windows featurised but not yet scored before the oldest are dropped (`.dropWindows`).
        public var maxQueuedWindows: Int
        /// Results not yet taken by the consumer before the oldest are dropped
        /// (`.dropWindows`) or the stream waits (`.wait`).
        public var maxBufferedResults: Int
        /// Input not yet processed, in seconds of audio, before `append` waits.
        public var maxPendingSeconds: Double
        /// Most windows scored in one model call when several are waiting.
        public var maxBatch: Int
        /// Threads the model uses (nil: all cores).
        public var threadLimit: Int?

        public init(window: Double = 2, hop: Double = 0.5, whenBehind: Backpressure = .dropWindows,
                    maxQueuedWindows: Int = 8, maxBufferedResults: Int = 256, maxPendingSeconds: Double = 10,
                    maxBatch: Int = 4, threadLimit: Int? = nil) {
            self.window = window
            self.hop = hop
            self.whenBehind = whenBehind
            self.maxQueuedWindows = maxQueuedWindows
            self.maxBufferedResults = maxBufferedResults
            self.maxPendingSeconds = maxPendingSeconds
            self.maxBatch = maxBatch
            self.threadLimit = threadLimit
        }
    }

    /// Counters of a stream, safe to read at any time.
    public struct Statistics: Sendable, Equatable {
        /// Input samples appended (per channel, at the input rate).
        public var samplesReceived: Int = 0
        /// Windows scored by the model.
        public var windowsScored: Int = 0
        /// Windows featurised but dropped before scoring, or scored but dropped before the
        /// consumer took them (only with `.dropWindows`).
        public var droppedWindows: Int = 0
        /// Seconds the worker spent in the model.
        public var modelSeconds: Double = 0
        /// Seconds of input received, at the input rate.
        public var secondsReceived: Double = 0
    }

    public let tagger: CedAudioTagger
    public let options: Options
    public let windowing: CedWindowing
    public let inputSampleRate: Int
    private let pipeline: Pipeline

    /// - Throws: `StreamingError.invalidOption` (window, hop, limits) or `CedInputError`
    ///   (a sample rate the resampler cannot handle).
    public init(tagger: CedAudioTagger, inputSampleRate: Int, options: Options = Options()) throws {
        guard supportedSampleRates.contains(inputSampleRate) else {
            throw StreamingError(.invalidOption, "input sample rate \(inputSampleRate) Hz is outside the supported range \(supportedSampleRates.lowerBound)–\(supportedSampleRates.upperBound) Hz")
        }
        guard options.maxQueuedWindows >= 1, options.maxBufferedResults >= 1, options.maxBatch >= 1 else {
            throw StreamingError(.invalidOption, "maxQueuedWindows, maxBufferedResults and maxBatch must be at least 1")
        }
        guard options.maxPendingSeconds.isFinite, options.maxPendingSeconds > 0 else {
            throw StreamingError(.invalidOption, "maxPendingSeconds must be a positive number of seconds")
        }
        self.tagger = tagger
        self.options = options
        self.inputSampleRate = inputSampleRate
        windowing = try CedWindowing(window: options.window, hop: options.hop,
                                     featureExtractor: tagger.featureExtractor.config, model: tagger.config)
        let resampler = try SincResampler(inputRate: inputSampleRate, outputRate: tagger.samplingRate)
        let frontEnd = try CedWindowFeatureStream(windowing: windowing, featureExtractor: tagger.featureExtractor)
        let maxPending = Swift.max(Int(options.maxPendingSeconds * Double(inputSampleRate)),
                             2 * Int(Double(windowing.windowSamples) * Double(inputSampleRate) / Double(windowing.sampleRate)))
        pipeline = Pipeline(tagger: tagger, options: options, resampler: resampler, frontEnd: frontEnd,
                            maxPendingSamples: maxPending, inputRate: inputSampleRate)
        pipeline.start()
    }

    deinit { pipeline.cancel() }

    // MARK: Producer

    /// Appends mono samples at `inputSampleRate`. Returns at once with `.dropWindows`; with
    /// `.wait` it may block until the worker has room.
    /// - Throws: `CedInputError` for a NaN or infinite sample (naming its index in the stream),
    ///   `StreamingError.inputEnded` after `finish()`/`cancel()`.
    public func append(_ samples: [Float]) throws {
        try pipeline.append(samples)
    }

    /// Appends mono samples from a buffer.
    public func append(_ samples: UnsafeBufferPointer<Float>) throws {
        try pipeline.append(Array(samples))
    }

    /// Appends interleaved frames of `channels` channels, averaged to mono as the reference
    /// downmixes (`x.mean(dim=0)`).
    public func append(interleaved samples: UnsafeBufferPointer<Float>, channels: Int) throws {
        guard channels >= 1 else { throw StreamingError(.invalidOption, "channels must be at least 1, got \(channels)") }
        guard samples.count % channels == 0 else {
            throw StreamingError(.invalidOption, "\(samples.count) interleaved samples are not a whole number of \(channels)-channel frames")
        }
        if channels == 1 { return try append(samples) }
        let frames = samples.count / channels
        var mono = [Float](repeating: 0, count: frames)
        let d = Float(channels)
        for f in 0..<frames {
            var s = samples[f * channels]
            for c in 1..<channels { s += samples[f * channels + c] }
            mono[f] = channels == 2 ? s / 2 : s / d
        }
        try pipeline.append(mono)
    }

    /// Ends the input: the remaining windows (including the final one aligned to the end of
    /// the input) are scored, then `next()` returns nil. Safe to call from any thread, more
    /// than once.
    public func finish() { pipeline.finish() }

    /// Stops at once: waiting input and windows are discarded, `next()` returns nil.
    public func cancel() { pipeline.cancel() }

    // MARK: Consumer

    /// The next window's result, waiting for it; nil once the stream has ended and every
    /// result was taken. Rethrows an error of the worker (after the results before it).
    public func next() throws -> CedWindowResult? { try pipeline.next(wait: true) }

    /// The next result if one is ready, else nil at once (see `isFinished`).
    public func poll() throws -> CedWindowResult? { try pipeline.next(wait: false) }

    /// True once the stream has ended and every result was taken.
    public var isFinished: Bool { pipeline.isDrained }

    /// The next result for Swift concurrency (suspends instead of blocking a thread).
    public func nextResult() async throws -> CedWindowResult? { try await pipeline.nextAsync() }

    public var statistics: Statistics { pipeline.statistics }

    /// Events from this stream's windows (one `CedEventDetector`), ending when the stream
    /// has ended and the open events are flushed.
    public func events(_ options: CedEventOptions) throws -> AsyncThrowingStream<CedEvent, Error> {
        final class State: @unchecked Sendable {
            let detector: CedEventDetector
            var buffered: [CedEvent] = []
            var done = false
            init(_ d: CedEventDetector) { detector = d }
        }
        let state = State(try CedEventDetector(options: options, config: tagger.config))
        return AsyncThrowingStream(unfolding: { [self] in
            while state.buffered.isEmpty && !state.done {
                if let r = try await self.nextResult() {
                    state.buffered = try state.detector.process(r)
                } else {
                    state.buffered = state.detector.finish()
                    state.done = true
                }
            }
            return state.buffered.isEmpty ? nil : state.buffered.removeFirst()
        })
    }
}

extension CedStreamingTagger: AsyncSequence {
    public typealias Element = CedWindowResult

    public struct AsyncIterator: AsyncIteratorProtocol {
        let stream: CedStreamingTagger
        public mutating func next() async throws -> CedWindowResult? { try await stream.nextResult() }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(stream: self) }
}

// MARK: The worker

/// State shared by the producer, the worker thread and the consumer, under one lock.
private final class Pipeline: @unchecked Sendable {
    let tagger: CedAudioTagger
    let options: CedStreamingTagger.Options
    let maxPendingSamples: Int
    let inputRate: Int

    // Worker-only state.
    private let resampler: SincResampler
    private let frontEnd: CedWindowFeatureStream
    private var queued: [CedWindowFeatures] = []
    private var queuedHead = 0

    // Shared state (under `cond`).
    private let cond = NSCondition()
    private var pending: [[Float]] = []
    private var pendingSamples = 0
    private var inputEnded = false
    private var cancelled = false
    private var results: [CedWindowResult] = []
    private var resultsHead = 0
    private var ended = false
    private var failure: Error?
    private var waiter: CheckedContinuation<CedWindowResult?, Error>?
    private var stats = CedStreamingTagger.Statistics()

    init(tagger: CedAudioTagger, options: CedStreamingTagger.Options, resampler: SincResampler,
         frontEnd: CedWindowFeatureStream, maxPendingSamples: Int, inputRate: Int) {
        self.tagger = tagger
        self.options = options
        self.resampler = resampler
        self.frontEnd = frontEnd
        self.maxPendingSamples = maxPendingSamples
        self.inputRate = inputRate
    }

    func start() {
        let thread = Thread { [self] in self.run() }
        thread.name = "ced.streaming"
        thread.qualityOfService = .userInitiated
        thread.start()
    }

    var statistics: CedStreamingTagger.Statistics {
        cond.lock(); defer { cond.unlock() }
        return stats
    }

    var isDrained: Bool {
        cond.lock(); defer { cond.unlock() }
        return ended && resultsHead == results.count
    }

    // Producer side.

    func append(_ samples: [Float]) throws {
        try samples.withUnsafeBufferPointer { try tagger.featureExtractor.engine.checkFinite($0, firstIndex: receivedSoFar()) }
        cond.lock(); defer { cond.unlock() }
        if let failure { throw failure }
        if cancelled { throw StreamingError(.cancelled, "samples appended to a cancelled stream") }
        if inputEnded { throw StreamingError(.inputEnded, "samples appended after finish()") }
        guard !samples.isEmpty else { return }
        // Wait for room only when the worker is behind (always allowed to take one block).
        while pendingSamples > 0 && pendingSamples + samples.count > maxPendingSamples && !cancelled && !ended {
            cond.wait()
        }
        if let failure { throw failure }
        if cancelled { throw StreamingError(.cancelled, "samples appended to a cancelled stream") }
        if ended { throw StreamingError(.inputEnded, "samples appended after the stream ended") }
        pending.append(samples)
        pendingSamples += samples.count
        stats.samplesReceived += samples.count
        stats.secondsReceived = Double(stats.samplesReceived) / Double(inputRate)
        cond.broadcast()
    }

    private func receivedSoFar() -> Int {
        cond.lock(); defer { cond.unlock() }
        return stats.samplesReceived
    }

    func finish() {
        cond.lock()
        inputEnded = true
        cond.broadcast()
        cond.unlock()
    }

    func cancel() {
        cond.lock()
        cancelled = true
        inputEnded = true
        ended = true
        pending = []
        pendingSamples = 0
        let w = waiter
        waiter = nil
        cond.broadcast()
        cond.unlock()
        w?.resume(returning: nil)
    }

    // Consumer side.

    func next(wait: Bool) throws -> CedWindowResult? {
        cond.lock(); defer { cond.unlock() }
        while wait && resultsHead == results.count && !ended { cond.wait() }
        return try takeLocked()
    }

    /// A result, nil at the end, or the worker's error (call with the lock held).
    private func takeLocked() throws -> CedWindowResult? {
        if resultsHead < results.count {
            let r = results[resultsHead]
            resultsHead += 1
            if resultsHead > 64 && resultsHead * 2 > results.count {
                results.removeFirst(resultsHead)
                resultsHead = 0
            }
            cond.broadcast()
            return r
        }
        if let failure { throw failure }
        return nil
    }

    func nextAsync() async throws -> CedWindowResult? {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<CedWindowResult?, Error>) in
                cond.lock()
                if resultsHead < results.count || ended {
                    let r = Result { try takeLocked() }
                    cond.unlock()
                    c.resume(with: r)
                    return
                }
                if Task.isCancelled {
                    cond.unlock()
                    c.resume(throwing: CancellationError())
                    return
                }
                precondition(waiter == nil, "CedStreamingTagger: one consumer at a time")
                waiter = c
                cond.unlock()
            }
        } onCancel: {
            cond.lock()
            let w = waiter
            waiter = nil
            cond.unlock()
            w?.resume(throwing: CancellationError())
        }
    }

    /// Hands a result or the end to a suspended async consumer (lock held; resumes after unlock).
    private func wakeWaiterLocked() -> (() -> Void)? {
        guard let w = waiter, resultsHead < results.count || ended else { return nil }
        waiter = nil
        let r = Result { try takeLocked() }
        return { w.resume(with: r) }
    }

    // Worker.

    private func run() {
        let threads = options.threadLimit ?? CedCompute.threadLimit
        CedCompute.withThreadLimit(threads) {
            do {
                try loop()
            } catch {
                cond.lock()
                failure = error
                cond.unlock()
            }
        }
        cond.lock()
        ended = true
        let wake = wakeWaiterLocked()
        cond.broadcast()
        cond.unlock()
        wake?()
    }

    private func loop() throws {
        var frontEndDone = false
        let drop = options.whenBehind == .dropWindows
        while true {
            cond.lock()
            while !cancelled && pending.isEmpty && !(inputEnded && !frontEndDone) && queuedHead == queued.count {
                cond.wait()
            }
            if cancelled { cond.unlock(); return }
            // With .wait, featurise more only when the window queue has room.
            var blocks: [[Float]] = []
            if drop || queued.count - queuedHead < options.maxQueuedWindows {
                blocks = pending
                pending = []
                pendingSamples = 0
                cond.broadcast()
            }
            let ending = inputEnded && pending.isEmpty && !frontEndDone
            cond.unlock()

            for b in blocks {
                let x = resampler.process(b)
                if !x.isEmpty { queue(try frontEnd.append(x)) }
            }
            if ending {
                let tail = resampler.finish()
                if !tail.isEmpty { queue(try frontEnd.append(tail)) }
                queue(try frontEnd.finish())
                frontEndDone = true
            }
            if drop {
                let excess = queued.count - queuedHead - options.maxQueuedWindows
                if excess > 0 {
                    queuedHead += excess
                    cond.lock(); stats.droppedWindows += excess; cond.unlock()
                }
            }
            if queuedHead < queued.count {
                let n = min(options.maxBatch, queued.count - queuedHead)
                let batch = Array(queued[queuedHead ..< queuedHead + n])
                queuedHead += n
                if queuedHead == queued.count { queued = []; queuedHead = 0 }
                let t0 = DispatchTime.now().uptimeNanoseconds
                let scores = try tagger.scores(mels: batch.map(\.mel))
                let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
                publish(zip(batch, scores).map { CedWindowResult(index: $0.index, start: $0.start, end: $0.end, scores: $1) },
                        modelSeconds: seconds)
            }
            if frontEndDone && queuedHead == queued.count { return }
        }
    }

    private func queue(_ windows: [CedWindowFeatures]) {
        guard !windows.isEmpty else { return }
        if queuedHead > 0 && queuedHead * 2 >= queued.count {
            queued.removeFirst(queuedHead)
            queuedHead = 0
        }
        queued += windows
    }

    private func publish(_ new: [CedWindowResult], modelSeconds: Double) {
        cond.lock()
        stats.windowsScored += new.count
        stats.modelSeconds += modelSeconds
        for r in new {
            if options.whenBehind == .wait {
                while results.count - resultsHead >= options.maxBufferedResults && !cancelled {
                    // Hand over what is there before waiting for the consumer to take it
                    // (resuming a continuation only schedules its task: safe under the lock).
                    wakeWaiterLocked()?()
                    cond.broadcast()
                    cond.wait()
                }
            } else if results.count - resultsHead >= options.maxBufferedResults {
                resultsHead += 1
                stats.droppedWindows += 1
            }
            if cancelled { break }
            results.append(r)
        }
        let wake = wakeWaiterLocked()
        cond.broadcast()
        cond.unlock()
        wake?()
    }
}
