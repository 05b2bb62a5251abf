import Foundation

/// How an input longer than `target_length` frames is turned into one prediction.
public enum CedChunking: String, Sendable, CaseIterable, Codable {
    /// Hugging Face `CedForAudioClassification`: the encoder tokens of all chunks are pooled
    /// once by the head (`token`: the chunks' cls tokens are averaged; `dm`: every chunk's
    /// time steps join one timeline).
    case hf
    /// The original repository (`AudioTransformer.forward_spectrogram`): the head runs on
    /// each chunk and the chunk outputs are combined with `eval_avg` (mean or max).
    case original
}

/// What `CedForAudioClassification.forward` returns.
public struct CedClassificationOutput: Sendable {
    /// `[outputdim]` class scores: sigmoid probabilities, or raw logits for `logit`
    /// pooling (`config.pooling.scoresAreProbabilities`). Upstream's Python calls these
    /// `logits` even when they hold the sigmoid's output.
    public var scores: Tensor
    /// `[chunks, outputdim]`: the scores of each chunk on its own (what the original
    /// semantics combines with `eval_avg`).
    public var chunkScores: Tensor
    /// Number of chunks the input was split into.
    public var chunks: Int
    /// The encoder's output, when hidden states or attentions were requested.
    public var encoder: CedModelOutput?
}

/// CED with its classification head (Hugging Face `CedForAudioClassification`): the
/// encoder, pooling, then the head (LayerNorm + Linear over the pooled vector), with
/// sigmoid except for `logit` pooling.
///
/// Instances are immutable and safe to use from several tasks at once.
public final class CedForAudioClassification: Sendable {
    public let config: CedConfig
    public let encoder: CedModel
    let head: ClassificationHead
    /// What the encoder's products run in (`precision` resolved on this CPU).
    public let plan: CedPrecisionPlan

    /// Builds the model from a checkpoint's weights (Hugging Face names, or any layout
    /// `CedWeightLayout.sanitize` maps onto them), checking every name and shape against
    /// `CedParameterTable`. Throws `WeightLoadingError` listing missing, unexpected and
    /// mis-shaped tensors, or `ConfigError` for an invalid configuration.
    ///
    /// `precision` selects the arithmetic of the encoder's matrix products (`.fp32`, the
    /// default, matches the reference; `.bf16` and `.int8` are opt-in faster modes; `.auto`
    /// the fastest accurate plan on this CPU).
    public convenience init(config: CedConfig, weights: StateDict, precision: CedPrecision = .fp32) throws {
        try config.validate()
        try self.init(config: config, weights: weights, plan: precision.plan(for: config))
    }

    /// The model with its products in `plan`.
    public init(config: CedConfig, weights: StateDict, plan: CedPrecisionPlan) throws {
        try config.validate()
        let table = CedParameterTable(config: config)
        let reader = WeightReader(CedWeightLayout.sanitize(weights).weights, table: table, plan: plan)
        self.plan = plan
        self.config = config
        encoder = CedModel(table: table, reader: reader)
        head = ClassificationHead(reader, table.head, pooling: config.pooling)
        try reader.finish()
    }

    /// Class scores `[outputdim]` for a `[n_mels, T]` log-mel spectrogram.
    public func callAsFunction(_ mel: Tensor, chunking: CedChunking = .hf) throws -> Tensor {
        try forward(mel, chunking: chunking).scores
    }

    /// Class scores for several spectrograms (any lengths), one `[outputdim]` tensor each,
    /// in order. With more than one core the clips run side by side, each on its share of
    /// the cores (more throughput than one clip after another on all cores; each result is
    /// bit-identical to `self(mel)`). Throws the error of the first failing spectrogram.
    public func callAsFunction(_ mels: [Tensor], chunking: CedChunking = .hf) throws -> [Tensor] {
        let workers = min(mels.count, CedCompute.threadLimit)
        if workers <= 1 { return try mels.map { try self($0, chunking: chunking) } }
        final class Results: @unchecked Sendable {
            let lock = NSLock()
            var values: [Result<Tensor, Error>?]
            init(_ n: Int) { values = .init(repeating: nil, count: n) }
        }
        let results = Results(mels.count)
        CedCompute.forEachConcurrently(mels.count, workers: workers) { i in
            let r = Result { try self(mels[i], chunking: chunking) }
            results.lock.lock()
            results.values[i] = r
            results.lock.unlock()
            return true
        }
        return try results.values.map { try $0!.get() }
    }

    /// The full forward pass, optionally with every layer's hidden states and attention maps.
    ///
    /// Without those outputs, long inputs are encoded a few chunks at a time and only each
    /// chunk's pooled features are kept, so memory stays bounded for hour-long recordings.
    /// Pooling and the head work in the model's reusable workspace: in the steady state the
    /// only heap allocations of a call are the returned tensors.
    public func forward(_ mel: Tensor, chunking: CedChunking = .hf,
                        outputHiddenStates: Bool = false, outputAttentions: Bool = false) throws -> CedClassificationOutput {
        let input = try encoder.prepare(mel)
        return encoder.workspaces.with { ws in
            var encoderOutput: CedModelOutput?
            let pooled: (count: Int, perChunk: Int)
            if outputHiddenStates || outputAttentions {
                let out = encoder.encode(input, chunks: 0 ..< input.chunks,
                                         outputHiddenStates: outputHiddenStates, outputAttentions: outputAttentions)
                var count = 0
                let grid = TokenGrid(frequencyPatches: out.frequencyPatches, timePatches: out.timePatches, hasClsToken: out.hasClsToken)
                let per = out.lastHiddenState.scalars.withUnsafeBufferPointer { x in
                    encoder.appendPooled(x.baseAddress!, layout: .init(chunks: out.chunks, grid: grid), count: &count, workspace: ws)
                }
                pooled = (count, per)
                encoderOutput = out
            } else {
                pooled = encoder.encodePooled(input, workspace: ws)
            }
            let (scores, chunkScores) = headOutputs(pooled, chunking: chunking, workspace: ws)
            return CedClassificationOutput(scores: scores, chunkScores: chunkScores, chunks: input.chunks, encoder: encoderOutput)
        }
    }

    /// The scores of a spectrogram of `totalFrames` frames that `produce` delivers in blocks
    /// (`[n_mels, n]` bin-major, `top_db` floor applied) through the closure it is given:
    /// bit for bit `forward(mel, chunking:)` of the whole spectrogram, with the memory of one
    /// group of chunks whatever the length (see `CedAudioTagger.scores(contentsOf:)`).
    func forward(totalFrames: Int, chunking: CedChunking,
                 produce: (_ deliver: (UnsafePointer<Float>, Int) throws -> Void) throws -> Void) throws -> CedClassificationOutput {
        try encoder.workspaces.with { ws in
            let stream = try CedModel.PooledStream(model: encoder, totalFrames: totalFrames, workspace: ws)
            try produce { try stream.append($0, frames: $1) }
            let pooled = try stream.finish()
            let (scores, chunkScores) = headOutputs(pooled, chunking: chunking, workspace: ws)
            return CedClassificationOutput(scores: scores, chunkScores: chunkScores, chunks: stream.chunks, encoder: nil)
        }
    }

    /// The head on the pooled vectors in `ws.pooled`: `(scores [outputdim], per-chunk
    /// scores [chunks, outputdim])` under `chunking`. `ws.scores` receives the head's
    /// scores of every pooled vector.
    func headOutputs(_ pooled: (count: Int, perChunk: Int), chunking: CedChunking,
                     workspace ws: EncoderWorkspace) -> (Tensor, Tensor) {
        let n = config.outputdim, c = config.embedDim, pooling = config.pooling
        let per = pooled.perChunk, chunks = pooled.count / per
        let features = UnsafePointer(ws.pooled.pointer)
        let scores = ws.scores.reserve(pooled.count * n)
        for i in 0..<pooled.count { head(features + i * c, into: scores + i * n, workspace: ws) }

        let chunkScores = [Float](unsafeUninitializedCapacity: chunks * n) { buffer, initialized in
            for s in 0..<chunks {
                pooling.clipScores(scores + s * per * n, vectors: per, classes: n, into: buffer.baseAddress! + s * n)
            }
            initialized = chunks * n
        }
        let combined = [Float](unsafeUninitializedCapacity: n) { buffer, initialized in
            let out = buffer.baseAddress!
            switch (chunking, pooling) {
            case (.original, _):
                chunkScores.withUnsafeBufferPointer { rows in
                    let r = rows.baseAddress!
                    if config.evalAvg == .mean {
                        meanOfRows(r, rows: chunks, rowStride: n, count: n, into: out)
                    } else {
                        for j in 0..<n {
                            var m = r[j]
                            for s in 1 ..< chunks where r[s * n + j] > m { m = r[s * n + j] }
                            out[j] = m
                        }
                    }
                }
            case (.hf, .mean), (.hf, .logit), (.hf, .token):
                // Every chunk has the same token count, so the mean of the chunk means is the
                // mean over all tokens; for `token` it is the mean of the chunks' cls tokens.
                head(meanPooled(pooled.count, workspace: ws), into: out, workspace: ws)
            case (.hf, .dm):
                // Every chunk's time steps join one timeline.
                pooling.clipScores(scores, vectors: pooled.count, classes: n, into: out)
            }
            initialized = n
        }
        return (Tensor(shape: [n], scalars: combined), Tensor(shape: [chunks, n], scalars: chunkScores))
    }

    /// The mean of the chunks' pooled vectors, in `ws.headVector`: what the head runs on
    /// under `.hf` for `mean`, `logit` and `token` pooling (one pooled vector per chunk).
    func meanPooled(_ count: Int, workspace ws: EncoderWorkspace) -> UnsafeMutablePointer<Float> {
        let c = config.embedDim
        let mean = ws.headVector.reserve(c)
        meanOfRows(ws.pooled.pointer, rows: count, rowStride: c, count: c, into: mean)
        return mean
    }
}

