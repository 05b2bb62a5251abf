import Foundation

/// The items' audio written once beside a logit store, so that training reads samples by
/// offset instead of decoding (and holding) every file: upstream packs AudioSet into HDF5
/// shards of 50,000 clips for the same reason. `ced distill pack STORE` writes, for each
/// logit shard, `audio-IIIII-of-NNNNN.safetensors`:
///
/// | tensor | dtype | shape | what |
/// | --- | --- | --- | --- |
/// | `offsets` | I64 | `[m + 1]` | item j's samples are `audio[offsets[j] ..< offsets[j+1]]` |
/// | `audio` | I16 | `[samples]` | every item's chunk at the store's sampling rate, in the shard's item order, `round(x · 32768)` clipped to ±32767 |
///
/// `__metadata__`: `format` (`ced-audio-pack 1`), `shard` (`i/n`), `sample_rate`,
/// `items_sha256` (the SHA-256 of the shard's item index, `LogitStore.itemsDigest`: a pack
/// belongs to one logit shard, and the trainer refuses any other), `audio_sha256` (the
/// SHA-256 of the `audio` tensor's bytes; `ced distill verify --audio` checks it) and
/// `clipped` (samples beyond ±1 that were clipped).
///
/// Each file is decoded once as the extraction decoded it (any format, resampled), checked
/// against the SHA-256 the store holds, and its items' chunks written; 16-bit 16 kHz files are
/// packed exactly, others to 16-bit precision. A killed run started again continues after its
/// last finished block (`.audio-….partial` and `.progress` beside the store); a finished
/// pack appears whole.
public enum AudioPack {
    public static let formatName = "ced-audio-pack"
    public static let formatVersion = 1

    public static func fileName(_ i: Int, of n: Int) -> String { String(format: "audio-%05d-of-%05d.safetensors", i, n) }

    /// Logit shards whose pack is there.
    public static func presentShards(of store: LogitStore) -> [Int] {
        let n = store.metadata.shards
        return (0..<n).filter { FileManager.default.fileExists(atPath: store.directory.appendingPathComponent(fileName($0, of: n)).path) }
    }

    /// What a running pack reports.
    public enum Event: Sendable {
        /// Items packed in this shard so far (from worker threads' results, in order).
        case progress(shard: Int, done: Int, total: Int)
        case resumed(shard: Int, items: Int)
    }

    /// Packs the audio of the store's present logit shards that `shard` selects (all by
    /// default), reading the files under `dataRoot`. Returns the shards packed now (a shard
    /// already packed is skipped).
    @discardableResult
    public static func pack(_ store: LogitStore, dataRoot: URL, shard: CedShard = .whole, jobs: Int? = nil,
                            events: (@Sendable (Event) -> Void)? = nil) throws -> [Int] {
        let n = store.metadata.shards
        var packed: [Int] = []
        for i in store.presentShards where shard.contains(position: i) {
            let url = store.directory.appendingPathComponent(fileName(i, of: n))
            if FileManager.default.fileExists(atPath: url.path) { continue }
            try packShard(store, i, dataRoot: dataRoot, to: url, jobs: jobs ?? ProcessInfo.processInfo.activeProcessorCount, events: events)
            packed.append(i)
        }
        return packed
    }

    static func packShard(_ store: LogitStore, _ i: Int, dataRoot: URL, to url: URL, jobs: Int,
                          events: (@Sendable (Event) -> Void)?) throws {
        let shard = try store.shard(i)
        let m = shard.count, sr = store.metadata.featureExtractor.samplingRate
        let paths = try shard.paths()
        var offsets = [Int64](repeating: 0, count: m + 1)
        for j in 0..<m { offsets[j + 1] = offsets[j] + Int64(shard.ends[j] - shard.starts[j]) }
        let itemsDigest = try LogitStore.itemsDigest(shard)
        // Files: runs of items with one path.
        var files: [(path: String, first: Int, end: Int)] = []
        var j = 0
        while j < m {
            var e = j + 1
            while e < m && paths[e] == paths[j] { e += 1 }
            files.append((paths[j], j, e))
            j = e
        }
        let dataAt = Self.headerLength(items: m, samples: Int(offsets[m]), shard: "\(i)/\(store.metadata.shards)", sampleRate: sr)
        let partialURL = url.deletingLastPathComponent().appendingPathComponent("." + url.lastPathComponent + ".partial")
        let progressURL = url.deletingLastPathComponent().appendingPathComponent("." + url.lastPathComponent + ".progress")
        // Resume: the progress file names the items digest and the files finished.
        var startFile = 0, clipped = 0
        if let p = try? JSONSerialization.jsonObject(with: Data(contentsOf: progressURL)) as? [String: Any],
           p["items_sha256"] as? String == itemsDigest, let done = p["files"] as? Int, done <= files.count,
           FileManager.default.fileExists(atPath: partialURL.path) {
            startFile = done
            clipped = p["clipped"] as? Int ?? 0
            if done > 0 { events?(.resumed(shard: i, items: files[done - 1].end)) }
        }
        let out = try PositionalFile(partialURL, writable: true, truncate: startFile == 0)
        try out.truncate(to: dataAt + 2 * Int(offsets[m]) + 8 * (m + 1))
        events?(.progress(shard: i, done: startFile > 0 ? files[startFile - 1].end : 0, total: m))
        let block = max(1, min(256, 8 * jobs))
        var f = startFile
        while f < files.count {
            let end = min(files.count, f + block)
            final class Results: @unchecked Sendable {
                let lock = NSLock()
                var pcm: [[Int16]?]
                var clipped = 0
                var error: Error?
                init(_ n: Int) { pcm = .init(repeating: nil, count: n) }
            }
            let results = Results(end - f)
            let chunk = Array(files[f..<end])
            CedCompute.forEachConcurrently(chunk.count, workers: max(1, min(jobs, chunk.count))) { t in
                let (path, first, last) = chunk[t]
                let fileURL = dataRoot.appendingPathComponent(path)
                do {
                    let item = try shard.item(first)
                    guard FileManager.default.fileExists(atPath: fileURL.path) else {
                        throw DistillationError(.input, file: fileURL.path, reason: "an item's audio is missing; give the folder the logits were computed from with --data-root")
                    }
                    guard try CedEmbedder.contentHash(of: fileURL) == item.sha256 else {
                        throw DistillationError(.input, file: fileURL.path, reason: "has changed since its logits were computed (its SHA-256 differs from the store's)")
                    }
                    let wave = try Waveform(contentsOf: fileURL, sampleRate: sr).samples
                    var pcm: [Int16] = []
                    var clips = 0
                    for q in first..<last {
                        guard shard.ends[q] <= wave.count else {
                            throw DistillationError(.input, file: fileURL.path, reason: "is shorter (\(wave.count) samples) than its stored chunk [\(shard.starts[q]), \(shard.ends[q]))")
                        }
                        for x in wave[shard.starts[q] ..< shard.ends[q]] {
                            let v = (Double(x) * 32768).rounded()
                            if v > 32767 || v < -32767 { clips += 1 }
                            pcm.append(Int16(max(-32767, min(32767, v.isFinite ? v : 0))))
                        }
                    }
                    results.lock.lock(); results.pcm[t] = pcm; results.clipped += clips; results.lock.unlock()
                    return true
                } catch {
                    results.lock.lock(); results.error = results.error ?? error; results.lock.unlock()
                    return false
                }
            }
            if let e = results.error { throw e }
            for (t, file) in chunk.enumerated() {
                try out.write(results.pcm[t]!, at: dataAt + 2 * Int(offsets[file.first]))
            }
            clipped += results.clipped
            out.sync()
            f = end
            let progress = try JSONSerialization.data(withJSONObject: ["items_sha256": itemsDigest, "files": f, "clipped": clipped], options: [.sortedKeys])
            try LogitExtractionJob.atomicWrite(progress, to: progressURL)
            events?(.progress(shard: i, done: files[f - 1].end, total: m))
        }
        // The offsets, the audio digest (read back), the header; then in place.
        let offsetsAt = dataAt + 2 * Int(offsets[m])
        try out.write(offsets, at: offsetsAt)
        let header = Self.header(items: m, samples: Int(offsets[m]), metadata: [
            "format": "\(formatName) \(formatVersion)", "shard": "\(i)/\(store.metadata.shards)", "sample_rate": String(sr),
            "items_sha256": itemsDigest, "audio_sha256": try out.sha256(dataAt ..< offsetsAt), "clipped": String(format: "%015ld", clipped),
        ])
        try out.finish(header: header, room: dataAt, as: url)
        try? FileManager.default.removeItem(at: progressURL)
    }

    /// Checks the pack of every present logit shard: there, of its shard's items, offsets
    /// that fit them, the audio's SHA-256 the recorded one. Returns how many were checked.
    @discardableResult
    public static func verify(_ store: LogitStore) throws -> Int {
        let r = try store.reader()
        let missing = r.shardNumbers.filter { !presentShards(of: store).contains($0) }
        guard missing.isEmpty else {
            throw DistillationError(.store, file: store.directory.path, reason: "no audio pack for shard\(missing.count > 1 ? "s" : "") \(missing.map(String.init).joined(separator: ", ")) (ced distill pack writes them)")
        }
        _ = try Reader(r, checkAudio: true)
        return r.shardNumbers.count
    }

    static func specs(items m: Int, samples: Int) -> [RawSafeTensors.Spec] {
        [.init(name: "audio", dtype: "I16", shape: [samples], bytes: 2 * samples),
         .init(name: "offsets", dtype: "I64", shape: [m + 1], bytes: 8 * (m + 1))]
    }

    static func header(items m: Int, samples: Int, metadata: [String: String]) -> Data {
        RawSafeTensors.header(specs(items: m, samples: samples), metadata: metadata)
    }

    /// The header's length: its metadata has fixed widths (hex digests, a 15-digit count).
    static func headerLength(items m: Int, samples: Int, shard: String, sampleRate: Int) -> Int {
        let hex = String(repeating: "0", count: 64)
        return header(items: m, samples: samples, metadata: [
            "format": "\(formatName) \(formatVersion)", "shard": shard, "sample_rate": String(sampleRate), "items_sha256": hex,
            "audio_sha256": hex, "clipped": String(repeating: "0", count: 15),
        ]).count
    }

    /// The packs of a store's shards, read by offset.
    final class Reader: @unchecked Sendable {
        private let files: [Int: (file: RawSafeTensors.File, audioAt: Int, offsets: [Int64])]

        /// Opens the pack of every present logit shard of `reader`; throws unless each is
        /// there and belongs to its shard (the items digest). `checkAudio` also hashes the
        /// audio (`verify --audio`).
        init(_ reader: LogitStore.Reader, checkAudio: Bool = false) throws {
            let store = reader.store
            var files: [Int: (RawSafeTensors.File, Int, [Int64])] = [:]
            for (p, i) in reader.shardNumbers.enumerated() {
                let url = store.directory.appendingPathComponent(AudioPack.fileName(i, of: store.metadata.shards))
                let f = try RawSafeTensors.File(contentsOf: url)
                let shard = reader.shards[p]
                guard f.metadata["items_sha256"] == (try LogitStore.itemsDigest(shard)) else {
                    throw DistillationError(.store, file: url.path, reason: "the pack belongs to other items than \(LogitStore.shardName(i, of: store.metadata.shards)) (pack it again: delete it and run ced distill pack)")
                }
                guard f.metadata["sample_rate"] == String(store.metadata.featureExtractor.samplingRate) else {
                    throw DistillationError(.store, file: url.path, reason: "the pack's sampling rate \(f.metadata["sample_rate"] ?? "?") is not the store's")
                }
                let offsets = try f.values("offsets", "I64", as: Int64.self)
                let audio = try f.range("audio", "I16", size: 2)
                var fits = offsets.count == shard.count + 1 && offsets.first == 0
                if fits { fits = Int(offsets[shard.count]) * 2 == audio.count }
                for q in 0..<shard.count where fits {
                    let n = Int(offsets[q + 1] - offsets[q])
                    fits = n == shard.ends[q] - shard.starts[q]
                }
                guard fits else {
                    throw DistillationError(.store, file: url.path, reason: "the pack's offsets do not fit the items of its logit shard")
                }
                if checkAudio, try f.file.sha256(audio) != f.metadata["audio_sha256"] {
                    throw DistillationError(.store, file: url.path, reason: "the audio's SHA-256 is not the one recorded: the pack is damaged; delete it and pack again")
                }
                files[i] = (f, audio.lowerBound, offsets)
            }
            self.files = files
        }

        /// The samples (as floats, x / 32768) of item `item` of logit shard `shard`.
        func samples(shard: Int, item j: Int) throws -> [Float] {
            let (f, at, offsets) = files[shard]!
            let pcm = try f.file.array(at + 2 * Int(offsets[j]) ..< at + 2 * Int(offsets[j + 1]), as: Int16.self)
            return pcm.map { Float($0) / 32768 }
        }
    }
}

extension LogitStore {
    /// SHA-256 over a shard's item index (per item: path, SHA-256, start and end, each
    /// followed by a newline): what an audio pack records to name its logit shard.
    static func itemsDigest(_ shard: LogitShard) throws -> String {
        var h = SHA256Hasher()
        let paths = try shard.paths()
        let hashes = try shard.hashes()
        let hex = Array("0123456789abcdef".utf8)
        var line = [UInt8]()
        for j in 0..<shard.count {
            line.removeAll(keepingCapacity: true)
            line += Array(paths[j].utf8)
            line.append(0x0A)
            for b in hashes[32 * j ..< 32 * (j + 1)] { line.append(hex[Int(b >> 4)]); line.append(hex[Int(b & 15)]) }
            line += Array("\n\(shard.starts[j])\n\(shard.ends[j])\n".utf8)
            line.withUnsafeBytes { h.update($0) }
        }
        return h.finalizeHex()
    }
}
