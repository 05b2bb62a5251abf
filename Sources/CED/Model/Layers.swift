import Foundation

// One type per layer, each owning its weights and created from its entries of
// `CedParameterTable` (names, shapes, eps). Activations are row-major `[rows, features]`
// float32 buffers; a layer writes into caller-provided memory.

/// `nn.Linear`: `y = x·Wᵀ + b`, weight `[out, in]`.
struct Linear: Sendable {
    let weight: PackedWeight
    let bias: [Float]?
    var inFeatures: Int { weight.inFeatures }
    var outFeatures: Int { weight.outFeatures }

    /// `inputZeroPoint`: for int8, the zero point its inputs are quantised with.
    init(_ r: WeightReader, _ p: CedLinearParameters, precision: CedPrecision, inputZeroPoint: Int32 = 128) {
        weight = PackedWeight(weight: r.tensor(p.weight), outFeatures: p.outFeatures, inFeatures: p.inFeatures,
                              precision: precision, inputZeroPoint: inputZeroPoint)
        bias = p.bias.map { r.tensor($0) }
    }

    /// `y[rows, out] (=|+=) act(x[rows, in]·Wᵀ + b)`; row strides `ldx`, `ldy` (default:
    /// the feature counts).
    func callAsFunction(_ x: UnsafePointer<Float>, rows: Int, ldx: Int? = nil, into y: UnsafeMutablePointer<Float>,
                        ldy: Int? = nil, activation: Activation = .none, accumulate: Bool = false) {
        let lda = ldx ?? inFeatures, ldc = ldy ?? outFeatures
        if let bias {
            bias.withUnsafeBufferPointer { b in
                GEMM.linear(m: rows, a: x, lda: lda, weight: weight, bias: b.baseAddress,
                            c: y, ldc: ldc, activation: activation, accumulate: accumulate)
            }
        } else {
            GEMM.linear(m: rows, a: x, lda: lda, weight: weight, bias: nil,
                        c: y, ldc: ldc, activation: activation, accumulate: accumulate)
        }
    }
}

/// `nn.LayerNorm` over the last dimension.
struct LayerNorm: Sendable {
    let weight: [Float]
    let bias: [Float]
    let eps: Float

    init(_ r: WeightReader, _ p: CedLayerNormParameters) {
        weight = r.tensor(p.weight)
        bias = r.tensor(p.bias)
        eps = Float(p.eps)
    }

    /// Normalises each of `rows` rows of `x` (contiguous) into `y` (row stride `ldy`,
    /// default the row length; `y` may alias `x` when the strides agree).
    func callAsFunction(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>, ldy: Int? = nil) {
        weight.withUnsafeBufferPointer { w in
            bias.withUnsafeBufferPointer { b in
                RowKernels.layerNormParallel(x, rows: rows, cols: w.count, weight: w.baseAddress!, bias: b.baseAddress!,
                                             eps: eps, into: y, ldy: ldy ?? w.count)
            }
        }
    }
}

/// The mel BatchNorm: `BatchNorm2d(n_mels)` in eval mode applied over the mel bins of a `[n_mels, T]`
/// spectrogram (upstream permutes so the mel axis is the channel axis).
struct MelBatchNorm: Sendable {
    let scale: [Float]
    let shift: [Float]

    init(_ r: WeightReader, _ p: CedBatchNormParameters) {
        let nMels = p.bins, eps = p.eps
        let w = r.tensor(p.weight)
        let b = r.tensor(p.bias)
        let mean = r.tensor(p.runningMean)
        let variance = r.tensor(p.runningVariance)
        var scale = [Float](repeating: 0, count: nMels), shift = scale
        for f in 0..<nMels {
            let inv = 1 / (Double(variance[f]) + eps).squareRoot()
            scale[f] = Float(Double(w[f]) * inv)
            shift[f] = Float(Double(b[f]) - Double(mean[f]) * Double(w[f]) * inv)
        }
        self.scale = scale
        self.shift = shift
    }

    /// Normalises `count` frames of mel bin `bin` into `out`.
    func normalize(_ x: UnsafePointer<Float>, count: Int, bin: Int, into out: UnsafeMutablePointer<Float>) {
        let s = scale[bin], b = shift[bin]
        for t in 0..<count { out[t] = x[t] * s + b }
    }
}

/// The patch embedding: a `Conv2d(1, C, kernel=patch_size, stride=patch_stride)` over the
/// `[n_mels, frames]` plane, computed as im2col + GEMM. Output tokens come out in the
/// upstream order `b c f t -> b (f t) c` (frequency-major).
struct PatchEmbed: Sendable {
    let proj: Linear
    let size: CedPair
    let stride: CedPair
    let nMels: Int

    init(_ r: WeightReader, _ p: CedLinearParameters, config: CedConfig) {
        size = config.patchSize
        stride = config.patchStride
        nMels = config.nMels
        // Conv weight [C, 1, ph, pw] is a Linear weight [C, ph·pw] in row-major order.
        proj = Linear(r, p, precision: .fp32)
    }

    func grid(frames: Int) -> (frequency: Int, time: Int) {
        let fp = (nMels - size.frequency) / stride.frequency + 1
        let tp = frames < size.time ? 0 : (frames - size.time) / stride.time + 1
        return (fp, tp)
    }

    /// Writes the im2col matrix `[fp·tp, ph·pw]` of one `[n_mels, frames]` plane to `cols`.
    func im2col(_ plane: UnsafePointer<Float>, frames: Int, into cols: UnsafeMutablePointer<Float>) {
        let (fp, tp) = grid(frames: frames)
        let kernel = size.frequency * size.time
        for f in 0..<fp {
            for t in 0..<tp {
                let row = cols + (f * tp + t) * kernel
                for kh in 0..<size.frequency {
                    let src = plane + (f * stride.frequency + kh) * frames + t * stride.time
                    (row + kh * size.time).update(from: src, count: size.time)
                }
            }
        }
    }

    /// Embeds `count` consecutive im2col blocks (`rows` patch rows in all) into `[rows, C]`.
    func embed(columns: UnsafePointer<Float>, rows: Int, into out: UnsafeMutablePointer<Float>) {
        proj(columns, rows: rows, into: out)
    }
}

extension Linear {
    init(weight: PackedWeight, bias: [Float]?) {
        self.weight = weight
        self.bias = bias
    }
}

/// Multi-head self-attention with a fused `qkv` projection and softmax scaled by
/// `head_dim^-0.5` (the products per head in `FusedAttention`).
struct Attention: Sendable {
    let qkv: Linear
    let proj: Linear
    let heads: Int
    let dim: Int
    /// Precision of the attention products (`.bf16`: Q·Kᵀ and P·V in bf16).
    let precision: CedPrecision
    /// Row stride of the attention output (`GEMMDriver.activationStride`).
    let contextStride: Int

    init(_ r: WeightReader, _ p: CedBlockParameters, heads: Int) {
        // The softmax scale head_dim^-0.5 is folded into the q rows of the qkv projection
        // (exact for CED's head size 64, a power of two; otherwise a rounding-level change),
        // so the attention products need no scaling epilogue.
        let dim = p.proj.outFeatures
        let scale = Float(1 / Double(dim / heads).squareRoot())
        var w = r.tensor(p.qkv.weight)
        var b = p.qkv.bias.map { r.tensor($0) }
        for i in 0..<dim * dim { w[i] *= scale }
        if b != nil { for i in 0..<dim { b![i] *= scale } }
        qkv = Linear(weight: PackedWeight(weight: w, outFeatures: 3 * dim, inFeatures: dim,
                                          precision: r.plan.qkv), bias: b)
        proj = Linear(r, p.proj, precision: r.plan.proj)
        self.heads = heads
        self.dim = dim
        precision = r.plan.attention
        contextStride = GEMMDriver.activationStride(dim)
    }

    /// Adds `proj(attention(x))` to `residual` for `sequences` sequences of `tokens` tokens
    /// stored back to back in `x` (`[sequences·tokens, dim]`). When `attentionMaps` is
    /// given, the softmax weights are written there as `[sequences, heads, tokens, tokens]`.
    /// `x` has row stride `ldx` (default `dim`).
    func callAsFunction(_ x: UnsafePointer<Float>, sequences: Int, tokens: Int, ldx: Int? = nil,
                        addingInto residual: UnsafeMutablePointer<Float>, workspace ws: EncoderWorkspace,
                        attentionMaps: UnsafeMutablePointer<Float>? = nil) {
        let rows = sequences * tokens
        let d = dim / heads
        let q3 = ws.qkv.reserve(rows * 3 * dim)
        let ctx = ws.context.reserve(rows * contextStride)
        qkv(x, rows: rows, ldx: ldx, into: q3)
        FusedAttention.run(.init(sequences: sequences, tokens: tokens, heads: heads, headDim: d,
                                 qkvStride: 3 * dim, contextStride: contextStride),
                           qkv: q3, scale: 1, context: ctx, maps: attentionMaps, precision: precision)
        proj(ctx, rows: rows, ldx: contextStride, into: residual, accumulate: true)
    }
}

/// The transformer MLP: `fc2(GELU(fc1(x)))`.
struct MLP: Sendable {
    let fc1: Linear
    let fc2: Linear
    /// Row stride of the hidden layer (`GEMMDriver.activationStride`).
    let hiddenStride: Int

    /// The int8 zero point of GELU outputs: 16 of 255 steps for the negative side, which
    /// covers GELU's minimum (−0.170) whenever the row's maximum is at least 2.5, and
    /// otherwise the scale is set by that minimum (0.17/16) and 239 steps cover the maximum.
    static let geluZeroPoint: Int32 = 16

    init(_ r: WeightReader, _ p: CedBlockParameters) {
        fc1 = Linear(r, p.fc1, precision: r.plan.fc1)
        // fc2 reads GELU outputs (≥ −0.17): in int8 most of the byte range goes to positive values.
        fc2 = Linear(r, p.fc2, precision: r.plan.fc2, inputZeroPoint: MLP.geluZeroPoint)
        hiddenStride = GEMMDriver.activationStride(p.fc1.outFeatures)
    }

    /// Adds `fc2(GELU(fc1(x)))` to `residual`; `x` has row stride `ldx` (default its width).
    func callAsFunction(_ x: UnsafePointer<Float>, rows: Int, ldx: Int? = nil, addingInto residual: UnsafeMutablePointer<Float>,
                        workspace ws: EncoderWorkspace) {
        let h = ws.hidden.reserve(rows * hiddenStride)
        fc1(x, rows: rows, ldx: ldx, into: h, ldy: hiddenStride, activation: .gelu)
        fc2(h, rows: rows, ldx: hiddenStride, into: residual, accumulate: true)
    }
}

/// A pre-norm transformer block: `x += attn(norm1(x)); x += mlp(norm2(x))`.
struct CedBlock: Sendable {
    let norm1: LayerNorm
    let attn: Attention
    let norm2: LayerNorm
    let mlp: MLP
    /// Row stride of the normalised rows, which only products read (`GEMMDriver.activationStride`).
    let normedStride: Int

    init(_ r: WeightReader, _ p: CedBlockParameters, config: CedConfig) {
        norm1 = LayerNorm(r, p.norm1)
        attn = Attention(r, p, heads: config.numHeads)
        norm2 = LayerNorm(r, p.norm2)
        mlp = MLP(r, p)
        normedStride = GEMMDriver.activationStride(config.embedDim)
    }

    /// Runs the block in place on `x` (`[sequences·tokens, dim]`).
    func callAsFunction(_ x: UnsafeMutablePointer<Float>, sequences: Int, tokens: Int, workspace ws: EncoderWorkspace,
                        attentionMaps: UnsafeMutablePointer<Float>? = nil) {
        let rows = sequences * tokens
        let n = ws.normed.reserve(rows * normedStride)
        norm1(x, rows: rows, into: n, ldy: normedStride)
        attn(n, sequences: sequences, tokens: tokens, ldx: normedStride, addingInto: x, workspace: ws, attentionMaps: attentionMaps)
        norm2(x, rows: rows, into: n, ldy: normedStride)
        mlp(n, rows: rows, ldx: normedStride, addingInto: x, workspace: ws)
    }
}

/// The classification head (`CedParameterTable.head`): LayerNorm, then Linear, then the
/// pooling's activation (sigmoid, none for `logit`) on one pooled vector. It stays float32
/// in every precision (one small product per vector).
struct ClassificationHead: Sendable {
    let norm: LayerNorm
    let linear: Linear
    let pooling: CedPooling

    init(_ r: WeightReader, _ p: CedHeadParameters, pooling: CedPooling) {
        norm = LayerNorm(r, p.norm)
        linear = Linear(r, p.linear, precision: .fp32)
        self.pooling = pooling
    }

    var inputDim: Int { linear.inFeatures }
    var classes: Int { linear.outFeatures }

    /// The head on one vector `v` into `out` (`[classes]`), activated unless
    /// `activate` is false (the logits). `normed` is scratch of `inputDim` floats.
    func callAsFunction(_ v: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, normed: UnsafeMutablePointer<Float>,
                        activate: Bool = true) {
        norm(v, rows: 1, into: normed)
        linear(normed, rows: 1, into: out)
        if activate { pooling.activate(out, count: classes) }
    }

    /// As above with the scratch from a model workspace.
    func callAsFunction(_ v: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, workspace ws: EncoderWorkspace,
                        activate: Bool = true) {
        self(v, into: out, normed: ws.headNormed.reserve(inputDim), activate: activate)
    }
}
