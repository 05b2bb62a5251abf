import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An exclusive advisory lock on a file (`flock`), the same kind Python's `filelock`
/// takes on Unix, so this process, its threads (each lock opens its own descriptor)
/// and `huggingface_hub` in other processes exclude one another on
/// `.locks/models--owner--name/<etag>.lock`.
final class FileLock {
    private var fd: Int32

    /// Blocks until the lock is held.
    init(path: String) throws {
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw HubError(.cache, repo: "", reason: "cannot create lock file \(path) (\(String(cString: strerror(errno))))")
        }
        while flock(fd, LOCK_EX) != 0 {
            if errno == EINTR { continue }
            let reason = String(cString: strerror(errno))
            close(fd)
            throw HubError(.cache, repo: "", reason: "cannot lock \(path) (\(reason))")
        }
    }

    func unlock() {
        if fd >= 0 {
            flock(fd, LOCK_UN)
            close(fd)
            fd = -1
        }
    }

    deinit { unlock() }
}
