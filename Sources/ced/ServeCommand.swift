import ArgumentParser
import CED
import Foundation
#if canImport(CEDServer)
import CEDServer

/// `ced serve`: the model behind an HTTP and WebSocket API, with a web page (CEDServer).
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the model over HTTP: LocalAI-compatible classification, events, embeddings, live streams and a web page.",
        discussion: """
            Routes: POST /v1/audio/classification (LocalAI's), /v1/audio/events (what `ced tag \
            --events --format json` prints), /v1/audio/embeddings, /v1/audio/report; the \
            WebSocket /v1/audio/stream; GET /v1/models, /healthz, /readyz, /metrics \
            (Prometheus), /openapi.json, and / (a page: drop a file or use the microphone). \
            SIGTERM or SIGINT stops accepting, finishes what is in flight and exits 0.

            Examples:
              ced serve --model mispeech/ced-tiny
              ced serve --model ./my-model --host 0.0.0.0 --port 9000 --api-key "$KEY"
              curl -F file=@dog.wav -F top_k=3 http://127.0.0.1:8080/v1/audio/classification
            """)

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: ArgumentHelp("Address to listen on (0.0.0.0: every interface).", valueName: "address"))
    var host = "127.0.0.1"
    @Option(help: ArgumentHelp("Port to listen on (0: any free port, printed at start).", valueName: "port"))
    var port = 8080
    @Option(name: .customLong("max-body-mb"), help: ArgumentHelp("Largest request body in MB (413 beyond).", valueName: "mb"))
    var maxBodyMB: Double = 100
    @Option(name: .customLong("max-concurrency"), help: ArgumentHelp("Requests processed or waiting at once, and streams open at once (503 beyond).", valueName: "n"))
    var maxConcurrency = 64

    @Option(help: ArgumentHelp("Seconds a request may take (408 beyond); also the idle timeout of connections.", valueName: "seconds"))
    var timeout: Double = 60

    @Option(name: .customLong("api-key"), help: ArgumentHelp("Require Authorization: Bearer KEY on every route but /healthz and /readyz (default: $CED_API_KEY).", valueName: "key"))
    var apiKey: String?

    @Option(name: .customLong("max-batch"), help: ArgumentHelp("Most clips or windows in one model call (1: no dynamic batching).", valueName: "n"))
    var maxBatch = 8

    @Flag(name: .shortAndLong, help: "No warnings while loading the model.")
    var quiet = false

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be between 0 and 65535") }
        guard maxBodyMB > 0, maxBodyMB.isFinite else { throw ValidationError("--max-body-mb must be a positive number") }
        guard maxConcurrency >= 1 else { throw ValidationError("--max-concurrency must be at least 1") }
        try requirePositiveSeconds(timeout, "--timeout")
        guard maxBatch >= 1 else { throw ValidationError("--max-batch must be at least 1") }
    }

    func run() throws {
        let tagger = try modelOptions.tagger(quiet: quiet)
        var config = CedServerConfiguration()
        config.host = host
        config.port = port
        config.maxBodyBytes = Int(maxBodyMB * 1_048_576)
        config.maxConcurrency = maxConcurrency
        config.maxStreams = maxConcurrency
        config.timeout = timeout
        config.apiKey = apiKey ?? ProcessInfo.processInfo.environment["CED_API_KEY"].flatMap { $0.isEmpty ? nil : $0 }
        config.maxBatch = maxBatch
        let server = CedServer(tagger: tagger, modelName: modelOptions.model, precision: modelOptions.precision, configuration: config)
        let (host, model, auth) = (host, modelOptions.model, config.apiKey != nil)
        let failure = Box<Error?>(nil), done = DispatchSemaphore(value: 0)
        Task.detached {
            do {
                try await server.run { port in
                    let shown = host.contains(":") ? "[\(host)]" : host
                    Terminal.write(to: .standardError, "ced serve: \(model) on http://\(shown):\(port)/\(auth ? " (API key required)" : "") — Ctrl-C stops\n")
                }
            } catch { failure.value = error }
            done.signal()
        }
        done.wait()
        if let e = failure.value { throw e }
    }
}

#else
/// Not in a Swift 6.0 build: the server packages need Swift 6.1+ (see Package.swift).
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Serve the model over HTTP (not in this build: needs Swift 6.1+).")
    func run() throws { throw ValidationError("this ced was built with Swift 6.0, without ced serve (its packages need Swift 6.1+)") }
}
#endif
