import Foundation

/// One part of a job split over processes or machines: the inputs whose position (in a
/// sorted list every process computes alike) is `index` modulo `count`. `auto` reads the
/// scheduler's task index: a Slurm array (`SLURM_ARRAY_TASK_ID` with
/// `SLURM_ARRAY_TASK_COUNT`, or relative to `SLURM_ARRAY_TASK_MIN`..`MAX`) or a Kubernetes
/// Indexed Job (`JOB_COMPLETION_INDEX` with the count in `JOB_COMPLETIONS` or
/// `CED_SHARD_COUNT`). `ced tag --shard` and `ced distill logits|pack --shard` use it.
public struct CedShard: Sendable, Equatable, Hashable, Codable, CustomStringConvertible {
    public var index: Int
    public var count: Int

    /// The whole job (shard 0 of 1).
    public static let whole = CedShard(uncheckedIndex: 0, count: 1)

    public init(index: Int, count: Int) throws {
        guard count >= 1, index >= 0, index < count else {
            throw BulkJobError(.shard, reason: "shard \(index)/\(count): the index must lie in 0..<count and the count be at least 1")
        }
        self.index = index
        self.count = count
    }

    init(uncheckedIndex index: Int, count: Int) {
        self.index = index
        self.count = count
    }

    /// `i/n` or `auto` (see the type's documentation).
    public init(parsing text: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        func bad(_ why: String) -> BulkJobError { BulkJobError(.shard, reason: "--shard \(text): \(why)") }
        if text == "auto" {
            func int(_ name: String) -> Int? { environment[name].flatMap { Int($0.trimmingCharacters(in: .whitespaces)) } }
            if let id = int("SLURM_ARRAY_TASK_ID") {
                if let lo = int("SLURM_ARRAY_TASK_MIN"), let hi = int("SLURM_ARRAY_TASK_MAX") {
                    guard id >= lo, id <= hi else { throw bad("SLURM_ARRAY_TASK_ID \(id) lies outside SLURM_ARRAY_TASK_MIN..MAX (\(lo)..\(hi))") }
                    try self.init(index: id - lo, count: hi - lo + 1)
                    return
                }
                guard let n = int("SLURM_ARRAY_TASK_COUNT") else {
                    throw bad("SLURM_ARRAY_TASK_ID is set but neither SLURM_ARRAY_TASK_MIN/MAX nor SLURM_ARRAY_TASK_COUNT")
                }
                do { try self.init(index: id, count: n) } catch { throw bad("SLURM_ARRAY_TASK_ID \(id) is not below SLURM_ARRAY_TASK_COUNT \(n) (an array from 0?)") }
                return
            }
            if let id = int("JOB_COMPLETION_INDEX") {
                guard let n = int("JOB_COMPLETIONS") ?? int("CED_SHARD_COUNT") else {
                    throw bad("JOB_COMPLETION_INDEX is set; give the job's completions count in JOB_COMPLETIONS or CED_SHARD_COUNT")
                }
                do { try self.init(index: id, count: n) } catch { throw bad("JOB_COMPLETION_INDEX \(id) is not below the count \(n)") }
                return
            }
            throw bad("found neither a Slurm array (SLURM_ARRAY_TASK_ID) nor a Kubernetes Indexed Job (JOB_COMPLETION_INDEX)")
        }
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let i = Int(parts[0]), let n = Int(parts[1]) else { throw bad("expected i/n, e.g. 0/4, or auto") }
        guard n >= 1, i >= 0, i < n else { throw bad("the index must lie in 0..<\(n)") }
        self.init(uncheckedIndex: i, count: n)
    }

    /// Whether the input at `position` belongs to this shard.
    public func contains(position: Int) -> Bool { position % count == index }

    /// The elements of `items` (already in the order every process computes alike) at this
    /// shard's positions.
    public func select<C: Collection>(_ items: C) -> [C.Element] {
        items.enumerated().filter { contains(position: $0.offset) }.map(\.element)
    }

    public var description: String { "\(index)/\(count)" }
}

/// An append-only JSON Lines file of results, one line per input (keyed by the line's
/// `file` field), that a killed job started again resumes: `ced tag --output FILE.jsonl
/// --resume`.
///
/// - Each result is appended with one `write` on a descriptor opened with `O_APPEND`: a
///   line is in the file whole, or (after a crash in the middle of a write) as a last,
///   unterminated piece.
/// - Opening with `resume` reads the lines already there, keeps the longest prefix of
///   complete lines that are JSON objects with a `file` string, and cuts everything after
///   it (a torn last line, garbage after a machine crash): those inputs are done again, the
///   others are `done` and skipped, so every input ends up in the file exactly once.
/// - The file is locked (`flock`) while open: a second process writing to the same file is
///   refused (give each shard its own file).
public final class CedResultLog: @unchecked Sendable {
    public let url: URL
    /// Keys (`file` values) of the complete lines found when the log was opened.
    public private(set) var done: Set<String> = []
    /// Lines found, bytes cut (a torn or damaged tail) and keys seen more than once when opened.
    public private(set) var foundLines = 0, cutBytes = 0, duplicateKeys = 0
    private let fd: Int32
    private let lock = NSLock()

    /// Opens (creating it) the log at `url`. Without `resume` an existing non-empty file is
    /// refused, so that finished work is never overwritten by accident.
    public init(url: URL, resume: Bool, key: String = "file") throws {
        self.url = url
        let path = url.path
        func fail(_ why: String) -> BulkJobError { BulkJobError(.output, file: path, reason: why) }
        let dir = url.deletingLastPathComponent()
        if !FileManager.default.fileExists(atPath: dir.path) {
            do { try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true) } catch {
                throw fail("cannot create its folder (\(error.localizedDescription))")
            }
        }
        let fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw fail("cannot open for writing (\(String(cString: strerror(errno))))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw fail("another process is writing to this file; give each shard its own --output")
        }
        self.fd = fd
        var st = stat()
        fstat(fd, &st)
        let size = Int(st.st_size)
        if size > 0 && !resume {
            close(fd)
            throw fail("exists (\(size) bytes of earlier results); continue it with --resume, or remove it to start over")
        }
        guard size > 0 else { return }
        // Read what is there and keep the longest prefix of complete, readable lines.
        var data = [UInt8](repeating: 0, count: size)
        var got = 0
        while got < size {
            let n = data.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + got, size - got, off_t(got)) }
            if n <= 0 { close(fd); throw fail("cannot read the earlier results (\(String(cString: strerror(errno))))") }
            got += n
        }
        var keep = 0, start = 0
        while start < size, let nl = data[start...].firstIndex(of: 0x0A) {
            let line = data[start..<nl]
            guard let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any],
                  let name = object[key] as? String else { break }
            if !done.insert(name).inserted { duplicateKeys += 1 }
            foundLines += 1
            start = nl + 1
            keep = start
        }
        if keep < size {
            guard ftruncate(fd, off_t(keep)) == 0 else { close(fd); throw fail("cannot cut its damaged tail (\(String(cString: strerror(errno))))") }
            cutBytes = size - keep
        }
    }

    deinit { close(fd) }

    /// Whether `key` was done when the log was opened.
    public func isDone(_ key: String) -> Bool { done.contains(key) }

    /// Appends one line (a newline is added when missing) in one `write`.
    public func append(_ line: String) throws {
        var bytes = Array(line.utf8)
        if bytes.last != 0x0A { bytes.append(0x0A) }
        lock.lock(); defer { lock.unlock() }
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + written, bytes.count - written) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw BulkJobError(.output, file: url.path, reason: "cannot append a result (\(String(cString: strerror(errno))))") }
            written += n
        }
    }
}
