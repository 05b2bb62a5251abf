import Foundation

/// Options for decoding audio files.
public struct AudioDecodingOptions: Sendable, Equatable {
    /// Where ffmpeg comes from for formats that are not plain PCM/float WAV.
    public enum FFmpegLocation: Sendable, Equatable {
        /// The first `ffmpeg` on `PATH` (the default).
        case searchPath
        /// Never run ffmpeg: non-WAV files fail with `AudioError.Kind.ffmpegNotFound`.
        case disabled
        /// This executable.
        case executable(String)
    }

    public var ffmpeg: FFmpegLocation
    /// Frames decoded per block. Blocks are also capped at about 4 MB of file data, so memory
    /// stays bounded whatever the channel count.
    public var blockFrames: Int

    public init(ffmpeg: FFmpegLocation = .searchPath, blockFrames: Int = 65536) {
        self.ffmpeg = ffmpeg
        self.blockFrames = max(1, blockFrames)
    }
}

/// What a file holds, as found in its header (or in ffmpeg's output for other formats).
public struct AudioFileInfo: Sendable, Equatable {
    public enum Decoder: String, Sendable, Equatable {
        /// Read natively (RIFF/WAVE, RF64, BW64 with PCM or IEEE float samples).
        case wav
        /// Decoded by an ffmpeg subprocess.
        case ffmpeg
    }

    /// The path as given.
    public var path: String
    public var decoder: Decoder
    /// The file's format: "RIFF", "RF64", "BW64", or for ffmpeg what the file looks like
    /// ("FLAC", "MP3", ...).
    public var format: String
    /// The sample encoding read (ffmpeg always delivers `.float32`).
    public var encoding: AudioSampleEncoding
    public var sampleRate: Int
    public var channels: Int
    /// Frames in the file, when known before decoding (WAV); nil for ffmpeg streams.
    public var frameCount: Int?

    /// Duration in seconds, when the frame count is known.
    public var duration: Double? { frameCount.map { Double($0) / Double(sampleRate) } }
}

/// Reads an audio file block by block as mono float samples at the file's own rate:
/// channels averaged (`x.mean(dim=0)` in float32) after scaling every sample exactly as the
/// reference loads it (int16 / 32768, int24 / 8388608, int32 / 2147483648, (u8 − 128) / 128,
/// float64 rounded to float32).
///
/// WAV files (RIFF/WAVE, RF64, BW64; PCM 8/16/24/32-bit, IEEE float 32/64,
/// `WAVE_FORMAT_EXTENSIBLE`; chunks in any order) are read natively. Everything else goes
/// through an `ffmpeg` subprocess when one is available.
///
/// Memory use is bounded by one block whatever the file length.
public final class AudioFileReader {
    public let info: AudioFileInfo
    /// Problems worked around so far (truncation, decoder messages). Complete once `readMono`
    /// has returned nil.
    public private(set) var warnings: [AudioWarning]

    private let reader: ByteReader
    private var ffmpeg: FFmpeg.Decode?
    private let encoding: AudioSampleEncoding
    private let channels: Int
    private let blockAlign: Int
    private var remainingBytes: Int64?
    private var framesRead: Int64 = 0
    private let dataOffset: Int64
    private let blockFrames: Int
    private var raw: [UInt8] = []
    private var done = false

    /// Opens `path` and reads its header.
    /// - Throws: `AudioError` naming the file and the reason.
    public convenience init(path: String, options: AudioDecodingOptions = AudioDecodingOptions()) throws {
        try self.init(reader: try openRegularFile(path), path: path, bytes: nil, options: options)
    }

    /// Reads an audio file held in memory (an upload), named `name` in messages: WAV natively,
    /// anything else through ffmpeg reading the bytes from a pipe (fixed arguments, no
    /// temporary file). Formats whose index sits at the end of the file (some MP4/M4A) cannot
    /// be decoded from a pipe.
    /// - Throws: `AudioError` naming `name` and the reason.
    public convenience init(data: Data, name: String, options: AudioDecodingOptions = AudioDecodingOptions()) throws {
        try self.init(reader: ByteReader(data: data, file: name), path: name, bytes: data, options: options)
    }

    /// Reads the file `r` (named `path`); ffmpeg, when needed, reads `bytes` from a pipe if
    /// given, else the file at `path`.
    private init(reader r: ByteReader, path: String, bytes: Data?, options: AudioDecodingOptions) throws {
        if r.size == 0 { throw AudioError(file: path, kind: .empty, reason: "the file is empty (0 bytes)") }
        let magic = try r.read(12)
        var header: WAVHeader?
        var needsFFmpeg: String?
        if WAVParser.isWAVMagic(magic) {
            do {
                header = try WAVParser.parse(r, magic: magic)
            } catch let c as UnsupportedWAVCodec {
                needsFFmpeg = c.description
            }
        } else if magic.count < 12 && (magic.starts(with: Array("RIFF".utf8)) || magic.starts(with: Array("RF64".utf8))) {
            throw AudioError(file: path, kind: .malformed,
                             reason: "the file ends inside the RIFF header (\(magic.count) bytes)")
        } else {
            needsFFmpeg = FFmpeg.sniff(magic, path: path) ?? ""
        }
        if let header {
            reader = r
            self.encoding = header.encoding
            self.channels = header.channels
            self.blockAlign = header.blockAlign
            self.remainingBytes = header.dataBytes
            self.dataOffset = header.dataOffset
            self.warnings = header.warnings
            let frames = header.dataBytes.map { Int($0 / Int64(header.blockAlign)) }
            info = AudioFileInfo(path: path, decoder: .wav, format: header.container, encoding: header.encoding,
                                 sampleRate: header.sampleRate, channels: header.channels, frameCount: frames)
            if frames == 0 {
                let truncated = header.warnings.first { $0.kind == .truncated }
                throw AudioError(file: path, kind: .noAudio,
                                 reason: truncated != nil
                                    ? "no audio samples: the file ends right after its header, which declares \(header.declaredDataBytes ?? 0) bytes of audio"
                                    : "the data chunk holds no samples",
                                 offset: header.dataOffset)
            }
        } else {
            let what = needsFFmpeg ?? ""
            r.close()
            guard let exe = FFmpeg.resolve(options.ffmpeg) else {
                let reason: String
                if what.isEmpty {
                    let bytes = magic.prefix(4).map { String(format: "%02X", $0) }.joined(separator: " ")
                    reason = "not a RIFF/WAVE file (it starts with \(bytes)) and ffmpeg, which decodes other formats, was not found; \(FFmpeg.installHint)"
                } else {
                    reason = "\(what) is decoded through ffmpeg, which was not found; \(FFmpeg.installHint)"
                }
                throw AudioError(file: path, kind: .ffmpegNotFound, reason: reason)
            }
            let decode = try bytes.map { try FFmpeg.Decode(executable: exe, name: path, data: $0) }
                ?? FFmpeg.Decode(executable: exe, file: path)
            let pipe = ByteReader(fd: decode.readDescriptor, file: path, seekable: false, size: nil, ownsDescriptor: false)
            let h: WAVHeader
            do {
                let m = try pipe.read(12)
                guard WAVParser.isWAVMagic(m) else {
                    throw AudioError(file: path, kind: .ffmpegFailed, reason: "ffmpeg produced no audio")
                }
                h = try WAVParser.parse(pipe, magic: m)
            } catch {
                // Usually ffmpeg failed at once; its own message is the useful one.
                decode.process.closeStdout()
                let (status, messages) = decode.wait()
                let detail = messages.isEmpty ? "\(error)" : messages
                throw AudioError(file: path, kind: .ffmpegFailed,
                                 reason: "ffmpeg could not decode \(what.isEmpty ? "it" : what) (exit status \(status)): \(detail)")
            }
            ffmpeg = decode
            reader = pipe
            encoding = h.encoding
            channels = h.channels
            blockAlign = h.blockAlign
            remainingBytes = h.dataBytes
            dataOffset = 0
            warnings = []
            info = AudioFileInfo(path: path, decoder: .ffmpeg, format: what.isEmpty ? "unknown (via ffmpeg)" : what,
                                 encoding: h.encoding, sampleRate: h.sampleRate, channels: h.channels, frameCount: nil)
        }
        // Blocks: the requested frame count, capped at about 4 MB of raw data.
        blockFrames = max(1, min(options.blockFrames, (4 << 20) / blockAlign))
    }

    /// Reads a stream that is not a regular file (standard input, a pipe, ffmpeg capturing a
    /// device): a WAV header first (its data size may be 0 or 0xFFFFFFFF, "until the end"),
    /// or raw PCM in `raw`'s format. Blocks hold about `blockSeconds` of audio, so a live
    /// stream is delivered as it arrives.
    init(stream r: ByteReader, name: String, raw: RawPCMFormat?, ffmpeg decode: FFmpeg.Decode?, blockSeconds: Double) throws {
        let h: WAVHeader
        if let raw {
            h = WAVHeader(container: "raw", encoding: raw.sampleFormat.encoding, channels: raw.channels,
                          sampleRate: raw.sampleRate, blockAlign: raw.channels * raw.sampleFormat.encoding.byteWidth,
                          dataOffset: 0, dataBytes: nil, declaredDataBytes: nil, warnings: [])
        } else {
            do {
                let m = try r.read(12)
                guard WAVParser.isWAVMagic(m) else {
                    if decode != nil { throw AudioError(file: name, kind: .ffmpegFailed, reason: "ffmpeg produced no audio") }
                    if m.isEmpty {
                        throw AudioError(file: name, kind: .empty, reason: "the stream ended before a WAV header arrived (0 bytes)")
                    }
                    let bytes = m.prefix(4).map { String(format: "%02X", $0) }.joined(separator: " ")
                    throw AudioError(file: name, kind: .malformed,
                                     reason: m.count < 12 && (m.starts(with: Array("RIFF".utf8)) || m.starts(with: Array("RF64".utf8)))
                                        ? "the stream ends inside the RIFF header (\(m.count) bytes)"
                                        : "the stream does not start with a RIFF/WAVE header (its first bytes are \(bytes)); a stream must be WAV (header first) or be read as raw PCM of a given format",
                                     offset: 0)
                }
                h = try WAVParser.parse(r, magic: m)
            } catch let c as UnsupportedWAVCodec {
                decode?.cancel()
                throw AudioError(file: name, kind: .unsupported, reason: "\(c.description) cannot be streamed; send PCM or IEEE float WAV")
            } catch {
                guard let decode else { throw error }
                decode.process.closeStdout()
                let (status, messages) = decode.wait()
                let detail = messages.isEmpty ? "\(error)" : messages
                throw AudioError(file: name, kind: .ffmpegFailed, reason: "ffmpeg failed (exit status \(status)): \(detail)")
            }
        }
        reader = r
        ffmpeg = decode
        encoding = h.encoding
        channels = h.channels
        blockAlign = h.blockAlign
        remainingBytes = h.dataBytes
        dataOffset = h.dataOffset
        warnings = h.warnings
        info = AudioFileInfo(path: name, decoder: decode == nil ? .wav : .ffmpeg, format: h.container, encoding: h.encoding,
                             sampleRate: h.sampleRate, channels: h.channels,
                             frameCount: h.dataBytes.map { Int($0 / Int64(h.blockAlign)) })
        let frames = max(16, Int(Double(h.sampleRate) * max(0.001, blockSeconds)))
        self.blockFrames = max(1, min(frames, (4 << 20) / h.blockAlign))
    }

    deinit { close() }

    /// Stops decoding and releases the file (and ffmpeg). Called automatically on deinit.
    public func close() {
        done = true
        ffmpeg?.cancel()
        ffmpeg = nil
        reader.close()
    }

    /// The next block of mono samples (at most `blockFrames`), or nil at the end.
    /// - Throws: `AudioError` for non-finite samples, read errors or an ffmpeg failure.
    public func readMono() throws -> [Float]? {
        if done { return nil }
        var wantBytes = blockFrames * blockAlign
        if let rem = remainingBytes { wantBytes = Int(min(Int64(wantBytes), rem)) }
        if wantBytes == 0 { try end(); return nil }
        if raw.count < wantBytes { raw = [UInt8](repeating: 0, count: wantBytes) }
        let got: Int
        do {
            got = try raw.withUnsafeMutableBytes { try reader.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<wantBytes])) }
        } catch {
            close(); throw error
        }
        if let rem = remainingBytes { remainingBytes = rem - Int64(got) }
        let frames = got / blockAlign
        if got < wantBytes {
            // End of the stream (a file whose size changed under us, or ffmpeg's output).
            if got % blockAlign != 0 {
                warnings.append(AudioWarning(file: info.path, kind: .partialFrame,
                                             message: "the audio data ends in a partial frame (\(got % blockAlign) of \(blockAlign) bytes), which is ignored"))
            }
            remainingBytes = 0
        }
        if frames == 0 { try end(); return nil }
        let out: [Float]
        do { out = try convert(frames: frames) } catch { close(); throw error }
        framesRead += Int64(frames)
        return out
    }

    /// Reads everything that is left as one mono array.
    public func readAllMono() throws -> [Float] {
        var all: [Float] = []
        if let n = info.frameCount { all.reserveCapacity(n) }
        while let block = try readMono() { all += block }
        return all
    }

    private func end() throws {
        guard !done else { return }
        done = true
        if let ffmpeg {
            self.ffmpeg = nil
            let (status, messages) = ffmpeg.wait()
            reader.close()
            if status != 0 {
                throw AudioError(file: info.path, kind: .ffmpegFailed,
                                 reason: "ffmpeg failed while decoding (exit status \(status)): \(messages)")
            }
            if !messages.isEmpty {
                warnings.append(AudioWarning(file: info.path, kind: .decoderMessages, message: "ffmpeg reported: \(messages)"))
            }
            if framesRead == 0 {
                throw AudioError(file: info.path, kind: .noAudio, reason: "ffmpeg decoded no audio samples")
            }
        } else {
            reader.close()
        }
    }

    /// Scales and downmixes `frames` frames from `raw`.
    private func convert(frames: Int) throws -> [Float] {
        let c = channels
        let divisor = Float(c)
        var out = [Float](repeating: 0, count: frames)
        var bad: (frame: Int, channel: Int, value: Double)?
        raw.withUnsafeBytes { src in
            out.withUnsafeMutableBufferPointer { dst in
                let p = src.baseAddress!
                switch encoding {
                case .pcmU8:
                    Self.mix(frames, c, divisor, dst) { i in (Float(p.load(fromByteOffset: i, as: UInt8.self)) - 128) / 128 }
                case .pcmS16:
                    Self.mix(frames, c, divisor, dst) { i in
                        Float(Int16(littleEndian: p.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self))) / 32768
                    }
                case .pcmS24:
                    Self.mix(frames, c, divisor, dst) { i in
                        let o = 3 * i
                        let v = Int32(p.load(fromByteOffset: o, as: UInt8.self)) << 8
                            | Int32(p.load(fromByteOffset: o + 1, as: UInt8.self)) << 16
                            | Int32(p.load(fromByteOffset: o + 2, as: UInt8.self)) << 24
                        return Float(v >> 8) / 8_388_608
                    }
                case .pcmS32:
                    Self.mix(frames, c, divisor, dst) { i in
                        Float(Int32(littleEndian: p.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self))) / 2_147_483_648
                    }
                case .float32:
                    Self.mix(frames, c, divisor, dst) { i in
                        Float(bitPattern: UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
                    }
                    if !Self.allFinite(dst) { bad = Self.firstNonFinite(frames * c) { i in
                        Double(Float(bitPattern: UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))))
                    }.map { ($0.index / c, $0.index % c, $0.value) } }
                case .float64:
                    Self.mix(frames, c, divisor, dst) { i in
                        Float(Double(bitPattern: UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))))
                    }
                    if !Self.allFinite(dst) { bad = Self.firstNonFinite(frames * c) { i in
                        Double(bitPattern: UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))
                    }.map { ($0.index / c, $0.index % c, $0.value) } }
                }
            }
        }
        if bad == nil, !out.allSatisfy({ $0.isFinite }) {
            // Every sample is finite but a channel average overflowed.
            let f = out.firstIndex { !$0.isFinite } ?? 0
            bad = (f, -1, .infinity)
        }
        if let bad {
            let frame = framesRead + Int64(bad.frame)
            if bad.channel < 0 {
                throw AudioError(file: info.path, kind: .nonFiniteSamples,
                                 reason: "averaging the channels of sample \(frame) overflows float32; the model needs finite samples")
            }
            let what = bad.value.isNaN ? "NaN" : (bad.value.isFinite ? "too large for float32 (\(bad.value))" : "infinite")
            let offset: Int64? = info.decoder == .wav
                ? dataOffset + frame * Int64(blockAlign) + Int64(bad.channel * encoding.byteWidth) : nil
            throw AudioError(file: info.path, kind: .nonFiniteSamples,
                             reason: "sample \(frame) (channel \(bad.channel)) is \(what); the model needs finite samples",
                             offset: offset)
        }
        return out
    }

    @inline(__always)
    private static func mix(_ frames: Int, _ c: Int, _ divisor: Float, _ dst: UnsafeMutableBufferPointer<Float>,
                            _ sample: (Int) -> Float) {
        if c == 1 {
            for f in 0..<frames { dst[f] = sample(f) }
        } else if c == 2 {
            for f in 0..<frames { dst[f] = (sample(2 * f) + sample(2 * f + 1)) / 2 }
        } else {
            for f in 0..<frames {
                var s = sample(f * c)
                for ch in 1..<c { s += sample(f * c + ch) }
                dst[f] = s / divisor
            }
        }
    }

    private static func allFinite(_ x: UnsafeMutableBufferPointer<Float>) -> Bool {
        var ok = true
        for v in x where !v.isFinite { ok = false; break }
        return ok
    }

    private static func firstNonFinite(_ n: Int, _ value: (Int) -> Double) -> (index: Int, value: Double)? {
        for i in 0..<n {
            let v = value(i)
            if !Float(v).isFinite { return (i, v) }
        }
        return nil
    }
}
