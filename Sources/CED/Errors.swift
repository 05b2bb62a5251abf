import Foundation

// One error type per domain. Every message says what was wrong and where
// (file, field, tensor name, byte offset) so a user can act on it.

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
