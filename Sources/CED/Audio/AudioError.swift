import Foundation

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

/// Something a decoder noticed but could work around, e.g. a truncated recording whose
/// header promises more data than the file holds. Returned by the decoders (never printed
/// by the library); a command-line tool prints them to stderr.
public struct AudioWarning: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable, Equatable {
        /// The data chunk declares more bytes than the file holds; what is there was decoded.
        case truncated
        /// The audio data ends in a partial frame, which was ignored.
        case partialFrame
        /// ffmpeg decoded the file but reported errors (damaged frames, ...).
        case decoderMessages
    }

    public var file: String
    public var kind: Kind
    public var message: String

    public init(file: String, kind: Kind, message: String) {
        self.file = file
        self.kind = kind
        self.message = message
    }

    public var description: String { "warning: \(file): \(message)" }
}
