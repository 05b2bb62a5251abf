import Foundation

/// How the samples of an audio file are stored, and so how they are scaled to floats.
public enum AudioSampleEncoding: String, Sendable, Equatable, CaseIterable {
    /// Unsigned 8-bit PCM: (u − 128) / 128.
    case pcmU8
    /// Signed 16-bit PCM: x / 32768.
    case pcmS16
    /// Signed 24-bit PCM: x / 8388608.
    case pcmS24
    /// Signed 32-bit PCM: x / 2147483648.
    case pcmS32
    /// IEEE float 32.
    case float32
    /// IEEE float 64 (rounded to float 32).
    case float64

    /// Bytes per sample in the file.
    public var byteWidth: Int {
        switch self {
        case .pcmU8: return 1
        case .pcmS16: return 2
        case .pcmS24: return 3
        case .pcmS32, .float32: return 4
        case .float64: return 8
        }
    }

}

/// The parsed header of a RIFF/WAVE (or RF64/BW64) file: where the samples are and how to
/// read them.
struct WAVHeader {
    var container: String
    var encoding: AudioSampleEncoding
    var channels: Int
    var sampleRate: Int
    /// Bytes per frame (`nBlockAlign`).
    var blockAlign: Int
    /// Offset of the first sample byte.
    var dataOffset: Int64
    /// Bytes of audio data to read, or nil to read until the end of the stream.
    var dataBytes: Int64?
    /// The data size the header declares, when it declares one.
    var declaredDataBytes: Int64?
    var warnings: [AudioWarning]
}

/// A WAV format tag (or extensible sub-format) that is not PCM or IEEE float: the codec's
/// name, for messages, and a hint that ffmpeg may decode it.
struct UnsupportedWAVCodec: Error {
    /// E.g. "μ-law-encoded WAV".
    var description: String
    var tag: UInt16
}

/// Sample rates accepted from files. Below 1 kHz nothing meaningful reaches a 16 kHz model and
/// upsampling would multiply the data; above 768 kHz nothing is recorded.
public let supportedSampleRates: ClosedRange<Int> = 1_000...768_000

enum WAVParser {
    /// Names for the WAV codecs users meet, for error messages.
    static func codecName(_ tag: UInt16) -> String {
        switch tag {
        case 0x0002: return "Microsoft ADPCM"
        case 0x0006: return "A-law"
        case 0x0007: return "μ-law"
        case 0x0011: return "IMA ADPCM"
        case 0x0022: return "TrueSpeech"
        case 0x0031: return "GSM 6.10"
        case 0x0040: return "G.721 ADPCM"
        case 0x0050: return "MPEG audio"
        case 0x0055: return "MP3"
        case 0x0092: return "AC-3 (S/PDIF)"
        case 0x0160, 0x0161, 0x0162, 0x0163: return "Windows Media Audio"
        case 0x1610: return "AAC"
        case 0x2000: return "AC-3"
        case 0xF1AC: return "FLAC"
        default: return String(format: "WAV format tag 0x%04X", Int(tag))
        }
    }

    /// True when the first bytes are a RIFF/RF64/BW64 WAVE header.
    static func isWAVMagic(_ b: [UInt8]) -> Bool {
        guard b.count >= 12 else { return false }
        let riff = String(decoding: b[0..<4], as: UTF8.self)
        let wave = String(decoding: b[8..<12], as: UTF8.self)
        return (riff == "RIFF" || riff == "RF64" || riff == "BW64") && wave == "WAVE"
    }

    private static func u16(_ b: [UInt8], _ o: Int) -> UInt16 { UInt16(b[o]) | UInt16(b[o + 1]) << 8 }
    private static func u32(_ b: [UInt8], _ o: Int) -> UInt32 {
        UInt32(b[o]) | UInt32(b[o + 1]) << 8 | UInt32(b[o + 2]) << 16 | UInt32(b[o + 3]) << 24
    }
    private static func u64(_ b: [UInt8], _ o: Int) -> UInt64 { UInt64(u32(b, o)) | UInt64(u32(b, o + 4)) << 32 }

    private static func chunkName(_ b: [UInt8]) -> String {
        let printable = b.allSatisfy { $0 >= 0x20 && $0 < 0x7F }
        return printable ? "'" + String(decoding: b, as: UTF8.self) + "'"
                         : b.map { String(format: "%02X", $0) }.joined(separator: " ")
    }

    /// Parses the header, leaving the reader at the first sample byte. The 12-byte RIFF
    /// preamble must already have been checked with `isWAVMagic` and consumed.
    static func parse(_ r: ByteReader, magic: [UInt8]) throws -> WAVHeader {
        let file = r.file
        func malformed(_ reason: String, _ offset: Int64? = nil) -> AudioError {
            AudioError(file: file, kind: .malformed, reason: reason, offset: offset)
        }
        let container = String(decoding: magic[0..<4], as: UTF8.self)
        let isRF64 = container != "RIFF"
        var fmt: (tag: UInt16, channels: UInt16, rate: UInt32, blockAlign: UInt16, bits: UInt16,
                  subTag: UInt16?, guidOK: Bool, offset: Int64)?
        var ds64DataSize: UInt64?
        var data: (offset: Int64, size: UInt32)?
        /// The chunk whose declared size ran past the end of the file, for messages.
        var overrun = ""
        func skipChunk(_ id: [UInt8], at offset: Int64, size: UInt32, alreadyRead: Int64) throws -> Bool {
            if try r.skip(Int64(size) - alreadyRead + Int64(size & 1)) { return true }
            overrun = " (chunk \(chunkName(id)) at byte \(offset) declares \(size) bytes, past the end of the file)"
            return false
        }

        walk: while true {
            let headerOffset = r.position
            let h = try r.read(8)
            if h.count < 8 { break walk }
            let id = String(decoding: h[0..<4], as: UTF8.self)
            let size = u32(h, 4)
            let bodyOffset = r.position
            switch id {
            case "fmt " where fmt == nil:  // a second fmt chunk is skipped below
                guard size >= 16 else {
                    throw malformed("fmt chunk is \(size) bytes, at least 16 are needed", headerOffset)
                }
                let want = Int(min(size, 40))
                let b = try r.read(want)
                guard b.count == want else {
                    throw malformed("fmt chunk is cut off by the end of the file", bodyOffset)
                }
                var subTag: UInt16?
                var guidOK = true
                let tag = u16(b, 0)
                if tag == 0xFFFE {
                    guard size >= 40, u16(b, 16) >= 22 else {
                        throw malformed("WAVE_FORMAT_EXTENSIBLE fmt chunk is \(size) bytes, 40 are needed", headerOffset)
                    }
                    // Sub-format GUID: a format code followed by the fixed KSDATAFORMAT tail.
                    subTag = u16(b, 24)
                    let tail: [UInt8] = [0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71]
                    guidOK = Array(b[26..<40]) == tail
                }
                fmt = (tag, u16(b, 2), u32(b, 4), u16(b, 12), u16(b, 14), subTag, guidOK, bodyOffset)
                if !(try skipChunk(Array(h[0..<4]), at: headerOffset, size: size, alreadyRead: Int64(want))) { break walk }
            case "ds64" where isRF64:
                guard size >= 24 else { throw malformed("ds64 chunk is \(size) bytes, at least 24 are needed", headerOffset) }
                let b = try r.read(24)
                guard b.count == 24 else { throw malformed("ds64 chunk is cut off by the end of the file", bodyOffset) }
                ds64DataSize = u64(b, 8)
                if !(try skipChunk(Array(h[0..<4]), at: headerOffset, size: size, alreadyRead: 24)) { break walk }
            case "data":
                data = (bodyOffset, size)
                let toEOF = size == 0 || (size == 0xFFFF_FFFF && !(isRF64 && ds64DataSize != nil))
                if fmt != nil { break walk }
                // The data chunk came before fmt: skip it when its size is known.
                guard !toEOF, r.seekable else {
                    throw malformed("data chunk comes before the fmt chunk and its size is not known", headerOffset)
                }
                var skipBytes = Int64(size) + Int64(size & 1)
                if size == 0xFFFF_FFFF, let d = ds64DataSize { skipBytes = Int64(min(d, UInt64(Int64.max / 2))) + Int64(d & 1) }
                if !(try r.skip(skipBytes)) {
                    overrun = " (the data chunk at byte \(headerOffset) runs past the end of the file)"
                    break walk
                }
            default:
                if !(try skipChunk(Array(h[0..<4]), at: headerOffset, size: size, alreadyRead: 0)) { break walk }
            }
        }

        guard let fmt else { throw malformed("no fmt chunk: the file does not say how its samples are stored" + overrun) }
        guard let data else { throw malformed("no data chunk: the file holds no audio" + overrun) }

        // Format fields.
        if fmt.channels == 0 { throw malformed("the fmt chunk declares 0 channels", fmt.offset + 2) }
        if fmt.rate == 0 { throw malformed("the fmt chunk declares a sample rate of 0 Hz", fmt.offset + 4) }
        let effectiveTag = fmt.tag == 0xFFFE ? (fmt.guidOK ? fmt.subTag ?? 0 : 0xFFFE) : fmt.tag
        if fmt.tag == 0xFFFE && !fmt.guidOK {
            throw UnsupportedWAVCodec(description: "WAV with an unknown WAVE_FORMAT_EXTENSIBLE sub-format GUID", tag: 0xFFFE)
        }
        if effectiveTag != 1 && effectiveTag != 3 {
            throw UnsupportedWAVCodec(description: "\(codecName(effectiveTag))-encoded WAV", tag: effectiveTag)
        }
        let channels = Int(fmt.channels)
        let bits = Int(fmt.bits)
        let blockAlign = Int(fmt.blockAlign)
        if blockAlign == 0 { throw malformed("the fmt chunk declares a block align of 0 bytes", fmt.offset + 12) }
        // Container width per sample comes from the block align; the bit depth must fit in it
        // (fewer valid bits are left-justified, so scaling by the container is right).
        guard blockAlign % channels == 0, bits <= (blockAlign / channels) * 8 else {
            throw malformed("the block align (\(blockAlign) bytes) does not fit \(channels) channel(s) of \(bits)-bit samples",
                            fmt.offset + 12)
        }
        let width = blockAlign / channels
        let encoding: AudioSampleEncoding
        if effectiveTag == 1 {
            switch width {
            case 1: encoding = .pcmU8
            case 2: encoding = .pcmS16
            case 3: encoding = .pcmS24
            case 4: encoding = .pcmS32
            default:
                throw AudioError(file: file, kind: .unsupported,
                                 reason: "\(bits)-bit integer PCM in \(width)-byte containers is not supported (1 to 4 bytes are)",
                                 offset: fmt.offset + 14)
            }
        } else {
            switch width {
            case 4: encoding = .float32
            case 8: encoding = .float64
            default:
                throw AudioError(file: file, kind: .unsupported,
                                 reason: "\(width * 8)-bit IEEE float samples are not supported (32 and 64 are)",
                                 offset: fmt.offset + 14)
            }
        }
        let rate = Int(fmt.rate)
        guard supportedSampleRates.contains(rate) else {
            throw AudioError(file: file, kind: .unsupported,
                             reason: "sample rate \(rate) Hz is outside the supported range \(supportedSampleRates.lowerBound)–\(supportedSampleRates.upperBound) Hz",
                             offset: fmt.offset + 4)
        }

        // Data extent.
        var warnings: [AudioWarning] = []
        var declared: Int64?
        if isRF64 && data.size == 0xFFFF_FFFF {
            if let d = ds64DataSize {
                guard d <= UInt64(Int64.max / 2) else {
                    throw malformed("the ds64 chunk declares an impossible data size of \(d) bytes")
                }
                declared = Int64(d)
            }
        } else if data.size != 0 && data.size != 0xFFFF_FFFF {
            declared = Int64(data.size)
        }
        var dataBytes: Int64? = declared
        if let size = r.size {
            let available = max(0, size - data.offset)
            if let d = declared, d > available {
                warnings.append(AudioWarning(
                    file: file, kind: .truncated,
                    message: "the file is truncated: its header declares \(d) bytes of audio but only \(available) are present; decoding what is there"))
                dataBytes = available
            } else if declared == nil {
                dataBytes = available
            }
            try r.seek(to: data.offset)
        }
        if let d = dataBytes, d % Int64(blockAlign) != 0 {
            warnings.append(AudioWarning(
                file: file, kind: .partialFrame,
                message: "the audio data ends in a partial frame (\(d % Int64(blockAlign)) of \(blockAlign) bytes), which is ignored"))
            dataBytes = d - d % Int64(blockAlign)
        }
        return WAVHeader(container: container, encoding: encoding, channels: channels, sampleRate: rate,
                         blockAlign: blockAlign, dataOffset: data.offset, dataBytes: dataBytes,
                         declaredDataBytes: declared, warnings: warnings)
    }
}
