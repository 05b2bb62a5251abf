import Foundation

/// Training (of a head or the whole network) that cannot go on: a dataset that cannot be read or is too small to train
/// and validate on, audio that cannot be decoded, bad options, or an output folder that
/// cannot be written. `description` says what was wrong and where (file, CSV line).
public struct TrainingError: Error, Equatable, CustomStringConvertible, LocalizedError {
    public enum Kind: Equatable, Sendable {
        /// The data folder or CSV holds no usable examples.
        case emptyDataset
        /// A data path or a file a CSV row names does not exist.
        case notFound
        /// A CSV row is malformed (wrong field count, empty file name, no label).
        case malformedCSV
        /// Fewer than two classes (single-label), or a class too small to train and validate.
        case notEnoughExamples
        /// An example with several labels given to single-label training.
        case tooManyLabels
        /// Audio files that cannot be decoded (all of them are listed).
        case unreadableAudio
        /// The model cannot be used for head training (e.g. `dm` pooling).
        case unsupportedModel
        /// An option is out of range.
        case invalidOption
        /// The output folder exists, or cannot be written.
        case output
        /// The embedding cache cannot be written.
        case cache
        /// The loss became NaN or infinite.
        case nonFiniteLoss
        /// A saved training state does not belong to this run, or cannot be read.
        case checkpoint
    }

    public var kind: Kind
    /// The file or folder concerned, when there is one.
    public var file: String?
    /// The 1-based CSV line, when the problem is in a CSV row.
    public var line: Int?
    public var reason: String

    public init(_ kind: Kind, file: String? = nil, line: Int? = nil, reason: String) {
        self.kind = kind
        self.file = file
        self.line = line
        self.reason = reason
    }

    public var description: String {
        var s = "training"
        if let file { s += ": \(file)" + (line.map { ", line \($0)" } ?? "") }
        return s + ": \(reason)"
    }
    public var errorDescription: String? { description }

    /// A loss that became NaN or infinite (`reason` says where, when the caller knows).
    static func nonFiniteLoss(_ value: Double, at place: String? = nil, advice: String? = nil) -> TrainingError {
        var reason = "the loss is \(value)"
        if let place { reason += " \(place)" }
        reason += advice.map { "; \($0)" } ?? " (the model's outputs or the targets overflow)"
        return TrainingError(.nonFiniteLoss, reason: reason)
    }
}
