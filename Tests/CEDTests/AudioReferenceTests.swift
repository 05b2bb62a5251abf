import XCTest
@testable import CED

/// Every shared audio file, decoded + downmixed + resampled, equals the golden `wave16k`
/// produced by the authors' PyTorch pipeline (torchaudio load, mean over channels,
/// `torchaudio.functional.resample`).
final class AudioReferenceTests: XCTestCase {
    static let files = [
        "snap_16k_mono_s16.wav",
        "ukulele_speech_32k_mono_s16.wav",
        "chirp_44k1_stereo_s24.wav",
        "tones_noise_16k_mono_f32_23s.wav",
        "exact_two_chunks_16k_mono_s16.wav",
    ]

    func testEveryReferenceFileMatchesGoldenWave16k() throws {
        let golden = try Reference.golden("micro")
        for name in Self.files {
            let url = try Reference.audio(name)
            let w = try Waveform(contentsOf: url)
            let expected = try golden.tensor("\(name)/wave16k").scalars
            XCTAssertEqual(w.samples.count, expected.count, name)
            let d = maxAbsDiff(w.samples, expected)
            XCTAssertLessThanOrEqual(d, 1e-5, "\(name): max abs difference \(d)")
            print("wave16k \(name): max abs difference \(d)")
            XCTAssertEqual(w.sampleRate, 16000)
            XCTAssertTrue(w.warnings.isEmpty, "\(name): \(w.warnings)")
            XCTAssertEqual(w.info.decoder, .wav)
        }
    }

    func testReferenceHeadersAreRead() throws {
        let chirp = try AudioFileReader(path: try Reference.audio("chirp_44k1_stereo_s24.wav").path)
        XCTAssertEqual(chirp.info.sampleRate, 44100)
        XCTAssertEqual(chirp.info.channels, 2)
        XCTAssertEqual(chirp.info.encoding, .pcmS24)
        let tones = try AudioFileReader(path: try Reference.audio("tones_noise_16k_mono_f32_23s.wav").path)
        XCTAssertEqual(tones.info.encoding, .float32)
        XCTAssertEqual(tones.info.channels, 1)
        let exact = try AudioFileReader(path: try Reference.audio("exact_two_chunks_16k_mono_s16.wav").path)
        XCTAssertEqual(exact.info.frameCount, 323_680)
    }

    /// Streaming with odd block sizes gives exactly (bit for bit) the whole-file result.
    func testStreamingEqualsWholeFileOnReferenceAudio() throws {
        for (name, blockSizes) in [("chirp_44k1_stereo_s24.wav", [7, 441, 4097]), ("ukulele_speech_32k_mono_s16.wav", [1001])] {
            let path = try Reference.audio(name).path
            let whole = try Waveform(path: path).samples
            for blockFrames in blockSizes {
                let stream = try WaveformStream(path: path, options: AudioDecodingOptions(blockFrames: blockFrames))
                var streamed: [Float] = []
                while let b = try stream.next() {
                    XCTAssertFalse(b.isEmpty)
                    streamed += b
                }
                XCTAssertEqual(stream.expectedSampleCount, whole.count)
                XCTAssertEqual(streamed, whole, "\(name) with blocks of \(blockFrames) frames")
            }
        }
    }
}
