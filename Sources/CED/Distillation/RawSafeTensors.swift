import Foundation

/// Safetensors files of raw integer and half-precision tensors (what the logit store
/// holds: F16 values, U16 class indices, U64 seeds, I64 item numbers), written
/// deterministically: names sorted, a compact JSON header with sorted keys padded with
/// spaces to 8 bytes, data in name order. Any safetensors reader loads them.
enum RawSafeTensors {
    struct Entry {
        var dtype: String
        var shape: [Int]
        var bytes: Data
    }

    static func write(_ entries: [String: Entry], metadata: [String: String], to url: URL) throws {
        var header: [String] = []
        let metaItems = metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }
        if !metaItems.isEmpty { header.append("\"__metadata__\":{\(metaItems.joined(separator: ","))}") }
        var offset = 0
        for name in entries.keys.sorted() {
            let e = entries[name]!
            header.append("\(jsonString(name)):{\"data_offsets\":[\(offset),\(offset + e.bytes.count)],\"dtype\":\"\(e.dtype)\",\"shape\":[\(e.shape.map(String.init).joined(separator: ","))]}")
            offset += e.bytes.count
        }
        var json = Data(("{" + header.joined(separator: ",") + "}").utf8)
        while json.count % 8 != 0 { json.append(0x20) }
        var out = Data()
        out.reserveCapacity(8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(json)
        for name in entries.keys.sorted() { out.append(entries[name]!.bytes) }
        try out.write(to: url)
    }

    struct File {
        let data: Data
        let metadata: [String: String]
        let tensors: [String: (dtype: String, shape: [Int], range: Range<Int>)]

        init(contentsOf url: URL) throws {
            func fail(_ why: String) -> DistillationError { DistillationError(.store, file: url.path, reason: why) }
            let data: Data
            do { data = try Data(contentsOf: url, options: .alwaysMapped) } catch {
                throw fail("cannot read (\(error.localizedDescription))")
            }
            guard data.count >= 8 else { throw fail("truncated (\(data.count) bytes)") }
            let n = data.prefix(8).withUnsafeBytes { Int(UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self))) }
            guard n > 0, 8 + n <= data.count,
                  let header = try? JSONSerialization.jsonObject(with: data.subdata(in: 8 ..< 8 + n)) as? [String: Any] else {
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
                      offsets.count == 2, offsets[0] <= offsets[1], 8 + n + offsets[1] <= data.count else {
                    throw fail("tensor '\(name)' has a malformed entry")
                }
                tensors[name] = (dtype, shape, (8 + n + offsets[0]) ..< (8 + n + offsets[1]))
            }
            self.data = data
            self.metadata = metadata
            self.tensors = tensors
        }

        /// A tensor's values as `T` (little-endian), checked against its dtype and shape.
        func values<T: FixedWidthInteger>(_ name: String, _ dtype: String, as: T.Type) throws -> [T] {
            guard let t = tensors[name], t.dtype == dtype else {
                throw DistillationError(.store, reason: "tensor '\(name)' (\(dtype)) is missing or has another type")
            }
            let count = t.shape.reduce(1, *)
            guard t.range.count == count * MemoryLayout<T>.size else {
                throw DistillationError(.store, reason: "tensor '\(name)' has \(t.range.count) bytes for shape \(t.shape)")
            }
            return data.subdata(in: t.range).withUnsafeBytes { raw in
                (0..<count).map { T(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * MemoryLayout<T>.size, as: T.self)) }
            }
        }
    }

    static func entry<T: FixedWidthInteger>(_ values: [T], dtype: String, shape: [Int]) -> Entry {
        var d = Data(capacity: values.count * MemoryLayout<T>.size)
        for v in values { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
        return Entry(dtype: dtype, shape: shape, bytes: d)
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
