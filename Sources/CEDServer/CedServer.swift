import CED
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Hummingbird
import HummingbirdWebSocket
import Logging
import NIOCore
import ServiceLifecycle

/// How `ced serve` runs.
public struct CedServerConfiguration: Sendable {
    /// Address and port to listen on (127.0.0.1 unless told otherwise; port 0: any free one).
    public var host = "127.0.0.1"
    public var port = 8080
    /// Largest request body (413 beyond).
    public var maxBodyBytes = 100 << 20
    /// Audio requests admitted at once, waiting or running (503 with Retry-After beyond), and
    /// WebSocket streams open at once.
    public var maxConcurrency = 64
    public var maxStreams = 64
    /// Seconds a request may take from arrival to answer (408 beyond); also how long a
    /// stream may wait before its start message, and idle connections stay open.
    public var timeout: Double = 60
    /// When set, every route but /healthz and /readyz needs `Authorization: Bearer <key>`.
    public var apiKey: String?
    /// Dynamic batching: most spectrograms per model call (1: no batching), and how long a
    /// batch may wait for requests still being decoded.
    public var maxBatch = 8
    public var batchWait: Double = 0.005
    /// Threads for decoding and waiting on the model (nil: one per admitted request, so that
    /// a request never waits for a thread; they mostly wait for the model).
    public var workerThreads: Int?
    /// Largest WebSocket message (a binary frame of samples, or a text message).
    public var maxMessageBytes = 16 << 20

    public init() {}
}

/// `ced serve`: the model, loaded once and shared, behind an HTTP and WebSocket API (see the
/// README and `/openapi.json`): LocalAI-compatible classification, events, embeddings,
/// reports, live streams, the page at `/`, health, readiness and Prometheus metrics.
public final class CedServer: @unchecked Sendable {
    public let configuration: CedServerConfiguration
    /// The model as clients name it (the `--model` given).
    public let modelName: String
    /// The tagger every request uses, its model calls batched.
    public let tagger: CedAudioTagger
    let precision: CedPrecision
    let metrics = ServerMetrics()
    let batcher: ModelBatcher
    let pool: BlockingPool
    let logger: Logger
    let started = Date()
    let page: String
    private let lock = NSLock()
    private var admitted = 0
    private var streams = 0
    private var draining = false

    public init(tagger: CedAudioTagger, modelName: String, precision: CedPrecision = .fp32,
                configuration: CedServerConfiguration = CedServerConfiguration(), logger: Logger? = nil) {
        self.configuration = configuration
        self.modelName = modelName
        self.precision = precision
        let metrics = self.metrics
        batcher = ModelBatcher(maxBatch: configuration.maxBatch, maxWait: configuration.batchWait) { size, depth in
            metrics.batchSize.record(Double(size))
            metrics.queueDepth.set(Double(depth))
        }
        var scheduled = tagger
        scheduled.scheduler = batcher
        self.tagger = scheduled
        pool = BlockingPool(threads: configuration.workerThreads ?? (configuration.maxConcurrency + configuration.maxStreams))
        self.logger = logger ?? Logger(label: "ced.serve") { StreamLogHandler.standardError(label: $0) }
        page = CedReportPage.live(model: modelName)
    }

    deinit {
        batcher.shutdown()
        pool.shutdown()
    }

    // MARK: Running

    /// The Hummingbird application (for tests: `app.test(.router)` / `.live`). `onListening`
    /// receives the port once the server accepts connections.
    public func application(onListening: @escaping @Sendable (Int) async -> Void = { _ in }) -> some ApplicationProtocol {
        let router = Router()
        addRoutes(router)
        let responder = CedResponder(router: router.buildResponder(), server: self)
        let wsRouter = Router(context: BasicWebSocketRequestContext.self)
        addStreamRoute(wsRouter)
        // Idle connections close a little after the request timeout, which answers slow requests first.
        let idle = TimeAmount.nanoseconds(Int64((configuration.timeout + 10) * 1e9))
        return Application(
            responder: responder,
            server: .http1WebSocketUpgrade(webSocketRouter: wsRouter, configuration: .init(
                http1: .init(idleTimeout: idle),
                ws: .init(maxFrameSize: configuration.maxMessageBytes, autoPing: .enabled(timePeriod: .seconds(30))))),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "ced/\(cedVersion)"),
            onServerRunning: { channel in await onListening(channel.localAddress?.port ?? 0) },
            logger: logger)
    }

    /// Serves until SIGTERM or SIGINT, then stops accepting connections, finishes what is in
    /// flight (streams flush their events and end) and returns.
    public func run(onListening: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        Self.boundMallocRetention()
        let app = application(onListening: onListening)
        // Services shut down in reverse order: the streams first (their last events flushed,
        // then `done`), then the HTTP server (stops accepting, finishes the requests in flight).
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: app, successTerminationBehavior: .gracefullyShutdownGroup),
                       .init(service: StreamDrainer(server: self))],
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        startDraining()
        batcher.shutdown()
        pool.shutdown()
    }

    /// glibc raises its mmap threshold each time a large block is freed, after which the
    /// request-sized buffers (bodies, spectrograms) come from the heap arenas, one per thread
    /// up to 8 per core, and their freed memory stays in the process: RSS crept up by 30 MB
    /// over 10,000 requests. A fixed threshold (blocks ≥ 128 kB are mapped and returned
    /// when freed) and 4 arenas keep it flat (see the README's Serving section).
    static func boundMallocRetention() {
        #if canImport(Glibc)
        // mallopt is glibc's (malloc.h, which Swift's Glibc module leaves out): looked up at run time.
        typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return }
        let mallopt = unsafeBitCast(symbol, to: Mallopt.self)
        let mmapThreshold: Int32 = -3, arenaMax: Int32 = -8   // M_MMAP_THRESHOLD, M_ARENA_MAX
        _ = mallopt(mmapThreshold, 128 * 1024)
        _ = mallopt(arenaMax, 4)
        #endif
    }

    // MARK: Admission

    var isReady: Bool { lock.lock(); defer { lock.unlock() }; return !draining }

    func admit() -> Bool {
        lock.lock(); defer { lock.unlock() }
        guard admitted < configuration.maxConcurrency else { return false }
        admitted += 1
        metrics.inFlight.set(Double(admitted))
        return true
    }

    func release() {
        lock.lock(); defer { lock.unlock() }
        admitted -= 1
        metrics.inFlight.set(Double(admitted))
    }

    private var sessions: [ObjectIdentifier: StreamSession] = [:]

    func register(_ session: StreamSession) -> Bool {
        lock.lock(); defer { lock.unlock() }
        sessions[ObjectIdentifier(session)] = session
        return draining
    }

    func unregister(_ session: StreamSession) {
        lock.lock(); defer { lock.unlock() }
        sessions[ObjectIdentifier(session)] = nil
    }

    /// Ends every open stream (flushing its events) and waits for them, at most `timeout`.
    func drainStreams() async {
        let open: [StreamSession] = { lock.lock(); defer { lock.unlock() }; draining = true; return Array(sessions.values) }()
        for s in open { s.shutdown() }
        let deadline = Date(timeIntervalSinceNow: configuration.timeout)
        while Date() < deadline {
            let left: Int = { lock.lock(); defer { lock.unlock() }; return sessions.count }()
            if left == 0 { return }
            try? await Task.sleep(nanoseconds: 20_000_000)
        }
    }

    func openStream() -> Bool {
        lock.lock(); defer { lock.unlock() }
        guard streams < configuration.maxStreams else { return false }
        streams += 1
        metrics.streamsActive.set(Double(streams))
        return true
    }

    func closeStream() {
        lock.lock(); defer { lock.unlock() }
        streams -= 1
        metrics.streamsActive.set(Double(streams))
    }

    func startDraining() { lock.lock(); draining = true; lock.unlock() }

    /// Whether `request` may pass: health and readiness always, the rest with the API key.
    func authorized(_ request: Request) -> Bool {
        guard let key = configuration.apiKey, !key.isEmpty else { return true }
        let path = request.uri.path
        if path == "/healthz" || path == "/readyz" { return true }
        guard let header = request.headers[.authorization] else { return false }
        let prefix = "bearer "
        guard header.count > prefix.count, header.prefix(prefix.count).lowercased() == prefix else { return false }
        return constantTimeEqual(Array(header.dropFirst(prefix.count).trimmingCharacters(in: .whitespaces).utf8), Array(key.utf8))
    }

    private func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var diff = UInt8(a.count == b.count ? 0 : 1)
        for i in 0..<max(a.count, b.count) { diff |= (i < a.count ? a[i] : 0) ^ (i < b.count ? b[i] : 0) }
        return diff == 0
    }

    /// Runs `body`, answering 408 if it has not finished within the timeout (the work itself
    /// goes on in the background and its answer is dropped).
    func withTimeout<T: Sendable>(_ what: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        let seconds = configuration.timeout
        let once = Once()
        return try await withCheckedThrowingContinuation { (c: CheckedContinuation<T, Error>) in
            let work = Task {
                try await body()
            }
            let timer = Task {
                try await Task.sleep(nanoseconds: UInt64(seconds * 1e9))
                if once.claim() {
                    work.cancel()
                    c.resume(throwing: APIError.timeout(seconds, what))
                }
            }
            Task {
                let r = await work.result
                timer.cancel()
                if once.claim() { c.resume(with: r) }
            }
        }
    }
}

/// On graceful shutdown, before the HTTP server: ends the open streams so that they flush
/// their events and say `done` (the WebSocket layer would otherwise close them at once).
struct StreamDrainer: Service {
    let server: CedServer
    func run() async throws {
        try? await gracefulShutdown()
        await server.drainStreams()
    }
}

/// A flag the first of several racers claims.
final class Once: @unchecked Sendable {
    private let lock = NSLock()
    private var done = false
    func claim() -> Bool { lock.lock(); defer { lock.unlock() }; if done { return false }; done = true; return true }
}

/// Every response goes through here: the API key, JSON errors for everything (unknown
/// routes included), and the request metrics.
struct CedResponder: HTTPResponder {
    typealias Context = BasicRequestContext
    let router: RouterResponder<BasicRequestContext>
    let server: CedServer

    func respond(to request: Request, context: Context) async throws -> Response {
        let start = DispatchTime.now().uptimeNanoseconds
        var response: Response
        do {
            guard server.authorized(request) else {
                throw APIError.unauthorized("this server needs an API key: send Authorization: Bearer <key>")
            }
            response = try await router.respond(to: request, context: context)
            if context.endpointPath == "NotFound" && response.status == .notFound {
                response = APIError.notFound("no route \(request.method) \(request.uri.path); see /openapi.json").response
            }
        } catch let e as HTTPError {
            response = APIError(status: e.status, type: "http_error", message: e.body ?? e.status.reasonPhrase, headers: e.headers).response
        } catch {
            let e = APIError.from(error)
            if e.status.code >= 500 { server.logger.error("\(request.method) \(request.uri.path): \(e.message)") }
            response = e.response
        }
        let route = ServerMetrics.route(context.endpointPath == "NotFound" ? nil : context.endpointPath ?? request.uri.path)
        server.metrics.request(route: route, status: response.status.code,
                               seconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        return response
    }
}
