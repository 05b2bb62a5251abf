import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The sample layout of a raw PCM stream (no header).
public struct RawPCMFormat: Sendable, Equatable {
    public enum SampleFormat: String, Sendable, CaseIterable {
        /// Signed 16-bit little-endian integers (`arecord -f S16_LE`).
        case s16le
        /// Signed 24-bit little-endian integers in 3 bytes.
        case s24le
        /// Signed 32-bit little-endian integers.
        case s32le
        /// IEEE float 32, little-endian.
        case f32le
        /// IEEE float 64, little-endian.
        case f64le
        /// Unsigned 8-bit.
        case u8

        var encoding: AudioSampleEncoding {
            switch self {
            case .s16le: return .pcmS16
            case .s24le: return .pcmS24
            case .s32le: return .pcmS32
            case .f32le: return .float32
            case .f64le: return .float64
            case .u8: return .pcmU8
            }
        }
    }

    public var sampleRate: Int
    public var channels: Int
    public var sampleFormat: SampleFormat

    /// - Throws: `StreamingError.invalidOption` for a rate outside `supportedSampleRates` or a
    ///   channel count outside 1…1024.
    public init(sampleRate: Int, channels: Int, sampleFormat: SampleFormat) throws {
        guard supportedSampleRates.contains(sampleRate) else {
            throw StreamingError(.invalidOption, "sample rate \(sampleRate) Hz is outside the supported range \(supportedSampleRates.lowerBound)–\(supportedSampleRates.upperBound) Hz")
        }
        guard (1...1024).contains(channels) else {
            throw StreamingError(.invalidOption, "the channel count must be between 1 and 1024, got \(channels)")
        }
        self.sampleRate = sampleRate
        self.channels = channels
        self.sampleFormat = sampleFormat
    }
}

/// Where live audio comes from when ffmpeg captures it.
public struct CaptureDevice: Sendable, Equatable, CustomStringConvertible {
    /// ffmpeg's input device: `alsa`, `pulse`, `avfoundation`, or any other ffmpeg input format
    /// (`lavfi` makes test signals).
    public var backend: String
    /// The device name for that backend (`default`, `hw:1,0`, `:0`, ...).
    public var device: String

    public init(backend: String, device: String) {
        self.backend = backend
        self.device = device
    }

    /// Parses `[backend:]device`. Without a backend: PulseAudio on Linux when its socket is
    /// there (PipeWire provides one too), else ALSA; AVFoundation on macOS (`default`, an
    /// audio device index or a name; `:N` as ffmpeg writes it works too).
    public init(parsing spec: String) {
        let known = ["alsa", "pulse", "avfoundation", "lavfi", "oss", "jack", "openal", "dshow", "wasapi"]
        if let colon = spec.firstIndex(of: ":"), known.contains(String(spec[..<colon])) {
            backend = String(spec[..<colon])
            device = String(spec[spec.index(after: colon)...])
        } else {
            backend = Self.defaultBackend
            device = spec.isEmpty ? "default" : spec
        }
        if backend == "avfoundation" && !device.hasPrefix(":") && !device.contains(":") {
            device = ":" + device   // audio only: "<video>:<audio>" with no video
        }
    }

    /// The platform's usual capture backend.
    public static var defaultBackend: String { CedPlatform.defaultCaptureBackend }

    public var description: String { "\(backend):\(device)" }

    /// Runs ffmpeg's listing of the capture devices (PulseAudio and ALSA sources on Linux,
    /// AVFoundation devices on macOS), which it prints on the process's stdout and stderr.
    /// - Throws: `AudioError` (`.ffmpegNotFound`) when ffmpeg is not on PATH.
    public static func listDevices() throws {
        guard let ffmpeg = FFmpeg.findOnPath() else {
            throw AudioError(file: "capture devices", kind: .ffmpegNotFound, reason: "listing devices needs ffmpeg on PATH")
        }
        for args in CedPlatform.captureDeviceListings {
            _ = try Subprocess(executable: ffmpeg, arguments: args, pipeStdout: false, stderr: .inherit).wait()
        }
    }

    /// ffmpeg's input arguments for this device.
    var ffmpegInput: [String] {
        backend == "lavfi" ? ["-f", "lavfi", "-i", device] : ["-f", backend, "-i", device]
    }
}

/// Reads audio that arrives over time — standard input, a pipe, a socket, a capture device
/// through ffmpeg — as blocks of mono float samples at the stream's own rate, scaled and
/// downmixed exactly as files are (see `AudioFileReader`).
///
/// A WAV stream's header comes first; a data size of 0 or 0xFFFFFFFF (what streaming
/// writers put there) means "until the end of the stream", and a stream that ends before
/// the declared size ends normally. A stream that ends inside a sample frame is an error:
/// it was cut, not ended.
public final class AudioStreamReader {
    private let reader: AudioFileReader
    /// The ffmpeg capturing a device, when there is one.
    private let capture: FFmpeg.Decode?
    private var warningsSeen = 0
    private var cutError: AudioError?
    private var framesDelivered = 0
    private var finished = false

    /// What the stream holds (rate, channels, encoding); `path` is the name given.
    public var info: AudioFileInfo { reader.info }
    public var sampleRate: Int { reader.info.sampleRate }
    /// Frames (samples per channel) delivered so far.
    public var frameCount: Int { framesDelivered }

    /// Reads from an open file descriptor (not closed by the reader unless `ownsDescriptor`).
    /// `blockSeconds` bounds how long a block waits to fill: the latency the reader adds.
    /// - Throws: `AudioError` naming `name`: no header, not WAV, a bad header (sample rate 0,
    ///   no channels, ...), an unsupported encoding.
    public convenience init(fileDescriptor fd: Int32, name: String, raw: RawPCMFormat? = nil,
                            blockSeconds: Double = 0.02, ownsDescriptor: Bool = false) throws {
        let r = ByteReader(fd: fd, file: name, seekable: false, size: nil, ownsDescriptor: ownsDescriptor)
        try self.init(r, name: name, raw: raw, ffmpeg: nil, blockSeconds: blockSeconds)
    }

    /// Standard input.
    public static func standardInput(raw: RawPCMFormat? = nil, blockSeconds: Double = 0.02) throws -> AudioStreamReader {
        try AudioStreamReader(fileDescriptor: 0, name: "standard input", raw: raw, blockSeconds: blockSeconds)
    }

    /// Captures a device through ffmpeg (`ffmpeg -f BACKEND -i DEVICE`), at the device's own
    /// rate and channel count.
    /// - Throws: `AudioError` with kind `.ffmpegNotFound`, or `.ffmpegFailed` with ffmpeg's
    ///   own message when the device cannot be opened (a missing device, no permission).
    public convenience init(capturing device: CaptureDevice, ffmpeg: AudioDecodingOptions.FFmpegLocation = .searchPath,
                            blockSeconds: Double = 0.02) throws {
        let name = "capture device \(device)"
        guard let exe = FFmpeg.resolve(ffmpeg) else {
            throw AudioError(file: name, kind: .ffmpegNotFound, reason: "live capture goes through ffmpeg, which was not found; \(FFmpeg.installHint)")
        }
        let decode = try FFmpeg.Decode(executable: exe, name: name, input: device.ffmpegInput, output: ["-flush_packets", "1"])
        let pipe = ByteReader(fd: decode.readDescriptor, file: name, seekable: false, size: nil, ownsDescriptor: false)
        try self.init(pipe, name: name, raw: nil, ffmpeg: decode, blockSeconds: blockSeconds)
    }

    private init(_ r: ByteReader, name: String, raw: RawPCMFormat?, ffmpeg: FFmpeg.Decode?, blockSeconds: Double) throws {
        reader = try AudioFileReader(stream: r, name: name, raw: raw, ffmpeg: ffmpeg, blockSeconds: blockSeconds)
        capture = ffmpeg
        warningsSeen = reader.warnings.count
    }

    /// The next block of mono samples, or nil at the end of the stream.
    /// - Throws: `AudioError`: a stream cut inside a sample frame, non-finite float samples,
    ///   a read error, ffmpeg failing.
    public func read() throws -> [Float]? {
        if let cutError { throw cutError }
        guard !finished else { return nil }
        guard let block = try reader.readMono() else {
            finished = true
            if let e = checkCut() { throw e }
            return nil
        }
        framesDelivered += block.count
        if let e = checkCut() { cutError = e }   // deliver the whole frames first
        return block
    }

    private func checkCut() -> AudioError? {
        let ws = reader.warnings
        defer { warningsSeen = ws.count }
        for w in ws.dropFirst(warningsSeen) where w.kind == .partialFrame {
            return AudioError(file: info.path, kind: .malformed,
                              reason: "the stream was cut inside a sample frame after \(framesDelivered) frames: \(w.message.replacingOccurrences(of: ", which is ignored", with: ""))")
        }
        return nil
    }

    /// Asks a capturing ffmpeg to stop (safe from any thread, e.g. a signal handler, while
    /// another thread reads): `read()` then returns what was captured and nil. Does nothing
    /// for other streams.
    public func stop() {
        if let p = capture?.process, p.isRunning { p.terminate() }
    }

    /// Stops reading (and ffmpeg, when capturing).
    public func close() {
        finished = true
        reader.close()
    }
}
