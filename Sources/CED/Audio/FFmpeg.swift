import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Locating and running ffmpeg, which decodes every format that is not plain WAV.
enum FFmpeg {
    static let installHint = "install ffmpeg (Debian/Ubuntu: `apt-get install ffmpeg`, Fedora: `dnf install ffmpeg`, macOS: `brew install ffmpeg`) and make sure `ffmpeg` is on PATH, or convert the file to WAV"

    /// The first executable `ffmpeg` on PATH.
    static func findOnPath() -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for dir in path.split(separator: ":") where !dir.isEmpty {
            let candidate = String(dir) + "/ffmpeg"
            var st = stat()
            if stat(candidate, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, access(candidate, X_OK) == 0 {
                return candidate
            }
        }
        return nil
    }

    static func resolve(_ choice: AudioDecodingOptions.FFmpegLocation) -> String? {
        switch choice {
        case .disabled: return nil
        case .searchPath: return findOnPath()
        case .executable(let p): return access(p, X_OK) == 0 ? p : nil
        }
    }

    /// A format name for the first bytes of a file (for messages), or nil when unrecognised.
    static func sniff(_ b: [UInt8], path: String) -> String? {
        func at(_ o: Int, _ s: String) -> Bool {
            let u = Array(s.utf8)
            return b.count >= o + u.count && Array(b[o..<(o + u.count)]) == u
        }
        if at(0, "fLaC") { return "FLAC" }
        if at(0, "OggS") {
            if at(28, "OpusHead") { return "Ogg Opus" }
            if at(29, "vorbis") { return "Ogg Vorbis" }
            if at(28, "\u{7F}FLAC") { return "Ogg FLAC" }
            return "Ogg"
        }
        if at(0, "ID3") { return "MP3" }
        if at(4, "ftyp") { return "MP4/M4A (AAC or ALAC)" }
        if b.count >= 4 && b[0] == 0x1A && b[1] == 0x45 && b[2] == 0xDF && b[3] == 0xA3 { return "Matroska/WebM" }
        if at(0, "FORM") && (at(8, "AIFF") || at(8, "AIFC")) { return "AIFF" }
        if at(0, "RIFX") { return "big-endian WAV (RIFX)" }
        if at(0, "RIFF") && at(8, "AVI ") { return "AVI" }
        if at(0, "RIFF") && b.count >= 12 { return "RIFF '" + String(decoding: b[8..<12], as: UTF8.self) + "' (not WAVE)" }
        if at(0, "caff") { return "Core Audio (CAF)" }
        if at(0, "#!AMR") { return "AMR" }
        if at(0, "wvpk") { return "WavPack" }
        if at(0, "MAC ") { return "Monkey's Audio" }
        if at(0, ".snd") { return "Sun/NeXT AU" }
        if b.count >= 4 && b[0] == 0x30 && b[1] == 0x26 && b[2] == 0xB2 && b[3] == 0x75 { return "ASF/WMA" }
        if at(0, "FLV") { return "FLV" }
        if b.count >= 189 && b[0] == 0x47 && b[188] == 0x47 { return "MPEG-TS" }
        if b.count >= 4 && b[0] == 0 && b[1] == 0 && b[2] == 1 && b[3] == 0xBA { return "MPEG-PS" }
        if b.count >= 2 && b[0] == 0x0B && b[1] == 0x77 { return "AC-3" }
        if at(0, "Creative Voice File") { return "VOC" }
        if b.count >= 2 && b[0] == 0xFF && (b[1] & 0xF6) == 0xF0 { return "AAC (ADTS)" }
        if b.count >= 2 && b[0] == 0xFF && (b[1] & 0xE0) == 0xE0 { return "MP3" }
        return nil
    }

    /// A running `ffmpeg` that writes the file's first audio stream to a pipe as a WAV with
    /// 32-bit float samples at the stream's own rate and channel count (no resampling or
    /// mixing in ffmpeg: those happen here, exactly as the reference does them). Its messages
    /// are read from a pipe (the last few kB are kept), so nothing is written to disk.
    final class Decode {
        let process: Subprocess
        let file: String
        let executable: String
        private let messages: MessageTail
        private var ended = false
        private var status: Int32 = 0

        convenience init(executable: String, file: String) throws {
            let absolute = URL(fileURLWithPath: file).standardizedFileURL.path
            try self.init(executable: executable, name: file,
                          input: ["-i", "file:" + absolute, "-map", "0:a:0", "-vn", "-sn", "-dn"], output: [])
        }

        /// ffmpeg decoding `data` from its standard input (a pipe): fixed arguments, no file.
        convenience init(executable: String, name: String, data: Data) throws {
            try self.init(executable: executable, name: name, input: ["-i", "pipe:0", "-map", "0:a:0", "-vn", "-sn", "-dn"],
                          output: [], standardInput: data)
        }

        /// ffmpeg with these input arguments (and extra output options), writing float32 WAV
        /// to its stdout, reading `standardInput` (when given) from a pipe. `name` is what
        /// messages call the input.
        init(executable: String, name file: String, input: [String], output: [String], standardInput: Data? = nil) throws {
            self.executable = executable
            self.file = file
            let arguments = ["-nostdin", "-hide_banner", "-loglevel", "error"].filter { standardInput == nil || $0 != "-nostdin" }
                + input + output + ["-c:a", "pcm_f32le", "-f", "wav", "-"]
            guard CedPlatform.hasSubprocesses else {
                throw AudioError(file: file, kind: .ffmpegNotFound,
                                 reason: "decoding this needs ffmpeg, and this platform cannot run other programs; read WAV or raw PCM, or decode with AVAudioFile and pass the samples")
            }
            do {
                process = try Subprocess(executable: executable, arguments: arguments, pipeStdout: true, stderr: .pipe,
                                         pipeStdin: standardInput != nil)
            } catch {
                throw AudioError(file: file, kind: .ffmpegFailed, reason: "cannot start \(executable): \(error)")
            }
            // ffmpeg's messages are read from a pipe on a thread of their own (a chatty ffmpeg
            // never blocks on a full pipe; nothing is written to disk).
            messages = MessageTail(process.stderrHandle!)
            if let standardInput, let stdin = process.stdinHandle {
                Subprocess.write(standardInput, to: stdin)
            }
        }

        var readDescriptor: Int32 { process.stdoutDescriptor }

        /// Waits for ffmpeg; returns its exit status and the last lines it printed.
        func wait() -> (status: Int32, messages: String) {
            if !ended {
                status = process.wait()
                ended = true
            }
            return (status, messages.text())
        }

        /// Stops ffmpeg early (the consumer gave up) and cleans up.
        func cancel() {
            guard !ended else { return }
            if process.isRunning { process.terminate() }
            process.closeStdout()
            _ = wait()
        }
    }

    /// Reads a pipe to its end on a thread of its own, keeping the last 4000 bytes (a damaged
    /// file can make ffmpeg print thousands of lines).
    final class MessageTail: @unchecked Sendable {
        private let lock = NSLock()
        private let done = DispatchSemaphore(value: 0)
        private var tail: [UInt8] = []
        private var finished = false

        init(_ handle: FileHandle) {
            let thread = Thread { [self] in
                var chunk = [UInt8](repeating: 0, count: 4096)
                let fd = handle.fileDescriptor
                while true {
                    let n = chunk.withUnsafeMutableBytes { systemRead(fd, $0.baseAddress!, $0.count) }
                    if n < 0 && errno == EINTR { continue }
                    if n <= 0 { break }
                    lock.lock()
                    tail += chunk[0..<n]
                    if tail.count > 8000 { tail.removeFirst(tail.count - 4000) }
                    lock.unlock()
                }
                try? handle.close()
                done.signal()
            }
            thread.name = "ced.ffmpeg.stderr"
            thread.start()
        }

        /// Everything ffmpeg printed (its last 4000 bytes), once it has closed its end.
        func text() -> String {
            lock.lock()
            let wait = !finished
            finished = true
            lock.unlock()
            if wait { done.wait() }
            lock.lock(); defer { lock.unlock() }
            return String(decoding: tail.suffix(4000), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
    }
}

@inline(__always) private func systemRead(_ fd: Int32, _ p: UnsafeMutableRawPointer, _ n: Int) -> Int { read(fd, p, n) }
