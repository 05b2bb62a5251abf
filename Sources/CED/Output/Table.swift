import Foundation

/// Results as aligned columns for a terminal: file names shortened at the front, class names
/// shortened to fit, one row per class (or event).
public struct CedTableEncoder<Result>: CedResultEncoder {
    public let header: String
    private let rows: @Sendable (Result) -> String

    public func encode(_ result: Result, position: Int) -> String { rows(result) }
}

extension CedTableEncoder where Result == CedTagResult {
    /// FILE, (START, END with `windowed`,) RANK, LABEL, SCORE; columns sized for `files` and `labels`.
    public init(files: [String], labels: [String], windowed: Bool) {
        let fileWidth = min(60, max(4, files.map(\.count).max() ?? 4))
        let labelWidth = min(48, max(5, labels.map(\.count).max() ?? 5))
        var h = TextColumns.left("FILE", fileWidth)
        if windowed { h += "  " + TextColumns.right("START", 8) + "  " + TextColumns.right("END", 8) }
        header = h + "  " + TextColumns.right("RANK", 4) + "  " + TextColumns.left("LABEL", labelWidth) + "  "
            + TextColumns.right("SCORE", 6) + "\n"
        // Explicit types and short expressions: Swift 6.0's type checker gives up on this
        // closure written as a few long concatenations.
        rows = { (r: CedTagResult) -> String in
            let name: String = TextColumns.shortenFront(r.file, fileWidth)
            func lead(_ rank: Int) -> String { TextColumns.left(rank == 0 ? name : "", fileWidth) }
            func row(_ rank: Int, _ p: CedPrediction) -> String {
                let label: String = TextColumns.left(TextColumns.shortenFront(p.label, labelWidth), labelWidth)
                let score: String = TextColumns.right(String(format: "%.4f", p.score), 6)
                return TextColumns.right(String(rank + 1), 4) + "  " + label + "  " + score + "\n"
            }
            guard let segments = r.segments else {
                var out: String = r.labels.isEmpty ? TextColumns.left(name, fileWidth) + "  (no class above the threshold)\n" : ""
                for (rank, p) in r.labels.enumerated() { out += lead(rank) + "  " + row(rank, p) }
                return out
            }
            var out = ""
            for s in segments {
                let start: String = TextColumns.right(String(format: "%.2f", s.start), 8)
                let end: String = TextColumns.right(String(format: "%.2f", s.end), 8)
                for (rank, p) in s.labels.enumerated() { out += lead(rank) + "  " + start + "  " + end + "  " + row(rank, p) }
            }
            return out
        }
    }
}

extension CedTableEncoder where Result == CedEventResult {
    /// FILE, START, END (`m:ss.s`), LABEL, SCORE, MEAN; columns sized for `files` and `labels`.
    public init(files: [String], labels: [String]) {
        let labelWidth = min(40, max(5, labels.map(\.count).max() ?? 5))
        let fileWidth = min(50, max(4, files.map(\.count).max() ?? 4))
        header = TextColumns.left("FILE", fileWidth) + "  " + TextColumns.right("START", 9) + "  " + TextColumns.right("END", 9) + "  "
            + TextColumns.left("LABEL", labelWidth) + "  " + TextColumns.right("SCORE", 6) + "  " + TextColumns.right("MEAN", 6) + "\n"
        rows = { r in
            let shown = TextColumns.shortenFront(r.file, fileWidth)
            if r.events.isEmpty { return TextColumns.left(shown, fileWidth) + "  (no events)\n" }
            return r.events.enumerated().map { i, e in
                TextColumns.left(i == 0 ? shown : "", fileWidth) + "  " + TextColumns.right(TextColumns.clock(e.start), 9) + "  "
                    + TextColumns.right(TextColumns.clock(e.end), 9) + "  "
                    + TextColumns.left(TextColumns.shortenEnd(e.label, labelWidth), labelWidth) + "  "
                    + TextColumns.right(String(format: "%.4f", e.score), 6) + "  " + TextColumns.right(String(format: "%.4f", e.meanScore), 6)
                    + "\n"
            }.joined()
        }
    }
}

/// Events as rows of a live table (`ced listen`): START, END, DUR, LABEL, PEAK, MEAN and,
/// given the wall-clock time of the stream's start, WALL CLOCK.
public struct CedLiveEventTable: Sendable {
    public let header: String
    private let labelWidth: Int

    public init(labels: [String], wallClock: Bool) {
        labelWidth = min(36, max(5, labels.map(\.count).max() ?? 5))
        header = TextColumns.right("START", 10) + "  " + TextColumns.right("END", 10) + "  " + TextColumns.right("DUR", 6) + "  "
            + TextColumns.left("LABEL", labelWidth) + "  " + TextColumns.right("PEAK", 5) + "  " + TextColumns.right("MEAN", 5)
            + (wallClock ? "  WALL CLOCK" : "") + "\n"
    }

    /// The row of a final event (`HH:mm:ss` of the onset, local time, when `wallClockStart` is given).
    public func row(_ e: CedEvent, wallClockStart: Date?) -> String {
        var row = TextColumns.right(TextColumns.clock(e.start), 10) + "  " + TextColumns.right(TextColumns.clock(e.end), 10) + "  "
            + TextColumns.right(String(format: "%.1f", e.duration), 6) + "  "
            + TextColumns.left(TextColumns.shortenEnd(e.label, labelWidth), labelWidth) + "  "
            + TextColumns.right(String(format: "%.2f", e.score), 5) + "  " + TextColumns.right(String(format: "%.2f", e.meanScore), 5)
        if let t0 = wallClockStart {
            let f = DateFormatter()
            f.dateFormat = "HH:mm:ss"
            row += "  " + f.string(from: t0.addingTimeInterval(e.start))
        }
        return row + "\n"
    }
}

extension CedLiveEventTable {
    /// The status line under a live table: the stream's time, what is sounding now, and how
    /// many windows were dropped (at most 120 characters).
    public func status(audioSeconds: Double, active: [CedEvent], dropped: Int) -> String {
        var line = "▸ \(TextColumns.clock(audioSeconds))  "
        line += active.isEmpty ? "listening…"
            : active.map { "\($0.label) \(String(format: "%.2f", $0.score)) since \(TextColumns.clock($0.start))" }.joined(separator: " · ")
        if dropped > 0 { line += "  (\(dropped) windows dropped)" }
        return TextColumns.shortenEnd(line, 120)
    }
}

/// Column helpers of the tables.
public enum TextColumns {
    /// `s` padded with spaces on the right to `width`.
    public static func left(_ s: String, _ width: Int) -> String {
        s.count >= width ? s : s + String(repeating: " ", count: width - s.count)
    }

    /// `s` padded with spaces on the left to `width`.
    public static func right(_ s: String, _ width: Int) -> String {
        s.count >= width ? s : String(repeating: " ", count: width - s.count) + s
    }

    /// `s`, its front replaced by `…` when longer than `width`.
    public static func shortenFront(_ s: String, _ width: Int) -> String { s.count <= width ? s : "…" + s.suffix(width - 1) }
    /// `s`, its end replaced by `…` when longer than `width`.
    public static func shortenEnd(_ s: String, _ width: Int) -> String { s.count <= width ? s : String(s.prefix(width - 1)) + "…" }

    /// Seconds as `h:mm:ss.s` (`m:ss.s` under an hour).
    public static func clock(_ t: Double) -> String {
        let tenths = Int((max(0, t) * 10).rounded())
        let s = tenths / 10, d = tenths % 10
        return s >= 3600 ? String(format: "%d:%02d:%02d.%d", s / 3600, s / 60 % 60, s % 60, d)
                         : String(format: "%d:%02d.%d", s / 60, s % 60, d)
    }
}
