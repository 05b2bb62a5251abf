import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A response's status and headers (names lowercased).
struct HTTPResponse: Sendable {
    var status: Int
    var headers: [String: String]
    var url: URL

    func header(_ name: String) -> String? { headers[name.lowercased()] }

    init(_ r: HTTPURLResponse, url: URL) {
        status = r.statusCode
        var h: [String: String] = [:]
        for (k, v) in r.allHeaderFields {
            if let k = k as? String, let v = v as? String { h[k.lowercased()] = v }
        }
        headers = h
        self.url = url
    }
}

/// A transport-level failure (no HTTP status): connection refused, DNS, timeout, a
/// connection dropped mid-body. `receivedBody` tells whether body bytes had arrived.
struct HTTPTransportError: Error, Sendable {
    var reason: String
    var receivedBody: Bool
}

/// A small synchronous HTTP client over Foundation's URLSession (libcurl on Linux).
/// Redirects are never followed automatically: the caller sees every 3xx and decides
/// (the hub's metadata lives on the redirect response itself). Bodies are streamed to
/// a callback, never buffered whole.
final class HTTPClient: @unchecked Sendable {
    let timeout: TimeInterval

    init(timeout: TimeInterval) { self.timeout = timeout }

    private final class Delegate: NSObject, URLSessionDataDelegate, @unchecked Sendable {
        let done = DispatchSemaphore(value: 0)
        var response: HTTPResponse?
        var error: Error?
        var callbackError: Error?
        var receivedBody = false
        var declinedBody = false
        let onResponse: (HTTPResponse) throws -> Bool
        let onData: (UnsafeRawBufferPointer) throws -> Void
        let url: URL

        init(url: URL, onResponse: @escaping (HTTPResponse) throws -> Bool, onData: @escaping (UnsafeRawBufferPointer) throws -> Void) {
            self.url = url
            self.onResponse = onResponse
            self.onData = onData
        }

        func urlSession(_ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
                        newRequest request: URLRequest, completionHandler: @escaping (URLRequest?) -> Void) {
            completionHandler(nil)
        }

        func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
                        completionHandler: @escaping (URLSession.ResponseDisposition) -> Void) {
            guard let http = response as? HTTPURLResponse else {
                callbackError = HTTPTransportError(reason: "not an HTTP response", receivedBody: false)
                completionHandler(.cancel)
                return
            }
            let r = HTTPResponse(http, url: url)
            self.response = r
            do {
                let accept = try onResponse(r)
                declinedBody = !accept
                completionHandler(accept ? .allow : .cancel)
            } catch {
                callbackError = error
                completionHandler(.cancel)
            }
        }

        func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
            guard callbackError == nil else { return }
            receivedBody = true
            do {
                try data.withUnsafeBytes { try onData($0) }
            } catch {
                callbackError = error
                dataTask.cancel()
            }
        }

        func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) {
            self.error = error
            done.signal()
        }
    }

    /// Performs one request. `onResponse` sees the status and headers and returns
    /// whether to receive the body; `onData` gets the body in pieces. Returns the
    /// response; throws `HTTPTransportError` for transport failures and rethrows
    /// errors thrown by the callbacks.
    @discardableResult
    func request(_ method: String, _ url: URL, headers: [String: String],
                 onResponse: @escaping (HTTPResponse) throws -> Bool = { _ in true },
                 onData: @escaping (UnsafeRawBufferPointer) throws -> Void = { _ in }) throws -> HTTPResponse {
        let config = URLSessionConfiguration.ephemeral
        config.timeoutIntervalForRequest = timeout
        config.requestCachePolicy = .reloadIgnoringLocalCacheData
        config.urlCache = nil
        config.httpCookieStorage = nil
        let delegate = Delegate(url: url, onResponse: onResponse, onData: onData)
        let queue = OperationQueue()
        queue.maxConcurrentOperationCount = 1
        let session = URLSession(configuration: config, delegate: delegate, delegateQueue: queue)
        defer { session.finishTasksAndInvalidate() }
        var req = URLRequest(url: url)
        req.httpMethod = method
        req.timeoutInterval = timeout
        for (k, v) in headers { req.setValue(v, forHTTPHeaderField: k) }
        session.dataTask(with: req).resume()
        delegate.done.wait()
        queue.waitUntilAllOperationsAreFinished()
        if let e = delegate.callbackError { throw e }
        if let e = delegate.error {
            // Cancelled on purpose after the headers (the caller did not want the body).
            if let r = delegate.response, delegate.declinedBody { return r }
            throw HTTPTransportError(reason: Self.describe(e), receivedBody: delegate.receivedBody)
        }
        guard let r = delegate.response else {
            throw HTTPTransportError(reason: "no response", receivedBody: false)
        }
        return r
    }

    static func describe(_ e: Error) -> String {
        let ns = e as NSError
        if let u = e as? URLError {
            switch u.code {
            case .cannotConnectToHost: return "could not connect to the server"
            case .cannotFindHost, .dnsLookupFailed: return "host not found"
            case .timedOut: return "timed out"
            case .notConnectedToInternet: return "not connected to the internet"
            case .networkConnectionLost: return "the connection was lost"
            default: break
            }
        }
        let text = ns.localizedDescription
        return text.isEmpty || text == "(null)" ? "network error \(ns.code)" : text
    }
}
