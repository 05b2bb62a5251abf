import Foundation
import XCTest
@testable import CED

/// Hub downloads against `MockHubServer` on loopback.
final class HubTests: XCTestCase {
    static let commit = "3f1c0e5a9b7d2c4e6f8a0b1c2d3e4f5a6b7c8d9e"
    static let binCommit = "aaaabbbbccccddddeeeeffff0000111122223333"
    let repo = "mispeech/ced-micro"

    var server: MockHubServer!
    var cacheDir: URL!
    var files: [String: [UInt8]] = [:]

    override func setUpWithError() throws {
        let micro = try Reference.model("micro")
        for name in ["config.json", "preprocessor_config.json", "model.safetensors"] {
            files[name] = Array(try Data(contentsOf: micro.appendingPathComponent(name)))
        }
        server = try MockHubServer()
        server.add(repo: repo, commit: Self.commit, files: files, lfs: ["model.safetensors"])
        let bin = Array(try Data(contentsOf: try Reference.model("micro-bin/pytorch_model.bin")))
        server.add(repo: "test/bin-only", commit: Self.binCommit,
                   files: ["config.json": files["config.json"]!, "pytorch_model.bin": bin], lfs: ["pytorch_model.bin"])
        cacheDir = FileManager.default.temporaryDirectory.appendingPathComponent("ced-hub-\(UUID().uuidString)")
    }

    override func tearDown() {
        server?.stop()
        if let cacheDir { try? FileManager.default.removeItem(at: cacheDir) }
    }

    func hubOptions(endpoint: String? = nil, offline: Bool = false, token: String? = nil) -> HubOptions {
        var env = ["HF_ENDPOINT": endpoint ?? server.endpoint, "HF_HUB_CACHE": cacheDir.path, "HOME": "/nonexistent"]
        if offline { env["HF_HUB_OFFLINE"] = "1" }
        if let token { env["HF_TOKEN"] = token }
        var o = HubOptions(environment: env)
        o.timeout = 5
        return o
    }

    func load(_ spec: String, _ hub: HubOptions) throws -> PretrainedCheckpoint {
        try PretrainedCheckpoint.load(spec, options: .init(hub: hub))
    }

    var sha: String { MockHubServer.sha256(files["model.safetensors"]!) }
    var repoDir: URL { cacheDir.appendingPathComponent("models--mispeech--ced-micro") }
    var blobRequests: [MockHubServer.Request] { server.requests.filter { $0.path.hasPrefix("/cdn/") && $0.method == "GET" } }

    func assertLoadedMicro(_ ckpt: PretrainedCheckpoint, file: StaticString = #filePath, line: UInt = #line) throws {
        let ref = try SafeTensorsFile(contentsOf: try Reference.model("micro/model.safetensors")).stateDict()
        TorchCheckpointTests.assertIdentical(ckpt.weights, ref, file: file, line: line)
        XCTAssertEqual(ckpt.config, try CedConfig.load(from: try Reference.model("micro/config.json")), file: file, line: line)
    }

    func assertNoLeftovers(file: StaticString = #filePath, line: UInt = #line) {
        let blobs = (try? FileManager.default.contentsOfDirectory(atPath: repoDir.appendingPathComponent("blobs").path)) ?? []
        XCTAssertFalse(blobs.contains { $0.hasSuffix(".incomplete") }, "\(blobs)", file: file, line: line)
    }

    /// A port nothing listens on.
    func deadEndpoint() throws -> String {
        let s = try MockHubServer()
        let e = s.endpoint
        s.stop()
        return e
    }

    // MARK: Tests

    final class ProgressLog: @unchecked Sendable {
        let lock = NSLock()
        var reports: [HubDownloadProgress] = []
        func add(_ p: HubDownloadProgress) { lock.lock(); reports.append(p); lock.unlock() }
    }

    func testFirstDownloadLaysOutTheCacheLikeHuggingfaceHub() throws {
        var hub = hubOptions(token: "hf_secret")
        let log = ProgressLog()
        hub.progress = { log.add($0) }
        let ckpt = try load(repo, hub)
        let size = Int64(files["model.safetensors"]!.count)
        let weightReports = log.reports.filter { $0.file == "model.safetensors" }
        XCTAssertEqual(weightReports.last?.finished, true)
        XCTAssertEqual(weightReports.last?.receivedBytes, size)
        XCTAssertTrue(weightReports.allSatisfy { $0.totalBytes == size && $0.receivedBytes <= size })
        XCTAssertEqual(weightReports.map(\.receivedBytes), weightReports.map(\.receivedBytes).sorted())
        try assertLoadedMicro(ckpt)
        guard case .hub(let r, let rev, let commit, let paths) = ckpt.origin else { return XCTFail("\(ckpt.origin)") }
        XCTAssertEqual([r, rev, commit], [repo, "main", Self.commit])
        XCTAssertEqual(paths.map(\.lastPathComponent), ["config.json", "preprocessor_config.json", "model.safetensors"])

        let fm = FileManager.default
        XCTAssertEqual(try String(contentsOf: repoDir.appendingPathComponent("refs/main"), encoding: .utf8), Self.commit)
        let snap = repoDir.appendingPathComponent("snapshots/\(Self.commit)")
        XCTAssertEqual(try fm.destinationOfSymbolicLink(atPath: snap.appendingPathComponent("model.safetensors").path), "../../blobs/\(sha)")
        let configEtag = MockHubServer.smallEtag(files["config.json"]!)
        XCTAssertEqual(try fm.destinationOfSymbolicLink(atPath: snap.appendingPathComponent("config.json").path), "../../blobs/\(configEtag)")
        XCTAssertEqual(Array(try Data(contentsOf: repoDir.appendingPathComponent("blobs/\(sha)"))), files["model.safetensors"])
        XCTAssertTrue(fm.fileExists(atPath: cacheDir.appendingPathComponent(".locks/models--mispeech--ced-micro/\(sha).lock").path))
        assertNoLeftovers()

        // The token goes to the hub, not to the CDN host the large file redirects to.
        let resolves = server.requests.filter { $0.path.contains("/resolve/") }
        XCTAssertFalse(resolves.isEmpty)
        XCTAssertTrue(resolves.allSatisfy { $0.headers["authorization"] == "Bearer hf_secret" })
        XCTAssertEqual(blobRequests.count, 1)
        XCTAssertTrue(blobRequests.allSatisfy { $0.headers["authorization"] == nil && $0.headers["host"]?.hasPrefix("localhost") == true })
    }

    func testCachedCopyIsReusedWithoutNetwork() throws {
        _ = try load(repo, hubOptions())
        server.clearRequests()
        // By commit hash: answered from the cache without a single request.
        try assertLoadedMicro(try load("\(repo)@\(Self.commit)", hubOptions()))
        XCTAssertEqual(server.requests.count, 0)
        // Cached and online: only metadata requests, nothing downloaded again.
        _ = try load(repo, hubOptions())
        XCTAssertEqual(blobRequests.count, 0)
        XCTAssertTrue(server.requests.allSatisfy { $0.method == "HEAD" }, "\(server.requests.map { "\($0.method) \($0.path)" })")
        // No network at all: the cached copy for `main` is used.
        let ckpt = try load(repo, hubOptions(endpoint: try deadEndpoint()))
        try assertLoadedMicro(ckpt)
    }

    func testOfflineMode() throws {
        XCTAssertThrowsError(try load(repo, hubOptions(offline: true))) { e in
            XCTAssertEqual((e as? HubError)?.kind, .offlineNotCached, "\(e)")
            XCTAssertTrue("\(e)".contains("HF_HUB_OFFLINE"), "\(e)")
        }
        XCTAssertEqual(server.requests.count, 0)
        _ = try load(repo, hubOptions())
        server.clearRequests()
        try assertLoadedMicro(try load(repo, hubOptions(offline: true)))
        XCTAssertEqual(server.requests.count, 0)
    }

    func testResumeAfterTheServerDropsTheConnection() throws {
        // Without retries: the first run fails and keeps the partial file ...
        server.dropConnections(afterBytes: 200_000, times: 1)
        var hub = hubOptions()
        hub.maxResumeAttempts = 0
        XCTAssertThrowsError(try load(repo, hub)) { e in
            XCTAssertEqual((e as? HubError)?.kind, .networkUnavailable, "\(e)")
            XCTAssertTrue("\(e)".contains("resume"), "\(e)")
        }
        let partial = repoDir.appendingPathComponent("blobs/\(sha).incomplete")
        let partialSize = try FileManager.default.attributesOfItem(atPath: partial.path)[.size] as? Int
        XCTAssertEqual(partialSize, 200_000)
        XCTAssertFalse(FileManager.default.fileExists(atPath: repoDir.appendingPathComponent("blobs/\(sha)").path))
        // ... which the next run continues with a Range request.
        try assertLoadedMicro(try load(repo, hub))
        XCTAssertEqual(blobRequests.last?.headers["range"], "bytes=200000-")
        assertNoLeftovers()
    }

    func testResumeWithinOneCall() throws {
        server.dropConnections(afterBytes: 150_000, times: 2)
        try assertLoadedMicro(try load(repo, hubOptions()))
        XCTAssertEqual(blobRequests.map { $0.headers["range"] }, [nil, "bytes=150000-", "bytes=150000-"])
        assertNoLeftovers()
    }

    func testChecksumMismatchLeavesNoCorruptFile() throws {
        server.corruptBlobs(true)
        XCTAssertThrowsError(try load(repo, hubOptions())) { e in
            XCTAssertEqual((e as? HubError)?.kind, .checksumMismatch, "\(e)")
        }
        let fm = FileManager.default
        XCTAssertFalse(fm.fileExists(atPath: repoDir.appendingPathComponent("blobs/\(sha)").path))
        XCTAssertFalse(fm.fileExists(atPath: repoDir.appendingPathComponent("blobs/\(sha).incomplete").path))
        XCTAssertFalse(fm.fileExists(atPath: repoDir.appendingPathComponent("snapshots/\(Self.commit)/model.safetensors").path))
        server.corruptBlobs(false)
        try assertLoadedMicro(try load(repo, hubOptions()))
    }

    func testTwoConcurrentDownloads() throws {
        server.slowBody(chunkDelay: 0.004)
        let hub = hubOptions()
        let results = UnsafeMutableBufferPointer<Result<PretrainedCheckpoint, Error>?>.allocate(capacity: 2)
        results.initialize(repeating: nil)
        defer { results.deallocate() }
        DispatchQueue.concurrentPerform(iterations: 2) { i in
            results[i] = Result { try PretrainedCheckpoint.load(repo, options: .init(hub: hub)) }
        }
        for r in results { try assertLoadedMicro(try XCTUnwrap(r).get()) }
        XCTAssertEqual(blobRequests.count, 1, "the second process must wait for the first and reuse its blob")
        assertNoLeftovers()
    }

    func testReusesACacheLaidOutByHuggingfaceHub() throws {
        // Build the layout huggingface_hub writes, by hand.
        let fm = FileManager.default
        try fm.createDirectory(at: repoDir.appendingPathComponent("blobs"), withIntermediateDirectories: true)
        try fm.createDirectory(at: repoDir.appendingPathComponent("refs"), withIntermediateDirectories: true)
        let snap = repoDir.appendingPathComponent("snapshots/\(Self.commit)")
        try fm.createDirectory(at: snap, withIntermediateDirectories: true)
        try Self.commit.write(to: repoDir.appendingPathComponent("refs/main"), atomically: true, encoding: .utf8)
        for (name, bytes) in files {
            let etag = name == "model.safetensors" ? sha : MockHubServer.smallEtag(bytes)
            try Data(bytes).write(to: repoDir.appendingPathComponent("blobs/\(etag)"))
            if name != "preprocessor_config.json" {  // this one: blob present, pointer missing
                try fm.createSymbolicLink(atPath: snap.appendingPathComponent(name).path, withDestinationPath: "../../blobs/\(etag)")
            }
        }
        // Offline: everything but the unlinked preprocessor config is there.
        let offline = try load(repo, hubOptions(offline: true))
        XCTAssertEqual(offline.featureExtractorConfig, CedFeatureExtractorConfig(model: offline.config), "derived, not read")
        XCTAssertTrue(offline.warnings.contains { $0.contains("preprocessor_config.json") }, "\(offline.warnings)")
        XCTAssertEqual(server.requests.count, 0)
        // Online: metadata only; the missing pointer is linked to the existing blob, nothing downloaded.
        let online = try load(repo, hubOptions())
        try assertLoadedMicro(online)
        XCTAssertEqual(online.featureExtractorConfig, try CedFeatureExtractorConfig.load(from: try Reference.model("micro/preprocessor_config.json")))
        XCTAssertTrue(server.requests.allSatisfy { $0.method == "HEAD" }, "\(server.requests.map { "\($0.method) \($0.path)" })")
        XCTAssertEqual(try fm.destinationOfSymbolicLink(atPath: snap.appendingPathComponent("preprocessor_config.json").path),
                       "../../blobs/\(MockHubServer.smallEtag(files["preprocessor_config.json"]!))")
    }

    func testFallsBackToPytorchModelBinAndRecordsMissingFiles() throws {
        let ckpt = try load("test/bin-only", hubOptions())
        XCTAssertEqual(ckpt.format, .torchZip)
        try assertLoadedMicro(ckpt)
        let noExist = cacheDir.appendingPathComponent("models--test--bin-only/.no_exist/\(Self.binCommit)")
        XCTAssertTrue(FileManager.default.fileExists(atPath: noExist.appendingPathComponent("model.safetensors").path))
        XCTAssertTrue(FileManager.default.fileExists(atPath: noExist.appendingPathComponent("preprocessor_config.json").path))
        server.clearRequests()
        try assertLoadedMicro(try load("test/bin-only", hubOptions(offline: true)))
        XCTAssertEqual(server.requests.count, 0)
    }

    func testRenamedRepositoryRedirect() throws {
        server.alias("old-owner/ced-micro", to: repo)
        try assertLoadedMicro(try load("old-owner/ced-micro", hubOptions()))
        XCTAssertTrue(server.requests.contains { $0.path.hasPrefix("/old-owner/ced-micro/resolve/main/") })
        XCTAssertTrue(server.requests.contains { $0.path.hasPrefix("/mispeech/ced-micro/resolve/main/") })
    }

    func testShortClearErrors() throws {
        XCTAssertThrowsError(try load("nobody/nothing", hubOptions())) { e in
            guard let e = e as? HubError else { return XCTFail("\(e)") }
            XCTAssertEqual(e.kind, .repositoryNotFound)
            XCTAssertTrue(e.description.contains("HF_TOKEN"), e.description)
            XCTAssertLessThan(e.description.count, 200, e.description)
        }
        XCTAssertThrowsError(try load("\(repo)@v9", hubOptions())) { e in
            XCTAssertEqual((e as? HubError)?.kind, .revisionNotFound, "\(e)")
        }
        XCTAssertThrowsError(try load(repo, hubOptions(endpoint: try deadEndpoint()))) { e in
            guard let e = e as? HubError else { return XCTFail("\(e)") }
            XCTAssertEqual(e.kind, .networkUnavailable)
            XCTAssertTrue(e.description.contains("cannot reach"), e.description)
            XCTAssertLessThan(e.description.count, 250, e.description)
        }
    }

    func testEnvironment() {
        func opts(_ env: [String: String]) -> HubOptions { HubOptions(environment: env) }
        XCTAssertEqual(opts(["HOME": "/h"]).cacheDirectory.path, "/h/.cache/huggingface/hub")
        XCTAssertEqual(opts(["HOME": "/h", "XDG_CACHE_HOME": "/x"]).cacheDirectory.path, "/x/huggingface/hub")
        XCTAssertEqual(opts(["HOME": "/h", "HF_HOME": "/hf"]).cacheDirectory.path, "/hf/hub")
        XCTAssertEqual(opts(["HOME": "/h", "HF_HOME": "/hf", "HF_HUB_CACHE": "~/c"]).cacheDirectory.path, "/h/c")
        XCTAssertEqual(opts([:]).endpoint, "https://huggingface.co")
        XCTAssertEqual(opts(["HF_ENDPOINT": "https://hf-mirror.com/"]).endpoint, "https://hf-mirror.com")
        XCTAssertTrue(opts(["HF_HUB_OFFLINE": "true"]).offline)
        XCTAssertTrue(opts(["HF_HUB_OFFLINE": "1"]).offline)
        XCTAssertFalse(opts(["HF_HUB_OFFLINE": "0"]).offline)
        XCTAssertEqual(opts(["HF_TOKEN": "t"]).token, "t")
        XCTAssertNil(opts(["HOME": "/nonexistent"]).token)
    }

    /// The token file `huggingface-cli login` writes is used when HF_TOKEN is not set.
    func testTokenFile() throws {
        func opts(_ env: [String: String]) -> HubOptions { HubOptions(environment: env) }
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("ced-token-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let hfHome = root.appendingPathComponent("hf")
        try FileManager.default.createDirectory(at: hfHome, withIntermediateDirectories: true)
        try "hf_from_file\n".write(to: hfHome.appendingPathComponent("token"), atomically: true, encoding: .utf8)
        XCTAssertEqual(opts(["HOME": "/nonexistent", "HF_HOME": hfHome.path]).token, "hf_from_file")
        XCTAssertEqual(opts(["HOME": "/nonexistent", "HF_HOME": hfHome.path, "HF_TOKEN": "env"]).token, "env")
        let xdg = root.appendingPathComponent("xdg/huggingface")
        try FileManager.default.createDirectory(at: xdg, withIntermediateDirectories: true)
        try "  hf_xdg  ".write(to: xdg.appendingPathComponent("token"), atomically: true, encoding: .utf8)
        XCTAssertEqual(opts(["HOME": "/nonexistent", "XDG_CACHE_HOME": root.appendingPathComponent("xdg").path]).token, "hf_xdg")
        let custom = root.appendingPathComponent("custom-token")
        try "hf_custom".write(to: custom, atomically: true, encoding: .utf8)
        XCTAssertEqual(opts(["HOME": "/nonexistent", "HF_HOME": hfHome.path, "HF_TOKEN_PATH": custom.path]).token, "hf_custom")
        try "\n".write(to: custom, atomically: true, encoding: .utf8)
        XCTAssertNil(opts(["HOME": "/nonexistent", "HF_TOKEN_PATH": custom.path]).token)
        XCTAssertEqual(HubCache.folderName(repo: "mispeech/ced-base"), "models--mispeech--ced-base")
    }
}
