import XCTest
@testable import CED

/// The streaming extractor gives exactly the whole-waveform features, whatever the blocks.
final class FeatureStreamTests: XCTestCase {
    func stream(_ extractor: CedFeatureExtractor, _ x: [Float], block: Int) throws -> Tensor {
        let s = extractor.makeStream()
        var i = 0
        while i < x.count {
            let n = min(block, x.count - i)
            try s.append(Array(x[i ..< i + n]))
            i += n
        }
        return try s.finish()
    }

    func signal(_ n: Int, seed: UInt64) -> [Float] {
        var s = seed
        return (0..<n).map { i in
            s = s &* 6364136223846793005 &+ 1442695040888963407
            let noise = Float(Double(s >> 11) / Double(1 << 53) - 0.5)
            return 0.5 * sin(Float(i) * 0.05) * (i % 3000 < 1500 ? 1 : 0.01) + 0.1 * noise
        }
    }

    func testEqualsWholeWaveformForEveryBlockSize() throws {
        var configs: [CedFeatureExtractorConfig] = [CedFeatureExtractorConfig()]
        var c = CedFeatureExtractorConfig()
        c.nFft = 400; c.winSize = 300; c.hopSize = 100; c.featureSize = 40; c.fMin = 50; c.fMax = 7000
        configs.append(c)
        c.center = false
        configs.append(c)
        c = CedFeatureExtractorConfig()
        c.nFft = 401; c.winSize = 401; c.hopSize = 161
        configs.append(c)
        for config in configs {
            let extractor = try CedFeatureExtractor(config: config)
            // The long signal exercises discarding consumed samples (past 65536 + margin).
            for n in [1, 2, 100, 255, 256, 257, 258, 400, 401, 513, 1000, 5000] + (config.nFft == 400 ? [] : [80_001]) {
                if !config.center && n < config.nFft { continue }
                let x = signal(n, seed: UInt64(n))
                let whole = try extractor(x)
                // Tiny blocks only on short signals (each block is a call), big ones on long.
                for block in [1, 7, 160, 511, 4096, 70_000, 1 << 20] where (block <= max(n, 7) || block == 1 << 20) && n / block <= 100 {
                    let streamed = try stream(extractor, x, block: block)
                    XCTAssertEqual(streamed.shape, whole.shape, "n \(n) block \(block) \(config)")
                    XCTAssertEqual(streamed.scalars, whole.scalars, "n \(n) block \(block) center \(config.center) n_fft \(config.nFft)")
                }
            }
        }
    }

    func testGoldenWaveStreamsLikeTheGoldenMel() throws {
        let golden = try Reference.golden("micro")
        let extractor = try CedFeatureExtractor()
        let x = try golden.tensor("tones_noise_16k_mono_f32_23s.wav/wave16k").scalars
        XCTAssertEqual(try stream(extractor, x, block: 65536).scalars, try extractor(x).scalars)
    }

    func testErrors() throws {
        let extractor = try CedFeatureExtractor()
        XCTAssertThrowsError(try extractor.makeStream().finish()) { XCTAssertTrue("\($0)".contains("empty")) }
        let s = extractor.makeStream()
        try s.append([0, 0, 0])
        XCTAssertThrowsError(try s.append([1, .nan])) { XCTAssertTrue("\($0)".contains("sample 4"), "\($0)") }
    }
}

extension FeatureStreamTests {
    /// Files featurised block by block equal the whole-waveform path, resampling included.
    func testFilesStreamThroughTheTagger() throws {
        let tagger = try CedAudioTagger(model: ModelGoldenTests.loadModel("micro"), featureExtractor: CedFeatureExtractor())
        for name in ["chirp_44k1_stereo_s24.wav", "ukulele_speech_32k_mono_s16.wav", "tones_noise_16k_mono_f32_23s.wav"] {
            let url = try Reference.audio(name)
            let f = try tagger.features(contentsOf: url)
            let wave = try Waveform(contentsOf: url)
            XCTAssertEqual(f.sampleCount, wave.samples.count)
            XCTAssertEqual(f.mel, try tagger.featureExtractor(wave.samples), name)
            XCTAssertEqual(try tagger.scores(contentsOf: url), try tagger.scores(wave.samples), name)
        }
        let empty = FileManager.default.temporaryDirectory.appendingPathComponent("ced-empty-\(UUID().uuidString).wav")
        try Data().write(to: empty)
        defer { try? FileManager.default.removeItem(at: empty) }
        XCTAssertThrowsError(try tagger.features(contentsOf: empty)) { XCTAssertTrue($0 is AudioError, "\($0)") }
    }
}
