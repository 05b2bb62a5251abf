import Foundation

extension LogitStore {
    /// The items of a store's present shards in store order (by path, then start), read by
    /// offset: opening one reads each shard's item starts and ends (16 bytes an item) and
    /// keeps 8 bytes an item for the order; views, paths and hashes are read when asked for.
    /// A training epoch over a 2 M-item store thus holds about 50 MB of index, not the
    /// store's gigabytes. Safe to use from several threads.
    public final class Reader: @unchecked Sendable {
        public let store: LogitStore
        let shards: [LogitShard]
        /// The shard number of each entry of `shards`.
        public let shardNumbers: [Int]
        /// Item g of the store is item `order[g] & 0xFFFFFFFFFF` of shard `shards[order[g] >> 40]`.
        private let order: [UInt64]
        public var count: Int { order.count }
        /// The size of the audio files the shards were computed from.
        public let audioBytes: Int

        init(_ store: LogitStore) throws {
            self.store = store
            shardNumbers = store.presentShards
            shards = try shardNumbers.map { try store.shard($0) }
            audioBytes = shards.reduce(0) { $0 + $1.audioBytes }
            order = try Self.storeOrder(shards)
        }

        /// Shard and item number within it of store item g.
        public func location(_ g: Int) -> (shard: Int, item: Int) {
            let o = order[g]
            return (shardNumbers[Int(o >> 40)], Int(o & 0xFF_FFFF_FFFF))
        }

        private func locate(_ g: Int) -> (LogitShard, Int) {
            let o = order[g]
            return (shards[Int(o >> 40)], Int(o & 0xFF_FFFF_FFFF))
        }

        /// Store item g's samples `[start, end)`.
        public func samples(_ g: Int) -> Range<Int> {
            let (s, j) = locate(g)
            return s.starts[j] ..< s.ends[j]
        }

        public func item(_ g: Int) throws -> Item {
            let (s, j) = locate(g)
            return try s.item(j)
        }

        /// Store item g's view in stored epoch e.
        public func view(_ g: Int, epoch e: Int) throws -> View {
            let (s, j) = locate(g)
            let (seeds, classes, values) = try s.slab(epoch: e, items: j ..< j + 1)
            return View(seed: seeds[0], classes: classes, values: values)
        }

        /// Every item's path, in store order (loads them all: for stores decoded from files).
        public func paths() throws -> [String] {
            let perShard = try shards.map { try $0.paths() }
            return order.map { perShard[Int($0 >> 40)][Int($0 & 0xFF_FFFF_FFFF)] }
        }

        /// Calls `body` with every item and its views (seeds `[E]`, classes and values
        /// `[E, K]`) in store order, reading each shard in windows of about a megabyte.
        public func forEachInOrder(_ body: (Item, ArraySlice<UInt32>, ArraySlice<UInt16>, ArraySlice<UInt16>) throws -> Void) throws {
            let e = store.metadata.epochs, k = store.metadata.topk
            let window = max(16, (1 << 20) / max(1, e * (4 + 4 * k)))
            final class Cursor {
                var first = 0, end = 0
                var seeds: [UInt32] = [], indices: [UInt16] = [], values: [UInt16] = []
                var items: [Item] = []
            }
            let cursors = shards.map { _ in Cursor() }
            for g in 0..<order.count {
                let p = Int(order[g] >> 40), j = Int(order[g] & 0xFF_FFFF_FFFF)
                let c = cursors[p], shard = shards[p]
                if j < c.first || j >= c.end {
                    c.first = j
                    c.end = min(shard.count, j + window)
                    c.items = try shard.items(c.first ..< c.end)
                    // Item-major within the window: [n, E] and [n, E, K].
                    let n = c.end - c.first
                    c.seeds = [UInt32](repeating: 0, count: n * e)
                    c.indices = [UInt16](repeating: 0, count: n * e * k)
                    c.values = c.indices
                    for epoch in 0..<e {
                        let (s, i, v) = try shard.slab(epoch: epoch, items: c.first ..< c.end)
                        for t in 0..<n {
                            c.seeds[t * e + epoch] = s[t]
                            for q in 0..<k {
                                c.indices[(t * e + epoch) * k + q] = i[t * k + q]
                                c.values[(t * e + epoch) * k + q] = v[t * k + q]
                            }
                        }
                    }
                }
                let t = j - c.first
                try body(c.items[t], c.seeds[t * e ..< (t + 1) * e], c.indices[t * e * k ..< (t + 1) * e * k],
                         c.values[t * e * k ..< (t + 1) * e * k])
            }
        }

        /// `LogitStore.digest()`: each shard read once, in large stretches (the items' own
        /// digests), then the items' digests in store order.
        public func digest() throws -> String {
            let perShard = try shards.map { try $0.itemDigests() }
            var h = SHA256Hasher()
            for o in order {
                let j = Int(o & 0xFF_FFFF_FFFF)
                perShard[Int(o >> 40)].withUnsafeBytes { h.update(UnsafeRawBufferPointer(rebasing: $0[32 * j ..< 32 * (j + 1)])) }
            }
            return h.finalizeHex()
        }

        /// Store order over shards, each sorted by (path, start) and holding whole files: the
        /// files interleave round-robin (shard i has the files at positions i mod n), which is
        /// checked run by run; shards written from other file lists fall back to a sort.
        static func storeOrder(_ shards: [LogitShard]) throws -> [UInt64] {
            let total = shards.reduce(0) { $0 + $1.count }
            var order = [UInt64]()
            order.reserveCapacity(total)
            if shards.count == 1 {
                for j in 0..<shards[0].count { order.append(UInt64(j)) }
                return order
            }
            // Runs of one file per shard (their first items), compared as paths only where needed.
            let tables = try shards.map { try $0.pathTable() }
            func bytes(_ p: Int, _ j: Int) -> ArraySlice<UInt8> { tables[p].bytes[tables[p].offsets[j] ..< tables[p].offsets[j + 1]] }
            func path(_ p: Int, _ j: Int) -> String { String(decoding: bytes(p, j), as: UTF8.self) }
            var runs: [[Int]] = []
            for (p, s) in shards.enumerated() {
                var r: [Int] = []
                for j in 0..<s.count where j == 0 || bytes(p, j) != bytes(p, j - 1) { r.append(j) }
                r.append(s.count)
                runs.append(r)
            }
            let totalRuns = runs.reduce(0) { $0 + $1.count - 1 }
            var merged: [(p: Int, run: Int)] = []
            merged.reserveCapacity(totalRuns)
            var next = [Int](repeating: 0, count: shards.count)
            var previous: String?
            var p = 0
            while merged.count < totalRuns {
                // File k is shard (k mod n)'s next one; a shard that runs out early, or paths
                // out of order, mean the shards were not written from one file list.
                guard next[p] < runs[p].count - 1 else { break }
                let current = path(p, runs[p][next[p]])
                if let previous, !(previous < current) { break }
                previous = current
                merged.append((p, next[p]))
                next[p] += 1
                p = (p + 1) % shards.count
            }
            if merged.count != totalRuns {
                let heads = runs.indices.flatMap { p in (0 ..< runs[p].count - 1).map { (p: p, run: $0, path: path(p, runs[p][$0])) } }
                merged = heads.sorted { $0.path < $1.path }.map { (p: $0.p, run: $0.run) }
            }
            for (p, r) in merged {
                for j in runs[p][r] ..< runs[p][r + 1] { order.append(UInt64(p) << 40 | UInt64(j)) }
            }
            return order
        }
    }

    /// Starts a store without teachers (views computed elsewhere, tests, generated stores):
    /// writes `store.json` into `directory` (created). Fill each shard with a `ShardWriter`.
    @discardableResult
    public static func create(at directory: URL, metadata: Metadata) throws -> LogitStore {
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            var m = metadata
            m.format = formatName
            m.version = formatVersion
            try LogitExtractionJob.atomicWrite(try m.encoded(), to: directory.appendingPathComponent("store.json"))
        } catch let e as DistillationError {
            throw e
        } catch {
            throw DistillationError(.store, file: directory.path, reason: "cannot write store.json (\(error.localizedDescription))")
        }
        return try LogitStore(directory: directory)
    }

    /// Writes one shard file of a store item by item, in store order (sorted by path, then
    /// start; a file's chunks together), holding about a thousand items at a time: the shard
    /// file appears, whole, when `finish` is called.
    public final class ShardWriter {
        private let writer: LogitShardWriter
        private var block = LogitShardContent()
        private let epochs: Int, topk: Int, classes: Int
        private var last: Item?

        /// Shard `shard` of `store`, which will hold `items` items.
        public init(store: LogitStore, shard: Int, items: Int) throws {
            let m = store.metadata
            guard shard >= 0, shard < m.shards, items >= 0 else {
                throw DistillationError(.input, file: store.directory.path, reason: "shard \(shard) of \(m.shards) with \(items) items")
            }
            epochs = m.epochs
            topk = m.topk
            classes = m.classes.count
            writer = try LogitShardWriter(url: store.shardURL(shard), items: items, epochs: m.epochs, topk: m.topk,
                                          metadata: ["format": "\(formatName) \(formatVersion)", "shard": "\(shard)/\(m.shards)"])
        }

        /// Appends an item: its `epochs` seeds, and per epoch `topk` classes and probabilities
        /// (best first), epoch after epoch. `audioBytes`: the size of its file when this is the
        /// file's first item (for `ced distill info`).
        public func append(_ item: Item, seeds: [UInt32], classes: [Int], probabilities: [Float], audioBytes: Int = 0) throws {
            guard seeds.count == epochs, classes.count == epochs * topk, probabilities.count == epochs * topk else {
                throw DistillationError(.input, reason: "item \(item.path): \(seeds.count) seeds and \(classes.count) classes for \(epochs) epochs × top \(topk)")
            }
            if let bad = classes.first(where: { $0 < 0 || $0 >= self.classes }) {
                throw DistillationError(.input, reason: "item \(item.path): class \(bad) is not one of the store's \(self.classes)")
            }
            if let last, (last.path, last.start) >= (item.path, item.start) {
                throw DistillationError(.input, reason: "item \(item.path) at \(item.start) comes after \(last.path) at \(last.start): append in store order")
            }
            guard item.start >= 0, item.end > item.start else {
                throw DistillationError(.input, reason: "item \(item.path): samples [\(item.start), \(item.end)) are empty")
            }
            block.items.append(item)
            block.seeds += seeds
            block.indices += classes.map { UInt16($0) }
            block.values += probabilities.map { Float16($0).bitPattern }
            block.audioBytes += audioBytes
            last = item
            if block.items.count >= 1024 { try flush() }
        }

        private func flush() throws {
            try writer.append(block)
            block = LogitShardContent()
        }

        public func finish() throws {
            try flush()
            try writer.finish()
        }
    }
}
