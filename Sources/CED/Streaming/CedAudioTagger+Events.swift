import Foundation

/// The events found in a recording.
public struct CedEventDetection: Sendable {
    /// Final events, by onset (then class index).
    public var events: [CedEvent]
    /// Samples at the model's rate the recording decoded to, and that in seconds.
    public var sampleCount: Int
    public var duration: Double
    /// Windows scored.
    public var windowCount: Int
    /// What the file holds (nil for samples passed in directly).
    public var info: AudioFileInfo?
    /// Problems worked around while decoding.
    public var warnings: [AudioWarning]
}

extension CedAudioTagger {
    /// The windowing `window`/`hop` seconds give for this tagger's model and front end.
    public func windowing(window: Double, hop: Double) throws -> CedWindowing {
        try CedWindowing(window: window, hop: hop, featureExtractor: featureExtractor.config, model: config)
    }

    /// Scores every window of 16 kHz mono samples arriving in blocks, synchronously on the
    /// calling thread (several windows per model call), handing each result to `body` in
    /// order. The same windows and scores as `CedStreamingTagger` gives for the same audio.
    public final class WindowScorer {
        public let tagger: CedAudioTagger
        public let windowing: CedWindowing
        private let frontEnd: CedWindowFeatureStream
        private var waiting: [CedWindowFeatures] = []
        private let batch: Int
        public private(set) var windowCount = 0

        public init(tagger: CedAudioTagger, windowing: CedWindowing, batch: Int = 8) throws {
            self.tagger = tagger
            self.windowing = windowing
            self.batch = max(1, batch)
            frontEnd = try CedWindowFeatureStream(windowing: windowing, featureExtractor: tagger.featureExtractor)
        }

        /// Samples appended so far.
        public var sampleCount: Int { frontEnd.sampleCount }

        public func append(_ samples: [Float], _ body: (CedWindowResult) throws -> Void) throws {
            waiting += try frontEnd.append(samples)
            if waiting.count >= batch { try flush(body) }
        }

        public func finish(_ body: (CedWindowResult) throws -> Void) throws {
            waiting += try frontEnd.finish()
            try flush(body)
        }

        private func flush(_ body: (CedWindowResult) throws -> Void) throws {
            guard !waiting.isEmpty else { return }
            let windows = waiting
            waiting = []
            let scores = try tagger.model(windows.map(\.mel))
            for (w, s) in zip(windows, scores) {
                windowCount += 1
                try body(CedWindowResult(index: w.index, start: w.start, end: w.end, scores: s))
            }
        }
    }

    /// The events in 16 kHz mono samples.
    public func events(in samples: [Float], windowing: CedWindowing, events options: CedEventOptions) throws -> CedEventDetection {
        let scorer = try WindowScorer(tagger: self, windowing: windowing)
        let detector = try CedEventDetector(options: options, config: config)
        var events: [CedEvent] = []
        try scorer.append(samples) { events += try detector.process($0) }
        try scorer.finish { events += try detector.process($0) }
        events += detector.finish()
        return CedEventDetection(events: Self.sorted(events), sampleCount: samples.count,
                                 duration: Double(samples.count) / Double(samplingRate),
                                 windowCount: scorer.windowCount, info: nil, warnings: [])
    }

    /// The events in an audio file, decoded and scored block by block (memory stays bounded
    /// for recordings of any length). The same events as the file gives when streamed
    /// through `CedStreamingTagger` (or `ced listen -`).
    public func events(contentsOf url: URL, windowing: CedWindowing, events options: CedEventOptions,
                       decoding: AudioDecodingOptions = AudioDecodingOptions()) throws -> CedEventDetection {
        let stream = try WaveformStream(contentsOf: url, sampleRate: samplingRate, options: decoding)
        defer { stream.close() }
        let scorer = try WindowScorer(tagger: self, windowing: windowing)
        let detector = try CedEventDetector(options: options, config: config)
        var events: [CedEvent] = []
        let handle: (CedWindowResult) throws -> Void = { events += try detector.process($0) }
        do {
            while let block = try stream.next() { try scorer.append(block, handle) }
            try scorer.finish(handle)
        } catch let e as CedInputError {
            throw AudioError(file: url.path, kind: .nonFiniteSamples, reason: e.reason)
        }
        events += detector.finish()
        let n = scorer.sampleCount
        return CedEventDetection(events: Self.sorted(events), sampleCount: n, duration: Double(n) / Double(samplingRate),
                                 windowCount: scorer.windowCount, info: stream.info, warnings: stream.warnings)
    }

    static func sorted(_ events: [CedEvent]) -> [CedEvent] {
        events.sorted { a, b in a.start != b.start ? a.start < b.start : a.index < b.index }
    }
}
