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
                              outFeatures: outFeatures, inFeatures: inFeatures)
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
        let dim = weight.count
        weight.withUnsafeBufferPointer { w in
            bias.withUnsafeBufferPointer { b in
                for r in 0..<rows {
                    let xr = x + r * dim, yr = y + r * dim
                    var sum: Double = 0
                    for i in 0..<dim { sum += Double(xr[i]) }
                    let mean = sum / Double(dim)
                    var sq: Double = 0
                    for i in 0..<dim { let d = Double(xr[i]) - mean; sq += d * d }
                    let inv = 1 / (sq / Double(dim) + Double(eps)).squareRoot()
                    let m = Float(mean), s = Float(inv)
                    for i in 0..<dim { yr[i] = (xr[i] - m) * s * w[i] + b[i] }
                }
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

    /// Normalised copy of a row-major `[n_mels, frames]` spectrogram.
    func callAsFunction(_ mel: [Float], frames: Int) -> [Float] {
        var out = mel
        for f in 0..<scale.count {
            let s = scale[f], b = shift[f]
            for t in 0..<frames { out[f * frames + t] = mel[f * frames + t] * s + b }
        }
        return out
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

    /// Embeds one `[n_mels, frames]` plane into `[fp·tp, C]` tokens at `out`.
    func callAsFunction(_ plane: UnsafePointer<Float>, frames: Int, into out: UnsafeMutablePointer<Float>) {
        let (fp, tp) = grid(frames: frames)
        let kernel = size.frequency * size.time
        var cols = [Float](repeating: 0, count: fp * tp * kernel)
        cols.withUnsafeMutableBufferPointer { c in
            for f in 0..<fp {
                for t in 0..<tp {
                    let row = c.baseAddress! + (f * tp + t) * kernel
                    for kh in 0..<size.frequency {
                        let src = plane + (f * stride.frequency + kh) * frames + t * stride.time
                        (row + kh * size.time).update(from: src, count: size.time)
                    }
                }
            }
            proj(c.baseAddress!, rows: fp * tp, into: out)
        }
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
                        addingInto residual: UnsafeMutablePointer<Float>,
                        attentionMaps: UnsafeMutablePointer<Float>? = nil) {
        let rows = sequences * tokens
        let headDim = dim / heads
        let scale = Float(1 / Double(headDim).squareRoot())
        var qkvOut = [Float](repeating: 0, count: rows * 3 * dim)
        var context = [Float](repeating: 0, count: rows * dim)
        var scores = [Float](repeating: 0, count: tokens * tokens)
        qkvOut.withUnsafeMutableBufferPointer { qkvBuf in
            context.withUnsafeMutableBufferPointer { ctx in
                scores.withUnsafeMutableBufferPointer { sc in
                    let q3 = qkvBuf.baseAddress!
                    qkv(x, rows: rows, into: q3)
                    let ld = 3 * dim
                    for s in 0..<sequences {
                        for h in 0..<heads {
                            let base = q3 + s * tokens * ld + h * headDim
                            // scores = scale · Q Kᵀ
                            GEMM.sgemm(transA: false, transB: true, m: tokens, n: tokens, k: headDim,
                                       alpha: scale, a: base, lda: ld, b: base + dim, ldb: ld,
                                       c: sc.baseAddress!, ldc: tokens)
                            softmaxRows(sc.baseAddress!, rows: tokens, cols: tokens)
                            if let attentionMaps {
                                (attentionMaps + (s * heads + h) * tokens * tokens)
                                    .update(from: sc.baseAddress!, count: tokens * tokens)
                            }
                            // context[:, h] = P · V
                            GEMM.sgemm(transA: false, transB: false, m: tokens, n: headDim, k: tokens,
                                       a: sc.baseAddress!, lda: tokens, b: base + 2 * dim, ldb: ld,
                                       c: ctx.baseAddress! + s * tokens * dim + h * headDim, ldc: dim)
                        }
                    }
                    proj(ctx.baseAddress!, rows: rows, into: residual, accumulate: true)
                }
            }
        }
    }
}

/// Row-wise numerically stable softmax, in place.
func softmaxRows(_ p: UnsafeMutablePointer<Float>, rows: Int, cols: Int) {
    for r in 0..<rows {
        let row = p + r * cols
        var m = -Float.infinity
        for j in 0..<cols { m = max(m, row[j]) }
        var sum: Float = 0
        for j in 0..<cols {
            // exp of anything below -87.3 is subnormal or 0 in float32 and would neither
            // change the sum nor survive the normalisation; skipping it avoids slow
            // subnormal arithmetic in peaky attention rows.
            let d = row[j] - m
            let e = d < -87.3 ? 0 : expf(d)
            row[j] = e
            sum += e
        }
        let inv = 1 / sum
        for j in 0..<cols { row[j] *= inv }
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
    func callAsFunction(_ x: UnsafePointer<Float>, rows: Int, addingInto residual: UnsafeMutablePointer<Float>) {
        var hidden = [Float](repeating: 0, count: rows * fc1.outFeatures)
        hidden.withUnsafeMutableBufferPointer { h in
            fc1(x, rows: rows, into: h.baseAddress!, activation: .gelu)
            fc2(h.baseAddress!, rows: rows, into: residual, accumulate: true)
        }
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
    func callAsFunction(_ x: UnsafeMutablePointer<Float>, sequences: Int, tokens: Int,
                        attentionMaps: UnsafeMutablePointer<Float>? = nil) {
        let rows = sequences * tokens
        var normed = [Float](repeating: 0, count: rows * attn.dim)
        normed.withUnsafeMutableBufferPointer { n in
            norm1(x, rows: rows, into: n.baseAddress!)
            attn(n.baseAddress!, sequences: sequences, tokens: tokens, addingInto: x, attentionMaps: attentionMaps)
            norm2(x, rows: rows, into: n.baseAddress!)
            mlp(n.baseAddress!, rows: rows, addingInto: x)
        }
    }
}
