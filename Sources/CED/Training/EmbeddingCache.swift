import Foundation

/// An on-disk cache of head inputs (clip embeddings), so that training a head again with
/// other hyperparameters does not run the encoder again.
///
/// Entries are keyed by the **model identity** (`CedEmbedder.modelIdentity`: a SHA-256 of
/// the encoder's configuration, the feature-extractor settings, the kind of vector the head
/// reads and every encoder tensor) and the **file content** (SHA-256 of the audio file's
/// bytes), so renaming or moving a file keeps its entry and editing it invalidates it. Layout:
///
///     <directory>/<model identity>/<first 2 hex digits>/<file sha256>.emb
///
/// Each entry is a small binary file (`CEDEMB01`, the vector length as a little-endian
/// `UInt32`, four reserved bytes, then the float32 values), written atomically, so concurrent
/// writers and interrupted runs never leave a half-written entry. An entry that does not
/// parse, has the wrong length or holds a non-finite value is treated as missing. The cache
/// can be deleted at any time.
public struct EmbeddingCache: Sendable {
    /// The cache root.
    public let directory: URL

    public init(directory: URL) {
        self.directory = directory
    }

    /// The default root: `$CED_CACHE_DIR/embeddings` when set, else
    /// `$XDG_CACHE_HOME/ced/embeddings`, else `~/Library/Caches/ced/embeddings` on Apple platforms and
    /// `~/.cache/ced/embeddings` elsewhere.
    public static func defaultDirectory(environment: [String: String] = ProcessInfo.processInfo.environment) -> URL {
        func value(_ k: String) -> String? {
            guard let v = environment[k], !v.isEmpty else { return nil }
            return (v as NSString).expandingTildeInPath
        }
        if let dir = value("CED_CACHE_DIR") { return URL(fileURLWithPath: dir).appendingPathComponent("embeddings") }
        if let xdg = value("XDG_CACHE_HOME") { return URL(fileURLWithPath: xdg).appendingPathComponent("ced/embeddings") }
        let home = value("HOME").map { URL(fileURLWithPath: $0) } ?? CedPlatform.homeDirectory(environment: environment)
        return home.appendingPathComponent(CedPlatform.cacheSubdirectory + "/ced/embeddings")
    }

    static let magic = Array("CEDEMB01".utf8)

    /// Where the entry for a model identity and file hash lives.
    public func entryURL(model: String, fileHash: String) -> URL {
        directory.appendingPathComponent(model).appendingPathComponent(String(fileHash.prefix(2)))
            .appendingPathComponent(fileHash + ".emb")
    }

    /// The cached vector, or nil when there is none (or it is unusable) or its length is
    /// not `dimension`.
    public func lookup(model: String, fileHash: String, dimension: Int) -> [Float]? {
        guard let data = try? Data(contentsOf: entryURL(model: model, fileHash: fileHash)) else { return nil }
        guard data.count == 16 + 4 * dimension, Array(data.prefix(8)) == Self.magic else { return nil }
        let values: [Float] = data.withUnsafeBytes { raw in
            let n = Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt32.self)))
            guard n == dimension else { return [] }
            return (0..<n).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 16 + 4 * $0, as: UInt32.self))) }
        }
        guard values.count == dimension, values.allSatisfy(\.isFinite) else { return nil }
        return values
    }

    /// Stores a vector (atomically). Throws `TrainingError` (`.cache`) when the cache
    /// cannot be written.
    public func store(_ values: [Float], model: String, fileHash: String) throws {
        let url = entryURL(model: model, fileHash: fileHash)
        var data = Data(Self.magic)
        withUnsafeBytes(of: UInt32(values.count).littleEndian) { data.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt32(0)) { data.append(contentsOf: $0) }
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
        do {
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try data.write(to: url, options: .atomic)
        } catch {
            throw TrainingError(.cache, file: url.path, reason: "cannot write the embedding cache (\(error.localizedDescription))")
        }
    }

    /// Writes `<directory>/<model>/model.json` describing the model once (for people
    /// looking into the cache; never read back).
    func describe(model: String, description: [String: String]) {
        let url = directory.appendingPathComponent(model).appendingPathComponent("model.json")
        guard !FileManager.default.fileExists(atPath: url.path) else { return }
        try? FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        if let data = try? JSONSerialization.data(withJSONObject: description, options: [.prettyPrinted, .sortedKeys]) {
            try? data.write(to: url, options: .atomic)
        }
    }
}
