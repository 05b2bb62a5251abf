import CED
import Foundation
import Hummingbird
import HummingbirdWebSocket
import NIOCore
import NIOWebSocket
import ServiceLifecycle

/// `GET /v1/audio/stream`: live tagging over a WebSocket, the same `CedStreamingTagger` and
/// `CedEventDetector` as `ced listen`.
///
/// 1. The client sends `{"type": "start", "sample_rate": 48000, "format": "f32le"|"s16le",
///    "channels": 1, …}` with the event options of `/v1/audio/events` (`window`, `hop`,
///    `threshold`, `release`, `merge_gap`, `min_duration`, `fill`, `thresholds`) and
///    `ongoing` (updates while events last), `windows` (window messages, default true),
///    `top_k` (classes per window message, default 5), `when_behind` (`wait`, default:
///    reading waits for the model, nothing is lost; or `drop`).
/// 2. The server answers `{"type": "started", …}`, then binary frames of interleaved
///    little-endian samples of any size go in, and JSON text messages come out:
///    `{"type": "window", …}` per window, `{"type": "event", …, "ongoing": true|false}`.
/// 3. `{"type": "stop"}` flushes the last windows and events; the server sends
///    `{"type": "done", …}` and closes. A malformed message gets `{"type": "error", …}` and a
///    close. So does a graceful shutdown of the server, after the events are flushed.
struct StreamStart {
    var sampleRate: Int
    var format: RawPCMFormat.SampleFormat
    var channels: Int
    var parameters: Parameters
    var ongoing: Bool
    var windows: Bool
    var topK: Int?
    var whenBehind: CedStreamingTagger.Backpressure
}

extension CedServer {
    func addStreamRoute(_ router: Router<BasicWebSocketRequestContext>) {
        router.ws("/v1/audio/stream") { [self] request, _ in
            // A refused upgrade falls through to the HTTP routes, which answer 401 or 503.
            guard authorized(request), isReady, openStream() else { return .dontUpgrade }
            closeStream()
            return .upgrade([:])
        } onUpgrade: { [self] inbound, outbound, _ in
            guard openStream() else {
                try? await outbound.write(.text(StreamMessage.error(APIError.overCapacity("too many streams are open"))))
                return
            }
            defer { closeStream() }
            let session = StreamSession(server: self, outbound: outbound)
            if register(session) { session.shutdown() }
            defer { unregister(session) }
            try await session.run(inbound.messages(maxSize: configuration.maxMessageBytes))
        }
    }
}

enum StreamMessage {
    static func error(_ e: APIError) -> String {
        #"{"type": "error", "error": {"code": \#(e.status.code), "type": "# + CedJSONText.quoted(e.type) + #", "message": "# + CedJSONText.quoted(e.message) + "}}"
    }
}

/// One stream: input messages in, window and event messages out.
final class StreamSession: @unchecked Sendable {
    let server: CedServer
    let outbound: WebSocketOutboundWriter
    private let lock = NSLock()
    private var stream: CedStreamingTagger?
    private var shuttingDown = false
    private var cancelled = false
    /// Bytes of a sample split between two binary frames.
    private var carry: [UInt8] = []

    init(server: CedServer, outbound: WebSocketOutboundWriter) {
        self.server = server
        self.outbound = outbound
    }

    /// The server is going down: end the input here (events are flushed, then `done`).
    func shutdown() {
        lock.lock()
        shuttingDown = true
        let s = stream
        lock.unlock()
        s?.finish()
    }

    func run(_ messages: WebSocketInboundMessageStream) async throws {
        var iterator = messages.makeAsyncIterator()
        let start: StreamStart
        // The start message must come within the timeout; else the connection is closed.
        let watchdog = Task { [outbound, seconds = server.configuration.timeout] in
            try await Task.sleep(nanoseconds: UInt64(seconds * 1e9))
            try? await outbound.write(.text(StreamMessage.error(APIError.timeout(seconds, "waiting for the start message"))))
            try? await outbound.close(.policyViolation, reason: "no start message")
        }
        do {
            let first = try await iterator.next()
            watchdog.cancel()
            guard let message = first else { return }
            guard case .text(let text) = message else {
                throw APIError.badRequest("the first message must be the start message, a JSON text message {\"type\": \"start\", \"sample_rate\": …}")
            }
            start = try Self.parseStart(text)
        } catch {
            watchdog.cancel()
            return try await fail(APIError.from(error))
        }

        let stream: CedStreamingTagger
        let detector: CedEventDetector
        do {
            let p = start.parameters
            let window = try p.double("window", positive: true) ?? 2
            let options = try server.eventOptions(p, ongoing: start.ongoing)
            stream = try CedStreamingTagger(tagger: server.tagger, inputSampleRate: start.sampleRate,
                                            options: .init(window: window, hop: try p.double("hop", positive: true) ?? window / 4,
                                                           whenBehind: start.whenBehind))
            detector = try CedEventDetector(options: options, config: server.tagger.config)
            let w = stream.windowing
            let started = StartedMessage(model: server.modelName, sampleRate: start.sampleRate, channels: start.channels,
                                         format: start.format.rawValue, window: w.window, hop: w.hop, threshold: try p.float("threshold"))
            try await outbound.write(.text(try CedJSONText.encode(started)))
        } catch {
            return try await fail(APIError.from(error))
        }
        if attach(stream) { stream.finish() }

        // Results go out as they come, while input is read. The sender ends the stream's
        // answer: the last events and `done` (and, when the server shuts down, the close).
        let sender = Task { try await send(stream, detector: detector, start: start) }
        var failure: APIError?
        var stopped = false
        do {
            while let message = try await iterator.next() {
                switch message {
                case .binary(let buffer):
                    let samples = try convert(buffer, format: start.format, channels: start.channels)
                    if samples.isEmpty { continue }
                    let channels = start.channels
                    try await server.pool.run {
                        try samples.withUnsafeBufferPointer { try stream.append(interleaved: $0, channels: channels) }
                    }
                case .text(let text):
                    guard let object = try? JSONDecoder().decode([String: JSONScalar].self, from: Data(text.utf8)),
                          let type = object["type"]?.text else {
                        throw APIError.badRequest("a text message must be JSON with a \"type\": \"stop\" (audio goes in binary messages)")
                    }
                    guard type == "stop" else { throw APIError.badRequest("unknown message type \(CedJSONText.quoted(type)) (expected \"stop\")") }
                    stopped = true
                }
                if stopped { break }
            }
        } catch let e as StreamingError where e.kind == .inputEnded || e.kind == .cancelled {
            // The server is shutting down: the input ended here.
        } catch {
            failure = APIError.from(error)
        }
        if failure != nil || (!stopped && !isShuttingDown) {
            // An error, or the client went away without "stop": nothing more is sent.
            cancel(stream)
            _ = try? await sender.value
            if let failure { try await fail(failure) }
            return
        }
        stream.finish()
        do {
            try await sender.value
        } catch {
            try await fail(APIError.from(error))
        }
    }

    private var isCancelled: Bool { lock.lock(); defer { lock.unlock() }; return cancelled }

    private func cancel(_ s: CedStreamingTagger) {
        lock.lock(); cancelled = true; lock.unlock()
        s.cancel()
    }

    private var isShuttingDown: Bool { lock.lock(); defer { lock.unlock() }; return shuttingDown }

    /// Keeps the stream for `shutdown()`; true when the server is shutting down already.
    private func attach(_ s: CedStreamingTagger) -> Bool {
        lock.lock(); defer { lock.unlock() }
        stream = s
        return shuttingDown
    }

    /// Sends window and event messages until the stream ends, then (unless it was cancelled)
    /// the last events and `done`; closes the connection when the server is shutting down.
    private func send(_ stream: CedStreamingTagger, detector: CedEventDetector, start: StreamStart) async throws {
        let config = server.tagger.config
        var windows = 0
        while let r = try await stream.nextResult() {
            windows += 1
            if start.windows {
                let labels = config.predictions(from: r.scores, topK: start.topK)
                try await outbound.write(.text(try CedJSONText.encode(TypedMessage(type: "window", body: CedWindowReport(r, labels: labels)))))
            }
            for e in try detector.process(r) { try await outbound.write(.text(try Self.event(e))) }
        }
        let stats = stream.statistics
        server.metrics.streamWindows.increment(by: Int64(stats.windowsScored))
        server.metrics.droppedWindows.increment(by: Int64(stats.droppedWindows))
        server.metrics.audio(route: "/v1/audio/stream", seconds: stats.secondsReceived)
        if isCancelled { return }
        for e in detector.finish() { try await outbound.write(.text(try Self.event(e))) }
        try await outbound.write(.text(#"{"type": "done", "audio_s": \#(CedJSONText.number(stats.secondsReceived)), "windows": \#(stats.windowsScored), "dropped_windows": \#(stats.droppedWindows)}"#))
        if isShuttingDown { try? await outbound.close(.normalClosure, reason: "the server is shutting down") }
    }

    /// An event as `ced tag --events --format json` writes it, with its id and `ongoing`.
    static func event(_ e: CedEvent) throws -> String {
        var report = CedEventReport(e, withID: true)
        report.ongoing = e.ongoing
        return try CedJSONText.encode(TypedMessage(type: "event", body: report))
    }

    private func fail(_ e: APIError) async throws {
        try? await outbound.write(.text(StreamMessage.error(e)))
        let code: WebSocketErrorCode = e.status.code >= 500 ? .unexpectedServerError
            : e.status == .unprocessableContent ? .dataInconsistentWithMessage : .policyViolation
        try? await outbound.close(code, reason: String(e.message.prefix(100)))
    }

    /// Interleaved little-endian samples as floats (a sample split across messages is kept
    /// for the next one). Non-finite floats are refused by the tagger.
    private func convert(_ buffer: ByteBuffer, format: RawPCMFormat.SampleFormat, channels: Int) throws -> [Float] {
        var bytes = carry
        buffer.withUnsafeReadableBytes { bytes.append(contentsOf: $0) }
        let width = format == .s16le ? 2 : 4
        let frame = width * channels
        let usable = bytes.count / frame * frame
        carry = Array(bytes[usable...])
        var out = [Float](repeating: 0, count: usable / width)
        bytes.withUnsafeBytes { p in
            for i in 0..<out.count {
                if format == .s16le {
                    out[i] = Float(Int16(littleEndian: p.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self))) / 32768
                } else {
                    out[i] = Float(bitPattern: UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
                }
            }
        }
        return out
    }

    static func parseStart(_ text: String) throws -> StreamStart {
        guard let object = try? JSONDecoder().decode([String: JSONScalar].self, from: Data(text.utf8)) else {
            throw APIError.badRequest("the start message is not a JSON object of strings, numbers and booleans")
        }
        guard object["type"]?.text == "start" else {
            throw APIError.badRequest("the first message must have \"type\": \"start\"")
        }
        var p = Parameters()
        for (k, v) in object { p.values[k] = v.text }
        guard let rate = try p.int("sample_rate", min: supportedSampleRates.lowerBound, max: supportedSampleRates.upperBound) else {
            throw APIError.invalidParameter("sample_rate", "required (Hz, \(supportedSampleRates.lowerBound)–\(supportedSampleRates.upperBound))")
        }
        let format: RawPCMFormat.SampleFormat
        switch p.string("format")?.lowercased() ?? "f32le" {
        case "f32le": format = .f32le
        case "s16le": format = .s16le
        case let f: throw APIError.invalidParameter("format", "expected f32le or s16le, got \(CedJSONText.quoted(f))")
        }
        let channels = try p.int("channels", min: 1, max: 64) ?? 1
        let whenBehind: CedStreamingTagger.Backpressure
        switch p.string("when_behind")?.lowercased() ?? "wait" {
        case "wait": whenBehind = .wait
        case "drop": whenBehind = .dropWindows
        case let w: throw APIError.invalidParameter("when_behind", "expected wait or drop, got \(CedJSONText.quoted(w))")
        }
        let topK = try p.int("top_k", min: 0).map { $0 == 0 ? nil : $0 } ?? 5
        return StreamStart(sampleRate: rate, format: format, channels: channels, parameters: p, ongoing: try p.bool("ongoing"),
                           windows: p.string("windows") == nil ? true : try p.bool("windows"), topK: topK, whenBehind: whenBehind)
    }
}

/// `{"type": …}` followed by the fields of `body`.
struct TypedMessage<Body: Encodable>: Encodable {
    var type: String
    var body: Body

    enum CodingKeys: String, CodingKey { case type }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(type, forKey: .type)
        try body.encode(to: encoder)
    }
}

/// A JSON string, number or boolean, as the text parameters are parsed from (other values
/// are null).
struct JSONScalar: Decodable {
    var text: String?

    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let b = try? c.decode(Bool.self) { text = b ? "true" : "false" }
        else if let i = try? c.decode(Int.self) { text = String(i) }
        else if let d = try? c.decode(Double.self) { text = "\(d)" }
        else if let s = try? c.decode(String.self) { text = s }
        else { text = nil }
    }
}

struct StartedMessage: Encodable {
    var type = "started"
    var model: String
    var sampleRate: Int
    var channels: Int
    var format: String
    var window: Double
    var hop: Double
    var threshold: Float?

    enum CodingKeys: String, CodingKey {
        case type, model, sampleRate = "sample_rate", channels, format, window = "window_s", hop = "hop_s", threshold
    }
}
