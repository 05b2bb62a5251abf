import XCTest
@testable import CED

/// The model against the goldens produced by the authors' PyTorch code, starting from the
/// golden mel: every case in cases.json, both long-input semantics.
final class ModelGoldenTests: XCTestCase {
    /// Loads a shared model folder with one config field changed for a variant.
    static func loadModel(_ name: String, variant: String = "default") throws -> CedForAudioClassification {
        let dir = try Reference.model(name)
        var config = try CedConfig.load(from: dir.appendingPathComponent("config.json"))
        switch variant {
        case "default": break
        case "pooling-logit": config.pooling = .logit
        case "pooling-dm": config.pooling = .dm
        case "eval_avg-max": config.evalAvg = .max
        case "pad_last-false": config.padLast = false
        default: XCTFail("unknown variant \(variant)")
        }
        let weights = try SafeTensorsFile(contentsOf: dir.appendingPathComponent("model.safetensors")).stateDict()
        return try CedForAudioClassification(config: config, weights: weights)
    }

    func check(model name: String) throws {
        let golden = try Reference.golden(name)
        let cases = try Reference.cases().filter { $0.model == name }
        XCTAssertFalse(cases.isEmpty)
        var models: [String: CedForAudioClassification] = [:]
        for c in cases {
            let model = try models[c.variant] ?? Self.loadModel(name, variant: c.variant)
            models[c.variant] = model
            let mel = try golden.tensor("\(c.audio)/mel")
            XCTAssertEqual(mel.shape, [64, c.frames])
            let hf = try model.forward(mel, chunking: .hf)
            XCTAssertEqual(hf.chunks, c.chunks, "\(c.audio) \(c.variant): chunk count")
            let expectHF = try golden.tensor("\(c.audio)/\(c.variant)/output_hf")
            let expectOrig = try golden.tensor("\(c.audio)/\(c.variant)/output_original")
            let dHF = maxAbsDiff(hf.scores.scalars, expectHF.scalars)
            XCTAssertLessThanOrEqual(dHF, 1e-5, "\(name) \(c.audio) \(c.variant): output_hf")
            let orig = try model(mel, chunking: .original)
            let dOrig = maxAbsDiff(orig.scalars, expectOrig.scalars)
            XCTAssertLessThanOrEqual(dOrig, 1e-5, "\(name) \(c.audio) \(c.variant): output_original")
            if c.variant == "default", golden.info("\(c.audio)/last_hidden_state") != nil {
                let expect = try golden.tensor("\(c.audio)/last_hidden_state")
                let hidden = try model.encoder(mel).lastHiddenState
                XCTAssertEqual(hidden.shape, expect.shape)
                let d = maxAbsDiff(hidden.scalars, expect.scalars)
                XCTAssertLessThanOrEqual(d, 1e-4, "\(name) \(c.audio): last_hidden_state")
            }
            print("\(name) \(c.audio) \(c.variant): hf \(dHF) original \(dOrig)")
        }
    }

    func testMicroGoldens() throws { try check(model: "micro") }
    func testMicroTokenGoldens() throws { try check(model: "micro-token") }
    func testTinyGoldens() throws { try check(model: "tiny") }
}

/// End to end from the golden 16 kHz waveform: our mel, then the model (1e-4).
final class EndToEndGoldenTests: XCTestCase {
    func check(model name: String) throws {
        let golden = try Reference.golden(name)
        let cases = try Reference.cases().filter { $0.model == name }
        let extractor = try CedFeatureExtractor()
        var taggers: [String: CedAudioTagger] = [:]
        var mels: [String: Tensor] = [:]
        var worst: Float = 0
        for c in cases {
            let tagger = try taggers[c.variant] ?? CedAudioTagger(model: ModelGoldenTests.loadModel(name, variant: c.variant), featureExtractor: extractor)
            taggers[c.variant] = tagger
            let mel = try mels[c.audio] ?? extractor(golden.tensor("\(c.audio)/wave16k").scalars)
            mels[c.audio] = mel
            XCTAssertEqual(mel.shape, [64, c.frames])
            for chunking in CedChunking.allCases {
                let out = try tagger.model(mel, chunking: chunking)
                let key = chunking == .hf ? "output_hf" : "output_original"
                let d = maxAbsDiff(out.scalars, try golden.tensor("\(c.audio)/\(c.variant)/\(key)").scalars)
                XCTAssertLessThanOrEqual(d, 1e-4, "\(name) \(c.audio) \(c.variant) \(key)")
                worst = max(worst, d)
            }
        }
        print("\(name): largest end-to-end output difference \(worst)")
    }

    func testMicro() throws { try check(model: "micro") }
    func testMicroToken() throws { try check(model: "micro-token") }
    func testTiny() throws { try check(model: "tiny") }

    func testTaggerRanksAndLabels() throws {
        let tagger = try CedAudioTagger(model: ModelGoldenTests.loadModel("micro"), featureExtractor: CedFeatureExtractor())
        let wave = try Reference.golden("micro").tensor("snap_16k_mono_s16.wav/wave16k").scalars
        let scores = try tagger.scores(wave)
        let all = try tagger.tag(wave, topK: nil)
        XCTAssertEqual(all.count, 527)
        XCTAssertEqual(Set(all.map(\.index)), Set(0..<527))
        XCTAssertTrue(zip(all, all.dropFirst()).allSatisfy { $0.score >= $1.score })
        XCTAssertEqual(all[0].score, scores.scalars.max())
        XCTAssertEqual(all[0].label, tagger.config.id2label?[all[0].index])
        let top = try tagger.tag(wave, topK: 3)
        XCTAssertEqual(top, Array(all.prefix(3)))
        let above = try tagger.tag(wave, topK: nil, threshold: 0.5)
        XCTAssertEqual(above.count, scores.scalars.filter { $0 >= 0.5 }.count)
    }
}

/// End to end from the audio files themselves: decode, downmix, resample, mel, model (1e-4).
final class FileEndToEndTests: XCTestCase {
    func check(model name: String) throws {
        let golden = try Reference.golden(name)
        let cases = try Reference.cases().filter { $0.model == name }
        var taggers: [String: CedAudioTagger] = [:]
        var waves: [String: [Float]] = [:]
        var worst: Float = 0
        for c in cases {
            let tagger = try taggers[c.variant] ?? CedAudioTagger(model: ModelGoldenTests.loadModel(name, variant: c.variant),
                                                                  featureExtractor: CedFeatureExtractor())
            taggers[c.variant] = tagger
            let wave = try waves[c.audio] ?? Waveform(contentsOf: Reference.audio(c.audio)).samples
            waves[c.audio] = wave
            for chunking in CedChunking.allCases {
                let out = try tagger.scores(wave, chunking: chunking)
                let key = "\(c.audio)/\(c.variant)/output_\(chunking == .hf ? "hf" : "original")"
                let d = maxAbsDiff(out.scalars, try golden.tensor(key).scalars)
                XCTAssertLessThanOrEqual(d, 1e-4, "\(name) \(key)")
                worst = max(worst, d)
            }
        }
        print("\(name): largest file-to-probabilities difference \(worst)")
    }

    func testMicro() throws { try check(model: "micro") }
    func testMicroToken() throws { try check(model: "micro-token") }
    func testTiny() throws { try check(model: "tiny") }
}
