import Foundation
import XCTest
@testable import CED

/// Writes zip archives with stored entries (as torch.save does) and assembles pickle
/// byte streams opcode by opcode, for the hostile-input tests.
enum TestZip {
    /// A zip with the given entries, stored, with correct CRCs unless `badCRC` names one.
    /// With `zip64`, every size and offset goes through the zip64 extra field and the
    /// zip64 end-of-central-directory record (as torch.save does for files over 4 GB).
    static func make(_ entries: [(String, [UInt8])], badCRC: String? = nil, zip64: Bool = false) -> [UInt8] {
        var out: [UInt8] = []
        var central: [UInt8] = []
        func u16(_ v: Int, _ a: inout [UInt8]) { a += [UInt8(v & 0xff), UInt8((v >> 8) & 0xff)] }
        func u32(_ v: Int, _ a: inout [UInt8]) { for i in 0..<4 { a.append(UInt8((v >> (8 * i)) & 0xff)) } }
        func u64(_ v: Int, _ a: inout [UInt8]) { for i in 0..<8 { a.append(UInt8((v >> (8 * i)) & 0xff)) } }
        for (name, data) in entries {
            var crc = Int(data.withUnsafeBytes { CRC32.checksum($0) })
            if name == badCRC { crc ^= 0x1 }
            let offset = out.count
            let nameBytes = Array(name.utf8)
            u32(0x0403_4b50, &out); u16(20, &out); u16(0, &out); u16(0, &out); u16(0, &out); u16(0, &out)
            u32(crc, &out); u32(data.count, &out); u32(data.count, &out); u16(nameBytes.count, &out); u16(0, &out)
            out += nameBytes
            out += data
            let big = zip64 ? 0xffff_ffff : -1
            u32(0x0201_4b50, &central); u16(45, &central); u16(45, &central); u16(0, &central); u16(0, &central)
            u16(0, &central); u16(0, &central); u32(crc, &central)
            u32(zip64 ? big : data.count, &central); u32(zip64 ? big : data.count, &central)
            u16(nameBytes.count, &central); u16(zip64 ? 28 : 0, &central); u16(0, &central); u16(0, &central); u16(0, &central)
            u32(0, &central); u32(zip64 ? big : offset, &central)
            central += nameBytes
            if zip64 {
                u16(0x0001, &central); u16(24, &central)
                u64(data.count, &central); u64(data.count, &central); u64(offset, &central)
            }
        }
        let cdOffset = out.count
        out += central
        if zip64 {
            let recordOffset = out.count
            u32(0x0606_4b50, &out); u64(44, &out); u16(45, &out); u16(45, &out); u32(0, &out); u32(0, &out)
            u64(entries.count, &out); u64(entries.count, &out); u64(central.count, &out); u64(cdOffset, &out)
            u32(0x0706_4b50, &out); u32(0, &out); u64(recordOffset, &out); u32(1, &out)
            u32(0x0605_4b50, &out); u16(0, &out); u16(0, &out); u16(0xffff, &out); u16(0xffff, &out)
            u32(0xffff_ffff, &out); u32(0xffff_ffff, &out); u16(0, &out)
            return out
        }
        u32(0x0605_4b50, &out); u16(0, &out); u16(0, &out); u16(entries.count, &out); u16(entries.count, &out)
        u32(central.count, &out); u32(cdOffset, &out); u16(0, &out)
        return out
    }

    /// A torch.save-style archive: `<folder>/data.pkl`, `byteorder`, `data/<key>`.
    static func torch(pickle: [UInt8], storages: [String: [UInt8]] = [:], folder: String = "archive") -> [UInt8] {
        var entries: [(String, [UInt8])] = [("\(folder)/data.pkl", pickle), ("\(folder)/byteorder", Array("little".utf8))]
        for key in storages.keys.sorted() { entries.append(("\(folder)/data/\(key)", storages[key]!)) }
        return make(entries)
    }

}

extension XCTestCase {
    /// Writes `bytes` to a fresh temporary file, removed when the test ends.
    func writeTemp(_ bytes: [UInt8], name: String = "test.pt") throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ced-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent(name)
        try Data(bytes).write(to: url)
        return url.path
    }
}

/// Pickle opcodes, to spell hostile streams readably.
struct PickleBuilder {
    var bytes: [UInt8] = [0x80, 2]  // PROTO 2

    init(protocol p: UInt8 = 2) { bytes = [0x80, p] }

    mutating func op(_ c: Character) { bytes.append(c.asciiValue!) }
    mutating func raw(_ b: [UInt8]) { bytes += b }
    mutating func global(_ module: String, _ name: String) { op("c"); bytes += Array("\(module)\n\(name)\n".utf8) }
    mutating func string(_ s: String) {
        let u = Array(s.utf8)
        op("X")
        for i in 0..<4 { bytes.append(UInt8((u.count >> (8 * i)) & 0xff)) }
        bytes += u
    }
    mutating func int(_ v: Int) {
        if (0..<256).contains(v) { op("K"); bytes.append(UInt8(v)) } else {
            op("J"); for i in 0..<4 { bytes.append(UInt8((v >> (8 * i)) & 0xff)) }
        }
    }
    mutating func mark() { op("(") }
    mutating func tuple() { op("t") }
    mutating func emptyTuple() { op(")") }
    mutating func reduce() { op("R") }
    mutating func stop() { op(".") }
    mutating func ints(_ v: [Int]) { mark(); for x in v { int(x) }; tuple() }

    /// `_rebuild_tensor_v2(persistent(('storage', torch.<type>, key, 'cpu', numel)), offset, size, stride, False, OrderedDict())`.
    mutating func tensor(storageType: String = "FloatStorage", key: String, numel: Int, offset: Int, size: [Int], stride: [Int]) {
        global("torch._utils", "_rebuild_tensor_v2")
        mark()
        mark(); string("storage"); global("torch", storageType); string(key); string("cpu"); int(numel); tuple()
        op("Q")
        int(offset); ints(size); ints(stride)
        bytes.append(0x89)  // NEWFALSE
        global("collections", "OrderedDict"); emptyTuple(); reduce()
        tuple()
        reduce()
    }

    /// `OrderedDict()` followed by `MARK key value ... SETITEMS` built by `body`.
    mutating func orderedDict(_ body: (inout PickleBuilder) -> Void) {
        global("collections", "OrderedDict"); emptyTuple(); reduce()
        mark()
        body(&self)
        op("u")
    }
}
