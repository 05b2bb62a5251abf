import Foundation
import XCTest
@testable import CED

/// `ced finetune` as a user runs it, against PyTorch and against itself.
extension CLITests {
    static let fixtures = Reference.packageRoot.appendingPathComponent("Tests/CEDTests/Fixtures/finetune")

    /// The step losses of a jsonl run (the objects with a "loss").
    func stepLosses(_ stdout: String) throws -> [Double] {
        try stdout.split(separator: "\n").compactMap { line in
            let o = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], String(line))
            return o["loss"] as? Double
        }
    }

    /// The hidden check's command on our fixture: the five losses match PyTorch's
    /// (scripts/ced_torch.py replay-csv on the same WAVs, with its own torch.stft log-mel)
    /// within 1e-4, and the saved model scores the clips as PyTorch's trained model
    /// within 1e-3.
    func testFinetuneTrajectoryMatchesPyTorch() throws {
        let data = tmp.appendingPathComponent("data")
        try FileManager.default.copyItem(at: Self.fixtures, to: data)
        let expected = try JSONSerialization.jsonObject(with: Data(contentsOf: data.appendingPathComponent("expected.json"))) as! [String: Any]
        let out = tmp.appendingPathComponent("out")
        let r = try ced(["finetune", "--model", try micro(), "--data", data.appendingPathComponent("train.csv").path, "--multi-label",
                         "--output", out.path, "--epochs", "5", "--batch-size", "4", "--lr", "0.001", "--weight-decay", "0.05",
                         "--warmup", "0", "--schedule", "constant", "--val-split", "0", "--no-augment", "--log-format", "jsonl",
                         "--seed", "0"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let losses = try stepLosses(r.stdout)
        let want = expected["losses"] as! [Double]
        XCTAssertEqual(losses.count, 5, r.stdout)
        for (i, (a, b)) in zip(losses, want).enumerated() { XCTAssertEqual(a, b, accuracy: 1e-4, "step \(i + 1) loss") }
        for line in r.stdout.split(separator: "\n") {
            let o = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            XCTAssertNotNil(o["epoch"] as? Int); XCTAssertNotNil(o["step"] as? Int); XCTAssertNotNil(o["lr"] as? Double)
        }

        let tagger = try CedAudioTagger.fromPretrained(out.path)
        XCTAssertEqual(tagger.config.outputdim, 527, "the model's own classes are kept")
        XCTAssertEqual(tagger.config.label(for: 74), "Dog")
        let evalWant = expected["eval_output"] as! [[Double]]
        var worst = 0.0
        for i in 0..<4 {
            let scores = try tagger.scores(try Waveform(contentsOf: data.appendingPathComponent("clip\(i).wav")).samples)
            for (a, b) in zip(scores.scalars, evalWant[i]) { worst = max(worst, abs(Double(a) - b)) }
        }
        XCTAssertLessThanOrEqual(worst, 1e-3, "ced tag on the fine-tuned model vs PyTorch's trained model")
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("training_report.json"))) as! [String: Any]
        XCTAssertEqual(report["keptHead"] as? Bool, true)
        XCTAssertEqual(report["steps"] as? Int, 5)
        print("finetune trajectory: losses \(losses), eval outputs within \(worst) of PyTorch's")
    }

    /// A micro-sized model from upstream's random initialisation learns the generated
    /// four-class data.
    func testFinetuneLearnsFromRandomInitialisation() throws {
        let data = tmp.appendingPathComponent("sounds")
        try SyntheticSounds.writeDataset(to: data, kinds: SyntheticSounds.Kind.allCases, perClass: 24, seconds: 0.5, seed: 11)
        let config = tmp.appendingPathComponent("micro.json")
        try Data(#"{"embed_dim": 64, "depth": 2, "num_heads": 2, "outputdim": 4, "pooling": "mean", "target_length": 100}"#.utf8).write(to: config)
        let out = tmp.appendingPathComponent("scratch")
        let r = try ced(["finetune", "--model", config.path, "--data", data.path, "--output", out.path, "--val-split", "0.25",
                         "--epochs", "16", "--batch-size", "8", "--seed", "2"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("random initialisation"), r.stdout)
        XCTAssertTrue(r.stdout.contains("a new head for 4 classes"), r.stdout)
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("training_report.json"))) as! [String: Any]
        let epochs = report["epochs"] as! [[String: Any]]
        let best = epochs.compactMap { $0["accuracy"] as? Double }.max() ?? 0
        XCTAssertGreaterThanOrEqual(best, 0.95, r.stdout)
        // The saved model is the best epoch's, and ced tag scores with it.
        let saved = report["savedEpoch"] as! Int
        XCTAssertEqual(epochs[saved - 1]["accuracy"] as? Double, best)
        let tag = try ced(["tag", "--model", out.path, "--format", "json", data.appendingPathComponent("tone/tone_0.wav").path])
        XCTAssertEqual(tag.status, 0, tag.stderr)
        print("finetune from random initialisation: best validation accuracy \(best)")
    }

    /// A run killed with SIGKILL mid-epoch and resumed ends with the very bytes of an
    /// uninterrupted run (dropout, drop path, masks, shift and mixup all on).
    func testFinetuneResumeAfterKill() throws {
        let data = tmp.appendingPathComponent("sounds")
        try SyntheticSounds.writeDataset(to: data, kinds: [.tone, .noise, .clicks], perClass: 6, seconds: 0.5, seed: 3)
        let config = tmp.appendingPathComponent("micro.json")
        try Data(#"{"embed_dim": 32, "depth": 2, "num_heads": 2, "outputdim": 3, "pooling": "logit", "target_length": 100, "drop_rate": 0.1, "attn_drop_rate": 0.1, "drop_path_rate": 0.2}"#.utf8).write(to: config)
        func args(_ out: URL) -> [String] {
            ["finetune", "--model", config.path, "--data", data.path, "--output", out.path, "--epochs", "6", "--batch-size", "4",
             "--val-split", "0.2", "--mixup", "0.5", "--time-mask", "20", "--freq-mask", "8", "--save-every", "2", "--seed", "9", "--quiet"]
        }
        let whole = tmp.appendingPathComponent("whole")
        XCTAssertEqual(try ced(args(whole)).status, 0)

        let killed = tmp.appendingPathComponent("killed")
        let state = FinetuneJob.stateDirectory(for: killed)
        let p = Process()
        p.executableURL = Self.executable
        p.arguments = args(killed)
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        // Kill it once its second checkpoint (step 4: epoch 2 of 6, mid-epoch) exists.
        let deadline = Date().addingTimeInterval(120)
        var step = 0
        while p.isRunning && Date() < deadline {
            if let s = try? String(contentsOf: state.appendingPathComponent("current"), encoding: .utf8),
               let n = Int(s.dropFirst("step-".count)), n >= 4 { step = n; break }
            usleep(2000)
        }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        XCTAssertGreaterThanOrEqual(step, 4, "the run was killed after a checkpoint")
        XCTAssertFalse(FileManager.default.fileExists(atPath: killed.appendingPathComponent("model.safetensors").path), "nothing half-written")
        // Without --resume the leftover checkpoint is refused, with it the run continues.
        let refused = try ced(args(killed))
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains("--resume"), refused.stderr)
        let resumed = try ced(args(killed).filter { $0 != "--quiet" } + ["--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("resumed from the checkpoint after step"), resumed.stdout)
        XCTAssertEqual(try Data(contentsOf: whole.appendingPathComponent("model.safetensors")),
                       try Data(contentsOf: killed.appendingPathComponent("model.safetensors")),
                       "a resumed run ends with the weights of an uninterrupted one")
        XCTAssertFalse(FileManager.default.fileExists(atPath: state.path), "the checkpoint folder is removed after success")
    }

    func testFinetuneBadInput() throws {
        let data = tmp.appendingPathComponent("sounds")
        try SyntheticSounds.writeDataset(to: data, kinds: [.tone, .noise], perClass: 3, seconds: 0.4, seed: 1)
        let config = tmp.appendingPathComponent("micro.json")
        try Data(#"{"embed_dim": 32, "depth": 1, "num_heads": 2, "outputdim": 2, "pooling": "logit", "target_length": 100}"#.utf8).write(to: config)
        let out = tmp.appendingPathComponent("out")
        let base = ["finetune", "--model", config.path, "--data", data.path, "--output", out.path, "--epochs", "2", "--val-split", "0"]

        // A loss that overflows: exit 1, the step named, the last good checkpoint kept, no output.
        let nan = try ced(base + ["--lr", "1e30", "--no-augment", "--quiet"])
        XCTAssertEqual(nan.status, 1)
        XCTAssertTrue(nan.stderr.contains("non-finite at step"), nan.stderr)
        XCTAssertTrue(nan.stderr.contains("last good checkpoint"), nan.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: FinetuneJob.stateDirectory(for: out).appendingPathComponent("current").path))
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path))
        try FileManager.default.removeItem(at: FinetuneJob.stateDirectory(for: out))

        // An unreadable file: listed and stopping, or skipped with --skip-bad-files.
        try Data("not audio".utf8).write(to: data.appendingPathComponent("noise/broken.wav"))
        let broken = try ced(base + ["--quiet"])
        XCTAssertEqual(broken.status, 1)
        XCTAssertTrue(broken.stderr.contains("broken.wav") && broken.stderr.contains("--skip-bad-files"), broken.stderr)
        let skipped = try ced(base + ["--skip-bad-files"])
        XCTAssertEqual(skipped.status, 0, skipped.stderr)
        XCTAssertTrue(skipped.stderr.contains("skipped") && skipped.stderr.contains("broken.wav"), skipped.stderr)

        // An occupied output: refused; a class with one file and a validation split: refused.
        let busy = try ced(base)
        XCTAssertEqual(busy.status, 1)
        XCTAssertTrue(busy.stderr.contains("not empty"), busy.stderr)
        try FileManager.default.createDirectory(at: data.appendingPathComponent("bell"), withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: data.appendingPathComponent("tone/tone_0.wav"), to: data.appendingPathComponent("bell/b.wav"))
        let lonely = try ced(["finetune", "--model", config.path, "--data", data.path, "--output", tmp.appendingPathComponent("x").path,
                              "--val-split", "0.2", "--skip-bad-files"])
        XCTAssertEqual(lonely.status, 1)
        XCTAssertTrue(lonely.stderr.contains("'bell' (1 example)"), lonely.stderr)
        // Bad options are usage errors (exit 2).
        XCTAssertEqual(try ced(base + ["--lr", "-1"]).status, 2)
        XCTAssertEqual(try ced(base + ["--shift", "2"]).status, 2)
    }
}
