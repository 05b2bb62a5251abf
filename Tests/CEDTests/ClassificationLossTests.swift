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
            XCTAssertEqual(out.output.scores.scalars, try model(m).scalars)
            let golden = try Reference.golden("micro").tensor("\(audio)/default/output_hf")
            XCTAssertLessThanOrEqual(maxAbsDiff(out.output.scores.scalars, golden.scalars), 1e-5)
            let z = try XCTUnwrap(out.logits).scalars
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
        let out = try model.forward(a, labels: .classIndex(5), loss: .softmaxCrossEntropy)
        let z = try XCTUnwrap(out.logits).scalars.map(Double.init)
        let m = z.max()!
        let logSumExp = m + log(z.reduce(0) { $0 + exp($1 - m) })
        XCTAssertEqual(Double(out.loss), logSumExp - z[5], accuracy: 1e-5)
        let lb = try model.forward(b, labels: .classIndex(7), loss: .softmaxCrossEntropy).loss
        let batch = try model.loss([a, b], labels: [.classIndex(5), .classIndex(7)], loss: .softmaxCrossEntropy)
        XCTAssertEqual(batch, (out.loss + lb) / 2, accuracy: 1e-6)
    }

    func testLogitAndDMPooling() throws {
        let m = try mel("chirp_44k1_stereo_s24.wav")
        let logit = try ModelGoldenTests.loadModel("micro", variant: "pooling-logit")
        let lo = try logit.forward(m, labels: .classIndex(1))
        XCTAssertEqual(try XCTUnwrap(lo.logits).scalars, lo.output.scores.scalars)
        var y = [Double](repeating: 0, count: 527); y[1] = 1
        XCTAssertEqual(Double(lo.loss), naiveBCE(lo.output.scores.scalars, y), accuracy: 1e-6)

        let dm = try ModelGoldenTests.loadModel("micro", variant: "pooling-dm")
        let d = try dm.forward(m, labels: .classIndex(1))
        XCTAssertNil(d.logits)
        let golden = try Reference.golden("micro").tensor("chirp_44k1_stereo_s24.wav/pooling-dm/output_hf").scalars
        XCTAssertLessThanOrEqual(maxAbsDiff(d.output.scores.scalars, golden), 1e-5)
        var bce = 0.0
        for (p, yi) in zip(golden, y) { bce -= yi * log(Double(p)) + (1 - yi) * log(1 - Double(p)) }
        XCTAssertEqual(Double(d.loss), bce / 527, accuracy: 1e-5)
        XCTAssertThrowsError(try dm.forward(m, labels: .classIndex(1), loss: .softmaxCrossEntropy))
        // dm head inputs: one vector per time step.
        XCTAssertEqual(try dm.headInput(m).shape, [331 / 16, 64])
    }

    func testBadLabelsAreRejected() throws {
        let model = try ModelGoldenTests.loadModel("micro")
        let m = try mel("snap_16k_mono_s16.wav")
        func expectError(_ labels: CedClassificationLabels, _ loss: CedLoss = .bceWithLogits, mentions: String) {
            XCTAssertThrowsError(try model.forward(m, labels: labels, loss: loss)) { e in
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

    /// The head input (= the clip embedding) is the mean over every token of every chunk
    /// (HF semantics) for mean pooling, and the mean of the chunks' cls tokens for token
    /// pooling, both checked against the encoder's hidden states averaged here in double.
    func testHeadInputIsTheMeanOverAllChunks() throws {
        let model = try ModelGoldenTests.loadModel("micro")
        let m = try mel("tones_noise_16k_mono_f32_23s.wav")
        let v = try model.headInput(m)
        XCTAssertEqual(v.shape, [64])
        let hidden = try model.encoder(m).lastHiddenState
        let rows = hidden.shape[0]
        var all = [Double](repeating: 0, count: 64)
        for r in 0..<rows { for i in 0..<64 { all[i] += Double(hidden.scalars[r * 64 + i]) / Double(rows) } }
        XCTAssertLessThanOrEqual(maxAbsDiff(v.scalars, all.map { Float($0) }), 1e-5)
        XCTAssertEqual(try model.encoder.embedding(m).scalars, v.scalars)

        let tokenModel = try ModelGoldenTests.loadModel("micro-token")
        let out = try tokenModel.encoder(m)
        XCTAssertEqual(out.chunks, 3)
        let c = 64, per = out.tokensPerChunk
        var mean = [Double](repeating: 0, count: c)
        for s in 0..<3 { for i in 0..<c { mean[i] += Double(out.lastHiddenState.scalars[s * per * c + i]) / 3 } }
        XCTAssertLessThanOrEqual(maxAbsDiff(try tokenModel.headInput(m).scalars, mean.map { Float($0) }), 1e-6)
        // `ced embed` and head training read the same vector: the cls tokens' mean.
        XCTAssertLessThanOrEqual(maxAbsDiff(try tokenModel.encoder.embedding(m).scalars, mean.map { Float($0) }), 1e-6)
    }
}
