import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The `huggingface_hub` cache layout, so files cached by Python are reused and the
/// other way round:
///
/// ```
/// <cache>/models--owner--name/
///     blobs/<etag>                       file contents (etag = sha256 for LFS files, git sha1 otherwise)
///     blobs/<etag>.incomplete            a download in progress (resumed from its size)
///     refs/<revision>                    the commit a branch or tag pointed to
///     snapshots/<commit>/<file>          symlink → ../../blobs/<etag>
///     .no_exist/<commit>/<file>          empty: the file does not exist at that commit
/// <cache>/.locks/models--owner--name/<etag>.lock
/// ```
public struct HubCache: Sendable {
    public let root: URL

    public init(root: URL) { self.root = root }

    /// `models--owner--name`.
    public static func folderName(repo: String) -> String {
        "models--" + repo.split(separator: "/").joined(separator: "--")
    }

    public func repoFolder(_ repo: String) -> URL { root.appendingPathComponent(Self.folderName(repo: repo)) }
    func blob(_ repo: String, etag: String) -> URL { repoFolder(repo).appendingPathComponent("blobs/\(etag)") }
    func pointer(_ repo: String, commit: String, file: String) -> URL {
        repoFolder(repo).appendingPathComponent("snapshots/\(commit)/\(file)")
    }
    func ref(_ repo: String, revision: String) -> URL { repoFolder(repo).appendingPathComponent("refs/\(revision)") }
    func noExist(_ repo: String, commit: String, file: String) -> URL {
        repoFolder(repo).appendingPathComponent(".no_exist/\(commit)/\(file)")
    }
    func lock(_ repo: String, etag: String) -> URL {
        root.appendingPathComponent(".locks/\(Self.folderName(repo: repo))/\(etag).lock")
    }

    /// The commit `revision` names in the cache: itself when it is a commit hash, else
    /// the content of `refs/<revision>`.
    public func commit(repo: String, revision: String) -> String? {
        if HubClient.isCommitHash(revision) { return revision }
        guard let data = FileManager.default.contents(atPath: ref(repo, revision: revision).path),
              let s = String(data: data, encoding: .utf8)?.trimmingCharacters(in: .whitespacesAndNewlines),
              HubClient.isCommitHash(s) else { return nil }
        return s
    }

    public enum Lookup: Equatable, Sendable {
        /// The cached file (the snapshot path; it may be a symlink into `blobs`).
        case found(URL, commit: String)
        /// The cache records that the file does not exist at that commit.
        case knownMissing(commit: String)
        case notCached
    }

    /// What the cache knows about `file` at `revision`, without any network access.
    public func lookup(repo: String, file: String, revision: String) -> Lookup {
        guard let commit = commit(repo: repo, revision: revision) else { return .notCached }
        let p = pointer(repo, commit: commit, file: file)
        // `fileExists` follows the symlink: a dangling pointer (blob deleted) is not a hit.
        if FileManager.default.fileExists(atPath: p.path) { return .found(p, commit: commit) }
        if FileManager.default.fileExists(atPath: noExist(repo, commit: commit, file: file).path) {
            return .knownMissing(commit: commit)
        }
        return .notCached
    }

    // MARK: Writing (all atomic)

    func makeDirectory(_ url: URL, repo: String) throws {
        do {
            try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        } catch {
            throw HubError(.cache, repo: repo, reason: "cannot create cache directory \(url.path) (\(error.localizedDescription))")
        }
    }

    /// Writes `refs/<revision>` when it differs.
    func writeRef(repo: String, revision: String, commit: String) throws {
        guard revision != commit else { return }
        let url = ref(repo, revision: revision)
        if let d = FileManager.default.contents(atPath: url.path), String(decoding: d, as: UTF8.self) == commit { return }
        try makeDirectory(url.deletingLastPathComponent(), repo: repo)
        do {
            try Data(commit.utf8).write(to: url, options: .atomic)
        } catch {
            throw HubError(.cache, repo: repo, reason: "cannot write \(url.path) (\(error.localizedDescription))")
        }
    }

    /// Records that `file` does not exist at `commit` (as `huggingface_hub` does).
    func writeNoExist(repo: String, commit: String, file: String) {
        let url = noExist(repo, commit: commit, file: file)
        try? FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: url.path, contents: Data())
    }

    /// Points `snapshots/<commit>/<file>` at `blobs/<etag>` with a relative symlink,
    /// replacing any existing entry atomically (symlink to a temporary name, rename).
    func link(repo: String, commit: String, file: String, etag: String) throws -> URL {
        let p = pointer(repo, commit: commit, file: file)
        try makeDirectory(p.deletingLastPathComponent(), repo: repo)
        let depth = file.split(separator: "/").count - 1
        let target = String(repeating: "../", count: depth + 2) + "blobs/" + etag
        let tmp = p.deletingLastPathComponent().appendingPathComponent(".\(p.lastPathComponent).\(UUID().uuidString).tmp")
        guard symlink(target, tmp.path) == 0 else {
            throw HubError(.cache, repo: repo, file: file, reason: "cannot create symlink \(tmp.path) (\(String(cString: strerror(errno))))")
        }
        guard rename(tmp.path, p.path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(tmp.path)
            throw HubError(.cache, repo: repo, file: file, reason: "cannot create \(p.path) (\(reason))")
        }
        return p
    }
}
