import Foundation

/// Whether a training-model pass behaves as in `model.train()` or `model.eval()`.
public enum CedTrainingMode: String, Sendable {
    /// BatchNorm normalises with the batch's statistics and updates its running statistics;
    /// dropout and drop path are active.
    case train
    /// BatchNorm uses its running statistics; no dropout.
    case eval
}

/// What one training step returns.
public struct CedTrainingStep: Sendable {
    /// The loss (mean over the batch and, for BCE, the classes).
    public var loss: Double
    /// `[B, outputdim]`: the head's output, probabilities for `mean`/`token`/`dm`, logits for `logit`.
    public var outputs: Tensor
}

/// The loss, the outputs and every parameter's gradient, keyed by Hugging Face tensor
/// name: PyTorch's `loss.backward()` followed by `{name: p.grad}`.
public struct CedGradients: Sendable {
    public var loss: Double
    /// `[B, outputdim]`, as `CedTrainingStep.outputs`.
    public var outputs: Tensor
    /// Every trainable parameter's gradient, shaped like the parameter.
    public var gradients: [String: Tensor]
    /// The BatchNorm running statistics after the pass (by their table names), which a
    /// train-mode forward updates.
    public var runningStatistics: [String: Tensor]
}

/// CED as a trainable network: every parameter of `CedForAudioClassification` as raw
/// float32 values in one flat buffer laid out by `CedParameterTable` (none of inference's
/// folding), a forward pass that saves what its backward pass needs, and the backward
/// pass, layer by layer, computing what PyTorch's autograd computes for upstream's
/// `AudioTransformer`. The backward pass only computes: it hands each finished part's
/// gradients to a `CedGradientSink` (a `CedGradientBuffer` that keeps them, or an
/// optimiser step that applies them at once).
///
/// ```swift
/// let model = try CedTrainingModel(try PretrainedCheckpoint.load("mispeech/ced-tiny"))
/// let g = try model.gradients(mels: batch, targets: targets)      // [B, 64, T], [B, 527]
/// print(g.loss, g.gradients[model.table.blocks[0].qkv.weight.name]!.shape)
///
/// let adam = CedAdamW(model: model, options: .init(learningRate: 1e-4))
/// try model.trainingStep(mels: batch, targets: targets, sink: adam.step())   // forward, loss, backward → AdamW
/// ```
///
/// - Inputs are `[B, n_mels, T]` log-mels with `T ≤ target_length` (longer recordings are
///   cut into segments by the data pipeline); frames after the last whole patch only enter
///   the BatchNorm statistics, as in upstream's strided convolution. Fewer than one patch
///   of frames are zero-padded after BatchNorm, as inference does.
/// - Train mode: BatchNorm over mel bins with the batch's statistics (biased variance over
///   batch × time) and running statistics updated with momentum 0.01 and the unbiased
///   variance; dropout after the positional embeddings, in attention, after each
///   projection and in the MLP from `drop_rate`/`attn_drop_rate`; drop path rising
///   linearly over the blocks from 0 to `drop_path_rate`. Their masks come from
///   `noiseSeed` and `noiseStep` (counter-based), so a step is reproducible.
/// - Poolings `mean`, `token`, `logit` and `dm` are all trainable.
///
/// Not thread-safe (it owns mutable buffers); use one per training loop. Export with
/// `stateDict()` and pack for inference with `inferenceModel()`.
public final class CedTrainingModel: CedTrainable {
    public let config: CedConfig
    public let table: CedParameterTable
    /// Number of trainable values.
    public let parameterCount: Int
    /// Trainable parameters, flat, at their table offsets.
    public let parameterValues: UnsafeMutablePointer<Float>
    public var trainableParameters: [CedParameter] { table.parameters }
    /// The gradients of the part of the network the backward pass is working on (one
    /// block, or the head, or the embedding part): `partGradients[i]` is the gradient of
    /// parameter value `partStart + i`.
    let partGradients: UnsafeMutablePointer<Float>
    var partStart = 0
    /// BatchNorm buffers.
    public internal(set) var runningMean: [Float]
    public internal(set) var runningVariance: [Float]
    public internal(set) var batchesTracked: Int
    /// Seeds dropout and drop path.
    public var noiseSeed: UInt64 = 0
    /// Selects the step's dropout masks (the training loop sets it to the step number).
    public var noiseStep: Int = 0
    /// Normalise the mel bins with the running statistics in train mode too (a frozen
    /// BatchNorm: its scale and shift are still trained, its statistics not updated).
    public var freezeBatchNormStatistics = false
    /// Arithmetic of the matrix products: `.bf16` rounds both operands of every Linear
    /// product (forward and backward) to bfloat16 and accumulates in float32, on CPUs with
    /// a `BF16Kernel` (as PyTorch's autocast); weights, gradients, optimiser state, the
    /// attention products and everything elementwise stay float32. `.fp32` (the default)
    /// matches PyTorch's float32 autograd. (`.int8` trains as `.bf16`.)
    public var precision: CedPrecision = .fp32
    /// What the backward pass recomputes instead of keeping (nil: the least that keeps the
    /// activations within `activationMemoryLimit`, none without a limit).
    public var recomputation: CedRecomputation?
    /// Bytes the activation arena may take when `recomputation` is nil.
    public var activationMemoryLimit: Int?

    /// The recomputation a batch shape gets.
    public func recomputation(batch: Int, frames: Int) -> CedRecomputation {
        if let recomputation { return recomputation }
        guard let limit = activationMemoryLimit else { return .none }
        for r in CedRecomputation.allCases where TrainingPlan(config: config, batch: batch, frames: frames, recomputation: r).bytes <= limit {
            return r
        }
        return .blocks
    }

    /// The bf16 kernel of `precision`, nil for float32 products.
    var bf16: BF16Kernel? { precision == .fp32 ? nil : BF16Kernel.best }

    var plan: TrainingPlan?
    var arena: UnsafeMutablePointer<Float>?
    var arenaFloats = 0
    /// What the last forward pass computed (needed by `backward`).
    var forwardMode: CedTrainingMode = .eval
    var forwardKey: UInt64 = 0
    var hasForward = false
    /// The loss function of the last `loss(targets:)`, whose gradient `backward` starts from.
    var hasLossGradient = false

    /// A model with the given weights (Hugging Face names, checked against the table; the
    /// BatchNorm running statistics default to 0 and 1 when absent).
    public init(config: CedConfig, weights: StateDict) throws {
        try config.validate()
        let table = CedParameterTable(config: config)
        try table.check(weights)
        self.config = config
        self.table = table
        parameterCount = table.parameterCount
        parameterValues = .allocate(capacity: max(1, parameterCount))
        for p in table.parameters {
            (parameterValues + p.at).initialize(from: weights[p.name]!.scalars, count: p.count)
        }
        let parts = [table.headPart, table.embeddingPart] + (0..<config.depth).map { table.blockPart($0) }
        partGradients = .allocate(capacity: max(1, parts.map(\.count).max() ?? 1))
        let bn = table.initBN
        runningMean = weights[bn.runningMean.name]?.scalars ?? [Float](repeating: 0, count: config.nMels)
        runningVariance = weights[bn.runningVariance.name]?.scalars ?? [Float](repeating: 1, count: config.nMels)
        batchesTracked = Int(weights[bn.batchesTracked.name]?.scalars.first ?? 0)
    }

    /// A model with every tensor initialised as upstream initialises a new one, from `seed`.
    public convenience init(config: CedConfig, seed: UInt64) throws {
        var rng = TrainingRandom(seed: seed)
        try self.init(config: config, weights: CedParameterTable(config: config).randomWeights(rng: &rng))
    }

    /// A model from a loaded checkpoint (its configuration and weights).
    public convenience init(_ checkpoint: PretrainedCheckpoint) throws {
        try self.init(config: checkpoint.config, weights: checkpoint.weights)
    }

    deinit {
        parameterValues.deallocate()
        partGradients.deallocate()
        arena?.deallocate()
    }

    // MARK: Parameters

    /// The values of a parameter (a copy).
    public func parameter(_ name: String) -> Tensor? {
        guard let p = table[name], p.isTrainable else { return nil }
        return Tensor(shape: p.shape, scalars: Array(UnsafeBufferPointer(start: parameterValues + p.at, count: p.count)))
    }

    /// Replaces a parameter's values.
    public func setParameter(_ name: String, _ value: Tensor) throws {
        guard let p = table[name], p.isTrainable else {
            throw CedInputError("'\(name)' is not a trainable parameter of this model")
        }
        guard value.shape == p.shape else {
            throw CedInputError("'\(name)' has shape \(p.shape), got \(value.shape)")
        }
        (parameterValues + p.at).update(from: value.scalars, count: p.count)
    }

    /// Every parameter and buffer under its Hugging Face name (the BatchNorm's step counter as a
    /// float; `CedModelWriter` stores it as int64), ready for saving or
    /// `CedForAudioClassification(config:weights:)`.
    public func stateDict() -> StateDict {
        var tensors: [String: Tensor] = [:]
        for p in table.entries {
            switch p.role {
            case .runningMean: tensors[p.name] = Tensor(shape: p.shape, scalars: runningMean)
            case .runningVariance: tensors[p.name] = Tensor(shape: p.shape, scalars: runningVariance)
            case .batchCounter: tensors[p.name] = Tensor(shape: [], scalars: [Float(batchesTracked)])
            default: tensors[p.name] = parameter(p.name)
            }
        }
        return StateDict(tensors: tensors, source: "trained model")
    }

    /// The current weights packed for inference (eval mode, any precision).
    public func inferenceModel(precision: CedPrecision = .fp32) throws -> CedForAudioClassification {
        try CedForAudioClassification(config: config, weights: stateDict(), precision: precision)
    }

    @inline(__always) func w(_ p: CedParameter) -> UnsafeMutablePointer<Float> { parameterValues + p.at }
    /// The gradient of a parameter of the part being computed.
    @inline(__always) func g(_ p: CedParameter) -> UnsafeMutablePointer<Float> { partGradients + (p.at - partStart) }

    // MARK: The public step

    /// PyTorch's `loss.backward()` then `{name: p.grad}` for a batch: train-mode forward (so
    /// the BatchNorm running statistics are updated), the loss, and every gradient.
    /// `mels` is `[B, n_mels, T]`, `targets` `[B, outputdim]` in [0, 1] (rows summing to 1
    /// for softmax cross-entropy). `loss` nil: upstream's loss for the pooling
    /// (`CedLoss.automatic`).
    public func gradients(mels: Tensor, targets: Tensor, loss: CedLoss? = nil, mode: CedTrainingMode = .train) throws -> CedGradients {
        let buffer = CedGradientBuffer(count: parameterCount)
        let step = try trainingStep(mels: mels, targets: targets, loss: loss, mode: mode, sink: buffer)
        let bn = table.initBN
        return CedGradients(loss: step.loss, outputs: step.outputs,
                            gradients: Dictionary(uniqueKeysWithValues: table.parameters.map { ($0.name, buffer.tensor($0)) }),
                            runningStatistics: [
                                bn.runningMean.name: Tensor(shape: [config.nMels], scalars: runningMean),
                                bn.runningVariance.name: Tensor(shape: [config.nMels], scalars: runningVariance),
                            ])
    }

    /// One training step: the forward pass, the loss and the backward pass, whose gradients
    /// go to `sink` part by part (an optimiser step such as `CedAdamW.step()`, or a
    /// `CedGradientBuffer`).
    @discardableResult
    public func trainingStep(mels: Tensor, targets: Tensor, loss: CedLoss? = nil, mode: CedTrainingMode = .train,
                             sink: CedGradientSink) throws -> CedTrainingStep {
        // The targets are checked before the forward pass changes the running statistics.
        try checkTargets(targets, batch: mels.shape.first ?? 0, loss: loss ?? .automatic(for: config.pooling))
        let out = try forward(mels: mels, mode: mode)
        let value = try self.loss(targets: targets, loss: loss)
        backward(into: sink)
        return CedTrainingStep(loss: value, outputs: out)
    }

    /// The loss of the last forward pass against `targets` (`[B, outputdim]`), and its
    /// gradient with respect to the head's outputs for `backward`. Throws
    /// `TrainingError(.nonFiniteLoss)` for a NaN or infinite loss.
    public func loss(targets: Tensor, loss: CedLoss? = nil) throws -> Double {
        precondition(hasForward, "loss without a forward pass")
        let lossFunction = loss ?? .automatic(for: config.pooling)
        let pl = plan!
        try checkTargets(targets, batch: pl.batch, loss: lossFunction)
        let value = targets.scalars.withUnsafeBufferPointer { t in
            computeLossGradient(targets: t.baseAddress!, loss: lossFunction)
        }
        guard value.isFinite else { throw TrainingError.nonFiniteLoss(value) }
        hasLossGradient = true
        return value
    }

    func checkTargets(_ targets: Tensor, batch: Int, loss: CedLoss) throws {
        try loss.check(pooling: config.pooling)
        let c = config.outputdim
        guard targets.shape == [batch, c] else {
            throw CedInputError("targets have shape \(targets.shape), expected [\(batch), \(c)] (one row of \(c) class targets per clip)")
        }
        try loss.checkTargets(targets.scalars, batch: batch, classes: c)
    }

    // MARK: Forward

    /// The head's outputs `[B, outputdim]` for a batch of `[B, n_mels, T]` log-mels (T ≤
    /// `target_length`), saving what `backward` needs. Train mode updates the BatchNorm
    /// running statistics.
    @discardableResult
    public func forward(mels: Tensor, mode: CedTrainingMode) throws -> Tensor {
        let shape = mels.shape
        guard shape.count == 3, shape[1] == config.nMels, shape[0] > 0, shape[2] > 0 else {
            throw CedInputError("expected a batch of log-mels [B, \(config.nMels), frames], got shape \(shape)")
        }
        guard shape[2] <= config.targetLength else {
            throw CedInputError("training inputs are at most target_length = \(config.targetLength) frames, got \(shape[2]) (cut longer recordings into segments)")
        }
        if mode == .train && shape[0] * shape[2] < 2 {
            throw CedInputError("train-mode BatchNorm needs more than one value per mel bin (batch × frames = \(shape[0] * shape[2]))")
        }
        if let bad = mels.scalars.firstIndex(where: { !$0.isFinite }) {
            throw CedInputError("log-mel value \(mels.scalars[bad]) at index \(bad) is not finite")
        }
        let pl = prepare(batch: shape[0], frames: shape[2])
        let a = arena!
        mels.scalars.withUnsafeBufferPointer { (a + pl.input).update(from: $0.baseAddress!, count: $0.count) }
        forwardMode = mode
        forwardKey = TrainingNoise.key(noiseSeed, UInt64(truncatingIfNeeded: noiseStep))
        runForward(pl, mode: mode)
        hasForward = true
        hasLossGradient = false
        return Tensor(shape: [pl.batch, pl.classes], scalars: Array(UnsafeBufferPointer(start: a + pl.outputs, count: pl.batch * pl.classes)))
    }

    /// Plans (and when needed grows) the activation arena for a batch shape.
    func prepare(batch: Int, frames: Int) -> TrainingPlan {
        let r = recomputation(batch: batch, frames: frames)
        if let plan, plan.batch == batch, plan.frames == frames, plan.recomputation == r { return plan }
        let pl = TrainingPlan(config: config, batch: batch, frames: frames, recomputation: r)
        if pl.totalFloats > arenaFloats {
            arena?.deallocate()
            let raw = UnsafeMutableRawPointer.allocate(byteCount: pl.totalFloats * 4, alignment: 64)
            arena = raw.bindMemory(to: Float.self, capacity: pl.totalFloats)
            arena!.initialize(repeating: 0, count: pl.totalFloats)
            arenaFloats = pl.totalFloats
        }
        plan = pl
        return pl
    }

    /// Bytes of activation memory a batch shape needs (the arena `forward` allocates).
    public func activationBytes(batch: Int, frames: Int) -> Int {
        TrainingPlan(config: config, batch: batch, frames: frames, recomputation: recomputation(batch: batch, frames: frames)).bytes
    }

    /// Dropout rates of this configuration (train mode only).
    var dropRate: Float { Float(config.dropRate) }
    var attnDropRate: Float { Float(config.attnDropRate) }
    /// Drop path of block `l`: `linspace(0, drop_path_rate, depth)[l]`.
    func dropPath(_ l: Int) -> Float {
        let d = config.depth
        return d <= 1 ? 0 : Float(config.dropPathRate * Double(l) / Double(d - 1))
    }

    /// Noise streams of the current step.
    enum Site: UInt64 { case pos = 1, attn, proj, mlp1, mlp2, pathAttn, pathMLP }
    func noiseKey(_ site: Site, block: Int = 0) -> UInt64 {
        TrainingNoise.key(forwardKey, UInt64(block) << 8 | site.rawValue)
    }

    func runForward(_ pl: TrainingPlan, mode: CedTrainingMode) {
        let a = arena!, T = table, train = mode == .train
        let rows = pl.rows, e = pl.embed
        batchNormForward(pl, train: train && !freezeBatchNormStatistics)
        im2col(pl)
        // Patch embedding into the token rows of residual 0 (after the cls row when present).
        let x0 = a + pl.residual(0)
        if pl.hasCls {
            for b in 0..<pl.batch {
                TrainingGEMM.forward(x: a + pl.cols + b * pl.patches * pl.area, ldx: pl.area, rows: pl.patches,
                                     weight: w(T.patchEmbed.weight), out: e, in: pl.area, bias: w(T.patchEmbed.bias!),
                                     y: x0 + (b * pl.tokens + 1) * pl.ldE, ldy: pl.ldE, bf16: bf16)
            }
        } else {
            TrainingGEMM.forward(x: a + pl.cols, ldx: pl.area, rows: pl.batch * pl.patches, weight: w(T.patchEmbed.weight),
                                 out: e, in: pl.area, bias: w(T.patchEmbed.bias!), y: x0, ldy: pl.ldE, bf16: bf16)
        }
        addPositions(pl, x0)
        if train && dropRate > 0 { applyDropout(x0, ld: pl.ldE, rows: rows, cols: e, key: noiseKey(.pos), p: dropRate) }
        for l in 0..<pl.depth { blockForward(pl, l, train: train) }
        // Final norm, pooling, head.
        let xf = a + pl.residual(pl.depth), normed = a + pl.normed
        TrainingKernels.layerNormForward(xf, ldx: pl.ldE, rows: rows, cols: e, weight: w(T.norm.weight), bias: w(T.norm.bias),
                                         eps: Float(T.norm.eps), y: normed, ldy: pl.ldE, mean: a + pl.finalMean, rstd: a + pl.finalRstd)
        pool(pl, normed)
        TrainingHead(p: T.head).forward(w, x: a + pl.pooled, rows: pl.headVectors, normed: a + pl.headNormed,
                                        mean: a + pl.headMean, rstd: a + pl.headRstd, logits: a + pl.logits, bf16: bf16)
        headOutputs(pl)
    }

    func batchNormForward(_ pl: TrainingPlan, train: Bool) {
        let a = arena!, T = table
        let f = pl.nMels, t = pl.frames, tp = pl.paddedFrames, b = pl.batch
        let input = a + pl.input, planes = a + pl.planes
        let gamma = w(T.initBN.weight), beta = w(T.initBN.bias)
        let n = Double(b * t)
        for bin in 0..<f {
            var mean: Double, variance: Double
            if train {
                var s = 0.0
                for i in 0..<b { let row = input + (i * f + bin) * t; for j in 0..<t { s += Double(row[j]) } }
                mean = s / n
                var q = 0.0
                for i in 0..<b { let row = input + (i * f + bin) * t; for j in 0..<t { let d = Double(row[j]) - mean; q += d * d } }
                variance = q / n
                let m = table.initBN.momentum
                runningMean[bin] = Float((1 - m) * Double(runningMean[bin]) + m * mean)
                runningVariance[bin] = Float((1 - m) * Double(runningVariance[bin]) + m * variance * n / max(n - 1, 1))
            } else {
                mean = Double(runningMean[bin])
                variance = Double(runningVariance[bin])
            }
            let rstd = Float(1 / (variance + table.initBN.eps).squareRoot())
            let m = Float(mean)
            a[pl.bnMean + bin] = m
            a[pl.bnRstd + bin] = rstd
            let scale = rstd * gamma[bin], shift = beta[bin]
            for i in 0..<b {
                let src = input + (i * f + bin) * t, dst = planes + (i * f + bin) * tp
                for j in 0..<t { dst[j] = (src[j] - m) * scale + shift }
                for j in t..<tp { dst[j] = 0 }
            }
        }
        if train { batchesTracked += 1 }
    }

    /// `[B·P, ph·pw]` patch columns of the BatchNorm-ed planes.
    func im2col(_ pl: TrainingPlan) {
        let a = arena!, c = config
        let ph = c.patchSize.frequency, pw = c.patchSize.time, sf = c.patchStride.frequency, st = c.patchStride.time
        let fp = pl.frequencyPatches, tpN = pl.timePatches, frames = pl.paddedFrames
        for b in 0..<pl.batch {
            let plane = a + pl.planes + b * pl.nMels * frames
            for fi in 0..<fp {
                for ti in 0..<tpN {
                    let row = a + pl.cols + ((b * fp + fi) * tpN + ti) * pl.area
                    for kh in 0..<ph {
                        (row + kh * pw).update(from: plane + (fi * sf + kh) * frames + ti * st, count: pw)
                    }
                }
            }
        }
    }

    /// Adds the time and frequency positional embeddings to the patch tokens and writes
    /// the cls rows (cls token + its positional embedding).
    func addPositions(_ pl: TrainingPlan, _ x0: UnsafeMutablePointer<Float>) {
        let T = table, e = pl.embed, fp = pl.frequencyPatches, tpN = pl.timePatches
        let tmax = config.maxTimePatches
        let tpos = w(T.timePosEmbed), fpos = w(T.freqPosEmbed)
        let off = pl.hasCls ? 1 : 0
        for b in 0..<pl.batch {
            if pl.hasCls {
                let row = x0 + b * pl.tokens * pl.ldE, cls = w(T.clsToken!), tok = w(T.tokenPosEmbed!)
                for ch in 0..<e { row[ch] = cls[ch] + tok[ch] }
            }
            for fi in 0..<fp {
                for ti in 0..<tpN {
                    let row = x0 + (b * pl.tokens + off + fi * tpN + ti) * pl.ldE
                    for ch in 0..<e { row[ch] += tpos[ch * tmax + ti] + fpos[ch * fp + fi] }
                }
            }
        }
    }

    /// `x ⊙ mask / (1 − p)` in place.
    func applyDropout(_ x: UnsafeMutablePointer<Float>, ld: Int, rows: Int, cols: Int, key: UInt64, p: Float) {
        let scale = 1 / (1 - p)
        for r in 0..<rows {
            let row = x + r * ld
            for j in 0..<cols { row[j] *= TrainingNoise.dropoutScale(key, r * cols + j, p: p, scale: scale) }
        }
    }

    /// Drop path's per-clip multiplier for a branch of block `l` (0 or 1/(1 − p)).
    func pathScale(_ site: Site, block l: Int, clip b: Int) -> Float {
        let p = dropPath(l)
        if forwardMode != .train || p <= 0 { return 1 }
        return TrainingNoise.dropoutScale(noiseKey(site, block: l), b, p: p, scale: 1 / (1 - p))
    }

    /// `dst = src + mask ⊙ branch` (dropout `p` on the branch, then the drop-path
    /// multiplier of each clip), rows of `[rows, cols]`.
    func addBranch(_ pl: TrainingPlan, src: UnsafePointer<Float>, branch: UnsafeMutablePointer<Float>, into dst: UnsafeMutablePointer<Float>,
                   dropKey: UInt64, p: Float, path: Site, block l: Int) {
        let e = pl.embed, scale = p > 0 ? 1 / (1 - p) : 1
        for r in 0..<pl.rows {
            let s = pathScale(path, block: l, clip: r / pl.tokens)
            let br = branch + r * pl.ldE, sr = src + r * pl.ldE, dr = dst + r * pl.ldE
            if p > 0 {
                for j in 0..<e { br[j] *= TrainingNoise.dropoutScale(dropKey, r * e + j, p: p, scale: scale) * s }
            } else if s != 1 {
                for j in 0..<e { br[j] *= s }
            }
            for j in 0..<e { dr[j] = sr[j] + br[j] }
        }
    }

    /// Whether a residual branch of block `l` is the plain `x + f(x)` (no dropout, no drop path).
    func branchIsPlain(_ l: Int) -> Bool {
        forwardMode != .train || (dropRate == 0 && dropPath(l) == 0)
    }

    func blockForward(_ pl: TrainingPlan, _ l: Int, train: Bool) {
        let a = arena!, B = table.blocks[l]
        let rows = pl.rows, e = pl.embed
        let xin = a + pl.residual(l), xmid = a + pl.xmid(l), xout = a + pl.residual(l + 1)
        let normed = a + pl.normed, qkv = a + pl.qkv(l), ctx = a + pl.context(l), hidden = a + pl.mlpHidden(l)
        TrainingKernels.layerNormForward(xin, ldx: pl.ldE, rows: rows, cols: e, weight: w(B.norm1.weight), bias: w(B.norm1.bias),
                                         eps: Float(B.norm1.eps), y: normed, ldy: pl.ldE, mean: a + pl.mean1(l), rstd: a + pl.rstd1(l))
        TrainingGEMM.forward(x: normed, ldx: pl.ldE, rows: rows, weight: w(B.qkv.weight), out: 3 * e, in: e,
                             bias: B.qkv.bias.map { w($0) }, y: qkv, ldy: pl.ld3, bf16: bf16)
        TrainingAttention.forward(pl, qkv: qkv, probs: a + pl.probs(l), context: ctx,
                                  dropout: train ? attnDropRate : 0, key: noiseKey(.attn, block: l))
        attentionResidual(pl, l, xin: xin, context: ctx, into: xmid)
        TrainingKernels.layerNormForward(xmid, ldx: pl.ldE, rows: rows, cols: e, weight: w(B.norm2.weight), bias: w(B.norm2.bias),
                                         eps: Float(B.norm2.eps), y: normed, ldy: pl.ldE, mean: a + pl.mean2(l), rstd: a + pl.rstd2(l))
        TrainingGEMM.forward(x: normed, ldx: pl.ldE, rows: rows, weight: w(B.fc1.weight), out: pl.hidden, in: e,
                             bias: w(B.fc1.bias!), y: hidden, ldy: pl.ldH, bf16: bf16)
        let gelu = a + pl.geluOut
        geluOutput(pl, l, hidden: hidden, into: gelu)
        if branchIsPlain(l) {
            copyRows(xmid, into: xout, pl)
            TrainingGEMM.forward(x: gelu, ldx: pl.ldH, rows: rows, weight: w(B.fc2.weight), out: e, in: pl.hidden,
                                 bias: w(B.fc2.bias!), y: xout, ldy: pl.ldE, accumulate: true, bf16: bf16)
        } else {
            let t = a + pl.tmp
            TrainingGEMM.forward(x: gelu, ldx: pl.ldH, rows: rows, weight: w(B.fc2.weight), out: e, in: pl.hidden,
                                 bias: w(B.fc2.bias!), y: t, ldy: pl.ldE, bf16: bf16)
            addBranch(pl, src: xmid, branch: t, into: xout, dropKey: noiseKey(.mlp2, block: l), p: dropRate, path: .pathMLP, block: l)
        }
    }

    /// `xmid = xin + drop(proj(context))` (dropout and drop path as in train mode).
    func attentionResidual(_ pl: TrainingPlan, _ l: Int, xin: UnsafePointer<Float>, context ctx: UnsafePointer<Float>,
                           into xmid: UnsafeMutablePointer<Float>) {
        let B = table.blocks[l], e = pl.embed
        if branchIsPlain(l) {
            copyRows(xin, into: xmid, pl)
            TrainingGEMM.forward(x: ctx, ldx: pl.ldE, rows: pl.rows, weight: w(B.proj.weight), out: e, in: e, bias: w(B.proj.bias!),
                                 y: xmid, ldy: pl.ldE, accumulate: true, bf16: bf16)
        } else {
            let t = arena! + pl.tmp
            TrainingGEMM.forward(x: ctx, ldx: pl.ldE, rows: pl.rows, weight: w(B.proj.weight), out: e, in: e, bias: w(B.proj.bias!),
                                 y: t, ldy: pl.ldE, bf16: bf16)
            addBranch(pl, src: xin, branch: t, into: xmid, dropKey: noiseKey(.proj, block: l), p: dropRate, path: .pathAttn, block: l)
        }
    }

    /// `GELU(hidden)` with the MLP's dropout (train mode) into `out` (`[rows, H]`, stride ldH).
    func geluOutput(_ pl: TrainingPlan, _ l: Int, hidden: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>) {
        TrainingKernels.gelu(hidden, into: out, count: pl.rows * pl.ldH)
        if forwardMode == .train && dropRate > 0 {
            applyDropout(out, ld: pl.ldH, rows: pl.rows, cols: pl.hidden, key: noiseKey(.mlp1, block: l), p: dropRate)
        }
    }

    func copyRows(_ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>, _ pl: TrainingPlan) {
        dst.update(from: src, count: pl.rows * pl.ldE)
    }

    /// Pools the final-norm tokens into the head's input vectors.
    func pool(_ pl: TrainingPlan, _ normed: UnsafePointer<Float>) {
        let a = arena!, e = pl.embed, per = pl.headVectors / pl.batch
        for b in 0..<pl.batch {
            config.pooling.pool(normed + b * pl.tokens * pl.ldE, grid: pl.grid, ld: pl.ldE, dim: e, into: a + pl.pooled + b * per * e)
        }
    }

    /// Outputs from the head's logits: the pooling's activation of every head vector
    /// (sigmoid, or none for `logit`) into `headScores`, and each clip's scores (for `dm`
    /// the mean over time) into `outputs`.
    func headOutputs(_ pl: TrainingPlan) {
        let a = arena!, c = pl.classes, per = pl.headVectors / pl.batch
        let probs = a + pl.headScores
        probs.update(from: a + pl.logits, count: pl.headVectors * c)
        config.pooling.activate(probs, count: pl.headVectors * c)
        for b in 0..<pl.batch {
            config.pooling.clipScores(probs + b * per * c, vectors: per, classes: c, into: a + pl.outputs + b * c)
        }
    }

    // MARK: Loss

    /// The loss of the last forward pass and its gradient with respect to the head's
    /// logits, into `dlogits`.
    func computeLossGradient(targets: UnsafePointer<Float>, loss: CedLoss) -> Double {
        let pl = plan!, a = arena!, c = pl.classes, n = pl.batch * c
        let dz = a + pl.dlogits, z = a + pl.logits, out = a + pl.outputs
        guard loss == .bce else { return loss.value(z, targets: targets, rows: pl.batch, classes: c, grad: dz) }
        // dL/dp, then through the sigmoid(s): torch's sigmoid backward, grad·(1 − s)·s.
        if config.pooling == .dm {
            return ScratchPool.shared.withFloats(n) { dp in
                let value = loss.value(out, targets: targets, rows: pl.batch, classes: c, grad: dp)
                let tpN = pl.timePatches, s = a + pl.headScores
                for b in 0..<pl.batch {
                    for t in 0..<tpN {
                        for j in 0..<c {
                            let i = (b * tpN + t) * c + j
                            dz[i] = dp[b * c + j] / Float(tpN) * (1 - s[i]) * s[i]
                        }
                    }
                }
                return value
            }
        }
        let value = loss.value(out, targets: targets, rows: pl.batch, classes: c, grad: dz)
        for i in 0..<n { dz[i] *= (1 - out[i]) * out[i] }
        return value
    }

    // MARK: Backward

    /// Backpropagates the loss's gradient (set by `loss(targets:)`) through the last forward
    /// pass and hands the gradients to `sink` part by part, each as soon as it is
    /// complete: the final norm and the head, then each block from the last, then the
    /// embedding part (positions, patch embedding, BatchNorm). The model's parameters are
    /// only read.
    public func backward(into sink: CedGradientSink) {
        precondition(hasForward && hasLossGradient, "backward without a forward pass and a loss")
        let pl = plan!, a = arena!, T = table
        let rows = pl.rows, e = pl.embed
        // Head: z = Linear(LayerNorm(v)); pooling; final norm → residual gradient D.
        begin(T.headPart)
        TrainingHead(p: T.head).backward(w, g, dz: a + pl.dlogits, x: a + pl.pooled, rows: pl.headVectors,
                                         normed: a + pl.headNormed, mean: a + pl.headMean, rstd: a + pl.headRstd,
                                         dNormed: a + pl.dheadNormed, dx: a + pl.dpooled, bf16: bf16)
        let dnormed = a + pl.dln, per = pl.headVectors / pl.batch
        for b in 0..<pl.batch {
            config.pooling.poolBackward(a + pl.dpooled + b * per * e, grid: pl.grid, ld: pl.ldE, dim: e,
                                        into: dnormed + b * pl.tokens * pl.ldE)
        }
        let D = a + pl.dres
        TrainingKernels.layerNormBackward(dy: dnormed, lddy: pl.ldE, x: a + pl.residual(pl.depth), ldx: pl.ldE,
                                          mean: a + pl.finalMean, rstd: a + pl.finalRstd, weight: w(T.norm.weight),
                                          rows: rows, cols: e, dx: D, lddx: pl.ldE, accumulate: false,
                                          dweight: g(T.norm.weight), dbias: g(T.norm.bias))
        sink.receive(offsets: T.headPart, gradients: partGradients)
        for l in stride(from: pl.depth - 1, through: 0, by: -1) {
            begin(T.blockPart(l))
            blockBackward(pl, l, D)
            sink.receive(offsets: T.blockPart(l), gradients: partGradients)
        }
        begin(T.embeddingPart)
        if forwardMode == .train && dropRate > 0 { applyDropout(D, ld: pl.ldE, rows: rows, cols: e, key: noiseKey(.pos), p: dropRate) }
        embeddingBackward(pl, D)
        sink.receive(offsets: T.embeddingPart, gradients: partGradients)
        sink.finish()
        hasForward = false
        hasLossGradient = false
    }

    /// Starts the gradients of a part of the network at zero.
    func begin(_ part: Range<Int>) {
        partStart = part.lowerBound
        partGradients.update(repeating: 0, count: part.count)
    }

    /// One block backward: `D` holds the gradient of the block's output on entry and of
    /// its input on return.
    func blockBackward(_ pl: TrainingPlan, _ l: Int, _ D: UnsafeMutablePointer<Float>) {
        let a = arena!, B = table.blocks[l]
        let rows = pl.rows, e = pl.embed, hdim = pl.hidden
        let xin = a + pl.residual(l), xmid = a + pl.xmid(l)
        let normed = a + pl.normed, qkv = a + pl.qkv(l), ctx = a + pl.context(l), hidden = a + pl.mlpHidden(l)
        let gelu = a + pl.geluOut, dh = a + pl.dhidden, dln = a + pl.dln
        let plain = branchIsPlain(l)
        let B0 = table.blocks[l]
        if pl.recomputation >= .blocks {
            // The block's attention half again: norm1 → q|k|v → attention → xmid.
            TrainingKernels.layerNormApply(xin, ldx: pl.ldE, rows: rows, cols: e, mean: a + pl.mean1(l), rstd: a + pl.rstd1(l),
                                           weight: w(B0.norm1.weight), bias: w(B0.norm1.bias), y: normed, ldy: pl.ldE)
            TrainingGEMM.forward(x: normed, ldx: pl.ldE, rows: rows, weight: w(B0.qkv.weight), out: 3 * e, in: e,
                                 bias: B0.qkv.bias.map { w($0) }, y: qkv, ldy: pl.ld3, bf16: bf16)
            TrainingAttention.forward(pl, qkv: qkv, probs: a + pl.probs(l), context: ctx,
                                      dropout: forwardMode == .train ? attnDropRate : 0, key: noiseKey(.attn, block: l))
            attentionResidual(pl, l, xin: xin, context: ctx, into: xmid)
        }
        if pl.recomputation >= .mlp {
            // The hidden layer again: norm2(xmid) → fc1.
            TrainingKernels.layerNormApply(xmid, ldx: pl.ldE, rows: rows, cols: e, mean: a + pl.mean2(l), rstd: a + pl.rstd2(l),
                                           weight: w(B0.norm2.weight), bias: w(B0.norm2.bias), y: normed, ldy: pl.ldE)
            TrainingGEMM.forward(x: normed, ldx: pl.ldE, rows: rows, weight: w(B0.fc1.weight), out: hdim, in: e,
                                 bias: w(B0.fc1.bias!), y: hidden, ldy: pl.ldH, bf16: bf16)
        }

        // MLP branch: xout = xmid + drop(fc2(drop(GELU(fc1(norm2(xmid)))))).
        let dout: UnsafeMutablePointer<Float> = plain ? D : a + pl.dtmp
        if !plain { maskBranchGradient(pl, D, into: dout, dropKey: noiseKey(.mlp2, block: l), path: .pathMLP, block: l) }
        // GELU(hidden) for fc2's weight gradient, and GELU'(hidden) for later (in place of
        // the hidden layer, which nothing reads after this), in one pass.
        let geluGrad = hidden
        TrainingKernels.geluAndGrad(hidden, into: gelu, gradient: geluGrad, count: rows * pl.ldH)
        if forwardMode == .train && dropRate > 0 {
            applyDropout(gelu, ld: pl.ldH, rows: rows, cols: hdim, key: noiseKey(.mlp1, block: l), p: dropRate)
        }
        TrainingGEMM.backwardWeight(dy: dout, lddy: pl.ldE, x: gelu, ldx: pl.ldH, rows: rows, out: e, in: hdim,
                                    dw: g(B.fc2.weight), accumulate: true, bf16: bf16)
        TrainingKernels.columnSums(dout, lddy: pl.ldE, rows: rows, cols: e, into: g(B.fc2.bias!), accumulate: true)
        TrainingGEMM.backwardInput(dy: dout, lddy: pl.ldE, rows: rows, weight: w(B.fc2.weight), out: e, in: hdim,
                                   dx: dh, lddx: pl.ldH, accumulate: false, bf16: bf16)
        if forwardMode == .train && dropRate > 0 {
            applyDropout(dh, ld: pl.ldH, rows: rows, cols: hdim, key: noiseKey(.mlp1, block: l), p: dropRate)
        }
        TrainingKernels.multiply(dh, by: geluGrad, count: rows * pl.ldH)
        TrainingKernels.layerNormApply(xmid, ldx: pl.ldE, rows: rows, cols: e, mean: a + pl.mean2(l), rstd: a + pl.rstd2(l),
                                       weight: w(B.norm2.weight), bias: w(B.norm2.bias), y: normed, ldy: pl.ldE)
        TrainingGEMM.backwardWeight(dy: dh, lddy: pl.ldH, x: normed, ldx: pl.ldE, rows: rows, out: hdim, in: e,
                                    dw: g(B.fc1.weight), accumulate: true, bf16: bf16)
        TrainingKernels.columnSums(dh, lddy: pl.ldH, rows: rows, cols: hdim, into: g(B.fc1.bias!), accumulate: true)
        TrainingGEMM.backwardInput(dy: dh, lddy: pl.ldH, rows: rows, weight: w(B.fc1.weight), out: hdim, in: e,
                                   dx: dln, lddx: pl.ldE, accumulate: false, bf16: bf16)
        TrainingKernels.layerNormBackward(dy: dln, lddy: pl.ldE, x: xmid, ldx: pl.ldE, mean: a + pl.mean2(l), rstd: a + pl.rstd2(l),
                                          weight: w(B.norm2.weight), rows: rows, cols: e, dx: D, lddx: pl.ldE, accumulate: true,
                                          dweight: g(B.norm2.weight), dbias: g(B.norm2.bias))
        if pl.recomputation == .attention || pl.recomputation == .mlp {
            // The softmax weights (and the context) again, with the forward pass's dropout masks.
            TrainingAttention.forward(pl, qkv: qkv, probs: a + pl.probs(l), context: ctx,
                                      dropout: forwardMode == .train ? attnDropRate : 0, key: noiseKey(.attn, block: l))
        }
        // D is now the gradient of xmid. Attention branch: xmid = xin + drop(proj(attn(norm1(xin)))).
        let da: UnsafeMutablePointer<Float> = plain ? D : a + pl.dtmp
        if !plain { maskBranchGradient(pl, D, into: da, dropKey: noiseKey(.proj, block: l), path: .pathAttn, block: l) }
        TrainingGEMM.backwardWeight(dy: da, lddy: pl.ldE, x: ctx, ldx: pl.ldE, rows: rows, out: e, in: e,
                                    dw: g(B.proj.weight), accumulate: true, bf16: bf16)
        TrainingKernels.columnSums(da, lddy: pl.ldE, rows: rows, cols: e, into: g(B.proj.bias!), accumulate: true)
        let dctx = a + pl.dctx, dqkv = a + pl.dqkv
        TrainingGEMM.backwardInput(dy: da, lddy: pl.ldE, rows: rows, weight: w(B.proj.weight), out: e, in: e,
                                   dx: dctx, lddx: pl.ldE, accumulate: false, bf16: bf16)
        TrainingAttention.backward(pl, qkv: qkv, probs: a + pl.probs(l), dContext: dctx, dqkv: dqkv,
                                   dropout: forwardMode == .train ? attnDropRate : 0, key: noiseKey(.attn, block: l))
        TrainingKernels.layerNormApply(xin, ldx: pl.ldE, rows: rows, cols: e, mean: a + pl.mean1(l), rstd: a + pl.rstd1(l),
                                       weight: w(B.norm1.weight), bias: w(B.norm1.bias), y: normed, ldy: pl.ldE)
        TrainingGEMM.backwardWeight(dy: dqkv, lddy: pl.ld3, x: normed, ldx: pl.ldE, rows: rows, out: 3 * e, in: e,
                                    dw: g(B.qkv.weight), accumulate: true, bf16: bf16)
        if let qb = B.qkv.bias {
            TrainingKernels.columnSums(dqkv, lddy: pl.ld3, rows: rows, cols: e, into: g(qb), accumulate: true)
            // The key bias adds q·b_k to every score of a query row, which the softmax
            // cancels: its gradient is exactly zero (computed, it would be rounding noise
            // of order 1e-9, which Adam's normalisation turns into steps of order lr).
            TrainingKernels.columnSums(dqkv + 2 * e, lddy: pl.ld3, rows: rows, cols: e, into: g(qb) + 2 * e, accumulate: true)
        }
        TrainingGEMM.backwardInput(dy: dqkv, lddy: pl.ld3, rows: rows, weight: w(B.qkv.weight), out: 3 * e, in: e,
                                   dx: dln, lddx: pl.ldE, accumulate: false, bf16: bf16)
        TrainingKernels.layerNormBackward(dy: dln, lddy: pl.ldE, x: xin, ldx: pl.ldE, mean: a + pl.mean1(l), rstd: a + pl.rstd1(l),
                                          weight: w(B.norm1.weight), rows: rows, cols: e, dx: D, lddx: pl.ldE, accumulate: true,
                                          dweight: g(B.norm1.weight), dbias: g(B.norm1.bias))
    }

    /// The gradient of a residual branch's output from the gradient of the sum: the same
    /// dropout mask and drop-path multiplier as the forward pass.
    func maskBranchGradient(_ pl: TrainingPlan, _ D: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>,
                            dropKey: UInt64, path: Site, block l: Int) {
        let e = pl.embed, p = dropRate, scale = p > 0 ? 1 / (1 - p) : 1
        for r in 0..<pl.rows {
            let s = pathScale(path, block: l, clip: r / pl.tokens)
            let src = D + r * pl.ldE, dst = out + r * pl.ldE
            if p > 0 {
                for j in 0..<e { dst[j] = src[j] * TrainingNoise.dropoutScale(dropKey, r * e + j, p: p, scale: scale) * s }
            } else {
                for j in 0..<e { dst[j] = src[j] * s }
            }
        }
    }

    /// Positional embeddings, cls token, patch embedding and BatchNorm from the gradient of
    /// the embedding output `D`.
    func embeddingBackward(_ pl: TrainingPlan, _ D: UnsafeMutablePointer<Float>) {
        let a = arena!, T = table, e = pl.embed, fp = pl.frequencyPatches, tpN = pl.timePatches
        let tmax = config.maxTimePatches, off = pl.hasCls ? 1 : 0
        let dtpos = g(T.timePosEmbed), dfpos = g(T.freqPosEmbed)
        let dpatch = a + pl.dpatch
        for b in 0..<pl.batch {
            if pl.hasCls {
                let row = D + b * pl.tokens * pl.ldE, dcls = g(T.clsToken!), dtok = g(T.tokenPosEmbed!)
                for ch in 0..<e { dcls[ch] += row[ch]; dtok[ch] += row[ch] }
            }
            for fi in 0..<fp {
                for ti in 0..<tpN {
                    let p = fi * tpN + ti
                    let row = D + (b * pl.tokens + off + p) * pl.ldE
                    for ch in 0..<e {
                        dtpos[ch * tmax + ti] += row[ch]
                        dfpos[ch * fp + fi] += row[ch]
                    }
                    (dpatch + (b * pl.patches + p) * e).update(from: row, count: e)
                }
            }
        }
        let patchRows = pl.batch * pl.patches
        TrainingGEMM.backwardWeight(dy: dpatch, lddy: e, x: a + pl.cols, ldx: pl.area, rows: patchRows, out: e, in: pl.area,
                                    dw: g(T.patchEmbed.weight), accumulate: true, bf16: bf16)
        TrainingKernels.columnSums(dpatch, lddy: e, rows: patchRows, cols: e, into: g(T.patchEmbed.bias!), accumulate: true)
        let dcols = a + pl.dcols
        TrainingGEMM.backwardInput(dy: dpatch, lddy: e, rows: patchRows, weight: w(T.patchEmbed.weight), out: e, in: pl.area,
                                   dx: dcols, lddx: pl.area, accumulate: false, bf16: bf16)
        // col2im, then BatchNorm's γ and β (the input mel needs no gradient).
        let c = config
        let ph = c.patchSize.frequency, pw = c.patchSize.time, sf = c.patchStride.frequency, st = c.patchStride.time
        let frames = pl.paddedFrames, dplanes = a + pl.dplanes
        dplanes.update(repeating: 0, count: pl.batch * pl.nMels * frames)
        for b in 0..<pl.batch {
            let plane = dplanes + b * pl.nMels * frames
            for fi in 0..<fp {
                for ti in 0..<tpN {
                    let row = dcols + ((b * fp + fi) * tpN + ti) * pl.area
                    for kh in 0..<ph {
                        let dst = plane + (fi * sf + kh) * frames + ti * st, src = row + kh * pw
                        for kw in 0..<pw { dst[kw] += src[kw] }
                    }
                }
            }
        }
        let dgamma = g(T.initBN.weight), dbeta = g(T.initBN.bias)
        let f = pl.nMels, t = pl.frames
        for bin in 0..<f {
            let m = a[pl.bnMean + bin], rstd = a[pl.bnRstd + bin]
            var sg = 0.0, sb = 0.0
            for b in 0..<pl.batch {
                let x = a + pl.input + (b * f + bin) * t, dy = dplanes + (b * f + bin) * frames
                for j in 0..<t {
                    sg += Double(dy[j]) * Double((x[j] - m) * rstd)
                    sb += Double(dy[j])
                }
            }
            dgamma[bin] += Float(sg)
            dbeta[bin] += Float(sb)
        }
    }
}
