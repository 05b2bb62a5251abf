import Foundation

/// Options of `LogitExtractionJob` (`ced distill logits`).
public struct LogitExtractionOptions: Sendable, Equatable {
    /// Augmented views per item (upstream 40).
    public var epochs: Int = 40
    /// Classes kept per view (upstream 20).
    public var topk: Int = 20
    /// Seconds per item (upstream 10).
    public var chunkLength: Double = 10
    /// Seeds every view's augmentation (see `LogitStore`).
    public var seed: UInt64 = 0
    /// Upstream's defaults: shift ±0.5 of the chunk with p 0.5, time mask < 192 frames (for a
    /// 10 s chunk of 1001 frames; proportionally less on shorter items), frequency mask < 24
    /// bins, both masks from one pair of random numbers.
    public var augmentation = CedAugmentation(shift: 0.5, shiftProbability: 0.5, timeMask: 192, freqMask: 24, timeMaskReference: 1001,
                                              sharedMaskValues: true)
    /// The teachers' inference precision.
    public var precision: CedPrecision = .fp32
    /// This process computes shard `shard.index` of `shard.count`.
    public var shard: (index: Int, count: Int) = (0, 1)
    /// Items computed at once (nil: one per core).
    public var jobs: Int?

    public init() {}

    public static func == (a: Self, b: Self) -> Bool {
        a.epochs == b.epochs && a.topk == b.topk && a.chunkLength == b.chunkLength && a.seed == b.seed
            && a.augmentation == b.augmentation && a.precision == b.precision && a.shard == b.shard && a.jobs == b.jobs
    }

    /// A shard from `i/n`, or from the environment for `auto` (`CedShard(parsing:)`: a Slurm
    /// array or a Kubernetes Indexed Job).
    public static func parseShard(_ text: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> (Int, Int) {
        do {
            let s = try CedShard(parsing: text, environment: environment)
            return (s.index, s.count)
        } catch let e as BulkJobError {
            throw DistillationError(.input, reason: e.reason)
        }
    }
}

/// What a running extraction reports.
public enum LogitExtractionEvent: Sendable {
    /// Items done in this shard (including those a resumed run found done).
    case progress(done: Int, total: Int)
    case resumed(items: Int)
    case warning(String)
}

/// `ced distill logits`: every teacher judges every augmented view of every chunk; the
/// ensemble's mean probability, its top k and the view's seed go to the store. A killed run
/// started again continues after its last finished block, and a shard's file is the same
/// bytes either way.
public struct LogitExtractionJob {
    public var teachers: [(source: String, checkpoint: PretrainedCheckpoint)]
    public var files: [URL]
    /// The folder item paths are relative to (nil: the files' common folder).
    public var dataRoot: URL?
    public var store: URL
    public var options: LogitExtractionOptions

    public init(teachers: [(source: String, checkpoint: PretrainedCheckpoint)], files: [URL], dataRoot: URL? = nil,
                store: URL, options: LogitExtractionOptions = .init()) {
        self.teachers = teachers
        self.files = files
        self.dataRoot = dataRoot
        self.store = store
        self.options = options
    }

    /// The files' common folder.
    public static func commonRoot(_ files: [URL]) -> URL {
        guard var parts = files.first?.standardizedFileURL.deletingLastPathComponent().pathComponents else {
            return URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
        }
        for f in files.dropFirst() {
            let p = f.standardizedFileURL.deletingLastPathComponent().pathComponents
            var n = 0
            while n < min(parts.count, p.count) && parts[n] == p[n] { n += 1 }
            parts = Array(parts.prefix(n))
        }
        return URL(fileURLWithPath: parts.count <= 1 ? "/" : "/" + parts.dropFirst().joined(separator: "/"))
    }

    /// The ensemble's class list and feature configuration, checked across teachers.
    static func checkTeachers(_ teachers: [(source: String, checkpoint: PretrainedCheckpoint)]) throws -> [String] {
        guard let first = teachers.first else { throw DistillationError(.teachers, reason: "give at least one --teacher") }
        func classes(_ c: CedConfig) -> [String] { (0..<c.outputdim).map { c.label(for: $0) } }
        let reference = classes(first.checkpoint.config)
        for t in teachers.dropFirst() {
            let other = classes(t.checkpoint.config)
            if other != reference {
                let diff = zip(reference, other).enumerated().filter { $0.element.0 != $0.element.1 }.prefix(5)
                    .map { "class \($0.offset): '\($0.element.0)' vs '\($0.element.1)'" }
                let sizes = other.count != reference.count ? " (\(reference.count) vs \(other.count) classes)" : ""
                throw DistillationError(.teachers, reason: "teachers \(first.source) and \(t.source) have different class lists\(sizes): \(diff.joined(separator: ", "))")
            }
            if t.checkpoint.featureExtractorConfig != first.checkpoint.featureExtractorConfig {
                throw DistillationError(.teachers, reason: "teachers \(first.source) and \(t.source) have different feature extractors (preprocessor_config.json); the ensemble judges one log-mel")
            }
        }
        return reference
    }

    public func metadata() throws -> LogitStore.Metadata {
        let classes = try Self.checkTeachers(teachers)
        let a = options.augmentation
        return LogitStore.Metadata(
            teachers: teachers.map { t in
                let c = t.checkpoint.config
                var h: UInt64 = 0
                for name in t.checkpoint.weights.names {
                    let v = t.checkpoint.weights[name]!.scalars.withUnsafeBufferPointer { CedEmbedder.digest64($0) }
                    h = TrainingNoise.key(h ^ LogitStore.fnv1a64(name), v)
                }
                return .init(source: t.source, weights: String(format: "%016llx", h), embedDim: c.embedDim, depth: c.depth,
                             numHeads: c.numHeads, pooling: c.pooling)
            },
            classes: classes, featureExtractor: teachers[0].checkpoint.featureExtractorConfig,
            augmentation: .init(a),
            seed: options.seed, topk: min(options.topk, classes.count), chunkLength: options.chunkLength, epochs: options.epochs,
            precision: options.precision, shards: options.shard.count)
    }

    /// Runs this process's shard; returns the number of items it holds.
    @discardableResult
    public func run(events: (@Sendable (LogitExtractionEvent) -> Void)? = nil) throws -> Int {
        var o = options
        guard o.epochs >= 1, o.topk >= 1, o.chunkLength > 0, o.augmentation.timeMask >= 0, o.augmentation.freqMask >= 0 else {
            throw DistillationError(.input, reason: "epochs and topk must be at least 1, the chunk length positive, the masks ≥ 0")
        }
        guard o.shard.count >= 1, o.shard.index >= 0, o.shard.index < o.shard.count else {
            throw DistillationError(.input, reason: "shard \(o.shard.index)/\(o.shard.count): the index must lie in 0..<count")
        }
        let meta = try metadata()
        if o.topk > meta.classes.count {
            events?(.warning("--topk \(o.topk) exceeds the teachers' \(meta.classes.count) classes: every class is kept"))
            o.topk = meta.classes.count
        }
        guard meta.classes.count <= Int(UInt16.max) + 1 else { throw DistillationError(.input, reason: "more than 65536 classes") }
        guard !files.isEmpty else { throw DistillationError(.input, reason: "no audio files given") }
        let fm = FileManager.default
        try fm.createDirectory(at: store, withIntermediateDirectories: true)
        // store.json: written by the first shard, the same from every other.
        let metaURL = store.appendingPathComponent("store.json")
        let encoded = try meta.encoded()
        if fm.fileExists(atPath: metaURL.path) {
            let existing = try LogitStore(directory: store).metadata
            if existing != meta {
                throw DistillationError(.store, file: store.path, reason: "the store holds logits of other settings (\(Self.difference(existing, meta))); use another --output or the same settings")
            }
        } else {
            try Self.atomicWrite(encoded, to: metaURL)
        }
        let root = (dataRoot ?? Self.commonRoot(files)).standardizedFileURL
        let sorted = try files.map { f -> (String, URL) in
            let p = f.standardizedFileURL.path
            guard p.hasPrefix(root.path == "/" ? "/" : root.path + "/") else {
                throw DistillationError(.input, file: p, reason: "is not inside the data root \(root.path)")
            }
            return (String(p.dropFirst(root.path == "/" ? 1 : root.path.count + 1)), f)
        }.sorted { $0.0 < $1.0 }
        for (a, b) in zip(sorted, sorted.dropFirst()) where a.0 == b.0 {
            throw DistillationError(.input, file: a.1.path, reason: "is listed twice")
        }
        // Where the items' audio is (for the trainer; not part of the logical content).
        try? Self.atomicWrite(Data((root.path + "\n").utf8), to: store.appendingPathComponent("data_root"))
        let mine = CedShard(uncheckedIndex: o.shard.index, count: o.shard.count).select(sorted)
        let shardURL = store.appendingPathComponent(LogitStore.shardName(o.shard.index, of: o.shard.count))
        let shardMetadata = ["format": "\(LogitStore.formatName) \(LogitStore.formatVersion)", "shard": "\(o.shard.index)/\(o.shard.count)"]
        if fm.fileExists(atPath: shardURL.path) {
            let done = try LogitShard(url: shardURL, epochs: o.epochs, topk: o.topk).count
            events?(.progress(done: mine.count, total: mine.count))
            return done
        }
        let partial = store.appendingPathComponent(String(format: ".partial-%05d-of-%05d", o.shard.index, o.shard.count))
        try fm.createDirectory(at: partial, withIntermediateDirectories: true)
        // Blocks already finished: part-<first>-<end>.safetensors over file positions.
        var done: [(Int, Int, URL)] = []
        for name in (try? fm.contentsOfDirectory(atPath: partial.path)) ?? [] where name.hasPrefix("part-") && name.hasSuffix(".safetensors") {
            let f = name.dropFirst(5).dropLast(12).split(separator: "-").compactMap { Int($0) }
            if f.count == 2 { done.append((f[0], f[1], partial.appendingPathComponent(name))) }
        }
        done.sort { $0.0 < $1.0 }
        var next = 0
        var kept: [URL] = []
        for (a, b, u) in done where a == next { kept.append(u); next = b }
        if next > 0 { events?(.resumed(items: next)) }

        let models = try teachers.map { try CedForAudioClassification(config: $0.checkpoint.config, weights: $0.checkpoint.weights, precision: o.precision) }
        let extractor = try CedFeatureExtractor(config: meta.featureExtractor)
        let sr = meta.featureExtractor.samplingRate
        let chunk = max(1, Int((o.chunkLength * Double(sr)).rounded()))
        let workers = max(1, o.jobs ?? ProcessInfo.processInfo.activeProcessorCount)
        events?(.progress(done: next, total: mine.count))
        // Blocks of files: each written as soon as it is done.
        // (at least four blocks per shard, so a kill loses little)
        let blockFiles = max(1, min(64, 4 * workers, (mine.count + 3) / 4))
        var position = next
        while position < mine.count {
            let end = min(mine.count, position + blockFiles)
            let block = Array(mine[position..<end])
            final class Results: @unchecked Sendable {
                let lock = NSLock()
                var items: [[ (LogitStore.Item, [UInt32], [UInt16], [UInt16]) ]?]
                var error: Error?
                var bytes = 0
                init(_ n: Int) { items = .init(repeating: nil, count: n) }
            }
            let results = Results(block.count)
            let seed = o.seed, epochs = o.epochs, k = o.topk, aug = o.augmentation
            CedCompute.forEachConcurrently(block.count, workers: min(workers, block.count)) { j in
                let (rel, url) = block[j]
                do {
                    let hash = try CedEmbedder.contentHash(of: url)
                    let size = (try? fm.attributesOfItem(atPath: url.path)[.size] as? Int) ?? 0
                    let wave = try Waveform(contentsOf: url, sampleRate: sr).samples
                    guard !wave.isEmpty else { throw DistillationError(.input, file: url.path, reason: "holds no audio samples") }
                    var out: [(LogitStore.Item, [UInt32], [UInt16], [UInt16])] = []
                    for (s, e) in Self.chunks(samples: wave.count, chunk: chunk, minimum: sr / 10) {
                        let piece = Array(wave[s..<e])
                        let seeds = (0..<epochs).map { LogitStore.viewSeed(seed, path: rel, start: s, epoch: $0) }
                        let probs = try Self.ensemble(models, extractor: extractor, samples: piece, seeds: seeds, augmentation: aug)
                        var idx: [UInt16] = [], val: [UInt16] = []
                        for p in probs {
                            let (i, v) = Self.topk(p, k)
                            idx += i
                            val += v
                        }
                        out.append((LogitStore.Item(path: rel, sha256: hash, start: s, end: e), seeds, idx, val))
                    }
                    results.lock.lock(); results.items[j] = out; results.bytes += size; results.lock.unlock()
                    return true
                } catch {
                    results.lock.lock(); results.error = results.error ?? error; results.lock.unlock()
                    return false
                }
            }
            if let e = results.error { throw e }
            var c = LogitShardContent(audioBytes: results.bytes)
            for rows in results.items { for r in rows! { c.items.append(r.0); c.seeds += r.1; c.indices += r.2; c.values += r.3 } }
            let part = partial.appendingPathComponent("part-\(position)-\(end).safetensors")
            try LogitShardWriter.write(c, epochs: o.epochs, topk: o.topk, metadata: shardMetadata, to: part)
            kept.append(part)
            position = end
            events?(.progress(done: position, total: mine.count))
        }
        // Merge the blocks into the shard file, one block in memory at a time.
        let parts = try kept.map { try LogitShard(url: $0, epochs: o.epochs, topk: o.topk) }
        let writer = try LogitShardWriter(url: shardURL, items: parts.reduce(0) { $0 + $1.count }, epochs: o.epochs, topk: o.topk,
                                          metadata: shardMetadata)
        for p in parts { try writer.append(try p.content()) }
        try writer.finish()
        try? fm.removeItem(at: partial)
        return writer.items
    }

    /// Chunks `[start, end)` of a file: consecutive `chunk`-sample pieces; a last partial
    /// piece is kept (as upstream) unless shorter than `minimum` samples (0.1 s) while an
    /// earlier piece exists.
    public static func chunks(samples n: Int, chunk: Int, minimum: Int) -> [(Int, Int)] {
        var out: [(Int, Int)] = []
        var s = 0
        while s < n {
            let e = min(n, s + chunk)
            if e - s < minimum && !out.isEmpty { break }
            out.append((s, e))
            s = e
        }
        return out
    }

    /// The ensemble's probabilities for every seed's view of `samples`: the shifted waveform,
    /// its log-mel, the masks, then the mean over teachers of their probabilities (sigmoid
    /// of the logits for `logit` pooling).
    public static func ensemble(_ models: [CedForAudioClassification], extractor: CedFeatureExtractor, samples: [Float],
                                seeds: [UInt32], augmentation: CedAugmentation) throws -> [[Float]] {
        let mels: [Tensor] = try seeds.map { seed in
            let d = augmentation.draw(seed: UInt64(seed))
            var mel = try extractor(CedAugmentation.shifted(samples, draw: d))
            augmentation.mask(&mel, draw: d)
            return mel
        }
        var sum = [[Double]](repeating: [], count: seeds.count)
        for m in models {
            let outs = try m(mels)
            for (v, o) in outs.enumerated() {
                let p = o.scalars.map { m.config.pooling == .logit ? Double(1 / (1 + expf(-$0))) : Double($0) }
                sum[v] = sum[v].isEmpty ? p : zip(sum[v], p).map { $0 + $1 }
            }
        }
        return sum.map { $0.map { Float($0 / Double(models.count)) } }
    }

    /// The k largest probabilities (ties: lower class first) as (indices, float16 bits).
    static func topk(_ p: [Float], _ k: Int) -> ([UInt16], [UInt16]) {
        let order = p.indices.sorted { p[$0] > p[$1] || (p[$0] == p[$1] && $0 < $1) }.prefix(k)
        return (order.map { UInt16($0) }, order.map { Float16(p[$0]).bitPattern })
    }

    static func difference(_ a: LogitStore.Metadata, _ b: LogitStore.Metadata) -> String {
        var d: [String] = []
        if a.teachers != b.teachers { d.append("teachers") }
        if a.classes != b.classes { d.append("classes") }
        if a.featureExtractor != b.featureExtractor { d.append("feature extractor") }
        if a.augmentation != b.augmentation { d.append("augmentation") }
        if a.seed != b.seed { d.append("seed \(a.seed) vs \(b.seed)") }
        if a.topk != b.topk { d.append("topk \(a.topk) vs \(b.topk)") }
        if a.chunkLength != b.chunkLength { d.append("chunk length \(a.chunkLength) vs \(b.chunkLength)") }
        if a.epochs != b.epochs { d.append("epochs \(a.epochs) vs \(b.epochs)") }
        if a.precision != b.precision { d.append("precision") }
        if a.shards != b.shards { d.append("\(a.shards) shards vs \(b.shards)") }
        return d.isEmpty ? "format" : d.joined(separator: ", ")
    }

    static func atomicWrite(_ data: Data, to url: URL) throws {
        let tmp = url.deletingLastPathComponent().appendingPathComponent(".tmp-\(UUID().uuidString)")
        try data.write(to: tmp)
        guard rename(tmp.path, url.path) == 0 else { throw DistillationError(.store, file: url.path, reason: String(cString: strerror(errno))) }
    }
}
