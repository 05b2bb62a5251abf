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
    public init(path: String, sampleRate: Int = 16000, options: AudioDecodingOptions = AudioDecodingOptions()) throws {
        guard sampleRate > 0 else { throw CedInputError("target sample rate must be positive, got \(sampleRate)") }
        reader = try AudioFileReader(path: path, options: options)
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
        let stream = try WaveformStream(path: path, sampleRate: sampleRate, options: options)
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
