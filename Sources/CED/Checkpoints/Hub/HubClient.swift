import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Downloads files of a Hugging Face model repository into the `huggingface_hub` cache
/// (see `HubCache`), the way `hf_hub_download` does:
///
/// 1. A commit-hash revision whose file is cached is returned without any request.
/// 2. Offline (`HF_HUB_OFFLINE=1`): the cache only; an uncached file is an error.
/// 3. Otherwise a `HEAD {endpoint}/{repo}/resolve/{revision}/{file}` (relative
///    redirects followed, e.g. a renamed repository; absolute ones — the CDN — not)
///    gives the commit (`X-Repo-Commit`), the etag (`X-Linked-Etag`, else `ETag`), the
///    size (`X-Linked-Size`, else `Content-Length`) and where to download from.
///    If that request fails (no network, unknown repository, server error) the cached
///    copy for the revision is used when there is one.
/// 4. A blob already cached under that etag is linked into the snapshot; else it is
///    downloaded under a lock (`.locks/…/<etag>.lock`, shared with Python) to
///    `blobs/<etag>.incomplete`, resumed with `Range` after a dropped connection,
///    checked against the announced size and — for LFS files, whose etag is their
///    sha256 — the sha256, then renamed atomically to `blobs/<etag>`. A file that fails
///    verification is deleted, never left in the cache.
public final class HubClient: Sendable {
    public let options: HubOptions
    public var cache: HubCache { HubCache(root: options.cacheDirectory) }

    public init(options: HubOptions = HubOptions()) { self.options = options }

    /// A file that is now in the cache.
    public struct File: Sendable, Equatable {
        /// The snapshot path (`snapshots/<commit>/<file>`).
        public var url: URL
        public var commit: String
        /// True when it came from the cache without being checked against the hub.
        public var fromCacheOnly: Bool
        /// True when this call downloaded it.
        public var downloaded: Bool
    }

    // MARK: Validation

    static func isCommitHash(_ s: String) -> Bool {
        s.utf8.count == 40 && s.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }

    /// `owner/name` with the characters the hub allows (no `--` or `..`).
    public static func isValidRepoId(_ s: String) -> Bool {
        let parts = s.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, s.count <= 96 else { return false }
        func alnum(_ c: Unicode.Scalar) -> Bool { c.isASCII && CharacterSet.alphanumerics.contains(c) }
        for p in parts {
            guard let first = p.unicodeScalars.first, alnum(first) else { return false }
            guard p.unicodeScalars.allSatisfy({ alnum($0) || "._-".unicodeScalars.contains($0) }) else { return false }
            if p.contains("--") || p.contains("..") || p.hasSuffix(".") || p.hasSuffix("-") { return false }
        }
        return true
    }

    private static func isSafeRelativePath(_ s: String) -> Bool {
        !s.isEmpty && !s.hasPrefix("/") && !s.contains("\\") && !s.contains("\0")
            && s.split(separator: "/", omittingEmptySubsequences: false).allSatisfy { !$0.isEmpty && $0 != "." && $0 != ".." }
    }

    private static func isSafeEtag(_ s: String) -> Bool {
        !s.isEmpty && s.count <= 128 && s != "." && s != ".."
            && s.unicodeScalars.allSatisfy { $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "._-".unicodeScalars.contains($0)) }
    }

    private func check(repo: String, file: String, revision: String) throws {
        guard Self.isValidRepoId(repo) else {
            throw HubError(.invalidRepoId, repo: repo, reason: "not a valid repository id (expected owner/name)")
        }
        guard Self.isSafeRelativePath(file) else {
            throw HubError(.entryNotFound, repo: repo, file: file, reason: "not a valid file name in a repository")
        }
        guard Self.isSafeRelativePath(revision) else {
            throw HubError(.revisionNotFound, repo: repo, revision: revision, reason: "not a valid revision name")
        }
    }

    // MARK: Public API

    /// The local path of `file` in `repo` at `revision`, downloading it when needed.
    /// Returns nil when the repository has no such file (so callers can fall back, e.g.
    /// from `model.safetensors` to `pytorch_model.bin`). Throws `HubError`.
    public func file(_ file: String, repo: String, revision: String = "main") throws -> File? {
        try check(repo: repo, file: file, revision: revision)
        let cache = self.cache

        if Self.isCommitHash(revision) {
            let p = cache.pointer(repo, commit: revision, file: file)
            if FileManager.default.fileExists(atPath: p.path) {
                return File(url: p, commit: revision, fromCacheOnly: true, downloaded: false)
            }
        }
        if options.offline {
            switch cache.lookup(repo: repo, file: file, revision: revision) {
            case .found(let url, let commit): return File(url: url, commit: commit, fromCacheOnly: true, downloaded: false)
            case .knownMissing: return nil
            case .notCached:
                throw HubError(.offlineNotCached, repo: repo, file: file, revision: revision,
                               reason: "offline mode (HF_HUB_OFFLINE) is on and the file is not in the cache at \(cache.root.path)")
            }
        }

        let meta: Metadata
        do {
            meta = try metadata(repo: repo, file: file, revision: revision)
        } catch let e as HubError {
            if e.kind == .entryNotFound, let commit = e.commit {
                try? cache.writeRef(repo: repo, revision: revision, commit: commit)
                cache.writeNoExist(repo: repo, commit: commit, file: file)
                return nil
            }
            // Any other failure: use the cached copy for this revision when there is one.
            switch cache.lookup(repo: repo, file: file, revision: revision) {
            case .found(let url, let commit): return File(url: url, commit: commit, fromCacheOnly: true, downloaded: false)
            case .knownMissing: return nil
            case .notCached: throw e
            }
        }

        try cache.writeRef(repo: repo, revision: revision, commit: meta.commit)
        let pointer = cache.pointer(repo, commit: meta.commit, file: file)
        let blob = cache.blob(repo, etag: meta.etag)
        if FileManager.default.fileExists(atPath: pointer.path) {
            return File(url: pointer, commit: meta.commit, fromCacheOnly: false, downloaded: false)
        }
        try cache.makeDirectory(blob.deletingLastPathComponent(), repo: repo)
        let lockURL = cache.lock(repo, etag: meta.etag)
        try cache.makeDirectory(lockURL.deletingLastPathComponent(), repo: repo)
        let lock = try FileLock(path: lockURL.path)
        defer { lock.unlock() }
        var downloaded = false
        if !FileManager.default.fileExists(atPath: blob.path) {
            try download(meta, to: blob, repo: repo, file: file, revision: revision)
            downloaded = true
        }
        let url = try cache.link(repo: repo, commit: meta.commit, file: file, etag: meta.etag)
        return File(url: url, commit: meta.commit, fromCacheOnly: false, downloaded: downloaded)
    }

    // MARK: Metadata

    struct Metadata {
        var commit: String
        var etag: String
        var size: Int?
        var location: URL
        /// The sha256 to verify (LFS files).
        var sha256: String?
    }

    private var userAgent: String { "ced-swift/0.1; hf_hub-compatible" }

    private func baseHeaders(for url: URL) -> [String: String] {
        var h = ["User-Agent": userAgent]
        if let token = options.token, let host = URL(string: options.endpoint)?.host, url.host == host,
           URL(string: options.endpoint)?.port == url.port {
            h["Authorization"] = "Bearer \(token)"
        }
        return h
    }

    static func escape(_ s: String, keepSlash: Bool) -> String {
        var allowed = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")
        if keepSlash { allowed.insert("/") }
        return s.addingPercentEncoding(withAllowedCharacters: allowed) ?? s
    }

    func resolveURL(repo: String, file: String, revision: String) throws -> URL {
        let s = "\(options.endpoint)/\(repo)/resolve/\(Self.escape(revision, keepSlash: false))/\(Self.escape(file, keepSlash: true))"
        guard let url = URL(string: s), url.scheme == "http" || url.scheme == "https" else {
            throw HubError(.badResponse, repo: repo, file: file, revision: revision, reason: "HF_ENDPOINT '\(options.endpoint)' does not give a valid http(s) URL")
        }
        return url
    }

    static func normalizeEtag(_ s: String?) -> String? {
        guard var e = s?.trimmingCharacters(in: .whitespaces), !e.isEmpty else { return nil }
        if e.hasPrefix("W/") { e.removeFirst(2) }
        e = e.trimmingCharacters(in: CharacterSet(charactersIn: "\""))
        return e.isEmpty ? nil : e
    }

    func metadata(repo: String, file: String, revision: String) throws -> Metadata {
        let client = HTTPClient(timeout: options.timeout)
        var url = try resolveURL(repo: repo, file: file, revision: revision)
        var response: HTTPResponse?
        for _ in 0..<10 {
            var headers = baseHeaders(for: url)
            headers["Accept-Encoding"] = "identity"
            let r: HTTPResponse
            do {
                r = try client.request("HEAD", url, headers: headers)
            } catch let e as HTTPTransportError {
                throw HubError(.networkUnavailable, repo: repo, file: file, revision: revision,
                               reason: "cannot reach \(options.endpoint) (\(e.reason)) and the file is not in the cache at \(cache.root.path)")
            }
            response = r
            // Follow relative redirects only (a renamed repository); stop at absolute
            // ones (the CDN), whose headers carry the metadata.
            if (300...399).contains(r.status), let loc = r.header("location"), URL(string: loc)?.host == nil,
               let next = URL(string: loc, relativeTo: url)?.absoluteURL {
                url = next
                continue
            }
            break
        }
        guard let r = response else { throw HubError(.badResponse, repo: repo, file: file, revision: revision, reason: "too many redirects") }
        if !(200...399).contains(r.status) {
            throw Self.statusError(r, repo: repo, file: file, revision: revision, endpoint: options.endpoint)
        }
        guard let commit = r.header("x-repo-commit"), Self.isCommitHash(commit) else {
            throw HubError(.badResponse, repo: repo, file: file, revision: revision,
                           reason: "the server at \(options.endpoint) sent no valid X-Repo-Commit header; is HF_ENDPOINT a Hugging Face hub?")
        }
        guard let etag = Self.normalizeEtag(r.header("x-linked-etag") ?? r.header("etag")), Self.isSafeEtag(etag) else {
            throw HubError(.badResponse, repo: repo, file: file, revision: revision,
                           reason: "the server at \(options.endpoint) sent no usable ETag for the file")
        }
        let size = (r.header("x-linked-size") ?? r.header("content-length")).flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        var location = r.url
        if (300...399).contains(r.status), let loc = r.header("location"), let u = URL(string: loc, relativeTo: r.url)?.absoluteURL {
            location = u
        }
        var sha: String?
        if let linked = Self.normalizeEtag(r.header("x-linked-etag")), linked.count == 64,
           linked.unicodeScalars.allSatisfy({ $0.properties.isASCIIHexDigit }) {
            sha = linked.lowercased()
        }
        return Metadata(commit: commit, etag: etag, size: size, location: location, sha256: sha)
    }

    static func statusError(_ r: HTTPResponse, repo: String, file: String, revision: String, endpoint: String) -> HubError {
        let code = r.header("x-error-code")
        let message = r.header("x-error-message").map { " (\($0))" } ?? ""
        switch (code, r.status) {
        case ("RepoNotFound", _), (nil, 401):
            return HubError(.repositoryNotFound, repo: repo, file: file, revision: revision,
                            reason: "repository not found on \(endpoint)\(message); if it is private or gated, set HF_TOKEN")
        case ("RevisionNotFound", _):
            return HubError(.revisionNotFound, repo: repo, file: file, revision: revision, reason: "revision '\(revision)' not found\(message)")
        case ("EntryNotFound", _):
            var e = HubError(.entryNotFound, repo: repo, file: file, revision: revision, reason: "the repository has no file '\(file)'")
            e.commit = r.header("x-repo-commit").flatMap { isCommitHash($0) ? $0 : nil }
            return e
        case ("GatedRepo", _), (nil, 403):
            return HubError(.accessDenied, repo: repo, file: file, revision: revision,
                            reason: "access denied\(message); the repository may be gated: accept its terms and set HF_TOKEN")
        case (nil, 404):
            if let c = r.header("x-repo-commit"), isCommitHash(c) {
                var e = HubError(.entryNotFound, repo: repo, file: file, revision: revision, reason: "the repository has no file '\(file)'")
                e.commit = c
                return e
            }
            return HubError(.repositoryNotFound, repo: repo, file: file, revision: revision,
                            reason: "not found on \(endpoint) (HTTP 404); check the repository id and revision")
        default:
            return HubError(.http(r.status), repo: repo, file: file, revision: revision, reason: "HTTP \(r.status) from \(r.url.host ?? endpoint)\(message)")
        }
    }

    // MARK: Download

    private func fileSize(_ url: URL) -> Int {
        var st = stat()
        return stat(url.path, &st) == 0 ? Int(st.st_size) : 0
    }

    /// The partial download on disk and the running sha256 of exactly those bytes.
    private final class DownloadSink {
        let handle: FileHandle
        let path: String
        var hasher: SHA256Hasher?
        private(set) var size = 0
        let hashing: Bool

        init(path: String, hashing: Bool) throws {
            self.path = path
            self.hashing = hashing
            if !FileManager.default.fileExists(atPath: path) {
                guard FileManager.default.createFile(atPath: path, contents: nil) else {
                    throw HubError(.cache, repo: "", reason: "cannot create \(path)")
                }
            }
            guard let h = FileHandle(forUpdatingAtPath: path) else {
                throw HubError(.cache, repo: "", reason: "cannot open \(path) for writing")
            }
            handle = h
            hasher = hashing ? SHA256Hasher() : nil
            // Hash what an earlier run left, then continue from its end.
            while true {
                let chunk = h.readData(ofLength: 4 << 20)
                if chunk.isEmpty { break }
                chunk.withUnsafeBytes { hasher?.update($0) }
                size += chunk.count
            }
        }

        deinit { try? handle.close() }

        func reset() throws {
            try handle.truncate(atOffset: 0)
            size = 0
            hasher = hashing ? SHA256Hasher() : nil
        }

        func append(_ bytes: UnsafeRawBufferPointer) throws {
            try handle.write(contentsOf: Data(bytes))
            hasher?.update(bytes)
            size += bytes.count
        }
    }

    private func download(_ meta: Metadata, to blob: URL, repo: String, file: String, revision: String) throws {
        let incomplete = blob.path + ".incomplete"
        func fail(_ kind: HubError.Kind, _ reason: String) -> HubError {
            HubError(kind, repo: repo, file: file, revision: revision, reason: reason)
        }
        if let expected = meta.size, fileSize(URL(fileURLWithPath: incomplete)) > expected {
            truncate(incomplete, 0)
        }
        let sink: DownloadSink
        do {
            sink = try DownloadSink(path: incomplete, hashing: meta.sha256 != nil)
        } catch let e as HubError {
            throw fail(.cache, e.reason)
        }
        let client = HTTPClient(timeout: max(options.timeout, 30))
        var attempts = 0
        while true {
            if let expected = meta.size, sink.size == expected, expected > 0 { break }
            do {
                try fetch(meta.location, into: sink, total: meta.size, client: client, repo: repo, file: file, revision: revision)
                break
            } catch let e as HTTPTransportError {
                attempts += 1
                if attempts > options.maxResumeAttempts {
                    throw fail(.networkUnavailable, "download interrupted (\(e.reason)) after \(sink.size) bytes; run again to resume")
                }
                Thread.sleep(forTimeInterval: min(0.05 * Double(attempts), 1))
            } catch let e as HubError {
                throw e
            } catch {
                throw fail(.cache, "cannot write \(incomplete) (\(error.localizedDescription))")
            }
        }
        let size = sink.size
        if let expected = meta.size, size != expected {
            unlink(incomplete)
            throw fail(.sizeMismatch, "downloaded \(size) bytes but the hub announced \(expected); the partial file was removed")
        }
        if let sha = meta.sha256, var hasher = sink.hasher {
            let actual = hasher.finalizeHex()
            if actual != sha {
                unlink(incomplete)
                throw fail(.checksumMismatch, "sha256 of the download is \(actual) but the hub announced \(sha); the corrupt file was removed, nothing was cached")
            }
        }
        guard rename(incomplete, blob.path) == 0 else {
            throw fail(.cache, "cannot move the download to \(blob.path) (\(String(cString: strerror(errno))))")
        }
        options.progress?(HubDownloadProgress(repo: repo, file: file, receivedBytes: Int64(size), totalBytes: meta.size.map(Int64.init), finished: true))
    }

    /// One GET (following redirects) appending the body to `sink` from its current size.
    private func fetch(_ start: URL, into sink: DownloadSink, total: Int?, client: HTTPClient,
                       repo: String, file: String, revision: String) throws {
        var url = start
        let progress = options.progress
        for _ in 0..<10 {
            let offset = sink.size
            var headers = baseHeaders(for: url)
            headers["Accept-Encoding"] = "identity"
            if offset > 0 { headers["Range"] = "bytes=\(offset)-" }
            let r = try client.request("GET", url, headers: headers, onResponse: { r in
                switch r.status {
                case 206:
                    // Resume only if the server continues exactly where we are.
                    let range = r.header("content-range") ?? ""
                    let startByte = range.split(separator: " ").last?.split(separator: "-").first.flatMap { Int($0) }
                    guard startByte == offset else {
                        try sink.reset()
                        throw HTTPTransportError(reason: "server resumed at an unexpected offset (\(range))", receivedBody: false)
                    }
                    return true
                case 200:
                    try sink.reset()
                    return true
                default:
                    return false
                }
            }, onData: { bytes in
                try sink.append(bytes)
                progress?(HubDownloadProgress(repo: repo, file: file, receivedBytes: Int64(sink.size), totalBytes: total.map(Int64.init), finished: false))
            })
            switch r.status {
            case 200, 206:
                return
            case 300...399:
                guard let loc = r.header("location"), let next = URL(string: loc, relativeTo: url)?.absoluteURL else {
                    throw HubError(.badResponse, repo: repo, file: file, revision: revision, reason: "redirect without a Location header")
                }
                url = next
            case 416:
                // Our partial file is not a prefix the server can continue: start over.
                try sink.reset()
                throw HTTPTransportError(reason: "server refused to resume (HTTP 416)", receivedBody: false)
            default:
                throw Self.statusError(r, repo: repo, file: file, revision: revision, endpoint: options.endpoint)
            }
        }
        throw HubError(.badResponse, repo: repo, file: file, revision: revision, reason: "too many redirects")
    }

    static func sha256(of url: URL) throws -> String {
        guard let h = FileHandle(forReadingAtPath: url.path) else {
            throw HubError(.cache, repo: "", reason: "cannot read \(url.path)")
        }
        defer { try? h.close() }
        var hasher = SHA256Hasher()
        while true {
            let chunk = h.readData(ofLength: 4 << 20)
            if chunk.isEmpty { break }
            chunk.withUnsafeBytes { hasher.update($0) }
        }
        return hasher.finalizeHex()
    }
}

