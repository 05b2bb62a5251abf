import XCTest
@testable import CED

/// Dataset loading, bad data, the embedding cache and the atomic output folder, with the
/// small `micro` model (fast in debug builds).
final class HeadTrainingDataTests: XCTestCase {
    var root: URL!

    override func setUpWithError() throws {
        root = try TestWAV.tempDir(self)
    }

    func microCheckpoint() throws -> PretrainedCheckpoint {
        try PretrainedCheckpoint.load(try Reference.model("micro").path)
    }

    /// 3 classes × `perClass` clips of 0.3 s in `root/data`.
    func smallDataset(perClass: Int = 4) throws -> URL {
        let dir = root.appendingPathComponent("data")
        try SyntheticSounds.writeDataset(to: dir, kinds: [.tone, .noise, .clicks], perClass: perClass, seconds: 0.3, seed: 3)
        return dir
    }

    func job(_ data: TrainingDataset, output: URL, options: HeadTrainingOptions = .init(epochs: 5),
             skip: Bool = false, overwrite: Bool = false) throws -> HeadTrainingJob {
        HeadTrainingJob(model: try microCheckpoint(), dataset: data, output: output, options: options,
                        cache: EmbeddingCache(directory: root.appendingPathComponent("cache")),
                        skipUnreadableFiles: skip, overwrite: overwrite)
    }

    func assertTrainingError<T>(_ kind: TrainingError.Kind, mentions: [String], _ body: () throws -> T,
                                line: UInt = #line) {
        do {
            _ = try body()
            XCTFail("expected TrainingError.\(kind)", line: line)
        } catch let e as TrainingError {
            XCTAssertEqual(e.kind, kind, "\(e)", line: line)
            for m in mentions { XCTAssertTrue(e.description.contains(m), "'\(m)' not in: \(e)", line: line) }
        } catch {
            XCTFail("expected TrainingError.\(kind), got \(error)", line: line)
        }
    }

    /// Nothing at `output`, and no temporary folder beside it.
    func assertNothingWritten(_ output: URL, line: UInt = #line) {
        XCTAssertFalse(FileManager.default.fileExists(atPath: output.path), "output exists", line: line)
        let siblings = (try? FileManager.default.contentsOfDirectory(atPath: output.deletingLastPathComponent().path)) ?? []
        XCTAssertFalse(siblings.contains { $0.hasPrefix(".\(output.lastPathComponent).") }, "leftover: \(siblings)", line: line)
    }

    // MARK: Loading

    func testFolderPerClass() throws {
        let dir = try smallDataset(perClass: 3)
        try Data("notes".utf8).write(to: dir.appendingPathComponent("tone/README.txt"))
        try Data(SyntheticSounds.wav([0, 0.1])).write(to: dir.appendingPathComponent("loose.wav"))
        try FileManager.default.createDirectory(at: dir.appendingPathComponent(".hidden"), withIntermediateDirectories: true)
        let data = try TrainingDataset.load(from: dir)
        XCTAssertEqual(data.classes, ["clicks", "noise", "tone"])
        XCTAssertEqual(data.examples.count, 9)
        XCTAssertEqual(data.countsPerClass, [3, 3, 3])
        XCTAssertEqual(data.examples[0].labels, ["clicks"])
        XCTAssertTrue(data.examples[0].file.path.hasSuffix("clicks/clicks_0.wav"))
        XCTAssertEqual(data.warnings.count, 1)
        XCTAssertTrue(data.warnings[0].contains("1 audio file"), data.warnings[0])
    }

    func testCSV() throws {
        let dir = try smallDataset(perClass: 2)
        let csv = root.appendingPathComponent("labels.csv")
        try """
        file,labels
        data/tone/tone_0.wav,tone;beep
        "data/tone/tone_1.wav",tone
        data/noise/noise_0.wav, noise ; hiss ;
        \(dir.path)/noise/noise_1.wav,noise

        """.write(to: csv, atomically: true, encoding: .utf8)
        let data = try TrainingDataset.load(from: csv, multiLabel: true)
        XCTAssertEqual(data.classes, ["beep", "hiss", "noise", "tone"])
        XCTAssertEqual(data.examples.map(\.labels), [["tone", "beep"], ["tone"], ["noise", "hiss"], ["noise"]])
        XCTAssertEqual(data.examples[0].file.path, dir.appendingPathComponent("tone/tone_0.wav").path)
        // Single-label mode refuses several labels, naming the line.
        assertTrainingError(.malformedCSV, mentions: ["labels.csv, line 2", "2 labels", "multi-label"]) {
            try TrainingDataset.load(from: csv)
        }
    }

    func testBadCSVs() throws {
        _ = try smallDataset(perClass: 2)
        func write(_ text: String) throws -> URL {
            let u = root.appendingPathComponent("bad-\(UUID().uuidString).csv")
            try text.write(to: u, atomically: true, encoding: .utf8)
            return u
        }
        assertTrainingError(.malformedCSV, mentions: ["line 2", "no label", "tone_1.wav"]) {
            try TrainingDataset.load(from: write("data/tone/tone_0.wav,tone\ndata/tone/tone_1.wav,\n"))
        }
        assertTrainingError(.malformedCSV, mentions: ["line 1", "1 field"]) {
            try TrainingDataset.load(from: write("data/tone/tone_0.wav\n"))
        }
        assertTrainingError(.notFound, mentions: ["line 2", "missing.wav", "do not exist"]) {
            try TrainingDataset.load(from: write("data/tone/tone_0.wav,tone\ndata/missing.wav,tone\n"))
        }
        assertTrainingError(.malformedCSV, mentions: ["line 2", "already listed on line 1"]) {
            try TrainingDataset.load(from: write("data/tone/tone_0.wav,tone\n./data/tone/tone_0.wav,noise\n"))
        }
        assertTrainingError(.emptyDataset, mentions: ["lists no files"]) {
            try TrainingDataset.load(from: write("file,label\n"))
        }
        assertTrainingError(.notFound, mentions: ["no such file"]) {
            try TrainingDataset.load(from: root.appendingPathComponent("nope.csv"))
        }
    }

    func testEmptyFoldersAndSmallClasses() throws {
        let empty = root.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        assertTrainingError(.emptyDataset, mentions: ["no audio files", "one subfolder per class"]) {
            try TrainingDataset.load(from: empty)
        }
        try FileManager.default.createDirectory(at: empty.appendingPathComponent("dogs"), withIntermediateDirectories: true)
        assertTrainingError(.emptyDataset, mentions: ["'dogs' holds no audio files"]) {
            try TrainingDataset.load(from: empty)
        }

        let dir = try smallDataset(perClass: 3)
        let lonely = dir.appendingPathComponent("doorbell")
        try FileManager.default.createDirectory(at: lonely, withIntermediateDirectories: true)
        try Data(SyntheticSounds.wav([Float](repeating: 0.1, count: 4000))).write(to: lonely.appendingPathComponent("ding.wav"))
        let data = try TrainingDataset.load(from: dir)
        let output = root.appendingPathComponent("out")
        assertTrainingError(.notEnoughExamples, mentions: ["'doorbell' (1 example)", "one to validate on"]) {
            try job(data, output: output).run()
        }
        assertNothingWritten(output)
        // Without validation one example per class is enough.
        XCTAssertNoThrow(try data.check(validationSplit: 0))
    }

    // MARK: Unreadable audio and the output folder

    func testUnreadableFilesFailCleanlyOrAreSkipped() throws {
        let dir = try smallDataset(perClass: 4)
        let bad = dir.appendingPathComponent("noise/broken.wav")
        try Data("RIFF....WAVEfmt garbage".utf8).write(to: bad)
        let data = try TrainingDataset.load(from: dir)
        XCTAssertEqual(data.examples.count, 13)
        let output = root.appendingPathComponent("models/out")
        assertTrainingError(.unreadableAudio, mentions: ["1 of 13", "broken.wav"]) {
            try job(data, output: output).run()
        }
        assertNothingWritten(output)

        final class Log: @unchecked Sendable { var warnings: [String] = []; let lock = NSLock() }
        let log = Log()
        let result = try job(data, output: output, skip: true).run { event in
            if case .warning(let w) = event { log.lock.lock(); log.warnings.append(w); log.lock.unlock() }
        }
        XCTAssertEqual(result.skipped.map(\.file.lastPathComponent), ["broken.wav"])
        XCTAssertEqual(result.examples.count, 12)
        XCTAssertTrue(log.warnings.contains { $0.contains("skipped") && $0.contains("broken.wav") }, "\(log.warnings)")
        XCTAssertTrue(FileManager.default.fileExists(atPath: output.appendingPathComponent("model.safetensors").path))
    }

    func testOutputIsAtomicAndNeverClobbered() throws {
        let data = try TrainingDataset.load(from: try smallDataset())
        let output = root.appendingPathComponent("out")
        // A non-empty folder that is not ours is refused before any work.
        try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
        try Data("keep".utf8).write(to: output.appendingPathComponent("notes.txt"))
        assertTrainingError(.output, mentions: ["not empty"]) { try job(data, output: output).run() }
        assertTrainingError(.output, mentions: ["not a model folder"]) { try job(data, output: output, overwrite: true).run() }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: output.path), ["notes.txt"])
        try FileManager.default.removeItem(at: output)

        // A failure while writing leaves nothing behind.
        let result = try job(data, output: root.appendingPathComponent("first")).run()
        let failing = root.appendingPathComponent("failing")
        XCTAssertThrowsError(try CedModelWriter.write(
            base: try microCheckpoint(), config: result.config, head: result.trained.stateDict, to: failing,
            extraFiles: ["no/such/dir.json": Data()]))
        assertNothingWritten(failing)

        // An existing model folder is replaced only when asked.
        let first = root.appendingPathComponent("first")
        assertTrainingError(.output, mentions: ["not empty"]) { try job(data, output: first).run() }
        let again = try job(data, output: first, options: .init(epochs: 3, seed: 9), overwrite: true).run()
        XCTAssertEqual(again.trained.report.epochs.count, 3)
        let reloaded = try PretrainedCheckpoint.load(first.path)
        XCTAssertEqual(reloaded.weights["outputlayer.1.weight"]!.scalars, again.trained.stateDict["outputlayer.1.weight"]!.scalars)
        assertNothingWritten(root.appendingPathComponent("second"))
        XCTAssertFalse(try FileManager.default.contentsOfDirectory(atPath: root.path).contains { $0.hasPrefix(".first.") })
    }

    // MARK: Cache

    func testCacheIsKeyedByContentAndModel() throws {
        let dir = try smallDataset(perClass: 2)
        let files = try TrainingDataset.load(from: dir).examples.map(\.file)
        let cache = EmbeddingCache(directory: root.appendingPathComponent("cache"))
        let embedder = try CedEmbedder(checkpoint: try microCheckpoint())
        let first = try embedder.embed(files: files, cache: cache, concurrency: 2)
        XCTAssertEqual(first.computedCount, 6)
        XCTAssertEqual(first.cachedCount, 0)
        // Equal to a direct computation, whatever thread computed it.
        for (f, v) in zip(files, first.vectors) {
            XCTAssertEqual(v, try embedder.embedding(file: f).vector)
        }
        let second = try embedder.embed(files: files, cache: cache)
        XCTAssertEqual(second.cachedCount, 6)
        XCTAssertEqual(second.vectors, first.vectors)

        // Moving a file keeps its entry; changing its bytes does not.
        let moved = root.appendingPathComponent("moved.wav")
        try FileManager.default.copyItem(at: files[0], to: moved)
        XCTAssertEqual(try embedder.embed(files: [moved], cache: cache).cachedCount, 1)
        try Data(SyntheticSounds.wav([Float](repeating: 0.05, count: 5000))).write(to: moved)
        XCTAssertEqual(try embedder.embed(files: [moved], cache: cache).computedCount, 1)

        // A corrupt entry is recomputed.
        let hash = try CedEmbedder.contentHash(of: files[1])
        let entry = cache.entryURL(model: embedder.modelIdentity, fileHash: hash)
        try Data("garbage".utf8).write(to: entry)
        let third = try embedder.embed(files: [files[1]], cache: cache)
        XCTAssertEqual(third.computedCount, 1)
        XCTAssertEqual(third.vectors[0], first.vectors[1])

        // Another model (token pooling, other weights) has another identity.
        let other = try CedEmbedder(checkpoint: try PretrainedCheckpoint.load(try Reference.model("micro-token").path))
        XCTAssertNotEqual(other.modelIdentity, embedder.modelIdentity)
        // The same weights read from another format have the same identity.
        let fromBin = try CedEmbedder(checkpoint: try PretrainedCheckpoint.load(try Reference.model("micro-bin").path))
        XCTAssertEqual(fromBin.modelIdentity, embedder.modelIdentity)

        XCTAssertEqual(EmbeddingCache.defaultDirectory(environment: ["CED_CACHE_DIR": "/x", "HOME": "/h"]).path, "/x/embeddings")
        XCTAssertEqual(EmbeddingCache.defaultDirectory(environment: ["XDG_CACHE_HOME": "/c", "HOME": "/h"]).path, "/c/ced/embeddings")
    }

    func testMultiLabelTrainingFromCSV() throws {
        let dir = try smallDataset(perClass: 4)
        var rows = ["file,labels"]
        for kind in ["tone", "noise", "clicks"] {
            for i in 0..<4 {
                rows.append("data/\(kind)/\(kind)_\(i).wav,\(kind)\(i % 2 == 0 ? ";even" : "")")
            }
        }
        let csv = root.appendingPathComponent("multi.csv")
        try rows.joined(separator: "\n").write(to: csv, atomically: true, encoding: .utf8)
        _ = dir
        let data = try TrainingDataset.load(from: csv, multiLabel: true)
        let output = root.appendingPathComponent("multi-model")
        let result = try job(data, output: output, options: .init(epochs: 20, validationSplit: 0.3, multiLabel: true)).run()
        let report = result.trained.report
        XCTAssertTrue(report.multiLabel)
        XCTAssertEqual(report.lossFunction, .bceWithLogits)
        XCTAssertEqual(report.classes, ["clicks", "even", "noise", "tone"])
        XCTAssertNotNil(report.meanAveragePrecision)
        XCTAssertNil(report.accuracy)
        XCTAssertTrue(report.epochs.allSatisfy { $0.validationMAP != nil })
        for c in 0..<4 { XCTAssertTrue(result.trained.trainIndices.contains { result.examples[$0].labels.contains(report.classes[c]) }) }
        let tagger = try CedAudioTagger.fromPretrained(output.path)
        XCTAssertEqual(tagger.config.outputdim, 4)
        XCTAssertEqual(tagger.config.id2label?[1], "even")
        XCTAssertTrue(report.formatted().contains("AP"))
    }

    // MARK: Poolings

    /// For every pooling head training supports, the saved model reproduces the scores
    /// training reported for its evaluation files, exactly (features cached as the model
    /// computes them: mean token, mean cls token, or raw logits for `logit`).
    func testSavedModelReproducesEvaluationScoresForEachPooling() throws {
        let data = try TrainingDataset.load(from: try smallDataset(perClass: 3))
        let cases: [(String, CedPooling?)] = [("micro", nil), ("micro-token", nil), ("micro", .logit)]
        for (name, pooling) in cases {
            let ckpt = try PretrainedCheckpoint.load(try Reference.model(name).path, options: .init(pooling: pooling))
            let output = root.appendingPathComponent("model-\(name)-\(pooling?.rawValue ?? "default")")
            let result = try HeadTrainingJob(model: ckpt, dataset: data, output: output, options: .init(epochs: 10, validationSplit: 0),
                                             cache: EmbeddingCache(directory: root.appendingPathComponent("cache"))).run()
            XCTAssertEqual(result.trained.evaluationIndices.count, 9)
            let tagger = try CedAudioTagger.fromPretrained(output.path)
            XCTAssertEqual(tagger.config.pooling, ckpt.config.pooling)
            for (j, i) in result.trained.evaluationIndices.enumerated() {
                let wave = try Waveform(contentsOf: result.examples[i].file)
                XCTAssertEqual(try tagger.scores(wave.samples).scalars, result.trained.evaluationScores[j], "\(name) \(i)")
            }
            if pooling == .logit {
                XCTAssertTrue(result.trained.evaluationScores.joined().contains { $0 < 0 || $0 > 1 }, "raw logits")
            }
        }
        // dm pooling runs the head per time step: not supported, said clearly.
        let dm = try PretrainedCheckpoint.load(try Reference.model("micro").path, options: .init(pooling: .dm))
        assertTrainingError(.unsupportedModel, mentions: ["'dm' pooling"]) {
            try HeadTrainingJob(model: dm, dataset: data, output: root.appendingPathComponent("dm"), cache: nil).run()
        }
        assertNothingWritten(root.appendingPathComponent("dm"))
    }
}
