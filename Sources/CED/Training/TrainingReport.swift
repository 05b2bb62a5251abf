import Foundation

/// One epoch of head training.
public struct EpochReport: Sendable, Codable, Equatable {
    /// 1-based.
    public var epoch: Int
    /// Mean loss over the epoch's mini-batches (weighted by batch size).
    public var trainLoss: Double
    /// Loss on the validation split after the epoch (nil without validation).
    public var validationLoss: Double?
    /// Single-label: the fraction of validation examples whose top class is right.
    public var validationAccuracy: Double?
    /// Multi-label: the mean over classes of the average precision on the validation split.
    public var validationMAP: Double?
    /// True when this epoch has the lowest validation loss so far (its head is kept).
    public var isBest: Bool
}

/// Final figures for one class, on the evaluation set (the validation split, or the
/// training set when there is none).
public struct ClassReport: Sendable, Codable, Equatable {
    public var label: String
    /// Training examples carrying the class.
    public var trainCount: Int
    /// Evaluation examples carrying the class (the support).
    public var evaluationCount: Int
    /// Of the examples predicted as this class, the fraction that carry it (nil when none
    /// is predicted). Single-label: predicted = top class; multi-label: score above 0.5
    /// (logit above 0 for `logit` pooling).
    public var precision: Double?
    /// Of the examples carrying the class, the fraction predicted as it (nil without support).
    public var recall: Double?
    /// Harmonic mean of precision and recall (0 when either is 0, nil when either is nil).
    public var f1: Double?
    /// Multi-label: average precision of the class's scores (nil without support).
    public var averagePrecision: Double?
}

/// What head training did and how well the result does.
public struct TrainingReport: Sendable, Codable {
    public var classes: [String]
    public var multiLabel: Bool
    public var lossFunction: CedLoss
    public var options: HeadTrainingOptions
    public var trainingExamples: Int
    public var validationExamples: Int
    public var epochs: [EpochReport]
    /// The epoch whose head was kept (lowest validation loss; the last without validation).
    public var bestEpoch: Int
    /// True when training stopped before `options.epochs` because the validation loss had
    /// not improved for `options.patience` epochs.
    public var stoppedEarly: Bool
    /// `validation` or `training`: the examples the figures below are computed on.
    public var evaluatedOn: String
    /// Single-label: fraction of evaluation examples whose top class is right.
    public var accuracy: Double?
    /// Multi-label: mean average precision over classes with support.
    public var meanAveragePrecision: Double?
    /// Mean F1 over classes with a defined F1.
    public var macroF1: Double?
    public var perClass: [ClassReport]

    /// A human-readable per-class table and summary.
    public func formatted() -> String {
        func pct(_ v: Double?) -> String { v.map { String(format: "%5.1f%%", 100 * $0) } ?? "     -" }
        let width = max(5, min(40, classes.map(\.count).max() ?? 5))
        func pad(_ s: String) -> String {
            let t = s.count > width ? String(s.prefix(width - 1)) + "…" : s
            return t + String(repeating: " ", count: width - t.count)
        }
        var lines: [String] = []
        lines.append("per-class results on the \(evaluatedOn) set (\(evaluatedOn == "validation" ? validationExamples : trainingExamples) examples):")
        var header = pad("class") + "  train  eval  precision  recall     F1"
        if multiLabel { header += "      AP" }
        lines.append(header)
        for c in perClass {
            var l = pad(c.label) + String(format: "  %5d %5d", c.trainCount, c.evaluationCount)
            l += "     " + pct(c.precision) + "  " + pct(c.recall) + " " + pct(c.f1)
            if multiLabel { l += "  " + pct(c.averagePrecision) }
            lines.append(l)
        }
        var summary: [String] = []
        if let accuracy { summary.append("accuracy \(pct(accuracy).trimmingCharacters(in: .whitespaces))") }
        if let meanAveragePrecision { summary.append("mAP \(pct(meanAveragePrecision).trimmingCharacters(in: .whitespaces))") }
        if let macroF1 { summary.append("macro F1 \(pct(macroF1).trimmingCharacters(in: .whitespaces))") }
        summary.append("best epoch \(bestEpoch) of \(epochs.count)" + (stoppedEarly ? " (stopped early)" : ""))
        lines.append(summary.joined(separator: ", "))
        return lines.joined(separator: "\n")
    }
}

/// Evaluation measures shared by the per-epoch log and the final report.
enum TrainingMetrics {
    /// Average precision of `scores` for binary `positives` (scikit-learn's
    /// `average_precision_score`: Σ (Rₙ − Rₙ₋₁)·Pₙ over distinct score thresholds, ties
    /// counted together). nil when there is no positive.
    static func averagePrecision(scores: [Double], positives: [Bool]) -> Double? {
        let total = positives.filter { $0 }.count
        guard total > 0 else { return nil }
        let order = scores.indices.sorted { scores[$0] > scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }
        var tp = 0, seen = 0
        var ap = 0.0, lastRecall = 0.0
        var i = 0
        while i < order.count {
            let s = scores[order[i]]
            while i < order.count && scores[order[i]] == s {
                if positives[order[i]] { tp += 1 }
                seen += 1
                i += 1
            }
            let recall = Double(tp) / Double(total)
            let precision = Double(tp) / Double(seen)
            ap += (recall - lastRecall) * precision
            lastRecall = recall
        }
        return ap
    }

    /// Mean AP over classes with at least one positive; `scores` and `labels` per example.
    static func meanAveragePrecision(scores: [[Double]], labels: [[Int]], classes: Int) -> Double? {
        var aps: [Double] = []
        for c in 0..<classes {
            if let ap = averagePrecision(scores: scores.map { $0[c] }, positives: labels.map { $0.contains(c) }) { aps.append(ap) }
        }
        return aps.isEmpty ? nil : aps.reduce(0, +) / Double(aps.count)
    }

    /// Index of the largest value (the first on ties).
    static func argmax<T: Comparable>(_ v: [T]) -> Int {
        var best = 0
        for i in v.indices where v[i] > v[best] { best = i }
        return best
    }
}
