import Foundation

/// Writes results of one kind in one format: a header, each result's text, a footer. A tool
/// streams results as they come (`header`, then `encode` of each, then `footer`); a server
/// answers a request with `document` of its results.
public protocol CedResultEncoder<Result> {
    associatedtype Result
    /// Text before the first result: a CSV header row, a table's header, `[` of a JSON array.
    var header: String { get }
    /// One result's text; `position` counts results from 0 (JSON separates them with commas).
    func encode(_ result: Result, position: Int) throws -> String
    /// Text after the last of `count` results.
    func footer(count: Int) -> String
}

extension CedResultEncoder {
    public var header: String { "" }
    public func footer(count: Int) -> String { "" }

    /// A whole document of `results`: header, each result, footer.
    public func document(_ results: [Result]) throws -> String {
        try header + results.enumerated().map { try encode($1, position: $0) }.joined() + footer(count: results.count)
    }
}

/// The result formats of `ced tag` (and of a server answering the same question).
public enum CedResultFormat: String, CaseIterable, Sendable {
    /// Aligned columns for a terminal.
    case table
    /// A JSON array of one object per file (`CedJSONText` of the result type).
    case json
    /// One JSON object per line.
    case jsonl
    /// A header row, then a row per (file, class) or per event.
    case csv
    /// An Audacity label track (events only).
    case audacity
    /// A Raven selection table (events only).
    case raven

    /// Formats only events have.
    public var isEventOnly: Bool { self == .audacity || self == .raven }

    /// The media type of a document in this format.
    public var mediaType: String {
        switch self {
        case .json: return "application/json"
        case .jsonl: return "application/x-ndjson"
        case .csv: return "text/csv; charset=utf-8"
        case .table, .audacity: return "text/plain; charset=utf-8"
        case .raven: return "text/tab-separated-values; charset=utf-8"
        }
    }

    /// The file name ending of one recording's events in this format (`ced tag --events --output-dir`).
    public var eventFileSuffix: String {
        switch self {
        case .audacity: return ".labels.txt"
        case .raven: return ".selections.txt"
        case .json: return ".events.json"
        case .jsonl: return ".events.jsonl"
        case .csv: return ".events.csv"
        case .table: return ".events.txt"
        }
    }

    /// Where one recording's events go in `directory`: `<directory>/<name without its
    /// extension><eventFileSuffix>`, absolute and `..` components dropped so that it stays
    /// inside (`-`, standard input, is `stdin`).
    public func eventFile(for name: String, in directory: URL) -> URL {
        Self.outputFile(for: name, in: directory, suffix: eventFileSuffix)
    }

    /// Where one recording's output ending in `suffix` goes in `directory` (see `eventFile`).
    public static func outputFile(for name: String, in directory: URL, suffix: String) -> URL {
        let stem = name == "-" ? "stdin" : (name as NSString).deletingPathExtension
        var url = directory
        for part in stem.split(separator: "/") where part != ".." && part != "." { url.appendPathComponent(String(part)) }
        return url.deletingLastPathComponent().appendingPathComponent(url.lastPathComponent + suffix)
    }

    /// The encoder of tag results (nil for the event-only formats). `files` and `labels` size
    /// the table's columns; `windowed` adds the segments' columns to the table and CSV.
    public func tagEncoder(files: [String], labels: [String], windowed: Bool) -> (any CedResultEncoder<CedTagResult>)? {
        switch self {
        case .json: return CedJSONEncoder<CedTagResult>()
        case .jsonl: return CedJSONLinesEncoder<CedTagResult>()
        case .csv: return CedCSVEncoder(windowed: windowed)
        case .table: return CedTableEncoder(files: files, labels: labels, windowed: windowed)
        case .audacity, .raven: return nil
        }
    }

    /// The encoder of event results. `files` and `labels` size the table's columns; the
    /// feature extractor's band is each Raven selection's frequency range.
    public func eventEncoder(files: [String], labels: [String],
                             featureExtractor: CedFeatureExtractor) -> any CedResultEncoder<CedEventResult> {
        switch self {
        case .json: return CedJSONEncoder<CedEventResult>()
        case .jsonl: return CedJSONLinesEncoder<CedEventResult>()
        case .csv: return CedCSVEncoder<CedEventResult>()
        case .table: return CedTableEncoder(files: files, labels: labels)
        case .audacity: return CedAudacityEncoder()
        case .raven: return CedRavenEncoder(lowFrequency: featureExtractor.config.fMin, highFrequency: featureExtractor.effectiveFMax)
        }
    }
}

/// A JSON array of results, one per line (`CedJSONText`).
public struct CedJSONEncoder<Result: Encodable>: CedResultEncoder {
    public init() {}
    public var header: String { "[" }
    public func encode(_ result: Result, position: Int) throws -> String {
        (position == 0 ? "\n" : ",\n") + (try CedJSONText.encode(result))
    }
    public func footer(count: Int) -> String { count == 0 ? "]\n" : "\n]\n" }
}

/// JSON Lines: one result per line (`CedJSONText`).
public struct CedJSONLinesEncoder<Result: Encodable>: CedResultEncoder {
    public init() {}
    public func encode(_ result: Result, position: Int) throws -> String { try CedJSONText.encode(result) + "\n" }
}
