import Foundation

/// Where every activation of one training step lives: the geometry of a batch and the
/// offsets (in floats) of each buffer inside one arena, planned before the step runs so
/// that a steady stream of equally shaped batches allocates nothing.
///
/// Saved for the backward pass, per block: the block's input (the previous block's
/// output), the residual after attention, q|k|v, the softmax weights, the attention
/// context and the MLP's pre-GELU hidden layer; per LayerNorm its mean and 1/σ per row.
/// Recomputed in the backward pass instead of kept: LayerNorm outputs (from the saved
/// input and statistics), the GELU output (from the hidden layer), dropout masks (from
/// the counter-based noise).
/// What a training step recomputes in its backward pass instead of keeping from the
/// forward pass, trading time for activation memory (each level includes the ones before).
public enum CedRecomputation: Int, Sendable, Codable, CaseIterable, Comparable {
    /// Keep everything the backward pass reads (fastest).
    case none
    /// Recompute the attention's softmax weights (`[B, heads, N, N]` per block) from q and k:
    /// about 1/4 more attention work in the backward pass.
    case attention
    /// Also the MLP's hidden layer (LayerNorm 2 and fc1 again): about 1/9 more work per step.
    case mlp
    /// Also q|k|v, the attention context and the residual after attention: only each block's
    /// input is kept.
    case blocks

    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }

    /// `none`, `attention`, `mlp` or `blocks`.
    public var name: String { String(describing: self) }
    public init?(name: String) {
        guard let v = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = v
    }
}

struct TrainingPlan: Equatable {
    // Geometry
    var batch: Int, frames: Int
    /// Frames the patch embedding sees (at least one patch; zero-padded after BatchNorm).
    var paddedFrames: Int
    var nMels: Int
    var frequencyPatches: Int, timePatches: Int
    var patches: Int { frequencyPatches * timePatches }
    var hasCls: Bool
    var tokens: Int { patches + (hasCls ? 1 : 0) }
    var grid: TokenGrid { TokenGrid(frequencyPatches: frequencyPatches, timePatches: timePatches, hasClsToken: hasCls) }
    var rows: Int { batch * tokens }
    var embed: Int, hidden: Int, heads: Int, depth: Int, classes: Int, area: Int
    var headDim: Int { embed / heads }
    /// Vectors the head runs on: one per clip, or one per time step for `dm` pooling.
    var headVectors: Int
    /// Row strides of `[rows, E]`, `[rows, 3E]`, `[rows, H]` activations.
    var ldE: Int, ld3: Int, ldH: Int

    // Buffers (offsets in floats)
    var input = 0, planes = 0, cols = 0, bnMean = 0, bnRstd = 0
    var residual = 0, xmid = 0, qkv = 0, probs = 0, context = 0, mlpHidden = 0
    var stats = 0, pooled = 0, headMean = 0, headRstd = 0, headNormed = 0, logits = 0, headScores = 0, outputs = 0
    // Scratch shared by all blocks
    var normed = 0, geluOut = 0, tmp = 0
    var dres = 0, dtmp = 0, dln = 0, dqkv = 0, dhidden = 0, dctx = 0, dpatch = 0, dcols = 0, dplanes = 0
    var dlogits = 0, dheadNormed = 0, dpooled = 0
    var recomputation: CedRecomputation = .none
    var totalFloats = 0
    /// Floats kept from the forward pass for the backward pass.
    var savedFloats = 0

    init(config c: CedConfig, batch: Int, frames: Int, recomputation: CedRecomputation = .none) {
        self.recomputation = recomputation
        self.batch = batch
        self.frames = frames
        paddedFrames = max(frames, c.patchSize.time)
        nMels = c.nMels
        frequencyPatches = (c.nMels - c.patchSize.frequency) / c.patchStride.frequency + 1
        timePatches = c.timePatches(frames: paddedFrames)
        hasCls = c.pooling.hasClsToken
        embed = c.embedDim
        hidden = c.mlpHiddenDim
        heads = c.numHeads
        depth = c.depth
        classes = c.outputdim
        area = c.patchSize.frequency * c.patchSize.time
        headVectors = batch * c.pooling.vectorsPerSequence(TokenGrid(frequencyPatches: frequencyPatches, timePatches: timePatches,
                                                                     hasClsToken: hasCls))
        ldE = GEMMDriver.activationStride(embed)
        ld3 = GEMMDriver.activationStride(3 * embed)
        ldH = GEMMDriver.activationStride(hidden)

        var cursor = 0
        func take(_ n: Int) -> Int {
            let o = cursor
            cursor += (max(n, 1) + 15) / 16 * 16
            return o
        }
        let r = rows, e = embed
        input = take(batch * nMels * frames)
        bnMean = take(nMels)
        bnRstd = take(nMels)
        planes = take(batch * nMels * paddedFrames)
        cols = take(batch * patches * area)
        residual = take((depth + 1) * r * ldE)
        xmid = take(xmidSlots * r * ldE)
        qkv = take(qkvSlots * r * ld3)
        probs = take(probSlots * batch * heads * tokens * tokens)
        context = take(qkvSlots * r * ldE)
        mlpHidden = take(hiddenSlots * r * ldH)
        stats = take((4 * depth + 2) * r)
        pooled = take(headVectors * e)
        headMean = take(headVectors)
        headRstd = take(headVectors)
        headNormed = take(headVectors * e)
        logits = take(headVectors * classes)
        headScores = take(headVectors * classes)
        outputs = take(batch * classes)
        savedFloats = cursor
        normed = take(r * ldE)
        geluOut = take(r * ldH)
        tmp = take(r * ldE)
        dres = take(r * ldE)
        dtmp = take(r * ldE)
        dln = take(r * ldE)
        dqkv = take(r * ld3)
        dhidden = take(r * ldH)
        dctx = take(r * ldE)
        dpatch = take(batch * patches * e)
        dcols = take(batch * patches * area)
        dplanes = take(batch * nMels * paddedFrames)
        dlogits = take(headVectors * classes)
        dheadNormed = take(headVectors * e)
        dpooled = take(headVectors * e)
        totalFloats = cursor
    }

    /// Blocks whose q|k|v and context, softmax weights, MLP hidden layer are kept (one
    /// shared slot when they are recomputed).
    var qkvSlots: Int { recomputation >= .blocks ? 1 : depth }
    var xmidSlots: Int { recomputation >= .blocks ? 1 : depth }
    var probSlots: Int { recomputation >= .attention ? 1 : depth }
    var hiddenSlots: Int { recomputation >= .mlp ? 1 : depth }

    /// Offsets of block `l`'s saved tensors.
    func residual(_ l: Int) -> Int { residual + l * rows * ldE }
    func xmid(_ l: Int) -> Int { xmid + (l % xmidSlots) * rows * ldE }
    func qkv(_ l: Int) -> Int { qkv + (l % qkvSlots) * rows * ld3 }
    func probs(_ l: Int) -> Int { probs + (l % probSlots) * batch * heads * tokens * tokens }
    func context(_ l: Int) -> Int { context + (l % qkvSlots) * rows * ldE }
    func mlpHidden(_ l: Int) -> Int { mlpHidden + (l % hiddenSlots) * rows * ldH }
    /// LayerNorm statistics: block l's norm1 (mean, rstd) and norm2, then the final norm.
    func mean1(_ l: Int) -> Int { stats + (4 * l) * rows }
    func rstd1(_ l: Int) -> Int { stats + (4 * l + 1) * rows }
    func mean2(_ l: Int) -> Int { stats + (4 * l + 2) * rows }
    func rstd2(_ l: Int) -> Int { stats + (4 * l + 3) * rows }
    var finalMean: Int { stats + 4 * depth * rows }
    var finalRstd: Int { stats + (4 * depth + 1) * rows }

    /// Bytes of the whole arena.
    var bytes: Int { totalFloats * 4 }
}
