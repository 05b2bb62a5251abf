import Foundation

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

    /// The UTF-8 text of a file.
    static func text(of url: URL, what: String) throws -> String {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            let missing = !FileManager.default.fileExists(atPath: url.path)
            throw CedFileError(missing ? .notFound : .unreadable, file: url.path,
                               reason: "cannot read the \(what) (\(error.localizedDescription))")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw CedFileError(.unreadable, file: url.path, reason: "the \(what) is not UTF-8 text")
        }
        return text
    }

    /// Writes `data` to `url` atomically.
    static func write(_ data: Data, to url: URL) throws {
        do { try data.write(to: url, options: .atomic) } catch {
            throw CedFileError(.unwritable, file: url.path, reason: "cannot write the file (\(error.localizedDescription))")
        }
    }
}
