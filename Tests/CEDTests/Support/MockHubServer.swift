import Foundation
#if canImport(Glibc)
import Glibc
#endif
@testable import CED

/// A minimal Hugging Face hub on loopback for the download tests (POSIX sockets, one
/// thread per connection, `Connection: close`). It answers
/// `HEAD|GET /{owner}/{name}/resolve/{revision}/{file}` like the hub:
///
/// - small files: 200 with `ETag` (a git-sha1-like id), `X-Repo-Commit`, `Content-Length`;
/// - LFS files: 302 to `/cdn/<sha256>` (on `cdnHost`, another host name for the same
///   server) with `X-Repo-Commit`, `X-Linked-Etag: "<sha256>"`, `X-Linked-Size`;
/// - unknown repository / revision / file: 404 with `X-Error-Code` `RepoNotFound`,
///   `RevisionNotFound`, `EntryNotFound` (+ `X-Repo-Commit`);
/// - `aliases`: a renamed repository answers 307 with a relative `Location`.
///
/// `GET /cdn/<sha>` serves the blob with `Range` support (206 + `Content-Range`).
/// Fault modes: drop the connection after N body bytes for the next K blob requests;
/// serve corrupted blob bytes; send the body slowly.
final class MockHubServer: @unchecked Sendable {
    struct Repo {
        var commit: String
        var files: [String: [UInt8]]
        var lfs: Set<String>
    }

    struct Request {
        var method: String
        var path: String
        var headers: [String: String]
    }

    private let lock = NSLock()
    private var _repos: [String: Repo] = [:]
    private var _aliases: [String: String] = [:]
    private var _blobs: [String: [UInt8]] = [:]
    private var _requests: [Request] = []
    private var _dropAfterBytes: Int?
    private var _dropsLeft = 0
    private var _corruptBlobs = false
    private var _chunkDelay: TimeInterval = 0
    private var listenFD: Int32 = -1
    private var acceptThread: Thread?
    private var stopped = false
    private(set) var port: Int = 0

    /// Host name used in CDN redirects (differs from the endpoint's `127.0.0.1`).
    let cdnHost = "localhost"

    var endpoint: String { "http://127.0.0.1:\(port)" }

    init() throws {
        listenFD = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard listenFD >= 0 else { throw CedInputError("socket failed") }
        var yes: Int32 = 1
        setsockopt(listenFD, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listenFD, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(listenFD, 64) == 0 else { throw CedInputError("bind/listen failed") }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listenFD, $0, &len) }
        }
        port = Int(UInt16(bigEndian: addr.sin_port))
        let t = Thread { self.acceptLoop() }
        acceptThread = t
        t.start()
    }

    deinit { stop() }

    func stop() {
        lock.lock()
        let fd = listenFD
        listenFD = -1
        stopped = true
        lock.unlock()
        if fd >= 0 {
            shutdown(fd, Int32(SHUT_RDWR))
            close(fd)
        }
    }

    // MARK: Configuration

    func add(repo: String, commit: String, files: [String: [UInt8]], lfs: Set<String>) {
        lock.lock(); defer { lock.unlock() }
        _repos[repo] = Repo(commit: commit, files: files, lfs: lfs)
        for name in lfs { if let b = files[name] { _blobs[Self.sha256(b)] = b } }
    }

    func alias(_ old: String, to new: String) { lock.lock(); _aliases[old] = new; lock.unlock() }

    /// Drop the connection after `bytes` body bytes for the next `times` blob GETs.
    func dropConnections(afterBytes bytes: Int, times: Int) {
        lock.lock(); _dropAfterBytes = bytes; _dropsLeft = times; lock.unlock()
    }

    func corruptBlobs(_ on: Bool) { lock.lock(); _corruptBlobs = on; lock.unlock() }
    func slowBody(chunkDelay: TimeInterval) { lock.lock(); _chunkDelay = chunkDelay; lock.unlock() }

    var requests: [Request] { lock.lock(); defer { lock.unlock() }; return _requests }
    func clearRequests() { lock.lock(); _requests = []; lock.unlock() }

    nonisolated(unsafe) private static var shaMemo: [[UInt8]: String] = [:]
    private static let shaLock = NSLock()

    /// SHA-256 hex, memoised across tests (hashing in debug builds is slow).
    static func sha256(_ bytes: [UInt8]) -> String {
        shaLock.lock(); defer { shaLock.unlock() }
        if let s = shaMemo[bytes] { return s }
        let s = SHA256Hasher.hex(bytes)
        shaMemo[bytes] = s
        return s
    }

    /// Git-sha1-like etag of a small file (the hub uses the git blob id; any stable id will do).
    static func smallEtag(_ bytes: [UInt8]) -> String { String(sha256(bytes).prefix(40)) }

    // MARK: Serving

    private func acceptLoop() {
        while true {
            lock.lock()
            let fd = listenFD
            lock.unlock()
            if fd < 0 { return }
            let c = accept(fd, nil, nil)
            if c < 0 {
                lock.lock(); let done = stopped; lock.unlock()
                if done { return }
                continue
            }
            var one: Int32 = 1
            setsockopt(c, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            let t = Thread { self.serve(c) }
            t.start()
        }
    }

    private func send(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + off, bytes.count - off, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return false }
            off += n
        }
        return true
    }

    private func respond(_ fd: Int32, status: Int, reason: String, headers: [(String, String)], body: [UInt8], method: String,
                         dropAfter: Int? = nil, chunkDelay: TimeInterval = 0) {
        var head = "HTTP/1.1 \(status) \(reason)\r\n"
        for (k, v) in headers { head += "\(k): \(v)\r\n" }
        head += "Connection: close\r\n\r\n"
        guard send(fd, Array(head.utf8)) else { return }
        guard method != "HEAD" else { return }
        let limit = dropAfter.map { min($0, body.count) } ?? body.count
        var off = 0
        let chunk = 16 * 1024
        while off < limit {
            let end = min(limit, off + chunk)
            guard send(fd, Array(body[off..<end])) else { return }
            off = end
            if chunkDelay > 0 { Thread.sleep(forTimeInterval: chunkDelay) }
        }
    }

    private func serve(_ fd: Int32) {
        defer { shutdown(fd, Int32(SHUT_RDWR)); close(fd) }
        var buffer = [UInt8]()
        var tmp = [UInt8](repeating: 0, count: 4096)
        while !(buffer.count >= 4 && buffer.suffix(4) == [13, 10, 13, 10]) {
            let n = recv(fd, &tmp, tmp.count, 0)
            if n <= 0 { return }
            buffer += tmp[0..<n]
            if buffer.count > 65536 { return }
        }
        let text = String(decoding: buffer, as: UTF8.self)
        var lines = text.components(separatedBy: "\r\n")
        let requestLine = lines.removeFirst().split(separator: " ")
        guard requestLine.count >= 2 else { return }
        let method = String(requestLine[0])
        let path = String(requestLine[1])
        var headers: [String: String] = [:]
        for l in lines where !l.isEmpty {
            if let colon = l.firstIndex(of: ":") {
                headers[l[..<colon].lowercased()] = l[l.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
        }
        lock.lock()
        _requests.append(Request(method: method, path: path, headers: headers))
        let repos = _repos, aliases = _aliases, blobs = _blobs
        lock.unlock()

        let parts = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        // "/cdn/<sha>"
        if parts.count == 3, parts[1] == "cdn" {
            let sha = parts[2]
            guard var blob = blobs[sha] else {
                respond(fd, status: 404, reason: "Not Found", headers: [("Content-Length", "0")], body: [], method: method)
                return
            }
            lock.lock()
            let corrupt = _corruptBlobs
            var drop: Int?
            if _dropsLeft > 0, method == "GET" { drop = _dropAfterBytes; _dropsLeft -= 1 }
            let delay = _chunkDelay
            lock.unlock()
            if corrupt { blob[blob.count / 2] ^= 0xff }
            var start = 0
            var status = 200, reason = "OK"
            var extra: [(String, String)] = []
            if let range = headers["range"], range.hasPrefix("bytes="), range.hasSuffix("-"),
               let s = Int(range.dropFirst(6).dropLast()) {
                guard s < blob.count else {
                    respond(fd, status: 416, reason: "Range Not Satisfiable", headers: [("Content-Range", "bytes */\(blob.count)"), ("Content-Length", "0")], body: [], method: method)
                    return
                }
                start = s
                status = 206
                reason = "Partial Content"
                extra.append(("Content-Range", "bytes \(s)-\(blob.count - 1)/\(blob.count)"))
            }
            let body = Array(blob[start...])
            respond(fd, status: status, reason: reason,
                    headers: [("Content-Length", "\(body.count)"), ("Accept-Ranges", "bytes"), ("Content-Type", "application/octet-stream")] + extra,
                    body: body, method: method, dropAfter: drop.map { max(0, $0 - start) }, chunkDelay: delay)
            return
        }
        // "/owner/name/resolve/rev/file..."
        guard parts.count >= 6, parts[3] == "resolve" else {
            respond(fd, status: 404, reason: "Not Found", headers: [("Content-Length", "0")], body: [], method: method)
            return
        }
        let repoId = parts[1] + "/" + parts[2]
        let revision = parts[4].removingPercentEncoding ?? parts[4]
        let file = parts[5...].joined(separator: "/").removingPercentEncoding ?? ""
        if let target = aliases[repoId] {
            respond(fd, status: 307, reason: "Temporary Redirect",
                    headers: [("Location", "/\(target)/resolve/\(parts[4])/\(parts[5...].joined(separator: "/"))"), ("Content-Length", "0")],
                    body: [], method: method)
            return
        }
        guard let repo = repos[repoId] else {
            respond(fd, status: 401, reason: "Unauthorized",
                    headers: [("X-Error-Code", "RepoNotFound"), ("X-Error-Message", "Repository not found"), ("Content-Length", "0")],
                    body: [], method: method)
            return
        }
        guard revision == "main" || revision == repo.commit else {
            respond(fd, status: 404, reason: "Not Found",
                    headers: [("X-Error-Code", "RevisionNotFound"), ("Content-Length", "0")], body: [], method: method)
            return
        }
        guard let bytes = repo.files[file] else {
            respond(fd, status: 404, reason: "Not Found",
                    headers: [("X-Error-Code", "EntryNotFound"), ("X-Repo-Commit", repo.commit), ("Content-Length", "0")],
                    body: [], method: method)
            return
        }
        if repo.lfs.contains(file), let sha = blobs.first(where: { $0.value == bytes })?.key {
            respond(fd, status: 302, reason: "Found",
                    headers: [("Location", "http://\(cdnHost):\(port)/cdn/\(sha)"), ("X-Repo-Commit", repo.commit),
                              ("X-Linked-Etag", "\"\(sha)\""), ("X-Linked-Size", "\(bytes.count)"),
                              ("ETag", "\"\(Self.smallEtag(Array(("pointer" + sha).utf8)))\""), ("Content-Length", "0")],
                    body: [], method: method)
        } else {
            respond(fd, status: 200, reason: "OK",
                    headers: [("ETag", "\"\(Self.smallEtag(bytes))\""), ("X-Repo-Commit", repo.commit),
                              ("Content-Length", "\(bytes.count)"), ("Content-Type", "application/json")],
                    body: bytes, method: method)
        }
    }
}
