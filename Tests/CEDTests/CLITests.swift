import Foundation
import XCTest
@testable import CED

/// Runs the built `ced` tool as a user would and checks its output against the library.
final class CLITests: XCTestCase {
    struct Run {
        var status: Int32
        var stdout: String
        var stderr: String
        var json: Any? { try? JSONSerialization.jsonObject(with: Data(stdout.utf8)) }
    }

    static var executable: URL {
        // The test bundle sits next to the products (`.build/<config>/`).
        var dir = Bundle(for: CLITests.self).bundleURL
        while dir.pathExtension == "xctest" || dir.lastPathComponent == "Contents" { dir.deleteLastPathComponent() }
        return dir.appendingPathComponent("ced")
    }

    func ced(_ args: [String], stdin: Data? = nil, env: [String: String] = [:]) throws -> Run {
        let p = Process()
        p.executableURL = Self.executable
        p.arguments = args
        var environment = ProcessInfo.processInfo.environment
        for (k, v) in env { environment[k] = v }
        environment["HF_HUB_OFFLINE"] = "1"
        p.environment = environment
        let out = Pipe(), err = Pipe(), inp = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = inp
        try p.run()
        if let stdin { inp.fileHandleForWriting.write(stdin) }
        try inp.fileHandleForWriting.close()
        // Read both pipes concurrently so a full stderr pipe cannot block the tool.
        final class Box: @unchecked Sendable { var data = Data() }
        let errBox = Box()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async { errBox.data = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        let errData = errBox.data
        p.waitUntilExit()
        return Run(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                   stderr: String(decoding: errData, as: UTF8.self))
    }

    var tmp: URL!

    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("ced-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    func micro() throws -> String { try Reference.model("micro").path }

    /// Parses `labels` arrays of the JSON schema into (index, label, score).
    func labels(_ any: Any?) -> [(Int, String, Float)] {
        (any as? [[String: Any]] ?? []).map { ($0["index"] as! Int, $0["label"] as! String, ($0["score"] as! NSNumber).floatValue) }
    }

    func testTagJSONMatchesLibraryExactly() throws {
        let audio = try Reference.audio("chirp_44k1_stereo_s24.wav").path
        let snap = try Reference.audio("snap_16k_mono_s16.wav").path
        let r = try ced(["tag", "--model", micro(), "--format", "json", "--top-k", "all", audio, snap])
        XCTAssertEqual(r.status, 0, r.stderr)
        let objects = try XCTUnwrap(r.json as? [[String: Any]], r.stdout)
        XCTAssertEqual(objects.count, 2)
        let tagger = try CedAudioTagger.fromPretrained(micro())
        for (object, path) in zip(objects, [audio, snap]) {
            XCTAssertEqual(object["file"] as? String, path)
            XCTAssertEqual(object["model"] as? String, try micro())
            let wave = try Waveform(path: path)
            XCTAssertEqual((object["duration_s"] as! NSNumber).doubleValue, wave.duration, accuracy: 1e-9)
            let got = labels(object["labels"])
            XCTAssertEqual(got.count, 527)
            let expected = try tagger.tag(wave.samples, topK: nil)
            XCTAssertEqual(got.map(\.0), expected.map(\.index))
            XCTAssertEqual(got.map(\.1), expected.map(\.label))
            XCTAssertEqual(got.map(\.2), expected.map(\.score))  // exact: shortest round-trip text
            XCTAssertTrue(zip(got, got.dropFirst()).allSatisfy { $0.2 >= $1.2 })
        }
        // The goldens, through the tool: original semantics on a three-chunk file.
        let tones = try Reference.audio("tones_noise_16k_mono_f32_23s.wav").path
        let o = try ced(["tag", "--model", micro(), "--format", "json", "--top-k", "all", "--chunking", "original", tones])
        let golden = try Reference.golden("micro").tensor("tones_noise_16k_mono_f32_23s.wav/default/output_original")
        for (index, _, score) in labels((o.json as? [[String: Any]])?.first?["labels"]) {
            XCTAssertEqual(score, golden.scalars[index], accuracy: 1e-4)
        }
    }

    func testOtherFormats() throws {
        let audio = try Reference.audio("snap_16k_mono_s16.wav").path
        let jsonl = try ced(["tag", "--model", micro(), "--format", "jsonl", "--top-k", "3", audio, audio])
        let lines = jsonl.stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, 2)
        let first = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any])
        XCTAssertEqual(labels(first["labels"]).count, 3)
        let csv = try ced(["tag", "--model", micro(), "--format", "csv", "--top-k", "2", audio])
        let rows = csv.stdout.split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false) }
        XCTAssertEqual(rows.first, ["file", "rank", "index", "label", "score"])
        XCTAssertEqual(rows.count, 3)
        XCTAssertEqual(rows[1][1], "1")
        XCTAssertEqual(Float(String(rows[1][4])), labels(first["labels"])[0].2)
        let table = try ced(["tag", "--model", micro(), "--format", "table", "--top-k", "2", audio])
        XCTAssertTrue(table.stdout.hasPrefix("FILE"), table.stdout)
        XCTAssertEqual(table.stdout.split(separator: "\n").count, 3)
        let threshold = try ced(["tag", "--model", micro(), "--format", "json", "--top-k", "all", "--threshold", "0.9", audio])
        let kept = labels((threshold.json as? [[String: Any]])?.first?["labels"])
        XCTAssertTrue(kept.allSatisfy { $0.2 >= 0.9 })
        XCTAssertLessThan(kept.count, 527)
    }

    func testStdin() throws {
        let audio = try Reference.audio("snap_16k_mono_s16.wav")
        let r = try ced(["tag", "--model", micro(), "--format", "json", "-"], stdin: try Data(contentsOf: audio))
        XCTAssertEqual(r.status, 0, r.stderr)
        let objects = try XCTUnwrap(r.json as? [[String: Any]])
        XCTAssertEqual(objects.first?["file"] as? String, "-")
        let viaFile = try ced(["tag", "--model", micro(), "--format", "json", audio.path])
        XCTAssertEqual(labels(objects.first?["labels"]).map(\.2), labels((viaFile.json as? [[String: Any]])?.first?["labels"]).map(\.2))
    }

    /// A directory with good, corrupt and non-audio files: every good file tagged, every bad
    /// one reported, exit code 1.
    func testMixedDirectory() throws {
        let dir = tmp.appendingPathComponent("mixed")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("sub"), withIntermediateDirectories: true)
        let good = try Data(contentsOf: try Reference.audio("snap_16k_mono_s16.wav"))
        try good.write(to: dir.appendingPathComponent("a-good.wav"))
        try good.write(to: dir.appendingPathComponent("sub/b-good.wav"))
        try good.prefix(30).write(to: dir.appendingPathComponent("c-truncated-header.wav"))
        try Data("hello, not audio".utf8).write(to: dir.appendingPathComponent("d-text.wav"))
        try Data().write(to: dir.appendingPathComponent("e-empty.flac"))
        try Data("notes".utf8).write(to: dir.appendingPathComponent("notes.txt"))  // not an audio extension: skipped
        let r = try ced(["tag", "--model", micro(), "--format", "json", dir.path], env: ["PATH": "/nonexistent"])
        XCTAssertEqual(r.status, 1, r.stderr)
        let objects = try XCTUnwrap(r.json as? [[String: Any]], r.stdout)
        XCTAssertEqual(objects.compactMap { $0["file"] as? String }, [dir.path + "/a-good.wav", dir.path + "/sub/b-good.wav"])
        for bad in ["c-truncated-header.wav", "d-text.wav", "e-empty.flac"] {
            XCTAssertTrue(r.stderr.contains("error: \(dir.path)/\(bad):"), "\(bad) not reported in:\n\(r.stderr)")
        }
        XCTAssertFalse(r.stderr.contains("notes.txt"))
        XCTAssertTrue(r.stderr.contains("3 of 5 files failed"), r.stderr)
    }

    func testUsageErrorsExit2() throws {
        XCTAssertEqual(try ced(["tag"]).status, 2)
        XCTAssertEqual(try ced(["tag", "--top-k", "many", "x.wav"]).status, 2)
        XCTAssertEqual(try ced(["tag", "--hop", "1", "x.wav"]).status, 2)
        XCTAssertEqual(try ced(["tag", "--format", "xml", "x.wav"]).status, 2)
        XCTAssertEqual(try ced(["frobnicate"]).status, 2)
        let help = try ced(["tag", "--help"])
        XCTAssertEqual(help.status, 0)
        XCTAssertTrue(help.stdout.contains("--window"))
        XCTAssertEqual(try ced(["--version"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines), cedVersion)
        // A model that cannot be loaded is a failure (1), not a usage error.
        let r = try ced(["tag", "--model", tmp.appendingPathComponent("nope").path, "x.wav"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("nope"), r.stderr)
    }

    /// `--window 2 --hop 1`: windows on the 10 ms frame grid, every regular window plus one
    /// ending with the file; each window's scores are exactly those of the library's window
    /// scorer (the windows of `ced tag --events` and `ced listen`), of `ced listen --windows`
    /// and of the window cut out as a clip; the file's own tags are unchanged.
    func testWindowedTimeline() throws {
        let path = try Reference.audio("tones_noise_16k_mono_f32_23s.wav").path
        let r = try ced(["tag", "--model", micro(), "--format", "json", "--top-k", "all", "--window", "2", "--hop", "1", path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let object = try XCTUnwrap((r.json as? [[String: Any]])?.first)
        let segments = try XCTUnwrap(object["segments"] as? [[String: Any]])
        let wave = try Waveform(path: path)
        let n = wave.samples.count  // 379200 samples = 23.7 s: windows start at 0…21 s, then one at 21.7 s ends with the file
        XCTAssertEqual(n, 379_200)
        let starts = (0...21).map { Double($0) } + [21.7]
        XCTAssertEqual(segments.map { ($0["start"] as! NSNumber).doubleValue }, starts)
        XCTAssertEqual(segments.map { ($0["end"] as! NSNumber).doubleValue }, starts.map { $0 + 2 })
        let tagger = try CedAudioTagger.fromPretrained(micro())
        var library: [CedWindowResult] = []
        let scorer = try CedAudioTagger.WindowScorer(tagger: tagger, windowing: try tagger.windowing(window: 2, hop: 1))
        try scorer.append(wave.samples) { library.append($0) }
        try scorer.finish { library.append($0) }
        XCTAssertEqual(library.count, segments.count)
        for (k, (s, w)) in zip(segments, library).enumerated() {
            XCTAssertEqual((s["start"] as! NSNumber).doubleValue, w.start)
            XCTAssertEqual(labels(s["labels"]).map(\.0), tagger.config.predictions(from: w.scores).map(\.index))
            XCTAssertEqual(labels(s["labels"]).map(\.2), tagger.config.predictions(from: w.scores).map(\.score))
            if k % 11 == 0 || k == segments.count - 1 {
                let first = Int((w.start * 16000).rounded())
                XCTAssertEqual(labels(s["labels"]).map(\.2), try tagger.tag(Array(wave.samples[first ..< first + 32000]), topK: nil).map(\.score))
            }
        }
        let whole = try tagger.tag(contentsOf: URL(fileURLWithPath: path), topK: nil)
        XCTAssertEqual(labels(object["labels"]).map(\.2), whole.map(\.score))

        // ced listen on the same file piped in: the same windows, the same top 5.
        let live = try ced(["listen", "--model", micro(), "--window", "2", "--hop", "1", "--windows", "--format", "jsonl", "--quiet", "-"],
                           stdin: try Data(contentsOf: URL(fileURLWithPath: path)))
        XCTAssertEqual(live.status, 0, live.stderr)
        let windows = live.stdout.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .filter { $0["window"] != nil }
        XCTAssertEqual(windows.map { ($0["start"] as! NSNumber).doubleValue }, starts)
        for (w, s) in zip(windows, segments) {
            XCTAssertEqual(labels(w["labels"]).map(\.0), Array(labels(s["labels"]).map(\.0).prefix(5)))
            XCTAssertEqual(labels(w["labels"]).map(\.2), Array(labels(s["labels"]).map(\.2).prefix(5)))
        }
        // ced tag --events with the same windows: each event's peak is one of its class's window scores.
        let events = try ced(["tag", "--events", "--model", micro(), "--window", "2", "--hop", "1", "--format", "json", path])
        let found = try XCTUnwrap((events.json as? [[String: Any]])?.first?["events"] as? [[String: Any]])
        XCTAssertFalse(found.isEmpty)
        for e in found {
            let index = e["index"] as! Int, peak = (e["score"] as! NSNumber).floatValue
            XCTAssertTrue(library.contains { $0.scores.scalars[index] == peak }, "event \(e) has no window scoring its peak")
        }
    }

    /// A window longer than the model sees at once is capped at target_length (with a warning);
    /// the hop defaults to the capped window.
    func testWindowLongerThanTargetLengthIsCapped() throws {
        let path = try Reference.audio("tones_noise_16k_mono_f32_23s.wav").path
        let r = try ced(["tag", "--model", micro(), "--format", "json", "--top-k", "all", "--window", "30", path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("target_length"), r.stderr)
        let segments = try XCTUnwrap((r.json as? [[String: Any]])?.first?["segments"] as? [[String: Any]])
        let tagger = try CedAudioTagger.fromPretrained(micro())
        let c = tagger.config, fe = tagger.featureExtractor.config
        // target_length 1012 frames = 1011 hops of 160 samples (center framing): 10.11 s.
        XCTAssertEqual(c.targetLength, 1012)
        let longest = Double((c.targetLength - 1) * fe.hopSize) / Double(fe.samplingRate)
        XCTAssertEqual(longest, 10.11, accuracy: 1e-12)
        // Two regular windows, then the one ending with the file (379200 − 161760 samples, on the frame grid).
        let starts = [0, longest, Double(379_200 - 161_760) / 16000]
        XCTAssertEqual(segments.map { ($0["start"] as! NSNumber).doubleValue }, starts)
        XCTAssertEqual(segments.map { ($0["end"] as! NSNumber).doubleValue }, starts.map { $0 + longest })
        let wave = try Waveform(path: path)
        for (s, start) in zip(segments, starts) {
            let first = Int((start * 16000).rounded())
            let expected = try tagger.tag(Array(wave.samples[first ..< first + 161_760]), topK: nil)
            XCTAssertEqual(labels(s["labels"]).map(\.2), expected.map(\.score))
        }
    }

    func testEmbedFormats() throws {
        let a = try Reference.audio("snap_16k_mono_s16.wav").path
        let b = try Reference.audio("chirp_44k1_stereo_s24.wav").path
        let tagger = try CedAudioTagger.fromPretrained(micro())
        let ea = try tagger.embedding(Waveform(path: a).samples)
        let eb = try tagger.embedding(Waveform(path: b).samples)

        let npy = tmp.appendingPathComponent("e.npy")
        XCTAssertEqual(try ced(["embed", "--model", micro(), "--output", npy.path, a, b]).status, 0)
        let data = try Data(contentsOf: npy)
        XCTAssertEqual(Array(data.prefix(8)), [0x93] + Array("NUMPY".utf8) + [1, 0])
        let headerLength = Int(data[8]) | Int(data[9]) << 8
        let header = String(decoding: data[10 ..< 10 + headerLength], as: UTF8.self)
        XCTAssertTrue(header.contains("'shape': (2, 64)"), header)
        XCTAssertEqual((10 + headerLength) % 64, 0)
        let values = data[(10 + headerLength)...].withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        XCTAssertEqual(values, ea.scalars + eb.scalars)
        XCTAssertEqual(try String(contentsOf: URL(fileURLWithPath: npy.path + ".files.txt"), encoding: .utf8), "\(a)\n\(b)\n")

        let st = tmp.appendingPathComponent("tokens.safetensors")
        XCTAssertEqual(try ced(["embed", "--model", micro(), "--pool", "none", "--output", st.path, a]).status, 0)
        let tokens = try SafeTensorsFile(contentsOf: st).tensor(a)
        XCTAssertEqual(tokens, try tagger.tokens(Waveform(path: a).samples).lastHiddenState)

        let jl = tmp.appendingPathComponent("e.jsonl")
        XCTAssertEqual(try ced(["embed", "--model", micro(), "--output", jl.path, b]).status, 0)
        let line = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: jl)) as? [String: Any])
        XCTAssertEqual((line["embedding"] as? [NSNumber])?.map(\.floatValue), eb.scalars)
    }

    func testInfoAndDownloadOfLocalModel() throws {
        let info = try ced(["info", micro(), "--format", "json"])
        XCTAssertEqual(info.status, 0, info.stderr)
        let o = try XCTUnwrap(info.json as? [String: Any])
        XCTAssertEqual(o["parameters"] as? Int, 155_343)
        XCTAssertEqual((o["config"] as? [String: Any])?["embed_dim"] as? Int, 64)
        let text = try ced(["info", try Reference.model("micro.pt").path, "--num-heads", "2"])
        XCTAssertTrue(text.stdout.contains("inferred from tensor shapes"), text.stdout)
        XCTAssertTrue(text.stdout.contains("match the feature extractor"), text.stdout)
        let dl = try ced(["download", micro()])
        XCTAssertEqual(dl.status, 0)
        XCTAssertTrue(dl.stdout.contains("nothing to download"))
        // Offline with an empty cache: a short, clear error and exit 1.
        let offline = try ced(["download", "mispeech/ced-tiny"], env: ["HF_HUB_CACHE": tmp.path])
        XCTAssertEqual(offline.status, 1)
        XCTAssertTrue(offline.stderr.contains("mispeech/ced-tiny"), offline.stderr)
    }
}
