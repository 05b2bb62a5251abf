import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A forward reader over a file descriptor (a regular file or ffmpeg's stdout pipe), or over
/// bytes in memory (an upload), with a small read-ahead buffer, so that walking many small
/// chunk headers costs few system calls. Regular files and memory can also seek. Every
/// failure becomes an `AudioError` naming the file.
final class ByteReader {
    let fd: Int32
    let file: String
    /// True for regular files: `seek` works and `size` is known.
    let seekable: Bool
    /// File size in bytes for regular files.
    let size: Int64?
    private let ownsDescriptor: Bool
    /// The bytes read, when reading from memory (then `fd` is -1).
    private let memory: Data?
    private var memoryOffset = 0

    private var buffer: [UInt8]
    private var bufferStart = 0
    private var bufferEnd = 0
    /// Absolute offset of the next byte `read` returns.
    private(set) var position: Int64 = 0
    private var atEOF = false

    init(fd: Int32, file: String, seekable: Bool, size: Int64?, ownsDescriptor: Bool, bufferSize: Int = 1 << 16) {
        self.fd = fd
        self.file = file
        self.seekable = seekable
        self.size = size
        self.ownsDescriptor = ownsDescriptor
        self.buffer = [UInt8](repeating: 0, count: bufferSize)
        memory = nil
    }

    /// Reads `data` in memory (seekable, its size known).
    init(data: Data, file: String, bufferSize: Int = 1 << 16) {
        fd = -1
        self.file = file
        seekable = true
        size = Int64(data.count)
        ownsDescriptor = false
        buffer = [UInt8](repeating: 0, count: bufferSize)
        memory = data
    }

    deinit { close() }

    private var closed = false
    func close() {
        if !closed && ownsDescriptor { _ = systemClose(fd) }
        closed = true
    }

    /// Reads from the descriptor into `dst`, retrying on EINTR; 0 means end of file.
    private func rawRead(_ dst: UnsafeMutableRawPointer, _ count: Int) throws -> Int {
        if let memory {
            let n = min(count, memory.count - memoryOffset)
            guard n > 0 else { return 0 }
            memory.withUnsafeBytes { src in dst.copyMemory(from: src.baseAddress! + memoryOffset, byteCount: n) }
            memoryOffset += n
            return n
        }
        while true {
            let n = systemRead(fd, dst, count)
            if n >= 0 { return n }
            let e = errno
            if e == EINTR { continue }
            throw AudioError(file: file, kind: .unreadable,
                             reason: "read failed: \(String(cString: strerror(e)))", offset: position)
        }
    }

    private func refill() throws {
        if atEOF { return }
        if bufferStart == bufferEnd { bufferStart = 0; bufferEnd = 0 }
        if bufferEnd == buffer.count {
            // Compact so the free space is at the end.
            let live = bufferEnd - bufferStart
            buffer.withUnsafeMutableBytes { p in
                p.baseAddress!.copyMemory(from: p.baseAddress! + bufferStart, byteCount: live)
            }
            bufferStart = 0; bufferEnd = live
        }
        let n = try buffer.withUnsafeMutableBytes { p in
            try rawRead(p.baseAddress! + bufferEnd, p.count - bufferEnd)
        }
        if n == 0 { atEOF = true }
        bufferEnd += n
    }

    /// Up to `count` bytes (fewer only at end of file).
    func read(_ count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        let n = try out.withUnsafeMutableBytes { try read(into: $0) }
        if n < count { out.removeLast(count - n) }
        return out
    }

    /// Fills `dst` as far as the data goes; returns the byte count (short only at end of file).
    func read(into dst: UnsafeMutableRawBufferPointer) throws -> Int {
        var filled = 0
        let want = dst.count
        // Serve from the buffer first.
        let buffered = min(bufferEnd - bufferStart, want)
        if buffered > 0 {
            buffer.withUnsafeBytes { p in
                dst.baseAddress!.copyMemory(from: p.baseAddress! + bufferStart, byteCount: buffered)
            }
            bufferStart += buffered
            filled = buffered
        }
        // Large reads go straight to the destination.
        while filled < want {
            if atEOF { break }
            if want - filled >= buffer.count / 2 {
                let n = try rawRead(dst.baseAddress! + filled, want - filled)
                if n == 0 { atEOF = true; break }
                filled += n
            } else {
                try refill()
                let n = min(bufferEnd - bufferStart, want - filled)
                if n == 0 { break }
                buffer.withUnsafeBytes { p in
                    (dst.baseAddress! + filled).copyMemory(from: p.baseAddress! + bufferStart, byteCount: n)
                }
                bufferStart += n
                filled += n
            }
        }
        position += Int64(filled)
        return filled
    }

    /// Skips `count` bytes forward; returns false when the end of file came first.
    func skip(_ count: Int64) throws -> Bool {
        precondition(count >= 0)
        let buffered = Int64(bufferEnd - bufferStart)
        if count <= buffered {
            bufferStart += Int(count)
            position += count
            return true
        }
        if seekable, let size {
            let target = position + count
            if target > size { try seek(to: size); return false }
            try seek(to: target)
            return true
        }
        var remaining = count
        while remaining > 0 {
            if bufferStart == bufferEnd {
                try refill()
                if bufferStart == bufferEnd { return false }
            }
            let n = min(Int64(bufferEnd - bufferStart), remaining)
            bufferStart += Int(n)
            position += n
            remaining -= n
        }
        return true
    }

    /// Moves to an absolute offset (regular files only).
    func seek(to offset: Int64) throws {
        precondition(seekable)
        // Stay within the buffer when possible.
        let bufferBase = position - Int64(bufferStart)
        if offset >= bufferBase && offset <= bufferBase + Int64(bufferEnd) {
            bufferStart = Int(offset - bufferBase)
            position = offset
            return
        }
        if memory != nil {
            memoryOffset = Int(min(offset, size!))
        } else if systemSeek(fd, off_t(offset), SEEK_SET) < 0 {
            throw AudioError(file: file, kind: .unreadable,
                             reason: "seek failed: \(String(cString: strerror(errno)))", offset: offset)
        }
        bufferStart = 0; bufferEnd = 0; atEOF = false
        position = offset
    }
}

// The C library calls, named so they do not clash with methods of the same name.
@inline(__always) private func systemRead(_ fd: Int32, _ p: UnsafeMutableRawPointer, _ n: Int) -> Int {
    read(fd, p, n)
}
@inline(__always) private func systemClose(_ fd: Int32) -> Int32 { close(fd) }
@inline(__always) private func systemSeek(_ fd: Int32, _ o: off_t, _ w: Int32) -> off_t { lseek(fd, o, w) }

/// Opens a path for reading after checking that it is an existing regular file.
func openRegularFile(_ path: String) throws -> ByteReader {
    var st = stat()
    if stat(path, &st) != 0 {
        let e = errno
        if e == ENOENT {
            throw AudioError(file: path, kind: .fileNotFound, reason: "no such file")
        }
        throw AudioError(file: path, kind: .unreadable, reason: String(cString: strerror(e)))
    }
    let type = st.st_mode & S_IFMT
    if type == S_IFDIR {
        throw AudioError(file: path, kind: .notARegularFile, reason: "is a directory, not an audio file")
    }
    if type != S_IFREG {
        throw AudioError(file: path, kind: .notARegularFile,
                         reason: "is not a regular file (FIFO, device or socket)")
    }
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    if fd < 0 {
        throw AudioError(file: path, kind: .unreadable, reason: String(cString: strerror(errno)))
    }
    return ByteReader(fd: fd, file: path, seekable: true, size: Int64(st.st_size), ownsDescriptor: true)
}
