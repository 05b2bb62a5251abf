import Foundation

extension CedForAudioClassification {
    /// Builds the model from a loaded checkpoint, checking every tensor name and shape.
    public convenience init(_ checkpoint: PretrainedCheckpoint, precision: CedPrecision = .fp32) throws {
        try self.init(config: checkpoint.config, weights: checkpoint.weights, precision: precision)
    }

    /// Loads a model the way Hugging Face's `from_pretrained` does: `spec` is a local folder
    /// or file (safetensors, `pytorch_model.bin`, the authors' `.pt`) or a hub id such as
    /// `mispeech/ced-tiny` (downloaded once into the `huggingface_hub` cache).
    public static func fromPretrained(_ spec: String, revision: String? = nil, precision: CedPrecision = .fp32,
                                      options: PretrainedCheckpoint.Options = .init()) throws -> CedForAudioClassification {
        try CedForAudioClassification(PretrainedCheckpoint.load(spec, revision: revision, options: options), precision: precision)
    }
}

extension CedAudioTagger {
    /// The model and the feature extractor a checkpoint describes.
    public init(_ checkpoint: PretrainedCheckpoint, precision: CedPrecision = .fp32) throws {
        try self.init(model: CedForAudioClassification(checkpoint, precision: precision),
                      featureExtractor: CedFeatureExtractor(config: checkpoint.featureExtractorConfig))
    }

    /// Loads a model and its feature extractor from a folder, file or hub id
    /// (see `CedForAudioClassification.fromPretrained`).
    public static func fromPretrained(_ spec: String, revision: String? = nil, precision: CedPrecision = .fp32,
                                      options: PretrainedCheckpoint.Options = .init()) throws -> CedAudioTagger {
        try CedAudioTagger(PretrainedCheckpoint.load(spec, revision: revision, options: options), precision: precision)
    }
}
