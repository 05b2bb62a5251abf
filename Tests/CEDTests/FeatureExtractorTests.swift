import Foundation
import XCTest
@testable import CED

/// Log-mel front end against (1) the golden `A/mel` tensors from the authors' torchaudio
/// pipeline, (2) an independent numpy float64 implementation (Fixtures/gen_mel_fixture.py)
/// on non-default configurations, and (3) a naive O(n²) DFT for the FFT itself.
final class FeatureExtractorTests: XCTestCase {

    // MARK: goldens

    func testMatchesGoldenMelWithinHundredthOfADecibel() throws {
        let golden = try Reference.golden("micro")
        let extractor = try CedFeatureExtractor()
        let audios = golden.names.filter { $0.hasSuffix("/wave16k") }.map { String($0.dropLast("/wave16k".count)) }
        XCTAssertGreaterThanOrEqual(audios.count, 5)
        var worst: Float = 0
        for audio in audios.sorted() {
            let wave = try golden.tensor("\(audio)/wave16k")
            let expected = try golden.tensor("\(audio)/mel")
            let mel = try extractor(wave.scalars)
            XCTAssertEqual(mel.shape, expected.shape, audio)
            XCTAssertEqual(mel.shape, [64, 1 + wave.count / 160], audio)
            let err = maxAbsDiff(mel.scalars, expected.scalars)
            XCTAssertLessThan(err, 0.01, "\(audio): max |Δ| = \(err) dB")
            worst = max(worst, err)
        }
        print("golden mel: worst max |Δ| over \(audios.count) clips = \(worst) dB")
    }

    func testBatchMatchesGoldenPerClip() throws {
        let golden = try Reference.golden("micro")
        let extractor = try CedFeatureExtractor()
        let names = ["snap_16k_mono_s16.wav", "chirp_44k1_stereo_s24.wav"]
        let waves = try names.map { try golden.tensor("\($0)/wave16k").scalars }
        // A quiet copy of the snap (−40 dB, minimum −91.4 dB): its own top_db floor
        // (−141 dB) applies; the chirp's (31.45 − 120 = −88.55 dB) would clip it.
        let quiet = waves[0].map { $0 * 0.01 }
        let mels = try extractor(waves + [quiet])
        XCTAssertEqual(mels.count, 3)
        for (i, name) in names.enumerated() {
            let expected = try golden.tensor("\(name)/mel")
            XCTAssertEqual(mels[i].shape, expected.shape)
            XCTAssertLessThan(maxAbsDiff(mels[i].scalars, expected.scalars), 0.01, name)
        }
        // Scaling the waveform by 0.01 shifts every dB value by exactly −40 (power ×1e-4).
        let snap = try golden.tensor("snap_16k_mono_s16.wav/mel")
        XCTAssertLessThan(snap.scalars.min()! - 40, mels[1].scalars.max()! - 120)
        XCTAssertLessThan(maxAbsDiff(mels[2].scalars, snap.scalars.map { $0 - 40 }), 0.01)
    }

    // MARK: independent numpy float64 reference

    struct Fixture: Decodable {
        struct Case: Decodable {
            var name: String
            var config: CedFeatureExtractorConfig
            var length: Int
            var signal_sum: Double
            var shape: [Int]
            var mel_db: [Float]
            var fb_shape: [Int]?
            var fb_nonzero: [[Double]]?
        }
        var cases: [Case]
    }

    static func loadFixture() throws -> Fixture {
        let url = Reference.packageRoot.appendingPathComponent("Tests/CEDTests/Fixtures/mel_fixture.json")
        return try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
    }

    /// The fixture's waveform, regenerated with the formula in gen_mel_fixture.py `signal()`.
    static func fixtureSignal(_ n: Int, sampleRate: Int) -> [Float] {
        (0..<n).map { i in
            let t = Double(i) / Double(sampleRate)
            let lcg = Double((i * 1103515245 + 12345) % 2147483648) / 2147483648.0 - 0.5
            let x = 0.5 * sin(2 * Double.pi * 440.0 * t) + 0.25 * sin(2 * Double.pi * 2750.3 * t + 0.5) + 0.02 * lcg
            return Float(x)
        }
    }

    func testMatchesNumpyFloat64Reference() throws {
        let fixture = try Self.loadFixture()
        XCTAssertEqual(fixture.cases.count, 6)
        for c in fixture.cases {
            let x = Self.fixtureSignal(c.length, sampleRate: c.config.samplingRate)
            XCTAssertEqual(x.reduce(0.0) { $0 + Double($1) }, c.signal_sum, accuracy: 1e-9, "\(c.name): signal formula drifted")
            let extractor = try CedFeatureExtractor(config: c.config)
            let mel = try extractor(x)
            XCTAssertEqual(mel.shape, c.shape, c.name)
            XCTAssertEqual(extractor.frameCount(sampleCount: c.length), c.shape[1], c.name)
            let err = maxAbsDiff(mel.scalars, c.mel_db)
            XCTAssertLessThan(err, 1e-3, "\(c.name): max |Δ| = \(err) dB")
            print("numpy float64 reference, \(c.name): max |Δ| = \(err) dB")

            if let fbShape = c.fb_shape, let nonzero = c.fb_nonzero {
                XCTAssertEqual(extractor.melFilterbank.shape, fbShape, c.name)
                var dense = [Float](repeating: 0, count: fbShape[0] * fbShape[1])
                for e in nonzero { dense[Int(e[0]) * fbShape[1] + Int(e[1])] = Float(e[2]) }
                XCTAssertLessThan(maxAbsDiff(extractor.melFilterbank.scalars, dense), 1e-6, "\(c.name) filterbank")
            }
        }
    }

    // MARK: framing and padding semantics

    func testFrameCounts() throws {
        let centred = try CedFeatureExtractor()
        XCTAssertEqual(centred.frameCount(sampleCount: 0), 0)
        XCTAssertEqual(centred.frameCount(sampleCount: 1), 1)
        XCTAssertEqual(centred.frameCount(sampleCount: 159), 1)
        XCTAssertEqual(centred.frameCount(sampleCount: 160), 2)
        XCTAssertEqual(centred.frameCount(sampleCount: 160_000), 1001)
        var c = CedFeatureExtractorConfig()
        c.center = false
        let plain = try CedFeatureExtractor(config: c)
        // torch.stft(center=False): 1 + (L − n_fft) // hop, nothing below n_fft.
        XCTAssertEqual(plain.frameCount(sampleCount: 511), 0)
        XCTAssertEqual(plain.frameCount(sampleCount: 512), 1)
        XCTAssertEqual(plain.frameCount(sampleCount: 671), 1)
        XCTAssertEqual(plain.frameCount(sampleCount: 672), 2)
        XCTAssertEqual(plain.frameCount(sampleCount: 160_000), 997)
        XCTAssertEqual(try plain([Float](repeating: 0.1, count: 672)).shape, [64, 2])
        c = CedFeatureExtractorConfig()
        c.nFft = 401
        c.winSize = 401
        // Odd n_fft: pad 200 each side, 1 + (L + 400 − 401) // hop.
        let odd = try CedFeatureExtractor(config: c)
        XCTAssertEqual(odd.frameCount(sampleCount: 160), 1)
        XCTAssertEqual(odd.frameCount(sampleCount: 161), 2)
        XCTAssertEqual(odd.frequencyBinCount, 201)
        c.samplingRate = 11025
        XCTAssertEqual(try CedFeatureExtractor(config: c).effectiveFMax, 5512)  // sr // 2, as torchaudio
    }

    func testReflectionRepeatsLikeNumpy() {
        // np.pad(np.arange(4.), 9, mode="reflect") and np.pad([5.], 4, mode="reflect").
        let expected = [3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0]
        XCTAssertEqual((-9..<13).map { MelEngine.reflect($0, count: 4) }, expected)
        XCTAssertEqual((-4..<5).map { MelEngine.reflect($0, count: 1) }, [Int](repeating: 0, count: 9))
        XCTAssertEqual((-3..<5).map { MelEngine.reflect($0, count: 2) }, [1, 0, 1, 0, 1, 0, 1, 0])
    }

    func testVeryShortInputsNeverCrash() throws {
        let extractor = try CedFeatureExtractor()
        for n in [1, 2, 3, 255, 256, 257, 511, 512] {
            let x = (0..<n).map { Float(sin(Double($0) * 0.3)) + 0.5 }
            let mel = try extractor(x)
            XCTAssertEqual(mel.shape, [64, 1 + n / 160], "n = \(n)")
            XCTAssertTrue(mel.scalars.allSatisfy(\.isFinite), "n = \(n)")
        }
        // All-zero input: every value is the amin floor, 10·log10(1e-10) = −100 dB.
        let silent = try extractor([Float](repeating: 0, count: 1000))
        XCTAssertTrue(silent.scalars.allSatisfy { $0 == -100 })
    }

    // MARK: errors

    func testRejectsBadInputWithTypedErrors() throws {
        let extractor = try CedFeatureExtractor()
        XCTAssertThrowsError(try extractor([Float]())) { e in
            XCTAssertTrue("\(e)".contains("empty"), "\(e)")
        }
        var x = [Float](repeating: 0.1, count: 20_000)
        x[12_345] = .nan
        XCTAssertThrowsError(try extractor(x)) { e in
            XCTAssertEqual(e as? CedInputError, CedInputError("sample 12345 of the waveform is NaN"))
        }
        x[12_345] = 0
        x[7] = -.infinity
        XCTAssertThrowsError(try extractor(x)) { e in
            XCTAssertEqual(e as? CedInputError, CedInputError("sample 7 of the waveform is -infinity"))
        }
        x[7] = 0
        x[19_999] = .infinity
        XCTAssertThrowsError(try extractor([[0.1, 0.2], x])) { e in
            XCTAssertEqual(e as? CedInputError, CedInputError("clip 1 of the batch: sample 19999 of the waveform is +infinity"))
        }
        XCTAssertThrowsError(try extractor([[0.1], []])) { e in
            XCTAssertTrue("\(e)".contains("clip 1 of the batch") && "\(e)".contains("empty"), "\(e)")
        }
        var c = CedFeatureExtractorConfig()
        c.center = false
        XCTAssertThrowsError(try CedFeatureExtractor(config: c)([Float](repeating: 0, count: 511))) { e in
            XCTAssertTrue(e is CedInputError && "\(e)".contains("n_fft = 512"), "\(e)")
        }
    }

    func testRejectsBadConfiguration() {
        var c = CedFeatureExtractorConfig()
        c.winSize = 600
        XCTAssertThrowsError(try CedFeatureExtractor(config: c)) { e in
            XCTAssertEqual((e as? ConfigError)?.field, "win_size")
        }
        c = CedFeatureExtractorConfig()
        c.nFft = CedFeatureExtractor.maxFFTSize * 2
        c.winSize = 400
        XCTAssertThrowsError(try CedFeatureExtractor(config: c)) { e in
            XCTAssertEqual((e as? ConfigError)?.field, "n_fft")
        }
        // Odd rate, f_max nil: torchaudio uses sr // 2 = 5512, which is below this f_min.
        c = CedFeatureExtractorConfig()
        c.samplingRate = 11025
        c.fMin = 5512.2
        XCTAssertThrowsError(try CedFeatureExtractor(config: c)) { e in
            XCTAssertEqual((e as? ConfigError)?.field, "f_max")
        }
    }

    // MARK: window, filterbank, parallelism

    func testWindowIsPeriodicHann() throws {
        let extractor = try CedFeatureExtractor()
        XCTAssertEqual(extractor.window.shape, [512])
        let exact = (0..<512).map { Float(0.5 - 0.5 * cos(2 * Double.pi * Double($0) / 512)) }
        XCTAssertLessThan(maxAbsDiff(extractor.window.scalars, exact), 2e-7)
        XCTAssertEqual(extractor.window.scalars[0], 0)
        XCTAssertEqual(extractor.window.scalars[256], 1)
        XCTAssertEqual(extractor.melFilterbank.shape, [257, 64])
        // HTK, norm=None: every triangle peaks below 1 and both ends (0 Hz, 8 kHz) get no weight.
        let fb = extractor.melFilterbank
        XCTAssertTrue(fb.scalars.allSatisfy { $0 >= 0 && $0 <= 1 })
        XCTAssertEqual((0..<64).map { fb[0, $0] }.max(), 0)
        XCTAssertEqual((0..<64).map { fb[256, $0] }.max(), 0)
    }

    func testParallelSerialAndBatchAgreeBitwise() throws {
        let extractor = try CedFeatureExtractor()
        let long = Self.fixtureSignal(24_000, sampleRate: 16000)  // 151 frames: split in 2 chunks
        let short = Self.fixtureSignal(3_000, sampleRate: 16000).map { $0 * 0.01 }
        let single = try extractor(long)
        let serial = long.withUnsafeBufferPointer { extractor.engine.extract($0, parallel: false) }
        XCTAssertEqual(single, serial)
        let batch = try extractor([short, long, short, [0.5]])
        XCTAssertEqual(batch.map(\.shape), [[64, 19], [64, 151], [64, 19], [64, 1]])
        XCTAssertEqual(batch[1], single)
        XCTAssertEqual(batch[0], try extractor(short))
        XCTAssertEqual(batch[2], batch[0])
        XCTAssertEqual(try extractor([[Float]]()), [])
    }

    // MARK: FFT

    func testRealFFTMatchesNaiveDFT() {
        // Radix 4/2/3/generic paths, and Bluestein for large prime factors (37, 97, 401, 2·101).
        for n in [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 16, 25, 30, 37, 49, 64, 97, 100, 202, 256, 400, 401, 512, 1000] {
            let plan = RealFFTPlan(size: n)
            var state: UInt64 = 0x9E3779B97F4A7C15 &* UInt64(n)
            func random() -> Double {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                return Double(state >> 11) / Double(1 << 53) - 0.5
            }
            // Two different signals, one per lane.
            let x: [FFTLanes] = (0..<n).map { _ in FFTLanes(random(), random()) }
            let bins = n / 2 + 1
            var re = [FFTLanes](repeating: .zero, count: bins), im = re
            var work = [FFTLanes](repeating: .zero, count: plan.workspaceCount)
            x.withUnsafeBufferPointer { xp in
                re.withUnsafeMutableBufferPointer { rp in
                    im.withUnsafeMutableBufferPointer { ip in
                        work.withUnsafeMutableBufferPointer { wp in
                            plan.spectrum(xp.baseAddress!, outRe: rp.baseAddress!, outIm: ip.baseAddress!, workspace: wp.baseAddress!)
                        }
                    }
                }
            }
            var worst = 0.0
            for lane in 0..<2 {
                for k in 0..<bins {
                    var sr = 0.0, si = 0.0
                    for j in 0..<n {
                        let a = -2 * Double.pi * Double((j * k) % n) / Double(n)
                        sr += x[j][lane] * cos(a)
                        si += x[j][lane] * sin(a)
                    }
                    worst = max(worst, abs(sr - re[k][lane]), abs(si - im[k][lane]))
                }
            }
            XCTAssertLessThan(worst, 1e-13 * Double(n), "n = \(n)")
        }
    }

    func testDecibelsMatchLibm() {
        var worst = 0.0
        var x = 1e-10
        while x < 1e38 {
            let v = MelEngine.tenLog10(FFTLanes(x, x * 1.007))
            worst = max(worst, abs(v.x - 10 * log10(x)) / max(1, abs(v.x)),
                        abs(v.y - 10 * log10(x * 1.007)) / max(1, abs(v.y)))
            x *= 1.0137
        }
        XCTAssertLessThan(worst, 3e-12)
        XCTAssertEqual(MelEngine.decibels(FFTLanes(0, 1)), SIMD2<Float>(-100, 0))   // amin floor
        XCTAssertEqual(MelEngine.decibels(FFTLanes(100, 1e-3)), SIMD2<Float>(20, -30))
        XCTAssertEqual(MelEngine.decibels(FFTLanes(1e60, 1)), SIMD2<Float>(600, 0))   // beyond float32: finite
    }
}
