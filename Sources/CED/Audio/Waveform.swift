import Foundation

/// An audio file as the CED feature extractor wants it: mono float samples at `sampleRate`
/// (16 kHz), delivered block by block so a long recording never sits in memory.
///
/// Decoding, downmixing (channel mean) and resampling (`torchaudio.functional.resample` with
/// its defaults) match the reference; the concatenated blocks equal `Waveform(path:)` exactly.
///
/// ```swift
/// let stream = try WaveformStream(path: "field-recording.wav")
/// while let block = try stream.next() { consume(block) }
/// for w in stream.warnings { print(w, to: &standardError) }
/// ```
public final class WaveformStream {
    /// Output sample rate (16000 for CED).
    public let sampleRate: Int
    /// Samples the stream will deliver in total, when known before decoding (WAV files).
    public let expectedSampleCount: Int?
    private let reader: AudioFileReader
    private let resampler: SincResampler
    private var finished = false
    private var delivered = 0

    /// What the file holds (native rate, channels, encoding, decoder).
    public var info: AudioFileInfo { reader.info }
    /// Problems worked around so far (truncated file, decoder messages); complete once `next()`
    /// has returned nil.
    public var warnings: [AudioWarning] { reader.warnings }
    /// Samples delivered so far.
    public var samplesDelivered: Int { delivered }

    /// Opens a file and reads its header.
    /// - Throws: `AudioError` naming the file and the reason.
    public convenience init(path: String, sampleRate: Int = 16000, options: AudioDecodingOptions = AudioDecodingOptions()) throws {
        guard sampleRate > 0 else { throw CedInputError("target sample rate must be positive, got \(sampleRate)") }
        try self.init(reader: AudioFileReader(path: path, options: options), sampleRate: sampleRate)
    }

    /// Decodes an audio file held in memory (an upload), named `name` in messages (see
    /// `AudioFileReader(data:name:options:)`).
    public convenience init(data: Data, name: String, sampleRate: Int = 16000,
                            options: AudioDecodingOptions = AudioDecodingOptions()) throws {
        guard sampleRate > 0 else { throw CedInputError("target sample rate must be positive, got \(sampleRate)") }
        try self.init(reader: AudioFileReader(data: data, name: name, options: options), sampleRate: sampleRate)
    }

    /// Opens `input` (a file or bytes in memory).
    public convenience init(_ input: AudioInput, sampleRate: Int = 16000, options: AudioDecodingOptions = AudioDecodingOptions()) throws {
        switch input {
        case .file(let url): try self.init(path: url.path, sampleRate: sampleRate, options: options)
        case .data(let data, let name): try self.init(data: data, name: name, sampleRate: sampleRate, options: options)
        }
    }

    private init(reader: AudioFileReader, sampleRate: Int) throws {
        self.reader = reader
        let path = reader.info.path
        self.sampleRate = sampleRate
        let rate = reader.info.sampleRate
        do {
            resampler = try SincResampler(inputRate: rate, outputRate: sampleRate)
        } catch {
            throw AudioError(file: path, kind: .unsupported, reason: "\(error)")
        }
        expectedSampleCount = reader.info.frameCount.map {
            SincResampler.outputLength(inputLength: $0, inputRate: rate, outputRate: sampleRate)
        }
    }

    /// Opens a file URL; see `init(path:sampleRate:options:)`.
    public convenience init(contentsOf url: URL, sampleRate: Int = 16000,
                            options: AudioDecodingOptions = AudioDecodingOptions()) throws {
        try self.init(path: url.path, sampleRate: sampleRate, options: options)
    }

    /// The next block of samples (never empty), or nil at the end of the file.
    /// - Throws: `AudioError` (non-finite samples, read error, ffmpeg failure).
    public func next() throws -> [Float]? {
        while !finished {
            let out: [Float]
            if let block = try reader.readMono() {
                out = resampler.process(block)
            } else {
                finished = true
                out = resampler.finish()
            }
            if out.isEmpty { continue }
            if !out.allSatisfy({ $0.isFinite }) {
                let i = out.firstIndex { !$0.isFinite } ?? 0
                reader.close()
                finished = true
                throw AudioError(file: reader.info.path, kind: .nonFiniteSamples,
                                 reason: "resampling overflows float32 at output sample \(delivered + i) (input samples are too large)")
            }
            delivered += out.count
            return out
        }
        return nil
    }

    /// Stops early and releases the file (and ffmpeg, when used).
    public func close() {
        finished = true
        reader.close()
    }
}

/// Audio to decode: a file, or the bytes of a file held in memory (an upload) with the
/// name messages give it.
public enum AudioInput: Sendable {
    case file(URL)
    case data(Data, name: String)

    /// The name errors and results give the input (the path of a file).
    public var name: String {
        switch self {
        case .file(let url): return url.path
        case .data(_, let name): return name
        }
    }
}

/// A whole file decoded to mono float samples at `sampleRate` (16 kHz for CED), exactly as
/// the reference prepares it: samples scaled as torchaudio loads them, channels averaged,
/// `torchaudio.functional.resample` with its defaults.
public struct Waveform: Sendable, Equatable {
    public var samples: [Float]
    public var sampleRate: Int
    /// What the file held before conversion.
    public var info: AudioFileInfo
    /// Problems worked around while decoding (print them; the library never does).
    public var warnings: [AudioWarning]

    /// Duration in seconds.
    public var duration: Double { Double(samples.count) / Double(sampleRate) }

    public init(samples: [Float], sampleRate: Int, info: AudioFileInfo, warnings: [AudioWarning] = []) {
        self.samples = samples
        self.sampleRate = sampleRate
        self.info = info
        self.warnings = warnings
    }

    /// Decodes, downmixes and resamples a whole file.
    /// - Throws: `AudioError` naming the file and the reason.
    public init(path: String, sampleRate: Int = 16000, options: AudioDecodingOptions = AudioDecodingOptions()) throws {
        try self.init(stream: WaveformStream(path: path, sampleRate: sampleRate, options: options), sampleRate: sampleRate)
    }

    /// Decodes, downmixes and resamples a file's bytes held in memory (an upload), named
    /// `name` in messages.
    public init(data: Data, name: String, sampleRate: Int = 16000, options: AudioDecodingOptions = AudioDecodingOptions()) throws {
        try self.init(.data(data, name: name), sampleRate: sampleRate, options: options)
    }

    /// Decodes, downmixes and resamples a file or a file's bytes in memory.
    public init(_ input: AudioInput, sampleRate: Int = 16000, options: AudioDecodingOptions = AudioDecodingOptions()) throws {
        try self.init(stream: WaveformStream(input, sampleRate: sampleRate, options: options), sampleRate: sampleRate)
    }

    private init(stream: WaveformStream, sampleRate: Int) throws {
        var all: [Float] = []
        if let n = stream.expectedSampleCount { all.reserveCapacity(n) }
        while let block = try stream.next() { all += block }
        self.init(samples: all, sampleRate: sampleRate, info: stream.info, warnings: stream.warnings)
    }

    /// Decodes, downmixes and resamples a whole file URL.
    public init(contentsOf url: URL, sampleRate: Int = 16000, options: AudioDecodingOptions = AudioDecodingOptions()) throws {
        try self.init(path: url.path, sampleRate: sampleRate, options: options)
    }
}
