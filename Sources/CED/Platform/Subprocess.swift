import Foundation

// Running another program (ffmpeg) is possible only where Foundation has `Process`: macOS
// and Linux (and Windows), not iOS, iPadOS, tvOS, watchOS or visionOS. Everything that needs
// a subprocess goes through `Subprocess`; on the other platforms the same calls compile
// and throw.

#if os(macOS) || os(Linux) || os(Windows) || os(FreeBSD) || os(OpenBSD) || os(Android)

/// A child process with standard input from /dev/null, standard error to a file handle (or
/// inherited) and standard output to a pipe (or inherited).
final class Subprocess {
    static let isSupported = true

    private let process = Process()
    private let stdoutPipe: Pipe?

    /// Starts `executable` with `arguments`. `pipeStdout`: standard output goes to a pipe read
    /// with `stdoutDescriptor`; else it is inherited, as is standard error when `stderr` is nil.
    init(executable: String, arguments: [String], pipeStdout: Bool, stderr: FileHandle?) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardInput = FileHandle.nullDevice
        stdoutPipe = pipeStdout ? Pipe() : nil
        if let stdoutPipe { process.standardOutput = stdoutPipe }
        if let stderr { process.standardError = stderr }
        try process.run()
        // Our copy of the write end must go, or the read end never sees end of file.
        try? stdoutPipe?.fileHandleForWriting.close()
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
}

#else

/// This platform cannot start other programs: creating a `Subprocess` throws.
final class Subprocess {
    static let isSupported = false

    init(executable: String, arguments: [String], pipeStdout: Bool, stderr: FileHandle?) throws {
        throw AudioError(file: executable, kind: .ffmpegNotFound,
                         reason: "this platform cannot run other programs (no subprocesses on iOS, iPadOS, tvOS, watchOS or visionOS); read WAV or raw PCM, or decode with AVAudioFile and pass the samples")
    }

    var stdoutDescriptor: Int32 { -1 }
    func closeStdout() {}
    var isRunning: Bool { false }
    func terminate() {}
    func wait() -> Int32 { -1 }
}

#endif
