import Foundation

/// Progress of one file download, reported to `HubOptions.progress`.
public struct HubDownloadProgress: Sendable {
    public var repo: String
    public var file: String
    /// Bytes of the file on disk so far (including a resumed part).
    public var receivedBytes: Int64
    /// The file's size, when the hub announced it.
    public var totalBytes: Int64?
    /// True for the last report of a successful download.
    public var finished: Bool
}

/// Where and how hub files are fetched; defaults follow `huggingface_hub`'s environment
/// variables so both share one cache.
public struct HubOptions: Sendable {
    /// `HF_ENDPOINT`, default `https://huggingface.co`.
    public var endpoint: String
    /// `HF_HUB_CACHE`, else `HUGGINGFACE_HUB_CACHE`, else `HF_HOME/hub`, else
    /// `XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`.
    public var cacheDirectory: URL
    /// `HF_TOKEN` (or the legacy `HUGGING_FACE_HUB_TOKEN`), else the token file that
    /// `huggingface-cli login` writes (`HF_TOKEN_PATH`, else `HF_HOME/token`, else
    /// `XDG_CACHE_HOME/huggingface/token`, else `~/.cache/huggingface/token`); sent as a
    /// bearer token to the endpoint's host only (never to a CDN a file redirects to).
    public var token: String?
    /// `HF_HUB_OFFLINE` = 1/ON/YES/TRUE: only the cache is used, nothing is requested.
    public var offline: Bool
    /// Seconds without data before a request fails (metadata requests; downloads use at
    /// least 30 s).
    public var timeout: TimeInterval = 10
    /// How often an interrupted download is resumed (with a Range request) before
    /// giving up; the partial file is kept, so a later run resumes too.
    public var maxResumeAttempts: Int = 5
    /// Called as bytes arrive (from a background thread). `HubOptions.stderrProgressBar()`
    /// gives a progress bar for a terminal.
    public var progress: (@Sendable (HubDownloadProgress) -> Void)?

    /// Options from `environment` (the process environment by default).
    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        func value(_ k: String) -> String? {
            guard let v = environment[k], !v.isEmpty else { return nil }
            return v
        }
        endpoint = (value("HF_ENDPOINT") ?? "https://huggingface.co")
        while endpoint.hasSuffix("/") { endpoint.removeLast() }
        let home = CedPlatform.homeDirectory(environment: environment)
        func expand(_ p: String) -> URL {
            if p == "~" { return home }
            if p.hasPrefix("~/") { return home.appendingPathComponent(String(p.dropFirst(2))) }
            return URL(fileURLWithPath: p)
        }
        if let c = value("HF_HUB_CACHE") ?? value("HUGGINGFACE_HUB_CACHE") {
            cacheDirectory = expand(c)
        } else if let h = value("HF_HOME") {
            cacheDirectory = expand(h).appendingPathComponent("hub")
        } else if let x = value("XDG_CACHE_HOME") {
            cacheDirectory = expand(x).appendingPathComponent("huggingface/hub")
        } else {
            cacheDirectory = home.appendingPathComponent(".cache/huggingface/hub")
        }
        let hfHome = value("HF_HOME").map(expand)
            ?? value("XDG_CACHE_HOME").map { expand($0).appendingPathComponent("huggingface") }
            ?? home.appendingPathComponent(".cache/huggingface")
        let tokenFile = value("HF_TOKEN_PATH").map(expand) ?? hfHome.appendingPathComponent("token")
        token = value("HF_TOKEN") ?? value("HUGGING_FACE_HUB_TOKEN") ?? Self.readToken(tokenFile)
        offline = ["1", "ON", "YES", "TRUE"].contains((value("HF_HUB_OFFLINE") ?? "").uppercased())
    }

    /// The first line of a token file, trimmed; nil when missing, unreadable or empty.
    static func readToken(_ file: URL) -> String? {
        guard let data = try? Data(contentsOf: file, options: .mappedIfSafe), data.count < 1 << 16,
              let text = String(data: data, encoding: .utf8) else { return nil }
        let line = text.split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
        let token = line.trimmingCharacters(in: .whitespaces)
        return token.isEmpty ? nil : token
    }

    /// A progress reporter that draws one line per file on standard error, e.g.
    /// `model.safetensors  42% |########          | 143.1/340.2 MB`.
    public static func stderrProgressBar() -> @Sendable (HubDownloadProgress) -> Void {
        let bar = ProgressBar()
        return { bar.report($0) }
    }
}

private final class ProgressBar: @unchecked Sendable {
    private let lock = NSLock()
    private var lastDraw: [String: TimeInterval] = [:]

    func report(_ p: HubDownloadProgress) {
        lock.lock(); defer { lock.unlock() }
        let now = Date().timeIntervalSince1970
        let key = p.repo + "/" + p.file
        if !p.finished, let last = lastDraw[key], now - last < 0.1 { return }
        lastDraw[key] = now
        func mb(_ b: Int64) -> String { String(format: "%.1f", Double(b) / 1_000_000) }
        var line: String
        if let total = p.totalBytes, total > 0 {
            let frac = min(1, Double(p.receivedBytes) / Double(total))
            let width = 24
            let filled = Int(frac * Double(width))
            line = String(format: "%@ %3d%% |", p.file, Int(frac * 100)) + String(repeating: "#", count: filled)
                + String(repeating: " ", count: width - filled) + "| \(mb(p.receivedBytes))/\(mb(total)) MB"
        } else {
            line = "\(p.file) \(mb(p.receivedBytes)) MB"
        }
        let text = "\r" + line + (p.finished ? "\n" : "")
        FileHandle.standardError.write(Data(text.utf8))
        if p.finished { lastDraw[key] = nil }
    }
}
