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
            let scores = try tagger.scores(mels: windows.map(\.mel))
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
        try events(.file(url), windowing: windowing, events: options, decoding: decoding)
    }

    /// The events in a file or in a file's bytes in memory (see `events(contentsOf:)`);
    /// `windows` receives every window's result as it is scored.
    public func events(_ input: AudioInput, windowing: CedWindowing, events options: CedEventOptions,
                       decoding: AudioDecodingOptions = AudioDecodingOptions(),
                       windows: (CedWindowResult) throws -> Void = { _ in }) throws -> CedEventDetection {
        let detector = try CedEventDetector(options: options, config: config)
        var events: [CedEvent] = []
        let scan = try scanWindows(input, windowing: windowing, decoding: decoding) {
            try windows($0)
            events += try detector.process($0)
        }
        events += detector.finish()
        return CedEventDetection(events: Self.sorted(events), sampleCount: scan.sampleCount,
                                 duration: Double(scan.sampleCount) / Double(samplingRate),
                                 windowCount: scan.windowCount, info: scan.info, warnings: scan.warnings)
    }

    /// The longest window the model sees at once, in seconds on the mel frame grid
    /// (`target_length` frames: 10.11 s for the published models).
    public var longestWindow: Double { CedWindowing.longestWindow(featureExtractor: featureExtractor.config, model: config) }

    /// One file's tags as `ced tag` reports them: the whole file's classes (as
    /// `tag(contentsOf:)`) and, with `windowing`, every window's classes as `segments`: the
    /// windows and scores `ced tag --events` and `ced listen` see. One decoding pass, block by
    /// block; `file` names the input in the result (default: its path), `model` the model.
    public func tagResult(contentsOf url: URL, file: String? = nil, model name: String, topK: Int? = 5, threshold: Float? = nil,
                          chunking: CedChunking = .hf, windowing: CedWindowing? = nil,
                          decoding: AudioDecodingOptions = AudioDecodingOptions()) throws -> CedTagResult {
        try tagResult(.file(url), file: file, model: name, topK: topK, threshold: threshold, chunking: chunking,
                      windowing: windowing, decoding: decoding)
    }

    /// One file's tags (see `tagResult(contentsOf:)`) from a file or a file's bytes in memory.
    public func tagResult(_ input: AudioInput, file: String? = nil, model name: String, topK: Int? = 5, threshold: Float? = nil,
                          chunking: CedChunking = .hf, windowing: CedWindowing? = nil,
                          decoding: AudioDecodingOptions = AudioDecodingOptions()) throws -> CedTagResult {
        let scores: Tensor, sampleCount: Int, warnings: [AudioWarning]
        var segments: [CedTagResult.Segment]?
        if let windowing {
            let stream = featureExtractor.makeStream()
            stream.keepLimit = Self.singlePassFrames
            var found: [CedTagResult.Segment] = []
            let scan = try scanWindows(input, windowing: windowing, decoding: decoding, observe: { try stream.append($0) }) {
                let labels = config.predictions(from: $0.scores, topK: topK, threshold: threshold)
                found.append(.init(start: $0.start, end: $0.end, labels: labels))
            }
            scores = try clipScores(stream, of: input, chunking: chunking, options: decoding)
            (sampleCount, warnings, segments) = (scan.sampleCount, scan.warnings, found)
        } else {
            let f = try fileScores(input, chunking: chunking, options: decoding)
            (scores, sampleCount, warnings) = (f.scores, f.sampleCount, f.warnings)
        }
        let labels = config.predictions(from: scores, topK: topK, threshold: threshold)
        return CedTagResult(file: file ?? input.name, duration: Double(sampleCount) / Double(samplingRate), model: name, labels: labels,
                            segments: segments, warnings: warnings)
    }

    /// Decodes a file block by block, hands each block to `observe` and each window's scores
    /// to `body`, in order.
    func scanWindows(_ input: AudioInput, windowing: CedWindowing, decoding: AudioDecodingOptions,
                     observe: ([Float]) throws -> Void = { _ in }, _ body: (CedWindowResult) throws -> Void) throws
        -> (sampleCount: Int, windowCount: Int, info: AudioFileInfo, warnings: [AudioWarning]) {
        let stream = try WaveformStream(input, sampleRate: samplingRate, options: decoding)
        defer { stream.close() }
        let scorer = try WindowScorer(tagger: self, windowing: windowing)
        do {
            while let block = try stream.next() {
                try observe(block)
                try scorer.append(block, body)
            }
            try scorer.finish(body)
        } catch let e as CedInputError {
            throw AudioError(file: input.name, kind: .nonFiniteSamples, reason: e.reason)
        }
        return (scorer.sampleCount, scorer.windowCount, stream.info, stream.warnings)
    }

    static func sorted(_ events: [CedEvent]) -> [CedEvent] {
        events.sorted { a, b in a.start != b.start ? a.start < b.start : a.index < b.index }
    }
}
