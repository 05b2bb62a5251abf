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
            XCTAssertEqual(hf.encoder.chunks, c.chunks, "\(c.audio) \(c.variant): chunk count")
            let expectHF = try golden.tensor("\(c.audio)/\(c.variant)/output_hf")
            let expectOrig = try golden.tensor("\(c.audio)/\(c.variant)/output_original")
            let dHF = maxAbsDiff(hf.logits.scalars, expectHF.scalars)
            XCTAssertLessThanOrEqual(dHF, 1e-5, "\(name) \(c.audio) \(c.variant): output_hf")
            let orig = try model(mel, chunking: .original)
            let dOrig = maxAbsDiff(orig.scalars, expectOrig.scalars)
            XCTAssertLessThanOrEqual(dOrig, 1e-5, "\(name) \(c.audio) \(c.variant): output_original")
            if c.variant == "default", golden.info("\(c.audio)/last_hidden_state") != nil {
                let expect = try golden.tensor("\(c.audio)/last_hidden_state")
                XCTAssertEqual(hf.encoder.lastHiddenState.shape, expect.shape)
                let d = maxAbsDiff(hf.encoder.lastHiddenState.scalars, expect.scalars)
                XCTAssertLessThanOrEqual(d, 1e-4, "\(name) \(c.audio): last_hidden_state")
            }
            print("\(name) \(c.audio) \(c.variant): hf \(dHF) original \(dOrig)")
        }
    }

    func testMicroGoldens() throws { try check(model: "micro") }
    func testMicroTokenGoldens() throws { try check(model: "micro-token") }
    func testTinyGoldens() throws { try check(model: "tiny") }
}
