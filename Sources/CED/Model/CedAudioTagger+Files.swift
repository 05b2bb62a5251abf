import Foundation

/// The log-mel features of an audio file, and what decoding it found out.
public struct CedAudioFeatures: Sendable {
    /// `[n_mels, T]` log-mel features.
    public var mel: Tensor
    /// Samples at the model's rate (16 kHz) the file decoded to.
    public var sampleCount: Int
    /// `sampleCount` in seconds.
    public var duration: Double
    /// What the file holds (native rate, channels, encoding, decoder).
    public var info: AudioFileInfo
    /// Problems worked around while decoding (e.g. a truncated file).
    public var warnings: [AudioWarning]
}

extension CedAudioTagger {
    /// Decodes, downmixes, resamples and featurises an audio file block by block: the
    /// waveform is never held whole (a two-hour recording needs its mel, 0.4× the size of its
    /// 16 kHz waveform, plus a few blocks). The result equals featurising `Waveform(contentsOf:)`.
    public func features(contentsOf url: URL, options: AudioDecodingOptions = AudioDecodingOptions()) throws -> CedAudioFeatures {
        try features(.file(url), options: options)
    }

    /// The features of a file or of a file's bytes in memory (see `features(contentsOf:)`).
    public func features(_ input: AudioInput, options: AudioDecodingOptions = AudioDecodingOptions()) throws -> CedAudioFeatures {
        let name = input.name
        let stream = try WaveformStream(input, sampleRate: samplingRate, options: options)
        defer { stream.close() }
        let mel = featureExtractor.makeStream()
        while let block = try stream.next() {
            do {
                try mel.append(block)
            } catch let e as CedInputError {
                throw AudioError(file: name, kind: .nonFiniteSamples, reason: e.reason)
            }
        }
        let n = mel.sampleCount
        let features: Tensor
        do {
            features = try mel.finish()
        } catch let e as CedInputError {
            throw AudioError(file: name, kind: .noAudio, reason: e.reason)
        }
        return CedAudioFeatures(mel: features, sampleCount: n, duration: Double(n) / Double(samplingRate),
                                info: stream.info, warnings: stream.warnings)
    }

    /// `[outputdim]` scores of an audio file (streamed; see `features(contentsOf:)`).
    public func scores(contentsOf url: URL, chunking: CedChunking = .hf,
                       options: AudioDecodingOptions = AudioDecodingOptions()) throws -> Tensor {
        try scores(mels: [features(contentsOf: url, options: options).mel], chunking: chunking)[0]
    }

    /// The best classes of an audio file, highest score first (see `tag(_:topK:threshold:chunking:)`).
    public func tag(contentsOf url: URL, topK: Int? = 5, threshold: Float? = nil, chunking: CedChunking = .hf,
                    options: AudioDecodingOptions = AudioDecodingOptions()) throws -> [CedPrediction] {
        config.predictions(from: try scores(contentsOf: url, chunking: chunking, options: options),
                           topK: topK, threshold: threshold)
    }
}
