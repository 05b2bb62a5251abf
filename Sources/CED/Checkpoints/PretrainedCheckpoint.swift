import Foundation

/// A CED checkpoint loaded from anywhere a user may have one, ready for
/// `CedForAudioClassification(config:weights:)`: configuration, feature-extractor
/// settings and float32 weights under Hugging Face names.
///
/// ```swift
/// let ckpt = try PretrainedCheckpoint.load("mispeech/ced-tiny")          // hub (cached)
/// let ckpt = try PretrainedCheckpoint.load("~/models/ced-base")          // HF folder
/// let ckpt = try PretrainedCheckpoint.load("audiotransformer_base_mAP_4999.pt",
///     options: .init(labelsFile: URL(fileURLWithPath: "class_labels_indices.csv")))
/// ```
public struct PretrainedCheckpoint: Sendable {
    /// Where the checkpoint came from.
    public enum Origin: Sendable, Equatable {
        /// A hub repository: the revision asked for, the commit it resolved to, and the
        /// local (cached) files used.
        case hub(repo: String, revision: String, commit: String, files: [URL])
        /// A local Hugging Face folder.
        case directory(URL)
        /// A single file.
        case file(URL)
    }

    /// Where the configuration came from.
    public enum ConfigSource: Sendable, Equatable {
        /// A `config.json`.
        case file(URL)
        /// `Options.config`.
        case given
        /// Inferred from tensor shapes (`CedParameterTable.inferConfig`).
        case inferred
    }

    /// What to do when a checkpoint's stored window or mel filterbank differs from the
    /// one the feature-extractor settings produce.
    public enum FrontEndCheck: Sendable, Equatable {
        /// Throw `CheckpointError` (`.frontEndMismatch`). The default: a model fed other
        /// features than it was trained on gives wrong answers silently.
        case error
        /// Record the mismatch in `warnings` and continue.
        case warn
        /// Do not compare.
        case skip
    }

    /// Everything `load` can be told beyond the model string.
    public struct Options: Sendable {
        /// Use this configuration instead of any `config.json` (and instead of inference).
        public var config: CedConfig?
        /// Read the configuration from this `config.json` (for a single file).
        public var configFile: URL?
        /// Use these feature-extractor settings instead of `preprocessor_config.json`.
        public var featureExtractorConfig: CedFeatureExtractorConfig?
        /// Class names from a labels CSV (`index,mid,display_name`); replaces the
        /// config's `id2label` / `label2id`.
        public var labelsFile: URL?
        /// Overrides `num_heads` (shapes do not determine it; inference uses embed / 64).
        public var numHeads: Int?
        /// Overrides `pooling` (shapes only tell `token` from the others).
        public var pooling: CedPooling?
        public var frontEndCheck: FrontEndCheck = .error
        /// Hub settings (endpoint, cache, token, offline, progress); from the environment by default.
        public var hub: HubOptions = HubOptions()

        public init(config: CedConfig? = nil, configFile: URL? = nil, featureExtractorConfig: CedFeatureExtractorConfig? = nil,
                    labelsFile: URL? = nil, numHeads: Int? = nil, pooling: CedPooling? = nil,
                    frontEndCheck: FrontEndCheck = .error, hub: HubOptions = HubOptions()) {
            self.config = config
            self.configFile = configFile
            self.featureExtractorConfig = featureExtractorConfig
            self.labelsFile = labelsFile
            self.numHeads = numHeads
            self.pooling = pooling
            self.frontEndCheck = frontEndCheck
            self.hub = hub
        }
    }

    public var config: CedConfig
    public var featureExtractorConfig: CedFeatureExtractorConfig
    /// float32 tensors under Hugging Face names (those of `CedParameterTable`). Names and
    /// shapes are checked against `config` when a model is built from them.
    public var weights: StateDict
    public var origin: Origin
    /// The weights file's container format.
    public var format: CheckpointFileFormat
    /// The tensor naming found in the file (weights are always Hugging Face-named).
    public var layout: CheckpointLayout
    public var configSource: ConfigSource
    /// The front-end buffers an original checkpoint stores, nil when it has none.
    public var storedFrontEnd: StoredFrontEnd?
    /// How `storedFrontEnd` compared with `featureExtractorConfig`'s front end.
    public var frontEndComparison: FrontEndComparison?
    /// Things worth telling the user that did not stop loading (ignored tensors,
    /// inferred settings, a tolerated front-end mismatch).
    public var warnings: [String]

    // MARK: Loading

    /// Loads the checkpoint `spec` names: an existing path first (folder or file), then a
    /// hub id `owner/name[@revision]` (see `ModelSource.classify`). `revision` applies to
    /// hub ids only.
    public static func load(_ spec: String, revision: String? = nil, options: Options = Options()) throws -> PretrainedCheckpoint {
        try load(from: ModelSource.classify(spec, revision: revision), options: options)
    }

    public static func load(from source: ModelSource, options: Options = Options()) throws -> PretrainedCheckpoint {
        switch source {
        case .hub(let repo, let revision):
            let client = HubClient(options: options.hub)
            var notes: [String] = []
            func unreachable(_ e: HubError) -> Bool { e.kind == .offlineNotCached || e.kind == .networkUnavailable }
            let config = try client.file("config.json", repo: repo, revision: revision)
            // Optional file: when the hub cannot be asked and it is not cached, derive it.
            var preprocessor: HubClient.File?
            do {
                preprocessor = try client.file("preprocessor_config.json", repo: repo, revision: revision)
            } catch let e as HubError where unreachable(e) {
                notes.append("preprocessor_config.json is not cached and the hub cannot be asked; feature-extractor settings derived from config.json")
            }
            // model.safetensors, else pytorch_model.bin (also when only the latter is cached).
            var weights: HubClient.File?
            do {
                weights = try client.file("model.safetensors", repo: repo, revision: revision)
                    ?? client.file("pytorch_model.bin", repo: repo, revision: revision)
            } catch let e as HubError where unreachable(e) {
                guard let bin = try? client.file("pytorch_model.bin", repo: repo, revision: revision) else { throw e }
                weights = bin
            }
            guard let weights else {
                throw HubError(.entryNotFound, repo: repo, revision: revision,
                               reason: "the repository has neither model.safetensors nor pytorch_model.bin")
            }
            let files = [config?.url, preprocessor?.url, weights.url].compactMap { $0 }
            return try assemble(weightsFile: weights.url, configFile: config?.url, preprocessorFile: preprocessor?.url,
                                origin: .hub(repo: repo, revision: revision, commit: weights.commit, files: files),
                                options: options, notes: notes)
        case .directory(let dir):
            let fm = FileManager.default
            func existing(_ name: String) -> URL? {
                let u = dir.appendingPathComponent(name)
                return fm.fileExists(atPath: u.path) ? u : nil
            }
            guard let weights = existing("model.safetensors") ?? existing("pytorch_model.bin") else {
                throw CheckpointError(.notFound, file: dir.path, reason: "the folder has neither model.safetensors nor pytorch_model.bin")
            }
            return try assemble(weightsFile: weights, configFile: existing("config.json"),
                                preprocessorFile: existing("preprocessor_config.json"), origin: .directory(dir), options: options)
        case .file(let url):
            let dir = url.deletingLastPathComponent()
            func beside(_ name: String) -> URL? {
                let u = dir.appendingPathComponent(name)
                return FileManager.default.fileExists(atPath: u.path) ? u : nil
            }
            return try assemble(weightsFile: url, configFile: beside("config.json"),
                                preprocessorFile: beside("preprocessor_config.json"), origin: .file(url), options: options)
        }
    }

    /// Reads one weights file into a state dict (names as stored).
    public static func readStateDict(_ url: URL) throws -> (StateDict, CheckpointFileFormat) {
        let format = try CheckpointFileFormat.detect(path: url.path)
        switch format {
        case .safetensors:
            return (StateDict(file: try SafeTensorsFile(path: url.path)), format)
        case .torchZip, .torchLegacy:
            return (try TorchCheckpoint.load(path: url.path).stateDict, format)
        case .unknown:
            throw CheckpointError(.unrecognizedFormat, file: url.path,
                                  reason: "neither a safetensors file nor a PyTorch checkpoint (unrecognised first bytes)")
        }
    }

    static func assemble(weightsFile: URL, configFile foundConfig: URL?, preprocessorFile: URL?, origin: Origin,
                         options: Options, notes: [String] = []) throws -> PretrainedCheckpoint {
        var warnings = notes
        let (raw, format) = try readStateDict(weightsFile)
        let mapped = CedWeightLayout.sanitize(raw)
        if !mapped.dropped.isEmpty {
            warnings.append("ignored front-end buffers: \(mapped.dropped.joined(separator: ", "))")
        }

        var config: CedConfig
        let configSource: ConfigSource
        if let given = options.config {
            config = given
            configSource = .given
        } else if let file = options.configFile ?? foundConfig {
            config = try CedConfig.load(from: file)
            configSource = .file(file)
        } else {
            config = try CedParameterTable.inferConfig(from: mapped.weights, frontEnd: mapped.frontEnd,
                                                     numHeads: options.numHeads, pooling: options.pooling)
            configSource = .inferred
            if options.numHeads == nil {
                warnings.append("no config.json: architecture inferred from tensor shapes, num_heads = embed_dim / 64 = \(config.numHeads) (pass numHeads if the model used another)")
            }
        }
        if let h = options.numHeads { config.numHeads = h }
        if let p = options.pooling { config.pooling = p }
        if let labelsFile = options.labelsFile {
            let names = try LabelsCSV.load(from: labelsFile)
            guard names.count == config.outputdim else {
                throw CheckpointError(.labels, file: labelsFile.path,
                                      reason: "has \(names.count) labels but the model has \(config.outputdim) outputs")
            }
            config.id2label = Dictionary(uniqueKeysWithValues: names.enumerated().map { ($0.offset, $0.element) })
            config.label2id = Dictionary(names.enumerated().map { ($0.element, $0.offset) }, uniquingKeysWith: { a, _ in a })
        }
        do {
            try config.validate()
        } catch var e as ConfigError {
            if case .file(let f) = configSource { e.file = e.file ?? f.path }
            throw e
        }

        let featureConfig: CedFeatureExtractorConfig
        if let fe = options.featureExtractorConfig {
            try fe.validate()
            featureConfig = fe
        } else if let p = preprocessorFile {
            featureConfig = try CedFeatureExtractorConfig.load(from: p)
        } else {
            featureConfig = CedFeatureExtractorConfig(model: config)
            try featureConfig.validate()
        }
        if featureConfig.featureSize != config.nMels {
            throw ConfigError(field: "feature_size", reason: "the feature extractor makes \(featureConfig.featureSize) mel bins but the model expects n_mels = \(config.nMels)", file: preprocessorFile?.path)
        }

        var comparison: FrontEndComparison?
        if !mapped.frontEnd.isEmpty && options.frontEndCheck != .skip {
            let c = mapped.frontEnd.compare(with: try CedFeatureExtractor(config: featureConfig))
            comparison = c
            if !c.matches {
                let message = "the checkpoint's stored front end does not match the feature extractor: " + c.mismatches.joined(separator: "; ")
                if options.frontEndCheck == .error {
                    throw CheckpointError(.frontEndMismatch, file: weightsFile.path,
                                          reason: message + ". Pass a config/preprocessor config with the settings the model was trained with, or set frontEndCheck to .warn")
                }
                warnings.append(message)
            }
        }

        return PretrainedCheckpoint(config: config, featureExtractorConfig: featureConfig, weights: mapped.weights,
                                    origin: origin, format: format, layout: mapped.layout, configSource: configSource,
                                    storedFrontEnd: mapped.frontEnd.isEmpty ? nil : mapped.frontEnd,
                                    frontEndComparison: comparison, warnings: warnings)
    }
}
