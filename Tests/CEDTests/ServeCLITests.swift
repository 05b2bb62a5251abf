#if canImport(CEDServer)   // built with Swift 6.1+ (see Package.swift)
import CED
import Foundation
import HummingbirdWSClient
import Logging
import NIOCore
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// `ced serve` started as a process on a free loopback port and called over real sockets, and
/// `ced tag --events --report`.
final class ServeCLITests: XCTestCase {
    /// A running `ced serve`.
    final class Server: @unchecked Sendable {
        let process = Process()
        let port: Int
        private let log = Log()

        final class Log: @unchecked Sendable {
            let lock = NSLock()
            var text = ""
        }

        init(_ args: [String]) throws {
            process.executableURL = CLITests.executable
            process.arguments = ["serve", "--port", "0"] + args
            var env = ProcessInfo.processInfo.environment
            env["HF_HUB_OFFLINE"] = "1"
            process.environment = env
            let err = Pipe()
            process.standardError = err
            process.standardOutput = FileHandle.nullDevice
            process.standardInput = FileHandle.nullDevice
            try process.run()
            let found = DispatchSemaphore(value: 0)
            final class Port: @unchecked Sendable { var value = 0 }
            let port = Port()
            let log = self.log
            Thread {
                let h = err.fileHandleForReading
                while true {
                    let d = h.availableData
                    if d.isEmpty { break }
                    log.lock.lock()
                    log.text += String(decoding: d, as: UTF8.self)
                    if port.value == 0, let r = log.text.range(of: #"http://127\.0\.0\.1:(\d+)/"#, options: .regularExpression) {
                        port.value = Int(log.text[r].dropFirst("http://127.0.0.1:".count).dropLast()) ?? 0
                        found.signal()
                    }
                    log.lock.unlock()
                }
                found.signal()
            }.start()
            _ = found.wait(timeout: .now() + 60)
            self.port = port.value
            if self.port == 0 {
                process.terminate()
                throw CedInputError("ced serve did not start: \(stderr)")
            }
        }

        var stderr: String { log.lock.lock(); defer { log.lock.unlock() }; return log.text }

        func stop() {
            if process.isRunning { process.terminate() }
            process.waitUntilExit()
        }
    }

    struct HTTPResult {
        var status: Int
        var head: String
        var body: Data
        var seconds: Double
        var json: Any? { try? JSONSerialization.jsonObject(with: body) }
    }

    /// Sends `request` (then `body`, optionally only part of it) over a new TCP connection
    /// and reads the answer until the server closes it or `timeout` passes.
    static func http(_ port: Int, _ method: String, _ path: String, headers: [String: String] = [:], body: Data = Data(),
                     sendOnly: Int? = nil, timeout: Double = 30) throws -> HTTPResult {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw CedInputError("socket failed") }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard ok == 0 else { throw CedInputError("connect to port \(port) failed: \(String(cString: strerror(errno)))") }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n"
        var h = headers
        if h["Content-Length"] == nil && (!body.isEmpty || method == "POST") { h["Content-Length"] = String(body.count) }
        for (k, v) in h { head += "\(k): \(v)\r\n" }
        let out = Data((head + "\r\n").utf8) + body.prefix(sendOnly ?? body.count)
        let start = Date()
        _ = out.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var received = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while Date().timeIntervalSince(start) < timeout {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            received.append(contentsOf: buffer[0..<n])
            // Done once the announced body is complete.
            if let split = received.range(of: Data("\r\n\r\n".utf8)) {
                let text = String(decoding: received[..<split.lowerBound], as: UTF8.self).lowercased()
                if let line = text.split(separator: "\r\n").first(where: { $0.hasPrefix("content-length:") }),
                   let length = Int(line.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)),
                   received.count - split.upperBound >= length { break }
            }
        }
        let seconds = Date().timeIntervalSince(start)
        guard let split = received.range(of: Data("\r\n\r\n".utf8)) else {
            throw CedInputError("no HTTP answer within \(timeout) s (got \(received.count) bytes)")
        }
        let headText = String(decoding: received[..<split.lowerBound], as: UTF8.self)
        let status = Int(headText.split(separator: " ").dropFirst().first ?? "") ?? 0
        return HTTPResult(status: status, head: headText, body: received[split.upperBound...], seconds: seconds)
    }

    func testServerOnARealSocket() throws {
        let micro = try Reference.model("micro").path
        let audio = try Reference.audio("snap_16k_mono_s16.wav")
        let server = try Server(["--model", micro, "--timeout", "1.5", "--max-body-mb", "1", "--quiet"])
        defer { server.stop() }
        XCTAssertTrue(server.stderr.contains("ced serve: \(micro) on http://127.0.0.1:\(server.port)/"), server.stderr)

        let health = try Self.http(server.port, "GET", "/healthz")
        XCTAssertEqual(health.status, 200)
        let wav = try Data(contentsOf: audio)
        let r = try Self.http(server.port, "POST", "/v1/audio/classification?top_k=3", headers: ["Content-Type": "audio/wav"], body: wav)
        XCTAssertEqual(r.status, 200, String(decoding: r.body, as: UTF8.self))
        let expected = try CedAudioTagger.fromPretrained(micro).tagResult(contentsOf: audio, model: micro, topK: 3).labels
        let got = ((r.json as? [String: Any])?["detections"] as? [[String: Any]])?.map { ($0["index"] as? Int ?? -1, ($0["score"] as? NSNumber)?.floatValue ?? -1) }
        XCTAssertEqual(got?.map(\.0), expected.map(\.index))
        XCTAssertEqual(got?.map(\.1), expected.map(\.score))

        // Content-Length over the limit: 413 at once, without the body.
        let big = try Self.http(server.port, "POST", "/v1/audio/classification", headers: ["Content-Type": "audio/wav", "Content-Length": "5000000"],
                                sendOnly: 0, timeout: 10)
        XCTAssertEqual(big.status, 413, big.head)
        XCTAssertLessThan(big.seconds, 1)
        // A body that never finishes arriving: 408 after --timeout, and the server goes on.
        let slow = try Self.http(server.port, "POST", "/v1/audio/classification", headers: ["Content-Type": "audio/wav"], body: wav,
                                 sendOnly: 1000, timeout: 10)
        XCTAssertEqual(slow.status, 408, slow.head)
        XCTAssertTrue(String(decoding: slow.body, as: UTF8.self).contains("request_timeout"))
        XCTAssertGreaterThan(slow.seconds, 1.3)
        XCTAssertLessThan(slow.seconds, 5)
        XCTAssertEqual(try Self.http(server.port, "GET", "/readyz").status, 200)
    }

    func testSIGTERMFinishesWhatIsInFlightAndExits0() throws {
        let micro = try Reference.model("micro").path
        let server = try Server(["--model", micro, "--quiet"])
        defer { server.stop() }
        // A long request (40 s of noise, 0.1 s hop: ~400 windows) in flight when SIGTERM comes.
        var rng = TrainingRandom(seed: 3)
        let wav = WAVWriter.data((0..<(40 * 16000)).map { _ in Float(rng.nextGaussian() * 0.1) }, sampleRate: 16000)
        final class Box: @unchecked Sendable { var result: Result<HTTPResult, Error>? }
        let box = Box()
        let done = DispatchSemaphore(value: 0)
        let port = server.port
        Thread {
            box.result = Result { try Self.http(port, "POST", "/v1/audio/events?hop=0.1", headers: ["Content-Type": "audio/wav"], body: wav, timeout: 120) }
            done.signal()
        }.start()
        Thread.sleep(forTimeInterval: 0.7)
        XCTAssertTrue(server.process.isRunning)
        kill(server.process.processIdentifier, SIGTERM)
        XCTAssertEqual(done.wait(timeout: .now() + 120), .success)
        let r = try box.result?.get()
        XCTAssertEqual(r?.status, 200, r?.head ?? "")
        let events = (r?.json as? [[String: Any]])?.first
        XCTAssertEqual(events?["duration_s"] as? Double, 40)
        server.process.waitUntilExit()
        XCTAssertEqual(server.process.terminationReason, .exit)
        XCTAssertEqual(server.process.terminationStatus, 0, server.stderr)
        XCTAssertThrowsError(try Self.http(port, "GET", "/healthz", timeout: 2))
    }

    func testSIGTERMEndsOpenStreamsWithTheirEvents() throws {
        let teacher = try Reference.require().appendingPathComponent("distill/teacher-synth4").path
        let server = try Server(["--model", teacher, "--quiet"])
        defer { server.stop() }
        let samples = try ServerTests.recording(gap: 1.0, clips: 3)
        let pcm = samples.flatMap { v in withUnsafeBytes(of: Int16(max(-32768, min(32767, (v * 32767).rounded()))).littleEndian, Array.init) }
        final class Seen: @unchecked Sendable { var messages: [String] = [] }
        let seen = Seen()
        let pid = server.process.processIdentifier
        let port = server.port
        let close = try ServerTests.blocking {
            try await WebSocketClient.connect(url: "ws://127.0.0.1:\(port)/v1/audio/stream", logger: Logger(label: "t") { _ in SwiftLogNoOpLogHandler() }) { inbound, outbound, _ in
                try await outbound.write(.text(#"{"type": "start", "sample_rate": 16000, "format": "s16le", "threshold": 0.7, "windows": false}"#))
                for i in stride(from: 0, to: pcm.count, by: 8000) {
                    try await outbound.write(.binary(ByteBuffer(bytes: pcm[i ..< min(pcm.count, i + 8000)])))
                }
                // No stop: the server is told to shut down while the stream is open.
                try await Task.sleep(nanoseconds: 500_000_000)
                kill(pid, SIGTERM)
                for try await m in inbound.messages(maxSize: 1 << 20) {
                    if case .text(let t) = m { seen.messages.append(t) }
                }
            }
        }
        XCTAssertEqual(close?.closeCode, .normalClosure)
        XCTAssertTrue(seen.messages.last?.contains(#""type": "done""#) == true, "\(seen.messages)")
        XCTAssertGreaterThanOrEqual(seen.messages.filter { $0.contains(#""type": "event""#) }.count, 2, "\(seen.messages)")
        server.process.waitUntilExit()
        XCTAssertEqual(server.process.terminationStatus, 0, server.stderr)
    }

    func testServeUsageErrors() throws {
        let cli = EventCLITests.Runner(cwd: try TestWAV.tempDir(self))
        for args in [["serve", "--port", "70000"], ["serve", "--max-body-mb", "0"], ["serve", "--timeout", "-1"], ["serve", "--max-batch", "0"]] {
            let r = try cli.ced(args)
            XCTAssertEqual(r.status, 2, "\(args): \(r.stderr)")
        }
        let missing = try cli.ced(["serve", "--model", "/nonexistent/model", "--port", "0"])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.stderr.contains("/nonexistent/model"), missing.stderr)
    }

    // MARK: ced tag --events --report

    func testTagEventsReport() throws {
        let tmp = try TestWAV.tempDir(self)
        let teacher = try Reference.require().appendingPathComponent("distill/teacher-synth4").path
        try WAVWriter.write(ServerTests.recording(clips: 3), sampleRate: 16000, to: tmp.appendingPathComponent("a.wav"))
        try FileManager.default.createDirectory(at: tmp.appendingPathComponent("sub"), withIntermediateDirectories: true)
        try WAVWriter.write(ServerTests.recording(gap: 0.8, clips: 2), sampleRate: 16000, to: tmp.appendingPathComponent("sub/b.wav"))
        let runner = EventCLITests.Runner(cwd: tmp)
        let options = ["--events", "--model", teacher, "--threshold", "0.7", "--merge-gap", "0.5", "--format", "json"]
        let r = try runner.ced(["tag"] + options + ["--report", "out.html", "a.wav", "sub/b.wav"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let printed = try JSONDecoder().decode([CedEventResult].self, from: Data(r.stdout.utf8))
        let plain = try runner.ced(["tag"] + options + ["a.wav", "sub/b.wav"])
        XCTAssertEqual(r.stdout, plain.stdout, "--report must not change what is printed")

        // One page, both recordings embedded, the same events; no external resources.
        let html = try String(contentsOf: tmp.appendingPathComponent("out.html"), encoding: .utf8)
        XCTAssertFalse(html.contains("http://") || html.contains("https://") || html.contains("src=\""))
        let reports = try Self.embedded(html)
        XCTAssertEqual(reports.map(\.file), ["a.wav", "sub/b.wav"])
        for (report, result) in zip(reports, printed) {
            XCTAssertEqual(report.events.map { CedEventReport($0) }, result.events.map { CedEventReport($0) })
            XCTAssertEqual(report.duration, result.duration)
        }
        let tags = try runner.ced(["tag", "--model", teacher, "--format", "json", "a.wav"])
        XCTAssertEqual(reports[0].labels, try JSONDecoder().decode([CedTagResult].self, from: Data(tags.stdout.utf8))[0].labels)

        // A directory: one page per input, mirroring the input paths.
        let d = try runner.ced(["tag"] + options + ["--output-dir", "events", "--report", "pages/", "a.wav", "sub/b.wav"])
        XCTAssertEqual(d.status, 0, d.stderr)
        for (name, result) in zip(["pages/a.report.html", "pages/sub/b.report.html"], printed) {
            let page = try Self.embedded(String(contentsOf: tmp.appendingPathComponent(name), encoding: .utf8))
            XCTAssertEqual(page.count, 1)
            XCTAssertEqual(page[0].events.map { CedEventReport($0) }, result.events.map { CedEventReport($0) })
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: tmp.appendingPathComponent("events/sub/b.events.json").path))
        let bad = try runner.ced(["tag", "--model", teacher, "--report", "x.html", "a.wav"])
        XCTAssertEqual(bad.status, 2, bad.stderr)
        XCTAssertTrue(bad.stderr.contains("--report needs --events"), bad.stderr)
    }

    /// The reports a page embeds.
    static func embedded(_ html: String) throws -> [CedReport] {
        let open = #"<script id="ced-data" type="application/json">"#
        guard let a = html.range(of: open), let b = html.range(of: "</script>", range: a.upperBound..<html.endIndex) else {
            throw CedInputError("no embedded data")
        }
        return try JSONDecoder().decode([CedReport].self, from: Data(html[a.upperBound..<b.lowerBound].utf8))
    }
}

#endif
