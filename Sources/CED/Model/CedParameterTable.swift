import Foundation

// The one definition of CED's tensors. Every name, shape, initialisation, eps and
// weight-decay group of `CedForAudioClassification` is written here, once, per layer;
// inference layers, the training model's flat parameter buffer, saving, random
// initialisation (training and `ced bench`), configuration inference from shapes, the
// head trainer and the embedder all read it. The authors' `.pt` names are mapped onto
// these by `CedWeightLayout.sanitize` (CedWeightLayout.swift), the only other place that
// spells tensor names.

/// How a tensor is initialised for training from scratch, as upstream's
/// `AudioTransformer.__init__` and `init_weights` do.
public enum CedParameterInit: Sendable, Equatable {
    /// All zeros (biases, LayerNorm shifts, BatchNorm running mean).
    case zeros
    /// All ones (LayerNorm and BatchNorm scales, BatchNorm running variance).
    case ones
    /// `nn.init.trunc_normal_(std: std)` with timm's absolute bounds ±2 (every `nn.Linear`
    /// weight: std 0.02).
    case truncatedNormal(std: Double)
    /// `torch.randn(...) · std` (positional embeddings 0.02, the cls token 1e-6).
    case normal(std: Double)
    /// PyTorch's default `Conv2d` initialisation, uniform in ±1/√fan_in (the patch
    /// embedding's weight, kaiming_uniform with a = √5, and its bias).
    case uniformFanIn(fanIn: Int)
}

/// What a tensor is for; the optimiser's groups and the benchmark's random weights read it.
public enum CedParameterRole: String, Sendable, Equatable {
    case linearWeight, linearBias
    case convWeight, convBias
    case layerNormWeight, layerNormBias
    case batchNormWeight, batchNormBias
    case positionalEmbedding, clsToken
    /// Not trained: BatchNorm running statistics and its step counter.
    case runningMean, runningVariance, batchCounter
}

/// The layer a tensor belongs to (the same for every block).
public enum CedLayer: String, Sendable, Equatable, CaseIterable {
    case initBN, patchEmbed, timePosEmbed, freqPosEmbed, clsToken, tokenPosEmbed
    case norm1, qkv, proj, norm2, fc1, fc2
    case norm, headNorm, head
}

/// One tensor of `CedForAudioClassification`.
public struct CedParameter: Sendable, Equatable {
    /// The Hugging Face name (`encoder.blocks.3.attn.qkv.weight`).
    public var name: String
    /// The PyTorch shape.
    public var shape: [Int]
    public var role: CedParameterRole
    public var layer: CedLayer
    /// The transformer block, for the tensors of a block.
    public var block: Int?
    public var initialization: CedParameterInit
    /// In AdamW's weight-decay group: tensors with at least two dimensions except the
    /// positional embeddings and the cls token (upstream's `no_weight_decay`).
    public var decays: Bool
    /// Trained by the optimiser (false for the BatchNorm buffers).
    public var isTrainable: Bool
    /// Where its values start in a flat buffer of the trainable parameters in table order
    /// (nil for the BatchNorm buffers).
    public var offset: Int?

    public var count: Int { shape.reduce(1, *) }

    /// For a Linear or Conv weight, the number of inputs of each output (`shape[1...]`).
    public var fanIn: Int { shape.dropFirst().reduce(1, *) }

    /// Whether it is a tensor of the classification head.
    public var isHead: Bool { layer == .headNorm || layer == .head }

    /// `offset`, for a trainable parameter.
    var at: Int { offset! }
}

/// `nn.Linear` (or the patch embedding's `Conv2d`, a Linear over flattened patches):
/// weight `[out, in]` (conv: `[out, 1, ph, pw]`) and an optional bias `[out]`.
public struct CedLinearParameters: Sendable, Equatable {
    public var weight: CedParameter
    public var bias: CedParameter?
    public var inFeatures: Int
    public var outFeatures: Int
}

/// `nn.LayerNorm` over the last dimension.
public struct CedLayerNormParameters: Sendable, Equatable {
    public var weight: CedParameter
    public var bias: CedParameter
    public var eps: Double
    public var dim: Int { weight.count }
}

/// `init_bn`: `BatchNorm2d(n_mels)` over the mel bins.
public struct CedBatchNormParameters: Sendable, Equatable {
    public var weight: CedParameter
    public var bias: CedParameter
    public var runningMean: CedParameter
    public var runningVariance: CedParameter
    public var batchesTracked: CedParameter
    public var eps: Double
    /// The running statistics' update rate in train mode.
    public var momentum: Double
    public var bins: Int { weight.count }
}

/// A pre-norm transformer block: `x += proj(attn(qkv(norm1(x)))); x += fc2(GELU(fc1(norm2(x))))`.
public struct CedBlockParameters: Sendable, Equatable {
    public var norm1: CedLayerNormParameters
    public var qkv: CedLinearParameters
    public var proj: CedLinearParameters
    public var norm2: CedLayerNormParameters
    public var fc1: CedLinearParameters
    public var fc2: CedLinearParameters

    /// Every tensor of the block, in upstream's order.
    public var entries: [CedParameter] {
        [norm1.weight, norm1.bias, qkv.weight] + (qkv.bias.map { [$0] } ?? [])
            + [proj.weight, proj.bias!, norm2.weight, norm2.bias, fc1.weight, fc1.bias!, fc2.weight, fc2.bias!]
    }
}

/// The classification head: LayerNorm then Linear over the pooled vector.
public struct CedHeadParameters: Sendable, Equatable {
    public var norm: CedLayerNormParameters
    public var linear: CedLinearParameters
    public var entries: [CedParameter] { [norm.weight, norm.bias, linear.weight, linear.bias!] }
    public var inputDim: Int { linear.inFeatures }
    public var classes: Int { linear.outFeatures }

    /// The same head with its trainable values laid out from `offset` on (a head trained
    /// on its own, over cached pooled vectors).
    public func rebased(at offset: Int = 0) -> CedHeadParameters {
        var h = self
        var o = offset
        func place(_ p: inout CedParameter) { p.offset = o; o += p.count }
        place(&h.norm.weight)
        place(&h.norm.bias)
        place(&h.linear.weight)
        place(&h.linear.bias!)
        return h
    }
}

/// The one table of CED tensors for a configuration: every parameter and buffer of
/// `CedForAudioClassification`, typed per layer, in the order upstream creates them.
/// Trainable parameters get consecutive offsets in that order (one flat buffer holds
/// them all: the embedding part, then block after block, then the final norm and head).
public struct CedParameterTable: Sendable {
    public let config: CedConfig
    public let initBN: CedBatchNormParameters
    /// The patch embedding (a `Conv2d(1, embed, patch_size, patch_stride)`).
    public let patchEmbed: CedLinearParameters
    /// `[1, embed, 1, target_length / stride]`.
    public let timePosEmbed: CedParameter
    /// `[1, embed, n_mels / stride, 1]`.
    public let freqPosEmbed: CedParameter
    /// `[1, 1, embed]` and `[1, embed]` for `token` pooling.
    public let clsToken: CedParameter?
    public let tokenPosEmbed: CedParameter?
    public let blocks: [CedBlockParameters]
    /// The encoder's final LayerNorm.
    public let norm: CedLayerNormParameters
    public let head: CedHeadParameters
    /// Every tensor, trainable parameters and buffers, in upstream's order.
    public let entries: [CedParameter]
    /// Number of trainable values (the length of the flat parameter buffer).
    public let parameterCount: Int
    private let index: [String: Int]

    /// Hugging Face names. `CedWeightLayout.sanitize` maps other layouts onto these.
    enum Names {
        static let encoder = "encoder."
        static let initBN = "encoder.init_bn"
        static let patchEmbed = "encoder.patch_embed.proj"
        static let timePosEmbed = "encoder.time_pos_embed"
        static let freqPosEmbed = "encoder.freq_pos_embed"
        static let clsToken = "encoder.cls_token"
        static let tokenPosEmbed = "encoder.token_pos_embed"
        static let blocks = "encoder.blocks."
        static func block(_ i: Int) -> String { "encoder.blocks.\(i)" }
        static let norm = "encoder.norm"
        static let head = "outputlayer."
        static let headNorm = "outputlayer.0"
        static let headLinear = "outputlayer.1"
    }

    public init(config c: CedConfig) {
        self.config = c
        var list: [CedParameter] = []
        var offset = 0
        func add(_ name: String, _ shape: [Int], _ role: CedParameterRole, _ layer: CedLayer, block: Int? = nil,
                 _ initialization: CedParameterInit) -> CedParameter {
            let trainable = ![.runningMean, .runningVariance, .batchCounter].contains(role)
            let decays = trainable && shape.count >= 2 && role != .positionalEmbedding && role != .clsToken
            let p = CedParameter(name: name, shape: shape, role: role, layer: layer, block: block, initialization: initialization,
                                 decays: decays, isTrainable: trainable, offset: trainable ? offset : nil)
            if trainable { offset += p.count }
            list.append(p)
            return p
        }
        func linear(_ prefix: String, _ layer: CedLayer, block: Int? = nil, in i: Int, out o: Int, bias: Bool = true) -> CedLinearParameters {
            let w = add("\(prefix).weight", [o, i], .linearWeight, layer, block: block, .truncatedNormal(std: 0.02))
            let b = bias ? add("\(prefix).bias", [o], .linearBias, layer, block: block, .zeros) : nil
            return CedLinearParameters(weight: w, bias: b, inFeatures: i, outFeatures: o)
        }
        func layerNorm(_ prefix: String, _ layer: CedLayer, block: Int? = nil, dim: Int, eps: Double) -> CedLayerNormParameters {
            CedLayerNormParameters(weight: add("\(prefix).weight", [dim], .layerNormWeight, layer, block: block, .ones),
                                   bias: add("\(prefix).bias", [dim], .layerNormBias, layer, block: block, .zeros), eps: eps)
        }
        let e = c.embedDim, h = c.mlpHiddenDim, m = c.nMels
        let ph = c.patchSize.frequency, pw = c.patchSize.time
        let bn = Names.initBN
        initBN = CedBatchNormParameters(
            weight: add("\(bn).weight", [m], .batchNormWeight, .initBN, .ones),
            bias: add("\(bn).bias", [m], .batchNormBias, .initBN, .zeros),
            runningMean: add("\(bn).running_mean", [m], .runningMean, .initBN, .zeros),
            runningVariance: add("\(bn).running_var", [m], .runningVariance, .initBN, .ones),
            batchesTracked: add("\(bn).num_batches_tracked", [], .batchCounter, .initBN, .zeros),
            eps: c.batchNormEps, momentum: c.batchNormMomentum)
        patchEmbed = CedLinearParameters(
            weight: add("\(Names.patchEmbed).weight", [e, 1, ph, pw], .convWeight, .patchEmbed, .uniformFanIn(fanIn: ph * pw)),
            bias: add("\(Names.patchEmbed).bias", [e], .convBias, .patchEmbed, .uniformFanIn(fanIn: ph * pw)),
            inFeatures: ph * pw, outFeatures: e)
        timePosEmbed = add(Names.timePosEmbed, [1, e, 1, c.maxTimePatches], .positionalEmbedding, .timePosEmbed, .normal(std: 0.02))
        freqPosEmbed = add(Names.freqPosEmbed, [1, e, c.frequencyPatches, 1], .positionalEmbedding, .freqPosEmbed, .normal(std: 0.02))
        if c.pooling == .token {
            clsToken = add(Names.clsToken, [1, 1, e], .clsToken, .clsToken, .normal(std: 1e-6))
            tokenPosEmbed = add(Names.tokenPosEmbed, [1, e], .positionalEmbedding, .tokenPosEmbed, .normal(std: 0.02))
        } else {
            clsToken = nil
            tokenPosEmbed = nil
        }
        var blocks: [CedBlockParameters] = []
        for i in 0..<c.depth {
            let b = Names.block(i)
            blocks.append(CedBlockParameters(
                norm1: layerNorm("\(b).norm1", .norm1, block: i, dim: e, eps: c.layerNormEps),
                qkv: linear("\(b).attn.qkv", .qkv, block: i, in: e, out: 3 * e, bias: c.qkvBias),
                proj: linear("\(b).attn.proj", .proj, block: i, in: e, out: e),
                norm2: layerNorm("\(b).norm2", .norm2, block: i, dim: e, eps: c.layerNormEps),
                fc1: linear("\(b).mlp.fc1", .fc1, block: i, in: e, out: h),
                fc2: linear("\(b).mlp.fc2", .fc2, block: i, in: h, out: e)))
        }
        self.blocks = blocks
        norm = layerNorm(Names.norm, .norm, dim: e, eps: c.layerNormEps)
        head = CedHeadParameters(norm: layerNorm(Names.headNorm, .headNorm, dim: e, eps: c.headLayerNormEps),
                                 linear: linear(Names.headLinear, .head, in: e, out: c.outputdim))
        entries = list
        parameterCount = offset
        index = Dictionary(uniqueKeysWithValues: list.enumerated().map { ($1.name, $0) })
    }

    public subscript(name: String) -> CedParameter? { index[name].map { entries[$0] } }

    /// The trainable parameters (every entry but the BatchNorm buffers), in order.
    public var parameters: [CedParameter] { entries.filter(\.isTrainable) }

    /// Trainable values a state dict holds (the table's parameters it has; the BatchNorm's
    /// running statistics and step counter are buffers, not parameters).
    public func trainableValues(in weights: StateDict) -> Int {
        parameters.reduce(0) { $0 + (weights[$1.name]?.count ?? 0) }
    }

    /// Whether a tensor name is one of the classification head's.
    public static func isHead(_ name: String) -> Bool { name.hasPrefix(Names.head) }

    /// Whether a tensor name is one of the encoder's (everything but the head).
    public static func isEncoder(_ name: String) -> Bool { name.hasPrefix(Names.encoder) }

    // MARK: Flat-buffer parts

    /// Offsets of the parts a backward pass finishes one after the other: the final norm
    /// and the head first, then each block from the last, then the embedding part
    /// (BatchNorm, patch embedding, positions, cls token).
    public var headPart: Range<Int> { norm.weight.at ..< parameterCount }
    public func blockPart(_ l: Int) -> Range<Int> {
        blocks[l].norm1.weight.at ..< (l + 1 < blocks.count ? blocks[l + 1].norm1.weight.at : norm.weight.at)
    }
    public var embeddingPart: Range<Int> { 0 ..< (blocks.first?.norm1.weight.at ?? norm.weight.at) }

    // MARK: Random initialisation

    /// How `randomWeights` draws values.
    public enum RandomScheme: Sendable {
        /// Upstream's initialisation of a new model (`init_weights`: truncated normal Linear
        /// weights, zero biases, LayerNorm 1 and 0, positional embeddings `randn · 0.02`,
        /// the cls token `normal(std 1e-6)`, PyTorch's default Conv2d, BatchNorm 1, 0 and
        /// running statistics 0, 1).
        case upstream
        /// Values at the scales of a trained model, for benchmarks and kernel accuracy
        /// checks: uniform, fan-in-scaled matrices (activations keep unit scale through
        /// the blocks; q|k|v and the head 1.5× for peaky attention and spread
        /// probabilities), LayerNorm and BatchNorm scales near 1, dB-like BatchNorm
        /// statistics, large positional embeddings.
        case trainedScale
    }

    /// A state dict of every tensor (or those `only` accepts) drawn from `rng` in table
    /// order.
    public func randomWeights(rng: inout TrainingRandom, scheme: RandomScheme = .upstream,
                              only: ((CedParameter) -> Bool)? = nil) -> StateDict {
        var tensors: [String: Tensor] = [:]
        for p in entries where only?(p) ?? true {
            let values: [Float]
            switch scheme {
            case .upstream: values = Self.values(p.initialization, count: p.count, rng: &rng)
            case .trainedScale: values = Self.trainedScaleValues(p, rng: &rng)
            }
            tensors[p.name] = Tensor(shape: p.shape, scalars: values)
        }
        return StateDict(tensors: tensors, source: "random initialisation (\(config.name ?? "ced"), \(scheme))")
    }

    static func values(_ initialization: CedParameterInit, count n: Int, rng: inout TrainingRandom) -> [Float] {
        switch initialization {
        case .zeros:
            return [Float](repeating: 0, count: n)
        case .ones:
            return [Float](repeating: 1, count: n)
        case .normal(let std):
            return (0..<n).map { _ in Float(std * rng.nextGaussian()) }
        case .truncatedNormal(let std):
            // timm's trunc_normal_(std=std, a=-2, b=2): bounds are absolute values.
            return (0..<n).map { _ in
                var v = std * rng.nextGaussian()
                while abs(v) > 2 { v = std * rng.nextGaussian() }
                return Float(v)
            }
        case .uniformFanIn(let fanIn):
            let bound = 1 / Double(max(fanIn, 1)).squareRoot()
            return (0..<n).map { _ in Float((2 * rng.nextDouble() - 1) * bound) }
        }
    }

    static func trainedScaleValues(_ p: CedParameter, rng: inout TrainingRandom) -> [Float] {
        let (mean, std): (Double, Double)
        switch (p.role, p.layer) {
        case (.linearWeight, .qkv), (.linearWeight, .head): (mean, std) = (0, 1.5 / Double(p.fanIn).squareRoot())
        case (.linearWeight, _), (.convWeight, _): (mean, std) = (0, 1 / Double(p.fanIn).squareRoot())
        case (.linearBias, .head): (mean, std) = (0, 0.3)
        case (.linearBias, _), (.convBias, _): (mean, std) = (0, 0.02)
        case (.layerNormWeight, _), (.batchNormWeight, _): (mean, std) = (1, 0.1)
        case (.layerNormBias, _): (mean, std) = (0, 0.05)
        case (.batchNormBias, _): (mean, std) = (0, 0.1)
        case (.runningMean, _): (mean, std) = (-40, 10)
        case (.runningVariance, _): (mean, std) = (250, 50)
        case (.positionalEmbedding, _), (.clsToken, _): (mean, std) = (0, 0.5)
        case (.batchCounter, _): return [Float](repeating: 0, count: p.count)
        }
        // Uniform with that mean and standard deviation.
        let a = std * 3.0.squareRoot()
        return (0..<p.count).map { _ in Float(mean + a * (2 * rng.nextDouble() - 1)) }
    }

    // MARK: Checking

    /// Checks a state dict against the table: every trainable parameter present with its
    /// shape (`num_batches_tracked` and the running statistics may be absent), nothing
    /// unexpected. Throws `WeightLoadingError` listing every problem.
    public func check(_ weights: StateDict) throws {
        var missing: [String] = [], mismatched: [WeightLoadingError.Mismatch] = [], nonFinite: [String] = []
        for p in entries {
            guard let t = weights[p.name] else {
                if p.isTrainable || p.role == .runningMean || p.role == .runningVariance { missing.append(p.name) }
                continue
            }
            let shape = p.role == .batchCounter ? t.shape.filter { $0 != 1 } : t.shape
            if shape != p.shape { mismatched.append(.init(name: p.name, expected: p.shape, found: t.shape)) }
            else if !allFinite(t.scalars) { nonFinite.append(p.name) }
        }
        let unexpected = weights.names.filter { index[$0] == nil }
        let error = WeightLoadingError(source: weights.source, missing: missing, unexpected: unexpected,
                                       mismatched: mismatched, nonFinite: nonFinite)
        if !error.isEmpty { throw error }
    }
}

// MARK: Configuration from shapes

extension CedParameterTable {
    /// The upstream default chunk length; used when it fits the time embedding.
    public static let defaultTargetLength = 1012

    /// Infers a configuration from Hugging Face-named weight shapes (for checkpoints
    /// without a `config.json`):
    ///
    /// - `embed_dim` and `patch_size` from the patch embedding's weight `[E, 1, ph, pw]`;
    ///   `patch_stride` = `patch_size` (as in every published CED);
    /// - `depth` from the number of blocks (numbered 0..<N);
    /// - `mlp_ratio` from the first block's MLP input weight `[H, E]`, `qkv_bias` from
    ///   the presence of its q|k|v bias;
    /// - `outputdim` from the head's Linear weight;
    /// - `n_mels` from the BatchNorm's weight (64 when absent);
    /// - `target_length` = 1012 (the upstream default) when `1012 // stride` equals the
    ///   time positional embedding's length, else that length × stride;
    /// - `pooling` = `token` when there is a cls token, else `mean` (overridable: `logit`
    ///   and `dm` cannot be told from shapes);
    /// - `num_heads` = embed / 64 as in every published CED (overridable: shapes do not
    ///   determine it);
    /// - front end (`n_fft`, `win_size`) from the stored filterbank and window when given.
    public static func inferConfig(from weights: StateDict, frontEnd: StoredFrontEnd = StoredFrontEnd(),
                                   numHeads: Int? = nil, pooling: CedPooling? = nil) throws -> CedConfig {
        let file = weights.source
        func fail(_ reason: String, tensor: String? = nil) -> CheckpointError {
            CheckpointError(.architecture, file: file, tensor: tensor,
                            reason: reason + "; pass a config.json to describe the model")
        }
        func shape(_ name: String) throws -> [Int] {
            guard let s = weights.shape(of: name) else { throw fail("cannot infer the architecture: tensor is missing", tensor: name) }
            return s
        }
        var c = CedConfig()
        c.name = nil
        let patch = "\(Names.patchEmbed).weight"
        let pe = try shape(patch)
        guard pe.count == 4, pe[1] == 1, pe[0] > 0, pe[2] > 0, pe[3] > 0 else {
            throw fail("patch embedding has shape \(pe), expected [embed, 1, patch_h, patch_w]", tensor: patch)
        }
        c.embedDim = pe[0]
        c.patchSize = CedPair(frequency: pe[2], time: pe[3])
        c.patchStride = c.patchSize

        var blockIndices = Set<Int>()
        for name in weights.names where name.hasPrefix(Names.blocks) {
            let rest = name.dropFirst(Names.blocks.count)
            guard let n = Int(rest.prefix(while: { $0 != "." })) else { throw fail("unexpected block name", tensor: name) }
            blockIndices.insert(n)
        }
        guard !blockIndices.isEmpty else { throw fail("no transformer blocks (\(Names.blocks)N.*) found") }
        guard blockIndices == Set(0..<blockIndices.count) else {
            throw fail("block indices \(blockIndices.sorted()) are not 0..<\(blockIndices.count)")
        }
        c.depth = blockIndices.count

        // The first block's names, from a one-block table of this width.
        var probe = c
        probe.depth = 1
        probe.qkvBias = true
        let first = CedParameterTable(config: probe).blocks[0]
        let fc1 = try shape(first.fc1.weight.name)
        guard fc1.count == 2, fc1[1] == c.embedDim, fc1[0] > 0 else {
            throw fail("fc1 has shape \(fc1), expected [hidden, \(c.embedDim)]", tensor: first.fc1.weight.name)
        }
        c.mlpRatio = Double(fc1[0]) / Double(c.embedDim)
        if c.mlpHiddenDim != fc1[0] {
            throw fail("MLP width \(fc1[0]) is not int(embed × ratio) for any ratio", tensor: first.fc1.weight.name)
        }
        c.qkvBias = weights.contains(first.qkv.bias!.name)

        let headWeight = "\(Names.headLinear).weight"
        let out = try shape(headWeight)
        guard out.count == 2, out[1] == c.embedDim, out[0] > 0 else {
            throw fail("output layer has shape \(out), expected [classes, \(c.embedDim)]", tensor: headWeight)
        }
        c.outputdim = out[0]

        if let bn = weights.shape(of: "\(Names.initBN).weight") {
            guard bn.count == 1, bn[0] > 0 else { throw fail("init_bn has shape \(bn)", tensor: "\(Names.initBN).weight") }
            c.nMels = bn[0]
        }
        let fpe = try shape(Names.freqPosEmbed)
        guard fpe.count == 4, fpe[1] == c.embedDim, fpe[3] == 1 else {
            throw fail("freq_pos_embed has shape \(fpe), expected [1, \(c.embedDim), F, 1]", tensor: Names.freqPosEmbed)
        }
        if c.frequencyPatches != fpe[2] {
            throw fail("\(c.nMels) mel bins with patch stride \(c.patchStride.frequency) give \(c.frequencyPatches) frequency patches, but freq_pos_embed has \(fpe[2])", tensor: Names.freqPosEmbed)
        }
        let tpe = try shape(Names.timePosEmbed)
        guard tpe.count == 4, tpe[1] == c.embedDim, tpe[2] == 1, tpe[3] > 0 else {
            throw fail("time_pos_embed has shape \(tpe), expected [1, \(c.embedDim), 1, T]", tensor: Names.timePosEmbed)
        }
        let stride = c.patchStride.time
        c.targetLength = defaultTargetLength / stride == tpe[3] ? defaultTargetLength : tpe[3] * stride

        c.pooling = pooling ?? (weights.contains(Names.clsToken) ? .token : .mean)
        if let numHeads {
            c.numHeads = numHeads
        } else {
            c.numHeads = max(1, c.embedDim / 64)
            if c.embedDim % c.numHeads != 0 { c.numHeads = 1 }
        }

        if let fb = frontEnd.melFilterbank {
            let key = CedWeightLayout.melFilterbankKey
            guard fb.rank == 2, fb.shape[0] >= 2 else { throw fail("mel filterbank has shape \(fb.shape)", tensor: key) }
            c.nFft = (fb.shape[0] - 1) * 2
            if fb.shape[1] != c.nMels {
                throw fail("the mel filterbank has \(fb.shape[1]) bands but init_bn normalises \(c.nMels)", tensor: key)
            }
        }
        if let w = frontEnd.window {
            guard w.rank == 1, w.count > 0 else { throw fail("window has shape \(w.shape)", tensor: CedWeightLayout.windowKey) }
            c.winSize = w.count
        }
        do {
            try c.validate()
        } catch let e as ConfigError {
            throw fail("the inferred configuration is invalid (\(e.description))")
        }
        return c
    }
}
