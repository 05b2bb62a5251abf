import Foundation
import XCTest
@testable import CED

/// The resolver, key mapping, architecture inference, front-end check and labels.
final class PretrainedCheckpointTests: XCTestCase {
    var labelsCSV: URL { Reference.sharedDir.appendingPathComponent("data/audioset_class_labels_indices.csv") }

    func referenceWeights() throws -> StateDict {
        try SafeTensorsFile(contentsOf: try Reference.model("micro/model.safetensors")).stateDict()
    }

    func referenceConfig() throws -> CedConfig { try CedConfig.load(from: try Reference.model("micro/config.json")) }

    /// Fields that define the network and its front end (not training settings or labels).
    static func architecture(_ c: CedConfig) -> [String] {
        ["embed \(c.embedDim)", "depth \(c.depth)", "heads \(c.numHeads)", "mlp \(c.mlpRatio)", "qkv_bias \(c.qkvBias)",
         "out \(c.outputdim)", "patch \(c.patchSize)", "stride \(c.patchStride)", "pool \(c.pooling)",
         "target \(c.targetLength)", "eval_avg \(c.evalAvg)", "pad_last \(c.padLast)", "mels \(c.nMels)", "fft \(c.nFft)",
         "hop \(c.hopSize)", "win \(c.winSize)", "fmin \(c.fMin)", "fmax \(String(describing: c.fMax))", "center \(c.center)"]
    }

    func testHuggingFaceFolders() throws {
        let ref = try referenceWeights()
        let config = try referenceConfig()
        for (name, format) in [("micro", CheckpointFileFormat.safetensors), ("micro-bin", .torchZip)] {
            let ckpt = try PretrainedCheckpoint.load(try Reference.model(name).path)
            XCTAssertEqual(ckpt.format, format, name)
            XCTAssertEqual(ckpt.layout, .huggingFace, name)
            XCTAssertEqual(ckpt.origin, .directory(try Reference.model(name).standardizedFileURL), name)
            XCTAssertEqual(ckpt.configSource, .file(try Reference.model(name).standardizedFileURL.appendingPathComponent("config.json")))
            XCTAssertEqual(ckpt.config, config, name)
            XCTAssertEqual(ckpt.featureExtractorConfig, try CedFeatureExtractorConfig.load(from: try Reference.model("micro/preprocessor_config.json")))
            XCTAssertNil(ckpt.storedFrontEnd)
            XCTAssertEqual(ckpt.warnings, [], name)
            TorchCheckpointTests.assertIdentical(ckpt.weights, ref)
        }
    }

    func testOriginalPtFilesWithoutConfig() throws {
        let ref = try referenceWeights()
        let config = try referenceConfig()
        for name in ["micro.pt", "micro-wrapped.pt"] {
            let ckpt = try PretrainedCheckpoint.load(try Reference.model(name).path,
                                                     options: .init(labelsFile: labelsCSV, numHeads: 2))
            XCTAssertEqual(ckpt.layout, .original, name)
            XCTAssertEqual(ckpt.format, .torchZip, name)
            XCTAssertEqual(ckpt.configSource, .inferred, name)
            XCTAssertEqual(Self.architecture(ckpt.config), Self.architecture(config), name)
            XCTAssertEqual(ckpt.featureExtractorConfig, CedFeatureExtractorConfig(model: config), name)
            TorchCheckpointTests.assertIdentical(ckpt.weights, ref)
            // Labels from the CSV (read in place), with the quoted comma parsed properly.
            XCTAssertEqual(ckpt.config.id2label?.count, 527)
            XCTAssertEqual(ckpt.config.label(for: 0), "Speech")
            XCTAssertEqual(ckpt.config.label(for: 109), "Roaring cats (lions, tigers)")
            XCTAssertEqual(ckpt.config.label2id?["Speech"], 0)
            // The stored front end matches the float64 reference within float32 error.
            let cmp = try XCTUnwrap(ckpt.frontEndComparison)
            XCTAssertTrue(cmp.matches, "\(cmp.mismatches)")
            XCTAssertLessThan(try XCTUnwrap(cmp.windowMaxAbsDifference), 1e-6)
            XCTAssertLessThan(try XCTUnwrap(cmp.melFilterbankMaxAbsDifference), 1e-5)
        }
    }

    func testInferredHeadsDefaultToEmbedOver64() throws {
        let ckpt = try PretrainedCheckpoint.load(try Reference.model("micro.pt").path)
        XCTAssertEqual(ckpt.config.numHeads, 1) // 64 / 64; micro itself uses 2, which shapes cannot tell
        XCTAssertTrue(ckpt.warnings.contains { $0.contains("num_heads") }, "\(ckpt.warnings)")
        XCTAssertNil(ckpt.config.id2label)
    }

    func testInferenceOnHuggingFaceShapes() throws {
        // tiny: the real CED-Tiny architecture (heads 3 = 192 / 64); micro-token: a cls token.
        for name in ["tiny", "micro-token"] {
            let dir = try Reference.model(name)
            let sd = try SafeTensorsFile(contentsOf: dir.appendingPathComponent("model.safetensors")).stateDict()
            var inferred = try CedParameterTable.inferConfig(from: sd, numHeads: name == "tiny" ? nil : 2)
            let config = try CedConfig.load(from: dir.appendingPathComponent("config.json"))
            inferred.name = config.name
            XCTAssertEqual(Self.architecture(inferred), Self.architecture(config), name)
        }
    }

    func testSingleSafetensorsFileWithConfigBesideOrGiven() throws {
        let ref = try referenceWeights()
        let beside = try PretrainedCheckpoint.load(try Reference.model("micro/model.safetensors").path)
        XCTAssertEqual(beside.config, try referenceConfig())
        XCTAssertEqual(beside.origin, .file(try Reference.model("micro/model.safetensors").standardizedFileURL))
        TorchCheckpointTests.assertIdentical(beside.weights, ref)

        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ced-single-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let copy = dir.appendingPathComponent("weights.safetensors")
        try FileManager.default.copyItem(at: try Reference.model("micro/model.safetensors"), to: copy)
        let given = try PretrainedCheckpoint.load(copy.path, options: .init(configFile: try Reference.model("micro/config.json")))
        XCTAssertEqual(given.config, try referenceConfig())
        XCTAssertEqual(given.featureExtractorConfig, CedFeatureExtractorConfig(model: try referenceConfig()))
        TorchCheckpointTests.assertIdentical(given.weights, ref)

        // No config at all: inferred from the Hugging Face names.
        let inferred = try PretrainedCheckpoint.load(copy.path, options: .init(numHeads: 2))
        XCTAssertEqual(inferred.configSource, .inferred)
        XCTAssertEqual(Self.architecture(inferred.config), Self.architecture(try referenceConfig()))
    }

    func testFrontEndMismatchIsReported() throws {
        var fe = CedFeatureExtractorConfig(model: try referenceConfig())
        fe.fMax = 7000
        let path = try Reference.model("micro.pt").path
        XCTAssertThrowsError(try PretrainedCheckpoint.load(path, options: .init(featureExtractorConfig: fe, numHeads: 2))) { e in
            guard let e = e as? CheckpointError else { return XCTFail("\(e)") }
            XCTAssertEqual(e.kind, .frontEndMismatch)
            XCTAssertTrue(e.description.contains("mel_scale.fb"), e.description)
        }
        let warned = try PretrainedCheckpoint.load(path, options: .init(featureExtractorConfig: fe, numHeads: 2, frontEndCheck: .warn))
        XCTAssertTrue(warned.warnings.contains { $0.contains("f_max 7000") }, "\(warned.warnings)")
        XCTAssertEqual(warned.frontEndComparison?.matches, false)
        let skipped = try PretrainedCheckpoint.load(path, options: .init(featureExtractorConfig: fe, numHeads: 2, frontEndCheck: .skip))
        XCTAssertNil(skipped.frontEndComparison)

        // Window length mismatch, and the hook for the feature extractor's own buffers.
        let stored = try XCTUnwrap(skipped.storedFrontEnd)
        var short = fe
        short.fMax = 8000
        short.winSize = 400
        XCTAssertFalse(stored.compare(with: try CedFeatureExtractor(config: short)).matches)
        let matching = stored.compare(with: try CedFeatureExtractor())
        XCTAssertTrue(matching.matches, "\(matching.mismatches)")
        XCTAssertLessThan(try XCTUnwrap(matching.windowMaxAbsDifference), 1e-6)
        XCTAssertLessThan(try XCTUnwrap(matching.melFilterbankMaxAbsDifference), 1e-5)
    }

    func testWeightValidationHappensWhenTheModelIsBuilt() throws {
        // A config that does not fit the weights (3 blocks) is refused by the model.
        var deeper = try referenceConfig()
        deeper.depth = 3
        let ckpt = try PretrainedCheckpoint.load(try Reference.model("micro").path, options: .init(config: deeper))
        XCTAssertThrowsError(try CedForAudioClassification(ckpt)) { e in
            XCTAssertTrue((e as? WeightLoadingError)?.missing.contains("encoder.blocks.2.attn.qkv.weight") == true, "\(e)")
        }
    }

    func testKeyMapping() {
        XCTAssertEqual(CedWeightLayout.huggingFaceName(forOriginal: "init_bn.1.running_var"), "encoder.init_bn.running_var")
        XCTAssertEqual(CedWeightLayout.huggingFaceName(forOriginal: "blocks.3.attn.qkv.weight"), "encoder.blocks.3.attn.qkv.weight")
        XCTAssertEqual(CedWeightLayout.huggingFaceName(forOriginal: "outputlayer.1.bias"), "outputlayer.1.bias")
        XCTAssertEqual(CedWeightLayout.huggingFaceName(forOriginal: "cls_token"), "encoder.cls_token")
        XCTAssertNil(CedWeightLayout.huggingFaceName(forOriginal: "front_end.0.mel_scale.fb"))
        let sd = StateDict(tensors: ["module.init_bn.1.weight": Tensor(zeros: [2]), "module.front_end.1.foo": Tensor(zeros: [1])], source: "x")
        let m = CedWeightLayout.sanitize(sd)
        XCTAssertEqual(m.weights.names, ["encoder.init_bn.weight"])
        XCTAssertEqual(m.dropped, ["front_end.1.foo"])
    }

    func testLabelsCSVErrors() {
        XCTAssertEqual(try LabelsCSV.parse("index,mid,display_name\n0,/m/a,\"A, \"\"quoted\"\"\"\n1,/m/b,B\n"), ["A, \"quoted\"", "B"])
        XCTAssertThrowsError(try LabelsCSV.parse("index,mid,display_name\n0,/m/a,A\n2,/m/b,B\n")) { e in
            XCTAssertTrue("\(e)".contains("index 1 is missing"), "\(e)")
        }
        XCTAssertThrowsError(try LabelsCSV.parse("index,mid,display_name\n0,/m/a,A\nx,/m/b,B\n")) { e in
            XCTAssertTrue("\(e)".contains("line 3"), "\(e)")
        }
        XCTAssertThrowsError(try LabelsCSV.parse("a,b\n0,1\n"))
        XCTAssertThrowsError(try LabelsCSV.parse("index,mid,display_name\n0,/m/a,\"open\n"))
    }

    func testLabelCountMustMatchOutputs() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ced-labels-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let csv = dir.appendingPathComponent("labels.csv")
        try "index,mid,display_name\n0,/m/a,A\n".write(to: csv, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try PretrainedCheckpoint.load(try Reference.model("micro").path, options: .init(labelsFile: csv))) { e in
            XCTAssertEqual((e as? CheckpointError)?.kind, .labels, "\(e)")
        }
    }

    func testModelSourceClassification() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ced-spec-\(UUID().uuidString)")
        let folder = dir.appendingPathComponent("owner/name")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let cwd = FileManager.default.currentDirectoryPath
        FileManager.default.changeCurrentDirectoryPath(dir.path)
        defer { FileManager.default.changeCurrentDirectoryPath(cwd) }

        guard case .directory(let found) = try ModelSource.classify("owner/name") else { return XCTFail("not a folder") }
        XCTAssertEqual(found.resolvingSymlinksInPath().path, folder.resolvingSymlinksInPath().path)
        XCTAssertEqual(try ModelSource.classify("mispeech/ced-tiny"), .hub(repo: "mispeech/ced-tiny", revision: "main"))
        XCTAssertEqual(try ModelSource.classify("mispeech/ced-tiny@v1.0"), .hub(repo: "mispeech/ced-tiny", revision: "v1.0"))
        XCTAssertEqual(try ModelSource.classify("mispeech/ced-base", revision: "abc"), .hub(repo: "mispeech/ced-base", revision: "abc"))
        XCTAssertEqual(try ModelSource.classify("ced-small"), .hub(repo: "mispeech/ced-small", revision: "main"))
        XCTAssertThrowsError(try ModelSource.classify("mispeech/ced-tiny@v1", revision: "v2"))
        for missing in ["./nothing", "/no/such/file.pt", "model.safetensors", "~/nope"] {
            XCTAssertThrowsError(try ModelSource.classify(missing), missing) { e in
                XCTAssertEqual((e as? CheckpointError)?.kind, .notFound, "\(missing): \(e)")
            }
        }
        for bad in ["", "a/b/c", "just-a-name", "owner/na me", "-x/y", "owner/--x"] {
            XCTAssertThrowsError(try ModelSource.classify(bad), bad) { e in
                XCTAssertEqual((e as? CheckpointError)?.kind, .invalidSpec, "\(bad): \(e)")
            }
        }
    }

    /// `--model` of ced finetune and `--student` of ced distill train: an architecture or a model.
    func testModelSpecResolution() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ced-model-spec-\(UUID().uuidString)")
        let fm = FileManager.default
        for sub in ["arch", "model", "pt"] { try fm.createDirectory(at: dir.appendingPathComponent(sub), withIntermediateDirectories: true) }
        defer { try? fm.removeItem(at: dir) }
        for file in ["arch/config.json", "arch/notes.txt", "model/config.json", "model/model.safetensors", "pt/config.json", "pt/x.PT", "c.json"] {
            try Data("{}".utf8).write(to: dir.appendingPathComponent(file))
        }
        let p = { (name: String) in dir.appendingPathComponent(name).path }
        XCTAssertEqual(CedModelSpec.resolve(p("arch")), .architecture(configFile: dir.appendingPathComponent("arch/config.json")))
        XCTAssertEqual(CedModelSpec.resolve(p("c.json")), .architecture(configFile: dir.appendingPathComponent("c.json")))
        XCTAssertEqual(CedModelSpec.resolve(p("arch/config.json")), .architecture(configFile: dir.appendingPathComponent("arch/config.json")))
        for model in [p("model"), p("pt"), p("model/model.safetensors"), "mispeech/ced-mini", p("missing.json")] {
            XCTAssertEqual(CedModelSpec.resolve(model), .checkpoint(model), model)
        }
        XCTAssertEqual(CedModelSpec.resolve("ced-tiny"), .checkpoint("ced-tiny"))
        XCTAssertEqual(CedModelSpec.resolve("ced-tiny", presets: true), .preset("ced-tiny"))
        XCTAssertEqual(CedModelSpec.resolve("mispeech/ced-tiny", presets: true), .checkpoint("mispeech/ced-tiny"))
    }
}

/// SHA-256 against the FIPS 180-2 example vectors.
final class SHA256Tests: XCTestCase {
    func testFIPSVectors() {
        XCTAssertEqual(SHA256Hasher.hex(Array("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(SHA256Hasher.hex([UInt8]()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(SHA256Hasher.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        XCTAssertEqual(SHA256Hasher.hex(Array("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu".utf8)),
                       "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1")
        XCTAssertEqual(SHA256Hasher.hex([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)),
                       "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    func testStreamingInUnevenPiecesEqualsOneShot() {
        let data = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        let whole = SHA256Hasher.hex(data)
        for piece in [1, 3, 63, 64, 65, 1000] {
            var h = SHA256Hasher()
            var i = 0
            while i < data.count {
                let end = min(data.count, i + piece)
                h.update(data[i..<end])
                i = end
            }
            XCTAssertEqual(h.finalizeHex(), whole, "piece \(piece)")
        }
    }
}
