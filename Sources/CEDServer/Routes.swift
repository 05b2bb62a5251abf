import CED
import Foundation
import Hummingbird

/// The audio endpoints.
enum AudioEndpoint: String {
    case classification, events, embeddings, report

    var route: String { "/v1/audio/" + rawValue }
}

extension CedServer {
    func addRoutes(_ router: Router<BasicRequestContext>) {
        router.get("/") { [page] _, _ in textResponse(page, type: "text/html; charset=utf-8") }
        router.get("/healthz") { _, _ in textResponse(#"{"status": "ok"}"# + "\n") }
        router.get("/readyz") { [self] _, _ in
            guard isReady else { return APIError(status: .serviceUnavailable, type: "shutting_down", message: "the server is shutting down").response }
            return textResponse(#"{"status": "ready", "model": "# + CedJSONText.quoted(modelName) + "}\n")
        }
        router.get("/metrics") { [self] _, _ in textResponse(metrics.text(), type: "text/plain; version=0.0.4; charset=utf-8") }
        router.get("/openapi.json") { [self] _, _ in textResponse(OpenAPIDocument.json(model: modelName)) }
        router.get("/v1/models") { [self] _, _ in textResponse(try CedJSONText.encode(ModelList(server: self)) + "\n") }
        router.get("/v1/audio/stream") { _, _ in
            APIError(status: .upgradeRequired, type: "upgrade_required",
                     message: "/v1/audio/stream is a WebSocket: connect with an Upgrade: websocket request (see /openapi.json)",
                     headers: [.upgrade: "websocket"]).response
        }
        for endpoint in [AudioEndpoint.classification, .events, .embeddings, .report] {
            router.post(RouterPath(endpoint.route)) { [self] request, _ in try await audio(endpoint, request) }
        }
    }

    /// An audio request: checks that cost nothing first (content type and length, capacity),
    /// then the body (within the size limit and the timeout), then the work on a blocking
    /// thread, the model calls batched with those of other requests.
    func audio(_ endpoint: AudioEndpoint, _ request: Request) async throws -> Response {
        let kind = try bodyKind(of: request)
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > configuration.maxBodyBytes {
            throw APIError.tooLarge(configuration.maxBodyBytes)
        }
        guard isReady else { throw APIError(status: .serviceUnavailable, type: "shutting_down", message: "the server is shutting down") }
        guard admit() else {
            throw APIError.overCapacity("\(configuration.maxConcurrency) requests are being processed already (--max-concurrency); retry later")
        }
        let query = request.uri.queryParameters
        var parameters = Parameters()
        for (k, v) in query { parameters.values[String(k)] = String(v) }
        let limit = configuration.maxBodyBytes, queryParameters = parameters
        // The slot is given back when the work is done, even if the answer was a 408 before.
        return try await withTimeout("the request") { [self] in
            defer { release() }
            var body = Data()
            do {
                for try await buffer in request.body {
                    if body.count + buffer.readableBytes > limit { throw APIError.tooLarge(limit) }
                    buffer.withUnsafeReadableBytes { body.append(contentsOf: $0) }
                }
            } catch let e as APIError {
                throw e
            } catch {
                throw APIError.badRequest("the request body could not be read (\(error)); the connection was cut?")
            }
            var upload = try Self.upload(body, kind: kind)
            upload.parameters = queryParameters.merging(upload.parameters)
            let work = try plan(endpoint, upload)
            let (text, type, seconds) = try await pool.run { [batcher] in try batcher.request(work) }
            metrics.audio(route: endpoint.route, seconds: seconds)
            return textResponse(text, type: type)
        }
    }

    /// The audio and form fields of a body.
    static func upload(_ body: Data, kind: RequestBodyKind) throws -> AudioUpload {
        switch kind {
        case .raw:
            guard !body.isEmpty else { throw APIError.unprocessable("the request body is empty: send the audio file's bytes") }
            return AudioUpload(data: body, name: "-", parameters: Parameters())
        case .multipart(let boundary):
            var fields = Parameters()
            var file: Multipart.Part?
            let parts = try Multipart.parse(body, boundary: boundary)
            for p in parts {
                if p.name == "file" || (p.fileName != nil && file == nil && !parts.contains { $0.name == "file" }) {
                    file = p
                } else if p.fileName == nil {
                    fields.values[p.name] = String(decoding: p.body, as: UTF8.self)
                }
            }
            guard let file else { throw APIError.badRequest("the multipart form has no `file` field with the audio") }
            guard !file.body.isEmpty else { throw APIError.unprocessable("the uploaded file \(file.fileName ?? "") is empty (0 bytes)") }
            let name = file.fileName.map { $0.isEmpty ? "-" : $0 } ?? "-"
            return AudioUpload(data: file.body, name: name, parameters: fields)
        }
    }

    /// An audio request's answer: its text and media type, and the seconds of audio processed.
    typealias Work = () throws -> (String, String, Double)

    /// Checks an audio request's parameters and the look of its audio (cheap: on the request's
    /// own task, so that a bad request is answered at once even when every worker is busy),
    /// and returns its work, which decodes and runs the model (on a worker thread).
    func plan(_ endpoint: AudioEndpoint, _ upload: AudioUpload) throws -> Work {
        let p = upload.parameters
        guard AudioFiles.format(ofFileStartingWith: upload.data) != nil else {
            let bytes = upload.data.prefix(8).map { String(format: "%02X", $0) }.joined(separator: " ")
            throw APIError.unprocessable("the \(upload.name == "-" ? "body" : "file \(upload.name)") is not audio in a format recognised here (it starts with \(bytes)): send WAV, FLAC, MP3, Ogg/Opus, M4A/MP4, WebM/Matroska, AIFF, CAF, AMR, AAC, WMA, …")
        }
        if let m = p.string("model"), !servesModel(m) {
            throw APIError(status: .notFound, type: "model_not_found", message: "model \(CedJSONText.quoted(m)) is not served here; this server serves \(CedJSONText.quoted(modelName)) (GET /v1/models)")
        }
        let input = AudioInput.data(upload.data, name: upload.name)
        let labels = tagger.config.labels
        let topK = try p.int("top_k", min: 0).map { $0 == 0 ? nil : $0 } ?? 5
        let format = try p.string("format").flatMap { name -> CedResultFormat? in
            if endpoint == .report || endpoint == .embeddings { return nil }
            guard let f = CedResultFormat(rawValue: name.lowercased()) else {
                throw APIError.invalidParameter("format", "expected one of \(CedResultFormat.allCases.map(\.rawValue).joined(separator: ", ")), got \(CedJSONText.quoted(name))")
            }
            return f
        }
        let chunking = try p.string("chunking").map { name -> CedChunking in
            guard let c = CedChunking(rawValue: name.lowercased()) else { throw APIError.invalidParameter("chunking", "expected hf or original") }
            return c
        } ?? .hf
        switch endpoint {
        case .classification:
            let threshold = try p.float("threshold")
            let window = try p.double("window", positive: true), hop = try p.double("hop", positive: true)
            if hop != nil && window == nil { throw APIError.invalidParameter("hop", "needs window") }
            if let format, format.isEventOnly { throw APIError.invalidParameter("format", "\(format.rawValue) is a format of events (/v1/audio/events)") }
            let windowing = try window.map { w in
                let capped = min(w, tagger.longestWindow)
                return try tagger.windowing(window: capped, hop: hop ?? capped)
            }
            return { [self] in
                let r = try tagger.tagResult(input, file: upload.name, model: modelName, topK: topK, threshold: threshold, chunking: chunking,
                                             windowing: windowing)
                guard let format else {
                    let body = try CedJSONText.encode(Classification(model: modelName, detections: r.labels, duration: r.duration, segments: r.segments))
                    return (body + "\n", "application/json", r.duration)
                }
                return (try format.tagEncoder(files: [upload.name], labels: labels, windowed: windowing != nil)!.document([r]), format.mediaType, r.duration)
            }

        case .events, .report:
            let window = try p.double("window", positive: true) ?? 2
            let hop = try p.double("hop", positive: true) ?? window / 4
            let windowing = try tagger.windowing(window: window, hop: hop)
            let options = try eventOptions(p)
            if endpoint == .report {
                let curves = try p.int("curves", min: 1, max: 64) ?? 8
                let html: Bool
                switch p.string("format")?.lowercased() {
                case nil, "json": html = false
                case "html": html = true
                default: throw APIError.invalidParameter("format", "expected json or html")
                }
                return { [self] in
                    let report = try tagger.report(input, file: upload.name, model: modelName, topK: topK, chunking: chunking,
                                                   windowing: windowing, events: options, curves: curves)
                    return html ? (try CedReportPage.document([report], title: "CED — \(upload.name)"), "text/html; charset=utf-8", report.duration)
                        : (try CedJSONText.encode(report) + "\n", "application/json", report.duration)
                }
            }
            let withWindows = try p.bool("windows")
            let format = format ?? .json
            if withWindows && format != .json && format != .jsonl {
                throw APIError.invalidParameter("windows", "window scores come with format json or jsonl")
            }
            return { [self] in
            var windows: [CedWindowReport] = []
            let d = try tagger.events(input, windowing: windowing, events: options) { w in
                if withWindows { windows.append(CedWindowReport(w, labels: self.tagger.config.predictions(from: w.scores, topK: topK))) }
            }
            let result = CedEventResult(file: upload.name, model: modelName, detection: d)
            if withWindows {
                let r = EventsWithWindows(result: result, windows: windows)
                switch format {
                case .json: return (try CedJSONEncoder<EventsWithWindows>().document([r]), format.mediaType, d.duration)
                default: return (try CedJSONLinesEncoder<EventsWithWindows>().document([r]), format.mediaType, d.duration)
                }
            }
            let encoder = format.eventEncoder(files: [upload.name], labels: labels, featureExtractor: tagger.featureExtractor)
            return (try encoder.document([result]), format.mediaType, d.duration)
            }

        case .embeddings:
            return { [self] in
                let f = try tagger.features(input)
                let e = try tagger.model.encoder.embedding(f.mel)
                let body = try CedJSONText.encode(Embedding(model: modelName, file: upload.name, duration: f.duration, shape: e.shape, embedding: e.scalars))
                return (body + "\n", "application/json", f.duration)
            }
        }
    }

    /// The event options of a request, named as the CLI's (`threshold`, `release`,
    /// `min_duration`, `merge_gap`, `fill`, and `thresholds`: CSV text `label,threshold[,release]`).
    func eventOptions(_ p: Parameters, ongoing: Bool = false) throws -> CedEventOptions {
        let threshold = try p.float("threshold"), release = try p.float("release")
        if let r = release, let t = threshold, r > t { throw APIError.invalidParameter("release", "\(r) is above threshold \(t)") }
        let thresholds = try p.string("thresholds").map { text in
            try CedEventOptions.classThresholds(csv: text, file: "thresholds", labels: tagger.config.labels)
        }
        if let r = release, threshold == nil, thresholds == nil, r > 0.5 {
            throw APIError.invalidParameter("release", "\(r) is above the threshold (0.5 by default)")
        }
        return try CedEventOptions(classCount: tagger.config.outputdim, threshold: threshold, classThresholds: thresholds, release: release,
                                   minDuration: try p.double("min_duration", nonNegative: true) ?? 0,
                                   mergeGap: try p.double("merge_gap", nonNegative: true) ?? 0,
                                   fill: try p.double("fill", nonNegative: true, atMost: 1) ?? 0.25, reportOngoing: ongoing)
    }

    /// A `model` field names this server's model: its name as given, or the last part of it
    /// (`ced-tiny` for `mispeech/ced-tiny`, a folder's name).
    func servesModel(_ name: String) -> Bool {
        let trimmed = name.trimmingCharacters(in: .whitespaces)
        if trimmed == modelName { return true }
        let last = modelName.split(separator: "/").last.map(String.init) ?? modelName
        return trimmed == last || trimmed.split(separator: "/").last.map(String.init) == last
    }
}

extension Parameters {
    /// These values, overridden by `other`'s.
    func merging(_ other: Parameters) -> Parameters {
        Parameters(values: values.merging(other.values) { _, new in new })
    }
}

/// `POST /v1/audio/classification`'s answer (LocalAI's shape, plus the duration and, with a
/// window, the segments of `ced tag --window`).
struct Classification: Encodable {
    var model: String
    var detections: [CedPrediction]
    var duration: Double
    var segments: [CedTagResult.Segment]?

    enum CodingKeys: String, CodingKey { case model, detections, duration = "duration_s", segments }
}

/// A file's events with every window's top classes (`/v1/audio/events?windows=1`).
struct EventsWithWindows: Encodable {
    var result: CedEventResult
    var windows: [CedWindowReport]

    enum CodingKeys: String, CodingKey { case windows }

    func encode(to encoder: Encoder) throws {
        try result.encode(to: encoder)
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(windows, forKey: .windows)
    }
}

struct Embedding: Encodable {
    var model: String
    var file: String
    var duration: Double
    var shape: [Int]
    var embedding: [Float]

    enum CodingKeys: String, CodingKey { case model, file, duration = "duration_s", shape, embedding }
}

/// `GET /v1/models` (OpenAI's list shape).
struct ModelList: Encodable {
    struct Model: Encodable {
        var id: String
        var object = "model"
        var created: Int
        var ownedBy = "ced"
        var classes: Int
        var embedDim: Int
        var samplingRate: Int
        var precision: String

        enum CodingKeys: String, CodingKey {
            case id, object, created, ownedBy = "owned_by", classes, embedDim = "embed_dim", samplingRate = "sampling_rate", precision
        }
    }
    var object = "list"
    var data: [Model]

    init(server: CedServer) {
        let c = server.tagger.config
        data = [Model(id: server.modelName, created: Int(server.started.timeIntervalSince1970), classes: c.outputdim, embedDim: c.embedDim,
                      samplingRate: server.tagger.samplingRate, precision: server.precision.rawValue)]
    }
}
