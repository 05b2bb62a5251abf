import Foundation

/// Settings of the log-mel front end, decoded from a Hugging Face
/// `preprocessor_config.json` (upstream `CedFeatureExtractor`). Unknown keys are ignored.
public struct CedFeatureExtractorConfig: Codable, Sendable, Equatable {
    /// Sample rate the waveform must have (Hz).
    public var samplingRate: Int = 16000
    /// Number of mel bins (`feature_size`).
    public var featureSize: Int = 64
    public var nFft: Int = 512
    public var winSize: Int = 512
    public var hopSize: Int = 160
    public var fMin: Double = 0
    /// Upper edge of the mel filterbank; nil means half the sampling rate (upstream `None`).
    public var fMax: Double? = nil
    /// Reflect-pad `n_fft / 2` samples on both sides so frame `t` is centred on sample `t·hop`.
    public var center: Bool = true
    /// Dynamic range kept per clip by `AmplitudeToDB(top_db=120)`.
    public var topDb: Double = 120

    public init() {}

    /// The front end described by a model's own `config.json` (the original repository's
    /// `FrontEnd`), used when a checkpoint has no `preprocessor_config.json`.
    public init(model config: CedConfig) {
        featureSize = config.nMels
        nFft = config.nFft
        winSize = config.winSize
        hopSize = config.hopSize
        fMin = config.fMin
        fMax = config.fMax
        center = config.center
    }

    /// `f_max` with the default resolved as torchaudio does (`sample_rate // 2`).
    public var resolvedFMax: Double { fMax ?? Double(samplingRate / 2) }

    enum CodingKeys: String, CodingKey {
        case samplingRate = "sampling_rate"
        case featureSize = "feature_size"
        case nFft = "n_fft"
        case winSize = "win_size"
        case hopSize = "hop_size"
        case fMin = "f_min"
        case fMax = "f_max"
        case center
        case topDb = "top_db"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func int(_ key: CodingKeys, _ current: Int) throws -> Int { try c.flexibleInt(key, default: current) }
        samplingRate = try int(.samplingRate, samplingRate)
        featureSize = try int(.featureSize, featureSize)
        nFft = try int(.nFft, nFft)
        winSize = try int(.winSize, winSize)
        hopSize = try int(.hopSize, hopSize)
        fMin = try c.decodeIfPresent(Double.self, forKey: .fMin) ?? fMin
        fMax = try c.optionalDouble(.fMax, default: fMax)
        center = try c.decodeIfPresent(Bool.self, forKey: .center) ?? center
        topDb = try c.decodeIfPresent(Double.self, forKey: .topDb) ?? topDb
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(samplingRate, forKey: .samplingRate)
        try c.encode(featureSize, forKey: .featureSize)
        try c.encode(nFft, forKey: .nFft)
        try c.encode(winSize, forKey: .winSize)
        try c.encode(hopSize, forKey: .hopSize)
        try c.encode(fMin, forKey: .fMin)
        try c.encode(fMax, forKey: .fMax)
        try c.encode(center, forKey: .center)
        // Not an upstream field: written only when it differs from AmplitudeToDB's 120.
        if topDb != 120 { try c.encode(topDb, forKey: .topDb) }
    }

    /// Checks every value; throws a `ConfigError` naming the first bad field.
    public func validate() throws {
        for (v, key) in [(samplingRate, CodingKeys.samplingRate), (featureSize, .featureSize), (nFft, .nFft),
                         (winSize, .winSize), (hopSize, .hopSize)] where v <= 0 {
            throw ConfigError(field: key.rawValue, reason: "must be positive, found \(v)")
        }
        if winSize > nFft {
            throw ConfigError(field: CodingKeys.winSize.rawValue, reason: "win_size \(winSize) exceeds n_fft \(nFft)")
        }
        if !(fMin >= 0) || !fMin.isFinite {
            throw ConfigError(field: CodingKeys.fMin.rawValue, reason: "must be a finite frequency ≥ 0, found \(fMin)")
        }
        let top = resolvedFMax
        if !(top > fMin) || !top.isFinite || top > Double(samplingRate) / 2 {
            throw ConfigError(field: CodingKeys.fMax.rawValue,
                              reason: "must lie above f_min \(fMin) and at most half the sampling rate (\(samplingRate / 2) Hz), found \(top)")
        }
        if !(topDb > 0) {
            throw ConfigError(field: CodingKeys.topDb.rawValue, reason: "must be positive, found \(topDb)")
        }
    }

    /// Decodes and validates a `preprocessor_config.json`.
    public static func load(from url: URL) throws -> CedFeatureExtractorConfig { try loadValidated(from: url) }
}

extension CedFeatureExtractorConfig: ValidatedJSONConfig {}
