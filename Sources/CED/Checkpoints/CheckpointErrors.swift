import Foundation

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
