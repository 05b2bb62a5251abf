import XCTest
@testable import CED

/// A recording longer than the single-pass limit (`CedAudioTagger.singlePassFrames`, here
/// lowered to 300 frames) is scored in two passes (the
/// first finds the `top_db` floor, the second streams chunk groups into the encoder): the
/// scores must equal those of the whole mel, bit for bit, for every pooling and both
/// chunkings, with a floor that clamps (digital silence in the file).
final class LongRecordingTests: XCTestCase {
    func testTwoPassScoresEqualTheWholeMel() throws {
        // 20 s: 2,001 frames, 21 chunks of 100 frames for the independent case's model.
        var samples = IndependentCaseTests.audio(samples: 16000 * 20, seed: 21)
        for i in 16000 * 8 ..< 16000 * 11 { samples[i] = 0 }          // 3 s of digital silence
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("ced-long-\(UUID().uuidString).wav")
        defer { try? FileManager.default.removeItem(at: url) }
        try WAVWriter.write(samples, sampleRate: 16000, to: url)

        let whole = try CedAudioTagger(model: try IndependentCaseTests.makeModel { _ in }, featureExtractor: CedFeatureExtractor())
            .features(contentsOf: url)
        XCTAssertGreaterThan(whole.mel.shape[1], 300, "the file takes the two-pass path")
        let peak = whole.mel.scalars.max()!, low = whole.mel.scalars.min()!
        XCTAssertEqual(low, peak - 120, "the top_db floor clamps the silence")
        for (name, change) in IndependentCaseTests.variants {
            let tagger = try CedAudioTagger(model: try IndependentCaseTests.makeModel(change), featureExtractor: CedFeatureExtractor())
            XCTAssertGreaterThan(whole.mel.shape[1] / tagger.config.targetLength, 2 * tagger.model.encoder.chunksPerGroup)
            for chunking in CedChunking.allCases {
                let expect = try tagger.model(whole.mel, chunking: chunking)
                let streamed = try tagger.fileScores(.file(url), chunking: chunking, options: AudioDecodingOptions(),
                                                     singlePassFrames: 300)
                XCTAssertEqual(streamed.scores.scalars, expect.scalars, "\(name) \(chunking)")
                XCTAssertEqual(streamed.sampleCount, samples.count)
            }
        }
        // The file's bytes in memory (as ced serve receives them) take the same two passes.
        let tagger = try CedAudioTagger(model: try IndependentCaseTests.makeModel { _ in }, featureExtractor: CedFeatureExtractor())
        let fromBytes = try tagger.fileScores(.data(try Data(contentsOf: url), name: "upload.wav"), chunking: .hf,
                                              options: AudioDecodingOptions(), singlePassFrames: 300)
        XCTAssertEqual(fromBytes.scores.scalars, try tagger.model(whole.mel, chunking: .hf).scalars)
        XCTAssertEqual(fromBytes.sampleCount, samples.count)
    }
}
