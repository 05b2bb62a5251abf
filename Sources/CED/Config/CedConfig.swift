import Foundation

/// How the encoder's tokens are turned into one prediction (`pooling` in `config.json`).
public enum CedPooling: String, Codable, Sendable, CaseIterable {
    /// Mean over all tokens, head, sigmoid.
    case mean
    /// A learned cls token prepended to the sequence; its output goes to the head, sigmoid.
    case token
    /// Mean over all tokens, head, no sigmoid (raw logits).
    case logit
    /// "Decision mean": mean over frequency, head + sigmoid per time step, then mean over time.
    case dm
}

/// How per-chunk outputs are combined with the original repository's chunking (`eval_avg`).
public enum CedEvalAverage: String, Codable, Sendable, CaseIterable {
    case mean
    case max
}

/// A height × width pair (`patch_size` / `patch_stride` may be an int or a pair upstream).
public struct CedPair: Codable, Sendable, Equatable {
    /// Along the mel (frequency) axis.
    public var frequency: Int
    /// Along the frame (time) axis.
    public var time: Int

    public init(_ both: Int) { frequency = both; time = both }
    public init(frequency: Int, time: Int) { self.frequency = frequency; self.time = time }

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let v = try? c.decode(Int.self) {
            self.init(v)
        } else if let v = try? c.decode([Int].self), v.count == 2 {
            self.init(frequency: v[0], time: v[1])
        } else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "expected an integer or a pair of integers")
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        if frequency == time { try c.encode(frequency) } else { try c.encode([frequency, time]) }
    }
}

/// The configuration of a CED model, decoded from a Hugging Face `config.json` with the
/// upstream field names and defaults (`configuration_ced.py`). Unknown keys are ignored.
///
/// `name` selects a preset exactly as upstream does: `ced-tiny` (192 dims, 3 heads),
/// `ced-mini` (256, 4), `ced-small` (384, 6) and `ced-base` (768, 12) override
/// `embed_dim` and `num_heads`.
public struct CedConfig: Codable, Sendable, Equatable {
    public var name: String?
    public var embedDim: Int = 768
    public var depth: Int = 12
    public var numHeads: Int = 12
    public var mlpRatio: Double = 4.0
    public var qkvBias: Bool = true
    public var outputdim: Int = 527
    public var patchSize: CedPair = CedPair(16)
    public var patchStride: CedPair = CedPair(16)
    public var pooling: CedPooling = .mean
    /// Frames per chunk; longer inputs are split into chunks of this length.
    public var targetLength: Int = 1012
    public var evalAvg: CedEvalAverage = .mean
    /// Zero-pad a trailing partial chunk (true) or drop it (false).
    public var padLast: Bool = true
    // Front end (the original repository builds its mel front end from these).
    public var nMels: Int = 64
    public var nFft: Int = 512
    public var hopSize: Int = 160
    public var winSize: Int = 512
    public var fMin: Double = 0
    public var fMax: Double? = 8000
    public var center: Bool = true
    // Training-only settings, kept so a saved config round-trips.
    public var dropRate: Double = 0
    public var attnDropRate: Double = 0
    public var dropPathRate: Double = 0
    public var loss: String?
    // Normalisation constants. Upstream's code fixes them (timm's `LayerNorm(eps=1e-6)` in
    // the encoder, PyTorch's defaults for the head's LayerNorm and the mel BatchNorm, whose
    // momentum upstream sets to 0.01); `config.json` may override them, and they are
    // written only when they differ from these defaults.
    /// eps of the blocks' and the final LayerNorm (`layer_norm_eps`).
    public var layerNormEps: Double = CedConfig.defaultLayerNormEps
    /// eps of the classification head's LayerNorm (`head_layer_norm_eps`).
    public var headLayerNormEps: Double = CedConfig.defaultHeadLayerNormEps
    /// eps of the BatchNorm over mel bins (`batch_norm_eps`).
    public var batchNormEps: Double = CedConfig.defaultBatchNormEps
    /// Update rate of the BatchNorm's running statistics in training (`batch_norm_momentum`).
    public var batchNormMomentum: Double = CedConfig.defaultBatchNormMomentum
    /// Class names by output index (`id2label`), nil when the config has none.
    public var id2label: [Int: String]?
    /// Output index by class name (`label2id`).
    public var label2id: [String: Int]?

    public static let defaultLayerNormEps = 1e-6
    public static let defaultHeadLayerNormEps = 1e-5
    public static let defaultBatchNormEps = 1e-5
    public static let defaultBatchNormMomentum = 0.01

    /// Upstream defaults (CED-Base shape).
    public init() {}

    /// Upstream defaults with a preset applied, e.g. `CedConfig(name: "ced-tiny")`.
    public init(name: String?) {
        self.name = name
        applyPreset()
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name
        case embedDim = "embed_dim"
        case depth
        case numHeads = "num_heads"
        case mlpRatio = "mlp_ratio"
        case qkvBias = "qkv_bias"
        case outputdim
        case patchSize = "patch_size"
        case patchStride = "patch_stride"
        case pooling
        case targetLength = "target_length"
        case evalAvg = "eval_avg"
        case padLast = "pad_last"
        case nMels = "n_mels"
        case nFft = "n_fft"
        case hopSize = "hop_size"
        case winSize = "win_size"
        case fMin = "f_min"
        case fMax = "f_max"
        case center
        case dropRate = "drop_rate"
        case attnDropRate = "attn_drop_rate"
        case dropPathRate = "drop_path_rate"
        case loss
        case layerNormEps = "layer_norm_eps"
        case headLayerNormEps = "head_layer_norm_eps"
        case batchNormEps = "batch_norm_eps"
        case batchNormMomentum = "batch_norm_momentum"
        case id2label
        case label2id
        case modelType = "model_type"
        case architectures
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func get<T: Decodable>(_ key: CodingKeys, _ current: T) throws -> T {
            try c.decodeIfPresent(T.self, forKey: key) ?? current
        }
        func int(_ key: CodingKeys, _ current: Int) throws -> Int { try c.flexibleInt(key, default: current) }
        func enumValue<E: RawRepresentable & CaseIterable>(_ key: CodingKeys, _ current: E) throws -> E where E.RawValue == String {
            guard let raw = try c.decodeIfPresent(String.self, forKey: key) else { return current }
            guard let v = E(rawValue: raw) else {
                let allowed = E.allCases.map { $0.rawValue }.joined(separator: ", ")
                throw ConfigError(field: key.rawValue, reason: "unknown value '\(raw)' (expected one of: \(allowed))")
            }
            return v
        }
        name = try c.decodeIfPresent(String.self, forKey: .name)
        embedDim = try int(.embedDim, embedDim)
        depth = try int(.depth, depth)
        numHeads = try int(.numHeads, numHeads)
        mlpRatio = try get(.mlpRatio, mlpRatio)
        qkvBias = try get(.qkvBias, qkvBias)
        outputdim = try int(.outputdim, outputdim)
        patchSize = try get(.patchSize, patchSize)
        patchStride = try get(.patchStride, patchStride)
        pooling = try enumValue(.pooling, pooling)
        targetLength = try int(.targetLength, targetLength)
        evalAvg = try enumValue(.evalAvg, evalAvg)
        padLast = try get(.padLast, padLast)
        nMels = try int(.nMels, nMels)
        nFft = try int(.nFft, nFft)
        hopSize = try int(.hopSize, hopSize)
        winSize = try int(.winSize, winSize)
        fMin = try get(.fMin, fMin)
        fMax = try c.optionalDouble(.fMax, default: fMax)
        center = try get(.center, center)
        dropRate = try get(.dropRate, dropRate)
        attnDropRate = try get(.attnDropRate, attnDropRate)
        dropPathRate = try get(.dropPathRate, dropPathRate)
        loss = try c.decodeIfPresent(String.self, forKey: .loss)
        layerNormEps = try get(.layerNormEps, layerNormEps)
        headLayerNormEps = try get(.headLayerNormEps, headLayerNormEps)
        batchNormEps = try get(.batchNormEps, batchNormEps)
        batchNormMomentum = try get(.batchNormMomentum, batchNormMomentum)
        if let raw = try c.decodeIfPresent([String: String].self, forKey: .id2label) {
            var map = [Int: String]()
            for (k, v) in raw {
                guard let i = Int(k) else {
                    throw ConfigError(field: "id2label", reason: "key '\(k)' is not an integer class index")
                }
                map[i] = v
            }
            id2label = map
        }
        label2id = try c.decodeIfPresent([String: Int].self, forKey: .label2id)
        applyPreset()
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(embedDim, forKey: .embedDim)
        try c.encode(depth, forKey: .depth)
        try c.encode(numHeads, forKey: .numHeads)
        try c.encode(mlpRatio, forKey: .mlpRatio)
        try c.encode(qkvBias, forKey: .qkvBias)
        try c.encode(outputdim, forKey: .outputdim)
        try c.encode(patchSize, forKey: .patchSize)
        try c.encode(patchStride, forKey: .patchStride)
        try c.encode(pooling, forKey: .pooling)
        try c.encode(targetLength, forKey: .targetLength)
        try c.encode(evalAvg, forKey: .evalAvg)
        try c.encode(padLast, forKey: .padLast)
        try c.encode(nMels, forKey: .nMels)
        try c.encode(nFft, forKey: .nFft)
        try c.encode(hopSize, forKey: .hopSize)
        try c.encode(winSize, forKey: .winSize)
        try c.encode(fMin, forKey: .fMin)
        try c.encode(fMax, forKey: .fMax)
        try c.encode(center, forKey: .center)
        try c.encode(dropRate, forKey: .dropRate)
        try c.encode(attnDropRate, forKey: .attnDropRate)
        try c.encode(dropPathRate, forKey: .dropPathRate)
        try c.encodeIfPresent(loss, forKey: .loss)
        if layerNormEps != Self.defaultLayerNormEps { try c.encode(layerNormEps, forKey: .layerNormEps) }
        if headLayerNormEps != Self.defaultHeadLayerNormEps { try c.encode(headLayerNormEps, forKey: .headLayerNormEps) }
        if batchNormEps != Self.defaultBatchNormEps { try c.encode(batchNormEps, forKey: .batchNormEps) }
        if batchNormMomentum != Self.defaultBatchNormMomentum { try c.encode(batchNormMomentum, forKey: .batchNormMomentum) }
        try c.encode("ced", forKey: .modelType)
        try c.encode(["CedForAudioClassification"], forKey: .architectures)
        if let id2label {
            try c.encode(Dictionary(uniqueKeysWithValues: id2label.map { (String($0.key), $0.value) }), forKey: .id2label)
        }
        if let label2id { try c.encode(label2id, forKey: .label2id) }
    }

    /// Upstream's `name` presets override the embedding width and head count.
    mutating func applyPreset() {
        switch name {
        case "ced-tiny": embedDim = 192; numHeads = 3
        case "ced-mini": embedDim = 256; numHeads = 4
        case "ced-small": embedDim = 384; numHeads = 6
        case "ced-base": embedDim = 768; numHeads = 12
        default: break
        }
    }

    // MARK: Derived sizes

    /// Hidden width of each block's MLP (`int(embed_dim * mlp_ratio)` as upstream).
    public var mlpHiddenDim: Int { Int(Double(embedDim) * mlpRatio) }
    public var headDim: Int { embedDim / numHeads }
    /// Frequency patches per column (rows of the frequency positional embedding): `n_mels // patch_stride`.
    public var frequencyPatches: Int { nMels / patchStride.frequency }
    /// Length of the time positional embedding: `target_length // patch_stride`.
    public var maxTimePatches: Int { targetLength / patchStride.time }

    /// Time patches the patch embedding produces from `frames` frames (0 below one patch).
    public func timePatches(frames: Int) -> Int {
        frames < patchSize.time ? 0 : (frames - patchSize.time) / patchStride.time + 1
    }

    /// The class name of an output index: `id2label` when present, else `LABEL_<i>`
    /// (the Hugging Face convention).
    public func label(for index: Int) -> String {
        id2label?[index] ?? "LABEL_\(index)"
    }

    // MARK: Validation

    /// Checks every value; throws a `ConfigError` naming the first bad field.
    public func validate() throws {
        func positive(_ v: Int, _ field: CodingKeys) throws {
            if v <= 0 { throw ConfigError(field: field.rawValue, reason: "must be positive, found \(v)") }
        }
        try positive(embedDim, .embedDim)
        try positive(depth, .depth)
        try positive(numHeads, .numHeads)
        try positive(outputdim, .outputdim)
        try positive(targetLength, .targetLength)
        try positive(nMels, .nMels)
        try positive(nFft, .nFft)
        try positive(hopSize, .hopSize)
        try positive(winSize, .winSize)
        for (pair, key) in [(patchSize, CodingKeys.patchSize), (patchStride, .patchStride)] {
            if pair.frequency <= 0 || pair.time <= 0 {
                throw ConfigError(field: key.rawValue, reason: "must be positive, found [\(pair.frequency), \(pair.time)]")
            }
        }
        if embedDim % numHeads != 0 {
            throw ConfigError(field: CodingKeys.numHeads.rawValue,
                              reason: "embed_dim \(embedDim) is not divisible by num_heads \(numHeads)")
        }
        if !(mlpRatio > 0) || !mlpRatio.isFinite || mlpHiddenDim <= 0 {
            throw ConfigError(field: CodingKeys.mlpRatio.rawValue, reason: "must give a positive MLP width, found \(mlpRatio)")
        }
        if winSize > nFft {
            throw ConfigError(field: CodingKeys.winSize.rawValue, reason: "win_size \(winSize) exceeds n_fft \(nFft)")
        }
        if patchSize.frequency > nMels {
            throw ConfigError(field: CodingKeys.patchSize.rawValue, reason: "patch height \(patchSize.frequency) exceeds n_mels \(nMels)")
        }
        let convRows = (nMels - patchSize.frequency) / patchStride.frequency + 1
        if convRows != frequencyPatches {
            throw ConfigError(field: CodingKeys.patchStride.rawValue,
                              reason: "patches give \(convRows) frequency rows but the positional embedding has n_mels // stride = \(frequencyPatches)")
        }
        if targetLength < patchSize.time {
            throw ConfigError(field: CodingKeys.targetLength.rawValue,
                              reason: "target_length \(targetLength) is shorter than one patch (\(patchSize.time) frames)")
        }
        if timePatches(frames: targetLength) != maxTimePatches {
            throw ConfigError(field: CodingKeys.targetLength.rawValue,
                              reason: "a \(targetLength)-frame chunk gives \(timePatches(frames: targetLength)) time patches but the time positional embedding has \(maxTimePatches)")
        }
        if !(fMin >= 0) || !fMin.isFinite {
            throw ConfigError(field: CodingKeys.fMin.rawValue, reason: "must be a finite frequency ≥ 0, found \(fMin)")
        }
        if let fMax, !(fMax > fMin) || !fMax.isFinite {
            throw ConfigError(field: CodingKeys.fMax.rawValue, reason: "must be a finite frequency above f_min \(fMin), found \(fMax)")
        }
        for (v, key) in [(layerNormEps, CodingKeys.layerNormEps), (headLayerNormEps, .headLayerNormEps), (batchNormEps, .batchNormEps)] {
            if !(v > 0) || !v.isFinite { throw ConfigError(field: key.rawValue, reason: "must be a positive number, found \(v)") }
        }
        if !(batchNormMomentum >= 0 && batchNormMomentum <= 1) {
            throw ConfigError(field: CodingKeys.batchNormMomentum.rawValue, reason: "must lie in [0, 1], found \(batchNormMomentum)")
        }
        if let id2label {
            if id2label.count != outputdim {
                throw ConfigError(field: CodingKeys.id2label.rawValue,
                                  reason: "has \(id2label.count) labels but outputdim is \(outputdim)")
            }
            if let bad = id2label.keys.first(where: { $0 < 0 || $0 >= outputdim }) {
                throw ConfigError(field: CodingKeys.id2label.rawValue, reason: "class index \(bad) is outside 0..<\(outputdim)")
            }
        }
        if let label2id, let bad = label2id.first(where: { $0.value < 0 || $0.value >= outputdim }) {
            throw ConfigError(field: CodingKeys.label2id.rawValue, reason: "'\(bad.key)' maps to \(bad.value), outside 0..<\(outputdim)")
        }
    }

    // MARK: Loading

    /// Decodes and validates a `config.json`.
    public static func load(from url: URL) throws -> CedConfig { try loadValidated(from: url) }

    /// Decodes and validates `config.json` contents; `file` only labels errors.
    public static func decode(_ data: Data, file: String? = nil) throws -> CedConfig {
        try decodeValidated(data, file: file)
    }
}

extension CedConfig: ValidatedJSONConfig {}

extension ConfigError {
    /// Turns a Foundation decoding error into one that names the JSON field.
    init(decodingError e: DecodingError, file: String?) {
        func path(_ p: [CodingKey]) -> String? {
            p.isEmpty ? nil : p.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
        }
        switch e {
        case .typeMismatch(let type, let ctx):
            let reason = ctx.codingPath.isEmpty ? "the document is not a JSON object" : "expected a value of type \(type)"
            self.init(field: path(ctx.codingPath), reason: reason, file: file)
        case .valueNotFound(let type, let ctx):
            self.init(field: path(ctx.codingPath), reason: "expected a value of type \(type), found null", file: file)
        case .keyNotFound(let key, let ctx):
            self.init(field: path(ctx.codingPath + [key]), reason: "is required", file: file)
        case .dataCorrupted(let ctx):
            let underlying = (ctx.underlyingError as NSError?)?.localizedDescription
            let reason = ctx.codingPath.isEmpty
                ? "not valid JSON" + (underlying.map { " (\($0))" } ?? "")
                : ctx.debugDescription
            self.init(field: path(ctx.codingPath), reason: reason, file: file)
        @unknown default:
            self.init(field: nil, reason: "\(e)", file: file)
        }
    }
}
