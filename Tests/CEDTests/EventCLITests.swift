import Foundation
import XCTest
@testable import CED

/// `ced tag --events` and `ced listen` run as a user would, against the library.
final class EventCLITests: XCTestCase {
    var tmp: URL!

    /// Runs the built tool (in `cwd`, default the temporary folder) with `stdin` as input.
    struct Runner {
        var cwd: URL
        func ced(_ args: [String], stdin: Data? = nil) throws -> CLITests.Run {
            let p = Process()
            p.executableURL = CLITests.executable
            p.arguments = args
            p.currentDirectoryURL = cwd
            var environment = ProcessInfo.processInfo.environment
            environment["HF_HUB_OFFLINE"] = "1"
            p.environment = environment
            let out = Pipe(), err = Pipe(), inp = Pipe()
            p.standardOutput = out
            p.standardError = err
            p.standardInput = inp
            try p.run()
            final class Box: @unchecked Sendable { var data = Data() }
            let errBox = Box(), outBox = Box()
            let group = DispatchGroup()
            group.enter()
            DispatchQueue.global().async { errBox.data = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
            group.enter()
            DispatchQueue.global().async { outBox.data = out.fileHandleForReading.readDataToEndOfFile(); group.leave() }
            // Write in blocks of random sizes, as a pipe from another program delivers them.
            if let stdin {
                var rng = TrainingRandom(seed: UInt64(stdin.count))
                var i = 0
                while i < stdin.count {
                    let n = min(stdin.count - i, 1 + rng.nextInt(below: 20000))
                    inp.fileHandleForWriting.write(stdin.subdata(in: i ..< i + n))
                    i += n
                }
            }
            try inp.fileHandleForWriting.close()
            group.wait()
            p.waitUntilExit()
            return CLITests.Run(status: p.terminationStatus, stdout: String(decoding: outBox.data, as: UTF8.self),
                                stderr: String(decoding: errBox.data, as: UTF8.self))
        }
    }

    var cli: Runner { Runner(cwd: tmp) }

    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("ced-events-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    func teacher() throws -> String { try Reference.require().appendingPathComponent("distill/teacher-synth4").path }

    static let rules = ["--window", "2", "--hop", "0.5", "--threshold", "0.7", "--merge-gap", "0.5", "--min-duration", "0.5"]

    /// The recording's samples as its WAV file reads back, and the library's events (made once).
    nonisolated(unsafe) static var cached: (samples: [Float], events: [CedEvent])?

    /// A 36 s recording as a WAV file, and the events the library finds in it.
    func recording() throws -> (path: String, samples: [Float], events: [CedEvent]) {
        let model = try teacher()
        if Self.cached == nil {
            let rec = try EventRecording.make(seconds: 36, seed: 5, gaps: 2...6, differentPairs: false)
            let x = EventRecording.quantized(rec.samples)
            let tagger = try CedAudioTagger.fromPretrained(model)
            let options = try CedEventOptions(classCount: 4, threshold: 0.7, minDuration: 0.5, mergeGap: 0.5)
            Self.cached = (x, try tagger.events(in: x, windowing: try tagger.windowing(window: 2, hop: 0.5), events: options).events)
        }
        let (x, events) = Self.cached!
        XCTAssertGreaterThanOrEqual(events.count, 4)
        let url = tmp.appendingPathComponent("rec.wav")
        try EventRecording.wav(x).write(to: url)
        return (url.path, x, events)
    }

    struct E: Equatable { var label: String; var index: Int; var start: Double; var end: Double; var score: Float; var mean: Float }

    func parse(_ o: [String: Any]) -> E {
        E(label: o["label"] as! String, index: o["index"] as! Int, start: (o["start"] as! NSNumber).doubleValue,
          end: (o["end"] as! NSNumber).doubleValue, score: (o["score"] as! NSNumber).floatValue, mean: (o["mean_score"] as! NSNumber).floatValue)
    }

    func assertMatches(_ got: [E], _ expected: [CedEvent], tolerance: Double = 0.0005, file: StaticString = #filePath, line: UInt = #line) {
        let sorted = got.sorted { ($0.start, $0.index) < ($1.start, $1.index) }
        XCTAssertEqual(sorted.count, expected.count, file: file, line: line)
        for (g, e) in zip(sorted, expected) {
            XCTAssertEqual(g.label, e.label, file: file, line: line)
            XCTAssertEqual(g.index, e.index, file: file, line: line)
            XCTAssertEqual(g.start, e.start, accuracy: tolerance, file: file, line: line)
            XCTAssertEqual(g.end, e.end, accuracy: tolerance, file: file, line: line)
            XCTAssertEqual(g.score, e.score, file: file, line: line)
            XCTAssertEqual(g.mean, e.meanScore, file: file, line: line)
        }
    }

    func testTagEventsFormatsMatchTheLibrary() throws {
        let (path, samples, expected) = try recording()
        let model = try teacher()
        let json = try cli.ced(["tag", "--events", "--model", model] + Self.rules + ["--format", "json", path])
        XCTAssertEqual(json.status, 0, json.stderr)
        let files = try XCTUnwrap(json.json as? [[String: Any]], json.stdout)
        XCTAssertEqual(files.count, 1)
        XCTAssertEqual(files[0]["file"] as? String, path)
        XCTAssertEqual(files[0]["model"] as? String, model)
        XCTAssertEqual((files[0]["duration_s"] as! NSNumber).doubleValue, Double(samples.count) / 16000, accuracy: 1e-9)
        XCTAssertNil(files[0]["labels"])
        assertMatches((files[0]["events"] as! [[String: Any]]).map(parse), expected)

        let jsonl = try cli.ced(["tag", "--events", "--model", model] + Self.rules + ["--format", "jsonl", path])
        XCTAssertEqual(jsonl.stdout.split(separator: "\n").count, 1)
        let object = try JSONSerialization.jsonObject(with: Data(jsonl.stdout.utf8)) as! [String: Any]
        assertMatches((object["events"] as! [[String: Any]]).map(parse), expected)

        let csv = try cli.ced(["tag", "--events", "--model", model] + Self.rules + ["--format", "csv", path])
        var lines = csv.stdout.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.removeFirst(), "file,start,end,index,label,score,mean_score")
        assertMatches(lines.map { l -> E in
            let f = l.split(separator: ",").map(String.init)
            XCTAssertEqual(f[0], path)
            return E(label: f[4], index: Int(f[3])!, start: Double(f[1])!, end: Double(f[2])!, score: Float(f[5])!, mean: Float(f[6])!)
        }, expected)

        let audacity = try cli.ced(["tag", "--events", "--model", model] + Self.rules + ["--format", "audacity", path])
        let labels = audacity.stdout.split(separator: "\n").map { $0.split(separator: "\t").map(String.init) }
        XCTAssertEqual(labels.count, expected.count)
        for (l, e) in zip(labels, expected) {
            XCTAssertEqual(l.count, 3)
            XCTAssertEqual(Double(l[0])!, e.start, accuracy: 1e-6)
            XCTAssertEqual(Double(l[1])!, e.end, accuracy: 1e-6)
            XCTAssertEqual(l[2], e.label)
        }

        // Raven, one table per input in --output-dir.
        let copy = tmp.appendingPathComponent("sub/rec2.wav")
        try FileManager.default.createDirectory(at: copy.deletingLastPathComponent(), withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: path, toPath: copy.path)
        let out = tmp.appendingPathComponent("tables")
        let noDir = try cli.ced(["tag", "--events", "--model", model, "--format", "raven", path, copy.path])
        XCTAssertEqual(noDir.status, 2, "several inputs need --output-dir")
        let raven = try cli.ced(["tag", "--events", "--model", model] + Self.rules + ["--format", "raven", "--output-dir", "tables", "--quiet", "."])
        XCTAssertEqual(raven.status, 0, raven.stderr)
        for name in ["rec.selections.txt", "sub/rec2.selections.txt"] {
            let table = try String(contentsOf: out.appendingPathComponent(name), encoding: .utf8)
            let rows = table.split(separator: "\n").map { $0.split(separator: "\t", omittingEmptySubsequences: false).map(String.init) }
            XCTAssertEqual(rows[0], ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)", "High Freq (Hz)",
                                     "Annotation", "Class Index", "Confidence", "Mean Confidence"])
            XCTAssertEqual(rows.count, expected.count + 1)
            for (i, (r, e)) in zip(rows.dropFirst(), expected).enumerated() {
                XCTAssertEqual(r[0], "\(i + 1)")
                XCTAssertEqual(Double(r[3])!, e.start, accuracy: 0.0005)
                XCTAssertEqual(Double(r[4])!, e.end, accuracy: 0.0005)
                XCTAssertEqual(r[6], "8000.0")
                XCTAssertEqual(r[7], e.label)
                XCTAssertEqual(Float(r[9])!, e.score)
            }
        }
    }

    func testThresholdsFileAndUsageErrors() throws {
        let (path, samples, _) = try recording()
        let model = try teacher()
        // Only tone, at 0.6 with release 0.3: the library with the same rules.
        let csv = tmp.appendingPathComponent("t.csv")
        try "label,threshold,release\n# only tones\nTone,0.6,0.3\n".write(to: csv, atomically: true, encoding: .utf8)
        let r = try cli.ced(["tag", "--events", "--model", model, "--thresholds", csv.path, "--merge-gap", "0.5", "--format", "json", path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let tagger = try CedAudioTagger.fromPretrained(model)
        let options = try CedEventOptions(rules: [try CedEventRule(threshold: 0.6, release: 0.3), nil, nil, nil], mergeGap: 0.5)
        let expected = try tagger.events(in: samples, windowing: try tagger.windowing(window: 2, hop: 0.5), events: options).events
        XCTAssertFalse(expected.isEmpty)
        assertMatches(((r.json as! [[String: Any]])[0]["events"] as! [[String: Any]]).map(parse), expected)

        try "label,threshold\nbarking,0.5\n".write(to: csv, atomically: true, encoding: .utf8)
        let bad = try cli.ced(["tag", "--events", "--model", model, "--thresholds", csv.path, path])
        XCTAssertEqual(bad.status, 2)
        XCTAssertTrue(bad.stderr.contains("line 2") && bad.stderr.contains("'barking' is not a class"), bad.stderr)
        for (args, message) in [(["--format", "audacity"], "needs --events"), (["--merge-gap", "1"], "needs --events"),
                                (["--events", "--release", "0.8", "--threshold", "0.7"], "--release"),
                                (["--events", "--window", "12"], "target_length")] {
            let u = try cli.ced(["tag", "--model", model] + args + [path])
            XCTAssertEqual(u.status, 2, "\(args): \(u.stderr)")
            XCTAssertTrue(u.stderr.contains(message), "\(args): \(u.stderr)")
        }
        // Without --events, ced tag is unchanged: clip tags.
        let plain = try cli.ced(["tag", "--model", model, "--format", "json", path])
        XCTAssertNotNil((plain.json as? [[String: Any]])?.first?["labels"])
    }

    func testListenStreamEqualsFile() throws {
        let (path, samples, expected) = try recording()
        let model = try teacher()
        // A streamed WAV header: data size 0xFFFFFFFF.
        let wav = EventRecording.wav(samples, dataSize: 0xFFFF_FFFF)
        let file = try cli.ced(["tag", "--events", "--model", model] + Self.rules + ["--format", "json", path])
        let fileEvents = ((file.json as! [[String: Any]])[0]["events"] as! [[String: Any]]).map(parse)
        let r = try cli.ced(["listen", "--model", model] + Self.rules + ["--format", "jsonl", "-"], stdin: wav)
        XCTAssertEqual(r.status, 0, r.stderr)
        let live = r.stdout.split(separator: "\n").map { parse(try! JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]) }
        XCTAssertEqual(live.sorted { ($0.start, $0.index) < ($1.start, $1.index) }, fileEvents)
        assertMatches(live, expected)
        XCTAssertTrue(r.stderr.contains("0 dropped"), r.stderr)

        // Raw PCM of the same samples: the same events.
        let raw = wav.subdata(in: 44 ..< wav.count)
        let r2 = try cli.ced(["listen", "--model", model] + Self.rules + ["--raw", "--rate", "16000", "--sample-format", "s16le", "--quiet", "-"], stdin: raw)
        XCTAssertEqual(r2.status, 0, r2.stderr)
        XCTAssertEqual(r2.stdout, r.stdout)
        XCTAssertEqual(r2.stderr, "")

        // --ongoing: updates with the id of the final report, before it.
        let r3 = try cli.ced(["listen", "--model", model] + Self.rules + ["--ongoing", "--format", "jsonl", "--quiet", "-"], stdin: wav)
        let lines = r3.stdout.split(separator: "\n").map { try! JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        let finals = lines.filter { $0["ongoing"] == nil }
        XCTAssertEqual(finals.map(parse), live)
        for (i, u) in lines.enumerated() where u["ongoing"] as? Bool == true {
            let id = u["id"] as! Int
            let final = try XCTUnwrap(lines[(i + 1)...].first { $0["ongoing"] == nil && $0["id"] as? Int == id }, "no final report for ongoing event \(id)")
            XCTAssertEqual(final["start"] as? NSNumber, u["start"] as? NSNumber)
            XCTAssertLessThanOrEqual((u["end"] as! NSNumber).doubleValue, (final["end"] as! NSNumber).doubleValue)
        }
    }

    func testListenBadInput() throws {
        let model = try teacher()
        let samples = [Float](repeating: 0.01, count: 48000)
        var cut = EventRecording.wav(samples, dataSize: 0)
        cut.removeLast(1)  // the last sample is cut in half
        var rate0 = EventRecording.wav(samples)
        rate0.replaceSubrange(24 ..< 28, with: [0, 0, 0, 0])
        var rng = TrainingRandom(seed: 9)
        let garbage = Data((0..<50000).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
        for (name, input, message) in [("cut mid-sample", cut, "cut inside a sample frame"), ("garbage", garbage, "does not start with a RIFF/WAVE header"),
                                       ("sample rate 0", rate0, "sample rate of 0 Hz"), ("empty", Data(), "before a WAV header arrived")] {
            let t0 = Date()
            let r = try cli.ced(["listen", "--model", model, "--format", "jsonl", "-"], stdin: input)
            XCTAssertEqual(r.status, 1, "\(name): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("error: standard input") && r.stderr.contains(message), "\(name): \(r.stderr)")
            XCTAssertLessThan(Date().timeIntervalSince(t0), 30, name)
        }
        // A missing device: ffmpeg's own message (or, without ffmpeg, that it is needed).
        let device = try cli.ced(["listen", "--model", model, "--input", "alsa:hw:97,0"])
        XCTAssertEqual(device.status, 1, device.stderr)
        XCTAssertTrue(device.stderr.contains("capture device alsa:hw:97,0"), device.stderr)
        // Usage errors.
        for args in [["listen", "--model", model], ["listen", "--model", model, "--raw", "-"], ["listen", "--model", model, "--rate", "16000", "-"],
                     ["listen", "--model", model, "--input", "default", "-"], ["listen", "--model", model, "--raw", "--rate", "0", "-"]] {
            XCTAssertEqual(try cli.ced(args).status, 2, "\(args)")
        }
    }

    /// Ctrl-C while an event is going on: it is flushed, ending where the audio stopped, exit 0.
    func testListenInterruptFlushesOpenEvents() throws {
        let model = try teacher()
        var rng = TrainingRandom(seed: 2)
        let clips = try EventRecording.clips()
        let tone = try Waveform(contentsOf: clips["tone"]![0]).samples
        // 1 s of faint noise, then the tone clip repeated: a tone that is still on when we stop.
        var x = (0..<16000).map { _ in 0.002 * Float(rng.nextGaussian()) }
        for _ in 0..<4 { x += tone }
        let p = Process()
        p.executableURL = CLITests.executable
        p.arguments = ["listen", "--model", model, "--format", "jsonl", "--windows", "--threshold", "0.7", "-"]
        let inp = Pipe(), out = Pipe(), err = Pipe()
        p.standardInput = inp
        p.standardOutput = out
        p.standardError = err
        try p.run()
        inp.fileHandleForWriting.write(EventRecording.wav(EventRecording.quantized(x), dataSize: 0xFFFF_FFFF))
        // Wait until the last complete window (ending at 9 s) has been printed, then interrupt;
        // standard input stays open, as with a live source.
        var text = ""
        let deadline = Date().addingTimeInterval(60)
        while !text.contains("\"end\": 9.0, \"labels\"") && Date() < deadline {
            let d = out.fileHandleForReading.availableData
            if d.isEmpty { break }
            text += String(decoding: d, as: UTF8.self)
        }
        p.interrupt()
        let rest = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        text += String(decoding: rest, as: UTF8.self)
        XCTAssertEqual(p.terminationStatus, 0, String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
        let events = text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .filter { $0["label"] != nil }
        let tones = events.filter { $0["label"] as? String == "tone" }
        XCTAssertEqual(tones.count, 1, text)
        if let t = tones.first {
            XCTAssertEqual((t["start"] as! NSNumber).doubleValue, 1, accuracy: 1)
            XCTAssertEqual((t["end"] as! NSNumber).doubleValue, 9, accuracy: 0.5, "ends with the last window when the input stops")
        }
        try? inp.fileHandleForWriting.close()
    }
}
