import Foundation

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
