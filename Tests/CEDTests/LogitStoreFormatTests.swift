import Foundation
import XCTest
@testable import CED

/// The logit store's documented format written without teachers, read by offset, across
/// shards and versions; the default length of a distillation run; upstream's shared masks.
final class LogitStoreFormatTests: XCTestCase {
    var tmp: URL!

    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("ced-store-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    func metadata(epochs: Int, topk: Int, classes: Int, shards: Int) -> LogitStore.Metadata {
        LogitStore.Metadata(teachers: [.init(source: "test", weights: "0", embedDim: 64, depth: 2, numHeads: 2, pooling: .mean)],
                            classes: (0..<classes).map { "c\($0)" }, augmentation: .init(CedAugmentation()), topk: topk,
                            chunkLength: 1, epochs: epochs, shards: shards)
    }

    /// Items of `files` files (1–3 chunks each) with views drawn from `rng`, in store order.
    func items(files: Int, epochs: Int, topk: Int, classes: Int, rng: inout TrainingRandom)
        -> [(LogitStore.Item, [UInt32], [Int], [Float])] {
        var out: [(LogitStore.Item, [UInt32], [Int], [Float])] = []
        for f in 0..<files {
            let hash = String(repeating: String(format: "%02x", f % 256), count: 32)
            for c in 0..<(1 + f % 3) {
                let seeds = (0..<epochs).map { _ in UInt32(truncatingIfNeeded: rng.next()) }
                var cls: [Int] = [], p: [Float] = []
                for _ in 0..<epochs {
                    var order = Array(0..<classes)
                    rng.shuffle(&order)
                    cls += order.prefix(topk)
                    p += (0..<topk).map { Float(Float16(Float(topk - $0) / Float(topk + 1))) }
                }
                out.append((LogitStore.Item(path: String(format: "dir é/f%03d.wav", f), sha256: hash, start: c * 100, end: c * 100 + 100),
                            seeds, cls, p))
            }
        }
        return out
    }

    func write(_ rows: [(LogitStore.Item, [UInt32], [Int], [Float])], shards n: Int, epochs: Int, topk: Int, classes: Int,
               to dir: URL) throws -> LogitStore {
        let store = try LogitStore.create(at: dir, metadata: metadata(epochs: epochs, topk: topk, classes: classes, shards: n))
        let paths = Array(Set(rows.map(\.0.path))).sorted()
        for i in 0..<n {
            let mine = Set(paths.enumerated().filter { $0.offset % n == i }.map(\.element))
            let part = rows.filter { mine.contains($0.0.path) }
            let w = try LogitStore.ShardWriter(store: store, shard: i, items: part.count)
            for r in part { try w.append(r.0, seeds: r.1, classes: r.2, probabilities: r.3, audioBytes: r.0.start == 0 ? 1000 : 0) }
            try w.finish()
        }
        return store
    }

    func testStoreWrittenWithoutTeachersReadsBackInStoreOrderWhateverTheShards() throws {
        var rng = TrainingRandom(seed: 3)
        let (e, k, c) = (5, 4, 9)
        let rows = items(files: 23, epochs: e, topk: k, classes: c, rng: &rng)
        let one = try write(rows, shards: 1, epochs: e, topk: k, classes: c, to: tmp.appendingPathComponent("one"))
        let four = try write(rows, shards: 4, epochs: e, topk: k, classes: c, to: tmp.appendingPathComponent("four"))
        for store in [one, four] {
            XCTAssertTrue(store.isComplete)
            let r = try store.reader()
            XCTAssertEqual(r.count, rows.count)
            XCTAssertEqual(r.audioBytes, 23 * 1000)
            for (g, row) in rows.enumerated() {
                XCTAssertEqual(try r.item(g), row.0)
                XCTAssertEqual(r.samples(g), row.0.start ..< row.0.end)
                for epoch in [0, e - 1] {
                    let v = try r.view(g, epoch: epoch)
                    XCTAssertEqual(v.seed, row.1[epoch])
                    XCTAssertEqual(v.classes.map(Int.init), Array(row.2[epoch * k ..< (epoch + 1) * k]))
                    XCTAssertEqual(v.topk.map(\.1), Array(row.3[epoch * k ..< (epoch + 1) * k]))
                }
            }
        }
        // The digest: the documented SHA-256 over the logical content, computed here from the rows.
        var h = SHA256Hasher()
        for row in rows {
            var item = SHA256Hasher()
            var b = Array("\(row.0.path)\n\(row.0.sha256)\n\(row.0.start)\n\(row.0.end)\n".utf8)
            for epoch in 0..<e {
                withUnsafeBytes(of: row.1[epoch].littleEndian) { b += $0 }
                for j in 0..<k {
                    withUnsafeBytes(of: UInt16(row.2[epoch * k + j]).littleEndian) { b += $0 }
                    withUnsafeBytes(of: Float16(row.3[epoch * k + j]).bitPattern.littleEndian) { b += $0 }
                }
            }
            b.withUnsafeBytes { item.update($0) }
            item.finalize().withUnsafeBytes { h.update($0) }
        }
        let expected = h.finalizeHex()
        XCTAssertEqual(try one.digest(), expected)
        XCTAssertEqual(try four.digest(), expected, "sharding changes neither the order nor the digest")
        // A missing shard: the store says so, the reader reads the others.
        try FileManager.default.removeItem(at: four.shardURL(2))
        XCTAssertEqual(four.missingShards, [2])
        XCTAssertFalse(four.isComplete)
        let paths = Array(Set(rows.map(\.0.path))).sorted()
        let left = rows.filter { paths.firstIndex(of: $0.0.path)! % 4 != 2 }.map(\.0)
        let partial = try four.reader()
        XCTAssertEqual(try (0..<partial.count).map { try partial.item($0) }, left, "the other shards, still in store order")
        // Appending out of store order, or classes outside the store's, is refused.
        let bad = try LogitStore.ShardWriter(store: one, shard: 0, items: 2)
        try bad.append(rows[1].0, seeds: rows[1].1, classes: rows[1].2, probabilities: rows[1].3)
        XCTAssertThrowsError(try bad.append(rows[0].0, seeds: rows[0].1, classes: rows[0].2, probabilities: rows[0].3))
        XCTAssertThrowsError(try bad.append(rows[2].0, seeds: rows[2].1, classes: rows[2].2.map { $0 + c }, probabilities: rows[2].3))
    }

    func testShardFileIsTheDocumentedSafetensors() throws {
        var rng = TrainingRandom(seed: 5)
        let (e, k, c) = (3, 2, 4)
        let rows = items(files: 4, epochs: e, topk: k, classes: c, rng: &rng)
        let store = try write(rows, shards: 1, epochs: e, topk: k, classes: c, to: tmp)
        // Parsed here by hand from the file's bytes, as any safetensors reader would.
        let bytes = try Data(contentsOf: store.shardURL(0))
        let n = Int(bytes.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        XCTAssertEqual(n % 8, 0)
        let header = try XCTUnwrap(JSONSerialization.jsonObject(with: bytes.subdata(in: 8 ..< 8 + n)) as? [String: Any])
        func tensor(_ name: String) throws -> (String, [Int], Data) {
            let t = try XCTUnwrap(header[name] as? [String: Any], name)
            let o = try XCTUnwrap(t["data_offsets"] as? [Int])
            return (t["dtype"] as! String, t["shape"] as! [Int], bytes.subdata(in: 8 + n + o[0] ..< 8 + n + o[1]))
        }
        let m = rows.count
        let (sd, ss, seeds) = try tensor("seeds")
        XCTAssertEqual(sd, "U32"); XCTAssertEqual(ss, [e, m])
        let (vd, vs, values) = try tensor("values")
        XCTAssertEqual(vd, "F16"); XCTAssertEqual(vs, [e, m, k])
        let (id, ish, indices) = try tensor("indices")
        XCTAssertEqual(id, "U16"); XCTAssertEqual(ish, [e, m, k])
        for (j, row) in rows.enumerated() {
            for epoch in 0..<e {
                XCTAssertEqual(seeds.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 4 * (epoch * m + j), as: UInt32.self) }, row.1[epoch], "epoch-major")
                for t in 0..<k {
                    let o = 2 * ((epoch * m + j) * k + t)
                    XCTAssertEqual(Int(indices.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: o, as: UInt16.self) }), row.2[epoch * k + t])
                    XCTAssertEqual(Float(Float16(bitPattern: values.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: o, as: UInt16.self) })), row.3[epoch * k + t])
                }
            }
        }
        let (_, _, offsets) = try tensor("item_path_offsets")
        let (_, _, paths) = try tensor("item_path")
        let o = offsets.withUnsafeBytes { raw in (0...m).map { Int(raw.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self)) } }
        XCTAssertEqual((0..<m).map { String(decoding: paths.subdata(in: o[$0] ..< o[$0 + 1]), as: UTF8.self) }, rows.map(\.0.path))
        let (_, shaShape, sha) = try tensor("item_sha256")
        XCTAssertEqual(shaShape, [m, 32])
        XCTAssertEqual(sha.prefix(32).map { String(format: "%02x", $0) }.joined(), rows[0].0.sha256)
        let meta = try XCTUnwrap(header["__metadata__"] as? [String: String])
        XCTAssertEqual(meta["format"], "ced-logit-store 2")
        XCTAssertEqual(meta["shard"], "0/1")
    }

    func testVersionOneStoresAreStillRead() throws {
        // A version-1 shard: item-major tensors and the item index as JSON in the metadata.
        var rng = TrainingRandom(seed: 9)
        let (e, k, c) = (2, 3, 5)
        let rows = items(files: 3, epochs: e, topk: k, classes: c, rng: &rng)
        var m = metadata(epochs: e, topk: k, classes: c, shards: 1)
        m.version = 1
        m.augmentation.maskValues = nil
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        try m.encoded().write(to: tmp.appendingPathComponent("store.json"))
        let itemsJSON = "[" + rows.map { "[\(RawSafeTensors.jsonString($0.0.path)),\"\($0.0.sha256)\",\($0.0.start),\($0.0.end)]" }.joined(separator: ",") + "]"
        try RawSafeTensors.write([
            ("indices", RawSafeTensors.entry(rows.flatMap { $0.2.map { UInt16($0) } }, dtype: "U16", shape: [rows.count, e, k])),
            ("seeds", RawSafeTensors.entry(rows.flatMap(\.1), dtype: "U32", shape: [rows.count, e])),
            ("values", RawSafeTensors.entry(rows.flatMap { $0.3.map { Float16($0).bitPattern } }, dtype: "F16", shape: [rows.count, e, k])),
        ], metadata: ["format": "ced-logit-store 1", "items": itemsJSON, "audio_bytes": "77", "shard": "0/1"],
           to: tmp.appendingPathComponent(LogitStore.shardName(0, of: 1)))
        let store = try LogitStore(directory: tmp)
        XCTAssertFalse(store.metadata.cedAugmentation.sharedMaskValues, "stores from before mask_values drew the masks independently")
        let r = try store.reader()
        XCTAssertEqual(r.count, rows.count)
        XCTAssertEqual(r.audioBytes, 77)
        for (g, row) in rows.enumerated() {
            XCTAssertEqual(try r.item(g), row.0)
            XCTAssertEqual(try r.view(g, epoch: 1).classes.map(Int.init), Array(row.2[k ..< 2 * k]))
        }
        // The same content written as version 2 has the same digest.
        let v2 = try write(rows, shards: 1, epochs: e, topk: k, classes: c, to: tmp.appendingPathComponent("v2"))
        XCTAssertEqual(try store.digest(), try v2.digest())
    }

    func testTheDefaultRunIsSizedInStepsForSmallStoresAndInEpochsForLargeOnes() throws {
        var o = DistillationOptions()
        XCTAssertNil(o.epochs)
        XCTAssertEqual(o.epochs(stepsPerEpoch: 40), 75, "600 items in batches of 15: 3000 steps")
        XCTAssertEqual(o.epochs(stepsPerEpoch: 1), 3000)
        XCTAssertEqual(o.epochs(stepsPerEpoch: 150), 20, "3000 steps come within 20 epochs")
        XCTAssertEqual(o.epochs(stepsPerEpoch: 62_500), 20, "AudioSet (2 M items, batch 32): 20 epochs, not more")
        o.steps = 1000
        XCTAssertEqual(o.epochs(stepsPerEpoch: 40), 25)
        o.steps = nil
        o.epochs = 7
        XCTAssertEqual(o.epochs(stepsPerEpoch: 40), 7)
    }

    func testSharedMaskValuesAsUpstream() throws {
        let shared = CedAugmentation(timeMask: 40, freqMask: 12, sharedMaskValues: true)
        let independent = CedAugmentation(timeMask: 40, freqMask: 12)
        for seed in UInt64(0)..<50 {
            let a = shared.draw(seed: seed), b = independent.draw(seed: seed)
            XCTAssertEqual(a.freqValue, a.timeValue)
            XCTAssertEqual(a.freqStart, a.timeStart)
            XCTAssertEqual(a.timeValue, b.timeValue, "the time mask and the shift draw the same numbers either way")
            XCTAssertEqual(a.shiftFraction, b.shiftFraction)
            // Upstream's mask_along_axis with one (value, min_value) pair for both axes.
            var mel = Tensor(shape: [64, 201], scalars: [Float](repeating: 1, count: 64 * 201))
            shared.mask(&mel, draw: a)
            let tw = Int(a.timeValue * 40), fw = Int(a.freqValue * 12)
            let ts = Int(a.timeStart * (201 - a.timeValue * 40)), fs = Int(a.freqStart * (64 - a.freqValue * 12))
            for f in 0..<64 {
                for t in 0..<201 {
                    let masked = (t >= ts && t < ts + tw) || (f >= fs && f < fs + fw)
                    XCTAssertEqual(mel.scalars[f * 201 + t], masked ? 0 : 1)
                }
            }
        }
        // Extraction's default records it; an old store.json without the field reads as independent.
        XCTAssertTrue(LogitExtractionOptions().augmentation.sharedMaskValues)
        let json = #"{"shift": 0.5, "shift_p": 0.5, "time_mask": 192, "freq_mask": 24, "generator": "g"}"#
        let old = try JSONDecoder().decode(LogitStore.Metadata.Augmentation.self, from: Data(json.utf8))
        XCTAssertNil(old.maskValues)
    }
}
