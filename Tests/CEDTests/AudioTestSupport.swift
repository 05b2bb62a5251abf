import Foundation
import XCTest
@testable import CED

/// Builds WAV files byte by byte for the audio tests (independently of the decoder), and
/// the integer test signal shared with `Fixtures/audio/generate.py`.
enum TestWAV {
    /// 24-bit signed integers [frame][channel]: a sawtooth per channel plus LCG noise, with a
    /// full-scale negative and positive sample first. Identical to `base_signal` in generate.py.
    static func baseSignal(frames: Int, channels: Int, seed: UInt32) -> [[Int64]] {
        var state = seed
        var out = [[Int64]](repeating: [Int64](repeating: 0, count: channels), count: frames)
        for i in 0..<frames {
            for c in 0..<channels {
                state = state &* 1_664_525 &+ 1_013_904_223
                let noise = Int64((state >> 8) & 0xFF_FFFF) - 0x80_0000
                let saw = Int64((i * (3 + 2 * c)) % 256) * 65536 - 0x80_0000
                out[i][c] = (saw >> 1) + (noise >> 2)
            }
        }
        out[0][0] = -0x80_0000
        if frames > 1 { out[1][0] = 0x7F_FFFF }
        return out
    }

    enum Encoding: String { case u8, s16, s24, s32, f32, f64 }

    static func bytesPerSample(_ e: Encoding) -> Int {
        switch e { case .u8: return 1; case .s16: return 2; case .s24: return 3; case .s32, .f32: return 4; case .f64: return 8 }
    }

    /// Sample data (interleaved, little endian) for the signal in the given encoding, with the
    /// same integer → stored-value mapping as generate.py.
    static func sampleData(_ v: [[Int64]], _ e: Encoding) -> [UInt8] {
        var b: [UInt8] = []
        b.reserveCapacity(v.count * (v.first?.count ?? 0) * bytesPerSample(e))
        for (i, frame) in v.enumerated() {
            for (c, x) in frame.enumerated() {
                switch e {
                case .u8: b.append(UInt8((x >> 16) + 128))
                case .s16: append(&b, UInt16(bitPattern: Int16(x >> 8)))
                case .s24:
                    let u = UInt32(bitPattern: Int32(x))
                    b += [UInt8(u & 0xFF), UInt8((u >> 8) & 0xFF), UInt8((u >> 16) & 0xFF)]
                case .s32:
                    let s = x * 256 + Int64((i * 7 + c * 13) & 0xFF)
                    append(&b, UInt32(bitPattern: Int32(s)))
                case .f32: append(&b, (Float(x) / 4_194_304).bitPattern)
                case .f64: append(&b, (Double(x) / 8_388_608 + Double(c + 1) * 0x1p-40).bitPattern)
                }
            }
        }
        return b
    }

    static func append<T: FixedWidthInteger>(_ b: inout [UInt8], _ v: T) {
        withUnsafeBytes(of: v.littleEndian) { b += $0 }
    }

    static func chunk(_ id: String, _ body: [UInt8], declaredSize: UInt32? = nil) -> [UInt8] {
        var b = Array(id.utf8)
        append(&b, declaredSize ?? UInt32(body.count))
        b += body
        if body.count % 2 == 1 { b.append(0) }
        return b
    }

    static func fmtBody(tag: UInt16, channels: Int, rate: Int, bytesPerSample: Int, bits: Int? = nil,
                        extensibleSubformat: UInt16? = nil, channelMask: UInt32 = 0) -> [UInt8] {
        var f: [UInt8] = []
        append(&f, extensibleSubformat == nil ? tag : UInt16(0xFFFE))
        append(&f, UInt16(channels))
        append(&f, UInt32(truncatingIfNeeded: rate))
        append(&f, UInt32(truncatingIfNeeded: rate * channels * bytesPerSample))
        append(&f, UInt16(channels * bytesPerSample))
        append(&f, UInt16(bits ?? bytesPerSample * 8))
        if let sub = extensibleSubformat {
            append(&f, UInt16(22))
            append(&f, UInt16(bits ?? bytesPerSample * 8))
            append(&f, channelMask)
            append(&f, sub)
            f += [0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71]
        }
        return f
    }

    /// How the container is laid out.
    enum Variant: String {
        /// fmt, data, then a trailing odd-sized chunk.
        case plain
        /// data size field 0 (streaming writers): read to end of file.
        case datasize0
        /// WAVE_FORMAT_EXTENSIBLE with a channel mask.
        case extensible
        /// LIST (odd size, padded), data, bext, fmt, cue: data before fmt.
        case chunkorder
        /// RF64 with ds64 and 0xFFFFFFFF size fields.
        case rf64
        /// RIFF and data sizes 0xFFFFFFFF with a LIST chunk before data.
        case streaming
    }

    static func file(_ e: Encoding, channels: Int, rate: Int, data: [UInt8], variant: Variant) -> [UInt8] {
        let bps = bytesPerSample(e)
        let tag: UInt16 = (e == .f32 || e == .f64) ? 3 : 1
        let fmt = variant == .extensible
            ? fmtBody(tag: tag, channels: channels, rate: rate, bytesPerSample: bps, extensibleSubformat: tag,
                      channelMask: (1 << UInt32(channels)) - 1)
            : fmtBody(tag: tag, channels: channels, rate: rate, bytesPerSample: bps)
        var body: [UInt8] = Array("WAVE".utf8)
        var riffSize: UInt32?
        var magic = "RIFF"
        switch variant {
        case .plain, .extensible:
            body += chunk("fmt ", fmt) + chunk("data", data) + chunk("id3 ", [1, 2, 3, 4, 5])
        case .datasize0:
            body += chunk("fmt ", fmt) + chunk("data", data, declaredSize: 0)
            riffSize = 0
        case .chunkorder:
            body += chunk("LIST", Array("INFOabc".utf8)) + chunk("data", data) + chunk("bext", [UInt8](repeating: 7, count: 9))
                + chunk("fmt ", fmt) + chunk("cue ", [0, 0, 0, 0])
        case .rf64:
            magic = "RF64"
            riffSize = 0xFFFF_FFFF
            var ds64: [UInt8] = []
            append(&ds64, UInt64(4 + 36 + 24 + 8 + fmt.count + 8 + data.count))
            append(&ds64, UInt64(data.count))
            append(&ds64, UInt64(data.count / (bps * channels)))
            append(&ds64, UInt32(0))
            body += chunk("ds64", ds64) + chunk("JUNK", [UInt8](repeating: 0, count: 12)) + chunk("fmt ", fmt)
                + chunk("data", data, declaredSize: 0xFFFF_FFFF)
        case .streaming:
            body += chunk("fmt ", fmt) + chunk("LIST", Array("INFOISFTx".utf8)) + chunk("data", data, declaredSize: 0xFFFF_FFFF)
            riffSize = 0xFFFF_FFFF
        }
        var out = Array(magic.utf8)
        append(&out, riffSize ?? UInt32(body.count))
        return out + body
    }

    /// A fresh temporary directory, removed at the end of the test.
    static func tempDir(_ test: XCTestCase) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ced-audio-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        test.addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    static func write(_ bytes: [UInt8], to url: URL) throws {
        try Data(bytes).write(to: url)
    }

    static var fixturesDir: URL {
        Reference.packageRoot.appendingPathComponent("Tests/CEDTests/Fixtures/audio")
    }

    /// ffmpeg on PATH; skipped locally when absent, a failure when CI is set.
    static func requireFFmpeg() throws -> String {
        if let p = FFmpeg.findOnPath() { return p }
        let message = "ffmpeg not found on PATH (apt-get install ffmpeg)"
        if ProcessInfo.processInfo.environment["CI"] != nil {
            XCTFail(message)
            throw CedInputError(message)
        }
        throw XCTSkip(message)
    }

    /// Runs ffmpeg with arguments; fails the test on a non-zero exit.
    static func ffmpeg(_ exe: String, _ args: [String]) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = ["-nostdin", "-loglevel", "error", "-y"] + args
        p.standardInput = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw CedInputError("ffmpeg \(args) failed with \(p.terminationStatus)") }
    }
}

/// Asserts that `body` throws an `AudioError` of `kind` naming the file; returns it.
@discardableResult
func assertAudioError<T>(_ kind: AudioError.Kind, file path: String, _ body: () throws -> T,
                         mentions: [String] = [], sourceFile: StaticString = #filePath, line: UInt = #line) -> AudioError? {
    do {
        _ = try body()
        XCTFail("expected AudioError.\(kind) for \(path), but decoding succeeded", file: sourceFile, line: line)
    } catch let e as AudioError {
        XCTAssertEqual(e.kind, kind, "\(e)", file: sourceFile, line: line)
        XCTAssertEqual(e.file, path, file: sourceFile, line: line)
        XCTAssertTrue(e.description.contains(path), file: sourceFile, line: line)
        for m in mentions {
            XCTAssertTrue(e.description.lowercased().contains(m.lowercased()), "'\(m)' not in: \(e)", file: sourceFile, line: line)
        }
        return e
    } catch {
        XCTFail("expected AudioError.\(kind), got \(type(of: error)): \(error)", file: sourceFile, line: line)
    }
    return nil
}
