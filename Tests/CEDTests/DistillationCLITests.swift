import Foundation
import XCTest
@testable import CED

/// `ced distill` as a user runs it: the store's determinism, resume, shards, size and
/// consistency, and a label-free student.
extension CLITests {
    func distillFixture(_ name: String) throws -> URL { try Reference.require().appendingPathComponent("distill/\(name)") }

    /// A folder holding the first `count` unlabelled clips (as copies, so paths are ours).
    func unlabelled(_ count: Int) throws -> URL {
        let src = try distillFixture("unlabelled")
        let dir = tmp.appendingPathComponent("unlabelled")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let names = try FileManager.default.contentsOfDirectory(atPath: src.path).filter { $0.hasSuffix(".wav") }.sorted().prefix(count)
        for n in names { try FileManager.default.copyItem(at: src.appendingPathComponent(n), to: dir.appendingPathComponent(n)) }
        return dir
    }

    func info(_ store: URL) throws -> [String: Any] {
        let r = try ced(["distill", "info", store.path, "--format", "json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        return try XCTUnwrap(r.json as? [String: Any], r.stdout)
    }

    func testDistillLogitStoreIsDeterministicResumableAndSharded() throws {
        let data = try unlabelled(4)
        // micro has 527 classes: top 20 as upstream, 40 views per item.
        let teacher = try micro()
        func logits(_ store: URL, _ extra: [String] = []) -> [String] {
            ["distill", "logits", "--teacher", teacher, "--output", store.path, "--epochs", "40", "--topk", "20",
             "--chunk-length", "1.5", "--quiet", data.path] + extra
        }
        let a = tmp.appendingPathComponent("a")
        let r = try ced(logits(a))
        XCTAssertEqual(r.status, 0, r.stderr)
        let ia = try info(a)
        XCTAssertEqual(ia["complete"] as? Bool, true)
        XCTAssertEqual(ia["items"] as? Int, 8, "4 clips of 2 s in chunks of 1.5 s: 1.5 s + 0.5 s each")
        XCTAssertEqual(ia["epochs"] as? Int, 40)
        // Per view: the shard's bytes (values, classes, seeds and the item index); store.json
        // adds a fixed 2–3 KB per store, which only a store this small notices.
        let shardBytes = try XCTUnwrap(try FileManager.default.attributesOfItem(atPath: a.appendingPathComponent(LogitStore.shardName(0, of: 1)).path)[.size] as? Int)
        XCTAssertLessThanOrEqual(Double(shardBytes) / Double(8 * 40), 100, "bytes per item-epoch at top 20")
        XCTAssertNotNil(ia["bytes_per_item_epoch"] as? Double)
        XCTAssertNotNil(ia["ratio_to_audio"] as? Double)
        let digest = try XCTUnwrap(ia["digest"] as? String)
        let shardName = LogitStore.shardName(0, of: 1)

        // The same inputs give the same bytes.
        let b = tmp.appendingPathComponent("b")
        XCTAssertEqual(try ced(logits(b)).status, 0)
        XCTAssertEqual(try Data(contentsOf: a.appendingPathComponent(shardName)), try Data(contentsOf: b.appendingPathComponent(shardName)))
        XCTAssertEqual(try Data(contentsOf: a.appendingPathComponent("store.json")), try Data(contentsOf: b.appendingPathComponent("store.json")))

        // Two shards: incomplete with one (and refused by the trainer, naming it), the same digest with both.
        let s = tmp.appendingPathComponent("sharded")
        XCTAssertEqual(try ced(logits(s, ["--shard", "0/2"])).status, 0)
        let half = try info(s)
        XCTAssertEqual(half["complete"] as? Bool, false)
        XCTAssertEqual((half["shards"] as? [String: Any])?["missing"] as? [Int], [1])
        let student = tmp.appendingPathComponent("student.json")
        try Data(#"{"embed_dim": 32, "depth": 1, "num_heads": 2}"#.utf8).write(to: student)
        let refused = try ced(["distill", "train", "--logits", s.path, "--student", student.path, "--output", tmp.appendingPathComponent("x").path])
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains("1/2") && refused.stderr.contains(LogitStore.shardName(1, of: 2)), refused.stderr)
        // --shard auto from a Slurm array's environment.
        let auto = try ced(logits(s, ["--shard", "auto"]), env: ["SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2"])
        XCTAssertEqual(auto.status, 0, auto.stderr)
        let full = try info(s)
        XCTAssertEqual(full["complete"] as? Bool, true)
        XCTAssertEqual(full["digest"] as? String, digest, "shards 0/2 + 1/2 hold what one run holds")

        // Killed with SIGKILL after its first finished block, then run again: the same store.
        let k = tmp.appendingPathComponent("killed")
        let p = Process()
        p.executableURL = Self.executable
        p.arguments = logits(k, ["--jobs", "1"])
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        p.environment = ProcessInfo.processInfo.environment.merging(["HF_HUB_OFFLINE": "1"]) { $1 }
        try p.run()
        let partial = k.appendingPathComponent(String(format: ".partial-%05d-of-%05d", 0, 1))
        let deadline = Date().addingTimeInterval(120)
        var sawPart = false
        while p.isRunning && Date() < deadline {
            if let entries = try? FileManager.default.contentsOfDirectory(atPath: partial.path), entries.contains(where: { $0.hasPrefix("part-") }) {
                sawPart = true
                break
            }
            usleep(1000)
        }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        XCTAssertTrue(sawPart, "a block was finished before the kill")
        XCTAssertEqual(try ced(logits(k)).status, 0)
        XCTAssertEqual(try info(k)["digest"] as? String, digest)
        XCTAssertEqual(try Data(contentsOf: a.appendingPathComponent(shardName)), try Data(contentsOf: k.appendingPathComponent(shardName)))

        // Other settings into the same store are refused.
        let other = try ced(logits(a, ["--seed", "3"]))
        XCTAssertEqual(other.status, 1)
        XCTAssertTrue(other.stderr.contains("seed"), other.stderr)

        // verify replays sampled views; a damaged value is found.
        let v = try ced(["distill", "verify", a.path, "--sample", "6"])
        XCTAssertEqual(v.status, 0, v.stderr)
        XCTAssertTrue(v.stdout.contains("verified 6 of 6"), v.stdout)
        let url = a.appendingPathComponent(shardName)
        var bytes = try Data(contentsOf: url)
        let f = try RawSafeTensors.File(contentsOf: url)
        let values = try XCTUnwrap(f.tensors["values"]).range
        for i in stride(from: values.lowerBound, to: values.upperBound, by: 2) { bytes[i + 1] ^= 0x40 }   // every value changed
        try bytes.write(to: url)
        let bad = try ced(["distill", "verify", a.path, "--sample", "3"])
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.stderr.contains("mismatch"), bad.stderr)
    }

    /// A student trained on a store without a single label: saved with the teachers' labels
    /// and mean pooling, logging per step (a smoke run; whether it learns the teacher's
    /// classes is checked at full size by scripts/check_distill.sh in .ci/run).
    func testDistillTrainsAStudentWithoutLabels() throws {
        let data = try unlabelled(16)
        let store = tmp.appendingPathComponent("store")
        let r = try ced(["distill", "logits", "--teacher", try distillFixture("teacher-synth4").path, "--output", store.path,
                         "--epochs", "2", "--chunk-length", "2", "--time-mask", "40", "--freq-mask", "12", "--quiet", data.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let student = tmp.appendingPathComponent("student.json")
        try Data(#"{"embed_dim": 32, "depth": 1, "num_heads": 2, "pooling": "mean", "target_length": 300}"#.utf8).write(to: student)
        // 40 labelled clips to evaluate on.
        let csv = try String(contentsOf: try distillFixture("test.csv"), encoding: .utf8).split(separator: "\n")
        let evalCSV = tmp.appendingPathComponent("eval.csv")
        let testDir = try distillFixture("test").path
        try (["file,label"] + csv.dropFirst().prefix(8).map { line -> String in
            let parts = line.split(separator: ",")
            return "\(testDir)/\(parts[0].split(separator: "/").last!),\(parts[1])"
        }).joined(separator: "\n").write(to: evalCSV, atomically: true, encoding: .utf8)
        let out = tmp.appendingPathComponent("student-out")
        let t = try ced(["distill", "train", "--logits", store.path, "--student", student.path, "--output", out.path,
                         "--epochs", "2", "--eval", evalCSV.path, "--log-format", "jsonl", "--seed", "1"])
        XCTAssertEqual(t.status, 0, t.stderr)
        let lines = t.stdout.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        XCTAssertEqual(lines.filter { $0["loss"] != nil }.count, 2 * 2, "16 items in batches of 8, two epochs")
        XCTAssertEqual(lines.compactMap { $0["val_accuracy"] as? Double }.count, 2, "one validation per epoch")
        let best = lines.compactMap { $0["val_accuracy"] as? Double }.max() ?? 0
        // Saved with the teachers' labels and mean pooling.
        let config = try CedConfig.load(from: out.appendingPathComponent("config.json"))
        XCTAssertEqual(config.pooling, .mean)
        XCTAssertEqual((0..<4).map { config.label(for: $0) }, ["tone", "noise", "clicks", "upchirp"])
        print("distilled student (smoke run): best evaluation accuracy \(best)")
        // Resuming a finished run is refused only when a checkpoint is left; none is.
        XCTAssertFalse(FileManager.default.fileExists(atPath: FinetuneJob.stateDirectory(for: out).path))
    }

    /// `ced distill pack`: the items' audio written once, resumed after a failure, checked by
    /// `verify --audio`, and a student trained from it equal to one trained from the files.
    func testPackedAudioTrainsTheSameStudentAsTheFiles() throws {
        let data = try unlabelled(12)
        let store = tmp.appendingPathComponent("store")
        let r = try ced(["distill", "logits", "--teacher", try distillFixture("teacher-synth4").path, "--output", store.path,
                         "--epochs", "2", "--chunk-length", "1.5", "--quiet", data.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let packURL = store.appendingPathComponent(AudioPack.fileName(0, of: 1))
        // A file gone: the pack stops naming it, after its first block of 8 files.
        let names = try FileManager.default.contentsOfDirectory(atPath: data.path).sorted()
        let moved = tmp.appendingPathComponent("moved.wav")
        try FileManager.default.moveItem(at: data.appendingPathComponent(names[9]), to: moved)
        let failed = try ced(["distill", "pack", store.path, "--jobs", "1"])
        XCTAssertEqual(failed.status, 1)
        XCTAssertTrue(failed.stderr.contains(names[9]), failed.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: packURL.path), "no pack until it is whole")
        XCTAssertEqual(try ced(["distill", "train", "--logits", store.path, "--student", "ced-tiny", "--output", tmp.appendingPathComponent("x").path,
                                "--audio", "pack"]).status, 1, "--audio pack needs a pack")
        try FileManager.default.moveItem(at: moved, to: data.appendingPathComponent(names[9]))
        let resumed = try ced(["distill", "pack", store.path, "--jobs", "1"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stderr.contains("resuming shard 0: 16 items"), resumed.stderr)
        // The same bytes as a pack written in one go.
        let fresh = tmp.appendingPathComponent("fresh")
        try FileManager.default.createDirectory(at: fresh, withIntermediateDirectories: true)
        for f in ["store.json", "data_root", LogitStore.shardName(0, of: 1)] {
            try FileManager.default.copyItem(at: store.appendingPathComponent(f), to: fresh.appendingPathComponent(f))
        }
        XCTAssertEqual(try ced(["distill", "pack", fresh.path, "--quiet"]).status, 0)
        XCTAssertEqual(try Data(contentsOf: packURL), try Data(contentsOf: fresh.appendingPathComponent(AudioPack.fileName(0, of: 1))))
        XCTAssertEqual(try info(store)["audio_packed_shards"] as? [Int], [0])
        // Its samples are the files' 16-bit samples, item by item.
        let reader = try LogitStore(directory: store).reader()
        let pack = try AudioPack.Reader(reader)
        for g in [0, 7, reader.count - 1] {
            let item = try reader.item(g)
            let wave = try Waveform(contentsOf: data.appendingPathComponent(item.path), sampleRate: 16000).samples
            XCTAssertEqual(try pack.samples(shard: 0, item: reader.location(g).item), Array(wave[item.start ..< item.end]))
        }
        // A student from the pack is the student from the files, bit for bit.
        let student = tmp.appendingPathComponent("student.json")
        try Data(#"{"embed_dim": 32, "depth": 1, "num_heads": 2, "pooling": "mean"}"#.utf8).write(to: student)
        var weights: [Data] = []
        for source in ["files", "pack"] {
            let out = tmp.appendingPathComponent("student-\(source)")
            let t = try ced(["distill", "train", "--logits", store.path, "--student", student.path, "--output", out.path,
                             "--epochs", "2", "--audio", source, "--seed", "4", "--quiet"])
            XCTAssertEqual(t.status, 0, t.stderr)
            weights.append(try Data(contentsOf: out.appendingPathComponent("model.safetensors")))
        }
        XCTAssertEqual(weights[0], weights[1])
        // verify --audio checks the audio's digest.
        XCTAssertEqual(try ced(["distill", "verify", store.path, "--sample", "2", "--audio"]).status, 0)
        var bytes = try Data(contentsOf: packURL)
        bytes[bytes.count / 2] ^= 1
        try bytes.write(to: packURL)
        let bad = try ced(["distill", "verify", store.path, "--sample", "2", "--audio"])
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.stderr.contains("SHA-256"), bad.stderr)
    }
}
