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

    /// Class scores for several spectrograms (any lengths), one `[outputdim]` tensor each.
    public func callAsFunction(_ mels: [Tensor], chunking: CedChunking = .hf) throws -> [Tensor] {
        try mels.map { try self($0, chunking: chunking) }
    }

    /// The full forward pass, optionally with every layer's hidden states and attention maps.
    ///
    /// Without those outputs, long inputs are encoded a few chunks at a time and only each
    /// chunk's pooled features are kept, so memory stays bounded for hour-long recordings.
    public func forward(_ mel: Tensor, chunking: CedChunking = .hf,
                        outputHiddenStates: Bool = false, outputAttentions: Bool = false) throws -> CedClassificationOutput {
        let input = try encoder.prepare(mel)
        if outputHiddenStates || outputAttentions {
            let out = encoder.encode(input, chunks: 0 ..< input.chunks,
                                     outputHiddenStates: outputHiddenStates, outputAttentions: outputAttentions)
            let (combined, perChunk) = combine(chunkFeatures(out), chunking: chunking)
            return CedClassificationOutput(logits: combined, chunkLogits: perChunk, chunks: out.chunks, encoder: out)
        }
        var features: [[[Float]]] = []
        let group = CedModel.chunksPerGroup
        encoder.workspaces.with { ws in
            for start in stride(from: 0, to: input.chunks, by: group) {
                let layout = encoder.run(input, chunks: start ..< min(start + group, input.chunks), workspace: ws)
                features += chunkFeatures(ws.x.pointer, layout: layout)
            }
        }
        let (combined, perChunk) = combine(features, chunking: chunking)
        return CedClassificationOutput(logits: combined, chunkLogits: perChunk, chunks: input.chunks, encoder: nil)
    }

    /// The vectors the head runs on, per chunk: the mean token (`mean`, `logit`), the cls
    /// token (`token`), or one frequency-mean per time step (`dm`).
    func chunkFeatures(_ out: CedModelOutput) -> [[[Float]]] {
        out.lastHiddenState.scalars.withUnsafeBufferPointer { x in
            chunkFeatures(x.baseAddress!, layout: .init(chunks: out.chunks, frequencyPatches: out.frequencyPatches,
                                                        timePatches: out.timePatches, hasClsToken: out.hasClsToken))
        }
    }

    /// `chunkFeatures` of encoder output `x` (`[layout.rows, C]`).
    func chunkFeatures(_ x: UnsafePointer<Float>, layout: CedModel.Layout) -> [[[Float]]] {
        let c = config.embedDim
        let tokens = layout.tokensPerChunk
        let fp = layout.frequencyPatches, tp = layout.timePatches
        var result: [[[Float]]] = []
        for s in 0..<layout.chunks {
            let base = s * tokens * c
            switch config.pooling {
            case .token:
                result.append([Array(UnsafeBufferPointer(start: x + base, count: c))])
            case .mean, .logit:
                var v = [Double](repeating: 0, count: c)
                for t in 0..<tokens { for ch in 0..<c { v[ch] += Double(x[base + t * c + ch]) } }
                result.append([v.map { Float($0 / Double(tokens)) }])
            case .dm:
                var steps: [[Float]] = []
                for t in 0..<tp {
                    var v = [Double](repeating: 0, count: c)
                    for f in 0..<fp { for ch in 0..<c { v[ch] += Double(x[base + (f * tp + t) * c + ch]) } }
                    steps.append(v.map { Float($0 / Double(fp)) })
                }
                result.append(steps)
            }
        }
        return result
    }

    /// Applies the head to per-chunk features; returns the combined scores under `chunking`
    /// and the per-chunk scores.
    func combine(_ features: [[[Float]]], chunking: CedChunking) -> (Tensor, Tensor) {
        let n = config.outputdim
        let sigmoid = config.pooling != .logit
        let chunks = features.count

        // Per-chunk outputs (original semantics, also reported to callers).
        var chunkScores = [Float]()
        chunkScores.reserveCapacity(chunks * n)
        for vectors in features {
            chunkScores += average(vectors.map { applyHead($0, sigmoid: sigmoid) })
        }

        let combined: [Float]
        switch (chunking, config.pooling) {
        case (.original, _):
            let rows = (0..<chunks).map { Array(chunkScores[$0 * n ..< ($0 + 1) * n]) }
            combined = config.evalAvg == .mean ? average(rows) : (0..<n).map { j in rows.map { $0[j] }.max()! }
        case (.hf, .mean), (.hf, .logit), (.hf, .token):
            // Every chunk has the same token count, so the mean of the chunk means is the
            // mean over all tokens; for `token` it is the mean of the chunks' cls tokens.
            combined = applyHead(average(features.map { $0[0] }), sigmoid: sigmoid)
        case (.hf, .dm):
            combined = average(features.flatMap { $0 }.map { applyHead($0, sigmoid: true) })
        }
        return (Tensor(shape: [n], scalars: combined), Tensor(shape: [chunks, n], scalars: chunkScores))
    }

    /// `outputlayer(v)`, then sigmoid when asked.
    func applyHead(_ v: [Float], sigmoid: Bool) -> [Float] {
        var normed = [Float](repeating: 0, count: v.count)
        var out = [Float](repeating: 0, count: config.outputdim)
        v.withUnsafeBufferPointer { vb in
            normed.withUnsafeMutableBufferPointer { nb in
                headNorm(vb.baseAddress!, rows: 1, into: nb.baseAddress!)
                out.withUnsafeMutableBufferPointer { ob in
                    head(nb.baseAddress!, rows: 1, into: ob.baseAddress!)
                }
            }
        }
        if sigmoid { for i in out.indices { out[i] = 1 / (1 + expf(-out[i])) } }
        return out
    }
}

/// Element-wise mean of equally long vectors (accumulated in double).
func average(_ rows: [[Float]]) -> [Float] {
    guard let first = rows.first else { return [] }
    if rows.count == 1 { return first }
    var acc = [Double](repeating: 0, count: first.count)
    for r in rows { for i in r.indices { acc[i] += Double(r[i]) } }
    return acc.map { Float($0 / Double(rows.count)) }
}
