import Foundation

/// The authors' training augmentation, each draw made from a seed so that it can be
/// replayed exactly (consistent teaching: a student re-creates the very input the teachers
/// judged). Applied in upstream's order: a circular time shift of the waveform, then on the
/// log-mel one time mask and one frequency mask; mixup works on a batch afterwards.
public struct CedAugmentation: Sendable, Codable, Equatable {
    /// Largest shift as a fraction of the clip's length (torch_audiomentations `Shift`,
    /// `min_shift = −shift`, `max_shift = shift`, `rollover`), 0: no shift.
    public var shift: Double
    /// Probability that a clip is shifted at all (`Shift(p: …)`).
    public var shiftProbability: Double
    /// Time-mask width is uniform in [0, timeMask) frames (upstream `TimeMasking`), 0: none.
    public var timeMask: Int
    /// Frequency-mask width is uniform in [0, freqMask) mel bins (`FrequencyMasking`), 0: none.
    public var freqMask: Int
    /// nil: `timeMask` is in frames whatever the clip's length. A frame count: `timeMask`
    /// is meant for clips of that many frames, and a shorter clip of T frames gets
    /// `max(1, round(timeMask·T/reference))` (upstream's 192 frames were chosen for 10 s
    /// chunks, where they hide up to a fifth; on a 2 s clip they would hide almost all of it).
    public var timeMaskReference: Int?
    /// Both masks take their width and start from the same two random numbers, as upstream
    /// (its `TimeMasking` and `FrequencyMasking` are handed one `values`/`min_values` pair
    /// per clip: a wide time mask comes with a wide frequency mask); false: independent draws.
    public var sharedMaskValues: Bool

    public init(shift: Double = 0.5, shiftProbability: Double = 0.5, timeMask: Int = 192, freqMask: Int = 24,
                timeMaskReference: Int? = nil, sharedMaskValues: Bool = false) {
        self.shift = shift
        self.shiftProbability = shiftProbability
        self.timeMask = timeMask
        self.freqMask = freqMask
        self.timeMaskReference = timeMaskReference
        self.sharedMaskValues = sharedMaskValues
    }

    enum CodingKeys: String, CodingKey { case shift, shiftProbability, timeMask, freqMask, timeMaskReference, sharedMaskValues }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(shift: try c.decode(Double.self, forKey: .shift), shiftProbability: try c.decode(Double.self, forKey: .shiftProbability),
                  timeMask: try c.decode(Int.self, forKey: .timeMask), freqMask: try c.decode(Int.self, forKey: .freqMask),
                  timeMaskReference: try c.decodeIfPresent(Int.self, forKey: .timeMaskReference),
                  sharedMaskValues: try c.decodeIfPresent(Bool.self, forKey: .sharedMaskValues) ?? false)
    }

    /// The time-mask parameter for a clip of `frames` frames.
    public func timeMask(frames: Int) -> Int {
        guard let r = timeMaskReference, r > 0, frames < r, timeMask > 0 else { return timeMask }
        return max(1, Int((Double(timeMask) * Double(frames) / Double(r)).rounded()))
    }

    /// No augmentation at all.
    public static let none = CedAugmentation(shift: 0, shiftProbability: 0, timeMask: 0, freqMask: 0)

    public var isNone: Bool { (shift == 0 || shiftProbability == 0) && timeMask == 0 && freqMask == 0 }

    /// What one seed draws: everything needed to replay the augmentation of one clip.
    public struct Draw: Sendable, Equatable {
        /// Samples to roll the waveform right by (negative: left); 0 when not shifted.
        public var shiftFraction: Double
        public var shifted: Bool
        /// `values` and `min_values` of upstream's `mask_along_axis`, in [0, 1).
        public var timeValue: Double, timeStart: Double
        public var freqValue: Double, freqStart: Double
    }

    /// The draw for a seed. The stream (`TrainingRandom(seed:)`, in this order): shift
    /// applied? (u < p), the shift fraction (uniform in [−shift, shift]), the time mask's
    /// width and start values, the frequency mask's width and start values (with
    /// `sharedMaskValues` the frequency mask reuses the time mask's two values).
    public func draw(seed: UInt64) -> Draw {
        var rng = TrainingRandom(seed: seed)
        let apply = rng.nextDouble() < shiftProbability
        let fraction = (2 * rng.nextDouble() - 1) * shift
        let tv = rng.nextDouble(), ts = rng.nextDouble(), fv = rng.nextDouble(), fs = rng.nextDouble()
        return Draw(shiftFraction: fraction, shifted: apply && shift > 0, timeValue: tv, timeStart: ts,
                    freqValue: sharedMaskValues ? tv : fv, freqStart: sharedMaskValues ? ts : fs)
    }

    /// The waveform rolled by `round(fraction · n)` samples (`torch.roll`: positive moves
    /// samples later, wrapping around).
    public static func shifted(_ samples: [Float], draw: Draw) -> [Float] {
        let n = samples.count
        guard draw.shifted, n > 1 else { return samples }
        var k = Int((draw.shiftFraction * Double(n)).rounded()) % n
        if k < 0 { k += n }
        if k == 0 { return samples }
        return Array(samples[(n - k)...] + samples[..<(n - k)])
    }

    /// Masks a `[n_mels, T]` log-mel in place (values set to 0), as upstream's
    /// `mask_along_axis` with given `values`/`min_values`: width `w = v·param`, start
    /// `s = u·(size − w)`, columns `[⌊s⌋, ⌊s⌋ + ⌊w⌋)`.
    public func mask(_ mel: inout Tensor, draw: Draw) {
        precondition(mel.rank == 2)
        let bins = mel.shape[0], frames = mel.shape[1]
        if let (s, e) = Self.maskRange(param: timeMask(frames: frames), size: frames, value: draw.timeValue, start: draw.timeStart) {
            for f in 0..<bins { for t in s..<e { mel.scalars[f * frames + t] = 0 } }
        }
        if let (s, e) = Self.maskRange(param: freqMask, size: bins, value: draw.freqValue, start: draw.freqStart) {
            for f in s..<e { for t in 0..<frames { mel.scalars[f * frames + t] = 0 } }
        }
    }

    /// `[start, end)` of a mask, nil when empty (upstream: no mask when the parameter is < 1).
    static func maskRange(param: Int, size: Int, value: Double, start: Double) -> (Int, Int)? {
        guard param >= 1, size > 0 else { return nil }
        let width = value * Double(param)
        let minValue = start * (Double(size) - width)
        let s = max(0, Int(minValue.rounded(.down)))
        let e = min(size, s + Int(width.rounded(.down)))
        return s < e ? (s, e) : nil
    }
}

/// Mixup as upstream's `utils.mixup`: `mixed = flip(x)·λ + x·(1 − λ)` with λ drawn per
/// example from Beta(α, α); targets mix the same way, which for BCE and cross-entropy
/// (linear in the target) equals upstream's `λ·L(pred, flip(y)) + (1 − λ)·L(pred, y)`.
public enum CedMixup {
    /// Mixes a batch in place: `x` is `[B, …]` with `stride` values per example, `y` `[B, C]`.
    public static func apply(x: inout [Float], stride: Int, y: inout [Float], classes: Int, lambdas: [Double]) {
        let b = lambdas.count
        let x0 = x, y0 = y
        for i in 0..<b {
            let j = b - 1 - i
            let l = Float(lambdas[i])
            for k in 0..<stride { x[i * stride + k] = x0[j * stride + k] * l + x0[i * stride + k] * (1 - l) }
            for k in 0..<classes { y[i * classes + k] = y0[j * classes + k] * l + y0[i * classes + k] * (1 - l) }
        }
    }

    /// λ ~ Beta(α, α) for each of `count` examples, from `rng`.
    public static func lambdas(alpha: Double, count: Int, rng: inout TrainingRandom) -> [Double] {
        (0..<count).map { _ in rng.nextBeta(alpha, alpha) }
    }
}

extension TrainingRandom {
    /// Gamma(shape, 1) by Marsaglia and Tsang's method (shape < 1 via the boost u^(1/shape)).
    public mutating func nextGamma(_ shape: Double) -> Double {
        if shape < 1 {
            var u = nextDouble()
            while u <= 0 { u = nextDouble() }
            return nextGamma(shape + 1) * Foundation.pow(u, 1 / shape)
        }
        let d = shape - 1.0 / 3, c = 1 / (9 * d).squareRoot()
        while true {
            var x: Double, v: Double
            repeat {
                x = nextGaussian()
                v = 1 + c * x
            } while v <= 0
            v = v * v * v
            let u = nextDouble()
            if u < 1 - 0.0331 * x * x * x * x { return d * v }
            if u > 0, Foundation.log(u) < 0.5 * x * x + d * (1 - v + Foundation.log(v)) { return d * v }
        }
    }

    /// Beta(a, b) from two Gamma draws.
    public mutating func nextBeta(_ a: Double, _ b: Double) -> Double {
        let x = nextGamma(a), y = nextGamma(b)
        return x + y > 0 ? x / (x + y) : 0.5
    }
}
