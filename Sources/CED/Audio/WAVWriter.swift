import Foundation

/// Mono 16-bit PCM WAV files (a 44-byte RIFF header, then the samples): the inverse of the
/// reader, which maps a sample k to k / 32768, so samples read from such a file write back
/// to the same bytes.
public enum WAVWriter {
    /// The bytes of a WAV file of `samples` (clipped to [-1, 1)) at `sampleRate`.
    public static func data(_ samples: [Float], sampleRate: Int) -> Data {
        var d = Data()
        d.reserveCapacity(44 + 2 * samples.count)
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
        func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
        let dataBytes = UInt32(samples.count * 2)
        d.append(contentsOf: Array("RIFF".utf8))
        u32(36 + dataBytes)
        d.append(contentsOf: Array("WAVEfmt ".utf8))
        u32(16)  // the fmt chunk: PCM, 1 channel, rate, bytes per second, block align, bits
        u16(1); u16(1); u32(UInt32(sampleRate)); u32(UInt32(sampleRate * 2)); u16(2); u16(16)
        d.append(contentsOf: Array("data".utf8))
        u32(dataBytes)
        for s in samples {
            let v = (Double(s) * 32768).rounded()
            u16(UInt16(bitPattern: v.isNaN ? 0 : Int16(max(-32768, min(32767, v)))))
        }
        return d
    }

    /// Writes a WAV file of `samples`; throws `CedFileError` (`.unwritable`) naming the file.
    public static func write(_ samples: [Float], sampleRate: Int, to url: URL) throws {
        try CedFileError.write(data(samples, sampleRate: sampleRate), to: url)
    }
}
