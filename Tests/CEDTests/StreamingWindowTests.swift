import XCTest
@testable import CED

/// The windowed front end: every window equals the feature extractor on the cut-out clip,
/// bit for bit, whatever the block sizes, and shared frames are computed once.
final class StreamingWindowTests: XCTestCase {
    func signal(_ n: Int, seed: UInt64) -> [Float] {
        var rng = TrainingRandom(seed: seed)
        return (0..<n).map { i in
            let burst: Float = (i / 2400) % 3 == 0 ? 1 : 0.01
            return 0.4 * burst * sin(Float(i) * 0.031) + 0.05 * Float(rng.nextGaussian())
        }
    }

    func windows(_ stream: CedWindowFeatureStream, _ x: [Float], blocks rng: inout TrainingRandom, maxBlock: Int) throws -> [CedWindowFeatures] {
        var out: [CedWindowFeatures] = []
        var i = 0
        while i < x.count {
            let n = min(x.count - i, 1 + rng.nextInt(below: maxBlock))
            out += try stream.append(Array(x[i ..< i + n]))
            i += n
        }
        return out + (try stream.finish())
    }

    func testWindowsEqualTheCutOutClips() throws {
        var rng = TrainingRandom(seed: 1)
        var odd = CedFeatureExtractorConfig()
        odd.nFft = 400; odd.winSize = 300; odd.hopSize = 100; odd.featureSize = 40
        let model = CedConfig()
        for config in [CedFeatureExtractorConfig(), odd] {
            let extractor = try CedFeatureExtractor(config: config)
            // (window, hop): overlapping, touching, gaps between windows, the longest window.
            for (window, hop) in config.nFft == 512 ? [(2.0, 0.5), (1.0, 1.0), (0.5, 0.7), (0.3, 0.1)] : [(1.0, 0.25), (0.5, 0.7)] {
                let windowing = try CedWindowing(window: window, hop: hop, featureExtractor: config, model: model)
                // Shorter than a window, exactly a window, a tail window, a long stream.
                for n in [700, windowing.windowSamples, windowing.windowSamples + 4321, 3 * 16000 + 77] {
                    let x = signal(n, seed: UInt64(n))
                    let stream = try CedWindowFeatureStream(windowing: windowing, featureExtractor: extractor)
                    let got = try windows(stream, x, blocks: &rng, maxBlock: 9000)
                    XCTAssertFalse(got.isEmpty)
                    for (k, w) in got.enumerated() {
                        XCTAssertEqual(w.index, k)
                        let cut = Array(x[w.startSample ..< w.startSample + w.sampleCount])
                        XCTAssertEqual(w.mel, try extractor(cut), "window \(k) at \(w.startSample) of \(n), \(window)/\(hop) s, n_fft \(config.nFft)")
                    }
                    // Where windows exist: the regular grid, then (maybe) one aligned to the end.
                    let w = windowing.windowSamples, h = windowing.hopSamples
                    if n < w {
                        XCTAssertEqual(got.map(\.startSample), [0])
                        XCTAssertEqual(got[0].sampleCount, n)
                    } else {
                        let grid = Array(stride(from: 0, through: n - w, by: h))
                        XCTAssertEqual(Array(got.map(\.startSample).prefix(grid.count)), grid)
                        XCTAssertLessThanOrEqual(got.count, grid.count + 1)
                        let last = got.last!
                        XCTAssertGreaterThan(last.startSample + last.sampleCount + config.hopSize, n, "the end of the input is covered")
                    }
                    // Each stream frame is computed at most once.
                    XCTAssertLessThanOrEqual(stream.framesComputed, extractor.frameCount(sampleCount: n))
                }
            }
        }
    }

    func testWindowingValidation() throws {
        let fe = CedFeatureExtractorConfig(), model = CedConfig()
        let w = try CedWindowing(window: 2, hop: 0.5, featureExtractor: fe, model: model)
        XCTAssertEqual(w.windowSamples, 32000)
        XCTAssertEqual(w.hopSamples, 8000)
        let rounded = try CedWindowing(window: 0.234, hop: 0.0449, featureExtractor: fe, model: model)
        XCTAssertEqual(rounded.windowSamples, 3680)
        XCTAssertEqual(rounded.hopSamples, 640)
        // target_length 1012 frames = 10.11 s at most.
        XCTAssertNoThrow(try CedWindowing(window: 10.11, hop: 1, featureExtractor: fe, model: model))
        for (window, hop, message) in [(10.2, 1.0, "at most 10.11 s"), (0.14, 0.05, "at least 0.15 s"), (2, 0.001, "at least one mel frame"),
                                       (-1, 1, "positive"), (2, .nan, "positive")] {
            XCTAssertThrowsError(try CedWindowing(window: window, hop: hop, featureExtractor: fe, model: model)) {
                XCTAssertTrue("\($0)".contains(message), "\($0)")
                XCTAssertEqual(($0 as? StreamingError)?.kind, .invalidOption)
            }
        }
        let stream = try CedWindowFeatureStream(windowing: w, featureExtractor: CedFeatureExtractor())
        XCTAssertThrowsError(try stream.append([0, 0, .infinity])) { XCTAssertTrue("\($0)".contains("sample 2"), "\($0)") }
    }
}
