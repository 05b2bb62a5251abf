import Foundation

/// What the picture of a recording shows (`ced tag --events --report`, the server's page and
/// `POST /v1/audio/report`): its log-mel spectrogram, the window scores of its top classes
/// over time, its events and its clip tags. Its `Codable` form (snake_case keys, written by
/// `CedJSONText`) is the data `CedReportPage` embeds or fetches.
public struct CedReport: Codable, Sendable, Equatable {
    /// The log-mel spectrogram, reduced to at most a few thousand columns (each the maximum
    /// of the frames it covers) and quantised to bytes between `dbMin` and `dbMax`.
    public struct Mel: Codable, Sendable, Equatable {
        /// Mel bins (rows, lowest frequency first) and columns.
        public var bins: Int
        public var columns: Int
        /// Feature frames in all, and how many each column covers (the last may cover fewer).
        public var frames: Int
        public var framesPerColumn: Int
        /// Seconds between frames (the feature extractor's hop).
        public var frameSeconds: Double
        /// The band the bins cover, Hz.
        public var fMin: Double
        public var fMax: Double
        /// Byte 0 is `dbMin` or less, byte 255 is `dbMax`.
        public var dbMin: Float
        public var dbMax: Float
        /// `bins × columns` bytes, row by row (bin 0 first), base64.
        public var data: String

        enum CodingKeys: String, CodingKey {
            case bins, columns, frames, framesPerColumn = "frames_per_column", frameSeconds = "frame_seconds",
                 fMin = "f_min", fMax = "f_max", dbMin = "db_min", dbMax = "db_max", data
        }

        /// `mel` (`[bins, frames]` log-mel) reduced to at most `maxColumns` columns, its
        /// colour range the top `range` dB.
        public init(_ mel: Tensor, frameSeconds: Double, fMin: Double, fMax: Double, maxColumns: Int = 4000, range: Float = 90) {
            let bins = mel.shape[0], frames = mel.shape.count > 1 ? mel.shape[1] : 0
            let per = max(1, (frames + max(1, maxColumns) - 1) / max(1, maxColumns))
            let columns = (frames + per - 1) / per
            let x = mel.scalars
            var top = -Float.infinity
            for v in x where v.isFinite && v > top { top = v }
            if !top.isFinite { top = 0 }
            let low = top - range
            var bytes = [UInt8](repeating: 0, count: bins * columns)
            for b in 0..<bins {
                for c in 0..<columns {
                    var m = -Float.infinity
                    for t in (c * per) ..< min(frames, (c + 1) * per) { m = max(m, x[b * frames + t]) }
                    let q = ((m - low) / range * 255).rounded()
                    bytes[b * columns + c] = q.isFinite ? UInt8(min(255, max(0, q))) : 0
                }
            }
            self.bins = bins
            self.columns = columns
            self.frames = frames
            framesPerColumn = per
            self.frameSeconds = frameSeconds
            self.fMin = fMin
            self.fMax = fMax
            dbMin = low
            dbMax = top
            data = Data(bytes).base64EncodedString()
        }
    }

    /// The scores of the classes drawn as curves, window by window.
    public struct Curves: Codable, Sendable, Equatable {
        public struct Curve: Codable, Sendable, Equatable {
            public var index: Int
            public var label: String
            /// The class's event rule (nil: the class is not reported as events).
            public var threshold: Float?
            public var release: Float?
            /// One score per window.
            public var scores: [Float]
        }
        /// Window length and hop, seconds.
        public var window: Double
        public var hop: Double
        /// Each window's start and end, seconds.
        public var start: [Double]
        public var end: [Double]
        public var classes: [Curve]

        enum CodingKeys: String, CodingKey {
            case window = "window_s", hop = "hop_s", start, end, classes
        }
    }

    public var file: String
    public var duration: Double
    public var model: String
    /// The clip's tags, highest score first (what `ced tag` reports for the file).
    public var labels: [CedPrediction]
    /// Final events, by onset (what `ced tag --events` reports for the file).
    public var events: [CedEvent]
    public var curves: Curves
    public var mel: Mel
    /// Problems worked around while decoding (not part of the encoded report).
    public var warnings: [AudioWarning] = []

    enum CodingKeys: String, CodingKey {
        case file, duration = "duration_s", model, labels, events, curves, mel
    }

    public init(file: String, duration: Double, model: String, labels: [CedPrediction], events: [CedEvent], curves: Curves,
                mel: Mel, warnings: [AudioWarning] = []) {
        self.file = file
        self.duration = duration
        self.model = model
        self.labels = labels
        self.events = events
        self.curves = curves
        self.mel = mel
        self.warnings = warnings
    }

    /// The events as `ced tag --events` reports them.
    public var eventResult: CedEventResult {
        CedEventResult(file: file, duration: duration, model: model, events: events, warnings: warnings)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(file, forKey: .file)
        try c.encode(duration, forKey: .duration)
        try c.encode(model, forKey: .model)
        try c.encode(labels, forKey: .labels)
        try c.encode(events.map { CedEventReport($0) }, forKey: .events)
        try c.encode(curves, forKey: .curves)
        try c.encode(mel, forKey: .mel)
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(file: try c.decode(String.self, forKey: .file), duration: try c.decode(Double.self, forKey: .duration),
                  model: try c.decode(String.self, forKey: .model), labels: try c.decode([CedPrediction].self, forKey: .labels),
                  events: try c.decode([CedEventReport].self, forKey: .events).map(\.event),
                  curves: try c.decode(Curves.self, forKey: .curves), mel: try c.decode(Mel.self, forKey: .mel))
    }
}

extension CedAudioTagger {
    /// The picture of a recording in one decoding pass, block by block: the clip tags exactly
    /// as `tagResult` gives them (`topK`, `threshold`, `chunking`), the events exactly as
    /// `events(_:windowing:events:)` finds them, the window scores of `curves` classes (the
    /// classes of the events by peak score, then the highest-scoring others) and the
    /// log-mel spectrogram reduced to at most `maxColumns` columns.
    public func report(_ input: AudioInput, file: String? = nil, model name: String, topK: Int? = 5, threshold: Float? = nil,
                       chunking: CedChunking = .hf, windowing: CedWindowing, events options: CedEventOptions, curves: Int = 8,
                       maxColumns: Int = 4000, decoding: AudioDecodingOptions = AudioDecodingOptions()) throws -> CedReport {
        let n = config.outputdim
        let stream = featureExtractor.makeStream()
        let detector = try CedEventDetector(options: options, config: config)
        var events: [CedEvent] = []
        var starts: [Double] = [], ends: [Double] = [], scores: [Float] = []
        let scan = try scanWindows(input, windowing: windowing, decoding: decoding, observe: { try stream.append($0) }) { w in
            starts.append(w.start)
            ends.append(w.end)
            scores += w.scores.scalars
            events += try detector.process(w)
        }
        events = Self.sorted(events + detector.finish())
        let mel: Tensor
        do { mel = try stream.finish() } catch let e as CedInputError {
            throw AudioError(file: input.name, kind: .noAudio, reason: e.reason)
        }
        let labels = config.predictions(from: try self.scores(mels: [mel], chunking: chunking)[0], topK: topK, threshold: threshold)

        // The classes drawn: those of the events (highest peak first), then the highest peaks.
        var peak = [Float](repeating: -.infinity, count: n)
        for (i, s) in scores.enumerated() where s > peak[i % n] { peak[i % n] = s }
        var chosen: [Int] = []
        for e in events.sorted(by: { $0.score != $1.score ? $0.score > $1.score : $0.index < $1.index })
        where !chosen.contains(e.index) { chosen.append(e.index) }
        for c in (0..<n).sorted(by: { peak[$0] != peak[$1] ? peak[$0] > peak[$1] : $0 < $1 }) where chosen.count < curves && !chosen.contains(c) {
            chosen.append(c)
        }
        chosen = Array(chosen.prefix(max(curves, Set(events.map(\.index)).count)))
        let windowCount = starts.count
        let classes = chosen.map { c in
            CedReport.Curves.Curve(index: c, label: config.label(for: c), threshold: options.rules[c]?.threshold,
                                   release: options.rules[c]?.release, scores: (0..<windowCount).map { scores[$0 * n + c] })
        }
        let hopSeconds = Double(featureExtractor.config.hopSize) / Double(samplingRate)
        return CedReport(file: file ?? input.name, duration: Double(scan.sampleCount) / Double(samplingRate), model: name,
                         labels: labels, events: events,
                         curves: .init(window: windowing.window, hop: windowing.hop, start: starts, end: ends, classes: classes),
                         mel: .init(mel, frameSeconds: hopSeconds, fMin: featureExtractor.config.fMin,
                                    fMax: featureExtractor.effectiveFMax, maxColumns: maxColumns),
                         warnings: scan.warnings)
    }
}
