import Foundation

/// CSV as the package reads and writes it (RFC 4180): fields separated by commas; a field
/// that starts with `"` is quoted and may hold commas, line breaks and `""` for a quote;
/// `\r\n` or `\n` ends a record; a leading byte-order mark is ignored. The one reader of every
/// CSV the package takes: class labels (`LabelsCSV`), training data (`TrainingDataset`) and
/// per-class event thresholds (`CedEventOptions.classThresholds`).
public enum CedCSV {
    /// One record and the line it starts on (1-based). Fields are as written (not trimmed).
    public struct Record: Sendable, Equatable {
        public var fields: [String]
        public var line: Int

        public init(fields: [String], line: Int) {
            self.fields = fields
            self.line = line
        }

        /// A blank line: one field of blanks.
        public var isBlank: Bool { fields.count == 1 && fields[0].trimmingCharacters(in: .whitespaces).isEmpty }
    }

    /// The records of `text`.
    /// - Parameter comments: skip lines whose first non-blank character is `#`.
    /// - Throws: `CedFileError` (`.malformed`) for a quoted field that is never closed, naming
    ///   the line it starts on.
    public static func records(_ text: String, file: String = "<csv>", comments: Bool = false) throws -> [Record] {
        var out: [Record] = []
        var fields: [String] = []
        var field = ""
        var inQuotes = false
        var fieldStarted = false
        var line = 1, recordLine = 1
        var chars = Array(text.unicodeScalars)
        if chars.first == "\u{FEFF}" { chars.removeFirst() }
        var i = 0
        func endRecord() {
            fields.append(field)
            out.append(Record(fields: fields, line: recordLine))
            fields = []
            field = ""
            fieldStarted = false
        }
        while i < chars.count {
            if comments && fields.isEmpty && !fieldStarted && !inQuotes {
                var j = i
                while j < chars.count && (chars[j] == " " || chars[j] == "\t") { j += 1 }
                if j < chars.count && chars[j] == "#" {
                    while j < chars.count && chars[j] != "\n" { j += 1 }
                    i = j + 1
                    line += 1
                    recordLine = line
                    continue
                }
            }
            let c = chars[i]
            if inQuotes {
                if c == "\"" {
                    if i + 1 < chars.count && chars[i + 1] == "\"" { field.unicodeScalars.append("\""); i += 1 } else { inQuotes = false }
                } else {
                    if c == "\n" { line += 1 }
                    field.unicodeScalars.append(c)
                }
            } else {
                switch c {
                case "\"" where !fieldStarted || field.isEmpty:
                    inQuotes = true
                    fieldStarted = true
                case ",":
                    fields.append(field)
                    field = ""
                    fieldStarted = false
                case "\r":
                    break
                case "\n":
                    endRecord()
                    line += 1
                    recordLine = line
                default:
                    field.unicodeScalars.append(c)
                    fieldStarted = true
                }
            }
            i += 1
        }
        if inQuotes { throw CedFileError(.malformed, file: file, line: recordLine, reason: "unterminated quoted field") }
        if !field.isEmpty || !fields.isEmpty { endRecord() }
        return out
    }

    /// `s` as a CSV field: double-quoted (quotes doubled) when it holds a comma, a quote or a
    /// line break, else as it is.
    public static func field(_ s: String) -> String {
        if s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) {
            return "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\""
        }
        return s
    }
}

/// Results as CSV rows under a header row (numbers as in JSON; event times in milliseconds).
public struct CedCSVEncoder<Result>: CedResultEncoder {
    public let header: String
    private let rows: @Sendable (Result) -> [[String]]

    public func encode(_ result: Result, position: Int) -> String {
        rows(result).map { $0.joined(separator: ",") + "\n" }.joined()
    }
}

extension CedCSVEncoder where Result == CedTagResult {
    /// `file,rank,index,label,score` per class of each file, or with `windowed`
    /// `file,start,end,rank,index,label,score` per class of each segment.
    public init(windowed: Bool) {
        header = windowed ? "file,start,end,rank,index,label,score\n" : "file,rank,index,label,score\n"
        rows = { r in
            let file = CedCSV.field(r.file)
            func row(_ rank: Int, _ p: CedPrediction) -> [String] {
                ["\(rank + 1)", "\(p.index)", CedCSV.field(p.label), CedJSONText.number(p.score)]
            }
            guard let segments = r.segments else { return r.labels.enumerated().map { [file] + row($0, $1) } }
            return segments.flatMap { s in
                s.labels.enumerated().map { [file, CedJSONText.number(s.start), CedJSONText.number(s.end)] + row($0, $1) }
            }
        }
    }
}

extension CedCSVEncoder where Result == CedEventResult {
    /// `file,start,end,index,label,score,mean_score` per event.
    public init() {
        header = "file,start,end,index,label,score,mean_score\n"
        rows = { r in
            r.events.map { e in
                [CedCSV.field(r.file), CedJSONText.number(CedEventReport.seconds(e.start)),
                 CedJSONText.number(CedEventReport.seconds(e.end)), "\(e.index)", CedCSV.field(e.label),
                 CedJSONText.number(e.score), CedJSONText.number(e.meanScore)]
            }
        }
    }
}
