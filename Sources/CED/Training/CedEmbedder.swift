import Dispatch
import Foundation

extension CedForAudioClassification {
    /// The vectors the classification head is applied to for a `[n_mels, T]` log-mel spectrogram
    /// under the Hugging Face semantics (`CedChunking.hf`), bit for bit as `forward`
    /// computes them: `[embed_dim]` for `mean`, `logit` and `token` pooling (the pooled
    /// vector, averaged over chunks: `CedModel.embedding`), `[steps, embed_dim]` for `dm`
    /// (the frequency mean at every time step of every chunk; the head and sigmoid run per
    /// step, then the scores are averaged).
    public func headInput(_ mel: Tensor) throws -> Tensor {
        if config.pooling != .dm { return try encoder.embedding(mel) }
        let input = try encoder.prepare(mel)
        let c = config.embedDim
        return encoder.workspaces.with { ws in
            let (count, _) = encoder.encodePooled(input, workspace: ws)
            return Tensor(shape: [count, c], scalars: Array(UnsafeBufferPointer(start: ws.pooled.pointer, count: count * c)))
        }
    }
}

/// Progress of `CedEmbedder.embed(files:…)`, reported once per file.
public struct EmbeddingProgress: Sendable {
    /// Files finished so far (including this one).
    public var done: Int
    public var total: Int
    public var file: URL
    /// True when the vector came from the cache.
    public var cached: Bool
    /// The error message when the file could not be used.
    public var failure: String?
}

/// The vectors for a list of files, in the same order.
public struct EmbeddedFiles: Sendable {
    /// One vector per file, nil where the file failed.
    public var vectors: [[Float]?]
    /// Files that could not be decoded or encoded, with the reason, in file order.
    public var failures: [(file: URL, reason: String)]
    /// Decoder warnings (truncated files, …), prefixed with the file path.
    public var warnings: [String]
    /// How many vectors came from the cache and how many were computed.
    public var cachedCount: Int
    public var computedCount: Int
}

/// Turns audio files into the vectors a classification head reads (the clip embedding,
/// `CedModel.embedding`), with the encoder frozen, several files at a time and through an
/// `EmbeddingCache`.
///
/// Only `mean`, `logit` and `token` pooling are supported (every published CED model uses
/// `mean`): their head reads one vector per clip. `dm` pooling runs the head on every time
/// step, which a cached clip vector cannot reproduce.
public final class CedEmbedder: Sendable {
    /// The frozen encoder.
    public let encoder: CedModel
    public let featureExtractor: CedFeatureExtractor
    /// SHA-256 (hex) identifying everything that determines the vectors: the kind of
    /// vector (`mean` for mean/logit pooling, `cls` for token pooling), the encoder's
    /// configuration, the feature-extractor settings and every encoder tensor's name,
    /// shape and values (through a 64-bit digest per tensor). The embedding cache is
    /// keyed by it.
    public let modelIdentity: String
    /// A short description of where the model came from (for the cache's `model.json`).
    let originDescription: String

    /// Builds the encoder from a checkpoint (the head, if any, is not read: a bare encoder
    /// is fine). Throws `TrainingError` (`.unsupportedModel`) for `dm` pooling, and
    /// whatever building the encoder throws.
    public init(checkpoint: PretrainedCheckpoint) throws {
        guard checkpoint.config.pooling != .dm else {
            throw TrainingError(.unsupportedModel,
                                reason: "the model uses 'dm' pooling (head applied per time step); head training supports mean, logit and token pooling")
        }
        encoder = try CedModel(config: checkpoint.config, weights: checkpoint.weights)
        featureExtractor = try CedFeatureExtractor(config: checkpoint.featureExtractorConfig)
        modelIdentity = Self.identity(of: checkpoint)
        switch checkpoint.origin {
        case .hub(let repo, _, let commit, _): originDescription = "\(repo)@\(commit)"
        case .directory(let u), .file(let u): originDescription = u.path
        }
    }

    public var config: CedConfig { encoder.config }
    /// Length of every vector (`embed_dim`).
    public var dimension: Int { config.embedDim }
    var samplingRate: Int { featureExtractor.config.samplingRate }

    /// The vector for a mono waveform at the model's sampling rate (16 kHz).
    public func embedding(_ waveform: [Float]) throws -> [Float] {
        try encoder.embedding(featureExtractor(waveform)).scalars
    }

    /// The vector for an audio file (decoded with `Waveform`), with its decoder warnings.
    public func embedding(file: URL) throws -> (vector: [Float], warnings: [AudioWarning]) {
        let wave = try Waveform(contentsOf: file, sampleRate: samplingRate)
        guard !wave.samples.isEmpty else { throw CedInputError("\(file.path): the file holds no audio samples") }
        return (try embedding(wave.samples), wave.warnings)
    }

    /// SHA-256 (hex) of a file's bytes.
    public static func contentHash(of file: URL) throws -> String {
        let data = try Data(contentsOf: file, options: .alwaysMapped)
        var h = SHA256Hasher()
        data.withUnsafeBytes { h.update($0) }
        return h.finalizeHex()
    }

    /// Vectors for many files: each file is hashed and looked up in `cache`; misses are
    /// decoded, encoded and stored. `concurrency` files are processed at once (default:
    /// one per core; each runs the encoder on its own thread, which keeps every core busy
    /// for the short clips training data usually holds). Failures do not stop the others;
    /// they are returned in `failures`. `progress` is called from worker threads.
    /// Throws `TrainingError` (`.cache`) only when the cache cannot be written.
    public func embed(files: [URL], cache: EmbeddingCache?, concurrency: Int? = nil,
                      progress: (@Sendable (EmbeddingProgress) -> Void)? = nil) throws -> EmbeddedFiles {
        let workers = max(1, min(concurrency ?? ProcessInfo.processInfo.activeProcessorCount, files.count))
        if let cache {
            cache.describe(model: modelIdentity, description: [
                "source": originDescription, "name": config.name ?? "", "pooling": config.pooling.rawValue,
                "embed_dim": String(config.embedDim), "depth": String(config.depth),
            ])
        }
        final class State: @unchecked Sendable {
            let lock = NSLock()
            var done = 0
            var vectors: [[Float]?]
            var failures: [Int: String] = [:]
            var warnings: [Int: [String]] = [:]
            var cached = 0
            var cacheError: Error?
            init(_ n: Int) { vectors = [[Float]?](repeating: nil, count: n) }
        }
        let state = State(files.count)
        let dim = dimension
        let model = modelIdentity
        // One encoder per worker thread, each on its share of the cores; a cache that
        // cannot be written stops the run.
        CedCompute.forEachConcurrently(files.count, workers: workers) { i in
            let file = files[i]
            var vector: [Float]?
            var fromCache = false
            var failure: String?
            var notes: [String] = []
            var storeError: Error?
            do {
                let hash = try Self.contentHash(of: file)
                if let hit = cache?.lookup(model: model, fileHash: hash, dimension: dim) {
                    vector = hit
                    fromCache = true
                } else {
                    let (v, w) = try embedding(file: file)
                    vector = v
                    notes = w.map { "\(file.path): \($0)" }
                    do { try cache?.store(v, model: model, fileHash: hash) } catch { storeError = error }
                }
            } catch {
                failure = (error as? LocalizedError)?.errorDescription ?? "\(error)"
            }
            state.lock.lock()
            state.vectors[i] = vector
            if let failure { state.failures[i] = failure }
            if !notes.isEmpty { state.warnings[i] = notes }
            if fromCache { state.cached += 1 }
            if let storeError, state.cacheError == nil { state.cacheError = storeError }
            state.done += 1
            let report = EmbeddingProgress(done: state.done, total: files.count, file: file, cached: fromCache, failure: failure)
            state.lock.unlock()
            progress?(report)
            return storeError == nil
        }
        if let e = state.cacheError { throw e }
        let failures = state.failures.keys.sorted().map { (file: files[$0], reason: state.failures[$0]!) }
        let warnings = state.warnings.keys.sorted().flatMap { state.warnings[$0]! }
        return EmbeddedFiles(vectors: state.vectors, failures: failures, warnings: warnings,
                             cachedCount: state.cached, computedCount: files.count - state.cached - failures.count)
    }

    // MARK: Model identity

    static func identity(of checkpoint: PretrainedCheckpoint) -> String {
        let c = checkpoint.config
        let fe = checkpoint.featureExtractorConfig
        var h = SHA256Hasher()
        let kind = c.pooling == .token ? "cls" : "mean"
        var lines: [String] = ["ced-head-input v1", "kind=\(kind)"]
        lines.append("embed_dim=\(c.embedDim) depth=\(c.depth) num_heads=\(c.numHeads) mlp_ratio=\(c.mlpRatio) qkv_bias=\(c.qkvBias)")
        lines.append("patch_size=\(c.patchSize.frequency)x\(c.patchSize.time) patch_stride=\(c.patchStride.frequency)x\(c.patchStride.time)")
        lines.append("target_length=\(c.targetLength) pad_last=\(c.padLast) n_mels=\(c.nMels)")
        lines.append("sampling_rate=\(fe.samplingRate) feature_size=\(fe.featureSize) n_fft=\(fe.nFft) win_size=\(fe.winSize) hop_size=\(fe.hopSize)")
        lines.append("f_min=\(fe.fMin) f_max=\(fe.resolvedFMax) center=\(fe.center) top_db=\(fe.topDb)")
        let table = CedParameterTable(config: c)
        for name in checkpoint.weights.names where CedParameterTable.isEncoder(name) && name != table.initBN.batchesTracked.name {
            let t = checkpoint.weights[name]!
            let digest = t.scalars.withUnsafeBufferPointer { Self.digest64($0) }
            lines.append("\(name) \(t.shape) \(t.count) \(String(digest, radix: 16))")
        }
        h.update(Array(lines.joined(separator: "\n").utf8))
        return h.finalizeHex()
    }

    /// A 64-bit digest of float32 values (their bit patterns): four multiply–rotate lanes
    /// (the round of xxHash64) and a final avalanche. Not cryptographic, but any change in
    /// any value changes it with overwhelming probability, at memory speed (SHA-256 over
    /// every weight would cost seconds for the larger models).
    static func digest64(_ v: UnsafeBufferPointer<Float>) -> UInt64 {
        let p1: UInt64 = 0x9E37_79B1_85EB_CA87, p2: UInt64 = 0xC2B2_AE3D_27D4_EB4F
        let p3: UInt64 = 0x1656_67B1_9E37_79F9, p4: UInt64 = 0x85EB_CA77_C2B2_AE63
        @inline(__always) func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }
        @inline(__always) func round(_ acc: UInt64, _ w: UInt64) -> UInt64 {
            let x: UInt64 = acc &+ w &* p2
            return rotl(x, 31) &* p1
        }
        var a: UInt64 = p1 &+ p2, b: UInt64 = p2, c: UInt64 = 0, d: UInt64 = 0 &- p1
        let n = v.count
        var i = 0
        v.withMemoryRebound(to: UInt32.self) { bits in
            while i + 8 <= n {
                let w0: UInt64 = UInt64(bits[i]) | (UInt64(bits[i + 1]) << 32)
                let w1: UInt64 = UInt64(bits[i + 2]) | (UInt64(bits[i + 3]) << 32)
                let w2: UInt64 = UInt64(bits[i + 4]) | (UInt64(bits[i + 5]) << 32)
                let w3: UInt64 = UInt64(bits[i + 6]) | (UInt64(bits[i + 7]) << 32)
                a = round(a, w0)
                b = round(b, w1)
                c = round(c, w2)
                d = round(d, w3)
                i += 8
            }
            while i < n {
                a = round(a, UInt64(bits[i]))
                i += 1
            }
        }
        var h: UInt64 = rotl(a, 1)
        h = h &+ rotl(b, 7)
        h = h &+ rotl(c, 12)
        h = h &+ rotl(d, 18)
        h = (h ^ round(0, a)) &* p1 &+ p4
        h = (h ^ round(0, b)) &* p1 &+ p4
        h = (h ^ round(0, c)) &* p1 &+ p4
        h = (h ^ round(0, d)) &* p1 &+ p4
        h = h &+ UInt64(n)
        h ^= h >> 33
        h = h &* p2
        h ^= h >> 29
        h = h &* p3
        h ^= h >> 32
        return h
    }
}
