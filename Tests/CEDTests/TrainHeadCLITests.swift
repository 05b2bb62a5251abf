import Foundation
import XCTest
@testable import CED

/// `ced train-head` as a user runs it (the `micro` model keeps it fast).
extension CLITests {
    func smallTrainingSet() throws -> URL {
        let dir = tmp.appendingPathComponent("sounds")
        try SyntheticSounds.writeDataset(to: dir, kinds: [.tone, .noise, .clicks], perClass: 4, seconds: 0.3, seed: 5)
        return dir
    }

    func testTrainHeadWritesAModelTagCanUse() throws {
        let data = try smallTrainingSet()
        let out = tmp.appendingPathComponent("my-model")
        let cache = tmp.appendingPathComponent("cache").path
        let args = ["train-head", "--model", try micro(), "--data", data.path, "--output", out.path,
                    "--cache-dir", cache, "--epochs", "15", "--seed", "4"]
        let r = try ced(args)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("data: 12 files, 3 classes (clicks 4, noise 4, tone 4)"), r.stdout)
        XCTAssertTrue(r.stdout.contains("embeddings: 12 computed, 0 from the cache"), r.stdout)
        XCTAssertTrue(r.stdout.contains("epoch 15/15  train loss"), r.stdout)
        XCTAssertTrue(r.stdout.contains("val acc"), r.stdout)
        XCTAssertTrue(r.stdout.contains("per-class results on the validation set (3 examples)"), r.stdout)
        XCTAssertTrue(r.stdout.contains("saved \(out.path)"), r.stdout)
        for f in ["config.json", "model.safetensors", "preprocessor_config.json", "training_report.json"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent(f).path), f)
        }

        // Same seed from the cache: same bytes.
        let again = tmp.appendingPathComponent("again")
        var args2 = args
        args2[6] = again.path
        let r2 = try ced(args2 + ["--quiet"])
        XCTAssertEqual(r2.status, 0, r2.stderr)
        XCTAssertTrue(r2.stdout.contains("embeddings: 0 computed, 12 from the cache"), r2.stdout)
        XCTAssertFalse(r2.stdout.contains("epoch 1/"), "--quiet hides epochs")
        XCTAssertEqual(try Data(contentsOf: out.appendingPathComponent("model.safetensors")),
                       try Data(contentsOf: again.appendingPathComponent("model.safetensors")))

        // ced tag uses the new labels.
        let tag = try ced(["tag", "--model", out.path, "--format", "json", data.appendingPathComponent("tone/tone_0.wav").path])
        XCTAssertEqual(tag.status, 0, tag.stderr)
        let labels = ((tag.json as? [[String: Any]])?.first?["labels"] as? [[String: Any]])?.compactMap { $0["label"] as? String }
        XCTAssertEqual(Set(labels ?? []), ["clicks", "noise", "tone"])

        // An occupied output is refused (exit 1) unless --overwrite.
        let busy = try ced(args)
        XCTAssertEqual(busy.status, 1)
        XCTAssertTrue(busy.stderr.contains("error: ") && busy.stderr.contains("not empty"), busy.stderr)
        XCTAssertEqual(try ced(args + ["--overwrite", "-q"]).status, 0)
    }

    func testTrainHeadBadInput() throws {
        let data = try smallTrainingSet()
        let out = tmp.appendingPathComponent("never")
        // A class with one example: exit 1, a clear message, nothing written.
        let lonely = data.appendingPathComponent("bell")
        try FileManager.default.createDirectory(at: lonely, withIntermediateDirectories: true)
        try Data(SyntheticSounds.wav([Float](repeating: 0.1, count: 3000))).write(to: lonely.appendingPathComponent("b.wav"))
        let r = try ced(["train-head", "--model", try micro(), "--data", data.path, "--output", out.path, "--no-cache"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("'bell' (1 example)"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path))
        try FileManager.default.removeItem(at: lonely)

        // An unreadable file: exit 1 naming it; --skip-bad-files trains without it.
        try Data("not audio".utf8).write(to: data.appendingPathComponent("tone/broken.wav"))
        let bad = try ced(["train-head", "--model", try micro(), "--data", data.path, "--output", out.path, "--no-cache"])
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.stderr.contains("broken.wav"), bad.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path))
        let skipped = try ced(["train-head", "--model", try micro(), "--data", data.path, "--output", out.path, "--no-cache",
                               "--skip-bad-files", "--epochs", "3"])
        XCTAssertEqual(skipped.status, 0, skipped.stderr)
        XCTAssertTrue(skipped.stderr.contains("warning: skipped") && skipped.stderr.contains("broken.wav"), skipped.stderr)

        // A CSV row without a label.
        let csv = tmp.appendingPathComponent("l.csv")
        try "sounds/tone/tone_0.wav,tone\nsounds/tone/tone_1.wav,\n".write(to: csv, atomically: true, encoding: .utf8)
        let noLabel = try ced(["train-head", "--model", try micro(), "--data", csv.path, "--output", tmp.appendingPathComponent("x").path])
        XCTAssertEqual(noLabel.status, 1)
        XCTAssertTrue(noLabel.stderr.contains("l.csv, line 2: no label"), noLabel.stderr)

        // Usage errors: exit 2.
        let usage = try ced(["train-head", "--model", try micro(), "--data", data.path, "--output", out.path, "--val-split", "1"])
        XCTAssertEqual(usage.status, 2)
        XCTAssertTrue(usage.stderr.contains("--val-split"), usage.stderr)
    }
}
