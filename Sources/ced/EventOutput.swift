import ArgumentParser
import CED
import Foundation

// MARK: Event rules from the command line

/// The per-class rules of `--threshold`, `--thresholds CSV` and `--release`:
/// - without `--thresholds`, every class uses `--threshold` (default 0.5);
/// - with it, the classes it lists use their own threshold (and release, third column);
///   the others use `--threshold` when that is given, else they are not reported.
/// `--release` is the release threshold of every class that has none of its own, lowered to
/// the class's threshold where that is lower.
func eventOptions(config: CedConfig, threshold: Float?, thresholdsFile: String?, release: Float?,
                  minDuration: Double, mergeGap: Double, fill: Double, ongoing: Bool) throws -> CedEventOptions {
    if let t = threshold, !t.isFinite { throw ValidationError("--threshold must be a number") }
    if let r = release {
        guard r.isFinite else { throw ValidationError("--release must be a number") }
        if let t = threshold, r > t { throw ValidationError("--release (\(r)) must not be above --threshold (\(t))") }
        if thresholdsFile == nil && threshold == nil && r > 0.5 {
            throw ValidationError("--release (\(r)) must not be above the threshold (0.5 by default)")
        }
    }
    guard minDuration.isFinite, minDuration >= 0 else { throw ValidationError("--min-duration must be a non-negative number of seconds") }
    guard mergeGap.isFinite, mergeGap >= 0 else { throw ValidationError("--merge-gap must be a non-negative number of seconds") }
    guard fill.isFinite, fill >= 0, fill <= 1 else { throw ValidationError("--fill must be between 0 and 1") }
    let classThresholds = try thresholdsFile.map { path in
        do {
            return try CedEventOptions.classThresholds(from: URL(fileURLWithPath: path), labels: config.labels)
        } catch let e as CedFileError {
            throw ValidationError("--thresholds \(e)")
        }
    }
    return try CedEventOptions(classCount: config.outputdim, threshold: threshold, classThresholds: classThresholds, release: release,
                               minDuration: minDuration, mergeGap: mergeGap, fill: fill, reportOngoing: ongoing)
}

// MARK: Formatting events

/// Seconds rounded to milliseconds, as a JSON number.
func jsonTime(_ t: Double) -> String { jsonNumber((t * 1000).rounded() / 1000) }

/// `{"label", "index", "start", "end", "score", "mean_score"}` (+ `extra` fields).
func jsonEvent(_ e: CedEvent, extra: String = "") -> String {
    "{\"label\": \(e.label.jsonQuoted), \"index\": \(e.index), \"start\": \(jsonTime(e.start)), \"end\": \(jsonTime(e.end)), \"score\": \(jsonNumber(e.score)), \"mean_score\": \(jsonNumber(e.meanScore))\(extra)}"
}

/// Audacity label track lines: `start\tend\tlabel`.
func audacityLabels(_ events: [CedEvent]) -> String {
    events.map { String(format: "%.6f\t%.6f\t", $0.start, $0.end) + $0.label.replacingOccurrences(of: "\t", with: " ") + "\n" }.joined()
}

/// A Raven selection table (tab-separated, one selection per event), as BirdNET writes them.
func ravenTable(_ events: [CedEvent], lowFrequency: Double, highFrequency: Double) -> String {
    var s = "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\tAnnotation\tClass Index\tConfidence\tMean Confidence\n"
    for (i, e) in events.enumerated() {
        s += "\(i + 1)\tSpectrogram 1\t1\t" + String(format: "%.3f\t%.3f\t", e.start, e.end)
            + String(format: "%.1f\t%.1f\t", lowFrequency, highFrequency)
            + e.label.replacingOccurrences(of: "\t", with: " ") + "\t\(e.index)\t\(jsonNumber(e.score))\t\(jsonNumber(e.meanScore))\n"
    }
    return s
}

/// `h:mm:ss.s` (or `m:ss.s` under an hour) for tables.
func clockTime(_ t: Double) -> String {
    let tenths = Int((max(0, t) * 10).rounded())
    let s = tenths / 10, d = tenths % 10
    return s >= 3600 ? String(format: "%d:%02d:%02d.%d", s / 3600, s / 60 % 60, s % 60, d)
                     : String(format: "%d:%02d.%d", s / 60, s % 60, d)
}

func padRight(_ s: String, _ w: Int) -> String { s.count >= w ? s : s + String(repeating: " ", count: w - s.count) }
func padLeft(_ s: String, _ w: Int) -> String { s.count >= w ? s : String(repeating: " ", count: w - s.count) + s }

// MARK: `ced tag --events` output

/// Writes the events of each file in one of the formats, one file at a time.
final class EventWriter {
    let format: OutputFormat
    let model: String
    let outputDir: String?
    let lowFrequency: Double, highFrequency: Double
    let output = Output()
    private var count = 0
    private let labelWidth: Int
    private let fileWidth: Int

    init(format: OutputFormat, model: String, config: CedConfig, featureExtractor: CedFeatureExtractor,
         files: [String], outputDir: String?) {
        self.format = format
        self.model = model
        self.outputDir = outputDir
        lowFrequency = featureExtractor.config.fMin
        highFrequency = featureExtractor.effectiveFMax
        labelWidth = min(40, max(5, (0..<config.outputdim).map { config.label(for: $0).count }.max() ?? 5))
        fileWidth = min(50, max(4, files.map(\.count).max() ?? 4))
    }

    func begin() {
        guard outputDir == nil else { return }
        switch format {
        case .json: output.write("[")
        case .csv: output.write("file,start,end,index,label,score,mean_score\n")
        case .table:
            output.write(padRight("FILE", fileWidth) + "  " + padLeft("START", 9) + "  " + padLeft("END", 9) + "  "
                         + padRight("LABEL", labelWidth) + "  " + padLeft("SCORE", 6) + "  " + padLeft("MEAN", 6) + "\n")
        case .jsonl, .audacity, .raven: break
        }
        output.flush()
    }

    /// The text of one file's events in the format.
    func text(name: String, detection d: CedEventDetection) -> String {
        switch format {
        case .json, .jsonl:
            return "{\"file\": \(name.jsonQuoted), \"duration_s\": \(jsonNumber(d.duration)), \"model\": \(model.jsonQuoted), \"events\": ["
                + d.events.map { jsonEvent($0) }.joined(separator: ", ") + "]}"
        case .csv:
            return d.events.map {
                "\(name.csvField),\(jsonTime($0.start)),\(jsonTime($0.end)),\($0.index),\($0.label.csvField),\(jsonNumber($0.score)),\(jsonNumber($0.meanScore))\n"
            }.joined()
        case .table:
            let shown = name.count <= fileWidth ? name : "…" + name.suffix(fileWidth - 1)
            if d.events.isEmpty { return padRight(shown, fileWidth) + "  (no events)\n" }
            return d.events.enumerated().map { i, e in
                let label = e.label.count <= labelWidth ? e.label : String(e.label.prefix(labelWidth - 1)) + "…"
                return padRight(i == 0 ? shown : "", fileWidth) + "  " + padLeft(clockTime(e.start), 9) + "  " + padLeft(clockTime(e.end), 9)
                    + "  " + padRight(label, labelWidth) + "  " + padLeft(String(format: "%.4f", e.score), 6)
                    + "  " + padLeft(String(format: "%.4f", e.meanScore), 6) + "\n"
            }.joined()
        case .audacity:
            return audacityLabels(d.events)
        case .raven:
            return ravenTable(d.events, lowFrequency: lowFrequency, highFrequency: highFrequency)
        }
    }

    /// Writes one file's events (to stdout, or to its own file in `outputDir`); returns the
    /// path written, if any.
    func write(name: String, detection d: CedEventDetection) throws -> String? {
        if let outputDir {
            let url = Self.outputURL(for: name, in: outputDir, format: format)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            var t = text(name: name, detection: d)
            if format == .json { t = "[\n" + t + "\n]\n" } else if format == .jsonl { t += "\n" }
            try Data(t.utf8).write(to: url, options: .atomic)
            return url.path
        }
        switch format {
        case .json: output.write((count == 0 ? "\n" : ",\n") + text(name: name, detection: d))
        case .jsonl: output.write(text(name: name, detection: d) + "\n")
        default: output.write(text(name: name, detection: d))
        }
        count += 1
        output.flush()
        return nil
    }

    func end() {
        if outputDir == nil && format == .json { output.write(count == 0 ? "]\n" : "\n]\n") }
        output.flush()
    }

    /// `DIR/<input path without extension>.<suffix>` (absolute and `..` components dropped,
    /// so outputs stay inside DIR).
    static func outputURL(for name: String, in dir: String, format: OutputFormat) -> URL {
        let suffix: String
        switch format {
        case .audacity: suffix = ".labels.txt"
        case .raven: suffix = ".selections.txt"
        case .json: suffix = ".events.json"
        case .jsonl: suffix = ".events.jsonl"
        case .csv: suffix = ".events.csv"
        case .table: suffix = ".events.txt"
        }
        let stem = name == "-" ? "stdin" : (name as NSString).deletingPathExtension
        let parts = stem.split(separator: "/").filter { $0 != ".." && $0 != "." }
        var url = URL(fileURLWithPath: dir)
        for p in parts { url.appendPathComponent(String(p)) }
        return url.deletingLastPathComponent().appendingPathComponent(url.lastPathComponent + suffix)
    }
}
