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
    /// The time positional embedding transposed to `[maxTimePatches, C]`.
    let timePos: [Float]
    /// The frequency positional embedding transposed to `[frequencyPatches, C]`.
    let freqPos: [Float]
    /// Activation buffers, reused across calls.
    let workspaces = WorkspacePool()
    /// The cls token plus its positional embedding, `[C]`, for `token` pooling.
    let clsToken: [Float]?
    let blocks: [CedBlock]
    let norm: LayerNorm

    /// Builds the encoder from a checkpoint's weights: Hugging Face `CedForAudioClassification`
    /// names (the head's tensors, if any, are not read), a bare Hugging Face `CedModel`
    /// (no `encoder.` prefix) or the authors' layout (`CedWeightLayout.sanitize`).
    public convenience init(config: CedConfig, weights: StateDict, precision: CedPrecision = .fp32) throws {
        try config.validate()
        let table = CedParameterTable(config: config)
        let reader = WeightReader(CedWeightLayout.sanitize(weights).weights, table: table, plan: precision.plan(for: config),
                                  ignorable: CedParameterTable.isHead)
        self.init(table: table, reader: reader)
        try reader.finish()
    }

    init(table t: CedParameterTable, reader r: WeightReader) {
        let config = t.config
        self.config = config
        chunksPerGroup = Self.chunksPerGroup(config)
        let c = config.embedDim
        initBN = MelBatchNorm(r, t.initBN)
        patchEmbed = PatchEmbed(r, t.patchEmbed, config: config)
        timePos = transpose(r.tensor(t.timePosEmbed), rows: c, cols: config.maxTimePatches)
        freqPos = transpose(r.tensor(t.freqPosEmbed), rows: c, cols: config.frequencyPatches)
        if let cls = t.clsToken, let pos = t.tokenPosEmbed {
            clsToken = zip(r.tensor(cls), r.tensor(pos)).map { $0 + $1 }
        } else {
            clsToken = nil
        }
        blocks = t.blocks.map { CedBlock(r, $0, config: config) }
        norm = LayerNorm(r, t.norm)
    }

    /// Encodes a `[n_mels, T]` (or `[1, n_mels, T]`) log-mel spectrogram.
    public func callAsFunction(_ mel: Tensor, outputHiddenStates: Bool = false,
                               outputAttentions: Bool = false) throws -> CedModelOutput {
        let input = try prepare(mel)
        return encode(input, chunks: 0 ..< input.chunks,
                      outputHiddenStates: outputHiddenStates, outputAttentions: outputAttentions)
    }

    /// A clip embedding `[embed_dim]`: what the classification head reads, averaged over
    /// the input's chunks (for a clip of at most `target_length` frames, exactly the head's
    /// input): the mean of every token for `mean` and `logit` pooling (Python's
    /// `last_hidden_state.mean(1)`), the cls token for `token` pooling, and the mean of
    /// the per-time-step vectors (so again the mean of every token) for `dm`. Long inputs
    /// are encoded a group of chunks at a time, so memory stays bounded.
    public func embedding(_ mel: Tensor) throws -> Tensor {
        let input = try prepare(mel)
        let c = config.embedDim
        return workspaces.with { ws in
            let (vectors, _) = encodePooled(input, workspace: ws)
            return Tensor(shape: [c], scalars: [Float](unsafeUninitializedCapacity: c) { b, n in
                meanOfRows(ws.pooled.pointer, rows: vectors, rowStride: c, count: c, into: b.baseAddress!)
                n = c
            })
        }
    }

    /// Encodes every chunk of `input` (`chunksPerGroup` at a time) and leaves the pooled
    /// vectors of all chunks in `ws.pooled` (`[count, embed_dim]`): how many vectors, and
    /// how many per chunk.
    func encodePooled(_ input: PreparedInput, workspace ws: EncoderWorkspace) -> (count: Int, perChunk: Int) {
        var count = 0, per = 1
        for start in stride(from: 0, to: input.chunks, by: chunksPerGroup) {
            let layout = run(input, chunks: start ..< min(start + chunksPerGroup, input.chunks), workspace: ws)
            per = appendPooled(ws.x.pointer, layout: layout, count: &count, workspace: ws)
        }
        return (count, per)
    }

    /// Appends the head's input vectors of each chunk of encoder output `x`
    /// (`[layout.rows, C]`) to `ws.pooled`, which holds `count` vectors; returns the
    /// vectors per chunk.
    @discardableResult
    func appendPooled(_ x: UnsafePointer<Float>, layout: Layout, count: inout Int, workspace ws: EncoderWorkspace) -> Int {
        let c = config.embedDim, pooling = config.pooling
        let per = pooling.vectorsPerSequence(layout.grid)
        let old = count * c
        count += layout.chunks * per
        let out = ws.pooled.reserve(count * c, keeping: old) + old
        for s in 0..<layout.chunks {
            pooling.pool(x + s * layout.grid.tokens * c, grid: layout.grid, ld: c, dim: c, into: out + s * per * c)
        }
        return per
    }

    /// Chunks encoded together when per-token outputs are not kept: as many as fit a
    /// 24 MB activation budget, at most 8 (8 × 10 s ≈ 2000 tokens) and at least 1 (CED-Tiny
    /// 8, CED-Base 2): large enough for efficient matrix products, small enough that an
    /// hour-long recording needs little more memory than a 10 s clip.
    let chunksPerGroup: Int

    static func chunksPerGroup(_ c: CedConfig) -> Int {
        let tokens = c.frequencyPatches * c.maxTimePatches + 1
        let perChunk = tokens * 4 * (5 * GEMMDriver.activationStride(c.embedDim) + GEMMDriver.activationStride(3 * c.embedDim)
                                     + GEMMDriver.activationStride(c.mlpHiddenDim))
        return max(1, min(8, (24 << 20) / max(perChunk, 1)))
    }

    /// A validated spectrogram and how it splits into chunks (BatchNorm is applied as the
    /// chunks are copied out, so a long recording's mel is not duplicated).
    struct PreparedInput {
        /// `[n_mels, totalFrames]` as given.
        var mel: [Float]
        var totalFrames: Int
        /// Frames per chunk as fed to the patch embedding (padded when needed).
        var frames: Int
        var chunks: Int
    }

    /// How a spectrogram of `total` frames splits into chunks: frames per chunk as the patch
    /// embedding sees them (padded when needed) and the number of chunks.
    func plan(totalFrames total: Int) -> (frames: Int, chunks: Int) {
        let target = config.targetLength
        if total <= target { return (max(total, config.patchSize.time), 1) }
        return (target, total / target + (total % target != 0 && config.padLast ? 1 : 0))
    }

    /// Validates a spectrogram and plans the chunks.
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
        let (length, count) = plan(totalFrames: total)
        return PreparedInput(mel: mel.scalars, totalFrames: total, frames: length, chunks: count)
    }

    /// Geometry of an encoded group of chunks.
    struct Layout {
        var chunks: Int
        var grid: TokenGrid
        var rows: Int { chunks * grid.tokens }
    }

    /// Copies chunks `range` of a prepared input into `planes` as `[range.count, n_mels,
    /// frames]`, BatchNorm applied; the part past the end of the input is zero (i.e.
    /// padded after BatchNorm).
    func fillPlanes(_ input: PreparedInput, chunks range: Range<Int>, into planes: UnsafeMutablePointer<Float>) {
        let nMels = config.nMels, length = input.frames, total = input.totalFrames
        planes.initialize(repeating: 0, count: range.count * nMels * length)
        input.mel.withUnsafeBufferPointer { src in
            for (i, s) in range.enumerated() {
                let start = s * config.targetLength
                let n = min(length, total - start)
                for f in 0..<nMels {
                    initBN.normalize(src.baseAddress! + f * total + start, count: n, bin: f,
                                     into: planes + (i * nMels + f) * length)
                }
            }
        }
    }

    /// Encodes the chunks in `range` of a prepared input into `ws.x` (`[layout.rows, C]`,
    /// after the final LayerNorm). `hiddenState` sees the residual stream after the
    /// embedding and after every block; `attentionMaps` receives the blocks' softmax
    /// weights one after the other (`[depth, chunks, heads, N, N]`).
    func run(_ input: PreparedInput, chunks range: Range<Int>, workspace ws: EncoderWorkspace,
             hiddenState: ((UnsafePointer<Float>) -> Void)? = nil,
             attentionMaps: UnsafeMutablePointer<Float>? = nil) -> Layout {
        let nMels = config.nMels, frames = input.frames, chunks = range.count
        let planes = ws.planes.reserve(chunks * nMels * frames)
        fillPlanes(input, chunks: range, into: planes)
        return encode(planes: planes, chunks: chunks, frames: frames, workspace: ws, hiddenState: hiddenState,
                      attentionMaps: attentionMaps)
    }

    /// Encodes `chunks` BatchNorm-ed planes `[chunks, n_mels, frames]` (in `ws.planes`)
    /// into `ws.x` (`[layout.rows, C]`, after the final LayerNorm); see `run`.
    func encode(planes: UnsafeMutablePointer<Float>, chunks: Int, frames: Int, workspace ws: EncoderWorkspace,
                hiddenState: ((UnsafePointer<Float>) -> Void)? = nil,
                attentionMaps: UnsafeMutablePointer<Float>? = nil) -> Layout {
        let c = config.embedDim, nMels = config.nMels
        let (fp, tp) = patchEmbed.grid(frames: frames)
        let layout = Layout(chunks: chunks, grid: TokenGrid(frequencyPatches: fp, timePatches: tp, hasClsToken: clsToken != nil))
        let patches = fp * tp, tokens = layout.grid.tokens, rows = layout.rows
        let area = config.patchSize.frequency * config.patchSize.time
        let cols = ws.columns.reserve(chunks * patches * area)
        for s in 0..<chunks {
            patchEmbed.im2col(planes + s * nMels * frames, frames: frames, into: cols + s * patches * area)
        }
        let x = ws.x.reserve(rows * c)
        if let clsToken {
            for s in 0..<chunks {
                let seq = x + s * tokens * c
                seq.update(from: clsToken, count: c)
                patchEmbed.embed(columns: cols + s * patches * area, rows: patches, into: seq + c)
            }
        } else {
            patchEmbed.embed(columns: cols, rows: chunks * patches, into: x)
        }
        // Positional embeddings, stored token-major at load time.
        timePos.withUnsafeBufferPointer { tpos in
            freqPos.withUnsafeBufferPointer { fpos in
                for s in 0..<chunks {
                    let body = x + (s * tokens + (clsToken != nil ? 1 : 0)) * c
                    for f in 0..<fp {
                        let fv = fpos.baseAddress! + f * c
                        for t in 0..<tp {
                            let tok = body + (f * tp + t) * c
                            let tv = tpos.baseAddress! + t * c
                            for ch in 0..<c { tok[ch] += tv[ch] + fv[ch] }
                        }
                    }
                }
            }
        }
        hiddenState?(x)
        for (i, block) in blocks.enumerated() {
            let maps = attentionMaps.map { $0 + i * chunks * config.numHeads * tokens * tokens }
            block(x, sequences: chunks, tokens: tokens, workspace: ws, attentionMaps: maps)
            hiddenState?(x)
        }
        norm(x, rows: rows, into: x)
        return layout
    }

    /// Encodes the chunks in `range` of a prepared input into a `CedModelOutput`.
    func encode(_ input: PreparedInput, chunks range: Range<Int>,
                outputHiddenStates: Bool, outputAttentions: Bool) -> CedModelOutput {
        let c = config.embedDim, heads = config.numHeads
        return workspaces.with { ws in
            let (fp, tp) = patchEmbed.grid(frames: input.frames)
            let tokens = fp * tp + (clsToken != nil ? 1 : 0)
            let rows = range.count * tokens
            var hidden: [Tensor] = []
            let perBlock = range.count * heads * tokens * tokens
            var maps = [Float](repeating: 0, count: outputAttentions ? blocks.count * perBlock : 0)
            let layout = maps.withUnsafeMutableBufferPointer { m in
                run(input, chunks: range, workspace: ws,
                    hiddenState: outputHiddenStates ? { p in hidden.append(Tensor(shape: [rows, c], scalars: Array(UnsafeBufferPointer(start: p, count: rows * c)))) } : nil,
                    attentionMaps: outputAttentions ? m.baseAddress! : nil)
            }
            let x = Array(UnsafeBufferPointer(start: ws.x.pointer, count: rows * c))
            return CedModelOutput(lastHiddenState: Tensor(shape: [rows, c], scalars: x),
                                  hiddenStates: outputHiddenStates ? hidden : nil,
                                  attentions: outputAttentions ? (0..<blocks.count).map {
                                      Tensor(shape: [range.count, heads, tokens, tokens], scalars: Array(maps[$0 * perBlock ..< ($0 + 1) * perBlock]))
                                  } : nil,
                                  chunks: layout.chunks, frequencyPatches: layout.grid.frequencyPatches,
                                  timePatches: layout.grid.timePatches, hasClsToken: layout.grid.hasClsToken)
        }
    }
}

/// Row-major `[rows, cols]` → `[cols, rows]`.
func transpose(_ m: [Float], rows: Int, cols: Int) -> [Float] {
    var out = [Float](repeating: 0, count: m.count)
    for r in 0..<rows { for c in 0..<cols { out[c * rows + r] = m[r * cols + c] } }
    return out
}

extension CedModel {
    /// Encodes a spectrogram that arrives in blocks of frames (with its `top_db` floor, not
    /// yet BatchNorm-ed) into the pooled vectors `encodePooled` computes from the whole
    /// spectrogram, bit for bit, a group of chunks at a time: an hour-long recording is
    /// never held whole. The total frame count must be known (a first pass over the file
    /// finds it, with the floor).
    final class PooledStream {
        let model: CedModel
        let ws: EncoderWorkspace
        let total: Int, frames: Int, chunks: Int, group: Int
        let planes: UnsafeMutablePointer<Float>
        private var received = 0
        private var groupStart = 0
        private var pooled = 0, perChunk = 1

        init(model: CedModel, totalFrames: Int, workspace ws: EncoderWorkspace) throws {
            guard totalFrames > 0 else { throw CedInputError("the spectrogram has no frames (empty audio)") }
            self.model = model
            self.ws = ws
            total = totalFrames
            (frames, chunks) = model.plan(totalFrames: totalFrames)
            group = model.chunksPerGroup
            planes = ws.planes.reserve(group * model.config.nMels * frames)
            planes.initialize(repeating: 0, count: group * model.config.nMels * frames)
        }

        /// Frames `received ..< received + n` as `[n_mels, n]` (bin-major).
        func append(_ block: UnsafePointer<Float>, frames n: Int) throws {
            let nMels = model.config.nMels, target = model.config.targetLength
            if let bad = (0 ..< nMels * n).first(where: { !block[$0].isFinite }) {
                throw CedInputError("the spectrogram has a non-finite value (\(block[bad])) at mel bin \(bad / n), frame \(received + bad % n)")
            }
            var t = 0
            while t < n {
                let f = received + t
                let chunk = total <= target ? 0 : f / target
                guard chunk < chunks else { break }                      // a dropped partial chunk (pad_last false)
                if chunk >= groupStart + group { flush(upTo: groupStart + group) }
                let pos = f - chunk * target
                // Frames of this chunk in this block.
                let run = min(n - t, (chunk + 1) * target - f)
                let slot = chunk - groupStart
                for m in 0..<nMels {
                    model.initBN.normalize(block + m * n + t, count: run, bin: m,
                                           into: planes + (slot * nMels + m) * frames + pos)
                }
                t += run
            }
            received += n
        }

        private func flush(upTo end: Int) {
            let count = min(end, chunks) - groupStart
            guard count > 0 else { return }
            let layout = model.encode(planes: planes, chunks: count, frames: frames, workspace: ws)
            perChunk = model.appendPooled(ws.x.pointer, layout: layout, count: &pooled, workspace: ws)
            groupStart += count
            planes.update(repeating: 0, count: group * model.config.nMels * frames)
        }

        /// Encodes what is left; the pooled vectors are in `ws.pooled`.
        func finish() throws -> (count: Int, perChunk: Int) {
            guard received == total else {
                throw CedInputError("the spectrogram was announced with \(total) frames but \(received) arrived")
            }
            flush(upTo: chunks)
            return (pooled, perChunk)
        }
    }
}
