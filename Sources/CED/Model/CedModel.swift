import Foundation

/// What `CedModel` returns (Hugging Face `BaseModelOutput` with CED's chunk layout).
public struct CedModelOutput: Sendable {
    /// `[chunks · tokensPerChunk, embed_dim]`: the final-LayerNorm output of every chunk,
    /// chunks concatenated in time order (the Hugging Face `last_hidden_state` layout).
    public var lastHiddenState: Tensor
    /// With `outputHiddenStates`: `depth + 1` tensors shaped like `lastHiddenState`, the
    /// embedding output followed by the output of every block (before the final LayerNorm).
    public var hiddenStates: [Tensor]?
    /// With `outputAttentions`: `depth` tensors `[chunks, heads, tokensPerChunk, tokensPerChunk]`
    /// holding each block's softmax attention weights.
    public var attentions: [Tensor]?
    /// Number of chunks the input was split into (1 when it fits `target_length`).
    public var chunks: Int
    /// Patch rows along the mel axis.
    public var frequencyPatches: Int
    /// Patch columns along time, per chunk.
    public var timePatches: Int
    /// Whether each chunk's sequence starts with a cls token (`pooling == "token"`).
    public var hasClsToken: Bool

    /// Tokens of one chunk, including the cls token when there is one.
    public var tokensPerChunk: Int { frequencyPatches * timePatches + (hasClsToken ? 1 : 0) }
}

/// The CED encoder (Hugging Face `CedModel`): BatchNorm over mel bins → patch embedding →
/// time + frequency positional embeddings (→ cls token for `token` pooling) → `depth`
/// pre-norm transformer blocks → final LayerNorm.
///
/// Inputs longer than `target_length` frames are split into `target_length`-frame chunks
/// after BatchNorm; each chunk is encoded independently. A trailing partial chunk is
/// zero-padded (after BatchNorm) to a full chunk when `pad_last`, else dropped. Unlike
/// upstream, a final chunk that is exactly full is kept (upstream drops it when the frame
/// count is an exact multiple of `target_length`). An input shorter than one patch
/// (`T < patch_size`, 16 frames ≈ 0.16 s) is zero-padded after BatchNorm to one patch, so
/// it yields one column of patches instead of an error. Frames after the last whole patch
/// of a chunk are ignored, as upstream's strided convolution does.
///
/// Instances are immutable and safe to use from several tasks at once.
public final class CedModel: Sendable {
    public let config: CedConfig
    let initBN: MelBatchNorm
    let patchEmbed: PatchEmbed
    /// `time_pos_embed` `[C, maxTimePatches]`.
    let timePosEmbed: [Float]
    /// `freq_pos_embed` `[C, frequencyPatches]`.
    let freqPosEmbed: [Float]
    /// `cls_token + token_pos_embed` `[C]` for `token` pooling.
    let clsToken: [Float]?
    let blocks: [CedBlock]
    let norm: LayerNorm

    /// Builds the encoder from weights named as in a Hugging Face `CedModel` checkpoint
    /// (with or without the `encoder.` prefix `CedForAudioClassification` uses).
    public convenience init(config: CedConfig, weights: StateDict) throws {
        try config.validate()
        let prefix = weights.tensors.keys.contains { $0.hasPrefix("encoder.") } ? "encoder" : ""
        let reader = WeightReader(weights, ignorable: { name in
            name.hasSuffix("num_batches_tracked") || (!prefix.isEmpty && !name.hasPrefix("encoder."))
        })
        self.init(config: config, reader: reader, prefix: prefix)
        try reader.finish()
    }

    init(config: CedConfig, reader r: WeightReader, prefix: String) {
        func name(_ s: String) -> String { prefix.isEmpty ? s : "\(prefix).\(s)" }
        self.config = config
        let c = config.embedDim
        initBN = MelBatchNorm(r, name("init_bn"), nMels: config.nMels)
        patchEmbed = PatchEmbed(r, name("patch_embed"), config: config)
        timePosEmbed = r.tensor(name("time_pos_embed"), shape: [1, c, 1, config.maxTimePatches])
        freqPosEmbed = r.tensor(name("freq_pos_embed"), shape: [1, c, config.frequencyPatches, 1])
        if config.pooling == .token {
            let cls = r.tensor(name("cls_token"), shape: [1, 1, c])
            let pos = r.tensor(name("token_pos_embed"), shape: [1, c])
            clsToken = zip(cls, pos).map { $0 + $1 }
        } else {
            clsToken = nil
        }
        blocks = (0..<config.depth).map { CedBlock(r, name("blocks.\($0)"), config: config) }
        norm = LayerNorm(r, name("norm"), dim: c, eps: 1e-6)
    }

    /// Encodes a `[n_mels, T]` (or `[1, n_mels, T]`) log-mel spectrogram.
    public func callAsFunction(_ mel: Tensor, outputHiddenStates: Bool = false,
                               outputAttentions: Bool = false) throws -> CedModelOutput {
        let input = try prepare(mel)
        return encode(input, chunks: 0 ..< input.chunks,
                      outputHiddenStates: outputHiddenStates, outputAttentions: outputAttentions)
    }

    /// A clip embedding `[embed_dim]`: the mean of `last_hidden_state` over every token of
    /// every chunk (cls tokens included for `token` pooling), as `last_hidden_state.mean(1)`
    /// in Python. Long inputs are encoded a group of chunks at a time, so memory stays bounded.
    public func embedding(_ mel: Tensor) throws -> Tensor {
        let input = try prepare(mel)
        let c = config.embedDim
        var sum = [Double](repeating: 0, count: c)
        var rows = 0
        for start in stride(from: 0, to: input.chunks, by: Self.chunksPerGroup) {
            let out = encode(input, chunks: start ..< min(start + Self.chunksPerGroup, input.chunks),
                             outputHiddenStates: false, outputAttentions: false)
            let x = out.lastHiddenState.scalars
            let n = out.lastHiddenState.shape[0]
            for r in 0..<n { for ch in 0..<c { sum[ch] += Double(x[r * c + ch]) } }
            rows += n
        }
        return Tensor(shape: [c], scalars: sum.map { Float($0 / Double(rows)) })
    }

    /// Chunks encoded together when per-token outputs are not kept (8 × 10 s ≈ 2000
    /// tokens: large enough for efficient matrix products, small enough to bound memory).
    static let chunksPerGroup = 8

    /// A validated, BatchNorm-ed spectrogram and how it splits into chunks.
    struct PreparedInput {
        /// `[n_mels, totalFrames]` after BatchNorm.
        var normed: [Float]
        var totalFrames: Int
        /// Frames per chunk as fed to the patch embedding (padded when needed).
        var frames: Int
        var chunks: Int
    }

    /// Validates a spectrogram, applies BatchNorm and plans the chunks.
    func prepare(_ mel: Tensor) throws -> PreparedInput {
        let nMels = config.nMels
        let shape = mel.shape
        guard (shape.count == 2 && shape[0] == nMels) || (shape.count == 3 && shape[0] == 1 && shape[1] == nMels) else {
            throw CedInputError("expected a [\(nMels), frames] log-mel spectrogram, got shape \(shape)")
        }
        let total = shape.last!
        guard total > 0 else { throw CedInputError("the spectrogram has no frames (empty audio)") }
        if let bad = mel.scalars.firstIndex(where: { !$0.isFinite }) {
            throw CedInputError("the spectrogram has a non-finite value (\(mel.scalars[bad])) at mel bin \(bad / total), frame \(bad % total)")
        }
        let target = config.targetLength
        let length: Int, count: Int
        if total <= target {
            length = max(total, config.patchSize.time)
            count = 1
        } else {
            length = target
            count = total / target + (total % target != 0 && config.padLast ? 1 : 0)
        }
        return PreparedInput(normed: initBN(mel.scalars, frames: total), totalFrames: total, frames: length, chunks: count)
    }

    /// Chunks `range` of a prepared input as `[range.count, n_mels, frames]` planes, the
    /// part past the end of the input zero (i.e. padded after BatchNorm).
    func planes(_ input: PreparedInput, chunks range: Range<Int>) -> [Float] {
        let nMels = config.nMels, length = input.frames, total = input.totalFrames
        var planes = [Float](repeating: 0, count: range.count * nMels * length)
        for (i, s) in range.enumerated() {
            let start = s * config.targetLength
            let n = min(length, total - start)
            for f in 0..<nMels {
                let dst = (i * nMels + f) * length
                let src = f * total + start
                for t in 0..<n { planes[dst + t] = input.normed[src + t] }
            }
        }
        return planes
    }

    /// Encodes the chunks in `range` of a prepared input.
    func encode(_ input: PreparedInput, chunks range: Range<Int>,
                outputHiddenStates: Bool, outputAttentions: Bool) -> CedModelOutput {
        encode(planes(input, chunks: range), frames: input.frames, chunks: range.count,
               outputHiddenStates: outputHiddenStates, outputAttentions: outputAttentions)
    }

    /// Runs patch embedding and the transformer on `chunks` planes of `[n_mels, frames]`.
    func encode(_ planes: [Float], frames: Int, chunks: Int,
                outputHiddenStates: Bool, outputAttentions: Bool) -> CedModelOutput {
        let c = config.embedDim
        let (fp, tp) = patchEmbed.grid(frames: frames)
        let patches = fp * tp
        let cls = clsToken != nil ? 1 : 0
        let tokens = patches + cls
        let rows = chunks * tokens
        let maxT = config.maxTimePatches
        var x = [Float](repeating: 0, count: rows * c)
        var hidden: [Tensor] = []
        var attentions: [Tensor] = []
        x.withUnsafeMutableBufferPointer { xb in
            let xp = xb.baseAddress!
            planes.withUnsafeBufferPointer { pb in
                for s in 0..<chunks {
                    let seq = xp + s * tokens * c
                    if let clsToken { seq.update(from: clsToken, count: c) }
                    let body = seq + cls * c
                    patchEmbed(pb.baseAddress! + s * config.nMels * frames, frames: frames, into: body)
                    for f in 0..<fp {
                        for t in 0..<tp {
                            let tok = body + (f * tp + t) * c
                            for ch in 0..<c {
                                tok[ch] += timePosEmbed[ch * maxT + t] + freqPosEmbed[ch * fp + f]
                            }
                        }
                    }
                }
            }
            if outputHiddenStates { hidden.append(Tensor(shape: [rows, c], scalars: Array(xb))) }
            let heads = config.numHeads
            for block in blocks {
                if outputAttentions {
                    var maps = [Float](repeating: 0, count: chunks * heads * tokens * tokens)
                    maps.withUnsafeMutableBufferPointer { m in
                        block(xp, sequences: chunks, tokens: tokens, attentionMaps: m.baseAddress!)
                    }
                    attentions.append(Tensor(shape: [chunks, heads, tokens, tokens], scalars: maps))
                } else {
                    block(xp, sequences: chunks, tokens: tokens)
                }
                if outputHiddenStates { hidden.append(Tensor(shape: [rows, c], scalars: Array(xb))) }
            }
            norm(xp, rows: rows, into: xp)
        }
        return CedModelOutput(lastHiddenState: Tensor(shape: [rows, c], scalars: x),
                              hiddenStates: outputHiddenStates ? hidden : nil,
                              attentions: outputAttentions ? attentions : nil,
                              chunks: chunks, frequencyPatches: fp, timePatches: tp,
                              hasClsToken: clsToken != nil)
    }
}
