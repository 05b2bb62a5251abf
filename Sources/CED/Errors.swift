import Foundation

// Every public error type of the library, one per domain, in this one file. Every message
// says what was wrong and where (file, field, line, tensor name, byte offset, step) so a
// user can act on it. (Decoders' internal failures, e.g. a corrupt deflate stream, are
// caught where they happen and rethrown as one of these.)

// MARK: Configuration, weights and model input

/// A `config.json` or `preprocessor_config.json` that cannot describe a valid CED model.
public struct ConfigError: Error, Equatable, CustomStringConvertible, LocalizedError {
    /// The JSON field at fault (Hugging Face name), or nil when the document itself is bad.
    public var field: String?
    public var reason: String
    /// The file it came from, when known.
    public var file: String?

    public init(field: String?, reason: String, file: String? = nil) {
        self.field = field
        self.reason = reason
        self.file = file
    }

    public var description: String {
        var s = "invalid CED configuration"
        if let file { s += " in \(file)" }
        if let field { s += ": field '\(field)'" }
        return s + ": \(reason)"
    }
    public var errorDescription: String? { description }
}

/// A safetensors file that is malformed, truncated, hostile or uses an unsupported dtype.
public struct SafeTensorsError: Error, Equatable, CustomStringConvertible, LocalizedError {
    public var file: String
    /// The tensor concerned, when the problem is specific to one.
    public var tensor: String?
    /// A byte offset in the file, when the problem is located there.
    public var offset: Int?
    public var reason: String
    /// The problem arose while writing the file (else while reading it).
    public var writing: Bool

    public init(file: String, tensor: String? = nil, offset: Int? = nil, reason: String, writing: Bool = false) {
        self.file = file
        self.tensor = tensor
        self.offset = offset
        self.reason = reason
        self.writing = writing
    }

    public var description: String {
        var s = "cannot \(writing ? "write" : "read") safetensors file \(file)"
        if let tensor { s += ", tensor '\(tensor)'" }
        if let offset { s += " at byte \(offset)" }
        return s + ": \(reason)"
    }
    public var errorDescription: String? { description }
}

/// Checkpoint weights that do not fit the architecture the configuration describes.
public struct WeightLoadingError: Error, Equatable, CustomStringConvertible, LocalizedError {
    public struct Mismatch: Equatable, Sendable {
        public var name: String
        public var expected: [Int]
        public var found: [Int]
    }
    public var source: String
    public var missing: [String]
    public var unexpected: [String]
    public var mismatched: [Mismatch]
    /// Tensors whose values are not finite (NaN or infinity).
    public var nonFinite: [String]

    public init(source: String, missing: [String] = [], unexpected: [String] = [],
                mismatched: [Mismatch] = [], nonFinite: [String] = []) {
        self.source = source
        self.missing = missing.sorted()
        self.unexpected = unexpected.sorted()
        self.mismatched = mismatched.sorted { $0.name < $1.name }
        self.nonFinite = nonFinite.sorted()
    }

    public var isEmpty: Bool { missing.isEmpty && unexpected.isEmpty && mismatched.isEmpty && nonFinite.isEmpty }

    public var description: String {
        var lines = ["weights in \(source) do not match the model configuration:"]
        if !missing.isEmpty { lines.append("  missing tensors: " + missing.joined(separator: ", ")) }
        if !unexpected.isEmpty { lines.append("  unexpected tensors: " + unexpected.joined(separator: ", ")) }
        for m in mismatched {
            lines.append("  tensor '\(m.name)' has shape \(m.found), expected \(m.expected)")
        }
        if !nonFinite.isEmpty { lines.append("  tensors with NaN or infinite values: " + nonFinite.joined(separator: ", ")) }
        return lines.joined(separator: "\n")
    }
    public var errorDescription: String? { description }
}

/// Input that the model cannot run on (empty audio, wrong mel count, non-finite samples).
public struct CedInputError: Error, Equatable, CustomStringConvertible, LocalizedError {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { "invalid model input: \(reason)" }
    public var errorDescription: String? { description }
}

// MARK: Text files (CSV, lists)

/// A data file given to or written by the library that is neither audio nor a checkpoint: a
/// CSV (class thresholds, a list of audio files), a result or array file. Says which file,
/// which line when it is a line's fault, and what is wrong.
public struct CedFileError: Error, Equatable, CustomStringConvertible, LocalizedError {
    public enum Kind: Sendable, Equatable {
        /// The file (or a file it lists) does not exist.
        case notFound
        /// The file exists but cannot be read, or is not UTF-8 text.
        case unreadable
        /// The file's content is not what it should be; `line` says where.
        case malformed
        /// The file cannot be written.
        case unwritable
    }

    public var kind: Kind
    public var file: String
    /// 1-based line of a text file, when the problem is on one line.
    public var line: Int?
    public var reason: String

    public init(_ kind: Kind, file: String, line: Int? = nil, reason: String) {
        self.kind = kind
        self.file = file
        self.line = line
        self.reason = reason
    }

    /// `FILE line N: reason` (or `FILE: reason`).
    public var description: String { file + (line.map { " line \($0)" } ?? "") + ": " + reason }
    public var errorDescription: String? { description }
}

// MARK: Checkpoints and the hub

/// A checkpoint (file, folder or archive entry) that cannot be loaded: unknown or legacy
/// format, a corrupt or truncated archive, a pickle that names a forbidden global, tensors
/// that point outside their storage, weights that do not fit the configuration, a front
/// end that differs from the feature extractor's.
///
/// `kind` lets callers and tests tell the cases apart; `description` says what was wrong
/// and where (file, archive entry, tensor name, byte offset).
public struct CheckpointError: Error, Equatable, CustomStringConvertible, LocalizedError {
    public enum Kind: Equatable, Sendable {
        /// The path or a required file in a folder does not exist.
        case notFound
        /// Neither safetensors nor a PyTorch zip archive nor anything else we know.
        case unrecognizedFormat
        /// A pre-1.6 PyTorch (non-zip) checkpoint.
        case legacyTorchFormat
        /// The zip container is malformed, truncated or fails its CRC check.
        case corruptArchive
        /// The pickle names a global outside the allowlist (the name is given).
        case forbiddenGlobal(String)
        /// The pickle stream is malformed or uses an opcode we do not accept.
        case malformedPickle
        /// A tensor refers to a storage record the archive does not contain.
        case missingStorage(String)
        /// A tensor's size, strides and offset reach outside its storage.
        case tensorOutOfBounds
        /// A storage type or feature we do not support (complex, quantized, …).
        case unsupported
        /// The unpickled object holds no recognisable state dict.
        case noStateDict
        /// The architecture cannot be inferred from the tensor shapes.
        case architecture
        /// The labels CSV is malformed or does not fit the model.
        case labels
        /// The stored window or mel filterbank differs from the computed one.
        case frontEndMismatch
        /// The model source string is neither an existing path nor a hub id.
        case invalidSpec
    }

    public var kind: Kind
    /// The file concerned (path), or the model source string.
    public var file: String
    /// The zip entry concerned, when the problem is inside an archive.
    public var entry: String?
    /// The tensor concerned (checkpoint name).
    public var tensor: String?
    /// A byte offset in `entry` (or in the file when `entry` is nil).
    public var offset: Int?
    public var reason: String

    public init(_ kind: Kind, file: String, entry: String? = nil, tensor: String? = nil,
                offset: Int? = nil, reason: String) {
        self.kind = kind
        self.file = file
        self.entry = entry
        self.tensor = tensor
        self.offset = offset
        self.reason = reason
    }

    public var description: String {
        var s = "cannot load checkpoint \(file)"
        if let entry { s += ", entry '\(entry)'" }
        if let tensor { s += ", tensor '\(tensor)'" }
        if let offset { s += " at byte \(offset)" }
        return s + ": \(reason)"
    }
    public var errorDescription: String? { description }
}

/// A Hugging Face hub download that failed: no network and nothing cached, an unknown
/// repository, revision or file, a refused token, a checksum mismatch, an unexpected
/// server answer, or a cache that cannot be written.
public struct HubError: Error, Equatable, CustomStringConvertible, LocalizedError {
    public enum Kind: Equatable, Sendable {
        /// `HF_HUB_OFFLINE` is set (or offline was asked) and the file is not cached.
        case offlineNotCached
        /// The endpoint cannot be reached and the file is not cached.
        case networkUnavailable
        /// The repository does not exist, or is private and no valid token was sent.
        case repositoryNotFound
        /// The branch, tag or commit does not exist in the repository.
        case revisionNotFound
        /// The repository has no such file at that revision.
        case entryNotFound
        /// The repository is gated or the token is not allowed to read it.
        case accessDenied
        /// Any other HTTP status.
        case http(Int)
        /// The response lacks the hub's headers or is otherwise not what a hub sends.
        case badResponse
        /// The downloaded bytes do not hash to the sha256 the hub announced.
        case checksumMismatch
        /// The download ended with a different byte count than announced.
        case sizeMismatch
        /// The cache directory cannot be created or written.
        case cache
        /// The repository id is not of the form `owner/name`.
        case invalidRepoId
    }

    public var kind: Kind
    public var repo: String
    public var file: String?
    public var revision: String?
    public var reason: String
    /// The commit the hub reported with the error, when it did (an "entry not found"
    /// answer names the commit it looked in).
    public var commit: String?

    public init(_ kind: Kind, repo: String, file: String? = nil, revision: String? = nil, reason: String) {
        self.kind = kind
        self.repo = repo
        self.file = file
        self.revision = revision
        self.reason = reason
    }

    public var description: String {
        var s = "hub: \(repo)"
        if let revision { s += "@\(revision)" }
        if let file { s += " \(file)" }
        return s + ": \(reason)"
    }
    public var errorDescription: String? { description }
}

// MARK: Audio

/// An audio file that cannot be decoded: missing, unreadable, malformed, in a format that
/// needs ffmpeg when ffmpeg is absent, or holding samples the model cannot use.
///
/// Every error names the file and the reason, and a byte offset when the problem is
/// located at one, so a batch can report it and go on with the other files.
public struct AudioError: Error, Equatable, CustomStringConvertible, LocalizedError {
    /// What kind of problem it is, for callers that branch on it.
    public enum Kind: String, Sendable, Equatable {
        /// No file at that path.
        case fileNotFound
        /// The path is a directory, a FIFO, a device or a socket.
        case notARegularFile
        /// The file exists but cannot be opened or read (permissions, I/O error).
        case unreadable
        /// The file has zero bytes.
        case empty
        /// The container is damaged: bad magic, missing or short chunks, impossible sizes,
        /// zero channels or sample rate.
        case malformed
        /// A well-formed file with parameters outside what is supported (sample rate range,
        /// sample width, encoding that even ffmpeg could not turn into samples).
        case unsupported
        /// The format is not decoded natively and ffmpeg was not found (or was disabled).
        case ffmpegNotFound
        /// ffmpeg ran but could not decode the file.
        case ffmpegFailed
        /// A float file holds NaN or infinite samples (or resampling overflowed).
        case nonFiniteSamples
        /// The file decodes to zero samples.
        case noAudio
    }

    /// The path as given by the caller.
    public var file: String
    public var kind: Kind
    public var reason: String
    /// A byte offset in the file, when the problem is located there.
    public var offset: Int64?

    public init(file: String, kind: Kind, reason: String, offset: Int64? = nil) {
        self.file = file
        self.kind = kind
        self.reason = reason
        self.offset = offset
    }

    public var description: String {
        var s = "cannot read audio file \(file)"
        if let offset { s += " at byte \(offset)" }
        return s + ": \(reason)"
    }
    public var errorDescription: String? { description }
}

// MARK: Streaming and events

/// Something wrong with a streaming tagger or an event detector: an option out of range, or
/// a call that does not fit the stream's state.
public struct StreamingError: Error, Equatable, CustomStringConvertible, LocalizedError {
    public enum Kind: String, Sendable, Equatable {
        /// A window, hop, threshold or other setting is out of range; `reason` names it.
        case invalidOption
        /// Samples were appended after `finish()` or `cancel()`.
        case inputEnded
        /// The stream was cancelled.
        case cancelled
    }

    public var kind: Kind
    public var reason: String

    public init(_ kind: Kind, _ reason: String) {
        self.kind = kind
        self.reason = reason
    }

    public var description: String { reason }
    public var errorDescription: String? { reason }
}

// MARK: Training

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

// MARK: Distillation

/// Distillation that cannot go on: a logit store that is incomplete, of another run, or
/// damaged; teachers that disagree; bad input. `description` says what and where.
public struct DistillationError: Error, Equatable, CustomStringConvertible, LocalizedError {
    public enum Kind: Equatable, Sendable {
        /// The store is unreadable, malformed or belongs to other settings.
        case store
        /// The store lacks shards (they are named).
        case incomplete
        /// Teachers with different class lists or front ends, or unusable as teachers.
        case teachers
        /// Input files, options or the data root.
        case input
    }
    public var kind: Kind
    public var file: String?
    public var reason: String

    public init(_ kind: Kind, file: String? = nil, reason: String) {
        self.kind = kind
        self.file = file
        self.reason = reason
    }

    public var description: String { "distillation: " + (file.map { "\($0): " } ?? "") + reason }
    public var errorDescription: String? { description }
}

// MARK: Bulk jobs

/// A job split over processes or resumed from its output that cannot start: a shard
/// specification that is malformed or that the scheduler's environment does not give, or an
/// output log that exists without `resume`, is held by another process or cannot be written.
public struct BulkJobError: Error, Equatable, CustomStringConvertible, LocalizedError {
    public enum Kind: Equatable, Sendable {
        /// `--shard`: not `i/n` with 0 ≤ i < n, or `auto` without a Slurm array or Indexed Job.
        case shard
        /// The output file: exists without resume, is locked by another writer, is unwritable.
        case output
    }
    public var kind: Kind
    public var file: String?
    public var reason: String

    public init(_ kind: Kind, file: String? = nil, reason: String) {
        self.kind = kind
        self.file = file
        self.reason = reason
    }

    public var description: String { (file.map { "\($0): " } ?? "") + reason }
    public var errorDescription: String? { description }
}
