import Foundation

extension CedFileError {
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
