import Foundation
import XCTest
@testable import CED

/// The PyTorch zip checkpoint reader and its restricted unpickler.
final class TorchCheckpointTests: XCTestCase {
    static var fixtures: URL { Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appendingPathComponent("torch") }

    /// Asserts that two state dicts have the same names and bit-identical values.
    static func assertIdentical(_ a: StateDict, _ b: StateDict, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.names, b.names, "tensor names differ", file: file, line: line)
        for name in a.names {
            guard let x = a[name], let y = b[name] else { continue }
            XCTAssertEqual(x.shape, y.shape, "shape of \(name)", file: file, line: line)
            XCTAssertEqual(x.scalars.map(\.bitPattern), y.scalars.map(\.bitPattern), "values of \(name)", file: file, line: line)
        }
    }

    func expectError(_ kind: CheckpointError.Kind, _ path: String, contains text: String? = nil,
                     file: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try TorchCheckpoint.load(path: path)
            XCTFail("loaded a checkpoint that should be refused", file: file, line: line)
        } catch let e as CheckpointError {
            XCTAssertEqual(e.kind, kind, "\(e)", file: file, line: line)
            if let text { XCTAssertTrue(e.description.contains(text), "message lacks '\(text)': \(e)", file: file, line: line) }
        } catch {
            XCTFail("unexpected error type: \(error)", file: file, line: line)
        }
    }

    // MARK: Shared reference checkpoints

    func testMicroPtMapsOntoSafetensorsBitForBit() throws {
        let ref = try SafeTensorsFile(contentsOf: try Reference.model("micro/model.safetensors")).stateDict()
        let pt = try TorchCheckpoint.load(path: try Reference.model("micro.pt").path)
        XCTAssertNil(pt.wrapperKey)
        XCTAssertTrue(pt.stateDict.names.contains("init_bn.1.weight"))
        let mapped = CedWeightLayout.sanitize(pt.stateDict)
        XCTAssertEqual(mapped.layout, .original)
        XCTAssertEqual(mapped.frontEnd.window?.shape, [512])
        XCTAssertEqual(mapped.frontEnd.melFilterbank?.shape, [257, 64])
        Self.assertIdentical(mapped.weights, ref)
    }

    func testWrappedTrainingCheckpoint() throws {
        let ref = try SafeTensorsFile(contentsOf: try Reference.model("micro/model.safetensors")).stateDict()
        let pt = try TorchCheckpoint.load(path: try Reference.model("micro-wrapped.pt").path)
        XCTAssertEqual(pt.wrapperKey, "model")
        XCTAssertEqual(pt.otherKeys, ["config", "epoch"])
        Self.assertIdentical(CedWeightLayout.sanitize(pt.stateDict).weights, ref)
    }

    func testHuggingFacePytorchModelBin() throws {
        let ref = try SafeTensorsFile(contentsOf: try Reference.model("micro/model.safetensors")).stateDict()
        let bin = try TorchCheckpoint.load(path: try Reference.model("micro-bin/pytorch_model.bin").path)
        let mapped = CedWeightLayout.sanitize(bin.stateDict)
        XCTAssertEqual(mapped.layout, .huggingFace)
        Self.assertIdentical(mapped.weights, ref)
    }

    // MARK: Generated fixtures (make_fixtures.py): dtypes, strides, protocols, deflate, byte order

    func checkDtypesFixture(_ name: String) throws {
        struct Expected: Decodable { var shape: [Int]; var values: [Double] }
        let expected = try JSONDecoder().decode([String: Expected].self,
                                                from: Data(contentsOf: Self.fixtures.appendingPathComponent("dtypes.expected.json")))
        let ckpt = try TorchCheckpoint.load(path: Self.fixtures.appendingPathComponent(name).path)
        XCTAssertEqual(ckpt.stateDict.names, expected.keys.sorted(), name)
        for (key, e) in expected {
            let t = try XCTUnwrap(ckpt.stateDict[key], "\(name): \(key)")
            XCTAssertEqual(t.shape, e.shape, "\(name): shape of \(key)")
            XCTAssertEqual(t.scalars, e.values.map { Float($0) }, "\(name): values of \(key)")
        }
    }

    func testDtypesStridesAndOffsets() throws { try checkDtypesFixture("dtypes.pt") }

    func testProtocol5WrappedUnderOtherFolderName() throws {
        try checkDtypesFixture("dtypes-proto5.pt")
        let c = try TorchCheckpoint.load(path: Self.fixtures.appendingPathComponent("dtypes-proto5.pt").path)
        XCTAssertEqual(c.wrapperKey, "state_dict")
        XCTAssertEqual(c.otherKeys, ["epoch", "lr", "note", "tags"])
    }

    func testDeflatedEntries() throws { try checkDtypesFixture("dtypes-deflated.pt") }

    func testBigEndianByteOrder() throws { try checkDtypesFixture("dtypes-bigendian.pt") }

    // MARK: Hostile pickles: refused, nothing executed

    private func marker() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("ced-pwned-\(UUID().uuidString)").path
    }

    func testRefusesOsSystem() throws {
        let m = marker()
        var p = PickleBuilder()
        p.global("os", "system"); p.mark(); p.string("touch \(m)"); p.tuple(); p.reduce(); p.stop()
        expectError(.forbiddenGlobal("os.system"), try writeTemp(TestZip.torch(pickle: p.bytes)), contains: "os.system")
        XCTAssertFalse(FileManager.default.fileExists(atPath: m), "the payload ran")
    }

    func testRefusesBuiltinsEvalViaStackGlobal() throws {
        let m = marker()
        var p = PickleBuilder(protocol: 4)
        p.string("builtins"); p.string("eval"); p.raw([0x93]) // STACK_GLOBAL
        p.mark(); p.string("open('\(m)', 'w')"); p.tuple(); p.reduce(); p.stop()
        expectError(.forbiddenGlobal("builtins.eval"), try writeTemp(TestZip.torch(pickle: p.bytes)), contains: "builtins.eval")
        XCTAssertFalse(FileManager.default.fileExists(atPath: m))
    }

    func testRefusesNonAllowlistedGlobalsEvenWhenNeverCalled() throws {
        for (module, name) in [("numpy.core.multiarray", "_reconstruct"), ("__main__", "Evil"), ("torch", "load"),
                               ("subprocess", "Popen"), ("torch.nn.modules.linear", "Linear")] {
            var p = PickleBuilder()
            p.orderedDict { b in b.string("x"); b.global(module, name) }
            p.stop()
            expectError(.forbiddenGlobal("\(module).\(name)"), try writeTemp(TestZip.torch(pickle: p.bytes)), contains: "\(module).\(name)")
        }
    }

    func testRefusesInstAndObjOpcodes() throws {
        var p = PickleBuilder(protocol: 0)
        p.mark(); p.string("id"); p.raw(Array("ios\nsystem\n".utf8)); p.stop()
        expectError(.forbiddenGlobal("os.system"), try writeTemp(TestZip.torch(pickle: p.bytes)))
        var q = PickleBuilder()
        q.global("collections", "OrderedDict"); q.mark(); q.op("o"); q.stop()
        expectError(.malformedPickle, try writeTemp(TestZip.torch(pickle: q.bytes)))
    }

    func testRefusesCallingAStorageTypeOrReducingAString() throws {
        var p = PickleBuilder()
        p.global("torch", "FloatStorage"); p.emptyTuple(); p.reduce(); p.stop()
        expectError(.malformedPickle, try writeTemp(TestZip.torch(pickle: p.bytes)), contains: "persistent id")
        var q = PickleBuilder()
        q.string("os.system"); q.emptyTuple(); q.reduce(); q.stop()
        expectError(.malformedPickle, try writeTemp(TestZip.torch(pickle: q.bytes)))
    }

    func testStridesOutsideStorageAreRefused() throws {
        var p = PickleBuilder()
        p.orderedDict { b in
            b.string("w"); b.tensor(key: "0", numel: 4, offset: 0, size: [3, 3], stride: [3, 1])
        }
        p.stop()
        let path = try writeTemp(TestZip.torch(pickle: p.bytes, storages: ["0": [UInt8](repeating: 0, count: 16)]))
        expectError(.tensorOutOfBounds, path, contains: "reach element 8")

        var q = PickleBuilder()
        q.orderedDict { b in b.string("w"); b.tensor(key: "0", numel: 4, offset: 4, size: [1], stride: [1]) }
        q.stop()
        expectError(.tensorOutOfBounds, try writeTemp(TestZip.torch(pickle: q.bytes, storages: ["0": [UInt8](repeating: 0, count: 16)])))

        var r = PickleBuilder()
        r.orderedDict { b in b.string("w"); b.tensor(key: "0", numel: 4, offset: 0, size: [Int(Int32.max), Int(Int32.max)], stride: [Int(Int32.max), 1]) }
        r.stop()
        expectError(.tensorOutOfBounds, try writeTemp(TestZip.torch(pickle: r.bytes, storages: ["0": [UInt8](repeating: 0, count: 16)])))
    }

    func testStorageSizeMismatchIsRefused() throws {
        var p = PickleBuilder()
        p.orderedDict { b in b.string("w"); b.tensor(key: "0", numel: 8, offset: 0, size: [2], stride: [1]) }
        p.stop()
        expectError(.corruptArchive, try writeTemp(TestZip.torch(pickle: p.bytes, storages: ["0": [UInt8](repeating: 0, count: 16)])),
                    contains: "holds 16 bytes")
    }

    func testMissingStorageRecord() throws {
        let src = try ZipArchive(file: MappedFile(path: try Reference.model("micro.pt").path))
        let entries = try src.entries.filter { $0.name != "micro/data/3" }.map { e in
            (e.name, try src.read(e).array)
        }
        let path = try writeTemp(TestZip.make(entries))
        do {
            _ = try TorchCheckpoint.load(path: path)
            XCTFail("loaded without the storage record")
        } catch let e as CheckpointError {
            XCTAssertEqual(e.kind, .missingStorage("3"))
            XCTAssertEqual(e.tensor, "front_end.0.mel_scale.fb")
            XCTAssertTrue(e.description.contains("micro/data/3"), e.description)
        }
    }

    func testZip64ArchiveAndArchiveComment() throws {
        let src = try ZipArchive(file: MappedFile(path: try Reference.model("micro.pt").path))
        let entries = try src.entries.map { ($0.name, try src.read($0).array) }
        let ref = try TorchCheckpoint.load(path: try Reference.model("micro.pt").path).stateDict
        let zip64 = try TorchCheckpoint.load(path: try writeTemp(TestZip.make(entries, zip64: true))).stateDict
        Self.assertIdentical(zip64, ref)
        // An archive comment after the end record (its length field covers it).
        var commented = TestZip.make(entries)
        commented[commented.count - 2] = 5
        commented += Array("hello".utf8)
        Self.assertIdentical(try TorchCheckpoint.load(path: try writeTemp(commented)).stateDict, ref)
    }

    func testTruncatedArchives() throws {
        let bytes = Array(try Data(contentsOf: try Reference.model("micro.pt")))
        for cut in [0, 10, 100, bytes.count / 2, bytes.count - 100, bytes.count - 1] {
            let path = try writeTemp(Array(bytes[0..<cut]))
            do {
                _ = try TorchCheckpoint.load(path: path)
                XCTFail("loaded a checkpoint truncated to \(cut) bytes")
            } catch let e as CheckpointError {
                XCTAssertTrue([.corruptArchive, .unrecognizedFormat].contains(e.kind), "\(cut): \(e)")
                if cut >= 100 { XCTAssertTrue(e.description.contains("truncated"), e.description) }
            }
        }
    }

    func testCorruptDataFailsCRC() throws {
        var bytes = Array(try Data(contentsOf: try Reference.model("micro.pt")))
        let archive = try ZipArchive(file: MappedFile(data: bytes, name: "micro.pt"))
        let entry = try XCTUnwrap(archive.entry("micro/data/9"))
        bytes[entry.dataOffset + 17] ^= 0x40
        expectError(.corruptArchive, try writeTemp(bytes), contains: "CRC-32")
    }

    func testLegacyFormatGivesClearError() throws {
        // torch.save before 1.6: a pickle stream starting with the magic number 0x1950a86a20f9469cfc6c.
        var legacy: [UInt8] = [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e]
        legacy += [UInt8](repeating: 0, count: 64)
        expectError(.legacyTorchFormat, try writeTemp(legacy), contains: "re-save")
        XCTAssertEqual(CheckpointFileFormat.detect(head: legacy), .torchLegacy)
    }

    func testUnknownFormat() throws {
        expectError(.unrecognizedFormat, try writeTemp(Array("hello, this is not a checkpoint".utf8)))
    }

    func testMalformedPicklesNeverCrash() throws {
        // Deep nesting, a container mutated after nesting, a missing STOP, a memo miss.
        var deep = PickleBuilder()
        for _ in 0..<500 { deep.op("]") }
        for _ in 0..<499 { deep.op("a") }
        deep.stop()
        expectError(.malformedPickle, try writeTemp(TestZip.torch(pickle: deep.bytes)), contains: "nest deeper")

        var cyc = PickleBuilder()
        cyc.op("]"); cyc.op("]"); cyc.raw([UInt8(ascii: "q"), 0]); cyc.op("a") // [ [] ] with the inner list memoised
        cyc.raw([UInt8(ascii: "h"), 0]); cyc.int(1); cyc.op("a")            // then mutate the inner list
        cyc.stop()
        expectError(.malformedPickle, try writeTemp(TestZip.torch(pickle: cyc.bytes)))

        var unterminated = PickleBuilder()
        unterminated.orderedDict { _ in }
        expectError(.malformedPickle, try writeTemp(TestZip.torch(pickle: unterminated.bytes)), contains: "STOP")

        var memo = PickleBuilder()
        memo.raw([UInt8(ascii: "h"), 7]); memo.stop()
        expectError(.malformedPickle, try writeTemp(TestZip.torch(pickle: memo.bytes)), contains: "memo")

        var huge = PickleBuilder()
        huge.raw([0x8d] + [UInt8](repeating: 0xff, count: 7) + [0x7f]); huge.stop() // BINUNICODE8 of 2^63 bytes
        expectError(.malformedPickle, try writeTemp(TestZip.torch(pickle: huge.bytes)))
    }

    func testRandomCorruptionOfThePickleNeverCrashes() throws {
        let src = try ZipArchive(file: MappedFile(path: try Reference.model("micro.pt").path))
        let pkl = try src.read(try XCTUnwrap(src.entry("micro/data.pkl"))).array
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<300 {
            var p = pkl
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                p[Int.random(in: 0..<p.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            if Bool.random(using: &rng) { p = Array(p.prefix(Int.random(in: 0..<p.count, using: &rng))) }
            do {
                _ = try Unpickler.load(p.withUnsafeBytes { UnsafeRawBufferPointer($0) })
            } catch is UnpicklerFailure {
                // refused: fine
            }
        }
    }
}

/// The raw DEFLATE decoder against zlib's output for each block type.
final class InflateTests: XCTestCase {
    func stream(_ name: String) throws -> [UInt8] {
        Array(try Data(contentsOf: TorchCheckpointTests.fixtures.appendingPathComponent(name)))
    }

    func inflate(_ input: [UInt8], size: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: size)
        try input.withUnsafeBytes { i in
            try out.withUnsafeMutableBytes { o in try Inflate.decode(i, into: o.baseAddress!, outputSize: size) }
        }
        return out
    }

    func testStoredFixedAndDynamicBlocks() throws {
        let payload = try stream("inflate.payload.bin")
        for kind in ["stored", "fixed", "dynamic"] {
            XCTAssertEqual(try inflate(try stream("inflate.\(kind).deflate"), size: payload.count), payload, kind)
        }
    }

    func testTruncatedOrCorruptStreamsAreErrors() throws {
        let payload = try stream("inflate.payload.bin")
        let dynamic = try stream("inflate.dynamic.deflate")
        XCTAssertThrowsError(try inflate(Array(dynamic.prefix(dynamic.count / 2)), size: payload.count))
        XCTAssertThrowsError(try inflate(dynamic, size: payload.count - 1), "more output than declared")
        XCTAssertThrowsError(try inflate(dynamic, size: payload.count + 1), "less output than declared")
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            var d = dynamic
            d[Int.random(in: 0..<d.count, using: &rng)] ^= UInt8.random(in: 1...255, using: &rng)
            _ = try? inflate(d, size: payload.count)  // must not crash
        }
    }
}
