import Foundation

/// `torch.optim.AdamW` over every trainable parameter of a `CedTrainingModel`, with
/// upstream's two parameter groups: weight decay on tensors with at least two dimensions
/// except the positional embeddings and the cls token, none on the rest (biases, norms).
///
/// Per step t with gradient g (float32, in torch's order of operations):
/// `θ ← θ·(1 − lr·λ)` (decay group only), `m ← m + (g − m)·(1 − β₁)`,
/// `v ← v·β₂ + (1 − β₂)·g²`, `θ ← θ − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)`.
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
    let count: Int
    let ranges: [(name: String, offset: Int, count: Int, decays: Bool)]
    /// First and second moments, laid out as the model's parameters.
    let m: UnsafeMutablePointer<Float>
    let v: UnsafeMutablePointer<Float>
    /// Parameters that are not updated (e.g. a frozen encoder); their moments stay 0.
    public var frozen: Set<String> = [] { didSet { units = Self.units(ranges, frozen: frozen) } }
    /// Work blocks of the update: (offset, count, decays), within one tensor each.
    var units: [(offset: Int, count: Int, decays: Bool)]

    public init(model: CedTrainingModel, options: Options) {
        self.options = options
        count = model.parameterCount
        ranges = model.layout.ranges
        units = Self.units(ranges, frozen: [])
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

    static func units(_ ranges: [(name: String, offset: Int, count: Int, decays: Bool)], frozen: Set<String>)
        -> [(offset: Int, count: Int, decays: Bool)] {
        var out: [(Int, Int, Bool)] = []
        for r in ranges where !frozen.contains(r.name) {
            var s = 0
            while s < r.count { out.append((r.offset + s, min(block, r.count - s), r.decays)); s += block }
        }
        return out
    }

    /// One update of `model` from the gradients it holds, at `learningRate` (default
    /// `options.learningRate`, e.g. a schedule's value for this step).
    public func update(_ model: CedTrainingModel, learningRate: Double? = nil) {
        precondition(model.parameterCount == count, "the optimiser belongs to another model")
        beginStep(learningRate: learningRate)
        apply(model, offsets: 0..<count, gradients: model.gradients)
    }

    /// The constants of the current step (set by `beginStep`).
    var current: (decay: Float?, stepSize: Float, bc2Sqrt: Float) = (nil, 0, 1)

    /// Starts step `step + 1` at `learningRate` (parts of the model then follow with `apply`).
    func beginStep(learningRate: Double?) {
        step += 1
        let lr = learningRate ?? options.learningRate
        let o = options
        let bc1 = 1 - Foundation.pow(o.beta1, Double(step))
        let bc2 = 1 - Foundation.pow(o.beta2, Double(step))
        current = (o.weightDecay == 0 ? nil : Float(1 - lr * o.weightDecay), Float(lr / bc1), Float(bc2.squareRoot()))
    }

    /// This step's update of the parameter values `offsets` (whole tensors), their
    /// gradients contiguous from `g`.
    func apply(_ model: CedTrainingModel, offsets: Range<Int>, gradients g: UnsafeMutablePointer<Float>) {
        // The units inside the range (units are in offset order).
        var lo = 0, hi = units.count
        while lo < units.count && units[lo].offset < offsets.lowerBound { lo += 1 }
        hi = lo
        while hi < units.count && units[hi].offset < offsets.upperBound { hi += 1 }
        guard lo < hi else { return }
        let o = options
        units.withUnsafeBufferPointer { all in
            let list = UnsafeBufferPointer(rebasing: all[lo..<hi])
            let task = Update(p: model.parameters, g: g - offsets.lowerBound, m: m, v: v, decay: current.decay,
                              oneMinusBeta1: Float(1 - o.beta1), beta2: Float(o.beta2), oneMinusBeta2: Float(1 - o.beta2),
                              stepSize: current.stepSize, bc2Sqrt: current.bc2Sqrt, eps: Float(o.epsilon), units: list)
            let threads = list.count > 4 ? ComputePool.shared.workerCount + 1 : 1
            ComputePool.shared.run(list.count, maxThreads: threads, task)
        }
    }

    struct Update: ComputeTask {
        let p: UnsafeMutablePointer<Float>, g: UnsafeMutablePointer<Float>
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

    /// The global L2 norm of the model's gradients (float64 sum), and, when it exceeds
    /// `maxNorm`, every gradient scaled by `maxNorm / (norm + 1e-6)` as
    /// `torch.nn.utils.clip_grad_norm_` does. Returns the norm before clipping.
    @discardableResult
    public static func clipGradients(_ model: CedTrainingModel, maxNorm: Double) -> Double {
        let g = model.gradients
        var sum = 0.0
        for i in 0..<model.parameterCount { let x = Double(g[i]); sum += x * x }
        let norm = sum.squareRoot()
        let coef = maxNorm / (norm + 1e-6)
        if coef < 1 {
            let c = Float(coef)
            for i in 0..<model.parameterCount { g[i] *= c }
        }
        return norm
    }

    // MARK: State

    /// The moments as tensors named after their parameters (`exp_avg.<name>`,
    /// `exp_avg_sq.<name>`), for checkpoints.
    public func stateTensors() -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for r in ranges {
            out["exp_avg.\(r.name)"] = Tensor(shape: [r.count], scalars: Array(UnsafeBufferPointer(start: m + r.offset, count: r.count)))
            out["exp_avg_sq.\(r.name)"] = Tensor(shape: [r.count], scalars: Array(UnsafeBufferPointer(start: v + r.offset, count: r.count)))
        }
        return out
    }

    /// Restores moments written by `stateTensors()` and the step count.
    public func restore(_ tensors: [String: Tensor], step: Int) throws {
        for r in ranges {
            guard let a = tensors["exp_avg.\(r.name)"], let b = tensors["exp_avg_sq.\(r.name)"],
                  a.count == r.count, b.count == r.count else {
                throw TrainingError(.checkpoint, reason: "the optimiser state has no moments for '\(r.name)' (or they have the wrong size)")
            }
            (m + r.offset).update(from: a.scalars, count: r.count)
            (v + r.offset).update(from: b.scalars, count: r.count)
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
