import Foundation

/// A trainable CED classification head, `outputlayer` = `LayerNorm(dim, eps=1e-5)` +
/// `Linear(dim, classes)`, in float64 with hand-written gradients (the encoder stays
/// frozen, so the head's input is a fixed vector per clip).
///
/// Forward for an input `x` of `inputDim` values:
/// `x̂ = (x − mean(x)) / √(var(x) + 1e-5)` (biased variance), `h = γ ⊙ x̂ + β`,
/// `z = W·h + b`. `z` are the logits; the saved model applies a sigmoid unless its pooling
/// is `logit`.
public struct ClassificationHead: Sendable, Equatable {
    public let inputDim: Int
    public let outputDim: Int
    /// `outputlayer.0.weight` (γ), `[inputDim]`.
    public var normWeight: [Double]
    /// `outputlayer.0.bias` (β), `[inputDim]`.
    public var normBias: [Double]
    /// `outputlayer.1.weight` (W), row-major `[outputDim, inputDim]`.
    public var weight: [Double]
    /// `outputlayer.1.bias` (b), `[outputDim]`.
    public var bias: [Double]

    public static let layerNormEps = 1e-5

    /// A fresh head initialised as upstream initialises `outputlayer`: LayerNorm γ = 1,
    /// β = 0; Linear weight from a normal distribution with std 0.02 truncated at ±2 std,
    /// bias 0.
    public init(inputDim: Int, outputDim: Int, rng: inout TrainingRandom) {
        precondition(inputDim > 0 && outputDim > 0)
        self.inputDim = inputDim
        self.outputDim = outputDim
        normWeight = [Double](repeating: 1, count: inputDim)
        normBias = [Double](repeating: 0, count: inputDim)
        weight = (0..<(outputDim * inputDim)).map { _ in
            var g = rng.nextGaussian()
            while abs(g) > 2 { g = rng.nextGaussian() }
            return 0.02 * g
        }
        bias = [Double](repeating: 0, count: outputDim)
    }

    /// A head with the given parameters (sizes checked).
    public init(normWeight: [Double], normBias: [Double], weight: [Double], bias: [Double]) {
        precondition(normWeight.count == normBias.count && !normWeight.isEmpty && !bias.isEmpty
                     && weight.count == bias.count * normWeight.count, "inconsistent head parameter sizes")
        inputDim = normWeight.count
        outputDim = bias.count
        self.normWeight = normWeight
        self.normBias = normBias
        self.weight = weight
        self.bias = bias
    }

    /// Gradients (or any per-parameter quantity) shaped like the head's parameters.
    public struct Parameters: Sendable, Equatable {
        public var normWeight: [Double]
        public var normBias: [Double]
        public var weight: [Double]
        public var bias: [Double]

        init(zerosLike head: ClassificationHead) {
            normWeight = [Double](repeating: 0, count: head.inputDim)
            normBias = normWeight
            weight = [Double](repeating: 0, count: head.weight.count)
            bias = [Double](repeating: 0, count: head.outputDim)
        }
    }

    /// `x̂` for one input (the normalised vector before γ, β).
    func normalized(_ x: UnsafeBufferPointer<Float>) -> [Double] {
        let d = inputDim
        var mean = 0.0
        for i in 0..<d { mean += Double(x[i]) }
        mean /= Double(d)
        var v = 0.0
        for i in 0..<d { let t = Double(x[i]) - mean; v += t * t }
        let r = 1 / (v / Double(d) + Self.layerNormEps).squareRoot()
        return (0..<d).map { (Double(x[$0]) - mean) * r }
    }

    /// The logits `[outputDim]` for one input.
    public func logits(_ x: [Float]) -> [Double] {
        precondition(x.count == inputDim, "input has \(x.count) values, expected \(inputDim)")
        return logits(normalized: x.withUnsafeBufferPointer { normalized($0) })
    }

    func logits(normalized xh: [Double]) -> [Double] {
        var h = [Double](repeating: 0, count: inputDim)
        for i in 0..<inputDim { h[i] = normWeight[i] * xh[i] + normBias[i] }
        return (0..<outputDim).map { k in
            var s = bias[k]
            let row = k * inputDim
            for i in 0..<inputDim { s += weight[row + i] * h[i] }
            return s
        }
    }

    /// The mean loss over a batch and its gradient with respect to every parameter.
    /// `targets` is row-major `[inputs.count, outputDim]` (one-hot rows for single-label).
    public func lossAndGradients(inputs: [[Float]], targets: [Double], loss: CedLossFunction) -> (loss: Double, gradients: Parameters) {
        lossAndGradients(normalized: inputs.map { x in
            precondition(x.count == inputDim, "input has \(x.count) values, expected \(inputDim)")
            return x.withUnsafeBufferPointer { normalized($0) }
        }, targets: targets, loss: loss)
    }

    /// As `lossAndGradients(inputs:…)` for inputs already normalised (`x̂`, which does not
    /// depend on the parameters, so training computes it once per example).
    func lossAndGradients(normalized xhat: [[Double]], targets: [Double], loss: CedLossFunction) -> (loss: Double, gradients: Parameters) {
        let b = xhat.count, d = inputDim, k = outputDim
        precondition(b > 0 && targets.count == b * k, "targets must be [batch, outputDim]")
        var hidden = [Double](repeating: 0, count: b * d)
        var z = [Double](repeating: 0, count: b * k)
        normWeight.withUnsafeBufferPointer { gamma in
            normBias.withUnsafeBufferPointer { beta in
                weight.withUnsafeBufferPointer { w in
                    hidden.withUnsafeMutableBufferPointer { hb in
                        z.withUnsafeMutableBufferPointer { zb in
                            for r in 0..<b {
                                let h = hb.baseAddress! + r * d
                                xhat[r].withUnsafeBufferPointer { x in
                                    for i in 0..<d { h[i] = gamma[i] * x[i] + beta[i] }
                                }
                                for c in 0..<k {
                                    var s = bias[c]
                                    let row = w.baseAddress! + c * d
                                    for i in 0..<d { s += row[i] * h[i] }
                                    zb[r * k + c] = s
                                }
                            }
                        }
                    }
                }
            }
        }
        let (value, dz) = loss == .bceWithLogits
            ? CedLoss.bceWithLogits(logits: z, targets: targets)
            : CedLoss.softmaxCrossEntropy(logits: z, targets: targets, classes: k)
        // Backward: db = Σ dz, dW = Σ dz·hᵀ, dh = Wᵀ·dz, dγ = Σ dh ⊙ x̂, dβ = Σ dh.
        var g = Parameters(zerosLike: self)
        var dh = [Double](repeating: 0, count: d)
        weight.withUnsafeBufferPointer { w in
            hidden.withUnsafeBufferPointer { hb in
                g.weight.withUnsafeMutableBufferPointer { gw in
                    dh.withUnsafeMutableBufferPointer { dhb in
                        for r in 0..<b {
                            for i in 0..<d { dhb[i] = 0 }
                            let h = hb.baseAddress! + r * d
                            for c in 0..<k {
                                let gz = dz[r * k + c]
                                if gz == 0 { continue }
                                g.bias[c] += gz
                                let row = w.baseAddress! + c * d
                                let grow = gw.baseAddress! + c * d
                                for i in 0..<d {
                                    grow[i] += gz * h[i]
                                    dhb[i] += row[i] * gz
                                }
                            }
                            xhat[r].withUnsafeBufferPointer { x in
                                for i in 0..<d {
                                    g.normWeight[i] += dhb[i] * x[i]
                                    g.normBias[i] += dhb[i]
                                }
                            }
                        }
                    }
                }
            }
        }
        return (value, g)
    }

    /// The head as `outputlayer.0.*` / `outputlayer.1.*` float32 tensors, named and shaped
    /// as in upstream checkpoints.
    public func stateDict() -> [String: Tensor] {
        func f(_ a: [Double]) -> [Float] { a.map { Float($0) } }
        return [
            "outputlayer.0.weight": Tensor(shape: [inputDim], scalars: f(normWeight)),
            "outputlayer.0.bias": Tensor(shape: [inputDim], scalars: f(normBias)),
            "outputlayer.1.weight": Tensor(shape: [outputDim, inputDim], scalars: f(weight)),
            "outputlayer.1.bias": Tensor(shape: [outputDim], scalars: f(bias)),
        ]
    }
}

/// Adam with decoupled weight decay (`torch.optim.AdamW`): per step `t`,
/// `θ ← θ − lr·λ·θ` (weights of the Linear layer only: LayerNorm parameters and biases
/// are not decayed), then `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
/// `θ ← θ − lr·(m/(1−β₁ᵗ)) / (√(v/(1−β₂ᵗ)) + ε)`.
public struct AdamW: Sendable {
    public var learningRate: Double
    public var weightDecay: Double
    public var beta1 = 0.9
    public var beta2 = 0.999
    public var epsilon = 1e-8
    /// Steps taken so far.
    public private(set) var step = 0
    private var m: ClassificationHead.Parameters?
    private var v: ClassificationHead.Parameters?

    public init(learningRate: Double, weightDecay: Double) {
        self.learningRate = learningRate
        self.weightDecay = weightDecay
    }

    /// One update of `head` with gradients `g`.
    public mutating func update(_ head: inout ClassificationHead, gradients g: ClassificationHead.Parameters) {
        if m == nil { m = .init(zerosLike: head); v = .init(zerosLike: head) }
        step += 1
        let c1 = 1 - Foundation.pow(beta1, Double(step))
        let c2 = 1 - Foundation.pow(beta2, Double(step))
        let lr = learningRate, b1 = beta1, b2 = beta2, eps = epsilon
        func apply(_ p: inout [Double], _ grad: [Double], _ m: inout [Double], _ v: inout [Double], decay: Double) {
            for i in p.indices {
                if decay != 0 { p[i] -= lr * decay * p[i] }
                let gi = grad[i]
                m[i] = b1 * m[i] + (1 - b1) * gi
                v[i] = b2 * v[i] + (1 - b2) * gi * gi
                p[i] -= lr * (m[i] / c1) / ((v[i] / c2).squareRoot() + eps)
            }
        }
        apply(&head.normWeight, g.normWeight, &m!.normWeight, &v!.normWeight, decay: 0)
        apply(&head.normBias, g.normBias, &m!.normBias, &v!.normBias, decay: 0)
        apply(&head.weight, g.weight, &m!.weight, &v!.weight, decay: weightDecay)
        apply(&head.bias, g.bias, &m!.bias, &v!.bias, decay: 0)
    }
}
