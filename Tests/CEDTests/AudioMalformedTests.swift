import XCTest
@testable import CED
#if canImport(Glibc)
import Glibc
#endif

/// A generated corpus of broken inputs: each gives a typed `AudioError` naming the file and
/// the reason (or, for damage that can be worked around, a warning), never a crash or hang.
final class AudioMalformedTests: XCTestCase {
    let noFFmpeg = AudioDecodingOptions(ffmpeg: .disabled)

    /// A valid 16-bit file body for `frames` frames.
    func s16(_ frames: Int, channels: Int = 1, rate: Int = 16000) -> [UInt8] {
        let v = TestWAV.baseSignal(frames: frames, channels: channels, seed: 3)
        return TestWAV.sampleData(v, .s16)
    }

    func riff(_ chunks: [UInt8], magic: String = "RIFF", size: UInt32? = nil) -> [UInt8] {
        var out = Array(magic.utf8)
        TestWAV.append(&out, size ?? UInt32(4 + chunks.count))
        return out + Array("WAVE".utf8) + chunks
    }

    func fmt(tag: UInt16 = 1, channels: Int = 1, rate: Int = 16000, bytes: Int = 2, bits: Int? = nil) -> [UInt8] {
        TestWAV.chunk("fmt ", TestWAV.fmtBody(tag: tag, channels: channels, rate: rate, bytesPerSample: bytes, bits: bits))
    }

    /// Writes `bytes` and checks decoding throws `kind` naming the file (via both APIs).
    @discardableResult
    func expect(_ kind: AudioError.Kind, _ bytes: [UInt8], name: String, mentions: [String] = [],
                options: AudioDecodingOptions? = nil, line: UInt = #line) throws -> AudioError? {
        let url = try dir().appendingPathComponent(name)
        try TestWAV.write(bytes, to: url)
        let opts = options ?? noFFmpeg
        assertAudioError(kind, file: url.path, { try AudioFileReader(path: url.path, options: opts).readAllMono() },
                         mentions: mentions, line: line)
        let e = assertAudioError(kind, file: url.path, { try Waveform(path: url.path, options: opts) },
                                 mentions: mentions, line: line)
        if let e { print("malformed corpus: \(e)") }
        return e
    }

    private var tmp: URL?
    func dir() throws -> URL {
        if let tmp { return tmp }
        let d = try TestWAV.tempDir(self)
        tmp = d
        return d
    }

    func testEmptyAndHeaderOnly() throws {
        try expect(.empty, [], name: "empty.wav", mentions: ["empty"])
        // A 44-byte header that declares 1000 bytes of data that never came.
        let header = riff(fmt() + Array("data".utf8) + [0xE8, 0x03, 0, 0])
        let e = try expect(.noAudio, header, name: "header-only.wav", mentions: ["ends right after its header", "1000 bytes"])
        XCTAssertEqual(e?.offset, 44)
        // Data size 0 (streaming writer) and nothing after the header.
        try expect(.noAudio, riff(fmt() + TestWAV.chunk("data", [])), name: "zero-data.wav")
    }

    func testNotRIFF() throws {
        try expect(.ffmpegNotFound, Array("hello, this is not audio at all\n".utf8), name: "text.wav",
                   mentions: ["not a RIFF/WAVE file", "install ffmpeg", "apt-get install ffmpeg"])
        try expect(.ffmpegNotFound, Array("fLaC".utf8) + [UInt8](repeating: 0, count: 40), name: "song.flac",
                   mentions: ["FLAC", "install ffmpeg"])
        try expect(.ffmpegNotFound, Array("ID3".utf8) + [UInt8](repeating: 0, count: 40), name: "song.mp3",
                   mentions: ["MP3", "install ffmpeg"])
        try expect(.malformed, Array("RIFF".utf8) + [1, 2, 3, 4, 5, 6], name: "cut-riff.wav", mentions: ["RIFF header"])
    }

    func testNotAudioWithFFmpegPresent() throws {
        _ = try TestWAV.requireFFmpeg()
        try expect(.ffmpegFailed, Array("hello, this is not audio at all\n".utf8), name: "text.bin",
                   mentions: ["ffmpeg could not decode"], options: AudioDecodingOptions())
        try expect(.ffmpegFailed, Array("fLaC".utf8) + [UInt8](repeating: 0xAB, count: 200), name: "broken.flac",
                   mentions: ["ffmpeg"], options: AudioDecodingOptions())
    }

    func testMissingOrDamagedChunks() throws {
        try expect(.malformed, riff([]), name: "no-chunks.wav", mentions: ["no fmt chunk"])
        try expect(.malformed, riff(fmt()), name: "no-data.wav", mentions: ["no data chunk"])
        try expect(.malformed, riff(TestWAV.chunk("data", s16(10))), name: "no-fmt.wav", mentions: ["no fmt chunk"])
        try expect(.malformed, riff(TestWAV.chunk("fmt ", [1, 0, 1, 0, 0x80, 0x3E, 0, 0, 0, 0, 0, 0, 2, 0])
                                    + TestWAV.chunk("data", s16(10))), name: "short-fmt.wav", mentions: ["14 bytes"])
        // fmt declares 16 bytes, the file ends after 6.
        try expect(.malformed, riff(Array("fmt ".utf8) + [16, 0, 0, 0, 1, 0, 1, 0, 0x80, 0x3E], size: 100),
                   name: "cut-fmt.wav", mentions: ["cut off"])
        // An absurd fmt size.
        try expect(.malformed, riff(Array("fmt ".utf8) + [0xF0, 0xFF, 0xFF, 0xFF] + TestWAV.fmtBody(tag: 1, channels: 1, rate: 16000, bytesPerSample: 2)
                                    + TestWAV.chunk("data", s16(10))), name: "absurd-fmt.wav",
                   mentions: ["no data chunk", "chunk 'fmt ' at byte 12 declares 4294967280 bytes"])
        // A metadata chunk claiming 4 GB before fmt.
        try expect(.malformed, riff(Array("LIST".utf8) + [0xF0, 0xFF, 0xFF, 0xFF] + fmt() + TestWAV.chunk("data", s16(10))),
                   name: "absurd-list.wav", mentions: ["no fmt chunk", "'LIST' at byte 12"])
        // data before fmt with an unknown (streaming) size cannot be located.
        try expect(.malformed, riff(TestWAV.chunk("data", s16(10), declaredSize: 0xFFFF_FFFF) + fmt()),
                   name: "data-first-streaming.wav", mentions: ["before the fmt chunk"])
        // Extensible with a too-short fmt.
        try expect(.malformed, riff(TestWAV.chunk("fmt ", TestWAV.fmtBody(tag: 0xFFFE, channels: 1, rate: 16000, bytesPerSample: 2))
                                    + TestWAV.chunk("data", s16(10))), name: "short-extensible.wav", mentions: ["EXTENSIBLE"])
    }

    func testImpossibleFormatFields() throws {
        let data = TestWAV.chunk("data", s16(10))
        try expect(.malformed, riff(fmt(channels: 0) + data), name: "zero-channels.wav", mentions: ["0 channels"])
        try expect(.malformed, riff(fmt(rate: 0) + data), name: "zero-rate.wav", mentions: ["0 Hz"])
        try expect(.unsupported, riff(fmt(rate: 500) + data), name: "rate-500.wav", mentions: ["500 Hz"])
        try expect(.unsupported, riff(fmt(rate: 4_000_000_000) + data), name: "rate-4G.wav", mentions: ["4000000000 Hz"])
        var zeroAlign = TestWAV.fmtBody(tag: 1, channels: 1, rate: 16000, bytesPerSample: 2)
        zeroAlign[12] = 0; zeroAlign[13] = 0
        try expect(.malformed, riff(TestWAV.chunk("fmt ", zeroAlign) + data), name: "zero-align.wav", mentions: ["block align"])
        // 16-bit samples declared in a 3-byte block for 2 channels.
        var badAlign = TestWAV.fmtBody(tag: 1, channels: 2, rate: 16000, bytesPerSample: 2)
        badAlign[12] = 3
        try expect(.malformed, riff(TestWAV.chunk("fmt ", badAlign) + data), name: "bad-align.wav", mentions: ["block align"])
        try expect(.unsupported, riff(fmt(tag: 3, bytes: 2) + data), name: "float16.wav", mentions: ["16-bit IEEE float"])
        try expect(.unsupported, riff(fmt(bytes: 8) + TestWAV.chunk("data", [UInt8](repeating: 0, count: 80))),
                   name: "int64.wav", mentions: ["64-bit integer"])
        // RF64 whose ds64 declares an impossible data size.
        var ds64: [UInt8] = []
        TestWAV.append(&ds64, UInt64(100)); TestWAV.append(&ds64, UInt64(1) << 63); TestWAV.append(&ds64, UInt64(0))
        TestWAV.append(&ds64, UInt32(0))
        try expect(.malformed, riff(TestWAV.chunk("ds64", ds64) + fmt() + TestWAV.chunk("data", s16(10), declaredSize: 0xFFFF_FFFF),
                                    magic: "RF64", size: 0xFFFF_FFFF), name: "rf64-absurd.wav", mentions: ["impossible data size"])
    }

    func testCodecsThatNeedFFmpeg() throws {
        let data = TestWAV.chunk("data", [UInt8](repeating: 0x55, count: 64))
        try expect(.ffmpegNotFound, riff(fmt(tag: 7, bytes: 1) + data), name: "ulaw.wav", mentions: ["μ-law", "install ffmpeg"])
        try expect(.ffmpegNotFound, riff(fmt(tag: 6, bytes: 1) + data), name: "alaw.wav", mentions: ["A-law"])
        try expect(.ffmpegNotFound, riff(fmt(tag: 2, bytes: 1, bits: 4) + data), name: "msadpcm.wav", mentions: ["ADPCM"])
        try expect(.ffmpegNotFound, riff(fmt(tag: 0x11, bytes: 1, bits: 4) + data), name: "imaadpcm.wav", mentions: ["IMA ADPCM"])
        var unknownGUID = TestWAV.fmtBody(tag: 1, channels: 1, rate: 16000, bytesPerSample: 2, extensibleSubformat: 1)
        unknownGUID[39] = 0x00
        try expect(.ffmpegNotFound, riff(TestWAV.chunk("fmt ", unknownGUID) + data), name: "guid.wav", mentions: ["GUID"])
    }

    func testNonFiniteFloatSamples() throws {
        var f32: [UInt8] = []
        for v: Float in [0.1, 0.2, .nan, 0.3] { TestWAV.append(&f32, v.bitPattern) }
        let e = try expect(.nonFiniteSamples, riff(fmt(tag: 3, bytes: 4) + TestWAV.chunk("data", f32)), name: "nan.wav",
                           mentions: ["sample 2", "NaN"])
        XCTAssertEqual(e?.offset, 44 + 8)
        var f64: [UInt8] = []
        for v: Double in [0.1, -.infinity, 0.2, 0.3] { TestWAV.append(&f64, v.bitPattern) }
        try expect(.nonFiniteSamples, riff(fmt(tag: 3, channels: 2, bytes: 8) + TestWAV.chunk("data", f64)), name: "inf.wav",
                   mentions: ["sample 0 (channel 1)", "infinite"])
        var big: [UInt8] = []
        for v: Double in [0.1, 1e300] { TestWAV.append(&big, v.bitPattern) }
        try expect(.nonFiniteSamples, riff(fmt(tag: 3, bytes: 8) + TestWAV.chunk("data", big)), name: "huge.wav",
                   mentions: ["too large"])
        // Finite samples whose channel average overflows float32.
        var over: [UInt8] = []
        for v: Float in [3e38, 3e38] { TestWAV.append(&over, v.bitPattern) }
        try expect(.nonFiniteSamples, riff(fmt(tag: 3, channels: 2, bytes: 4) + TestWAV.chunk("data", over)), name: "overflow.wav",
                   mentions: ["overflows"])
    }

    func testPathsThatAreNotFiles() throws {
        let d = try dir()
        assertAudioError(.notARegularFile, file: d.path, { try Waveform(path: d.path) }, mentions: ["directory"])
        let missing = d.appendingPathComponent("missing.wav").path
        assertAudioError(.fileNotFound, file: missing, { try Waveform(path: missing) }, mentions: ["no such file"])
        let file = d.appendingPathComponent("plain.wav")
        try TestWAV.write(riff(fmt() + TestWAV.chunk("data", s16(10))), to: file)
        let through = file.path + "/x.wav"
        assertAudioError(.unreadable, file: through, { try Waveform(path: through) })
        #if canImport(Glibc)
        let fifo = d.appendingPathComponent("fifo.wav").path
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        assertAudioError(.notARegularFile, file: fifo, { try Waveform(path: fifo) }, mentions: ["FIFO"])
        #endif
    }

    // MARK: Damage that is worked around, with a warning

    func testTruncatedFileDecodesWhatIsThereWithWarning() throws {
        let frames = 1000
        let v = TestWAV.baseSignal(frames: frames, channels: 2, seed: 9)
        let data = TestWAV.sampleData(v, .s16)
        let present = 601 * 4 + 3  // 601 whole frames and a partial one
        let bytes = riff(fmt(channels: 2, bytes: 2) + Array("data".utf8) + [UInt8](unsafeUninitializedCapacity: 4) { b, n in
            let s = UInt32(data.count).littleEndian
            withUnsafeBytes(of: s) { for i in 0..<4 { b[i] = $0[i] } }
            n = 4
        } + data.prefix(present), size: UInt32(36 + data.count))
        let url = try dir().appendingPathComponent("crashed-recorder.wav")
        try TestWAV.write(bytes, to: url)
        let r = try AudioFileReader(path: url.path)
        XCTAssertEqual(r.info.frameCount, 601)
        let mono = try r.readAllMono()
        XCTAssertEqual(mono.count, 601)
        for i in 0..<601 {
            let a = Float(Int16(v[i][0] >> 8)) / 32768, b = Float(Int16(v[i][1] >> 8)) / 32768
            XCTAssertEqual(mono[i], (a + b) / 2)
        }
        XCTAssertEqual(r.warnings.map(\.kind), [.truncated, .partialFrame])
        XCTAssertTrue(r.warnings[0].description.contains(url.path))
        XCTAssertTrue(r.warnings[0].message.contains("\(data.count) bytes"), r.warnings[0].message)
        let w = try Waveform(contentsOf: url)
        XCTAssertEqual(w.samples.count, 601)
        XCTAssertEqual(w.warnings.first?.kind, .truncated)
        // A complete file has no warnings.
        let whole = try dir().appendingPathComponent("complete.wav")
        try TestWAV.write(riff(fmt(channels: 2, bytes: 2) + TestWAV.chunk("data", data)), to: whole)
        XCTAssertEqual(try Waveform(contentsOf: whole).warnings, [])
    }

    func testBatchGoesOnAfterErrors() throws {
        // A caller decoding several files gets one result per file.
        let d = try dir()
        let good = d.appendingPathComponent("good.wav")
        try TestWAV.write(riff(fmt() + TestWAV.chunk("data", s16(100))), to: good)
        let bad = d.appendingPathComponent("bad.wav")
        try TestWAV.write(Array("RIFF....WAVE".utf8), to: bad)
        var ok = 0, failed = 0
        for p in [bad.path, good.path, d.path, bad.path, good.path] {
            do { _ = try Waveform(path: p, options: noFFmpeg); ok += 1 } catch is AudioError { failed += 1 }
        }
        XCTAssertEqual(ok, 2)
        XCTAssertEqual(failed, 3)
    }
}
