import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Read-only bytes of a whole file, memory-mapped (or owned, for in-memory archives).
/// The mapping lives as long as the object; slices handed out keep it alive through
/// `ByteSlice.owner`.
final class MappedFile: @unchecked Sendable {
    let path: String
    let bytes: UnsafeRawBufferPointer
    private let mapped: Bool

    init(path: String) throws {
        self.path = path
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw CheckpointError(.notFound, file: path, reason: "no such file")
        }
        if isDir.boolValue {
            throw CheckpointError(.unrecognizedFormat, file: path, reason: "is a directory, not a checkpoint file")
        }
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw CheckpointError(.notFound, file: path, reason: "cannot open (\(String(cString: strerror(errno))))")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw CheckpointError(.notFound, file: path, reason: "cannot stat (\(String(cString: strerror(errno))))")
        }
        let size = Int(st.st_size)
        if size == 0 {
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            mapped = false
            return
        }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw CheckpointError(.notFound, file: path, reason: "cannot map (\(String(cString: strerror(errno))))")
        }
        bytes = UnsafeRawBufferPointer(start: p, count: size)
        mapped = true
    }

    /// An in-memory copy of `data`, labelled `name` in errors.
    init(data: [UInt8], name: String) {
        path = name
        let p = UnsafeMutableRawBufferPointer.allocate(byteCount: max(data.count, 1), alignment: 64)
        data.withUnsafeBytes { src in
            if let base = src.baseAddress { p.baseAddress!.copyMemory(from: base, byteCount: src.count) }
        }
        bytes = UnsafeRawBufferPointer(start: p.baseAddress, count: data.count)
        mapped = false
    }

    deinit {
        if mapped {
            munmap(UnsafeMutableRawPointer(mutating: bytes.baseAddress!), bytes.count)
        } else if let base = bytes.baseAddress {
            UnsafeMutableRawPointer(mutating: base).deallocate()
        }
    }
}

/// Bytes kept alive by `owner` (a mapped file or an owned buffer). Use the pointer only
/// while the slice itself is alive (`withBytes`), never after it is released.
struct ByteSlice: @unchecked Sendable {
    let owner: AnyObject
    let bytes: UnsafeRawBufferPointer

    var count: Int { bytes.count }

    func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withExtendedLifetime(owner) { try body(bytes) }
    }

    /// A copy of the bytes.
    var array: [UInt8] { withBytes { Array($0) } }
}

/// A heap buffer that owns inflated bytes.
final class OwnedBytes: @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer
    let count: Int
    init(capacity: Int) {
        pointer = UnsafeMutableRawPointer.allocate(byteCount: max(capacity, 1), alignment: 64)
        count = capacity
    }
    deinit { pointer.deallocate() }
    var slice: ByteSlice { ByteSlice(owner: self, bytes: UnsafeRawBufferPointer(start: pointer, count: count)) }
}
