import XCTest
@testable import CED

final class WeightLoadingTests: XCTestCase {
    func microWeights() throws -> (CedConfig, StateDict) {
        let dir = try Reference.model("micro")
        let config = try CedConfig.load(from: dir.appendingPathComponent("config.json"))
        let weights = try SafeTensorsFile(contentsOf: dir.appendingPathComponent("model.safetensors")).stateDict()
        return (config, weights)
    }

    func testListsMissingUnexpectedAndMisshapedTogether() throws {
        var (config, weights) = try microWeights()
        weights["encoder.blocks.1.mlp.fc2.bias"] = nil
        weights["outputlayer.1.weight"] = Tensor(zeros: [10, 64])
        weights["encoder.something_else"] = Tensor(zeros: [3])
        weights["encoder.norm.weight"] = Tensor(shape: [64], scalars: [Float](repeating: .nan, count: 64))
        config.outputdim = 527
        XCTAssertThrowsError(try CedForAudioClassification(config: config, weights: weights)) { error in
            guard let e = error as? WeightLoadingError else { return XCTFail("\(error)") }
            XCTAssertEqual(e.missing, ["encoder.blocks.1.mlp.fc2.bias"])
            XCTAssertEqual(e.unexpected, ["encoder.something_else"])
            XCTAssertEqual(e.mismatched, [.init(name: "outputlayer.1.weight", expected: [527, 64], found: [10, 64])])
            XCTAssertEqual(e.nonFinite, ["encoder.norm.weight"])
            XCTAssertTrue(e.description.contains("outputlayer.1.weight' has shape [10, 64], expected [527, 64]"), e.description)
        }
    }

    func testWrongArchitectureIsReported() throws {
        var (config, weights) = try microWeights()
        config.depth = 3
        XCTAssertThrowsError(try CedForAudioClassification(config: config, weights: weights)) { error in
            let e = error as? WeightLoadingError
            XCTAssertEqual(e?.missing.count, 12, "\(error)")
            XCTAssertTrue(e?.missing.allSatisfy { $0.hasPrefix("encoder.blocks.2.") } ?? false)
        }
        (config, weights) = try microWeights()
        config.pooling = .token
        XCTAssertThrowsError(try CedForAudioClassification(config: config, weights: weights)) { error in
            XCTAssertEqual((error as? WeightLoadingError)?.missing, ["encoder.cls_token", "encoder.token_pos_embed"])
        }
    }

    func testEncoderAloneLoadsWithOrWithoutPrefix() throws {
        let (config, weights) = try microWeights()
        let mel = try Reference.golden("micro").tensor("snap_16k_mono_s16.wav/mel")
        let expect = try Reference.golden("micro").tensor("snap_16k_mono_s16.wav/last_hidden_state")
        let withPrefix = try CedModel(config: config, weights: weights)
        var stripped = StateDict(tensors: [:], source: "stripped")
        for (k, v) in weights.tensors where k.hasPrefix("encoder.") { stripped[String(k.dropFirst(8))] = v }
        let without = try CedModel(config: config, weights: stripped)
        for m in [withPrefix, without] {
            let out = try m(mel)
            XCTAssertLessThanOrEqual(maxAbsDiff(out.lastHiddenState.scalars, expect.scalars), 1e-4)
        }
    }

    func testInputErrors() throws {
        let (config, weights) = try microWeights()
        let model = try CedForAudioClassification(config: config, weights: weights)
        XCTAssertThrowsError(try model(Tensor(zeros: [64, 0]))) { XCTAssertTrue("\($0)".contains("no frames")) }
        XCTAssertThrowsError(try model(Tensor(zeros: [40, 100]))) { XCTAssertTrue("\($0)".contains("[64, frames]")) }
        var mel = Tensor(zeros: [64, 50])
        mel.scalars[64 * 0 + 7] = .nan
        XCTAssertThrowsError(try model(mel)) { XCTAssertTrue("\($0)".contains("frame 7"), "\($0)") }
    }

    /// Below one patch: defined, finite, and equal to explicitly zero-padding after BatchNorm.
    func testShorterThanOnePatch() throws {
        let (config, weights) = try microWeights()
        let model = try CedForAudioClassification(config: config, weights: weights)
        let mel = try Reference.golden("micro").tensor("snap_16k_mono_s16.wav/mel")
        for frames in [1, 5, 15, 16] {
            var cut = [Float]()
            for f in 0..<64 { cut += mel.scalars[f * 101 ..< f * 101 + frames] }
            let out = try model.forward(Tensor(shape: [64, frames], scalars: cut), outputHiddenStates: true)
            XCTAssertEqual(out.encoder?.timePatches, 1)
            XCTAssertEqual(out.encoder?.lastHiddenState.shape, [4, 64])
            XCTAssertTrue(out.scores.scalars.allSatisfy { $0.isFinite && $0 > 0 && $0 < 1 })
        }
        // Padding a mel with values that BatchNorm maps to zero gives the same result.
        let bn = model.encoder.initBN
        var cut = [Float](), padded = [Float]()
        for f in 0..<64 {
            let row = Array(mel.scalars[f * 101 ..< f * 101 + 9])
            cut += row
            padded += row + [Float](repeating: -bn.shift[f] / bn.scale[f], count: 7)
        }
        let a = try model(Tensor(shape: [64, 9], scalars: cut))
        let b = try model(Tensor(shape: [64, 16], scalars: padded))
        XCTAssertLessThanOrEqual(maxAbsDiff(a.scalars, b.scalars), 1e-5)
    }

    func testHiddenStatesAndAttentions() throws {
        let (config, weights) = try microWeights()
        let model = try CedForAudioClassification(config: config, weights: weights)
        let mel = try Reference.golden("micro").tensor("tones_noise_16k_mono_f32_23s.wav/mel")
        let out = try model.forward(mel, outputHiddenStates: true, outputAttentions: true)
        let enc = try XCTUnwrap(out.encoder)
        XCTAssertEqual(enc.chunks, 3)
        XCTAssertEqual(enc.lastHiddenState.shape, [3 * 252, 64])
        XCTAssertEqual(enc.hiddenStates?.count, 3)
        XCTAssertEqual(enc.attentions?.count, 2)
        XCTAssertEqual(enc.attentions?[0].shape, [3, 2, 252, 252])
        // Every attention row is a probability distribution.
        let a = enc.attentions![1].scalars
        for row in stride(from: 0, to: a.count, by: 252 * 97) {
            let s = a[row ..< row + 252].reduce(0, +)
            XCTAssertEqual(s, 1, accuracy: 1e-5)
        }
        // The last hidden state is the final LayerNorm of the last block's output.
        let last = enc.hiddenStates!.last!.scalars
        var normed = [Float](repeating: 0, count: last.count)
        last.withUnsafeBufferPointer { src in
            normed.withUnsafeMutableBufferPointer { dst in
                model.encoder.norm(src.baseAddress!, rows: 3 * 252, into: dst.baseAddress!)
            }
        }
        XCTAssertEqual(normed, enc.lastHiddenState.scalars)
        // Asking for them does not change the result.
        XCTAssertEqual(try model(mel).scalars, out.scores.scalars)
    }
}
