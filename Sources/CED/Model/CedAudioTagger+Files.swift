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

    /// `[outputdim]` scores of an audio file (see `fileScores`).
    public func scores(contentsOf url: URL, chunking: CedChunking = .hf,
                       options: AudioDecodingOptions = AudioDecodingOptions()) throws -> Tensor {
        try fileScores(contentsOf: url, chunking: chunking, options: options).scores
    }

    /// Recordings up to this many frames (about 80 s) are scored from their whole mel, which
    /// is small; longer ones in two passes.
    static let singlePassFrames = 8192

    /// The scores of an audio file, with what decoding it found out: bit for bit the scores
    /// of `features(contentsOf:)`'s mel, but with bounded memory for recordings of any
    /// length. A long recording is decoded twice: the first pass finds its frame count and
    /// its loudest mel value (the `top_db` floor depends on the whole recording's maximum),
    /// the second featurises it block by block into the encoder, a group of 10 s chunks at a
    /// time. An hour of audio then needs a few megabytes beside the model instead of its
    /// 92 MB mel.
    public func fileScores(contentsOf url: URL, chunking: CedChunking = .hf,
                           options: AudioDecodingOptions = AudioDecodingOptions())
        throws -> (scores: Tensor, sampleCount: Int, info: AudioFileInfo, warnings: [AudioWarning]) {
        try fileScores(.file(url), chunking: chunking, options: options)
    }

    /// `fileScores(contentsOf:)` for a file or a file's bytes in memory. Clips up to
    /// `singlePassFrames` go through `scores(mels:)` (and so through a `scheduler`, e.g. a
    /// server's batching); longer recordings are scored in two passes by the model directly.
    public func fileScores(_ input: AudioInput, chunking: CedChunking = .hf,
                           options: AudioDecodingOptions = AudioDecodingOptions())
        throws -> (scores: Tensor, sampleCount: Int, info: AudioFileInfo, warnings: [AudioWarning]) {
        try fileScores(input, chunking: chunking, options: options, singlePassFrames: Self.singlePassFrames)
    }

    func fileScores(_ input: AudioInput, chunking: CedChunking, options: AudioDecodingOptions, singlePassFrames: Int)
        throws -> (scores: Tensor, sampleCount: Int, info: AudioFileInfo, warnings: [AudioWarning]) {
        let stream = try WaveformStream(input, sampleRate: samplingRate, options: options)
        defer { stream.close() }
        let mel = featureExtractor.makeStream()
        mel.keepLimit = singlePassFrames
        try feed(stream, into: mel, name: input.name)
        let scores = try clipScores(mel, of: input, chunking: chunking, options: options)
        return (scores, mel.sampleCount, stream.info, stream.warnings)
    }

    /// The scores of a file whose first pass went into `mel` (a stream made with
    /// `keepLimit`): from the kept mel, or by a second pass over the file.
    func clipScores(_ mel: CedFeatureExtractor.Stream, of input: AudioInput, chunking: CedChunking,
                    options: AudioDecodingOptions) throws -> Tensor {
        let n = mel.sampleCount
        if mel.keptAll {
            let features: Tensor
            do { features = try mel.finish() } catch let e as CedInputError {
                throw AudioError(file: input.name, kind: .noAudio, reason: e.reason)
            }
            return try scores(mels: [features], chunking: chunking)[0]
        }
        let (total, peak) = try mel.finishCounting()
        let floor = peak - Float(featureExtractor.config.topDb)
        return try model.forward(totalFrames: total, chunking: chunking) { deliver in
            let again = try WaveformStream(input, sampleRate: samplingRate, options: options)
            defer { again.close() }
            try withoutActuallyEscaping(deliver) { deliver in
                let second = featureExtractor.makeStream(floor: floor, deliver: deliver)
                try feed(again, into: second, name: input.name)
                guard second.sampleCount == n else {
                    throw AudioError(file: input.name, kind: .malformed,
                                     reason: "the file changed while it was read: \(n) samples, then \(second.sampleCount)")
                }
                _ = try second.finishCounting()
            }
        }.scores
    }

    private func feed(_ stream: WaveformStream, into mel: CedFeatureExtractor.Stream, name: String) throws {
        while let block = try stream.next() {
            do {
                try mel.append(block)
            } catch let e as CedInputError {
                throw AudioError(file: name, kind: .nonFiniteSamples, reason: e.reason)
            }
        }
    }

    /// The best classes of an audio file, highest score first (see `tag(_:topK:threshold:chunking:)`).
    public func tag(contentsOf url: URL, topK: Int? = 5, threshold: Float? = nil, chunking: CedChunking = .hf,
                    options: AudioDecodingOptions = AudioDecodingOptions()) throws -> [CedPrediction] {
        config.predictions(from: try scores(contentsOf: url, chunking: chunking, options: options),
                           topK: topK, threshold: threshold)
    }
}
