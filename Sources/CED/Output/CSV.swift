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
