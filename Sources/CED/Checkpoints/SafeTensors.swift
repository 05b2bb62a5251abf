import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Element types a safetensors header can name.
public enum SafeTensorsDType: String, Sendable, CaseIterable {
    case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16"
    case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8", u8 = "U8", bool = "BOOL"

    public var byteSize: Int {
        switch self {
        case .f64, .i64: return 8
        case .f32, .i32: return 4
        case .f16, .bf16, .i16: return 2
        case .i8, .u8, .bool: return 1
        }
    }
}

/// A safetensors file, memory-mapped and validated when opened.
///
/// Opening checks the whole header before any tensor is touched: the 8-byte header
/// length lies inside the file, the header is a JSON object, every tensor has a known
/// dtype, a non-negative shape, a byte range inside the data area whose length equals
/// `dtype size × element count`, and no two tensors' byte ranges overlap. A malformed or
/// hostile file therefore gives a `SafeTensorsError`, never a crash or an out-of-bounds
/// read. Tensor values are only copied (and converted to float32) on request.
public final class SafeTensorsFile: @unchecked Sendable {
    public struct TensorInfo: Sendable, Equatable {
        public var name: String
        public var dtype: SafeTensorsDType
        public var shape: [Int]
        /// Byte range relative to the start of the data area (after the header).
        public var dataOffsets: Range<Int>
    }

    /// The file path (for messages).
    public let path: String
    /// Tensors in file order (ascending offset).
    public let tensors: [TensorInfo]
    /// The optional `__metadata__` string map.
    public let metadata: [String: String]

    private let byName: [String: Int]
    private let mapping: UnsafeRawBufferPointer
    private let dataStart: Int

    /// Upper bound on the JSON header, as in the reference implementation (100 MB).
    public static let maxHeaderSize = 100_000_000

    public convenience init(contentsOf url: URL) throws {
        try self.init(path: url.path)
    }

    public init(path: String) throws {
        self.path = path
        func fail(_ reason: String, tensor: String? = nil, offset: Int? = nil) -> SafeTensorsError {
            SafeTensorsError(file: path, tensor: tensor, offset: offset, reason: reason)
        }
        let map = try Self.mapFile(path)
        var ok = false
        defer { if !ok { Self.unmap(map) } }

        let fileSize = map.count
        guard fileSize >= 8 else {
            throw fail("file is \(fileSize) bytes, too short for the 8-byte header length", offset: 0)
        }
        let headerLength = UInt64(littleEndian: map.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        guard headerLength <= UInt64(Self.maxHeaderSize) else {
            throw fail("header length \(headerLength) exceeds the \(Self.maxHeaderSize)-byte limit", offset: 0)
        }
        guard headerLength <= UInt64(fileSize - 8) else {
            throw fail("header length \(headerLength) runs past the end of the \(fileSize)-byte file", offset: 0)
        }
        let n = Int(headerLength)
        guard n >= 2 else { throw fail("header of \(n) bytes cannot hold a JSON object", offset: 8) }
        let headerData = Data(UnsafeRawBufferPointer(rebasing: map[8 ..< 8 + n]))
        guard headerData.first == UInt8(ascii: "{") else {
            throw fail("header does not start with a JSON object ('{')", offset: 8)
        }
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: headerData, options: [])
        } catch {
            throw fail("header is not valid JSON (\(error.localizedDescription))", offset: 8)
        }
        guard let object = json as? [String: Any] else {
            throw fail("header is not a JSON object", offset: 8)
        }

        let dataSize = fileSize - 8 - n
        var infos: [TensorInfo] = []
        var metadata: [String: String] = [:]
        for (name, value) in object {
            if name == "__metadata__" {
                guard let m = value as? [String: Any] else { throw fail("__metadata__ is not an object") }
                for (k, v) in m {
                    guard let s = v as? String else { throw fail("__metadata__ value for '\(k)' is not a string") }
                    metadata[k] = s
                }
                continue
            }
            guard let entry = value as? [String: Any] else { throw fail("entry is not an object", tensor: name) }
            guard let dtypeName = entry["dtype"] as? String else { throw fail("missing or non-string 'dtype'", tensor: name) }
            guard let dtype = SafeTensorsDType(rawValue: dtypeName) else {
                throw fail("unsupported dtype '\(dtypeName)'", tensor: name)
            }
            guard let shapeAny = entry["shape"] as? [Any] else { throw fail("missing or non-array 'shape'", tensor: name) }
            var shape: [Int] = []
            var elements = 1
            for d in shapeAny {
                guard let dim = Self.exactInt(d), dim >= 0 else {
                    throw fail("shape \(shapeAny) has an entry that is not a non-negative integer", tensor: name)
                }
                shape.append(dim)
                let (p, overflow) = elements.multipliedReportingOverflow(by: dim)
                guard !overflow else { throw fail("shape \(shape) overflows", tensor: name) }
                elements = p
            }
            guard let offs = entry["data_offsets"] as? [Any], offs.count == 2,
                  let begin = Self.exactInt(offs[0]), let end = Self.exactInt(offs[1]) else {
                throw fail("missing or malformed 'data_offsets' (need [begin, end])", tensor: name)
            }
            guard begin >= 0, begin <= end else {
                throw fail("data_offsets [\(begin), \(end)] are not an ascending range", tensor: name)
            }
            guard end <= dataSize else {
                throw fail("data_offsets [\(begin), \(end)] end past the \(dataSize)-byte data area", tensor: name, offset: 8 + n + begin)
            }
            let (bytes, overflow) = elements.multipliedReportingOverflow(by: dtype.byteSize)
            guard !overflow, bytes == end - begin else {
                throw fail("holds \(end - begin) bytes but \(dtype.rawValue) \(shape) needs \(overflow ? "more than Int.max" : String(bytes))", tensor: name, offset: 8 + n + begin)
            }
            infos.append(TensorInfo(name: name, dtype: dtype, shape: shape, dataOffsets: begin ..< end))
        }
        infos.sort { ($0.dataOffsets.lowerBound, $0.dataOffsets.upperBound, $0.name) < ($1.dataOffsets.lowerBound, $1.dataOffsets.upperBound, $1.name) }
        for (a, b) in zip(infos, infos.dropFirst()) where b.dataOffsets.lowerBound < a.dataOffsets.upperBound {
            // Empty tensors occupy no bytes and cannot overlap anything.
            if a.dataOffsets.isEmpty || b.dataOffsets.isEmpty { continue }
            throw fail("byte range \(b.dataOffsets) overlaps tensor '\(a.name)' (\(a.dataOffsets))", tensor: b.name, offset: 8 + n + b.dataOffsets.lowerBound)
        }

        self.tensors = infos
        self.metadata = metadata
        self.byName = Dictionary(infos.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { a, _ in a })
        self.mapping = map
        self.dataStart = 8 + n
        ok = true
    }

    deinit { Self.unmap(mapping) }

    public var names: [String] { tensors.map(\.name) }

    public func info(_ name: String) -> TensorInfo? { byName[name].map { tensors[$0] } }

    /// The tensor's values converted to float32 (integers and bools by value).
    public func tensor(_ name: String) throws -> Tensor {
        guard let info = info(name) else {
            throw SafeTensorsError(file: path, tensor: name, reason: "no such tensor")
        }
        let count = info.shape.reduce(1, *)
        let base = mapping.baseAddress! + dataStart + info.dataOffsets.lowerBound
        let raw = UnsafeRawBufferPointer(start: base, count: info.dataOffsets.count)
        // Uninitialised storage: every element is written below (one pass, not two).
        let out = [Float](unsafeUninitializedCapacity: count) { dst, initialized in
            switch info.dtype {
            case .f32:
                if count > 0 { memcpy(dst.baseAddress!, base, count * 4) }
                if UInt32(littleEndian: 1) != 1 {
                    for i in 0..<count { dst[i] = Float(bitPattern: UInt32(littleEndian: dst[i].bitPattern)) }
                }
            case .f64:
                for i in 0..<count { dst[i] = Float(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))) }
            case .f16:
                for i in 0..<count { dst[i] = halfToFloat(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
            case .bf16:
                for i in 0..<count { dst[i] = Float(bitPattern: UInt32(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) << 16) }
            case .i64:
                for i in 0..<count { dst[i] = Float(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))) }
            case .i32:
                for i in 0..<count { dst[i] = Float(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self))) }
            case .i16:
                for i in 0..<count { dst[i] = Float(Int16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self))) }
            case .i8:
                for i in 0..<count { dst[i] = Float(Int8(bitPattern: raw[i])) }
            case .u8, .bool:
                for i in 0..<count { dst[i] = Float(raw[i]) }
            }
            initialized = count
        }
        release(base, info.dataOffsets.count)
        return Tensor(shape: info.shape, scalars: out)
    }

    /// Gives the pages of a tensor just read back to the system (file-backed, unmodified:
    /// a later read faults them in again from the page cache), so reading a whole
    /// checkpoint tensor by tensor keeps only one tensor's pages resident.
    private func release(_ base: UnsafeRawPointer, _ count: Int) {
        let page = Int(getpagesize())
        let start = Int(bitPattern: base) / page * page
        let end = (Int(bitPattern: base) + count + page - 1) / page * page
        guard count > 0, let p = UnsafeMutableRawPointer(bitPattern: start) else { return }
        _ = madvise(p, end - start, MADV_DONTNEED)
    }

    /// Every tensor, converted to float32, by name.
    public func stateDict() throws -> StateDict {
        var dict: [String: Tensor] = [:]
        for info in tensors { dict[info.name] = try tensor(info.name) }
        return StateDict(tensors: dict, source: path)
    }

    // MARK: Writing

    /// Writes tensors as a safetensors file: names sorted, header padded to 8 bytes,
    /// float32 data unless `dtypes` names another type for a tensor (`I64` for integer
    /// buffers such as BatchNorm's step counter, as PyTorch stores them). Written tensor by
    /// tensor into a temporary file that is renamed into place, so the file appears complete
    /// or not at all. Pass `metadata: ["format": "pt"]` for files `transformers` loads.
    public static func write(_ tensors: [String: Tensor], dtypes: [String: SafeTensorsDType] = [:],
                             metadata: [String: String]? = nil, to url: URL) throws {
        let names = tensors.keys.sorted()
        func fail(_ reason: String, tensor: String? = nil) -> SafeTensorsError {
            SafeTensorsError(file: url.path, tensor: tensor, reason: reason, writing: true)
        }
        var parts: [String] = []
        if let metadata, !metadata.isEmpty {
            let m = metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }.joined(separator: ",")
            parts.append("\"__metadata__\":{\(m)}")
        }
        var offset = 0
        for name in names {
            let t = tensors[name]!
            let dtype = dtypes[name] ?? .f32
            guard dtype == .f32 || dtype == .i64 else { throw fail("writing \(dtype.rawValue) is not supported (F32 or I64)", tensor: name) }
            let bytes = t.count * dtype.byteSize
            parts.append("\(jsonString(name)):{\"dtype\":\"\(dtype.rawValue)\",\"shape\":[\(t.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + bytes)]}")
            offset += bytes
        }
        var header = Array(("{" + parts.joined(separator: ",") + "}").utf8)
        while header.count % 8 != 0 { header.append(UInt8(ascii: " ")) }

        let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).\(getpid()).\(UUID().uuidString).tmp")
        guard FileManager.default.createFile(atPath: tmp.path, contents: nil),
              let handle = FileHandle(forWritingAtPath: tmp.path) else { throw fail("cannot create the file") }
        var done = false
        defer {
            try? handle.close()
            if !done { try? FileManager.default.removeItem(at: tmp) }
        }
        do {
            var head = Data()
            withUnsafeBytes(of: UInt64(header.count).littleEndian) { head.append(contentsOf: $0) }
            head.append(contentsOf: header)
            try handle.write(contentsOf: head)
            for name in names {
                let t = tensors[name]!
                var data = Data(capacity: t.count * 8)
                if dtypes[name] == .i64 {
                    for v in t.scalars {
                        guard let i = Int64(exactly: v) else { throw fail("value \(v) is not an integer", tensor: name) }
                        withUnsafeBytes(of: i.littleEndian) { data.append(contentsOf: $0) }
                    }
                } else {
                    t.scalars.withUnsafeBufferPointer { p in
                        if UInt32(littleEndian: 1) == 1 {
                            data.append(UnsafeBufferPointer(start: UnsafeRawPointer(p.baseAddress!).assumingMemoryBound(to: UInt8.self), count: p.count * 4))
                        } else {
                            for v in p { withUnsafeBytes(of: v.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
                        }
                    }
                }
                try handle.write(contentsOf: data)
            }
            try handle.synchronize()
            try handle.close()
            // rename(2) replaces an existing file atomically.
            guard rename(tmp.path, url.path) == 0 else {
                throw fail("cannot move the finished file into place (\(String(cString: strerror(errno))))")
            }
            done = true
        } catch let e as SafeTensorsError {
            throw e
        } catch {
            throw fail(error.localizedDescription)
        }
    }

    // MARK: Helpers

    private static func exactInt(_ v: Any) -> Int? {
        guard let n = v as? NSNumber else { return nil }
        // Reject booleans and fractional values; accept integers that fit.
        // JSON booleans arrive as NSNumber with objCType "c".
        if String(cString: n.objCType) == "c" { return nil }
        let d = n.doubleValue
        guard d.rounded() == d, abs(d) < 9.0e15 else { return nil }
        return n.intValue
    }

    private static func mapFile(_ path: String) throws -> UnsafeRawBufferPointer {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue {
            throw SafeTensorsError(file: path, reason: "is a directory, not a safetensors file")
        }
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw SafeTensorsError(file: path, reason: "cannot open (\(String(cString: strerror(errno))))")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw SafeTensorsError(file: path, reason: "cannot stat (\(String(cString: strerror(errno))))")
        }
        let size = Int(st.st_size)
        if size == 0 { return UnsafeRawBufferPointer(start: nil, count: 0) }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw SafeTensorsError(file: path, reason: "cannot map (\(String(cString: strerror(errno))))")
        }
        return UnsafeRawBufferPointer(start: p, count: size)
    }

    private static func unmap(_ map: UnsafeRawBufferPointer) {
        if let base = map.baseAddress, map.count > 0 { munmap(UnsafeMutableRawPointer(mutating: base), map.count) }
    }
}

private func jsonString(_ s: String) -> String {
    let data = try! JSONSerialization.data(withJSONObject: [s], options: [])
    let wrapped = String(decoding: data, as: UTF8.self)
    return String(wrapped.dropFirst().dropLast())
}

/// IEEE 754 half → single, including subnormals, infinities and NaN.
@inline(__always)
func halfToFloat(_ h: UInt16) -> Float {
    let sign = UInt32(h & 0x8000) << 16
    let exp = Int((h >> 10) & 0x1F)
    let mant = UInt32(h & 0x3FF)
    if exp == 0 {
        if mant == 0 { return Float(bitPattern: sign) }
        // Subnormal: value = mant · 2^-24.
        let v = Float(mant) * Float(bitPattern: 0x3380_0000)
        return sign != 0 ? -v : v
    }
    if exp == 31 { return Float(bitPattern: sign | 0x7F80_0000 | (mant << 13)) }
    return Float(bitPattern: sign | UInt32(exp + 112) << 23 | (mant << 13))
}
