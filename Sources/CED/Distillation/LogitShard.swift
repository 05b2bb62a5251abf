import Foundation

/// Items of a shard held in memory, item-major: what a block of extraction produces, and what
/// a writer takes. `seeds` is `[items, epochs]`, `indices` and `values` `[items, epochs, topk]`.
struct LogitShardContent {
    var items: [LogitStore.Item] = []
    var seeds: [UInt32] = []
    var indices: [UInt16] = []
    var values: [UInt16] = []
    var audioBytes = 0

    mutating func append(_ other: LogitShardContent) {
        items += other.items; seeds += other.seeds; indices += other.indices; values += other.values
        audioBytes += other.audioBytes
    }
}

/// One shard file of a logit store, read by offset: the item index and the views it is asked
/// for, never the whole file. Version 2 files (epoch-major, the index as tensors) are read in
/// place; version 1 files (item-major, the index as JSON in the header) are small by
/// construction and are read into memory.
final class LogitShard: @unchecked Sendable {
    let url: URL
    let count: Int
    let epochs: Int
    let topk: Int
    let audioBytes: Int
    /// Each item's first and end sample.
    let starts: [Int], ends: [Int]
    private let file: RawSafeTensors.File
    private let v1: LogitShardContent?
    private var valuesAt = 0, indicesAt = 0, seedsAt = 0, pathAt = 0, pathOffsetsAt = 0, shaAt = 0

    init(url: URL, epochs: Int, topk: Int) throws {
        self.url = url
        self.epochs = epochs
        self.topk = topk
        let f = try RawSafeTensors.File(contentsOf: url)
        file = f
        audioBytes = Int(f.metadata["audio_bytes"] ?? "0") ?? 0
        func fail(_ why: String) -> DistillationError { DistillationError(.store, file: url.path, reason: why) }
        if f.tensors["item_start"] == nil {
            // Version 1: the item index as JSON in the metadata, tensors item-major.
            guard let itemsJSON = f.metadata["items"], let list = try? JSONSerialization.jsonObject(with: Data(itemsJSON.utf8)) as? [[Any]] else {
                throw fail("the shard has no readable item index")
            }
            let items: [LogitStore.Item] = try list.map { a in
                guard a.count == 4, let p = a[0] as? String, let h = a[1] as? String, let s = a[2] as? Int, let e = a[3] as? Int else {
                    throw fail("malformed item entry \(a)")
                }
                return LogitStore.Item(path: p, sha256: h, start: s, end: e)
            }
            let m = items.count
            let c = LogitShardContent(items: items, seeds: try f.values("seeds", "U32", as: UInt32.self),
                                      indices: try f.values("indices", "U16", as: UInt16.self),
                                      values: try f.values("values", "F16", as: UInt16.self), audioBytes: audioBytes)
            guard c.seeds.count == m * epochs, c.indices.count == m * epochs * topk, c.values.count == m * epochs * topk else {
                throw fail("the shard's tensors do not have \(m) items × \(epochs) epochs × top \(topk)")
            }
            count = m
            starts = items.map(\.start)
            ends = items.map(\.end)
            v1 = c
            return
        }
        guard let m = f.tensors["item_start"]?.shape.first else { throw fail("item_start has no items dimension") }
        count = m
        v1 = nil
        starts = try f.values("item_start", "I64", as: Int64.self).map { Int($0) }
        ends = try f.values("item_end", "I64", as: Int64.self).map { Int($0) }
        guard starts.count == m, ends.count == m else { throw fail("item_start and item_end differ in length") }
        valuesAt = try f.range("values", "F16", size: 2, shape: [epochs, m, topk]).lowerBound
        indicesAt = try f.range("indices", "U16", size: 2, shape: [epochs, m, topk]).lowerBound
        seedsAt = try f.range("seeds", "U32", size: 4, shape: [epochs, m]).lowerBound
        shaAt = try f.range("item_sha256", "U8", size: 1, shape: [m, 32]).lowerBound
        pathOffsetsAt = try f.range("item_path_offsets", "I64", size: 8, shape: [m + 1]).lowerBound
        pathAt = try f.range("item_path", "U8", size: 1).lowerBound
    }

    /// Every item's path as UTF-8 bytes: item j's are `bytes[offsets[j] ..< offsets[j + 1]]`.
    func pathTable() throws -> (bytes: [UInt8], offsets: [Int]) {
        if let v1 {
            var bytes: [UInt8] = [], offsets = [0]
            for it in v1.items { bytes += Array(it.path.utf8); offsets.append(bytes.count) }
            return (bytes, offsets)
        }
        let offsets = try file.file.array(pathOffsetsAt ..< pathOffsetsAt + 8 * (count + 1), as: Int64.self).map { Int($0) }
        guard offsets.first == 0, zip(offsets, offsets.dropFirst()).allSatisfy({ $0 <= $1 }) else {
            throw DistillationError(.store, file: url.path, reason: "item_path_offsets are not increasing from 0")
        }
        return (try file.file.bytes(pathAt ..< pathAt + offsets[count]), offsets)
    }

    /// Files in the shard (runs of items with one path).
    func fileCount() throws -> Int {
        let (bytes, o) = try pathTable()
        return (0..<count).filter { $0 == 0 || bytes[o[$0] ..< o[$0 + 1]] != bytes[o[$0 - 1] ..< o[$0]] }.count
    }

    /// Every item's path (decoded from the path bytes at once).
    func paths() throws -> [String] {
        if let v1 { return v1.items.map(\.path) }
        let offsets = try file.file.array(pathOffsetsAt ..< pathOffsetsAt + 8 * (count + 1), as: Int64.self).map { Int($0) }
        let blob = try file.file.bytes(pathAt ..< pathAt + (offsets.last ?? 0))
        return try (0..<count).map { j in
            guard offsets[j] <= offsets[j + 1], offsets[j + 1] <= blob.count, let s = String(validating: blob[offsets[j] ..< offsets[j + 1]], as: UTF8.self) else {
                throw DistillationError(.store, file: url.path, reason: "item \(j)'s path is not valid UTF-8 inside item_path")
            }
            return s
        }
    }

    /// Every item's file hash, 32 bytes an item.
    func hashes() throws -> [UInt8] {
        if let v1 { return v1.items.flatMap { LogitStore.hexBytes($0.sha256) } }
        return try file.file.bytes(shaAt ..< shaAt + 32 * count)
    }

    /// Item j (path, file hash, start, end).
    func item(_ j: Int) throws -> LogitStore.Item { try items(j ..< j + 1)[0] }

    /// Items `range`, read in three stretches (offsets, paths, hashes).
    func items(_ range: Range<Int>) throws -> [LogitStore.Item] {
        if let v1 { return Array(v1.items[range]) }
        guard !range.isEmpty else { return [] }
        let f = file.file
        let o = try f.array(pathOffsetsAt + 8 * range.lowerBound ..< pathOffsetsAt + 8 * (range.upperBound + 1), as: Int64.self).map { Int($0) }
        guard o.first! >= 0, o.last! >= o.first! else { throw DistillationError(.store, file: url.path, reason: "item_path_offsets are not increasing") }
        let blob = try f.bytes(pathAt + o.first! ..< pathAt + o.last!)
        let sha = try f.bytes(shaAt + 32 * range.lowerBound ..< shaAt + 32 * range.upperBound)
        return try range.enumerated().map { t, j in
            let a = o[t] - o[0], b = o[t + 1] - o[0]
            guard a <= b, let path = String(validating: blob[a..<b], as: UTF8.self) else {
                throw DistillationError(.store, file: url.path, reason: "item \(j)'s path is not valid UTF-8 inside item_path")
            }
            return LogitStore.Item(path: path, sha256: LogitStore.hex(sha[32 * t ..< 32 * (t + 1)]), start: starts[j], end: ends[j])
        }
    }

    /// Seeds, classes and float16 values of items `items` in epoch `e` (item by item).
    func slab(epoch e: Int, items: Range<Int>) throws -> (seeds: [UInt32], indices: [UInt16], values: [UInt16]) {
        let k = topk, n = items.count
        if let v1 {
            var s = [UInt32](), i = [UInt16](), v = [UInt16]()
            s.reserveCapacity(n); i.reserveCapacity(n * k); v.reserveCapacity(n * k)
            for j in items {
                s.append(v1.seeds[j * epochs + e])
                i += v1.indices[(j * epochs + e) * k ..< (j * epochs + e + 1) * k]
                v += v1.values[(j * epochs + e) * k ..< (j * epochs + e + 1) * k]
            }
            return (s, i, v)
        }
        let row = e * count + items.lowerBound
        let f = file.file
        return (try f.array(seedsAt + 4 * row ..< seedsAt + 4 * (row + n), as: UInt32.self),
                try f.array(indicesAt + 2 * k * row ..< indicesAt + 2 * k * (row + n), as: UInt16.self),
                try f.array(valuesAt + 2 * k * row ..< valuesAt + 2 * k * (row + n), as: UInt16.self))
    }

    /// Each item's SHA-256 (32 bytes an item) of its serialisation (`LogitStore.digestItem`),
    /// the shard read in windows of about 16 MB, one stretch per epoch and tensor.
    func itemDigests() throws -> [UInt8] {
        let e = epochs, k = topk
        let window = max(16, (16 << 20) / max(1, e * (4 + 4 * k)))
        var out = [UInt8]()
        out.reserveCapacity(32 * count)
        var buf = [UInt8]()
        var first = 0
        while first < count {
            let end = min(count, first + window), n = end - first
            let items = try self.items(first ..< end)
            let slabs = try (0..<e).map { try slab(epoch: $0, items: first ..< end) }
            var seeds = [UInt32](repeating: 0, count: e), indices = [UInt16](repeating: 0, count: e * k), values = indices
            for t in 0..<n {
                for epoch in 0..<e {
                    seeds[epoch] = slabs[epoch].seeds[t]
                    for q in 0..<k {
                        indices[epoch * k + q] = slabs[epoch].indices[t * k + q]
                        values[epoch * k + q] = slabs[epoch].values[t * k + q]
                    }
                }
                var h = SHA256Hasher()
                LogitStore.digestItem(&h, &buf, items[t], seeds: seeds[...], indices: indices[...], values: values[...], epochs: e, topk: k)
                out += h.finalize()
            }
            first = end
        }
        return out
    }

    /// Everything, item-major, in memory (small shards: merging, `LogitStore.contents()`).
    func content() throws -> LogitShardContent {
        if let v1 { return v1 }
        var c = LogitShardContent(audioBytes: audioBytes)
        let paths = try self.paths()
        let sha = try file.file.bytes(shaAt ..< shaAt + 32 * count)
        c.items = (0..<count).map { j in
            LogitStore.Item(path: paths[j], sha256: LogitStore.hex(sha[32 * j ..< 32 * (j + 1)]), start: starts[j], end: ends[j])
        }
        let k = topk
        c.seeds = [UInt32](repeating: 0, count: count * epochs)
        c.indices = [UInt16](repeating: 0, count: count * epochs * k)
        c.values = c.indices
        for e in 0..<epochs {
            let (s, i, v) = try slab(epoch: e, items: 0..<count)
            for j in 0..<count {
                c.seeds[j * epochs + e] = s[j]
                for t in 0..<k {
                    c.indices[(j * epochs + e) * k + t] = i[j * k + t]
                    c.values[(j * epochs + e) * k + t] = v[j * k + t]
                }
            }
        }
        return c
    }
}

/// Writes a version-2 shard file by blocks of items, never holding the shard: the file is
/// sized first, each block's rows go to their place in every epoch's slab (`pwrite`), the
/// paths follow at the end and the header, whose room was reserved, is written last. The file
/// is written beside `url` and renamed onto it by `finish`, so a shard file is whole or absent.
///
/// Layout (data in this order; the header lists the tensors by name): `seeds` U32 `[E, m]`,
/// `indices` U16 `[E, m, K]`, `values` F16 `[E, m, K]`, `item_start` I64 `[m]`, `item_end`
/// I64 `[m]`, `item_sha256` U8 `[m, 32]`, `item_path_offsets` I64 `[m + 1]`, `item_path` U8
/// (the UTF-8 paths one after another). Epoch-major: one training epoch reads one contiguous
/// stretch of each of the first three tensors.
final class LogitShardWriter {
    let url: URL
    let items: Int, epochs: Int, topk: Int
    private let file: PositionalFile
    private let temporary: URL
    private let metadata: [String: String]
    private let headerLength: Int
    private var written = 0
    private var pathBytes = 0
    private var pathOffsets: [Int64] = [0]
    private var paths = Data()
    private var audioBytes = 0
    private let seedsAt: Int, indicesAt: Int, valuesAt: Int, startAt: Int, endAt: Int, shaAt: Int, pathOffsetsAt: Int, pathAt: Int

    init(url: URL, items m: Int, epochs: Int, topk: Int, metadata: [String: String]) throws {
        self.url = url
        items = m
        self.epochs = epochs
        self.topk = topk
        self.metadata = metadata
        temporary = url.deletingLastPathComponent().appendingPathComponent(".tmp-\(UUID().uuidString)")
        file = try PositionalFile(temporary, writable: true)
        // Room for the header with the widest numbers the unknown sizes could have.
        let widest = 999_999_999_999_999
        headerLength = RawSafeTensors.header(Self.specs(m: m, epochs: epochs, topk: topk, pathBytes: widest),
                                             metadata: metadata.merging(["audio_bytes": String(widest)]) { a, _ in a }).count
        var at = headerLength
        seedsAt = at; at += 4 * epochs * m
        indicesAt = at; at += 2 * epochs * m * topk
        valuesAt = at; at += 2 * epochs * m * topk
        startAt = at; at += 8 * m
        endAt = at; at += 8 * m
        shaAt = at; at += 32 * m
        pathOffsetsAt = at; at += 8 * (m + 1)
        pathAt = at
        try file.truncate(to: pathAt)
    }

    deinit { if written >= 0 { try? FileManager.default.removeItem(at: temporary) } }

    static func specs(m: Int, epochs: Int, topk: Int, pathBytes: Int) -> [RawSafeTensors.Spec] {
        [.init(name: "seeds", dtype: "U32", shape: [epochs, m], bytes: 4 * epochs * m),
         .init(name: "indices", dtype: "U16", shape: [epochs, m, topk], bytes: 2 * epochs * m * topk),
         .init(name: "values", dtype: "F16", shape: [epochs, m, topk], bytes: 2 * epochs * m * topk),
         .init(name: "item_start", dtype: "I64", shape: [m], bytes: 8 * m),
         .init(name: "item_end", dtype: "I64", shape: [m], bytes: 8 * m),
         .init(name: "item_sha256", dtype: "U8", shape: [m, 32], bytes: 32 * m),
         .init(name: "item_path_offsets", dtype: "I64", shape: [m + 1], bytes: 8 * (m + 1)),
         .init(name: "item_path", dtype: "U8", shape: [pathBytes], bytes: pathBytes)]
    }

    /// A whole shard from memory.
    static func write(_ c: LogitShardContent, epochs: Int, topk: Int, metadata: [String: String], to url: URL) throws {
        let w = try LogitShardWriter(url: url, items: c.items.count, epochs: epochs, topk: topk, metadata: metadata)
        try w.append(c)
        try w.finish()
    }

    /// Appends the next items (in store order).
    func append(_ c: LogitShardContent) throws {
        let n = c.items.count, e = epochs, k = topk
        guard written + n <= items else {
            throw DistillationError(.store, file: url.path, reason: "more than the \(items) items the shard was sized for")
        }
        guard c.seeds.count == n * e, c.indices.count == n * e * k, c.values.count == n * e * k else {
            throw DistillationError(.store, file: url.path, reason: "a block's tensors do not have \(n) items × \(e) epochs × top \(k)")
        }
        var s = [UInt32](repeating: 0, count: n), idx = [UInt16](repeating: 0, count: n * k), val = idx
        for epoch in 0..<e {
            for j in 0..<n {
                s[j] = c.seeds[j * e + epoch]
                let from = (j * e + epoch) * k
                for t in 0..<k { idx[j * k + t] = c.indices[from + t]; val[j * k + t] = c.values[from + t] }
            }
            let row = epoch * items + written
            try file.write(s, at: seedsAt + 4 * row)
            try file.write(idx, at: indicesAt + 2 * k * row)
            try file.write(val, at: valuesAt + 2 * k * row)
        }
        try file.write(c.items.map { Int64($0.start) }, at: startAt + 8 * written)
        try file.write(c.items.map { Int64($0.end) }, at: endAt + 8 * written)
        var sha = [UInt8]()
        sha.reserveCapacity(32 * n)
        for it in c.items {
            let bytes = LogitStore.hexBytes(it.sha256)
            guard bytes.count == 32 else {
                throw DistillationError(.store, file: url.path, reason: "item \(it.path): '\(it.sha256)' is not a SHA-256 in hex")
            }
            sha += bytes
        }
        try sha.withUnsafeBytes { try file.write($0, at: shaAt + 32 * written) }
        for it in c.items {
            paths.append(contentsOf: Array(it.path.utf8))
            pathOffsets.append(Int64(pathBytes + paths.count))
        }
        if paths.count > 1 << 20 { try flushPaths() }
        written += n
        audioBytes += c.audioBytes
    }

    private func flushPaths() throws {
        try file.write(paths, at: pathAt + pathBytes)
        pathBytes += paths.count
        paths.removeAll(keepingCapacity: true)
    }

    /// Writes the path offsets and the header, then puts the file in place.
    func finish() throws {
        guard written == items else {
            throw DistillationError(.store, file: url.path, reason: "\(written) of the \(items) items were written")
        }
        try flushPaths()
        try file.write(pathOffsets, at: pathOffsetsAt)
        var meta = metadata
        meta["audio_bytes"] = String(audioBytes)
        try file.finish(header: RawSafeTensors.header(Self.specs(m: items, epochs: epochs, topk: topk, pathBytes: pathBytes),
                                                      metadata: meta, minimumLength: headerLength - 8),
                        room: headerLength, as: url)
        written = -1
    }
}
