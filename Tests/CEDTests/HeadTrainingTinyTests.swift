import XCTest
@testable import CED

/// Head training end to end on the `tiny` fixture's encoder (CED-Tiny architecture, seeded
/// random weights) with a generated dataset of 300 half-second clips in four audibly
/// different classes (tones, noise bands, click trains, sweeps).
///
/// The dataset and the embedding cache are made once per test process and shared by the
/// tests here; the first test to run pays for encoding the clips (about a minute in a
/// debug build with the placeholder matrix kernels, a few seconds in release).
final class HeadTrainingTinyTests: XCTestCase {
    struct Fixture {
        var root: URL
        var data: TrainingDataset
        var checkpoint: PretrainedCheckpoint
        var cache: EmbeddingCache
    }

    nonisolated(unsafe) static var fixture: Fixture?
    static let lock = NSLock()
    static let perClass = 75

    func sharedFixture() throws -> Fixture {
        Self.lock.lock(); defer { Self.lock.unlock() }
        if let f = Self.fixture { return f }
        let modelDir = try Reference.model("tiny")
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("ced-head-tiny-\(UUID().uuidString)")
        let dataDir = root.appendingPathComponent("data")
        try SyntheticSounds.writeDataset(to: dataDir, perClass: Self.perClass, seconds: 0.5, seed: 2024)
        let f = Fixture(root: root, data: try TrainingDataset.load(from: dataDir),
                        checkpoint: try PretrainedCheckpoint.load(modelDir.path),
                        cache: EmbeddingCache(directory: root.appendingPathComponent("cache")))
        Self.fixture = f
        return f
    }

    override class func tearDown() {
        if let f = fixture { try? FileManager.default.removeItem(at: f.root) }
        fixture = nil
        super.tearDown()
    }

    func run(_ f: Fixture, output: String, options: HeadTrainingOptions = .init()) throws -> HeadTrainingResult {
        let out = f.root.appendingPathComponent(output)
        try? FileManager.default.removeItem(at: out)
        return try HeadTrainingJob(model: f.checkpoint, dataset: f.data, output: out, options: options, cache: f.cache).run()
    }

    func testAccuracyReproducibilityAndRoundTrip() throws {
        let f = try sharedFixture()
        XCTAssertEqual(f.data.examples.count, 4 * Self.perClass)
        XCTAssertEqual(f.data.classes, ["chirp", "clicks", "noise", "tone"])

        let a = try run(f, output: "model-a", options: .init(seed: 1))
        let report = a.trained.report
        print(report.formatted())
        print("embedding: \(a.computedCount) computed, \(a.cachedCount) cached, \(String(format: "%.1f", a.embeddingSeconds)) s; training \(String(format: "%.2f", a.trainingSeconds)) s")
        XCTAssertEqual(report.validationExamples, 60)          // round(75 · 0.2) per class
        XCTAssertEqual(report.trainingExamples, 240)
        XCTAssertEqual(report.evaluatedOn, "validation")
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(report.accuracy), 0.95)
        for c in report.perClass {
            XCTAssertEqual(c.evaluationCount, 15)
            XCTAssertGreaterThanOrEqual(try XCTUnwrap(c.recall), 0.8, c.label)
        }
        // Per-epoch figures and early stopping bookkeeping.
        XCTAssertTrue(report.epochs.allSatisfy { $0.validationLoss != nil && $0.validationAccuracy != nil && $0.trainLoss.isFinite })
        XCTAssertEqual(report.epochs.filter(\.isBest).last?.epoch, report.bestEpoch)
        XCTAssertLessThan(report.epochs.last!.trainLoss, report.epochs.first!.trainLoss)

        // Same seed → bit-identical head, now entirely from the cache.
        let b = try run(f, output: "model-b", options: .init(seed: 1))
        XCTAssertEqual(b.cachedCount, 300)
        XCTAssertEqual(b.computedCount, 0)
        XCTAssertEqual(b.trained.stateDict, a.trained.stateDict)
        XCTAssertEqual(b.trained.validationIndices, a.trained.validationIndices)
        XCTAssertEqual(try Data(contentsOf: a.output.appendingPathComponent("model.safetensors")),
                       try Data(contentsOf: b.output.appendingPathComponent("model.safetensors")))
        // Another seed gives another split and head.
        let c = try run(f, output: "model-c", options: .init(learningRate: 3e-3, seed: 2))
        XCTAssertNotEqual(c.trained.stateDict, a.trained.stateDict)
        XCTAssertNotEqual(c.trained.validationIndices, a.trained.validationIndices)

        // The saved folder loads back and predicts what training evaluated, exactly.
        let tagger = try CedAudioTagger.fromPretrained(a.output.path)
        XCTAssertEqual(tagger.config.outputdim, 4)
        XCTAssertEqual(tagger.config.id2label, [0: "chirp", 1: "clicks", 2: "noise", 3: "tone"])
        XCTAssertEqual(tagger.config.label2id, ["chirp": 0, "clicks": 1, "noise": 2, "tone": 3])
        for (j, i) in a.trained.evaluationIndices.enumerated() where j % 5 == 0 {
            let wave = try Waveform(contentsOf: a.examples[i].file)
            XCTAssertEqual(try tagger.scores(wave.samples).scalars, a.trained.evaluationScores[j], a.examples[i].file.lastPathComponent)
        }
        let top = try tagger.tag(try Waveform(contentsOf: f.data.examples[0].file).samples, topK: 1)
        XCTAssertEqual(top.count, 1)
    }

    /// The saved folder has upstream's tensor names and shapes for outputdim 4, the encoder
    /// weights unchanged, and a config.json / preprocessor_config.json Hugging Face reads.
    func testSavedFolderMatchesUpstreamLayout() throws {
        let f = try sharedFixture()
        let r = try run(f, output: "model-layout", options: .init(epochs: 20, seed: 3))
        let saved = try SafeTensorsFile(contentsOf: r.output.appendingPathComponent("model.safetensors"))
        let base = try SafeTensorsFile(contentsOf: try Reference.model("tiny").appendingPathComponent("model.safetensors"))
        var expected: [String: [Int]] = [:]
        for t in base.tensors { expected[t.name] = t.shape }
        expected["outputlayer.1.weight"] = [4, 192]
        expected["outputlayer.1.bias"] = [4]
        var found: [String: [Int]] = [:]
        for t in saved.tensors { found[t.name] = t.shape }
        XCTAssertEqual(found, expected)
        XCTAssertEqual(saved.metadata["format"], "pt")
        for t in base.tensors {
            XCTAssertEqual(saved.info(t.name)?.dtype, t.dtype, t.name)
            if t.name.hasPrefix("encoder.") {
                XCTAssertEqual(try saved.tensor(t.name).scalars, try base.tensor(t.name).scalars, t.name)
            }
        }
        XCTAssertEqual(try saved.tensor("outputlayer.1.weight").scalars, r.trained.stateDict["outputlayer.1.weight"]!.scalars)

        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: r.output.appendingPathComponent("config.json"))) as! [String: Any]
        XCTAssertEqual(json["outputdim"] as? Int, 4)
        XCTAssertEqual(json["id2label"] as? [String: String], ["0": "chirp", "1": "clicks", "2": "noise", "3": "tone"])
        XCTAssertEqual(json["label2id"] as? [String: Int], ["chirp": 0, "clicks": 1, "noise": 2, "tone": 3])
        XCTAssertEqual(json["embed_dim"] as? Int, 192)
        XCTAssertEqual(json["name"] as? String, "ced-tiny")
        XCTAssertEqual(json["model_type"] as? String, "ced")
        XCTAssertNotNil(json["auto_map"], "keys of the base config.json are kept")
        let pre = try JSONSerialization.jsonObject(with: Data(contentsOf: r.output.appendingPathComponent("preprocessor_config.json"))) as! [String: Any]
        XCTAssertEqual(pre["sampling_rate"] as? Int, 16000)
        XCTAssertEqual(pre["feature_size"] as? Int, 64)
        XCTAssertEqual(pre["feature_extractor_type"] as? String, "CedFeatureExtractor")
        let loaded = try PretrainedCheckpoint.load(r.output.path)
        XCTAssertEqual(loaded.featureExtractorConfig, f.checkpoint.featureExtractorConfig)
        XCTAssertTrue(loaded.warnings.isEmpty, "\(loaded.warnings)")
        let report = try JSONDecoder().decode(TrainingReport.self, from: Data(contentsOf: r.output.appendingPathComponent("training_report.json")))
        XCTAssertEqual(report.epochs.count, r.trained.report.epochs.count)
    }
}
