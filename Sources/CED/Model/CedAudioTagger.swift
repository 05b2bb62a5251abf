import Foundation

/// The whole pipeline for one model: 16 kHz mono waveform → log-mel → CED → class scores.
///
/// ```swift
/// let tagger = try CedAudioTagger(model: model, featureExtractor: CedFeatureExtractor())
/// let top5 = try tagger.tag(waveform, topK: 5)   // [CedPrediction], best first
/// ```
///
/// Immutable and `Sendable`: share one instance across tasks.
public struct CedAudioTagger: Sendable {
    public let model: CedForAudioClassification
    public let featureExtractor: CedFeatureExtractor
    /// Where this tagger's model calls for scores go (nil: straight to `model`). A server
    /// sets one that merges the calls of concurrent requests and streams into batches;
    /// every result stays bit-identical to `model(mel)`.
    public var scheduler: (any CedModelScheduler)?

    /// Pairs a model with its front end; their mel bin counts must agree.
    public init(model: CedForAudioClassification, featureExtractor: CedFeatureExtractor) throws {
        guard featureExtractor.melBinCount == model.config.nMels else {
            throw ConfigError(field: "feature_size",
                              reason: "the feature extractor makes \(featureExtractor.melBinCount) mel bins but the model expects n_mels = \(model.config.nMels)")
        }
        self.model = model
        self.featureExtractor = featureExtractor
    }

    public var config: CedConfig { model.config }

    /// Sample rate the waveform must have (16 kHz for every published CED).
    public var samplingRate: Int { featureExtractor.config.samplingRate }

    /// `[outputdim]` scores for a mono waveform at `samplingRate`.
    public func scores(_ waveform: [Float], chunking: CedChunking = .hf) throws -> Tensor {
        try scores(mels: [featureExtractor(waveform)], chunking: chunking)[0]
    }

    /// `[outputdim]` scores for each of several `[n_mels, T]` spectrograms, through the
    /// `scheduler` when there is one (else `model(mels, chunking:)`: clips side by side).
    public func scores(mels: [Tensor], chunking: CedChunking = .hf) throws -> [Tensor] {
        if let scheduler { return try scheduler.scores(mels, chunking: chunking, model: model) }
        return try model(mels, chunking: chunking)
    }

    /// The best classes for a mono waveform at `samplingRate`, highest score first:
    /// at most `topK` (nil: all) with score ≥ `threshold` (nil: any).
    public func tag(_ waveform: [Float], topK: Int? = 5, threshold: Float? = nil,
                    chunking: CedChunking = .hf) throws -> [CedPrediction] {
        config.predictions(from: try scores(waveform, chunking: chunking), topK: topK, threshold: threshold)
    }

    /// A clip embedding `[embed_dim]` for a mono waveform at `samplingRate`: the vector the
    /// classification head reads, averaged over 10 s chunks (see `CedModel.embedding`).
    public func embedding(_ waveform: [Float]) throws -> Tensor {
        try model.encoder.embedding(featureExtractor(waveform))
    }

    /// Every token of the encoder's last hidden state, `[chunks · tokens, embed_dim]`.
    public func tokens(_ waveform: [Float]) throws -> CedModelOutput {
        try model.encoder(featureExtractor(waveform))
    }
}

/// Runs a tagger's model calls for scores (`CedAudioTagger.scheduler`): e.g. a server's
/// dynamic batching, which runs the spectrograms of concurrent requests in one model call.
public protocol CedModelScheduler: Sendable {
    /// `model(mels, chunking:)`: one `[outputdim]` tensor per spectrogram, in order, each
    /// bit-identical to `model(mel, chunking:)`.
    func scores(_ mels: [Tensor], chunking: CedChunking, model: CedForAudioClassification) throws -> [Tensor]
}
