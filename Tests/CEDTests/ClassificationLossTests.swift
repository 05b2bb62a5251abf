import XCTest
@testable import CED

/// `CedForAudioClassification.forward(_:labels:lossFunction:)` and `headInput` on the
/// `micro` fixtures: outputs against the PyTorch goldens, losses against their closed forms.
final class ClassificationLossTests: XCTestCase {
    func mel(_ audio: String) throws -> Tensor { try Reference.golden("micro").tensor("\(audio)/mel") }

    func naiveBCE(_ z: [Float], _ y: [Double]) -> Double {
        var s = 0.0
        for (zi, yi) in zip(z, y) {
            let p = 1 / (1 + exp(-Double(zi)))
            s -= yi * log(p) + (1 - yi) * log(1 - p)
        }
        return s / Double(z.count)
    }

    func testBCELossOnMeanPooling() throws {
        let model = try ModelGoldenTests.loadModel("micro")
        for audio in ["snap_16k_mono_s16.wav", "tones_noise_16k_mono_f32_23s.wav"] {
            let m = try mel(audio)
            let out = try model.forward(m, labels: .classIndex(62))
            // The output is the ordinary forward output, and the goldens' HF output.
            XCTAssertEqual(out.output.logits.scalars, try model(m).scalars)
            let golden = try Reference.golden("micro").tensor("\(audio)/default/output_hf")
            XCTAssertLessThanOrEqual(maxAbsDiff(out.output.logits.scalars, golden.scalars), 1e-5)
            let z = try XCTUnwrap(out.headLogits).scalars
            XCTAssertLessThanOrEqual(maxAbsDiff(z.map { 1 / (1 + expf(-$0)) }, golden.scalars), 2e-5)
            var y = [Double](repeating: 0, count: 527)
            y[62] = 1
            XCTAssertEqual(Double(out.loss), naiveBCE(z, y), accuracy: 1e-6)
            // Multi-hot targets.
            var t = [Float](repeating: 0, count: 527)
            t[0] = 1; t[137] = 1; t[500] = 0.5
            let multi = try model.forward(m, labels: .targets(t))
            XCTAssertEqual(Double(multi.loss), naiveBCE(z, t.map(Double.init)), accuracy: 1e-6)
        }
    }

    func testSoftmaxCrossEntropyAndBatchMean() throws {
        let model = try ModelGoldenTests.loadModel("micro")
        let a = try mel("snap_16k_mono_s16.wav"), b = try mel("chirp_44k1_stereo_s24.wav")
        let out = try model.forward(a, labels: .classIndex(5), lossFunction: .softmaxCrossEntropy)
        let z = try XCTUnwrap(out.headLogits).scalars.map(Double.init)
        let m = z.max()!
        let logSumExp = m + log(z.reduce(0) { $0 + exp($1 - m) })
        XCTAssertEqual(Double(out.loss), logSumExp - z[5], accuracy: 1e-5)
        let lb = try model.forward(b, labels: .classIndex(7), lossFunction: .softmaxCrossEntropy).loss
        let batch = try model.loss([a, b], labels: [.classIndex(5), .classIndex(7)], lossFunction: .softmaxCrossEntropy)
        XCTAssertEqual(batch, (out.loss + lb) / 2, accuracy: 1e-6)
    }

    func testLogitAndDMPooling() throws {
        let m = try mel("chirp_44k1_stereo_s24.wav")
        let logit = try ModelGoldenTests.loadModel("micro", variant: "pooling-logit")
        let lo = try logit.forward(m, labels: .classIndex(1))
        XCTAssertEqual(try XCTUnwrap(lo.headLogits).scalars, lo.output.logits.scalars)
        var y = [Double](repeating: 0, count: 527); y[1] = 1
        XCTAssertEqual(Double(lo.loss), naiveBCE(lo.output.logits.scalars, y), accuracy: 1e-6)

        let dm = try ModelGoldenTests.loadModel("micro", variant: "pooling-dm")
        let d = try dm.forward(m, labels: .classIndex(1))
        XCTAssertNil(d.headLogits)
        let golden = try Reference.golden("micro").tensor("chirp_44k1_stereo_s24.wav/pooling-dm/output_hf").scalars
        XCTAssertLessThanOrEqual(maxAbsDiff(d.output.logits.scalars, golden), 1e-5)
        var bce = 0.0
        for (p, yi) in zip(golden, y) { bce -= yi * log(Double(p)) + (1 - yi) * log(1 - Double(p)) }
        XCTAssertEqual(Double(d.loss), bce / 527, accuracy: 1e-5)
        XCTAssertThrowsError(try dm.forward(m, labels: .classIndex(1), lossFunction: .softmaxCrossEntropy))
        // dm head inputs: one vector per time step.
        XCTAssertEqual(try dm.headInput(m).shape, [331 / 16, 64])
    }

    func testBadLabelsAreRejected() throws {
        let model = try ModelGoldenTests.loadModel("micro")
        let m = try mel("snap_16k_mono_s16.wav")
        func expectError(_ labels: CedClassificationLabels, _ loss: CedLossFunction = .bceWithLogits, mentions: String) {
            XCTAssertThrowsError(try model.forward(m, labels: labels, lossFunction: loss)) { e in
                XCTAssertTrue(e is CedInputError, "\(e)")
                XCTAssertTrue("\(e)".contains(mentions), "\(e)")
            }
        }
        expectError(.classIndex(527), mentions: "0..<527")
        expectError(.classIndex(-1), mentions: "outside")
        expectError(.targets([1, 0]), mentions: "2 values")
        expectError(.targets([Float](repeating: 2, count: 527)), mentions: "outside [0, 1]")
        expectError(.targets([Float](repeating: 0.5, count: 527)), .softmaxCrossEntropy, mentions: "sum to 1")
    }

    /// The head input is the mean over every token of every chunk (HF semantics), which
    /// `CedModel.embedding` computes another way, and the mean cls token for token pooling.
    func testHeadInputIsTheMeanOverAllChunks() throws {
        let model = try ModelGoldenTests.loadModel("micro")
        let m = try mel("tones_noise_16k_mono_f32_23s.wav")
        let v = try model.headInput(m)
        XCTAssertEqual(v.shape, [64])
        XCTAssertLessThanOrEqual(maxAbsDiff(v.scalars, try model.encoder.embedding(m).scalars), 1e-5)

        let tokenModel = try ModelGoldenTests.loadModel("micro-token")
        let out = try tokenModel.encoder(m)
        XCTAssertEqual(out.chunks, 3)
        let c = 64, per = out.tokensPerChunk
        var mean = [Double](repeating: 0, count: c)
        for s in 0..<3 { for i in 0..<c { mean[i] += Double(out.lastHiddenState.scalars[s * per * c + i]) / 3 } }
        XCTAssertLessThanOrEqual(maxAbsDiff(try tokenModel.headInput(m).scalars, mean.map { Float($0) }), 1e-6)
    }
}
