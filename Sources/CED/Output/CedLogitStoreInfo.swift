import Foundation

/// What `ced distill info` says about a logit store: items, epochs, teachers, shards, size
/// and digest, as text lines or as a JSON document.
public struct CedLogitStoreInfo {
    public let store: LogitStore
    /// Items in the shards present.
    public let items: Int
    /// The size of the audio files the items come from.
    public let audioBytes: Int
    /// The digest of the store's contents (`LogitStore.digest()`; the whole store is read).
    public let digest: String
    /// Audio packs (`ced distill pack`): shards packed, and whether every present logit shard has one.
    public let audioShards: [Int]

    public init(_ store: LogitStore) throws {
        self.store = store
        let r = try store.reader()
        items = r.count
        audioBytes = r.audioBytes
        digest = try r.digest()
        audioShards = AudioPack.presentShards(of: store)
    }

    private var views: Int { items * store.metadata.epochs }

    /// A pretty-printed JSON object with sorted keys.
    public func json() throws -> String {
        let m = store.metadata, bytes = store.bytesOnDisk
        var o: [String: Any] = [
            "store": store.directory.path, "format": m.format, "version": m.version, "items": items, "epochs": m.epochs,
            "topk": m.topk, "classes": m.classes.count, "chunk_length": m.chunkLength, "seed": m.seed,
            "teachers": m.teachers.map { ["source": $0.source, "weights": $0.weights, "embed_dim": $0.embedDim, "depth": $0.depth] },
            "shards": ["count": m.shards, "complete": store.presentShards, "missing": store.missingShards],
            "audio_packed_shards": audioShards, "audio_pack_bytes": store.audioPackBytes,
            "complete": store.isComplete, "bytes_on_disk": bytes, "audio_bytes": audioBytes, "digest": digest,
        ]
        if views > 0 { o["bytes_per_item_epoch"] = Double(bytes) / Double(views) }
        if audioBytes > 0 { o["ratio_to_audio"] = Double(bytes) / Double(audioBytes) }
        return String(decoding: try JSONSerialization.data(withJSONObject: o, options: [.prettyPrinted, .sortedKeys]), as: UTF8.self)
    }

    /// One line per fact (a line per teacher).
    public var text: String {
        let m = store.metadata, bytes = store.bytesOnDisk, audio = audioBytes
        var lines = ["store      \(store.directory.path) (\(m.format) v\(m.version))",
                     "items      \(items) (chunks of \(m.chunkLength) s) × \(m.epochs) epochs, "
                        + "top \(m.topk) of \(m.classes.count) classes"]
        lines += m.teachers.map { "teacher    \($0.source) (embed_dim \($0.embedDim), depth \($0.depth), weights \($0.weights))" }
        let missing = store.missingShards.map { "\($0)/\(m.shards)" }.joined(separator: ", ")
        lines.append("shards     \(store.presentShards.count) of \(m.shards) complete" + (missing.isEmpty ? "" : "; missing: \(missing)"))
        lines.append("audio      " + (audioShards.isEmpty ? "not packed (training decodes the files; ced distill pack writes it once)"
                                      : "\(audioShards.count) of \(m.shards) shards packed (\(store.audioPackBytes) bytes)"))
        var size = "size       \(bytes) bytes"
        if views > 0 { size += String(format: ", %.1f bytes per item-epoch", Double(bytes) / Double(views)) }
        if audio > 0 { size += String(format: ", %.2f %% of the audio", 100 * Double(bytes) / Double(audio)) + " (\(audio) bytes)" }
        return (lines + [size, "complete   \(store.isComplete)", "digest     \(digest)"]).joined(separator: "\n")
    }
}
