import Foundation

/// A class's own threshold, and optionally release, for event detection.
public struct CedClassThreshold: Sendable, Equatable {
    /// Output index of the class.
    public var index: Int
    public var threshold: Float
    public var release: Float?

    public init(index: Int, threshold: Float, release: Float? = nil) {
        self.index = index
        self.threshold = threshold
        self.release = release
    }
}

extension CedEventOptions {
    /// The rules of a default threshold, per-class thresholds and a release threshold:
    /// - without `classThresholds`, every class uses `threshold` (default 0.5);
    /// - with them, the classes listed use their own threshold (and release); the others use
    ///   `threshold` when given, else are not reported;
    /// - `release` is the release of every class that has none of its own, lowered to the
    ///   class's threshold where that is lower.
    /// - Throws: `StreamingError.invalidOption` for a value out of range.
    public init(classCount: Int, threshold: Float?, classThresholds: [CedClassThreshold]?, release: Float?,
                minDuration: Double = 0, mergeGap: Double = 0, fill: Double = 0.25, reportOngoing: Bool = false) throws {
        func rule(_ t: Float, _ r: Float?) throws -> CedEventRule {
            try CedEventRule(threshold: t, release: r.map { min($0, t) })
        }
        var rules: [CedEventRule?]
        if let classThresholds {
            rules = Array(repeating: try threshold.map { try rule($0, release) }, count: classCount)
            for c in classThresholds where rules.indices.contains(c.index) {
                rules[c.index] = try rule(c.threshold, c.release ?? release)
            }
        } else {
            rules = Array(repeating: try rule(threshold ?? 0.5, release), count: classCount)
        }
        try self.init(rules: rules, minDuration: minDuration, mergeGap: mergeGap, fill: fill, reportOngoing: reportOngoing)
    }

    /// Per-class thresholds from a CSV file of `label,threshold[,release]` rows (see
    /// `classThresholds(csv:file:labels:)`).
    public static func classThresholds(from url: URL, labels: [String]) throws -> [CedClassThreshold] {
        try classThresholds(csv: CedFileError.text(of: url, what: "file"), file: url.path, labels: labels)
    }

    /// Per-class thresholds from CSV rows `label,threshold[,release]`: the label is a class
    /// name of the model (exactly, else ignoring case when that is unambiguous) or an output
    /// index; a header row, blank lines and `#` comments are skipped.
    /// - Throws: `CedFileError` (`.malformed`) naming the line: a row of other than 2 or 3
    ///   fields, a value that is not a finite number, a release above its threshold, an
    ///   unknown class (with the names it might mean), a class given twice, or no rows at all.
    public static func classThresholds(csv text: String, file: String, labels: [String]) throws -> [CedClassThreshold] {
        var exact: [String: Int] = [:], folded: [String: [Int]] = [:]
        for (i, n) in labels.enumerated() {
            if exact[n] == nil { exact[n] = i }
            folded[n.lowercased(), default: []].append(i)
        }
        var out: [CedClassThreshold] = []
        var seen: [Int: Int] = [:]
        for (k, record) in try CedCSV.records(text, file: file, comments: true).filter({ !$0.isBlank }).enumerated() {
            let fields = record.fields.map { $0.trimmingCharacters(in: .whitespaces) }
            func fail(_ why: String) -> CedFileError { CedFileError(.malformed, file: file, line: record.line, reason: why) }
            guard fields.count == 2 || fields.count == 3 else {
                throw fail("expected label,threshold[,release], found \(fields.count) field(s)")
            }
            guard let t = Float(fields[1]) else {
                if k == 0 { continue }  // a header row
                throw fail("the threshold '\(fields[1])' is not a number")
            }
            var r: Float?
            if fields.count == 3 && !fields[2].isEmpty {
                guard let v = Float(fields[2]) else { throw fail("the release '\(fields[2])' is not a number") }
                r = v
            }
            guard t.isFinite, r?.isFinite ?? true else { throw fail("thresholds must be finite numbers") }
            if let r, r > t { throw fail("the release \(r) is above the threshold \(t)") }
            let label = fields[0]
            let index: Int
            if let i = exact[label] {
                index = i
            } else if let c = folded[label.lowercased()], c.count == 1 {
                index = c[0]
            } else if let i = Int(label), labels.indices.contains(i) {
                index = i
            } else {
                let near = labels.filter { $0.lowercased().contains(label.lowercased()) }.prefix(3)
                throw fail("'\(label)' is not a class of the model"
                           + (near.isEmpty ? "" : " (did you mean \(near.map { "'\($0)'" }.joined(separator: ", "))?)"))
            }
            if let first = seen[index] { throw fail("class '\(labels[index])' was already given on line \(first)") }
            seen[index] = record.line
            out.append(CedClassThreshold(index: index, threshold: t, release: r))
        }
        if out.isEmpty { throw CedFileError(.malformed, file: file, reason: "no class thresholds in the file") }
        return out
    }
}
