import Foundation

// One type per layer, each owning its weights and created from the checkpoint names
// under a prefix (e.g. `encoder.blocks.3.attn`). Activations are row-major
// `[rows, features]` float32 buffers; a layer writes into caller-provided memory.

/// `nn.Linear`: `y = x·Wᵀ + b`, weight `[out, in]`.
struct Linear: Sendable {
    let weight: PackedWeight
    let bias: [Float]?
    var inFeatures: Int { weight.inFeatures }
    var outFeatures: Int { weight.outFeatures }

    init(_ r: WeightReader, _ prefix: String, in inFeatures: Int, out outFeatures: Int, bias hasBias: Bool = true) {
        weight = PackedWeight(weight: r.tensor("\(prefix).weight", shape: [outFeatures, inFeatures]),
                              outFeatures: outFeatures, inFeatures: inFeatures, precision: r.precision)
        bias = hasBias ? r.tensor("\(prefix).bias", shape: [outFeatures]) : nil
    }

    /// `y[rows, out] (=|+=) act(x[rows, in]·Wᵀ + b)`.
    func callAsFunction(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>,
                        activation: Activation = .none, accumulate: Bool = false) {
        if let bias {
            bias.withUnsafeBufferPointer { b in
                GEMM.linear(m: rows, a: x, lda: inFeatures, weight: weight, bias: b.baseAddress,
                            c: y, ldc: outFeatures, activation: activation, accumulate: accumulate)
            }
        } else {
            GEMM.linear(m: rows, a: x, lda: inFeatures, weight: weight, bias: nil,
                        c: y, ldc: outFeatures, activation: activation, accumulate: accumulate)
        }
    }
}

/// `nn.LayerNorm` over the last dimension.
struct LayerNorm: Sendable {
    let weight: [Float]
    let bias: [Float]
    let eps: Float

    init(_ r: WeightReader, _ prefix: String, dim: Int, eps: Float) {
        weight = r.tensor("\(prefix).weight", shape: [dim])
        bias = r.tensor("\(prefix).bias", shape: [dim])
        self.eps = eps
    }

    /// Normalises each of `rows` rows of `x` into `y` (which may alias `x`).
    func callAsFunction(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>) {
        weight.withUnsafeBufferPointer { w in
            bias.withUnsafeBufferPointer { b in
                RowKernels.layerNorm(x, rows: rows, cols: w.count, weight: w.baseAddress!, bias: b.baseAddress!,
                                     eps: eps, into: y)
            }
        }
    }
}

/// `init_bn`: `BatchNorm2d(n_mels)` in eval mode applied over the mel bins of a `[n_mels, T]`
/// spectrogram (upstream permutes so the mel axis is the channel axis).
struct MelBatchNorm: Sendable {
    let scale: [Float]
    let shift: [Float]

    init(_ r: WeightReader, _ prefix: String, nMels: Int, eps: Double = 1e-5) {
        let w = r.tensor("\(prefix).weight", shape: [nMels])
        let b = r.tensor("\(prefix).bias", shape: [nMels])
        let mean = r.tensor("\(prefix).running_mean", shape: [nMels])
        let variance = r.tensor("\(prefix).running_var", shape: [nMels])
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

/// `patch_embed.proj`: a `Conv2d(1, C, kernel=patch_size, stride=patch_stride)` over the
/// `[n_mels, frames]` plane, computed as im2col + GEMM. Output tokens come out in the
/// upstream order `b c f t -> b (f t) c` (frequency-major).
struct PatchEmbed: Sendable {
    let proj: Linear
    let size: CedPair
    let stride: CedPair
    let nMels: Int

    init(_ r: WeightReader, _ prefix: String, config: CedConfig) {
        size = config.patchSize
        stride = config.patchStride
        nMels = config.nMels
        let kernel = size.frequency * size.time
        // Conv weight [C, 1, ph, pw] is a Linear weight [C, ph·pw] in row-major order.
        let w = r.tensor("\(prefix).proj.weight", shape: [config.embedDim, 1, size.frequency, size.time])
        let b = r.tensor("\(prefix).proj.bias", shape: [config.embedDim])
        proj = Linear(weight: PackedWeight(weight: w, outFeatures: config.embedDim, inFeatures: kernel), bias: b)
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
/// `head_dim^-0.5`.
struct Attention: Sendable {
    let qkv: Linear
    let proj: Linear
    let heads: Int
    let dim: Int

    init(_ r: WeightReader, _ prefix: String, dim: Int, heads: Int, qkvBias: Bool) {
        qkv = Linear(r, "\(prefix).qkv", in: dim, out: 3 * dim, bias: qkvBias)
        proj = Linear(r, "\(prefix).proj", in: dim, out: dim)
        self.heads = heads
        self.dim = dim
    }

    /// Adds `proj(attention(x))` to `residual` for `sequences` sequences of `tokens` tokens
    /// stored back to back in `x` (`[sequences·tokens, dim]`). When `attentionMaps` is
    /// given, the softmax weights are written there as `[sequences, heads, tokens, tokens]`.
    func callAsFunction(_ x: UnsafePointer<Float>, sequences: Int, tokens: Int,
                        addingInto residual: UnsafeMutablePointer<Float>, workspace ws: EncoderWorkspace,
                        attentionMaps: UnsafeMutablePointer<Float>? = nil) {
        let rows = sequences * tokens
        let d = dim / heads
        let scale = Float(1 / Double(d).squareRoot())
        let ld = 3 * dim
        let q3 = ws.qkv.reserve(rows * ld)
        let ctx = ws.context.reserve(rows * dim)
        let sc = ws.scores.reserve(heads * tokens * tokens)
        qkv(x, rows: rows, into: q3)
        for s in 0..<sequences {
            let base = q3 + s * tokens * ld
            // scores_h = scale · Q_h K_hᵀ for every head at once.
            GEMM.sgemmStridedBatched(transA: false, transB: true, m: tokens, n: tokens, k: d, alpha: scale,
                                     a: base, lda: ld, strideA: d, b: base + dim, ldb: ld, strideB: d,
                                     c: sc, ldc: tokens, strideC: tokens * tokens, batchCount: heads)
            softmaxRows(sc, rows: heads * tokens, cols: tokens)
            if let attentionMaps {
                (attentionMaps + s * heads * tokens * tokens).update(from: sc, count: heads * tokens * tokens)
            }
            // context[:, h·d ..< (h+1)·d] = P_h · V_h
            GEMM.sgemmStridedBatched(transA: false, transB: false, m: tokens, n: d, k: tokens,
                                     a: sc, lda: tokens, strideA: tokens * tokens, b: base + 2 * dim, ldb: ld, strideB: d,
                                     c: ctx + s * tokens * dim, ldc: dim, strideC: d, batchCount: heads)
        }
        proj(ctx, rows: rows, into: residual, accumulate: true)
    }
}

/// Row-wise numerically stable softmax, in place, split across the cores when large.
func softmaxRows(_ p: UnsafeMutablePointer<Float>, rows: Int, cols: Int) {
    let pool = ComputePool.shared
    let tasks = rows * cols >= 1 << 15 ? min(rows, 2 * (pool.workerCount + 1)) : 1
    if tasks <= 1 {
        RowKernels.softmax(p, rows: rows, cols: cols)
        return
    }
    let per = (rows + tasks - 1) / tasks
    pool.run(tasks, maxThreads: pool.workerCount + 1) { t in
        let lo = t * per, hi = min(rows, lo + per)
        if lo < hi { RowKernels.softmax(p + lo * cols, rows: hi - lo, cols: cols) }
    }
}

/// The transformer MLP: `fc2(GELU(fc1(x)))`.
struct MLP: Sendable {
    let fc1: Linear
    let fc2: Linear

    init(_ r: WeightReader, _ prefix: String, dim: Int, hidden: Int) {
        fc1 = Linear(r, "\(prefix).fc1", in: dim, out: hidden)
        fc2 = Linear(r, "\(prefix).fc2", in: hidden, out: dim)
    }

    /// Adds `fc2(GELU(fc1(x)))` to `residual`.
    func callAsFunction(_ x: UnsafePointer<Float>, rows: Int, addingInto residual: UnsafeMutablePointer<Float>,
                        workspace ws: EncoderWorkspace) {
        let h = ws.hidden.reserve(rows * fc1.outFeatures)
        fc1(x, rows: rows, into: h, activation: .gelu)
        fc2(h, rows: rows, into: residual, accumulate: true)
    }
}

/// A pre-norm transformer block: `x += attn(norm1(x)); x += mlp(norm2(x))`.
struct CedBlock: Sendable {
    let norm1: LayerNorm
    let attn: Attention
    let norm2: LayerNorm
    let mlp: MLP

    init(_ r: WeightReader, _ prefix: String, config: CedConfig) {
        norm1 = LayerNorm(r, "\(prefix).norm1", dim: config.embedDim, eps: 1e-6)
        attn = Attention(r, "\(prefix).attn", dim: config.embedDim, heads: config.numHeads, qkvBias: config.qkvBias)
        norm2 = LayerNorm(r, "\(prefix).norm2", dim: config.embedDim, eps: 1e-6)
        mlp = MLP(r, "\(prefix).mlp", dim: config.embedDim, hidden: config.mlpHiddenDim)
    }

    /// Runs the block in place on `x` (`[sequences·tokens, dim]`).
    func callAsFunction(_ x: UnsafeMutablePointer<Float>, sequences: Int, tokens: Int, workspace ws: EncoderWorkspace,
                        attentionMaps: UnsafeMutablePointer<Float>? = nil) {
        let rows = sequences * tokens
        let n = ws.normed.reserve(rows * attn.dim)
        norm1(x, rows: rows, into: n)
        attn(n, sequences: sequences, tokens: tokens, addingInto: x, workspace: ws, attentionMaps: attentionMaps)
        norm2(x, rows: rows, into: n)
        mlp(n, rows: rows, addingInto: x, workspace: ws)
    }
}
