import Foundation

/// A model whose trainable parameters live in one flat float32 buffer, laid out by the
/// offsets of their `CedParameterTable` entries: the whole network (`CedTrainingModel`)
/// or a head trained on its own (`HeadTrainer`).
public protocol CedTrainable: AnyObject {
    /// The trainable entries, in buffer order.
    var trainableParameters: [CedParameter] { get }
    /// Number of trainable values.
    var parameterCount: Int { get }
    /// The values, `parameterCount` floats.
    var parameterValues: UnsafeMutablePointer<Float> { get }
}

/// Where a backward pass hands its gradients, part by part as each part is finished (the
/// head and final norm, then each block from the last, then the embedding part): the
/// pass itself only computes (llm.c's `gpt2_backward`), the sink decides what happens to
/// the gradients (kept, or `gpt2_update` right away).
public protocol CedGradientSink: AnyObject {
    /// The gradients of the parameter values `offsets` (contiguous, in the model's flat
    /// layout), valid during the call.
    func receive(offsets: Range<Int>, gradients: UnsafePointer<Float>)
    /// Called after the last part.
    func finish()
}

/// Every gradient of a model, kept (PyTorch's `.grad` after `loss.backward()`).
public final class CedGradientBuffer: CedGradientSink {
    public let count: Int
    /// The gradients, in the model's flat layout.
    public let values: UnsafeMutablePointer<Float>
    /// Add each backward pass's gradients to those held (several batches per optimiser
    /// step) instead of replacing them.
    public var accumulates: Bool

    public init(count: Int, accumulates: Bool = false) {
        self.count = count
        self.accumulates = accumulates
        values = .allocate(capacity: max(1, count))
        values.initialize(repeating: 0, count: max(1, count))
    }

    deinit { values.deallocate() }

    public func receive(offsets: Range<Int>, gradients: UnsafePointer<Float>) {
        let dst = values + offsets.lowerBound
        if accumulates {
            for i in 0..<offsets.count { dst[i] += gradients[i] }
        } else {
            dst.update(from: gradients, count: offsets.count)
        }
    }

    public func finish() {}

    /// Zeros every gradient.
    public func zero() { values.update(repeating: 0, count: count) }

    /// The gradient of one parameter, shaped like it.
    public func tensor(_ p: CedParameter) -> Tensor {
        Tensor(shape: p.shape, scalars: Array(UnsafeBufferPointer(start: values + p.offset!, count: p.count)))
    }

    /// The global L2 norm (float64 sum in buffer order) and, when it exceeds `maxNorm`,
    /// every gradient scaled by `maxNorm / (norm + 1e-6)` as
    /// `torch.nn.utils.clip_grad_norm_` does. Returns the norm before clipping.
    @discardableResult
    public func clip(maxNorm: Double) -> Double {
        var sum = 0.0
        for i in 0..<count { let x = Double(values[i]); sum += x * x }
        let norm = sum.squareRoot()
        let coef = maxNorm / (norm + 1e-6)
        if coef < 1 {
            let c = Float(coef)
            for i in 0..<count { values[i] *= c }
        }
        return norm
    }
}

/// `torch.optim.AdamW` over every trainable parameter of a `CedTrainable`, with
/// upstream's two parameter groups: weight decay on tensors with at least two dimensions
/// except the positional embeddings and the cls token, none on the rest (biases, norms).
///
/// Per step t with gradient g (float32, in torch's order of operations):
/// `θ ← θ·(1 − lr·λ)` (decay group only), `m ← m + (g − m)·(1 − β₁)`,
/// `v ← v·β₂ + (1 − β₂)·g²`, `θ ← θ − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)`.
///
/// A step is a gradient sink (`step(learningRate:clipNorm:)`): a backward pass hands it
/// each finished part, and the part is updated at once, so only one block's gradients
/// are ever in memory; with clipping it first gathers every gradient for the global norm.
public final class CedAdamW {
    public struct Options: Sendable, Codable, Equatable {
        public var learningRate: Double
        public var beta1: Double
        public var beta2: Double
        public var epsilon: Double
        public var weightDecay: Double

        /// torch's defaults except the learning rate and weight decay given.
        public init(learningRate: Double = 1e-3, beta1: Double = 0.9, beta2: Double = 0.999, epsilon: Double = 1e-8,
                    weightDecay: Double = 1e-2) {
            self.learningRate = learningRate
            self.beta1 = beta1
            self.beta2 = beta2
            self.epsilon = epsilon
            self.weightDecay = weightDecay
        }
    }

    public var options: Options
    /// Steps taken so far (torch's `state['step']`).
    public internal(set) var step = 0
    let model: CedTrainable
    let count: Int
    let parameters: [CedParameter]
    /// First and second moments, laid out as the model's parameters.
    let m: UnsafeMutablePointer<Float>
    let v: UnsafeMutablePointer<Float>
    /// Work blocks of the update: (offset, count, decays), within one tensor each.
    let units: [(offset: Int, count: Int, decays: Bool)]
    /// The gradients gathered for clipping (allocated on the first clipped step).
    private var clipBuffer: CedGradientBuffer?

    public init(model: CedTrainable, options: Options) {
        self.options = options
        self.model = model
        count = model.parameterCount
        parameters = model.trainableParameters
        var units: [(Int, Int, Bool)] = []
        for p in parameters {
            var s = 0
            while s < p.count { units.append((p.offset! + s, min(Self.block, p.count - s), p.decays)); s += Self.block }
        }
        self.units = units
        m = .allocate(capacity: max(1, count))
        v = .allocate(capacity: max(1, count))
        m.initialize(repeating: 0, count: max(1, count))
        v.initialize(repeating: 0, count: max(1, count))
    }

    deinit {
        m.deallocate()
        v.deallocate()
    }

    static let block = 1 << 14

    /// One optimiser step as a gradient sink, at `learningRate` (default
    /// `options.learningRate`, e.g. a schedule's value for this step). With `clipNorm`,
    /// the gradients are gathered, clipped to that global norm and applied at the end.
    public func step(learningRate: Double? = nil, clipNorm: Double? = nil) -> Step {
        Step(self, learningRate: learningRate ?? options.learningRate, clipNorm: clipNorm)
    }

    /// One update from gradients already computed (the two-call form of `step`).
    public func update(_ gradients: CedGradientBuffer, learningRate: Double? = nil) {
        precondition(gradients.count == count, "the gradients belong to another model")
        let s = step(learningRate: learningRate)
        s.receive(offsets: 0..<count, gradients: gradients.values)
        s.finish()
    }

    /// A step in progress (see `step(learningRate:clipNorm:)`).
    public final class Step: CedGradientSink {
        let optimizer: CedAdamW
        let learningRate: Double
        let clipNorm: Double?
        /// Whether the optimiser's step count and constants have moved to this step (on
        /// the first update, so a step whose backward pass never runs changes nothing).
        var begun = false
        /// The global gradient norm before clipping (with `clipNorm`, after `finish`).
        public private(set) var gradientNorm: Double?

        init(_ optimizer: CedAdamW, learningRate: Double, clipNorm: Double?) {
            self.optimizer = optimizer
            self.learningRate = learningRate
            self.clipNorm = clipNorm
            if clipNorm != nil, optimizer.clipBuffer == nil { optimizer.clipBuffer = CedGradientBuffer(count: optimizer.count) }
        }

        public func receive(offsets: Range<Int>, gradients: UnsafePointer<Float>) {
            if clipNorm != nil {
                optimizer.clipBuffer!.receive(offsets: offsets, gradients: gradients)
            } else {
                update(offsets, gradients)
            }
        }

        public func finish() {
            guard let clipNorm, let buffer = optimizer.clipBuffer else { return }
            gradientNorm = buffer.clip(maxNorm: clipNorm)
            update(0..<optimizer.count, buffer.values)
        }

        func update(_ offsets: Range<Int>, _ gradients: UnsafePointer<Float>) {
            if !begun {
                optimizer.begin(learningRate: learningRate)
                begun = true
            }
            optimizer.apply(offsets: offsets, gradients: gradients)
        }
    }

    /// The constants of the current step (set by `begin`).
    var current: (decay: Float?, stepSize: Float, bc2Sqrt: Float) = (nil, 0, 1)

    /// Starts step `step + 1` at `lr`.
    func begin(learningRate lr: Double) {
        step += 1
        let o = options
        let bc1 = 1 - Foundation.pow(o.beta1, Double(step))
        let bc2 = 1 - Foundation.pow(o.beta2, Double(step))
        current = (o.weightDecay == 0 ? nil : Float(1 - lr * o.weightDecay), Float(lr / bc1), Float(bc2.squareRoot()))
    }

    /// This step's update of the parameter values `offsets` (whole tensors), their
    /// gradients contiguous from `g`.
    func apply(offsets: Range<Int>, gradients g: UnsafePointer<Float>) {
        precondition(model.parameterCount == count, "the optimiser belongs to another model")
        // The units inside the range (units are in offset order).
        var lo = 0, hi = units.count
        while lo < units.count && units[lo].offset < offsets.lowerBound { lo += 1 }
        hi = lo
        while hi < units.count && units[hi].offset < offsets.upperBound { hi += 1 }
        guard lo < hi else { return }
        let o = options
        units.withUnsafeBufferPointer { all in
            let list = UnsafeBufferPointer(rebasing: all[lo..<hi])
            let task = Update(p: model.parameterValues, g: g - offsets.lowerBound, m: m, v: v, decay: current.decay,
                              oneMinusBeta1: Float(1 - o.beta1), beta2: Float(o.beta2), oneMinusBeta2: Float(1 - o.beta2),
                              stepSize: current.stepSize, bc2Sqrt: current.bc2Sqrt, eps: Float(o.epsilon), units: list)
            let threads = list.count > 4 ? ComputePool.shared.workerCount + 1 : 1
            ComputePool.shared.run(list.count, maxThreads: threads, task)
        }
    }

    struct Update: ComputeTask {
        let p: UnsafeMutablePointer<Float>, g: UnsafePointer<Float>
        let m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>
        /// `1 − lr·λ`, nil without weight decay.
        let decay: Float?
        let oneMinusBeta1: Float, beta2: Float, oneMinusBeta2: Float
        let stepSize: Float, bc2Sqrt: Float, eps: Float
        let units: UnsafeBufferPointer<(offset: Int, count: Int, decays: Bool)>

        func callAsFunction(_ i: Int) {
            let u = units[i]
            let factor: Float? = u.decays ? decay : nil
            for j in u.offset ..< (u.offset + u.count) {
                var pj = p[j]
                if let factor { pj *= factor }
                let gj = g[j]
                let mj = m[j] + (gj - m[j]) * oneMinusBeta1
                let vj = v[j] * beta2 + oneMinusBeta2 * gj * gj
                m[j] = mj
                v[j] = vj
                let denom = vj.squareRoot() / bc2Sqrt + eps
                pj -= stepSize * (mj / denom)
                p[j] = pj
            }
        }
    }

    // MARK: State

    /// The moments as tensors named after their parameters (`exp_avg.<name>`,
    /// `exp_avg_sq.<name>`), for checkpoints.
    public func stateTensors() -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for p in parameters {
            let o = p.offset!
            out["exp_avg.\(p.name)"] = Tensor(shape: [p.count], scalars: Array(UnsafeBufferPointer(start: m + o, count: p.count)))
            out["exp_avg_sq.\(p.name)"] = Tensor(shape: [p.count], scalars: Array(UnsafeBufferPointer(start: v + o, count: p.count)))
        }
        return out
    }

    /// Restores moments written by `stateTensors()` and the step count.
    public func restore(_ tensors: [String: Tensor], step: Int) throws {
        for p in parameters {
            guard let a = tensors["exp_avg.\(p.name)"], let b = tensors["exp_avg_sq.\(p.name)"],
                  a.count == p.count, b.count == p.count else {
                throw TrainingError(.checkpoint, reason: "the optimiser state has no moments for '\(p.name)' (or they have the wrong size)")
            }
            (m + p.offset!).update(from: a.scalars, count: p.count)
            (v + p.offset!).update(from: b.scalars, count: p.count)
        }
        self.step = step
    }
}

/// The learning rate of each optimiser step.
public enum CedLearningRateSchedule: Sendable, Equatable, Codable {
    /// `lr` after `warmup` steps rising linearly from `lr/warmup` (no warm-up when 0).
    case constant(warmup: Int)
    /// Linear warm-up as above, then cosine decay from `lr` to `lr·finalFraction` at the
    /// last step (upstream's `run.py`: ignite's CosineAnnealingScheduler to `decay_frac`
    /// = 0.1 after `create_lr_scheduler_with_warmup`).
    case cosine(warmup: Int, totalSteps: Int, finalFraction: Double)

    /// The learning rate of step `step` (0-based) for a peak rate `lr`.
    public func learningRate(step: Int, peak lr: Double) -> Double {
        switch self {
        case .constant(let warmup):
            return step < warmup ? lr * Double(step + 1) / Double(warmup) : lr
        case .cosine(let warmup, let total, let fraction):
            if step < warmup { return lr * Double(step + 1) / Double(warmup) }
            let span = max(1, total - warmup - 1)
            let t = min(1, Double(step - warmup) / Double(span))
            let low = lr * fraction
            return low + (lr - low) * (1 + Foundation.cos(Double.pi * t)) / 2
        }
    }
}
