import Foundation

/// One file's tags: what `ced tag` reports per input, and what a server returns per upload.
/// Its `Codable` form is the JSON of `ced tag --format json`.
public struct CedTagResult: Codable, Sendable, Equatable {
    /// One window of the file and its tags (`ced tag --window`).
    public struct Segment: Codable, Sendable, Equatable {
        /// Start and end in seconds from the file's start.
        public var start: Double
        public var end: Double
        public var labels: [CedPrediction]

        public init(start: Double, end: Double, labels: [CedPrediction]) {
            self.start = start
            self.end = end
            self.labels = labels
        }
    }

    /// The input as named to the user (a path, or "-" for standard input).
    public var file: String
    /// Seconds of audio the file decoded to.
    public var duration: Double
    /// The model, as the user named it.
    public var model: String
    /// The file's classes, highest score first.
    public var labels: [CedPrediction]
    /// With windows: every window's classes, in time order.
    public var segments: [Segment]?
    /// Problems worked around while decoding (not part of the encoded result).
    public var warnings: [AudioWarning] = []

    enum CodingKeys: String, CodingKey {
        case file, duration = "duration_s", model, labels, segments
    }

    public init(file: String, duration: Double, model: String, labels: [CedPrediction], segments: [Segment]? = nil,
                warnings: [AudioWarning] = []) {
        self.file = file
        self.duration = duration
        self.model = model
        self.labels = labels
        self.segments = segments
        self.warnings = warnings
    }
}

/// One file's sound events: what `ced tag --events` reports per input. Its `Codable` form is
/// the JSON of `ced tag --events --format json` (events as `CedEventReport`s).
public struct CedEventResult: Codable, Sendable, Equatable {
    public var file: String
    public var duration: Double
    public var model: String
    /// Final events, by onset (then class index).
    public var events: [CedEvent]
    /// Problems worked around while decoding (not part of the encoded result).
    public var warnings: [AudioWarning] = []

    enum CodingKeys: String, CodingKey {
        case file, duration = "duration_s", model, events
    }

    public init(file: String, duration: Double, model: String, events: [CedEvent], warnings: [AudioWarning] = []) {
        self.file = file
        self.duration = duration
        self.model = model
        self.events = events
        self.warnings = warnings
    }

    /// The result of a detection in a file named `file` to the user.
    public init(file: String, model: String, detection d: CedEventDetection) {
        self.init(file: file, duration: d.duration, model: model, events: d.events, warnings: d.warnings)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(file, forKey: .file)
        try c.encode(duration, forKey: .duration)
        try c.encode(model, forKey: .model)
        try c.encode(events.map { CedEventReport($0) }, forKey: .events)
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(file: try c.decode(String.self, forKey: .file), duration: try c.decode(Double.self, forKey: .duration),
                  model: try c.decode(String.self, forKey: .model),
                  events: try c.decode([CedEventReport].self, forKey: .events).map(\.event))
    }
}

/// An event as results and live streams write it: times in seconds rounded to milliseconds;
/// for live streams optionally the event's `id`, `ongoing: true` for an update about an event
/// still going on, and wall-clock times.
public struct CedEventReport: Codable, Sendable, Equatable {
    public var label: String
    public var index: Int
    public var start: Double
    public var end: Double
    public var score: Float
    public var meanScore: Float
    public var id: Int?
    public var ongoing: Bool?
    /// ISO 8601 times of onset and offset.
    public var wallStart: String?
    public var wallEnd: String?

    enum CodingKeys: String, CodingKey {
        case label, index, start, end, score, meanScore = "mean_score", id, ongoing, wallStart = "wall_start", wallEnd = "wall_end"
    }

    /// - Parameters:
    ///   - withID: also report the id (always reported for ongoing updates).
    ///   - wallClockStart: the wall-clock time of the stream's start, for `wall_start`/`wall_end`.
    public init(_ e: CedEvent, withID: Bool = false, wallClockStart: Date? = nil) {
        label = e.label
        index = e.index
        start = Self.seconds(e.start)
        end = Self.seconds(e.end)
        score = e.score
        meanScore = e.meanScore
        id = e.ongoing || withID ? e.id : nil
        ongoing = e.ongoing ? true : nil
        if let t0 = wallClockStart {
            wallStart = Self.iso8601.string(from: t0.addingTimeInterval(e.start))
            wallEnd = Self.iso8601.string(from: t0.addingTimeInterval(e.end))
        }
    }

    /// The event (with no window count).
    public var event: CedEvent {
        CedEvent(index: index, label: label, start: start, end: end, score: score, meanScore: meanScore, windowCount: 0,
                 ongoing: ongoing ?? false, id: id ?? 0)
    }

    /// Seconds rounded to milliseconds, as the reports give times.
    public static func seconds(_ t: Double) -> Double { (t * 1000).rounded() / 1000 }

    nonisolated(unsafe) static let iso8601: ISO8601DateFormatter = {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f
    }()
}

/// One window's top classes as `ced listen --windows` prints them (times rounded to milliseconds).
public struct CedWindowReport: Codable, Sendable, Equatable {
    public var window: Int
    public var start: Double
    public var end: Double
    public var labels: [CedPrediction]

    public init(_ r: CedWindowResult, labels: [CedPrediction]) {
        window = r.index
        start = CedEventReport.seconds(r.start)
        end = CedEventReport.seconds(r.end)
        self.labels = labels
    }
}

/// One file's embedding (or tokens) as `ced embed --format jsonl` writes it.
public struct CedEmbeddingResult: Codable, Sendable, Equatable {
    public var file: String
    public var shape: [Int]
    public var embedding: [Float]

    public init(file: String, tensor: Tensor) {
        self.file = file
        shape = tensor.shape
        embedding = tensor.scalars
    }
}

extension CedConfig {
    /// Class names by output index (`label(for:)` of `0..<outputdim`).
    public var labels: [String] { (0..<outputdim).map { label(for: $0) } }
}
