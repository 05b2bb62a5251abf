import Foundation

// Running another program (ffmpeg) is possible only where Foundation has `Process`: macOS
// and Linux (and Windows), not iOS, iPadOS, tvOS, watchOS or visionOS. Everything that needs
// a subprocess goes through `Subprocess`; on the other platforms the same calls compile
// and throw.

#if os(macOS) || os(Linux) || os(Windows) || os(FreeBSD) || os(OpenBSD) || os(Android)

/// A child process with standard input from /dev/null (or a pipe), standard error to a file
/// handle, a pipe or inherited, and standard output to a pipe or inherited.
final class Subprocess {
    static let isSupported = true

    /// Where the child's standard error goes.
    enum ErrorOutput {
        case inherit
        case handle(FileHandle)
        /// A pipe whose read end is `stderrHandle`.
        case pipe
    }

    private let process = Process()
    private let stdoutPipe: Pipe?
    /// The read end of standard error's pipe (with `.pipe`).
    let stderrHandle: FileHandle?
    /// The write end of standard input's pipe (with `pipeStdin`): close it when done writing.
    let stdinHandle: FileHandle?

    /// Starts `executable` with `arguments`. `pipeStdout`: standard output goes to a pipe read
    /// with `stdoutDescriptor`; else it is inherited. `pipeStdin`: standard input is a pipe
    /// written through `stdinHandle`; else /dev/null.
    init(executable: String, arguments: [String], pipeStdout: Bool, stderr: ErrorOutput, pipeStdin: Bool = false) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let stdinPipe = pipeStdin ? Pipe() : nil
        process.standardInput = stdinPipe ?? FileHandle.nullDevice
        stdoutPipe = pipeStdout ? Pipe() : nil
        if let stdoutPipe { process.standardOutput = stdoutPipe }
        var stderrPipe: Pipe?
        switch stderr {
        case .inherit: break
        case .handle(let h): process.standardError = h
        case .pipe: stderrPipe = Pipe(); process.standardError = stderrPipe
        }
        do {
            try process.run()
        } catch {
            for pipe in [stdinPipe, stdoutPipe, stderrPipe].compactMap({ $0 }) {
                try? pipe.fileHandleForReading.close()
                try? pipe.fileHandleForWriting.close()
            }
            throw error
        }
        // Our copies of the child's ends must go, or the read ends never see end of file
        // (and the child never sees the end of its input).
        try? stdoutPipe?.fileHandleForWriting.close()
        try? stderrPipe?.fileHandleForWriting.close()
        try? stdinPipe?.fileHandleForReading.close()
        stderrHandle = stderrPipe?.fileHandleForReading
        stdinHandle = stdinPipe?.fileHandleForWriting
    }

    /// The read end of the standard output pipe (-1 without one).
    var stdoutDescriptor: Int32 { stdoutPipe?.fileHandleForReading.fileDescriptor ?? -1 }

    func closeStdout() { try? stdoutPipe?.fileHandleForReading.close() }

    var isRunning: Bool { process.isRunning }

    func terminate() { process.terminate() }

    /// Waits for the process and returns its exit status.
    func wait() -> Int32 {
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// Writes `data` into the child's standard input on a thread of its own, then closes it.
    /// A child that exits before reading everything makes the write fail with EPIPE instead
    /// of killing this process with SIGPIPE (blocked on that thread on Linux; the descriptor's
    /// F_SETNOSIGPIPE on Darwin).
    static func write(_ data: Data, to handle: FileHandle) {
        let thread = Thread {
            let fd = handle.fileDescriptor
            #if canImport(Darwin)
            _ = fcntl(fd, F_SETNOSIGPIPE, 1)
            #else
            var set = sigset_t()
            sigemptyset(&set)
            sigaddset(&set, SIGPIPE)
            pthread_sigmask(SIG_BLOCK, &set, nil)
            #endif
            var broken = false
            data.withUnsafeBytes { (p: UnsafeRawBufferPointer) in
                var offset = 0
                while offset < p.count {
                    let n = systemWrite(fd, p.baseAddress! + offset, min(p.count - offset, 1 << 16))
                    if n > 0 { offset += n; continue }
                    if n < 0 && errno == EINTR { continue }
                    broken = errno == EPIPE
                    break
                }
            }
            #if !canImport(Darwin)
            if broken {
                // Take the pending SIGPIPE meant for this thread before it exits.
                var zero = timespec()
                _ = sigtimedwait(&set, nil, &zero)
            }
            #else
            _ = broken
            #endif
            try? handle.close()
        }
        thread.name = "ced.subprocess.stdin"
        thread.start()
    }
}

@inline(__always) private func systemWrite(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int { write(fd, p, n) }

#else

/// This platform cannot start other programs: creating a `Subprocess` throws.
final class Subprocess {
    static let isSupported = false

    enum ErrorOutput {
        case inherit
        case handle(FileHandle)
        case pipe
    }

    let stderrHandle: FileHandle? = nil
    let stdinHandle: FileHandle? = nil

    init(executable: String, arguments: [String], pipeStdout: Bool, stderr: ErrorOutput, pipeStdin: Bool = false) throws {
        throw AudioError(file: executable, kind: .ffmpegNotFound,
                         reason: "this platform cannot run other programs (no subprocesses on iOS, iPadOS, tvOS, watchOS or visionOS); read WAV or raw PCM, or decode with AVAudioFile and pass the samples")
    }

    var stdoutDescriptor: Int32 { -1 }
    func closeStdout() {}
    var isRunning: Bool { false }
    func terminate() {}
    func wait() -> Int32 { -1 }
    static func write(_ data: Data, to handle: FileHandle) {}
}

#endif
