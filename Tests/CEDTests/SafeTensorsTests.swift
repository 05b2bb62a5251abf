import XCTest
@testable import CED

final class SafeTensorsTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("ced-st-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    /// A file from a raw header string and data bytes (header length written as given
    /// unless overridden).
    func file(_ header: String, data: [UInt8], lengthOverride: UInt64? = nil, name: String = #function) throws -> URL {
        let h = Array(header.utf8)
        var bytes = [UInt8]()
        withUnsafeBytes(of: (lengthOverride ?? UInt64(h.count)).littleEndian) { bytes += $0 }
        bytes += h + data
        let url = dir.appendingPathComponent(name.filter { $0.isLetter } + ".safetensors")
        try Data(bytes).write(to: url)
        return url
    }

    func assertRejected(_ url: URL, _ text: String, tensor: String? = nil, line: UInt = #line) {
        XCTAssertThrowsError(try SafeTensorsFile(contentsOf: url), line: line) { error in
            guard let e = error as? SafeTensorsError else { return XCTFail("\(error)", line: line) }
            XCTAssertEqual(e.file, url.path, line: line)
            XCTAssertTrue(e.description.contains(text), "'\(e.description)' lacks '\(text)'", line: line)
            if let tensor { XCTAssertEqual(e.tensor, tensor, line: line) }
        }
    }

    func testReadsSharedModelAndGolden() throws {
        let g = try Reference.golden("micro")
        let mel = try g.tensor("snap_16k_mono_s16.wav/mel")
        XCTAssertEqual(mel.shape, [64, 101])
        let m = try SafeTensorsFile(contentsOf: try Reference.model("micro").appendingPathComponent("model.safetensors"))
        XCTAssertEqual(m.metadata["format"], "pt")
        XCTAssertEqual(m.info("encoder.init_bn.num_batches_tracked")?.dtype, .i64)
        XCTAssertEqual(m.info("encoder.patch_embed.proj.weight")?.shape, [64, 1, 16, 16])
        XCTAssertEqual(try m.stateDict().tensors.count, m.tensors.count)
    }

    func testConvertsEveryDtypeExactly() throws {
        // F16: 1.0, -2.0, 65504 (max), smallest subnormal 2^-24, inf; BF16: 1.0, -3.0;
        // I64: 42, -7; F64: 0.1; F32: pi.
        let f16: [UInt16] = [0x3C00, 0xC000, 0x7BFF, 0x0001, 0x7C00]
        let bf16: [UInt16] = [0x3F80, 0xC040]
        let i64: [Int64] = [42, -7]
        var data = [UInt8]()
        for v in f16 { withUnsafeBytes(of: v.littleEndian) { data += $0 } }
        for v in bf16 { withUnsafeBytes(of: v.littleEndian) { data += $0 } }
        for v in i64 { withUnsafeBytes(of: v.littleEndian) { data += $0 } }
        withUnsafeBytes(of: (0.1 as Double).bitPattern.littleEndian) { data += $0 }
        withUnsafeBytes(of: Float.pi.bitPattern.littleEndian) { data += $0 }
        let header = """
        {"h":{"dtype":"F16","shape":[5],"data_offsets":[0,10]},"b":{"dtype":"BF16","shape":[2],"data_offsets":[10,14]},\
        "i":{"dtype":"I64","shape":[2,1],"data_offsets":[14,30]},"d":{"dtype":"F64","shape":[],"data_offsets":[30,38]},\
        "f":{"dtype":"F32","shape":[1],"data_offsets":[38,42]},"e":{"dtype":"F32","shape":[0,3],"data_offsets":[42,42]}}
        """
        let st = try SafeTensorsFile(contentsOf: try file(header, data: data))
        XCTAssertEqual(try st.tensor("h").scalars, [1, -2, 65504, Float(pow(2.0, -24.0)), .infinity])
        XCTAssertEqual(try st.tensor("b").scalars, [1, -3])
        XCTAssertEqual(try st.tensor("i"), Tensor(shape: [2, 1], scalars: [42, -7]))
        XCTAssertEqual(try st.tensor("d"), Tensor(shape: [], scalars: [Float(0.1)]))
        XCTAssertEqual(try st.tensor("f").scalars, [.pi])
        XCTAssertEqual(try st.tensor("e").shape, [0, 3])
        XCTAssertThrowsError(try st.tensor("nope")) { XCTAssertTrue("\($0)".contains("no such tensor")) }
    }

    func testWriterRoundTrip() throws {
        let tensors = ["a.weight": Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, -6.5]),
                       "b \"quoted\"": Tensor(shape: [1], scalars: [.pi])]
        let url = dir.appendingPathComponent("rt.safetensors")
        try SafeTensorsFile.write(tensors, metadata: ["format": "pt"], to: url)
        let st = try SafeTensorsFile(contentsOf: url)
        XCTAssertEqual(st.metadata, ["format": "pt"])
        XCTAssertEqual(try st.stateDict().tensors, tensors)
        XCTAssertEqual(st.info("a.weight")?.dtype, .f32)

        // Integer buffers as I64; overwriting an existing file; no temporary left behind.
        var more = tensors
        more["bn.num_batches_tracked"] = Tensor(shape: [], scalars: [123456])
        try SafeTensorsFile.write(more, dtypes: ["bn.num_batches_tracked": .i64], to: url)
        let again = try SafeTensorsFile(contentsOf: url)
        XCTAssertEqual(again.info("bn.num_batches_tracked")?.dtype, .i64)
        XCTAssertEqual(try again.stateDict().tensors, more)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["rt.safetensors"])
        XCTAssertThrowsError(try SafeTensorsFile.write(["x": Tensor(shape: [1], scalars: [0.5])], dtypes: ["x": .i64], to: url)) {
            XCTAssertTrue("\($0)".contains("not an integer"), "\($0)")
        }
        XCTAssertEqual(try SafeTensorsFile(contentsOf: url).stateDict().tensors, more, "a failed write leaves the old file")
    }

    let one = "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}"

    func testHostileFilesAreRefused() throws {
        let eight = [UInt8](repeating: 0, count: 8)
        assertRejected(try file(one, data: Array(eight.prefix(5))), "end past the 5-byte data area", tensor: "t")
        assertRejected(try file(one, data: eight, lengthOverride: 1 << 20), "runs past the end")
        assertRejected(try file(one, data: eight, lengthOverride: UInt64.max), "exceeds")
        assertRejected(try file("{not json", data: []), "not valid JSON")
        assertRejected(try file("[1,2,3]", data: []), "JSON object")
        assertRejected(try file("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"u\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", data: eight), "overlaps")
        assertRejected(try file("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", data: eight), "ascending", tensor: "t")
        assertRejected(try file("{\"t\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", data: eight), "needs 12", tensor: "t")
        assertRejected(try file("{\"t\":{\"dtype\":\"F8_E4M3\",\"shape\":[8],\"data_offsets\":[0,8]}}", data: eight), "unsupported dtype 'F8_E4M3'")
        assertRejected(try file("{\"t\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", data: eight), "non-negative integer")
        assertRejected(try file("{\"t\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", data: eight), "non-negative integer")
        assertRejected(try file("{\"t\":{\"dtype\":\"F32\",\"shape\":[true],\"data_offsets\":[0,8]}}", data: eight), "non-negative integer")
        assertRejected(try file("{\"t\":{\"dtype\":\"F32\",\"shape\":[4000000000000000,4000000000000000],\"data_offsets\":[0,8]}}", data: eight), "overflows")
        assertRejected(try file("{\"t\":{\"dtype\":\"F32\",\"shape\":[2]}}", data: eight), "data_offsets")
        assertRejected(try file("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,\"8\"]}}", data: eight), "data_offsets")
        assertRejected(try file("{\"t\":{\"shape\":[2],\"data_offsets\":[0,8]}}", data: eight), "dtype")
        assertRejected(try file("{\"t\":[1]}", data: eight), "not an object")
        assertRejected(try file("{\"__metadata__\":{\"a\":1}}", data: []), "__metadata__")
        assertRejected(try file("{}", data: [], lengthOverride: 0), "cannot hold")
        // Too short for the length prefix, empty file, directory, missing file.
        let short = dir.appendingPathComponent("short.safetensors")
        try Data([1, 2, 3]).write(to: short)
        assertRejected(short, "too short")
        let empty = dir.appendingPathComponent("empty.safetensors")
        try Data().write(to: empty)
        assertRejected(empty, "too short")
        assertRejected(dir, "is a directory")
        assertRejected(dir.appendingPathComponent("missing.safetensors"), "cannot open")
    }

    /// Random corruptions of a valid file never crash: they load or throw.
    func testRandomCorruptionsNeverCrash() throws {
        let url = dir.appendingPathComponent("valid.safetensors")
        try SafeTensorsFile.write(["a": Tensor(shape: [3, 2], scalars: [1, 2, 3, 4, 5, 6]), "b": Tensor(shape: [4], scalars: [7, 8, 9, 10])], to: url)
        let valid = [UInt8](try Data(contentsOf: url))
        var seed: UInt64 = 0x9E3779B97F4A7C15
        func next() -> Int { seed = seed &* 6364136223846793005 &+ 1442695040888963407; return Int(seed >> 33) }
        let target = dir.appendingPathComponent("mutant.safetensors")
        var loaded = 0
        for _ in 0..<400 {
            var bytes = valid
            for _ in 0..<(1 + next() % 4) {
                switch next() % 3 {
                case 0: bytes[next() % bytes.count] = UInt8(truncatingIfNeeded: next())
                case 1: bytes.removeLast(min(bytes.count - 1, next() % 16))
                default: bytes[next() % min(bytes.count, 8 + 120)] = Array("[]{}\",:0123456789-".utf8)[next() % 18]
                }
            }
            try Data(bytes).write(to: target)
            if let st = try? SafeTensorsFile(contentsOf: target) {
                for name in st.names { _ = try? st.tensor(name) }
                loaded += 1
            }
        }
        XCTAssertLessThan(loaded, 400)
    }
}
