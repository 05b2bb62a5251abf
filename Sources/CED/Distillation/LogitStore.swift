import Foundation

/// The teachers' stored judgement of every augmented view of every clip: consistent
/// ensemble distillation's logit store (upstream `save_logits.py`), in a documented,
/// versioned format that any safetensors/JSON reader opens.
///
/// ```
/// STORE/
///   store.json                               metadata (below), identical from every shard
///   logits-00000-of-00002.safetensors        one file per shard, when the shard is complete
///   audio-00000-of-00002.safetensors         the shard's items' audio (optional, `AudioPack`)
///   .partial-00000-of-00002/part-*.safetensors   a shard's finished blocks while it runs
/// ```
///
/// **Shard file, version 2** (written since issue 22). For its `m` items and the store's `E`
/// epochs and top `K`, in this order of data (the header lists them by name):
///
/// | tensor | dtype | shape | what |
/// | --- | --- | --- | --- |
/// | `seeds` | U32 | `[E, m]` | each view's augmentation seed |
/// | `indices` | U16 | `[E, m, K]` | the classes of the ensemble's top K, best first |
/// | `values` | F16 | `[E, m, K]` | their probabilities (the mean over teachers) |
/// | `item_start`, `item_end` | I64 | `[m]` | the chunk's first and end sample at the store's sampling rate |
/// | `item_sha256` | U8 | `[m, 32]` | the SHA-256 of the item's audio file |
/// | `item_path_offsets` | I64 | `[m + 1]` | item j's path is `item_path[offsets[j] ..< offsets[j+1]]` |
/// | `item_path` | U8 | `[bytes]` | the paths, relative to the data root, UTF-8, one after another |
///
/// `__metadata__`: `format` (`ced-logit-store 2`), `shard` (`i/n`), `audio_bytes` (the
/// size of the shard's audio files). Epoch-major: training epoch e reads one contiguous
/// stretch of `seeds`, `indices` and `values`, and a reader opens a shard by offset
/// (`pread`), so neither the index nor the views are ever loaded whole. Version 1 (item-major
/// `[m, E, K]`, the item index as a JSON array `items` of `[path, sha256, start, end]` in the
/// metadata) is still read.
///
/// Shard i holds the files (sorted by relative path) whose position is i modulo n, each
/// file's chunks in order. Item order over the whole store (the digest's, and training's):
/// by path, then start.
///
/// The seed of item (path, start) in epoch e is the low 32 bits of `key(key(key(seed, fnv1a64(path)), start), e)`
/// with `key(p, x) = mix(p ⊕ mix(x))` and `mix` SplitMix64's finaliser (`x + 0x9E3779B97F4A7C15`,
/// then the two multiply–xorshift rounds); `CedAugmentation.draw(seed:)` turns it into the
/// view's shift and masks (xoshiro256** seeded through SplitMix64, in the documented order).
/// A store written by other means (`LogitStore.create`, `ShardWriter`) may use any seeds: the
/// trainer replays whatever seed a view holds.
public struct LogitStore: Sendable {
    public static let formatName = "ced-logit-store"
    /// The version written; versions 1 and 2 are read.
    public static let formatVersion = 2

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
            public init(source: String, weights: String, embedDim: Int, depth: Int, numHeads: Int, pooling: CedPooling) {
                (self.source, self.weights, self.embedDim, self.depth, self.numHeads, self.pooling) = (source, weights, embedDim, depth, numHeads, pooling)
            }
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
            /// `"shared"`: both masks from one pair of random numbers (upstream); absent
            /// (stores written before it existed): independent pairs.
            public var maskValues: String?
            public var generator: String
            public init(shift: Double, shiftP: Double, timeMask: Int, freqMask: Int, timeMaskReferenceFrames: Int? = nil,
                        maskValues: String? = "shared", generator: String = LogitStore.generatorDescription) {
                (self.shift, self.shiftP, self.timeMask, self.freqMask) = (shift, shiftP, timeMask, freqMask)
                (self.timeMaskReferenceFrames, self.maskValues, self.generator) = (timeMaskReferenceFrames, maskValues, generator)
            }
            /// The augmentation of `CedAugmentation` `a`.
            public init(_ a: CedAugmentation) {
                self.init(shift: a.shift, shiftP: a.shiftProbability, timeMask: a.timeMask, freqMask: a.freqMask,
                          timeMaskReferenceFrames: a.timeMaskReference, maskValues: a.sharedMaskValues ? "shared" : nil)
            }
            enum CodingKeys: String, CodingKey {
                case shift, generator
                case shiftP = "shift_p", timeMask = "time_mask", freqMask = "freq_mask"
                case timeMaskReferenceFrames = "time_mask_reference_frames", maskValues = "mask_values"
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

        public init(teachers: [Teacher], classes: [String], featureExtractor: CedFeatureExtractorConfig = .init(), augmentation: Augmentation,
                    seed: UInt64 = 0, topk: Int, chunkLength: Double, epochs: Int, precision: CedPrecision = .fp32, shards: Int = 1) {
            self.teachers = teachers
            self.classes = classes
            self.featureExtractor = featureExtractor
            self.augmentation = augmentation
            self.seed = seed
            self.topk = topk
            self.chunkLength = chunkLength
            self.epochs = epochs
            self.precision = precision
            self.shards = shards
        }

        enum CodingKeys: String, CodingKey {
            case format, version, teachers, classes, augmentation, seed, topk, epochs, precision, shards
            case featureExtractor = "feature_extractor", chunkLength = "chunk_length"
        }

        public var cedAugmentation: CedAugmentation {
            CedAugmentation(shift: augmentation.shift, shiftProbability: augmentation.shiftP,
                            timeMask: augmentation.timeMask, freqMask: augmentation.freqMask,
                            timeMaskReference: augmentation.timeMaskReferenceFrames, sharedMaskValues: augmentation.maskValues == "shared")
        }

        func encoded() throws -> Data {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            return try enc.encode(self) + Data("\n".utf8)
        }
    }

    /// One item: a chunk of one file.
    public struct Item: Sendable, Equatable, Hashable {
        /// Relative to the data root.
        public var path: String
        /// The SHA-256 of the whole file, lower-case hex.
        public var sha256: String
        /// The chunk's first and end sample.
        public var start: Int
        public var end: Int
        public init(path: String, sha256: String, start: Int, end: Int) {
            (self.path, self.sha256, self.start, self.end) = (path, sha256, start, end)
        }
    }

    /// One stored view: its seed and the ensemble's top K (classes and float16 bit patterns).
    public struct View: Sendable, Equatable {
        public var seed: UInt32
        public var classes: [UInt16]
        public var values: [UInt16]
        /// (class, probability) pairs, best first.
        public var topk: [(Int, Float)] { zip(classes, values).map { (Int($0), Float(Float16(bitPattern: $1))) } }
    }

    public static let generatorDescription =
        "seed(path, start, epoch) = low 32 bits of key(key(key(seed, fnv1a64(path)), start), epoch), key(p, x) = splitmix64(p ^ splitmix64(x)); "
        + "draws from xoshiro256** (seeded through splitmix64 with the 32-bit seed): shift applied if u0 < shift_p, fraction (2·u1 − 1)·shift, "
        + "time mask width u2·time_mask at u3·(frames − width), frequency mask width u4·freq_mask at u5·(bins − width) "
        + "(mask_values \"shared\": u2, u3 in place of u4, u5, as upstream)"

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
        guard metadata.version == 1 || metadata.version == 2 else {
            throw DistillationError(.store, file: url.path, reason: "format version \(metadata.version); this ced reads versions 1 and 2")
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

    /// Shard i, opened (its index read; views are read when asked for).
    func shard(_ i: Int) throws -> LogitShard {
        try LogitShard(url: shardURL(i), epochs: metadata.epochs, topk: metadata.topk)
    }

    /// Everything stored, over the shards present, in store order (by path, then start).
    /// Loads the whole store: for small stores and tests (`Reader` reads a large one by offset).
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
        let r = try reader()
        var out = Contents(items: [], seeds: [], indices: [], values: [], audioBytes: r.audioBytes)
        try r.forEachInOrder { item, seeds, indices, values in
            out.items.append(item); out.seeds += seeds; out.indices += indices; out.values += values
        }
        return out
    }

    /// A reader of the shards present.
    public func reader() throws -> Reader { try Reader(self) }

    /// The store's digest: SHA-256 over, in store order, each item's SHA-256 of its
    /// serialisation (its path, file hash, start and end, each followed by a newline, then per
    /// epoch the seed, 4 bytes, and the K (class, value) pairs, 2 + 2 bytes, little-endian). Equal
    /// stores have equal digests however they were written (sharded, resumed, version 1 or
    /// 2), and computing it reads each shard once, in order: memory does not grow with the store.
    public func digest() throws -> String { try reader().digest() }

    static func digest(_ c: Contents, epochs: Int, topk: Int) -> String {
        var h = SHA256Hasher()
        var buf = [UInt8]()
        for (i, it) in c.items.enumerated() {
            var item = SHA256Hasher()
            digestItem(&item, &buf, it, seeds: c.seeds[(i * epochs) ..< ((i + 1) * epochs)],
                       indices: c.indices[(i * epochs * topk) ..< ((i + 1) * epochs * topk)],
                       values: c.values[(i * epochs * topk) ..< ((i + 1) * epochs * topk)], epochs: epochs, topk: topk)
            item.finalize().withUnsafeBytes { h.update($0) }
        }
        return h.finalizeHex()
    }

    static func digestItem(_ h: inout SHA256Hasher, _ buf: inout [UInt8], _ it: Item, seeds: ArraySlice<UInt32>, indices: ArraySlice<UInt16>,
                           values: ArraySlice<UInt16>, epochs: Int, topk: Int) {
        buf.removeAll(keepingCapacity: true)
        buf += Array("\(it.path)\n\(it.sha256)\n\(it.start)\n\(it.end)\n".utf8)
        let s0 = seeds.startIndex, i0 = indices.startIndex, v0 = values.startIndex
        buf.reserveCapacity(buf.count + epochs * (4 + 4 * topk))
        for e in 0..<epochs {
            let seed = seeds[s0 + e]
            buf.append(UInt8(truncatingIfNeeded: seed)); buf.append(UInt8(truncatingIfNeeded: seed >> 8))
            buf.append(UInt8(truncatingIfNeeded: seed >> 16)); buf.append(UInt8(truncatingIfNeeded: seed >> 24))
            for j in 0..<topk {
                let i = indices[i0 + e * topk + j], v = values[v0 + e * topk + j]
                buf.append(UInt8(truncatingIfNeeded: i)); buf.append(UInt8(truncatingIfNeeded: i >> 8))
                buf.append(UInt8(truncatingIfNeeded: v)); buf.append(UInt8(truncatingIfNeeded: v >> 8))
            }
        }
        buf.withUnsafeBytes { h.update($0) }
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
        let r = try reader()
        let m = metadata
        guard r.count > 0 else { return (0, 0, []) }
        var rng = TrainingRandom(seed: seed ^ 0x5645_5249_4659)
        // `sample` distinct items (a partial Fisher–Yates over the item numbers), each in one epoch.
        var chosen: [Int: Int] = [:]
        var picks: [(Int, Int)] = []
        for t in 0..<min(max(1, sample), r.count) {
            let u = t + rng.nextInt(below: r.count - t)
            let a = chosen[t] ?? t, b = chosen[u] ?? u
            chosen[u] = a
            picks.append((b, rng.nextInt(below: m.epochs)))
        }
        let extractor = try CedFeatureExtractor(config: m.featureExtractor)
        var matched = 0
        var mismatches: [String] = []
        var waves: [String: [Float]] = [:]
        for (i, e) in picks {
            let it = try r.item(i)
            let url = dataRoot.appendingPathComponent(it.path)
            if waves[it.path] == nil {
                guard try CedEmbedder.contentHash(of: url) == it.sha256 else {
                    mismatches.append("\(it.path): the file changed since its logits were computed")
                    continue
                }
                waves[it.path] = try Waveform(contentsOf: url, sampleRate: m.featureExtractor.samplingRate).samples
            }
            guard it.end <= waves[it.path]!.count else {
                mismatches.append("\(it.path): shorter than its stored chunk [\(it.start), \(it.end))")
                continue
            }
            let piece = Array(waves[it.path]![it.start ..< it.end])
            let view = try r.view(i, epoch: e)
            let expectSeed = LogitStore.viewSeed(m.seed, path: it.path, start: it.start, epoch: e)
            let p = try LogitExtractionJob.ensemble(teachers, extractor: extractor, samples: piece, seeds: [view.seed],
                                                    augmentation: m.cedAugmentation)[0]
            let stored = view.topk
            var ok = view.seed == expectSeed
            var why = ok ? "" : "stored seed \(view.seed) is not the documented one"
            let kth = Float(Float16(stored.last!.1))
            for (idx, v) in stored where ok {
                let again = idx < p.count ? Float(Float16(p[idx])) : .nan
                if again != v { ok = false; why = "class \(idx): stored \(v), recomputed \(idx < p.count ? p[idx] : .nan)" }
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

    /// Bytes of the store's files (partial blocks included), audio packs not counted.
    public var bytesOnDisk: Int { bytes { !$0.hasPrefix("audio-") && !$0.hasPrefix(".audio-") } }

    /// Bytes of the audio packs (`ced distill pack`), unfinished ones included.
    public var audioPackBytes: Int { bytes { $0.hasPrefix("audio-") || $0.hasPrefix(".audio-") } }

    private func bytes(_ include: (String) -> Bool) -> Int {
        let fm = FileManager.default
        guard let e = fm.enumerator(at: directory, includingPropertiesForKeys: [.fileSizeKey]) else { return 0 }
        var total = 0
        for case let u as URL in e where include(u.lastPathComponent) {
            total += (try? u.resourceValues(forKeys: [.fileSizeKey]).fileSize) ?? 0
        }
        return total
    }

    /// Lower-case hex of bytes.
    static func hex<C: Collection<UInt8>>(_ bytes: C) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(2 * bytes.count)
        for b in bytes { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
        return String(decoding: out, as: UTF8.self)
    }

    /// The bytes of a hex string (empty when it is not hex).
    static func hexBytes(_ hex: String) -> [UInt8] {
        let u = Array(hex.utf8)
        guard u.count % 2 == 0 else { return [] }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case 48...57: return c - 48
            case 97...102: return c - 87
            case 65...70: return c - 55
            default: return nil
            }
        }
        var out = [UInt8]()
        out.reserveCapacity(u.count / 2)
        for i in stride(from: 0, to: u.count, by: 2) {
            guard let a = nibble(u[i]), let b = nibble(u[i + 1]) else { return [] }
            out.append(a << 4 | b)
        }
        return out
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
