import XCTest
@testable import CED

final class AudioResamplerTests: XCTestCase {
    func testOutputLengthIsCeilOfRatio() {
        for rate in [8000, 11025, 22050, 24000, 32000, 44100, 48000, 96000, 44101, 1000, 768_000] {
            for n in [0, 1, 2, 3, 440, 441, 442, 12345, 1_000_003] {
                let want = Int((Double(16000) * Double(n) / Double(rate)).rounded(.up))
                XCTAssertEqual(SincResampler.outputLength(inputLength: n, inputRate: rate, outputRate: 16000), want, "\(rate) Hz, \(n)")
            }
        }
        XCTAssertEqual(SincResampler.outputLength(inputLength: 777, inputRate: 16000, outputRate: 16000), 777)
    }

    func testStreamingWithRandomBlocksEqualsWholeSignal() throws {
        var rng = AudioFuzzTests.RNG(state: 5)
        for rate in [8000, 11025, 44100, 48000, 96000] {
            let n = 3000 + rng.below(2000)
            let x = (0..<n).map { _ in Float(Int(rng.next() % 20001) - 10000) / 10000 }
            let whole = try SincResampler.resample(x, from: rate)
            XCTAssertEqual(whole.count, SincResampler.outputLength(inputLength: n, inputRate: rate, outputRate: 16000))
            let r = try SincResampler(inputRate: rate)
            var streamed: [Float] = []
            var i = 0
            while i < n {
                let len = min(n - i, rng.below(700))  // includes empty blocks
                streamed += r.process(Array(x[i..<(i + len)]))
                i += len
            }
            streamed += r.finish()
            XCTAssertEqual(streamed, whole, "\(rate) Hz")
        }
    }

    func testSameRateIsIdentityAndShortInputs() throws {
        let x: [Float] = [0.5, -0.25, 1]
        XCTAssertEqual(try SincResampler.resample(x, from: 16000), x)
        XCTAssertEqual(try SincResampler.resample([], from: 44100), [])
        // One sample at 48 kHz gives ceil(1/3) = 1 output: the kernel's centre tap times x.
        let one = try SincResampler.resample([1], from: 48000)
        XCTAssertEqual(one.count, 1)
        XCTAssertEqual(one[0], 0.99 / 3, accuracy: 1e-6)  // sinc(0) · window(0) · base/orig
    }

    func testKernelIsSharedPerRatePair() throws {
        let a = try SincResampler(inputRate: 44100), b = try SincResampler(inputRate: 88200 / 2)
        XCTAssertTrue(a.kernel === b.kernel)
        let k = try XCTUnwrap(a.kernel)
        XCTAssertEqual(k.inputStep, 441)
        XCTAssertEqual(k.phases, 160)
        XCTAssertEqual(k.taps % 8, 0)
        XCTAssertLessThan(k.taps, 48)  // only the support, not torchaudio's 475-wide rows
    }

    func testInvalidParametersThrow() {
        XCTAssertThrowsError(try SincResampler(inputRate: 0))
        XCTAssertThrowsError(try SincResampler(inputRate: 44100, outputRate: -1))
        XCTAssertThrowsError(try SincResampler(inputRate: 44100, lowpassFilterWidth: 0))
        XCTAssertThrowsError(try SincResampler(inputRate: 44100, rolloff: .nan))
    }
}
