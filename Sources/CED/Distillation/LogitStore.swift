import Foundation

/// The teachers' stored judgement of every augmented view of every clip: consistent
/// ensemble distillation's logit store (upstream `save_logits.py`), in a documented,
/// versioned format that any safetensors/JSON reader opens.
///
/// ```
/// STORE/
///   store.json                               metadata (below), identical from every shard
///   logits-00000-of-00002.safetensors        one file per shard, when the shard is complete
///   .partial-00000-of-00002/part-*.safetensors   a shard's finished blocks while it runs
/// ```
///
/// A shard file holds, for its `m` items and the store's `E` epochs and top `K`:
/// `values` F16 `[m, E, K]` (the ensemble's probabilities, descending), `indices` U16
/// `[m, E, K]` (their classes), `seeds` U32 `[m, E]` (each view's augmentation seed), and
/// in its `__metadata__`: `items` (a JSON array of `[path, sha256, start, end]`: the path
/// relative to the data root, the file's SHA-256, the chunk's first and end sample at the
/// store's sampling rate), `audio_bytes` (the size of its audio files) and `shard` (`i/n`).
/// Shard i holds the files (sorted by relative path) whose position is i modulo n, each
/// file's chunks in order. Item order over the whole store: by path, then start.
///
/// The seed of item (path, start) in epoch e is the low 32 bits of `key(key(key(seed, fnv1a64(path)), start), e)`
/// with `key(p, x) = mix(p ⊕ mix(x))` and `mix` SplitMix64's finaliser (`x + 0x9E3779B97F4A7C15`,
/// then the two multiply–xorshift rounds); `CedAugmentation.draw(seed:)` turns it into the
/// view's shift and masks (xoshiro256** seeded through SplitMix64, in the documented order).
public struct LogitStore: Sendable {
    public static let formatName = "ced-logit-store"
    public static let formatVersion = 1

    /// `store.json`.
    public struct Metadata: Codable, Equatable, Sendable {
        public struct Teacher: Codable, Equatable, Sendable {
            /// Where it was loaded from (hub id or path, as given).
            public var source: String
            /// A digest of its weights (64-bit xxHash-style over every tensor's bits, hex).
            public var weights: String
            public var embedDim: Int
            public var depth: Int
            public var numHeads: Int
            public var pooling: CedPooling
            enum CodingKeys: String, CodingKey {
                case source, weights, depth, pooling
                case embedDim = "embed_dim", numHeads = "num_heads"
            }
        }
        public struct Augmentation: Codable, Equatable, Sendable {
            public var shift: Double
            public var shiftP: Double
            public var timeMask: Int
            public var freqMask: Int
            /// Present: `time_mask` is for clips of this many frames, shorter items get a
            /// proportional mask (`CedAugmentation.timeMaskReference`).
            public var timeMaskReferenceFrames: Int?
            public var generator: String
            enum CodingKeys: String, CodingKey {
                case shift, generator
                case shiftP = "shift_p", timeMask = "time_mask", freqMask = "freq_mask"
                case timeMaskReferenceFrames = "time_mask_reference_frames"
            }
        }
        public var format: String = LogitStore.formatName
        public var version: Int = LogitStore.formatVersion
        public var teachers: [Teacher]
        /// Class names in output order (the teachers' shared `id2label`).
        public var classes: [String]
        public var featureExtractor: CedFeatureExtractorConfig
        public var augmentation: Augmentation
        public var seed: UInt64
        public var topk: Int
        /// Seconds per item (files are cut into chunks of this length).
        public var chunkLength: Double
        public var epochs: Int
        /// The teachers' inference precision.
        public var precision: CedPrecision
        public var shards: Int

        enum CodingKeys: String, CodingKey {
            case format, version, teachers, classes, augmentation, seed, topk, epochs, precision, shards
            case featureExtractor = "feature_extractor", chunkLength = "chunk_length"
        }

        public var cedAugmentation: CedAugmentation {
            CedAugmentation(shift: augmentation.shift, shiftProbability: augmentation.shiftP,
                            timeMask: augmentation.timeMask, freqMask: augmentation.freqMask,
                            timeMaskReference: augmentation.timeMaskReferenceFrames)
        }

        func encoded() throws -> Data {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            return try enc.encode(self) + Data("\n".utf8)
        }
    }

    /// One item: a chunk of one file.
    public struct Item: Sendable, Equatable, Hashable {
        public var path: String
        public var sha256: String
        public var start: Int
        public var end: Int
    }

    public static let generatorDescription =
        "seed(path, start, epoch) = low 32 bits of key(key(key(seed, fnv1a64(path)), start), epoch), key(p, x) = splitmix64(p ^ splitmix64(x)); "
        + "draws from xoshiro256** (seeded through splitmix64 with the 32-bit seed): shift applied if u0 < shift_p, fraction (2·u1 − 1)·shift, "
        + "time mask width u2·time_mask at u3·(frames − width), frequency mask width u4·freq_mask at u5·(bins − width)"

    public let directory: URL
    public let metadata: Metadata

    /// Opens a store (reads `store.json`).
    public init(directory: URL) throws {
        let url = directory.appendingPathComponent("store.json")
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw DistillationError(.store, file: directory.path, reason: "not a logit store (no store.json; write one with ced distill logits)")
        }
        do {
            metadata = try JSONDecoder().decode(Metadata.self, from: Data(contentsOf: url))
        } catch {
            throw DistillationError(.store, file: url.path, reason: "cannot read the store's metadata (\(error.localizedDescription))")
        }
        guard metadata.format == Self.formatName else {
            throw DistillationError(.store, file: url.path, reason: "format '\(metadata.format)' is not \(Self.formatName)")
        }
        guard metadata.version == Self.formatVersion else {
            throw DistillationError(.store, file: url.path, reason: "format version \(metadata.version); this ced reads version \(Self.formatVersion)")
        }
        self.directory = directory
    }

    public static func shardName(_ i: Int, of n: Int) -> String {
        String(format: "logits-%05d-of-%05d.safetensors", i, n)
    }

    public func shardURL(_ i: Int) -> URL { directory.appendingPathComponent(Self.shardName(i, of: metadata.shards)) }

    /// Shards whose file is there (complete).
    public var presentShards: [Int] { (0..<metadata.shards).filter { FileManager.default.fileExists(atPath: shardURL($0).path) } }
    public var missingShards: [Int] { (0..<metadata.shards).filter { !FileManager.default.fileExists(atPath: shardURL($0).path) } }
    public var isComplete: Bool { missingShards.isEmpty }

    /// A shard file's content.
    struct ShardContent {
        var items: [Item]
        var seeds: [UInt32]
        var indices: [UInt16]
        var values: [UInt16]
        var audioBytes: Int
    }

    static func readShard(_ url: URL, epochs: Int, topk: Int) throws -> ShardContent {
        let f = try RawSafeTensors.File(contentsOf: url)
        guard let itemsJSON = f.metadata["items"], let list = try? JSONSerialization.jsonObject(with: Data(itemsJSON.utf8)) as? [[Any]] else {
            throw DistillationError(.store, file: url.path, reason: "the shard has no readable item index")
        }
        let items: [Item] = try list.map { a in
            guard a.count == 4, let p = a[0] as? String, let h = a[1] as? String, let s = a[2] as? Int, let e = a[3] as? Int else {
                throw DistillationError(.store, file: url.path, reason: "malformed item entry \(a)")
            }
            return Item(path: p, sha256: h, start: s, end: e)
        }
        let m = items.count
        let content = ShardContent(items: items, seeds: try f.values("seeds", "U32", as: UInt32.self),
                                   indices: try f.values("indices", "U16", as: UInt16.self),
                                   values: try f.values("values", "F16", as: UInt16.self),
                                   audioBytes: Int(f.metadata["audio_bytes"] ?? "0") ?? 0)
        guard content.seeds.count == m * epochs, content.indices.count == m * epochs * topk, content.values.count == m * epochs * topk else {
            throw DistillationError(.store, file: url.path, reason: "the shard's tensors do not have \(m) items × \(epochs) epochs × top \(topk)")
        }
        return content
    }

    static func writeShard(_ c: ShardContent, epochs: Int, topk: Int, shard: String, to url: URL) throws {
        let m = c.items.count
        let itemsJSON = "[" + c.items.map { "[\(RawSafeTensors.jsonString($0.path)),\"\($0.sha256)\",\($0.start),\($0.end)]" }.joined(separator: ",") + "]"
        try RawSafeTensors.write([
            "seeds": RawSafeTensors.entry(c.seeds, dtype: "U32", shape: [m, epochs]),
            "indices": RawSafeTensors.entry(c.indices, dtype: "U16", shape: [m, epochs, topk]),
            "values": RawSafeTensors.entry(c.values, dtype: "F16", shape: [m, epochs, topk]),
        ], metadata: ["format": "\(formatName) \(formatVersion)", "items": itemsJSON, "audio_bytes": String(c.audioBytes), "shard": shard], to: url)
    }

    /// Everything stored, over the shards present, in store order (by path, then start).
    public struct Contents: Sendable {
        public var items: [Item]
        /// `[items, epochs]`
        public var seeds: [UInt32]
        /// `[items, epochs, topk]`
        public var indices: [UInt16]
        /// `[items, epochs, topk]`, float16 bit patterns.
        public var values: [UInt16]
        public var audioBytes: Int

        /// The stored top-k of an item in an epoch as (class, probability) pairs.
        public func topk(item i: Int, epoch e: Int, k: Int, epochs: Int) -> [(Int, Float)] {
            (0..<k).map { j in
                let o = (i * epochs + e) * k + j
                return (Int(indices[o]), Float(Float16(bitPattern: values[o])))
            }
        }
    }

    public func contents() throws -> Contents {
        let e = metadata.epochs, k = metadata.topk
        var parts: [ShardContent] = []
        for i in presentShards { parts.append(try Self.readShard(shardURL(i), epochs: e, topk: k)) }
        var rows: [(Item, Int, Int)] = []   // item, part, index within part
        for (p, c) in parts.enumerated() { for (j, it) in c.items.enumerated() { rows.append((it, p, j)) } }
        rows.sort { ($0.0.path, $0.0.start) < ($1.0.path, $1.0.start) }
        var out = Contents(items: [], seeds: [], indices: [], values: [], audioBytes: parts.reduce(0) { $0 + $1.audioBytes })
        out.items.reserveCapacity(rows.count)
        for (it, p, j) in rows {
            out.items.append(it)
            out.seeds += parts[p].seeds[(j * e) ..< ((j + 1) * e)]
            out.indices += parts[p].indices[(j * e * k) ..< ((j + 1) * e * k)]
            out.values += parts[p].values[(j * e * k) ..< ((j + 1) * e * k)]
        }
        return out
    }

    /// SHA-256 over the logical content in store order: per item its path, hash, start and
    /// end, then per epoch the seed (8 bytes) and the K (index, value) pairs (2 + 2 bytes,
    /// little-endian), so equal stores have equal digests however they were written.
    public static func digest(_ c: Contents, epochs: Int, topk: Int) -> String {
        var h = SHA256Hasher()
        var buf = [UInt8]()
        for (i, it) in c.items.enumerated() {
            buf.removeAll(keepingCapacity: true)
            buf += Array("\(it.path)\n\(it.sha256)\n\(it.start)\n\(it.end)\n".utf8)
            for e in 0..<epochs {
                withUnsafeBytes(of: c.seeds[i * epochs + e].littleEndian) { buf += $0 }
                for j in 0..<topk {
                    let o = (i * epochs + e) * topk + j
                    withUnsafeBytes(of: c.indices[o].littleEndian) { buf += $0 }
                    withUnsafeBytes(of: c.values[o].littleEndian) { buf += $0 }
                }
            }
            h.update(buf)
        }
        return h.finalizeHex()
    }

    /// The folder the items' paths are relative to, as the extraction recorded it.
    public var recordedDataRoot: URL? {
        guard let s = try? String(contentsOf: directory.appendingPathComponent("data_root"), encoding: .utf8) else { return nil }
        let p = s.trimmingCharacters(in: .whitespacesAndNewlines)
        return p.isEmpty ? nil : URL(fileURLWithPath: p)
    }

    /// Recomputes the teachers on `sample` stored views (items drawn with `seed`, each in
    /// one of its epochs) and compares them with the stored top k at float16 precision: the
    /// same classes (up to ties within float16 rounding) and every value equal after rounding.
    public func verify(teachers: [CedForAudioClassification], dataRoot: URL, sample: Int, seed: UInt64 = 0) throws
        -> (checked: Int, matched: Int, mismatches: [String]) {
        let c = try contents()
        let m = metadata
        guard !c.items.isEmpty else { return (0, 0, []) }
        var rng = TrainingRandom(seed: seed ^ 0x5645_5249_4659)
        var picks: [(Int, Int)] = []
        var order = Array(c.items.indices)
        rng.shuffle(&order)
        for i in order.prefix(max(1, sample)) { picks.append((i, rng.nextInt(below: m.epochs))) }
        let extractor = try CedFeatureExtractor(config: m.featureExtractor)
        var matched = 0
        var mismatches: [String] = []
        var waves: [String: [Float]] = [:]
        for (i, e) in picks {
            let it = c.items[i]
            let url = dataRoot.appendingPathComponent(it.path)
            if waves[it.path] == nil {
                guard try CedEmbedder.contentHash(of: url) == it.sha256 else {
                    mismatches.append("\(it.path): the file changed since its logits were computed")
                    continue
                }
                waves[it.path] = try Waveform(contentsOf: url, sampleRate: m.featureExtractor.samplingRate).samples
            }
            let piece = Array(waves[it.path]![it.start ..< it.end])
            let seedStored = c.seeds[i * m.epochs + e]
            let expectSeed = LogitStore.viewSeed(m.seed, path: it.path, start: it.start, epoch: e)
            let p = try LogitExtractionJob.ensemble(teachers, extractor: extractor, samples: piece, seeds: [seedStored],
                                                    augmentation: m.cedAugmentation)[0]
            let stored = c.topk(item: i, epoch: e, k: m.topk, epochs: m.epochs)
            var ok = seedStored == expectSeed
            var why = ok ? "" : "stored seed \(seedStored) is not the documented one"
            let kth = Float(Float16(stored.last!.1))
            for (idx, v) in stored where ok {
                let again = Float(Float16(p[idx]))
                if again != v { ok = false; why = "class \(idx): stored \(v), recomputed \(p[idx])" }
            }
            if ok {
                // No class outside the stored ones rounds above the k-th value.
                let top = Set(stored.map(\.0))
                if let j = p.indices.first(where: { !top.contains($0) && Float(Float16(p[$0])) > kth }) {
                    ok = false
                    why = "class \(j) (\(p[j])) belongs in the top \(m.topk)"
                }
            }
            if ok { matched += 1 } else { mismatches.append("\(it.path) [\(it.start), \(it.end)) epoch \(e): \(why)") }
        }
        return (picks.count, matched, mismatches)
    }

    /// Bytes of every file in the store folder (partial blocks included).
    public var bytesOnDisk: Int {
        let fm = FileManager.default
        guard let e = fm.enumerator(at: directory, includingPropertiesForKeys: [.fileSizeKey]) else { return 0 }
        var total = 0
        for case let u as URL in e { total += (try? u.resourceValues(forKeys: [.fileSizeKey]).fileSize) ?? 0 }
        return total
    }

    /// The seed of an item's view in an epoch (see the type's documentation).
    public static func viewSeed(_ seed: UInt64, path: String, start: Int, epoch: Int) -> UInt32 {
        UInt32(truncatingIfNeeded: TrainingNoise.key(TrainingNoise.key(TrainingNoise.key(seed, fnv1a64(path)), UInt64(start)), UInt64(epoch)))
    }

    static func fnv1a64(_ s: String) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
        return h
    }
}
