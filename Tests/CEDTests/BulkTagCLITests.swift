import Foundation
import XCTest
@testable import CED

/// `ced tag --shard i/n|auto --output FILE.jsonl --resume`: bulk tagging on a scheduler.
extension CLITests {
    /// `count` short WAV files of distinct noise in a folder (names sorted as created).
    func noiseClips(_ count: Int, seconds: Double = 0.3) throws -> URL {
        let dir = tmp.appendingPathComponent("clips")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var rng = TrainingRandom(seed: 7)
        for i in 0..<count {
            let n = Int(16000 * seconds)
            let amp = Float(0.05 + 0.5 * rng.nextDouble())
            let x = (0..<n).map { _ in amp * Float(2 * rng.nextDouble() - 1) }
            try WAVWriter.write(x, sampleRate: 16000, to: dir.appendingPathComponent(String(format: "clip-%04d.wav", i)))
        }
        return dir
    }

    /// The lines of a JSONL file by their `file`, failing on a file seen twice.
    func resultLines(_ url: URL) throws -> [String: String] {
        var out: [String: String] = [:]
        for line in try String(contentsOf: url, encoding: .utf8).split(separator: "\n") {
            let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let file = try XCTUnwrap(object["file"] as? String)
            XCTAssertNil(out[file], "\(file) appears twice")
            out[file] = String(line)
        }
        return out
    }

    func testTagShardsGiveTheSameResultsAsOneRun() throws {
        let clips = try noiseClips(30)
        let model = try micro()
        let whole = tmp.appendingPathComponent("whole.jsonl")
        let r = try ced(["tag", "--model", model, "--output", whole.path, "--quiet", clips.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout, "", "results go to the file")
        let all = try resultLines(whole)
        XCTAssertEqual(all.count, 30)
        var union: [String: String] = [:]
        for i in 0..<3 {
            let out = tmp.appendingPathComponent("shard-\(i).jsonl")
            // Shard 1 from a Slurm array's environment (task ids 4…6), the others given.
            let args = ["tag", "--model", model, "--shard", i == 1 ? "auto" : "\(i)/3", "--output", out.path, "--quiet", clips.path]
            let s = try ced(args, env: i == 1 ? ["SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "4", "SLURM_ARRAY_TASK_MAX": "6"] : [:])
            XCTAssertEqual(s.status, 0, s.stderr)
            let part = try resultLines(out)
            XCTAssertEqual(part.count, 10, "shard \(i) of 3 holds every third file")
            for (k, v) in part {
                XCTAssertNil(union[k], "\(k) in two shards")
                union[k] = v
            }
        }
        XCTAssertEqual(union, all, "three shards give the results of one run, line for line")
        // A list file names the same files (here by absolute path: the same names, the same lines).
        let list = tmp.appendingPathComponent("files.txt")
        try (["# the clips"] + all.keys.sorted().reversed()).joined(separator: "\n").write(to: list, atomically: true, encoding: .utf8)
        let listed = tmp.appendingPathComponent("listed.jsonl")
        XCTAssertEqual(try ced(["tag", "--model", model, "--shard", "0/3", "--output", listed.path, "--quiet", list.path]).status, 0)
        XCTAssertEqual(try resultLines(listed), try resultLines(tmp.appendingPathComponent("shard-0.jsonl")))
        // A Kubernetes Indexed Job's pod, and specifications that are refused.
        let k = try ced(["tag", "--model", model, "--shard", "auto", "--format", "jsonl", "--quiet", clips.path],
                        env: ["JOB_COMPLETION_INDEX": "2", "JOB_COMPLETIONS": "3"])
        XCTAssertEqual(k.status, 0, k.stderr)
        XCTAssertEqual(Set(k.stdout.split(separator: "\n").map(String.init)),
                       Set(try resultLines(tmp.appendingPathComponent("shard-2.jsonl")).values))
        for bad in ["3/3", "1/0", "x", "auto"] {
            let b = try ced(["tag", "--model", model, "--shard", bad, clips.path], env: ["SLURM_ARRAY_TASK_ID": "", "JOB_COMPLETION_INDEX": ""])
            XCTAssertEqual(b.status, 2, "--shard \(bad): \(b.stderr)")
            XCTAssertTrue(b.stderr.contains("--shard \(bad)"), b.stderr)
        }
        // An existing output is never overwritten without --resume.
        let again = try ced(["tag", "--model", model, "--output", whole.path, clips.path])
        XCTAssertEqual(again.status, 1)
        XCTAssertTrue(again.stderr.contains("--resume"), again.stderr)
        XCTAssertEqual(try resultLines(whole), all)
    }

    func testKilledTaggingResumesWithEveryFileExactlyOnce() throws {
        let clips = try noiseClips(60)
        let model = try micro()
        let reference = tmp.appendingPathComponent("reference.jsonl")
        XCTAssertEqual(try ced(["tag", "--model", model, "--output", reference.path, "--quiet", clips.path]).status, 0)
        let expected = try resultLines(reference)
        let out = tmp.appendingPathComponent("killed.jsonl")
        let args = ["tag", "--model", model, "--output", out.path, "--resume", "--jobs", "1", "--quiet", clips.path]
        // Killed twice with SIGKILL once some results are in, then left to finish.
        var counts: [Int] = []
        for _ in 0..<2 {
            let p = Process()
            p.executableURL = Self.executable
            p.arguments = args
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            p.environment = ProcessInfo.processInfo.environment.merging(["HF_HUB_OFFLINE": "1"]) { $1 }
            try p.run()
            let before = (try? resultLines(out).count) ?? 0
            let deadline = Date().addingTimeInterval(120)
            while p.isRunning && Date() < deadline {
                if let text = try? String(contentsOf: out, encoding: .utf8), text.split(separator: "\n").count >= before + 5 { break }
                usleep(2000)
            }
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            counts.append(try resultLines(out).count)
        }
        XCTAssertTrue(counts[0] >= 5 && counts[0] < 60 && counts[1] > counts[0] && counts[1] < 60, "killed part-way each time: \(counts)")
        // A torn last line (a write cut short) is cut on resume and its file tagged again.
        let handle = try FileHandle(forWritingTo: out)
        handle.seekToEndOfFile()
        handle.write(Data(#"{"file": "\#(clips.path)/clip-0059.wav", "duration_s": 0.3, "mod"#.utf8))
        try handle.close()
        let r = try ced(args.filter { $0 != "--quiet" })
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("cut"), r.stderr)
        XCTAssertTrue(r.stderr.contains("resuming: \(counts[1]) of 60"), r.stderr)
        XCTAssertEqual(try resultLines(out), expected, "every file exactly once, each result as an uninterrupted run gives it")
        // Finished: a resumed run has nothing left to do.
        let done = try ced(args)
        XCTAssertEqual(done.status, 0, done.stderr)
        XCTAssertEqual(try resultLines(out).count, 60)
    }

    func testResultLogIsLockedAgainstASecondWriter() throws {
        let url = tmp.appendingPathComponent("log.jsonl")
        let log = try CedResultLog(url: url, resume: false)
        try log.append(#"{"file": "a.wav", "labels": []}"#)
        XCTAssertThrowsError(try CedResultLog(url: url, resume: true)) { error in
            XCTAssertEqual((error as? BulkJobError)?.kind, .output)
            XCTAssertTrue("\(error)".contains("another process"), "\(error)")
        }
        // Garbage after the valid lines (a crash in the middle of the file) is cut.
        let other = tmp.appendingPathComponent("other.jsonl")
        try Data((#"{"file": "a.wav"}"# + "\n" + #"{"file": "b.wav"}"# + "\n\u{0}\u{0}\u{0}\n" + #"{"file": "c.wav"}"# + "\n").utf8).write(to: other)
        let reopened = try CedResultLog(url: other, resume: true)
        XCTAssertEqual(reopened.done, ["a.wav", "b.wav"])
        XCTAssertEqual(reopened.cutBytes, 22)
        XCTAssertEqual(try String(contentsOf: other, encoding: .utf8), #"{"file": "a.wav"}"# + "\n" + #"{"file": "b.wav"}"# + "\n")
    }
}
