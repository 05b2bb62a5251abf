import XCTest
@testable import CED

/// The training engine against the training goldens of the authors' PyTorch code
/// (`../shared/reference/train_cases.json`, `golden/train.safetensors`): outputs, loss,
/// every gradient, the BatchNorm running statistics and AdamW trajectories, for every
/// case listed there, and for our own fixtures made by `scripts/ced_torch.py make-case`
/// (another architecture, a frame count that is not a multiple of 16, other AdamW
/// hyperparameters, `token` and `dm` pooling) from a PyTorch model that `ced_torch.py
/// verify` checks against the same goldens.
final class TrainingGoldenTests: XCTestCase {
    struct Case {
        var name: String
        var config: CedConfig
        var weights: StateDict
        var loss: CedLoss
        var steps: Int
        var adamw: CedAdamW.Options?
        /// Expected tensors by key relative to the case (`output`, `grad/<name>`, …).
        var golden: (String) throws -> Tensor?
    }

    static func loss(_ name: String) throws -> CedLoss {
        switch name {
        case "bce": return .bce
        case "bce_with_logits": return .bceWithLogits
        case "cross_entropy", "ce": return .softmaxCrossEntropy
        default: throw CedInputError("unknown loss '\(name)' in a training case")
        }
    }

    static func adamw(_ a: [String: Any]?) -> CedAdamW.Options? {
        guard let a else { return nil }
        let betas = a["betas"] as? [Double] ?? [0.9, 0.999]
        return CedAdamW.Options(learningRate: a["lr"] as? Double ?? 1e-3, beta1: betas[0], beta2: betas[1],
                                epsilon: a["eps"] as? Double ?? 1e-8, weightDecay: a["weight_decay"] as? Double ?? 1e-2)
    }

    /// Every case of the shared training goldens.
    static func sharedCases() throws -> [Case] {
        let ref = try Reference.require()
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: ref.appendingPathComponent("train_cases.json"))) as! [String: Any]
        let golden = try SafeTensorsFile(contentsOf: ref.appendingPathComponent("golden/train.safetensors"))
        var out: [Case] = []
        for c in json["cases"] as! [[String: Any]] {
            let name = c["name"] as! String
            let dir = ref.appendingPathComponent("models/\(c["model"] as! String)")
            var config = try CedConfig.load(from: dir.appendingPathComponent("config.json"))
            if let p = c["pooling"] as? String { config.pooling = try XCTUnwrap(CedPooling(rawValue: p)) }
            let weights = try SafeTensorsFile(contentsOf: dir.appendingPathComponent("model.safetensors")).stateDict()
            out.append(Case(name: name, config: config, weights: weights, loss: try loss(c["loss"] as! String),
                            steps: c["adamw_steps"] as? Int ?? 0, adamw: adamw(c["adamw"] as? [String: Any]),
                            golden: { key in golden.info("\(name)/\(key)") == nil ? nil : try golden.tensor("\(name)/\(key)") }))
        }
        return out
    }

    /// A fixture of ours: config, case description and weights inside the file.
    static func fixtureCase(_ file: String) throws -> Case {
        let url = Reference.packageRoot.appendingPathComponent("Tests/CEDTests/Fixtures/training/\(file)")
        let st = try SafeTensorsFile(contentsOf: url)
        let meta = st.metadata
        let config = try CedConfig.decode(Data(try XCTUnwrap(meta["config"]).utf8))
        let desc = try JSONSerialization.jsonObject(with: Data(try XCTUnwrap(meta["case"]).utf8)) as! [String: Any]
        let name = desc["name"] as! String
        var weights: [String: Tensor] = [:]
        for n in st.names where n.hasPrefix("\(name)/weights/") {
            weights[String(n.dropFirst("\(name)/weights/".count))] = try st.tensor(n)
        }
        return Case(name: name, config: config, weights: StateDict(tensors: weights, source: file),
                    loss: try loss(desc["loss"] as! String), steps: desc["adamw_steps"] as? Int ?? 0,
                    adamw: adamw(desc["adamw"] as? [String: Any]),
                    golden: { key in st.info("\(name)/\(key)") == nil ? nil : try st.tensor("\(name)/\(key)") })
    }

    /// Relative error of a gradient tensor: max |Δ| / max |g|.
    static func relativeError(_ got: [Float], _ want: [Float]) -> Double {
        var d = 0.0, m = 0.0
        for (x, y) in zip(got, want) {
            d = max(d, abs(Double(x) - Double(y)))
            m = max(m, abs(Double(y)))
        }
        if got.contains(where: { !$0.isFinite }) { return .infinity }
        return m > 0 ? d / m : d
    }

    func run(_ c: Case) throws {
        let mel = try XCTUnwrap(try c.golden("input_mel"), "\(c.name): input_mel")
        let targets = try XCTUnwrap(try c.golden("targets"), "\(c.name): targets")
        // One train-mode forward + backward.
        let model = try CedTrainingModel(config: c.config, weights: c.weights)
        let g = try model.gradients(mels: mel, targets: targets, loss: c.loss)
        let outWant = try XCTUnwrap(try c.golden("output"))
        XCTAssertEqual(g.outputs.shape, outWant.shape)
        let dOut = maxAbsDiff(g.outputs.scalars, outWant.scalars)
        XCTAssertLessThanOrEqual(dOut, 1e-5, "\(c.name): output")
        let lossWant = try XCTUnwrap(try c.golden("loss")).scalars[0]
        XCTAssertEqual(g.loss, Double(lossWant), accuracy: 1e-6, "\(c.name): loss")
        var worst = (name: "", error: 0.0)
        for p in model.table.parameters {
            let want = try XCTUnwrap(try c.golden("grad/\(p.name)"), "\(c.name): no golden gradient for \(p.name)")
            let got = try XCTUnwrap(g.gradients[p.name])
            XCTAssertEqual(got.shape, want.shape, "\(c.name): grad shape \(p.name)")
            let e = Self.relativeError(got.scalars, want.scalars)
            XCTAssertLessThanOrEqual(e, 1e-4, "\(c.name): gradient of \(p.name)")
            if e > worst.error { worst = (p.name, e) }
        }
        for s in ["running_mean", "running_var"] {
            let want = try XCTUnwrap(try c.golden("after_forward/encoder.init_bn.\(s)"))
            let d = maxAbsDiff(try XCTUnwrap(g.runningStatistics["encoder.init_bn.\(s)"]).scalars, want.scalars)
            XCTAssertLessThanOrEqual(d, 1e-3, "\(c.name): \(s) after one forward")
        }
        print("\(c.name): output \(dOut), loss \(abs(g.loss - Double(lossWant))), worst gradient \(worst.name) \(worst.error)")

        // AdamW trajectory from the same starting point.
        guard c.steps > 0, let options = c.adamw else { return }
        let trained = try CedTrainingModel(config: c.config, weights: c.weights)
        let adam = CedAdamW(model: trained, options: options)
        let gradients = CedGradientBuffer(count: trained.parameterCount)
        var losses: [Double] = []
        for _ in 0..<c.steps {
            // Every gradient first (PyTorch's loss.backward()), then the update.
            losses.append(try trained.trainingStep(mels: mel, targets: targets, loss: c.loss, sink: gradients).loss)
            adam.update(gradients)
        }
        // The update as the backward pass's sink, part by part, gives the same bits.
        let streamed = try CedTrainingModel(config: c.config, weights: c.weights)
        let adam2 = CedAdamW(model: streamed, options: options)
        for i in 0..<c.steps {
            XCTAssertEqual(try streamed.trainingStep(mels: mel, targets: targets, loss: c.loss, sink: adam2.step()).loss, losses[i])
        }
        XCTAssertEqual(streamed.stateDict().tensors, trained.stateDict().tensors, "\(c.name): streamed AdamW steps")
        // So does clipping at a norm the gradients stay under (gathered, clipped, then applied).
        let clipped = try CedTrainingModel(config: c.config, weights: c.weights)
        let adam3 = CedAdamW(model: clipped, options: options)
        for i in 0..<c.steps {
            let update = adam3.step(clipNorm: 1e9)
            XCTAssertEqual(try clipped.trainingStep(mels: mel, targets: targets, loss: c.loss, sink: update).loss, losses[i])
            XCTAssertGreaterThan(try XCTUnwrap(update.gradientNorm), 0)
        }
        XCTAssertEqual(clipped.stateDict().tensors, trained.stateDict().tensors, "\(c.name): clipped AdamW steps")
        // Recomputing activations in the backward pass instead of keeping them: same bits.
        for level in CedRecomputation.allCases where level != .none {
            let r = try CedTrainingModel(config: c.config, weights: c.weights)
            r.recomputation = level
            let opt = CedAdamW(model: r, options: options)
            for _ in 0..<c.steps { try r.trainingStep(mels: mel, targets: targets, loss: c.loss, sink: opt.step()) }
            XCTAssertEqual(r.stateDict().tensors, trained.stateDict().tensors, "\(c.name): recomputation \(level)")
            let saved = r.activationBytes(batch: mel.shape[0], frames: mel.shape[2])
            let all = trained.activationBytes(batch: mel.shape[0], frames: mel.shape[2])
            if c.config.depth > 1 { XCTAssertLessThan(saved, all) } else { XCTAssertLessThanOrEqual(saved, all) }
        }
        let want = try XCTUnwrap(try c.golden("adamw/losses")).scalars
        XCTAssertEqual(losses.count, want.count)
        for (i, (l, w)) in zip(losses, want).enumerated() {
            XCTAssertEqual(l, Double(w), accuracy: 1e-5, "\(c.name): AdamW loss at step \(i)")
        }
        let state = trained.stateDict()
        var worstFinal = 0.0
        for (name, t) in state.tensors where !name.hasSuffix("num_batches_tracked") {
            guard let w = try c.golden("adamw/final/\(name)") else { continue }
            let d = maxAbsDiff(t.scalars, w.scalars)
            let tol: Float = name.contains("running_") ? 1e-3 : 2e-4
            XCTAssertLessThanOrEqual(d, tol, "\(c.name): \(name) after \(c.steps) AdamW steps")
            if !name.contains("running_") { worstFinal = max(worstFinal, Double(d)) }
        }
        // Eval-mode output of the trained model, through the inference model it exports.
        if let evalWant = try c.golden("adamw/final_eval_output") {
            let inference = try trained.inferenceModel()
            let b = mel.shape[0], f = mel.shape[1], t = mel.shape[2]
            var worstEval: Float = 0
            for i in 0..<b {
                let clip = Tensor(shape: [f, t], scalars: Array(mel.scalars[i * f * t ..< (i + 1) * f * t]))
                let out = try inference(clip)
                let d = maxAbsDiff(out.scalars, Array(evalWant.scalars[i * c.config.outputdim ..< (i + 1) * c.config.outputdim]))
                XCTAssertLessThanOrEqual(d, 1e-4, "\(c.name): eval output of the trained model, clip \(i)")
                worstEval = max(worstEval, d)
            }
            print("\(c.name): AdamW losses \(losses), final parameters within \(worstFinal), eval output within \(worstEval)")
        }
    }

    func testSharedGoldenCases() throws {
        let cases = try Self.sharedCases()
        XCTAssertGreaterThanOrEqual(cases.count, 4)
        for c in cases { try run(c) }
    }

    func testOwnFixtures() throws {
        let dir = Reference.packageRoot.appendingPathComponent("Tests/CEDTests/Fixtures/training")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".safetensors") }.sorted()
        XCTAssertFalse(files.isEmpty)
        for f in files { try run(try Self.fixtureCase(f)) }
    }
}
