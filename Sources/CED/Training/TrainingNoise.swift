/// Counter-based random numbers for dropout and drop path: the value at (key, index) is a
/// hash, so the backward pass regenerates exactly the masks of the forward pass without
/// storing them, and a step's masks depend only on the run's seed and the step number
/// (which is what makes an interrupted run resume to the same weights).
enum TrainingNoise {
    /// SplitMix64's finaliser: a bijective, well-mixed 64-bit hash.
    @inline(__always)
    static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A key derived from a parent key and a label (a step, a layer, a site).
    @inline(__always)
    static func key(_ parent: UInt64, _ label: UInt64) -> UInt64 { mix(parent ^ mix(label)) }

    /// Uniform in [0, 1) with 24 random bits, for element `index` of the stream `key`.
    @inline(__always)
    static func uniform(_ key: UInt64, _ index: Int) -> Float {
        Float(mix(key ^ (UInt64(truncatingIfNeeded: index) &* 0xD6E8_FEB8_6659_FD93)) >> 40) * 0x1p-24
    }

    /// The dropout multiplier of element `index`: 0 with probability `p`, else `1/(1 − p)`.
    @inline(__always)
    static func dropoutScale(_ key: UInt64, _ index: Int, p: Float, scale: Float) -> Float {
        uniform(key, index) < p ? 0 : scale
    }
}
