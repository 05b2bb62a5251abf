import Foundation

/// Safetensors files of raw integer and half-precision tensors (the logit store's shards and
/// audio packs: F16 values, U16 class indices, U32 seeds, I64 offsets, U8 bytes, I16 PCM),
/// written deterministically: a compact JSON header with sorted keys padded with spaces to
/// 8 bytes, data in the order given. Any safetensors reader loads them. Files are read by
/// offset (`PositionalFile`), never loaded or mapped whole, so a reader's memory does not
/// grow with the file.
enum RawSafeTensors {
    struct Entry {
        var dtype: String
        var shape: [Int]
        var bytes: Data
    }

    /// A tensor's place: its name, dtype, shape and byte count.
    struct Spec {
        var name: String
        var dtype: String
        var shape: [Int]
        var bytes: Int
    }

    /// The header bytes (length prefix included) of tensors laid out in the order of `specs`,
    /// padded with spaces to `minimumLength` (and to a multiple of 8), so that a writer can
    /// reserve room for a header whose numbers are known only at the end.
    static func header(_ specs: [Spec], metadata: [String: String], minimumLength: Int = 0) -> Data {
        var items: [(String, String)] = []
        if !metadata.isEmpty {
            let meta = metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }
            items.append(("__metadata__", "{\(meta.joined(separator: ","))}"))
        }
        var offset = 0
        for s in specs {
            items.append((s.name, "{\"data_offsets\":[\(offset),\(offset + s.bytes)],\"dtype\":\"\(s.dtype)\",\"shape\":[\(s.shape.map(String.init).joined(separator: ","))]}"))
            offset += s.bytes
        }
        items.sort { $0.0 < $1.0 }
        var json = Data(("{" + items.map { "\(jsonString($0.0)):\($0.1)" }.joined(separator: ",") + "}").utf8)
        while json.count < minimumLength || json.count % 8 != 0 { json.append(0x20) }
        var out = Data()
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        return out + json
    }

    static func write(_ entries: [(String, Entry)], metadata: [String: String], to url: URL) throws {
        var out = header(entries.map { Spec(name: $0.0, dtype: $0.1.dtype, shape: $0.1.shape, bytes: $0.1.bytes.count) }, metadata: metadata)
        for (_, e) in entries { out.append(e.bytes) }
        try out.write(to: url)
    }

    /// A safetensors file's header (metadata, tensors with absolute byte ranges), read by offset.
    struct File {
        let file: PositionalFile
        let metadata: [String: String]
        let tensors: [String: (dtype: String, shape: [Int], range: Range<Int>)]

        init(contentsOf url: URL) throws {
            func fail(_ why: String) -> DistillationError { DistillationError(.store, file: url.path, reason: why) }
            let file = try PositionalFile(url)
            guard file.size >= 8 else { throw fail("truncated (\(file.size) bytes)") }
            let n = Int(UInt64(littleEndian: try file.array(0..<8, as: UInt64.self)[0]))
            guard n > 0, n <= 1 << 30, 8 + n <= file.size,
                  let header = try? JSONSerialization.jsonObject(with: Data(try file.bytes(8 ..< 8 + n))) as? [String: Any] else {
                throw fail("the header is not valid safetensors JSON")
            }
            var metadata: [String: String] = [:]
            var tensors: [String: (String, [Int], Range<Int>)] = [:]
            for (name, value) in header {
                guard let v = value as? [String: Any] else { throw fail("entry '\(name)' is not an object") }
                if name == "__metadata__" {
                    for (k, x) in v { metadata[k] = x as? String }
                    continue
                }
                guard let dtype = v["dtype"] as? String, let shape = v["shape"] as? [Int], let offsets = v["data_offsets"] as? [Int],
                      offsets.count == 2, offsets[0] >= 0, offsets[0] <= offsets[1], 8 + n + offsets[1] <= file.size else {
                    throw fail("tensor '\(name)' has a malformed entry")
                }
                tensors[name] = (dtype, shape, (8 + n + offsets[0]) ..< (8 + n + offsets[1]))
            }
            self.file = file
            self.metadata = metadata
            self.tensors = tensors
        }

        /// The byte range of tensor `name`, checked against its dtype, element size and,
        /// when given, its shape.
        func range(_ name: String, _ dtype: String, size: Int, shape: [Int]? = nil) throws -> Range<Int> {
            guard let t = tensors[name], t.dtype == dtype else {
                throw DistillationError(.store, file: file.url.path, reason: "tensor '\(name)' (\(dtype)) is missing or has another type")
            }
            if let shape, t.shape != shape {
                throw DistillationError(.store, file: file.url.path, reason: "tensor '\(name)' has shape \(t.shape), expected \(shape)")
            }
            guard t.range.count == t.shape.reduce(1, *) * size else {
                throw DistillationError(.store, file: file.url.path, reason: "tensor '\(name)' has \(t.range.count) bytes for shape \(t.shape)")
            }
            return t.range
        }

        /// A whole tensor's values as `T` (little-endian), checked against its dtype.
        func values<T: FixedWidthInteger>(_ name: String, _ dtype: String, as: T.Type) throws -> [T] {
            try file.array(try range(name, dtype, size: MemoryLayout<T>.size), as: T.self)
        }
    }

    static func entry<T: FixedWidthInteger>(_ values: [T], dtype: String, shape: [Int]) -> Entry {
        Entry(dtype: dtype, shape: shape, bytes: littleEndianBytes(values))
    }

    static func littleEndianBytes<T: FixedWidthInteger>(_ values: [T]) -> Data {
        var d = Data(count: values.count * MemoryLayout<T>.size)
        d.withUnsafeMutableBytes { raw in
            for (i, v) in values.enumerated() { raw.storeBytes(of: v.littleEndian, toByteOffset: i * MemoryLayout<T>.size, as: T.self) }
        }
        return d
    }

    static func jsonString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case let c where c.value < 0x20: out += String(format: "\\u%04x", c.value)
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }
}

/// A file read and written by offset (`pread`/`pwrite`): its pages are never mapped into the
/// process, so reading a 7 GB store touches only the bytes asked for (the kernel's page
/// cache, which is not the process's memory, holds the rest).
final class PositionalFile: @unchecked Sendable {
    let url: URL
    let fd: Int32
    private(set) var size: Int

    /// Read only; or `writable`: created empty (`truncate`) or opened as it is.
    init(_ url: URL, writable: Bool = false, truncate: Bool = true) throws {
        self.url = url
        fd = open(url.path, (writable ? O_RDWR | O_CREAT | (truncate ? O_TRUNC : 0) : O_RDONLY) | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw DistillationError(.store, file: url.path, reason: "cannot open (\(String(cString: strerror(errno))))")
        }
        var st = stat()
        fstat(fd, &st)
        size = Int(st.st_size)
    }

    deinit { close(fd) }

    func read(into pointer: UnsafeMutableRawPointer, count: Int, at offset: Int) throws {
        var done = 0
        while done < count {
            let n = pread(fd, pointer + done, count - done, off_t(offset + done))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                throw DistillationError(.store, file: url.path, reason: n == 0 ? "truncated: \(count) bytes at \(offset) are past its end" : "cannot read (\(String(cString: strerror(errno))))")
            }
            done += n
        }
    }

    func bytes(_ range: Range<Int>) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: range.count)
        if range.count > 0 { try out.withUnsafeMutableBytes { try read(into: $0.baseAddress!, count: range.count, at: range.lowerBound) } }
        return out
    }

    /// Values of a little-endian integer array stored at `range`.
    func array<T: FixedWidthInteger>(_ range: Range<Int>, as: T.Type) throws -> [T] {
        let n = range.count / MemoryLayout<T>.size
        var out = [T](repeating: 0, count: n)
        if n > 0 { try out.withUnsafeMutableBytes { try read(into: $0.baseAddress!, count: n * MemoryLayout<T>.size, at: range.lowerBound) } }
        #if _endian(big)
        for i in out.indices { out[i] = T(littleEndian: out[i]) }
        #endif
        return out
    }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw DistillationError(.store, file: url.path, reason: "cannot write (\(String(cString: strerror(errno))))") }
            done += n
        }
        size = max(size, offset + bytes.count)
    }

    func write(_ data: Data, at offset: Int) throws { try data.withUnsafeBytes { try write($0, at: offset) } }

    func write<T: FixedWidthInteger>(_ values: [T], at offset: Int) throws {
        #if _endian(big)
        try write(RawSafeTensors.littleEndianBytes(values), at: offset)
        #else
        try values.withUnsafeBytes { try write($0, at: offset) }
        #endif
    }

    func truncate(to length: Int) throws {
        guard ftruncate(fd, off_t(length)) == 0 else {
            throw DistillationError(.store, file: url.path, reason: "cannot size the file (\(String(cString: strerror(errno))))")
        }
        size = length
    }

    func sync() { fsync(fd) }

    /// SHA-256 of the bytes in `range`, read a megabyte at a time.
    func sha256(_ range: Range<Int>) throws -> String {
        var h = SHA256Hasher()
        var at = range.lowerBound
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while at < range.upperBound {
            let n = min(buffer.count, range.upperBound - at)
            try buffer.withUnsafeMutableBytes { try read(into: $0.baseAddress!, count: n, at: at) }
            buffer.withUnsafeBytes { h.update(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            at += n
        }
        return h.finalizeHex()
    }

    /// Writes a safetensors header into the room reserved for it at the start (it must fill
    /// the room exactly), syncs, and renames the file onto `url`: it appears whole.
    func finish(header: Data, room: Int, as url: URL) throws {
        guard header.count == room else {
            throw DistillationError(.store, file: url.path, reason: "internal: the header (\(header.count) bytes) does not fill its room (\(room))")
        }
        try write(header, at: 0)
        sync()
        guard rename(self.url.path, url.path) == 0 else {
            throw DistillationError(.store, file: url.path, reason: "cannot put the file in place (\(String(cString: strerror(errno))))")
        }
    }
}
