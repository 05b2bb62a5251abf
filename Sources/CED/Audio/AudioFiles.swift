import Foundation

/// Which files are audio, and the audio files a list of paths names: what `ced tag`,
/// `ced embed` and `ced distill logits` take on the command line and a training folder holds.
public enum AudioFiles {
    /// The container the first bytes of a file say it is ("WAV", "FLAC", "MP3", "Ogg Opus",
    /// "MP4/M4A (AAC or ALAC)", …), or nil when they match no audio or video format known
    /// here. A server can refuse unrecognised bytes before handing them to ffmpeg.
    public static func format(ofFileStartingWith bytes: Data) -> String? {
        let head = [UInt8](bytes.prefix(512))
        if head.starts(with: Array("RIFF".utf8)) || head.starts(with: Array("RF64".utf8)) || head.starts(with: Array("BW64".utf8)) { return "WAV" }
        if WAVParser.isWAVMagic(head) { return "WAV" }
        return FFmpeg.sniff(head, path: "")
    }

    /// Extensions (lower case) of the audio and video files collected from a folder: WAV read
    /// natively, the others through ffmpeg.
    public static let extensions: Set<String> = [
        "wav", "wave", "bwf", "rf64", "w64", "flac", "mp3", "ogg", "oga", "opus", "m4a", "m4b", "aac", "mp4", "m4v",
        "mov", "mkv", "mka", "webm", "wma", "aif", "aiff", "aifc", "caf", "amr", "3gp", "ac3", "avi", "au", "snd",
    ]

    /// Whether a file name has one of the audio `extensions` (in any case).
    public static func isAudio(_ name: String) -> Bool {
        extensions.contains((name as NSString).pathExtension.lowercased())
    }

    /// Expands paths: a file is kept as given (whatever its extension), a folder becomes its
    /// audio files, recursively, sorted, hidden ones skipped, each named as the folder path
    /// given joined with its path inside. A path that does not exist, or a folder that cannot
    /// be listed, is a failure (path, reason) and the others go on.
    public static func expand(_ paths: [String]) -> (files: [String], failures: [(path: String, reason: String)]) {
        var files: [String] = []
        var failures: [(path: String, reason: String)] = []
        let fm = FileManager.default
        for p in paths {
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: p, isDirectory: &isDir) else {
                failures.append((p, "no such file or directory"))
                continue
            }
            if !isDir.boolValue {
                files.append(p)
                continue
            }
            let base = URL(fileURLWithPath: p)
            guard let e = fm.enumerator(at: base, includingPropertiesForKeys: [.isRegularFileKey], options: [.skipsHiddenFiles]) else {
                failures.append((p, "cannot list the directory"))
                continue
            }
            var found: [String] = []
            for case let url as URL in e where isAudio(url.lastPathComponent) {
                if (try? url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true {
                    let rel = url.path.hasPrefix(base.path + "/") ? String(url.path.dropFirst(base.path.count + 1)) : url.lastPathComponent
                    found.append((p.hasSuffix("/") ? p : p + "/") + rel)
                }
            }
            files += found.sorted()
        }
        return (files, failures)
    }

    /// Whether a path names a list file (`.txt`, `.lst`, `.list`) rather than audio.
    public static func isList(_ path: String) -> Bool { ["txt", "lst", "list"].contains((path as NSString).pathExtension.lowercased()) }

    /// The paths a list file names, one per line, relative to the list's folder (or
    /// absolute); blank lines and `#` comments skipped.
    /// - Throws: `CedFileError` when the list cannot be read.
    public static func listed(in list: String) throws -> [String] {
        let text = try CedFileError.text(of: URL(fileURLWithPath: list), what: "list file")
        let base = (list as NSString).deletingLastPathComponent
        return text.split(whereSeparator: \.isNewline).compactMap { line in
            let l = line.trimmingCharacters(in: .whitespaces)
            if l.isEmpty || l.hasPrefix("#") { return nil }
            return l.hasPrefix("/") || base.isEmpty ? l : (base as NSString).appendingPathComponent(l)
        }
    }

    /// The audio files of files, folders (see `expand`) and list files (`.txt`, `.lst`,
    /// `.list`: one path per line, relative to the list's folder; blank lines and `#`
    /// comments skipped), as absolute standardised URLs.
    /// - Throws: `CedFileError` for an unreadable list, a path that does not exist (given or
    ///   listed) or a folder that cannot be listed.
    public static func collect(_ paths: [String]) throws -> [URL] {
        var out: [URL] = []
        for p in paths {
            if isList(p) {
                out += try listed(in: p).map { URL(fileURLWithPath: $0) }
                continue
            }
            let (files, failures) = expand([p])
            if let f = failures.first { throw CedFileError(.notFound, file: f.path, reason: f.reason) }
            out += files.map { URL(fileURLWithPath: $0) }
        }
        for u in out where !FileManager.default.fileExists(atPath: u.path) {
            throw CedFileError(.notFound, file: u.path, reason: "no such file")
        }
        return out.map { $0.standardizedFileURL }
    }
}
