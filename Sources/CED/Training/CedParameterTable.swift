import Foundation

/// How a CED tensor is initialised for training from scratch, as upstream's
/// `AudioTransformer.__init__` and `init_weights` do.
public enum CedParameterInit: Sendable, Equatable {
    /// All zeros (biases, LayerNorm shifts, the cls token's mean, BatchNorm running mean).
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

/// What a tensor is for; the benchmark's random weights and the optimiser read it.
public enum CedParameterRole: String, Sendable, Equatable {
    case linearWeight, linearBias
    case convWeight, convBias
    case layerNormWeight, layerNormBias
    case batchNormWeight, batchNormBias
    case positionalEmbedding, clsToken
    /// Not trained: BatchNorm running statistics and its step counter.
    case runningMean, runningVariance, batchCounter
}

/// One tensor of `CedForAudioClassification`.
public struct CedParameter: Sendable, Equatable {
    /// The Hugging Face name (`encoder.blocks.3.attn.qkv.weight`).
    public var name: String
    /// The PyTorch shape.
    public var shape: [Int]
    public var role: CedParameterRole
    public var initialization: CedParameterInit
    /// In AdamW's weight-decay group: tensors with at least two dimensions except the
    /// positional embeddings and the cls token (upstream's `no_weight_decay`).
    public var decays: Bool
    /// Trained by the optimiser (false for the BatchNorm buffers).
    public var isTrainable: Bool

    public var count: Int { shape.reduce(1, *) }

    /// For a Linear or Conv weight, the number of inputs of each output (`shape[1...]`).
    public var fanIn: Int { shape.dropFirst().reduce(1, *) }
}

/// The one table of CED tensors: names, shapes, initialisation and weight-decay group of
/// every parameter and buffer of `CedForAudioClassification` for a configuration, in the
/// order upstream creates them. Loading, saving, random initialisation, training and the
/// benchmark's random weights all walk this table.
public struct CedParameterTable: Sendable {
    public let config: CedConfig
    /// Every tensor, trainable parameters and buffers, in upstream's order.
    public let entries: [CedParameter]
    private let index: [String: Int]

    public init(config c: CedConfig) {
        self.config = c
        var list: [CedParameter] = []
        func add(_ name: String, _ shape: [Int], _ role: CedParameterRole, _ initialization: CedParameterInit) {
            let trainable = ![.runningMean, .runningVariance, .batchCounter].contains(role)
            let decays = trainable && shape.count >= 2 && role != .positionalEmbedding && role != .clsToken
            list.append(CedParameter(name: name, shape: shape, role: role, initialization: initialization,
                                     decays: decays, isTrainable: trainable))
        }
        let e = c.embedDim, h = c.mlpHiddenDim, m = c.nMels
        let area = c.patchSize.frequency * c.patchSize.time
        add("encoder.init_bn.weight", [m], .batchNormWeight, .ones)
        add("encoder.init_bn.bias", [m], .batchNormBias, .zeros)
        add("encoder.init_bn.running_mean", [m], .runningMean, .zeros)
        add("encoder.init_bn.running_var", [m], .runningVariance, .ones)
        add("encoder.init_bn.num_batches_tracked", [], .batchCounter, .zeros)
        add("encoder.patch_embed.proj.weight", [e, 1, c.patchSize.frequency, c.patchSize.time], .convWeight, .uniformFanIn(fanIn: area))
        add("encoder.patch_embed.proj.bias", [e], .convBias, .uniformFanIn(fanIn: area))
        add("encoder.time_pos_embed", [1, e, 1, c.maxTimePatches], .positionalEmbedding, .normal(std: 0.02))
        add("encoder.freq_pos_embed", [1, e, c.frequencyPatches, 1], .positionalEmbedding, .normal(std: 0.02))
        if c.pooling == .token {
            add("encoder.cls_token", [1, 1, e], .clsToken, .normal(std: 1e-6))
            add("encoder.token_pos_embed", [1, e], .positionalEmbedding, .normal(std: 0.02))
        }
        for i in 0..<c.depth {
            let b = "encoder.blocks.\(i)"
            add("\(b).norm1.weight", [e], .layerNormWeight, .ones)
            add("\(b).norm1.bias", [e], .layerNormBias, .zeros)
            add("\(b).attn.qkv.weight", [3 * e, e], .linearWeight, .truncatedNormal(std: 0.02))
            if c.qkvBias { add("\(b).attn.qkv.bias", [3 * e], .linearBias, .zeros) }
            add("\(b).attn.proj.weight", [e, e], .linearWeight, .truncatedNormal(std: 0.02))
            add("\(b).attn.proj.bias", [e], .linearBias, .zeros)
            add("\(b).norm2.weight", [e], .layerNormWeight, .ones)
            add("\(b).norm2.bias", [e], .layerNormBias, .zeros)
            add("\(b).mlp.fc1.weight", [h, e], .linearWeight, .truncatedNormal(std: 0.02))
            add("\(b).mlp.fc1.bias", [h], .linearBias, .zeros)
            add("\(b).mlp.fc2.weight", [e, h], .linearWeight, .truncatedNormal(std: 0.02))
            add("\(b).mlp.fc2.bias", [e], .linearBias, .zeros)
        }
        add("encoder.norm.weight", [e], .layerNormWeight, .ones)
        add("encoder.norm.bias", [e], .layerNormBias, .zeros)
        add("outputlayer.0.weight", [e], .layerNormWeight, .ones)
        add("outputlayer.0.bias", [e], .layerNormBias, .zeros)
        add("outputlayer.1.weight", [c.outputdim, e], .linearWeight, .truncatedNormal(std: 0.02))
        add("outputlayer.1.bias", [c.outputdim], .linearBias, .zeros)
        entries = list
        index = Dictionary(uniqueKeysWithValues: list.enumerated().map { ($1.name, $0) })
    }

    public subscript(name: String) -> CedParameter? { index[name].map { entries[$0] } }

    /// The trainable parameters (every entry but the BatchNorm buffers), in order.
    public var parameters: [CedParameter] { entries.filter(\.isTrainable) }

    /// Number of trainable values.
    public var parameterCount: Int { parameters.reduce(0) { $0 + $1.count } }

    /// Whether a tensor of the head (`outputlayer.*`).
    public static func isHead(_ name: String) -> Bool { name.hasPrefix("outputlayer.") }

    /// A state dict initialised as upstream initialises a new model (`init_weights`,
    /// positional embeddings `randn · 0.02`, cls token `normal(std 1e-6)`, PyTorch's
    /// default Conv2d initialisation, BatchNorm scale 1, shift 0, running mean 0, variance 1),
    /// drawn from `rng` in table order. `only` restricts it to some names (e.g. a new head).
    public func initialized(rng: inout TrainingRandom, only: ((String) -> Bool)? = nil) -> StateDict {
        var tensors: [String: Tensor] = [:]
        for p in entries where only?(p.name) ?? true {
            tensors[p.name] = Tensor(shape: p.shape, scalars: Self.values(p.initialization, count: p.count, rng: &rng))
        }
        return StateDict(tensors: tensors, source: "random initialisation (\(config.name ?? "ced"))")
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
        let unexpected = weights.tensors.keys.filter { index[$0] == nil }.sorted()
        let error = WeightLoadingError(source: weights.source, missing: missing, unexpected: unexpected,
                                       mismatched: mismatched, nonFinite: nonFinite)
        if !error.isEmpty { throw error }
    }
}
