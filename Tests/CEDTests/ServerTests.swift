#if canImport(CEDServer)   // built with Swift 6.1+ (see Package.swift)
import CED
@testable import CEDServer
import Foundation
import Hummingbird
import HummingbirdTesting
import HummingbirdWSClient
import HummingbirdWSTesting
import NIOWebSocket
import Logging
import XCTest

/// `ced serve` in process (HummingbirdTesting): every route, status and error, and the
/// answers compared with what `ced tag`, `ced tag --events`, `ced embed` and the library give
/// for the same files.
final class ServerTests: XCTestCase {
    static let quiet = Logger(label: "ced.serve.test") { _ in SwiftLogNoOpLogHandler() }

    func micro() throws -> CedAudioTagger { try CedAudioTagger.fromPretrained(Reference.model("micro").path) }
    func teacherPath() throws -> String { try Reference.require().appendingPathComponent("distill/teacher-synth4").path }

    func server(_ tagger: CedAudioTagger, name: String, configure: (inout CedServerConfiguration) -> Void = { _ in }) -> CedServer {
        var c = CedServerConfiguration()
        c.host = "127.0.0.1"
        c.port = 0
        c.workerThreads = 4
        configure(&c)
        return CedServer(tagger: tagger, modelName: name, configuration: c, logger: Self.quiet)
    }

    /// A multipart/form-data body with `fields` and the file.
    static func multipart(_ file: Data, fileName: String = "clip.wav", fields: [(String, String)] = []) -> (ByteBuffer, HTTPFields) {
        let boundary = "ced-test-\(UUID().uuidString)"
        var body = Data()
        for (k, v) in fields {
            body += Data("--\(boundary)\r\nContent-Disposition: form-data; name=\"\(k)\"\r\n\r\n\(v)\r\n".utf8)
        }
        body += Data("--\(boundary)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"\(fileName)\"\r\nContent-Type: audio/wav\r\n\r\n".utf8)
        body += file
        body += Data("\r\n--\(boundary)--\r\n".utf8)
        return (ByteBuffer(bytes: body), [.contentType: "multipart/form-data; boundary=\(boundary)"])
    }

    static func json(_ r: TestResponse) -> Any? { try? JSONSerialization.jsonObject(with: Data(buffer: r.body)) }
    static func text(_ r: TestResponse) -> String { String(buffer: r.body) }

    /// Asserts an error answer: the status, JSON `{"error": {"code", "type", "message"}}`.
    @discardableResult
    static func assertError(_ r: TestResponse, _ status: Int, type: String? = nil, mentions: String? = nil,
                            file: StaticString = #filePath, line: UInt = #line) -> String {
        XCTAssertEqual(r.status.code, status, text(r), file: file, line: line)
        XCTAssertEqual(r.headers[.contentType], "application/json", file: file, line: line)
        let e = (json(r) as? [String: Any])?["error"] as? [String: Any]
        XCTAssertEqual(e?["code"] as? Int, status, text(r), file: file, line: line)
        if let type { XCTAssertEqual(e?["type"] as? String, type, text(r), file: file, line: line) }
        let message = e?["message"] as? String ?? ""
        XCTAssertFalse(message.isEmpty, file: file, line: line)
        if let mentions { XCTAssertTrue(message.contains(mentions), "'\(mentions)' not in \(message)", file: file, line: line) }
        return message
    }

    /// Runs the built `ced` in `cwd`.
    func ced(_ args: [String], cwd: URL) throws -> CLITests.Run { try EventCLITests.Runner(cwd: cwd).ced(args) }

    /// A recording of the teacher's four sounds from `distill/test` over faint noise (16 kHz, 16-bit).
    static func recording(gap: Double = 1.5, clips: Int = 6) throws -> [Float] {
        let dir = try Reference.require().appendingPathComponent("distill")
        let rows = try String(contentsOf: dir.appendingPathComponent("test.csv"), encoding: .utf8).split(separator: "\n").dropFirst()
        var rng = TrainingRandom(seed: 21)
        var out: [Float] = []
        func noise(_ s: Double) { for _ in 0..<Int(s * 16000) { out.append(Float(rng.nextGaussian() * 0.002)) } }
        noise(gap)
        for row in rows.prefix(clips) {
            let file = String(row.split(separator: ",")[0])
            out += try Waveform(path: dir.appendingPathComponent(file).path).samples
            noise(gap)
        }
        return out
    }

    // MARK: Classification

    func testClassificationMatchesCedTagExactly() throws {
        let tagger = try micro()
        let audio = try Reference.audio("chirp_44k1_stereo_s24.wav"), long = try Reference.audio("tones_noise_16k_mono_f32_23s.wav")
        let name = try Reference.model("micro").path
        let server = server(tagger, name: name)
        let dir = audio.deletingLastPathComponent()
        // What `ced tag --format json` prints, run on the same files by name.
        let cli = try ced(["tag", "--model", Reference.model("micro").path, "--format", "json", "--top-k", "7", audio.lastPathComponent], cwd: dir)
        XCTAssertEqual(cli.status, 0, cli.stderr)
        let cliLong = try ced(["tag", "--model", Reference.model("micro").path, "--format", "csv", "--threshold", "0.6", "--top-k", "all",
                               "--chunking", "original", long.lastPathComponent], cwd: dir)
        XCTAssertEqual(cliLong.status, 0, cliLong.stderr)
        let expected = try tagger.tagResult(contentsOf: audio, model: name, topK: 7)
        let data = try Data(contentsOf: audio), longData = try Data(contentsOf: long)

        let app = server.application()
        try runAsync {
            try await app.test(.router) { client in
                // LocalAI's form: file + top_k, detections highest first, the scores of `ced tag`.
                let (body, headers) = Self.multipart(data, fileName: audio.lastPathComponent, fields: [("top_k", "7"), ("model", "micro")])
                let r = try await client.execute(uri: "/v1/audio/classification", method: .post, headers: headers, body: body)
                XCTAssertEqual(r.status, .ok, Self.text(r))
                let object = Self.json(r) as? [String: Any]
                XCTAssertEqual(object?["model"] as? String, name)
                let detections = object?["detections"] as? [[String: Any]] ?? []
                XCTAssertEqual(detections.map { $0["index"] as? Int }, expected.labels.map(\.index))
                XCTAssertEqual(detections.map { ($0["score"] as? NSNumber)?.floatValue }, expected.labels.map(\.score))
                XCTAssertEqual(detections.map { $0["label"] as? String }, expected.labels.map(\.label))
                let scores = detections.compactMap { ($0["score"] as? NSNumber)?.floatValue }
                XCTAssertEqual(scores, scores.sorted(by: >))
                XCTAssertTrue(Self.text(r).contains(try CedJSONText.encode(expected.labels)))

                // format=json: byte for byte what the tool prints.
                let (b2, h2) = Self.multipart(data, fileName: audio.lastPathComponent, fields: [("top_k", "7"), ("format", "json")])
                let r2 = try await client.execute(uri: "/v1/audio/classification", method: .post, headers: h2, body: b2)
                XCTAssertEqual(Self.text(r2), cli.stdout)

                // A raw body with parameters in the query; top_k=0 is every class.
                let r3 = try await client.execute(uri: "/v1/audio/classification?top_k=0", method: .post,
                                                  headers: [.contentType: "audio/wav"], body: ByteBuffer(bytes: data))
                XCTAssertEqual((Self.json(r3) as? [String: Any])?["detections"].map { ($0 as! [Any]).count }, tagger.config.outputdim)

            }
        }
        // Three chunks, the original semantics, a threshold, CSV: as `ced tag` again.
        try runAsync {
            try await app.test(.router) { client in
                let (b, h) = Self.multipart(longData, fileName: long.lastPathComponent, fields: [("top_k", "0"), ("threshold", "0.6"), ("chunking", "original"), ("format", "csv")])
                let r = try await client.execute(uri: "/v1/audio/classification", method: .post, headers: h, body: b)
                XCTAssertEqual(Self.text(r), cliLong.stdout)
            }
        }
    }

    // MARK: Events

    func testEventsMatchCedTagEventsExactly() throws {
        let tmp = try TestWAV.tempDir(self)
        let teacher = try teacherPath()
        let wav = tmp.appendingPathComponent("rec.wav")
        try WAVWriter.write(Self.recording(clips: 4), sampleRate: 16000, to: wav)
        let tagger = try CedAudioTagger.fromPretrained(teacher)
        let options = ["--window", "2", "--hop", "0.5", "--threshold", "0.7", "--merge-gap", "0.5", "--min-duration", "0.5"]
        let cli = try ced(["tag", "--events", "--model", teacher, "--format", "json"] + options + ["rec.wav"], cwd: tmp)
        XCTAssertEqual(cli.status, 0, cli.stderr)
        let raven = try ced(["tag", "--events", "--model", teacher, "--format", "raven"] + options + ["rec.wav"], cwd: tmp)
        let events = (try JSONSerialization.jsonObject(with: Data(cli.stdout.utf8)) as? [[String: Any]])?.first?["events"] as? [Any]
        XCTAssertGreaterThanOrEqual(events?.count ?? 0, 4, cli.stdout)
        let data = try Data(contentsOf: wav)
        let fields = [("window", "2"), ("hop", "0.5"), ("threshold", "0.7"), ("merge_gap", "0.5"), ("min_duration", "0.5")]
        let query = fields.map { "\($0.0)=\($0.1)" }.joined(separator: "&")
        let server = server(tagger, name: teacher)
        try runAsync {
            try await server.application().test(.router) { client in
                let (body, headers) = Self.multipart(data, fileName: "rec.wav", fields: fields)
                let r = try await client.execute(uri: "/v1/audio/events", method: .post, headers: headers, body: body)
                XCTAssertEqual(r.status, .ok)
                XCTAssertEqual(Self.text(r), cli.stdout)

                // Query parameters and another format: the tool's Raven table.
                let (b2, h2) = Self.multipart(data, fileName: "rec.wav")
                let r2 = try await client.execute(uri: "/v1/audio/events?format=raven&" + query, method: .post, headers: h2, body: b2)
                XCTAssertEqual(Self.text(r2), raven.stdout)

                // windows=1: the same result plus every window's top classes.
                let r3 = try await client.execute(uri: "/v1/audio/events?windows=1&top_k=2&" + query, method: .post, headers: h2, body: b2)
                let o = (Self.json(r3) as? [[String: Any]])?.first
                XCTAssertEqual((o?["events"] as? [Any])?.count, events?.count)
                let windows = o?["windows"] as? [[String: Any]] ?? []
                let expectedWindows = try tagger.windowing(window: 2, hop: 0.5)
                XCTAssertEqual(windows.first?["start"] as? Double, 0)
                XCTAssertEqual((windows.first?["labels"] as? [Any])?.count, 2)
                XCTAssertEqual(windows.count, try CedAudioTagger.fromPretrained(teacher).events(
                    contentsOf: wav, windowing: expectedWindows, events: CedEventOptions(classCount: 4)).windowCount)

                // The report of the same file: the same events, the clip's tags, curves and the log-mel.
                let r4 = try await client.execute(uri: "/v1/audio/report?" + query, method: .post, headers: h2, body: b2)
                let report = try JSONDecoder().decode(CedReport.self, from: Data(buffer: r4.body))
                let file = try JSONDecoder().decode([CedEventResult].self, from: Data(cli.stdout.utf8))[0]
                XCTAssertEqual(report.events.map { CedEventReport($0) }, file.events.map { CedEventReport($0) })
                XCTAssertEqual(report.labels, try tagger.tagResult(contentsOf: wav, model: teacher, topK: 5).labels)
                XCTAssertEqual(report.curves.start.count, windows.count)
                XCTAssertEqual(report.mel.bins, 64)
                XCTAssertEqual(Data(base64Encoded: report.mel.data)?.count, 64 * report.mel.columns)
                let r5 = try await client.execute(uri: "/v1/audio/report?format=html&" + query, method: .post, headers: h2, body: b2)
                XCTAssertEqual(r5.headers[.contentType], "text/html; charset=utf-8")
                XCTAssertTrue(Self.text(r5).contains(#"<script id="ced-data" type="application/json">"#))
            }
        }
    }

    // MARK: Embeddings

    func testEmbeddingEqualsLibrary() throws {
        let tagger = try micro()
        let audio = try Reference.audio("chirp_44k1_stereo_s24.wav")
        let expected = try tagger.embedding(Waveform(contentsOf: audio).samples)
        try runAsync {
            try await self.server(tagger, name: "micro").application().test(.router) { client in
                let r = try await client.execute(uri: "/v1/audio/embeddings", method: .post, headers: [.contentType: "application/octet-stream"],
                                                 body: ByteBuffer(bytes: try Data(contentsOf: audio)))
                let o = Self.json(r) as? [String: Any]
                XCTAssertEqual(o?["shape"] as? [Int], [64])
                XCTAssertEqual((o?["embedding"] as? [NSNumber])?.map(\.floatValue), expected.scalars)
                XCTAssertEqual(o?["file"] as? String, "-")
            }
        }
    }

    // MARK: Errors

    func testBadInputStatusesAreJSON() throws {
        let tagger = try micro()
        let good = try Data(contentsOf: Reference.audio("snap_16k_mono_s16.wav"))
        // A float WAV with a NaN sample, and a WAV whose header says 0 Hz.
        var nan = [Float](repeating: 0.1, count: 8000)
        nan[4321] = .nan
        let nanWAV = Data(TestWAV.file(.f32, channels: 1, rate: 16000, data: nan.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) }, variant: .plain))
        var zeroRateBytes = TestWAV.file(.s16, channels: 1, rate: 16000, data: [UInt8](repeating: 0, count: 400), variant: .plain)
        zeroRateBytes.replaceSubrange(24..<28, with: [0, 0, 0, 0])
        let zeroRate = zeroRateBytes
        let server = server(tagger, name: "mispeech/ced-micro") { $0.maxBodyBytes = 200_000 }
        try runAsync {
            try await server.application().test(.router) { client in
                func post(_ uri: String, _ headers: HTTPFields, _ body: Data) async throws -> TestResponse {
                    try await client.execute(uri: uri, method: .post, headers: headers, body: ByteBuffer(bytes: body))
                }
                let wav: HTTPFields = [.contentType: "audio/wav"]
                Self.assertError(try await post("/v1/audio/classification", [.contentType: "text/plain"], good), 415, type: "unsupported_media_type")
                Self.assertError(try await post("/v1/audio/classification", [.contentType: "application/x-www-form-urlencoded"], good), 415)
                Self.assertError(try await post("/v1/audio/events", [:], good), 415, mentions: "Content-Type")
                Self.assertError(try await post("/v1/audio/classification", wav, Data(count: 300_000)), 413, type: "payload_too_large")
                Self.assertError(try await post("/v1/audio/classification", wav, Data("RIFF\u{4}\0\0\0WAVEfmt ".utf8)), 422, type: "invalid_audio")
                Self.assertError(try await post("/v1/audio/events", wav, nanWAV), 422, mentions: "NaN")
                Self.assertError(try await post("/v1/audio/events", wav, Data((0..<3000).map { UInt8(($0 * 7 + 3) % 256) })), 422,
                                 mentions: "not audio in a format recognised here")
                Self.assertError(try await post("/v1/audio/embeddings", wav, Data(zeroRate)), 422)
                Self.assertError(try await post("/v1/audio/classification", wav, Data()), 422, mentions: "empty")
                Self.assertError(try await post("/v1/audio/classification?top_k=-1", wav, good), 400, type: "invalid_parameter", mentions: "top_k")
                Self.assertError(try await post("/v1/audio/classification?threshold=high", wav, good), 400, mentions: "threshold")
                Self.assertError(try await post("/v1/audio/classification?hop=1", wav, good), 400, mentions: "window")
                Self.assertError(try await post("/v1/audio/events?threshold=0.5&release=0.7", wav, good), 400, mentions: "release")
                Self.assertError(try await post("/v1/audio/events?window=0", wav, good), 400)
                Self.assertError(try await post("/v1/audio/events?format=xml", wav, good), 400, mentions: "format")
                Self.assertError(try await post("/v1/audio/events?thresholds=Nothing,0.5", wav, good), 400, mentions: "Nothing")
                Self.assertError(try await post("/v1/audio/classification?model=ced-base", wav, good), 404, type: "model_not_found")
                let named = try await post("/v1/audio/classification?model=ced-micro", wav, good)
                XCTAssertEqual(named.status, .ok)
                let (noFile, h) = Self.multipart(good)
                let renamed = String(buffer: noFile).replacingOccurrences(of: "name=\"file\"; filename=\"clip.wav\"", with: "name=\"other\"")
                Self.assertError(try await client.execute(uri: "/v1/audio/classification", method: .post, headers: h, body: ByteBuffer(string: renamed)), 400, mentions: "file")
                Self.assertError(try await post("/v1/audio/classification", [.contentType: "multipart/form-data"], good), 400, mentions: "boundary")
                Self.assertError(try await post("/v1/audio/classification", [.contentType: "multipart/form-data; boundary=xyz"], good), 400)
                Self.assertError(try await client.execute(uri: "/nowhere", method: .get), 404, type: "not_found")
                Self.assertError(try await client.execute(uri: "/v1/audio/classification", method: .get), 404)
                Self.assertError(try await client.execute(uri: "/v1/audio/stream", method: .get), 426)

                // Over capacity: 503 with Retry-After, then fine again once there is room.
                var held = 0
                while server.admit() { held += 1 }
                let busy = try await post("/v1/audio/classification", wav, good)
                Self.assertError(busy, 503, type: "over_capacity")
                XCTAssertEqual(busy.headers[.retryAfter], "1")
                for _ in 0..<held { server.release() }
                let again = try await post("/v1/audio/classification", wav, good)
                XCTAssertEqual(again.status, .ok)

                // The metrics saw all of it.
                let metrics = Self.text(try await client.execute(uri: "/metrics", method: .get))
                for line in [#"ced_http_requests_total{route="/v1/audio/classification",status="415"} 2"#,
                             #"ced_http_requests_total{route="/v1/audio/classification",status="503"} 1"#,
                             #"ced_http_requests_total{route="/v1/audio/events",status="422"} 2"#,
                             #"ced_http_requests_total{route="other",status="404"} 2"#,
                             "ced_http_request_duration_seconds_bucket", "ced_model_batch_size_bucket", "ced_model_queue_depth",
                             #"ced_audio_processed_seconds_total{route="/v1/audio/classification"} 2"#,
                             "ced_stream_windows_dropped_total 0", "ced_http_requests_in_flight 0"] {
                    XCTAssertTrue(metrics.contains(line), "\(line) not in\n\(metrics)")
                }
            }
        }
    }

    func testAPIKeyAndInfoRoutes() throws {
        let tagger = try micro()
        let server = server(tagger, name: "micro") { $0.apiKey = "s3cret" }
        try runAsync {
            try await server.application().test(.router) { client in
                for path in ["/healthz", "/readyz"] {
                    let r = try await client.execute(uri: path, method: .get)
                    XCTAssertEqual(r.status, .ok)
                }
                for path in ["/", "/v1/models", "/metrics", "/openapi.json"] {
                    let r = try await client.execute(uri: path, method: .get)
                    Self.assertError(r, 401, type: "unauthorized")
                    XCTAssertEqual(r.headers[.wwwAuthenticate], #"Bearer realm="ced""#)
                    Self.assertError(try await client.execute(uri: path, method: .get, headers: [.authorization: "Bearer s3cre"]), 401)
                }
                Self.assertError(try await client.execute(uri: "/v1/audio/classification", method: .post, headers: [.contentType: "audio/wav"]), 401)
                let auth: HTTPFields = [.authorization: "Bearer s3cret"]
                let models = Self.json(try await client.execute(uri: "/v1/models", method: .get, headers: auth)) as? [String: Any]
                let model = (models?["data"] as? [[String: Any]])?.first
                XCTAssertEqual(model?["id"] as? String, "micro")
                XCTAssertEqual(model?["classes"] as? Int, 527)
                let page = try await client.execute(uri: "/", method: .get, headers: auth)
                XCTAssertEqual(page.headers[.contentType], "text/html; charset=utf-8")
                let html = Self.text(page)
                XCTAssertTrue(html.contains("<canvas id=\"plot\">"))
                XCTAssertFalse(html.contains("http://") || html.contains("https://"), "the page must not load external resources")
                let spec = Self.json(try await client.execute(uri: "/openapi.json", method: .get, headers: auth)) as? [String: Any]
                XCTAssertEqual(spec?["openapi"] as? String, "3.0.3")
                let paths = Set((spec?["paths"] as? [String: Any])?.keys.map { $0 } ?? [])
                XCTAssertEqual(paths, ["/v1/audio/classification", "/v1/audio/events", "/v1/audio/embeddings", "/v1/audio/report", "/v1/audio/stream",
                                       "/v1/models", "/healthz", "/readyz", "/metrics", "/openapi.json", "/"])
            }
        }
    }

    // MARK: Streams

    struct StreamRun {
        var messages: [[String: Any]] = []
        var close: WebSocketCloseFrame?
        var events: [[String: Any]] { messages.filter { $0["type"] as? String == "event" } }
    }

    /// Connects to the live server, sends `start` (unless nil) and `frames`, collects every
    /// message until the server closes.
    static func stream(_ client: some TestClientProtocol, start: String?, frames: [WebSocketMessage], stop: Bool = true) async throws -> StreamRun {
        let collected = CollectedStream()
        collected.run.close = try await client.ws("/v1/audio/stream") { inbound, outbound, _ in
            let sender = Task {
                if let start { try await outbound.write(.text(start)) }
                for f in frames {
                    switch f {
                    case .text(let t): try await outbound.write(.text(t))
                    case .binary(let b): try await outbound.write(.binary(b))
                    }
                }
                if stop { try await outbound.write(.text(#"{"type": "stop"}"#)) }
            }
            for try await m in inbound.messages(maxSize: 1 << 20) {
                if case .text(let t) = m, let o = try? JSONSerialization.jsonObject(with: Data(t.utf8)) as? [String: Any] {
                    collected.run.messages.append(o)
                }
            }
            _ = try? await sender.value
        }
        return collected.run
    }

    func testStreamGivesTheEventsOfTheFile() throws {
        let teacher = try teacherPath()
        let tagger = try CedAudioTagger.fromPretrained(teacher)
        let samples = try Self.recording(gap: 1.2, clips: 5)
        // The file's events, as `ced tag --events` finds them.
        let tmp = try TestWAV.tempDir(self)
        let wav = tmp.appendingPathComponent("rec.wav")
        try WAVWriter.write(samples, sampleRate: 16000, to: wav)
        let options = try CedEventOptions(classCount: 4, threshold: 0.7, minDuration: 0.5, mergeGap: 0.5)
        let expected = try tagger.events(contentsOf: wav, windowing: tagger.windowing(window: 2, hop: 0.5), events: options).events
        XCTAssertGreaterThanOrEqual(expected.count, 4)
        // The same 16-bit samples sent in frames of random sizes (samples split between frames).
        let pcm = try Waveform(contentsOf: wav).samples.flatMap { v -> [UInt8] in
            withUnsafeBytes(of: Int16(max(-32768, min(32767, (v * 32768).rounded()))).littleEndian, Array.init)
        }
        var rng = TrainingRandom(seed: 5)
        var frames: [WebSocketMessage] = []
        var i = 0
        while i < pcm.count {
            let n = min(pcm.count - i, 1 + rng.nextInt(below: 12000))
            frames.append(.binary(ByteBuffer(bytes: pcm[i ..< i + n])))
            i += n
        }
        let start = #"{"type": "start", "sample_rate": 16000, "format": "s16le", "channels": 1, "window": 2, "hop": 0.5, "threshold": 0.7, "min_duration": 0.5, "merge_gap": 0.5, "ongoing": true, "top_k": 3}"#
        let server = server(tagger, name: "teacher")
        try runAsync {
            try await server.application().test(.live) { client in
                let run = try await Self.stream(client, start: start, frames: frames)
                XCTAssertEqual(run.messages.first?["type"] as? String, "started")
                XCTAssertEqual(run.messages.first?["hop_s"] as? Double, 0.5)
                XCTAssertEqual(run.messages.last?["type"] as? String, "done", "\(run.messages.last ?? [:])")
                XCTAssertEqual(run.close?.closeCode, .normalClosure)
                let windows = run.messages.filter { $0["type"] as? String == "window" }
                XCTAssertEqual(windows.count, run.messages.last?["windows"] as? Int)
                XCTAssertEqual((windows.first?["labels"] as? [Any])?.count, 3)
                // Final events: exactly the file's, in the fields of `ced tag --events --format json`.
                let finals = run.events.filter { $0["ongoing"] as? Bool == false }
                XCTAssertEqual(finals.count, expected.count)
                for (got, want) in zip(finals.sorted { ($0["start"] as! Double) < ($1["start"] as! Double) }, expected) {
                    XCTAssertEqual(got["label"] as? String, want.label)
                    XCTAssertEqual(got["start"] as? Double, CedEventReport.seconds(want.start))
                    XCTAssertEqual(got["end"] as? Double, CedEventReport.seconds(want.end))
                    XCTAssertEqual((got["score"] as? NSNumber)?.floatValue, want.score)
                    XCTAssertEqual((got["mean_score"] as? NSNumber)?.floatValue, want.meanScore)
                }
                // Ongoing updates come before the final report of the same id, and never after.
                let ongoingIDs = Set(run.events.filter { $0["ongoing"] as? Bool == true }.compactMap { $0["id"] as? Int })
                XCTAssertFalse(ongoingIDs.isEmpty)
                for id in ongoingIDs {
                    let positions = run.events.enumerated().filter { $0.element["id"] as? Int == id }
                    XCTAssertEqual(positions.last?.element["ongoing"] as? Bool, false, "event \(id) has no final report after its updates")
                    XCTAssertEqual(positions.filter { $0.element["ongoing"] as? Bool == false }.count, 1)
                }
            }
        }
    }

    func testMalformedStreamMessagesGetAnErrorAndAClose() throws {
        let tagger = try micro()
        let server = server(tagger, name: "micro") { $0.timeout = 2 }
        var nan = [Float](repeating: 0.01, count: 4000)
        nan[100] = .infinity
        let nanBytes = nan.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) }
        let ok = #"{"type": "start", "sample_rate": 16000, "format": "f32le"}"#
        let cases: [(String, String?, [WebSocketMessage], Int)] = [
            ("binary before start", nil, [.binary(ByteBuffer(bytes: [1, 2, 3, 4]))], 400),
            ("not JSON", "hello", [], 400),
            ("not a start", #"{"type": "stop"}"#, [], 400),
            ("no sample rate", #"{"type": "start"}"#, [], 400),
            ("bad format", #"{"type": "start", "sample_rate": 16000, "format": "mp3"}"#, [], 400),
            ("bad rate", #"{"type": "start", "sample_rate": 0}"#, [], 400),
            ("bad window", #"{"type": "start", "sample_rate": 16000, "window": -1}"#, [], 400),
            ("release above threshold", #"{"type": "start", "sample_rate": 16000, "threshold": 0.3, "release": 0.9}"#, [], 400),
            ("unknown message", ok, [.text(#"{"type": "pause"}"#)], 400),
            ("text that is not JSON", ok, [.text("stop")], 400),
            ("non-finite sample", ok, [.binary(ByteBuffer(bytes: nanBytes))], 422),
        ]
        try runAsync {
            try await server.application().test(.live) { client in
                for (name, start, frames, code) in cases {
                    let run = try await Self.stream(client, start: start, frames: frames, stop: false)
                    let last = run.messages.last
                    XCTAssertEqual(last?["type"] as? String, "error", "\(name): \(run.messages)")
                    XCTAssertEqual((last?["error"] as? [String: Any])?["code"] as? Int, code, "\(name): \(run.messages)")
                    XCTAssertNotNil(run.close, name)
                    XCTAssertNotEqual(run.close?.closeCode, .normalClosure, name)
                }
                // No start message at all: an error after the timeout, not a hang.
                let t0 = Date()
                let silent = try await Self.stream(client, start: nil, frames: [], stop: false)
                XCTAssertEqual((silent.messages.last?["error"] as? [String: Any])?["code"] as? Int, 408)
                XCTAssertLessThan(Date().timeIntervalSince(t0), 10)
                // And the server still serves streams afterwards.
                let good = try await Self.stream(client, start: ok, frames: [.binary(ByteBuffer(bytes: [UInt8](repeating: 0, count: 64000)))])
                XCTAssertEqual(good.messages.last?["type"] as? String, "done")
            }
        }
    }

    // MARK: Batching

    func testDynamicBatchingIsBitIdentical() throws {
        let tagger = try micro()
        final class Sizes: @unchecked Sendable { let lock = NSLock(); var values: [Int] = [] }
        let sizes = Sizes()
        let batcher = ModelBatcher(maxBatch: 8, maxWait: 0.02) { n, _ in sizes.lock.lock(); sizes.values.append(n); sizes.lock.unlock() }
        defer { batcher.shutdown() }
        var rng = TrainingRandom(seed: 9)
        let mels = (0..<12).map { i in
            Tensor(shape: [64, 300 + 37 * i], scalars: (0..<(64 * (300 + 37 * i))).map { _ in Float(rng.nextGaussian() * 20 - 40) })
        }
        let expected = try mels.map { try tagger.model($0) }
        final class Results: @unchecked Sendable { var values = [Tensor?](repeating: nil, count: 12) }
        let results = Results()
        DispatchQueue.concurrentPerform(iterations: 12) { i in
            results.values[i] = batcher.request { try? batcher.scores([mels[i]], chunking: .hf, model: tagger.model)[0] }
        }
        for i in 0..<12 { XCTAssertEqual(results.values[i]?.scalars, expected[i].scalars, "clip \(i)") }
        XCTAssertEqual(sizes.values.reduce(0, +), 12)
        XCTAssertGreaterThan(sizes.values.max() ?? 0, 1, "concurrent calls should share a model call: \(sizes.values)")
        XCTAssertLessThanOrEqual(sizes.values.max() ?? 0, 8)
    }

    // MARK: Audio from memory

    func testAudioFromMemoryDecodesLikeTheFile() throws {
        let wav = try Reference.audio("chirp_44k1_stereo_s24.wav")
        let fromFile = try Waveform(contentsOf: wav)
        let fromData = try Waveform(data: Data(contentsOf: wav), name: "upload.wav")
        XCTAssertEqual(fromData.samples, fromFile.samples)
        XCTAssertEqual(fromData.info.path, "upload.wav")

        let ffmpeg = try TestWAV.requireFFmpeg()
        let tmp = try TestWAV.tempDir(self)
        let flac = tmp.appendingPathComponent("chirp.flac")
        try TestWAV.ffmpeg(ffmpeg, ["-i", wav.path, flac.path])
        let before = Set(try FileManager.default.contentsOfDirectory(atPath: NSTemporaryDirectory()))
        let flacFile = try Waveform(contentsOf: flac)
        let flacData = try Waveform(data: Data(contentsOf: flac), name: "upload.flac")
        XCTAssertEqual(flacData.samples, flacFile.samples)
        XCTAssertEqual(flacData.info.decoder, AudioFileInfo.Decoder.ffmpeg)
        // Bytes that ffmpeg cannot read: its message, from the pipe.
        assertAudioError(.ffmpegFailed, file: "junk.bin", { try Waveform(data: Data((0..<5000).map { UInt8($0 % 251) }), name: "junk.bin") },
                         mentions: ["ffmpeg"])
        // ffmpeg exiting before it read everything must not kill the process (SIGPIPE).
        var big = Data("ID3".utf8)
        big += Data(count: 8 << 20)
        _ = try? Waveform(data: big, name: "fake.mp3")
        let after = Set(try FileManager.default.contentsOfDirectory(atPath: NSTemporaryDirectory()))
        XCTAssertEqual(after.subtracting(before).filter { $0.hasPrefix("ced-") }, [], "temporary files left behind")
    }

    // MARK: helpers

    final class CollectedStream: @unchecked Sendable { var run = StreamRun() }
    final class BlockingOutcome<T>: @unchecked Sendable { var result: Result<T, Error>? }

    /// Runs async test code from a synchronous XCTest method.
    func runAsync(_ body: @escaping @Sendable () async throws -> Void) throws { try Self.blocking(body) }

    /// Waits for async code on this thread and returns its value.
    static func blocking<T>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
        let outcome = BlockingOutcome<T>()
        let done = DispatchSemaphore(value: 0)
        Task.detached {
            do { outcome.result = .success(try await body()) } catch { outcome.result = .failure(error) }
            done.signal()
        }
        done.wait()
        return try outcome.result!.get()
    }
}

#endif
