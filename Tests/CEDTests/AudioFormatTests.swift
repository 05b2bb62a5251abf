import XCTest
@testable import CED

/// Files in formats, rates and layouts beyond the shared ones, checked against the
/// independent numpy implementation in Fixtures/audio/generate.py (expected.safetensors).
final class AudioFormatTests: XCTestCase {
    struct Case: Decodable {
        var name: String
        var encoding: String
        var channels: Int
        var rate: Int
        var frames: Int
        var variant: String
        var seed: UInt32
    }

    static let expectedFile: SafeTensorsFile? = try? SafeTensorsFile(
        contentsOf: TestWAV.fixturesDir.appendingPathComponent("expected.safetensors"))

    func loadCases() throws -> (SafeTensorsFile, [Case]) {
        let f = try XCTUnwrap(Self.expectedFile, "Fixtures/audio/expected.safetensors is missing")
        let json = try XCTUnwrap(f.metadata["cases"])
        return (f, try JSONDecoder().decode([Case].self, from: Data(json.utf8)))
    }

    /// Writes the case's WAV into `dir`.
    func writeWAV(_ c: Case, in dir: URL) throws -> URL {
        let enc = try XCTUnwrap(TestWAV.Encoding(rawValue: c.encoding))
        let variant = try XCTUnwrap(TestWAV.Variant(rawValue: c.variant))
        let v = TestWAV.baseSignal(frames: c.frames, channels: c.channels, seed: c.seed)
        let bytes = TestWAV.file(enc, channels: c.channels, rate: c.rate, data: TestWAV.sampleData(v, enc), variant: variant)
        let url = dir.appendingPathComponent("\(c.name).wav")
        try TestWAV.write(bytes, to: url)
        return url
    }

    func testGeneratedWAVsMatchNumpyReference() throws {
        let (expected, cases) = try loadCases()
        let dir = try TestWAV.tempDir(self)
        var rates = Set<Int>()
        for c in cases where !c.name.hasPrefix("mp3") {
            let url = try writeWAV(c, in: dir)
            let w = try Waveform(contentsOf: url, options: AudioDecodingOptions(ffmpeg: .disabled))
            let want = try expected.tensor(c.name).scalars
            XCTAssertEqual(w.samples.count, want.count, c.name)
            let d = maxAbsDiff(w.samples, want)
            XCTAssertLessThanOrEqual(d, 1e-5, "\(c.name): max abs difference \(d)")
            print("generated \(c.name): max abs difference \(d)")
            XCTAssertEqual(w.info.decoder, .wav)
            XCTAssertEqual(w.info.channels, c.channels, c.name)
            XCTAssertEqual(w.info.sampleRate, c.rate, c.name)
            XCTAssertEqual(w.info.frameCount, c.frames, c.name)
            XCTAssertTrue(w.warnings.isEmpty, "\(c.name): \(w.warnings)")
            rates.insert(c.rate)
        }
        // Every rate users meet is covered.
        XCTAssertTrue(Set([8000, 11025, 22050, 24000, 32000, 44100, 48000, 96000]).isSubset(of: rates))
    }

    func testEncodingsAndContainersAreReported() throws {
        let (_, cases) = try loadCases()
        let dir = try TestWAV.tempDir(self)
        let expect: [String: (AudioSampleEncoding, String)] = [
            "u8_22050_mono": (.pcmU8, "RIFF"), "s24_24000_3ch_extensible": (.pcmS24, "RIFF"),
            "s32_48000_stereo": (.pcmS32, "RIFF"), "f32_44100_6ch_extensible": (.float32, "RIFF"),
            "f64_16000_stereo": (.float64, "RIFF"), "s16_44100_stereo_rf64": (.pcmS16, "RF64"),
        ]
        for c in cases {
            guard let (enc, container) = expect[c.name] else { continue }
            let r = try AudioFileReader(path: try writeWAV(c, in: dir).path)
            XCTAssertEqual(r.info.encoding, enc, c.name)
            XCTAssertEqual(r.info.format, container, c.name)
        }
    }

    /// Exact sample scaling, without resampling: the first two frames hold the most negative
    /// and the most positive code of each width.
    func testFullScaleSampleScaling() throws {
        let dir = try TestWAV.tempDir(self)
        let v = TestWAV.baseSignal(frames: 4, channels: 1, seed: 1)
        let cases: [(TestWAV.Encoding, Float, Float)] = [
            (.u8, -1, 127.0 / 128), (.s16, -1, 32767.0 / 32768), (.s24, -1, 8_388_607.0 / 8_388_608),
            (.s32, -1, Float(Int32(0x7FFF_FFFF)) / 2_147_483_648),
        ]
        for (enc, lo, hi) in cases {
            let url = dir.appendingPathComponent("\(enc).wav")
            try TestWAV.write(TestWAV.file(enc, channels: 1, rate: 16000, data: TestWAV.sampleData(v, enc), variant: .plain), to: url)
            let s = try AudioFileReader(path: url.path).readAllMono()
            XCTAssertEqual(s.count, 4)
            XCTAssertEqual(s[0], lo, "\(enc)")
            // s32 stores v*256 + 13*0 + 7: close to full scale, rounded to float32.
            if enc != .s32 { XCTAssertEqual(s[1], hi, "\(enc)") } else { XCTAssertEqual(s[1], Float(0x7FFF_FF07 as Int32) / 2_147_483_648) }
        }
    }

    func testStreamingEqualsWholeFileForEveryRate() throws {
        let (_, cases) = try loadCases()
        let dir = try TestWAV.tempDir(self)
        for c in cases where !c.name.hasPrefix("mp3") {
            let url = try writeWAV(c, in: dir)
            let whole = try Waveform(contentsOf: url).samples
            for blockFrames in [1, 37, 500] {
                let s = try WaveformStream(contentsOf: url, options: AudioDecodingOptions(blockFrames: blockFrames))
                var streamed: [Float] = []
                while let b = try s.next() { streamed += b }
                XCTAssertEqual(streamed, whole, "\(c.name), blocks of \(blockFrames)")
                XCTAssertEqual(s.expectedSampleCount, whole.count, c.name)
            }
        }
    }

    // MARK: ffmpeg

    func testFLACThroughFFmpegMatchesReference() throws {
        let exe = try TestWAV.requireFFmpeg()
        let (expected, cases) = try loadCases()
        let dir = try TestWAV.tempDir(self)
        let c = try XCTUnwrap(cases.first { $0.name == "s24_96000_stereo" })
        let wav = try writeWAV(c, in: dir)
        let flac = dir.appendingPathComponent("x.flac")
        try TestWAV.ffmpeg(exe, ["-i", wav.path, "-c:a", "flac", flac.path])
        let w = try Waveform(contentsOf: flac)
        XCTAssertEqual(w.info.decoder, .ffmpeg)
        XCTAssertEqual(w.info.format, "FLAC")
        XCTAssertEqual(w.info.sampleRate, 96000)
        XCTAssertEqual(w.info.channels, 2)
        let want = try expected.tensor(c.name).scalars
        let d = maxAbsDiff(w.samples, want)
        XCTAssertLessThanOrEqual(d, 1e-5, "FLAC: max abs difference \(d)")
        // Lossless: identical to the native WAV path.
        XCTAssertEqual(w.samples, try Waveform(contentsOf: wav).samples)
    }

    func testAudioTrackOfVideoFileThroughFFmpeg() throws {
        let exe = try TestWAV.requireFFmpeg()
        let (expected, cases) = try loadCases()
        let dir = try TestWAV.tempDir(self)
        let c = try XCTUnwrap(cases.first { $0.name == "s16_44100_stereo_rf64" })
        let wav = try writeWAV(c, in: dir)
        let mkv = dir.appendingPathComponent("clip.mkv")
        // Video stream first, then lossless audio.
        try TestWAV.ffmpeg(exe, ["-f", "lavfi", "-i", "color=c=black:s=16x16:r=10:d=0.2", "-i", wav.path,
                                 "-map", "0:v", "-map", "1:a", "-c:v", "ffv1", "-c:a", "flac", "-shortest", mkv.path])
        let w = try Waveform(contentsOf: mkv)
        XCTAssertEqual(w.info.decoder, .ffmpeg)
        XCTAssertEqual(w.info.format, "Matroska/WebM")
        let d = maxAbsDiff(w.samples, try expected.tensor(c.name).scalars)
        XCTAssertLessThanOrEqual(d, 1e-5, "MKV audio track: max abs difference \(d)")
    }

    func testMP3ThroughFFmpegMatchesReference() throws {
        _ = try TestWAV.requireFFmpeg()
        let (expected, _) = try loadCases()
        let mp3 = TestWAV.fixturesDir.appendingPathComponent("tone_44k1_mono.mp3")
        let w = try Waveform(contentsOf: mp3)
        XCTAssertEqual(w.info.decoder, .ffmpeg)
        XCTAssertEqual(w.info.format, "MP3")
        XCTAssertEqual(w.info.sampleRate, 44100)
        let d = maxAbsDiff(w.samples, try expected.tensor("mp3_44100_mono").scalars)
        XCTAssertLessThanOrEqual(d, 1e-5, "MP3: max abs difference \(d)")
        // Streaming through the pipe in small blocks gives the same samples.
        let s = try WaveformStream(contentsOf: mp3, options: AudioDecodingOptions(blockFrames: 100))
        var streamed: [Float] = []
        while let b = try s.next() { streamed += b }
        XCTAssertEqual(streamed, w.samples)
        XCTAssertNil(s.expectedSampleCount)
    }

    /// μ-law WAV: decoded through ffmpeg when present; G.711 expansion checked against the
    /// closed-form decoder, per sample, before resampling.
    func testMuLawWAVThroughFFmpeg() throws {
        _ = try TestWAV.requireFFmpeg()
        let dir = try TestWAV.tempDir(self)
        let codes: [UInt8] = (0..<256).map { UInt8($0) }
        var fmt = TestWAV.fmtBody(tag: 7, channels: 1, rate: 16000, bytesPerSample: 1)
        fmt += [0, 0]  // cbSize
        // Typed pieces: Swift 6.0's type checker gives up on this as one expression.
        let head: [UInt8] = Array("RIFF".utf8) + [0, 0, 0, 0] + Array("WAVE".utf8)
        let chunks: [UInt8] = TestWAV.chunk("fmt ", fmt) + TestWAV.chunk("fact", [0, 1, 0, 0]) + TestWAV.chunk("data", codes)
        let bytes: [UInt8] = head + chunks
        let url = dir.appendingPathComponent("ulaw.wav")
        try TestWAV.write(bytes, to: url)
        let r = try AudioFileReader(path: url.path)
        XCTAssertEqual(r.info.decoder, .ffmpeg)
        XCTAssertTrue(r.info.format.contains("μ-law"), r.info.format)
        let s = try r.readAllMono()
        XCTAssertEqual(s.count, 256)
        for (i, code) in codes.enumerated() {
            // ITU-T G.711 μ-law expansion to 16-bit, then /32768.
            let u = ~code
            let t = ((Int(u & 0x0F) << 3) + 0x84) << (Int(u & 0x70) >> 4)
            let linear = (u & 0x80) != 0 ? 0x84 - t : t - 0x84
            XCTAssertEqual(s[i], Float(linear) / 32768, "code \(code)")
        }
    }
}
