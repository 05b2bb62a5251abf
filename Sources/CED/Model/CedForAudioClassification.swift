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
    /// `[outputdim]` class scores: sigmoid probabilities, or raw logits for `logit` pooling.
    /// (Named as upstream, whose `logits` also hold the sigmoid output.)
    public var logits: Tensor
    /// `[chunks, outputdim]`: the head applied to each chunk separately (what the original
    /// semantics combines with `eval_avg`).
    public var chunkLogits: Tensor
    /// Number of chunks the input was split into.
    public var chunks: Int
    /// The encoder's output, when hidden states or attentions were requested.
    public var encoder: CedModelOutput?
}

/// CED with its classification head (Hugging Face `CedForAudioClassification`): the encoder,
/// then `outputlayer` = LayerNorm (eps 1e-5) + Linear over the pooled tokens, with sigmoid
/// except for `logit` pooling.
///
/// Instances are immutable and safe to use from several tasks at once.
public final class CedForAudioClassification: Sendable {
    public let config: CedConfig
    public let encoder: CedModel
    let headNorm: LayerNorm
    let head: Linear

    /// Builds the model from weights named as in a Hugging Face checkpoint
    /// (`encoder.*`, `outputlayer.0.*`, `outputlayer.1.*`), checking every name and shape.
    /// Throws `WeightLoadingError` listing missing, unexpected and mis-shaped tensors, or
    /// `ConfigError` for an invalid configuration.
    ///
    /// `precision` selects the arithmetic of the encoder's matrix products (`.fp32`, the
    /// default, matches the reference; `.bf16` is an opt-in faster mode).
    public init(config: CedConfig, weights: StateDict, precision: CedPrecision = .fp32) throws {
        try config.validate()
        let reader = WeightReader(weights, precision: precision)
        self.config = config
        encoder = CedModel(config: config, reader: reader, prefix: "encoder")
        headNorm = LayerNorm(reader, "outputlayer.0", dim: config.embedDim, eps: 1e-5)
        // The head stays float32 in every precision (it is one small product per clip).
        head = Linear(reader, "outputlayer.1", in: config.embedDim, out: config.outputdim, precision: .fp32)
        try reader.finish()
    }

    /// Class scores `[outputdim]` for a `[n_mels, T]` log-mel spectrogram.
    public func callAsFunction(_ mel: Tensor, chunking: CedChunking = .hf) throws -> Tensor {
        try forward(mel, chunking: chunking).logits
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
            let pooled: PooledFeatures
            if outputHiddenStates || outputAttentions {
                let out = encoder.encode(input, chunks: 0 ..< input.chunks,
                                         outputHiddenStates: outputHiddenStates, outputAttentions: outputAttentions)
                var p = PooledFeatures()
                out.lastHiddenState.scalars.withUnsafeBufferPointer { x in
                    appendPooled(x.baseAddress!, layout: .init(chunks: out.chunks, frequencyPatches: out.frequencyPatches,
                                                               timePatches: out.timePatches, hasClsToken: out.hasClsToken),
                                 to: &p, workspace: ws)
                }
                pooled = p
                encoderOutput = out
            } else {
                pooled = encodePooled(input, workspace: ws)
            }
            let (logits, chunkLogits) = headOutputs(pooled, chunking: chunking, workspace: ws)
            return CedClassificationOutput(logits: logits, chunkLogits: chunkLogits, chunks: input.chunks, encoder: encoderOutput)
        }
    }

    /// How many pooled vectors `ws.pooled` holds: `vectorsPerChunk` per chunk (1, or the
    /// time steps for `dm` pooling), `[count, embed_dim]` row-major.
    struct PooledFeatures {
        var chunks = 0
        var vectorsPerChunk = 1
        var count: Int { chunks * vectorsPerChunk }
    }

    /// Encodes every chunk of `input` (`CedModel.chunksPerGroup` at a time) and leaves the
    /// pooled features of all chunks in `ws.pooled`.
    func encodePooled(_ input: CedModel.PreparedInput, workspace ws: EncoderWorkspace) -> PooledFeatures {
        var pooled = PooledFeatures()
        let group = CedModel.chunksPerGroup
        for start in stride(from: 0, to: input.chunks, by: group) {
            let layout = encoder.run(input, chunks: start ..< min(start + group, input.chunks), workspace: ws)
            appendPooled(ws.x.pointer, layout: layout, to: &pooled, workspace: ws)
        }
        return pooled
    }

    /// Appends the vectors the head runs on for each chunk of encoder output `x`
    /// (`[layout.rows, C]`) to `ws.pooled`: the mean token (`mean`, `logit`), the cls token
    /// (`token`), or one frequency mean per time step (`dm`). Means are accumulated in double.
    func appendPooled(_ x: UnsafePointer<Float>, layout: CedModel.Layout, to pooled: inout PooledFeatures,
                      workspace ws: EncoderWorkspace) {
        let c = config.embedDim
        let tokens = layout.tokensPerChunk
        let fp = layout.frequencyPatches, tp = layout.timePatches
        let perChunk = config.pooling == .dm ? tp : 1
        precondition(pooled.chunks == 0 || pooled.vectorsPerChunk == perChunk, "chunks of different lengths")
        let old = pooled.count * c
        pooled.vectorsPerChunk = perChunk
        pooled.chunks += layout.chunks
        var out = ws.pooled.reserve(pooled.count * c, keeping: old) + old
        for s in 0..<layout.chunks {
            let chunk = x + s * tokens * c
            switch config.pooling {
            case .token:
                out.update(from: chunk, count: c)
            case .mean, .logit:
                meanOfRows(chunk, rows: tokens, rowStride: c, count: c, into: out)
            case .dm:
                // Time step t of frequency row f is token f·tp + t.
                for t in 0..<tp { meanOfRows(chunk + t * c, rows: fp, rowStride: tp * c, count: c, into: out + t * c) }
            }
            out += perChunk * c
        }
    }

    /// The head on pooled features: `(scores [outputdim], per-chunk scores [chunks, outputdim])`
    /// under `chunking`. `ws.scores` holds the head output of every pooled vector.
    func headOutputs(_ pooled: PooledFeatures, chunking: CedChunking, workspace ws: EncoderWorkspace) -> (Tensor, Tensor) {
        let n = config.outputdim, c = config.embedDim
        let sigmoid = config.pooling != .logit
        let chunks = pooled.chunks, per = pooled.vectorsPerChunk
        let features = UnsafePointer(ws.pooled.pointer)
        // Rows 0..<count: per vector; row count: room for one more (the pooled mean).
        let scores = ws.scores.reserve((pooled.count + 1) * n)
        for i in 0..<pooled.count { applyHead(features + i * c, into: scores + i * n, sigmoid: sigmoid, workspace: ws) }

        let chunkScores = [Float](unsafeUninitializedCapacity: chunks * n) { buffer, initialized in
            for s in 0..<chunks {
                meanOfRows(scores + s * per * n, rows: per, rowStride: n, count: n, into: buffer.baseAddress! + s * n)
            }
            initialized = chunks * n
        }
        let combined = [Float](unsafeUninitializedCapacity: n) { buffer, initialized in
            let out = buffer.baseAddress!
            switch (chunking, config.pooling) {
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
                applyHead(meanPooled(pooled, workspace: ws), into: out, sigmoid: sigmoid, workspace: ws)
            case (.hf, .dm):
                meanOfRows(scores, rows: pooled.count, rowStride: n, count: n, into: out)
            }
            initialized = n
        }
        return (Tensor(shape: [n], scalars: combined), Tensor(shape: [chunks, n], scalars: chunkScores))
    }

    /// The mean of the chunks' pooled vectors, in `ws.headVector`: what the head runs on
    /// under `.hf` for `mean`, `logit` and `token` pooling (one pooled vector per chunk).
    func meanPooled(_ pooled: PooledFeatures, workspace ws: EncoderWorkspace) -> UnsafeMutablePointer<Float> {
        let c = config.embedDim
        let mean = ws.headVector.reserve(c)
        meanOfRows(ws.pooled.pointer, rows: pooled.chunks, rowStride: c, count: c, into: mean)
        return mean
    }

    /// `outputlayer(v)` for one `[embed_dim]` vector, then sigmoid when asked.
    func applyHead(_ v: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, sigmoid: Bool,
                   workspace ws: EncoderWorkspace) {
        let normed = ws.headNormed.reserve(config.embedDim)
        headNorm(v, rows: 1, into: normed)
        head(normed, rows: 1, into: out)
        if sigmoid { for i in 0..<config.outputdim { out[i] = 1 / (1 + expf(-out[i])) } }
    }
}

/// `out[j] = mean over r < rows of x[r·rowStride + j]` for `j < count`, accumulated in
/// double in row order; one row is copied unchanged.
func meanOfRows(_ x: UnsafePointer<Float>, rows: Int, rowStride: Int, count: Int, into out: UnsafeMutablePointer<Float>) {
    precondition(rows > 0)
    if rows == 1 { out.update(from: x, count: count); return }
    let scale = Double(rows)
    var j = 0
    while j + 8 <= count {
        var acc = SIMD8<Double>(repeating: 0)
        for r in 0..<rows {
            let p = x + r * rowStride + j
            acc += SIMD8<Double>(Double(p[0]), Double(p[1]), Double(p[2]), Double(p[3]),
                                 Double(p[4]), Double(p[5]), Double(p[6]), Double(p[7]))
        }
        let m = acc / scale
        for i in 0..<8 { out[j + i] = Float(m[i]) }
        j += 8
    }
    while j < count {
        var acc = 0.0
        for r in 0..<rows { acc += Double(x[r * rowStride + j]) }
        out[j] = Float(acc / scale)
        j += 1
    }
}
