import Foundation
import Prometheus

/// The server's Prometheus metrics (`GET /metrics`), in a registry of its own (several
/// servers in one process keep separate counts).
final class ServerMetrics: @unchecked Sendable {
    let registry = PrometheusCollectorRegistry()
    private let lock = NSLock()
    private var requestCounters: [String: Counter] = [:]
    private var latencies: [String: DurationHistogram] = [:]
    private var audioCounters: [String: Counter] = [:]
    let queueDepth: Gauge
    let inFlight: Gauge
    let batchSize: ValueHistogram
    let streamsActive: Gauge
    let streamWindows: Counter
    let droppedWindows: Counter

    /// The routes metrics are kept for; anything else counts as "other" (no unbounded labels).
    static let routes: Set<String> = ["/", "/healthz", "/readyz", "/metrics", "/openapi.json", "/v1/models", "/v1/audio/classification",
                                      "/v1/audio/events", "/v1/audio/embeddings", "/v1/audio/report", "/v1/audio/stream"]

    init() {
        queueDepth = registry.makeGauge(descriptor: .init(namespace: "ced", metricName: "model_queue_depth", unitName: "",
                                                          helpText: "Spectrograms waiting for the model (dynamic batching queue)."))
        inFlight = registry.makeGauge(descriptor: .init(namespace: "ced", metricName: "http_requests_in_flight", unitName: "",
                                                        helpText: "Audio requests admitted and not yet answered."))
        batchSize = registry.makeValueHistogram(descriptor: .init(namespace: "ced", metricName: "model_batch_size", unitName: "",
                                                                  helpText: "Spectrograms per model call."),
                                                buckets: [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64])
        streamsActive = registry.makeGauge(descriptor: .init(namespace: "ced", metricName: "streams_active", unitName: "",
                                                             helpText: "Open WebSocket streams."))
        streamWindows = registry.makeCounter(descriptor: .init(namespace: "ced", metricName: "stream_windows_scored", unitName: "total",
                                                               helpText: "Stream windows scored."))
        droppedWindows = registry.makeCounter(descriptor: .init(namespace: "ced", metricName: "stream_windows_dropped", unitName: "total",
                                                                helpText: "Stream windows dropped because the model could not keep up."))
    }

    static func route(_ path: String?) -> String {
        guard let path, routes.contains(path) else { return "other" }
        return path
    }

    /// One answered request.
    func request(route: String, status: Int, seconds: Double) {
        lock.lock()
        let key = route + " " + String(status)
        let counter = requestCounters[key] ?? registry.makeCounter(
            descriptor: .init(namespace: "ced", metricName: "http_requests", unitName: "total", helpText: "HTTP requests by route and status."),
            labels: [("route", route), ("status", String(status))])
        requestCounters[key] = counter
        let histogram = latencies[route] ?? registry.makeDurationHistogram(
            descriptor: .init(namespace: "ced", metricName: "http_request_duration", unitName: "seconds",
                              helpText: "Time from a request's arrival to its response, by route."),
            labels: [("route", route)],
            buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60].map { .nanoseconds(Int64($0 * 1e9)) })
        latencies[route] = histogram
        lock.unlock()
        counter.increment()
        histogram.recordNanoseconds(Int64(seconds * 1e9))
    }

    /// Seconds of audio processed by a route.
    func audio(route: String, seconds: Double) {
        guard seconds > 0, seconds.isFinite else { return }
        lock.lock()
        let counter = audioCounters[route] ?? registry.makeCounter(
            descriptor: .init(namespace: "ced", metricName: "audio_processed", unitName: "seconds_total",
                              helpText: "Seconds of audio processed, by route."),
            labels: [("route", route)])
        audioCounters[route] = counter
        lock.unlock()
        counter.increment(by: seconds)
    }

    /// The Prometheus text exposition.
    func text() -> String { registry.emitToString() }
}
