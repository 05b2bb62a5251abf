import Foundation

// Double-precision FFTs for the log-mel front end.
//
// Everything is computed in float64: the mel features are compared in dB, and a bin
// 120 dB below the loudest one (the `top_db` floor) has an amplitude 10⁻⁶ of the peak,
// where a float32 FFT's rounding noise (≈ 10⁻⁷ of the peak per bin) would already be a
// visible fraction of a dB. Double precision keeps the FFT's own error far below the
// 0.01 dB budget everywhere above the floor.
//
// Data is kept as split real / imaginary arrays of `SIMD2<Double>`: every transform runs on
// two independent signals at once (two STFT frames, one per lane), which doubles the work
// done per instruction on any x86-64 or arm64 CPU without relying on auto-vectorisation. Sizes whose prime factors are all ≤ 31
// run a mixed-radix Stockham autosort FFT (radix 4, 2, 3 specialised, other small primes
// by a direct DFT butterfly); sizes with a larger prime factor use Bluestein's chirp-z
// algorithm on top of a power-of-two transform, so every size is O(n log n).

/// Two lanes of doubles: the FFTs transform two independent signals at once.
typealias FFTLanes = SIMD2<Double>

/// A planned forward complex DFT `X[k] = Σ_j x[j]·e^{-2πi·jk/n}` of one size, applied to
/// both lanes of `FFTLanes` data independently.
///
/// Immutable after creation and safe to share between threads; every call gets its own
/// scratch memory from the caller.
final class ComplexFFTPlan: @unchecked Sendable {
    /// Transform length.
    let n: Int
    /// `FFTLanes` elements of scratch memory `transform` needs.
    let scratchCount: Int

    private struct Stage {
        var radix: Int
        /// Number of butterfly groups per stride (`length / radix`).
        var m: Int
        /// Distance between consecutive elements of one butterfly's output.
        var stride: Int
        /// `twiddle[p·(radix-1) + k-1] = e^{-2πi·p·k/(radix·m)}`, the same in both lanes (stored
        /// broadcast: SSE2 has no cheap scalar-to-vector load).
        var twiddleRe: UnsafeMutablePointer<FFTLanes>
        var twiddleIm: UnsafeMutablePointer<FFTLanes>
        /// For the generic radix: `root[t] = e^{-2πi·t/radix}`, broadcast.
        var rootRe: UnsafeMutablePointer<FFTLanes>?
        var rootIm: UnsafeMutablePointer<FFTLanes>?
    }

    private let stages: [Stage]
    private let bluestein: Bluestein?

    /// Largest prime factor handled by a direct butterfly; larger ones go through Bluestein.
    static let largestDirectRadix = 31

    init(size n: Int) {
        precondition(n >= 1, "FFT size must be positive")
        self.n = n
        let factors = Self.factorize(n)
        if let largest = factors.max(), largest > Self.largestDirectRadix {
            let b = Bluestein(n: n)
            bluestein = b
            stages = []
            scratchCount = b.scratchCount
            return
        }
        bluestein = nil
        var built: [Stage] = []
        var length = n
        var stride = 1
        for r in factors {
            let m = length / r
            let twRe = UnsafeMutablePointer<FFTLanes>.allocate(capacity: max(1, m * (r - 1)))
            let twIm = UnsafeMutablePointer<FFTLanes>.allocate(capacity: max(1, m * (r - 1)))
            for p in 0..<m {
                for k in 1..<r {
                    let (c, s) = unitRoot((p * k) % length, of: length)
                    twRe[p * (r - 1) + k - 1] = FFTLanes(repeating: c)
                    twIm[p * (r - 1) + k - 1] = FFTLanes(repeating: s)
                }
            }
            var stage = Stage(radix: r, m: m, stride: stride, twiddleRe: twRe, twiddleIm: twIm)
            if r != 2 && r != 3 && r != 4 {
                let rr = UnsafeMutablePointer<FFTLanes>.allocate(capacity: r)
                let ri = UnsafeMutablePointer<FFTLanes>.allocate(capacity: r)
                for t in 0..<r {
                    let (c, s) = unitRoot(t, of: r)
                    rr[t] = FFTLanes(repeating: c)
                    ri[t] = FFTLanes(repeating: s)
                }
                stage.rootRe = rr
                stage.rootIm = ri
            }
            built.append(stage)
            length = m
            stride *= r
        }
        stages = built
        scratchCount = 2 * n
    }

    deinit {
        for s in stages {
            s.twiddleRe.deallocate()
            s.twiddleIm.deallocate()
            s.rootRe?.deallocate()
            s.rootIm?.deallocate()
        }
    }

    /// Prime factors of `n`, with pairs of 2 merged into radix-4 stages first.
    static func factorize(_ n: Int) -> [Int] {
        var k = n
        var f: [Int] = []
        while k % 4 == 0 { f.append(4); k /= 4 }
        while k % 2 == 0 { f.append(2); k /= 2 }
        var p = 3
        while p * p <= k {
            while k % p == 0 { f.append(p); k /= p }
            p += 2
        }
        if k > 1 { f.append(k) }
        return f
    }

    /// Transforms `re`/`im` (each `n` long) in place. `scratch` must hold `scratchCount` elements.
    func transform(re: UnsafeMutablePointer<FFTLanes>, im: UnsafeMutablePointer<FFTLanes>,
                   scratch: UnsafeMutablePointer<FFTLanes>) {
        if let bluestein {
            bluestein.transform(re: re, im: im, scratch: scratch)
            return
        }
        var xr = re, xi = im
        var yr = scratch, yi = scratch + n
        for stage in stages {
            Self.run(stage, xr, xi, yr, yi)
            swap(&xr, &yr)
            swap(&xi, &yi)
        }
        if xr != re {
            re.update(from: xr, count: n)
            im.update(from: xi, count: n)
        }
    }

    /// One Stockham decimation-in-frequency pass: reads `x`, writes `y` in autosorted order.
    @inline(__always)
    private static func run(_ st: Stage,
                            _ xr: UnsafeMutablePointer<FFTLanes>, _ xi: UnsafeMutablePointer<FFTLanes>,
                            _ yr: UnsafeMutablePointer<FFTLanes>, _ yi: UnsafeMutablePointer<FFTLanes>) {
        let m = st.m, s = st.stride, r = st.radix
        let sm = s * m
        let twR = st.twiddleRe, twI = st.twiddleIm
        switch r {
        case 4:
            if m == 1 {
                // Last pass: all twiddles are 1.
                for q in 0..<s {
                    let a0r = xr[q], a0i = xi[q]
                    let a1r = xr[q &+ sm], a1i = xi[q &+ sm]
                    let a2r = xr[q &+ 2 &* sm], a2i = xi[q &+ 2 &* sm]
                    let a3r = xr[q &+ 3 &* sm], a3i = xi[q &+ 3 &* sm]
                    let t0r = a0r + a2r, t0i = a0i + a2i
                    let t1r = a1r + a3r, t1i = a1i + a3i
                    let t2r = a0r - a2r, t2i = a0i - a2i
                    let t3r = a1r - a3r, t3i = a1i - a3i
                    yr[q] = t0r + t1r
                    yi[q] = t0i + t1i
                    yr[q &+ s] = t2r + t3i
                    yi[q &+ s] = t2i - t3r
                    yr[q &+ 2 &* s] = t0r - t1r
                    yi[q &+ 2 &* s] = t0i - t1i
                    yr[q &+ 3 &* s] = t2r - t3i
                    yi[q &+ 3 &* s] = t2i + t3r
                }
                return
            }
            for p in 0..<m {
                let w1r = twR[3 &* p], w1i = twI[3 &* p]
                let w2r = twR[3 &* p &+ 1], w2i = twI[3 &* p &+ 1]
                let w3r = twR[3 &* p &+ 2], w3i = twI[3 &* p &+ 2]
                let inBase = s &* p
                let outBase = 4 &* s &* p
                for q in 0..<s {
                    let i0 = inBase &+ q
                    let a0r = xr[i0], a0i = xi[i0]
                    let a1r = xr[i0 &+ sm], a1i = xi[i0 &+ sm]
                    let a2r = xr[i0 &+ 2 &* sm], a2i = xi[i0 &+ 2 &* sm]
                    let a3r = xr[i0 &+ 3 &* sm], a3i = xi[i0 &+ 3 &* sm]
                    let t0r = a0r + a2r, t0i = a0i + a2i
                    let t1r = a1r + a3r, t1i = a1i + a3i
                    let t2r = a0r - a2r, t2i = a0i - a2i
                    let t3r = a1r - a3r, t3i = a1i - a3i
                    let c0r = t0r + t1r, c0i = t0i + t1i
                    let c2r = t0r - t1r, c2i = t0i - t1i
                    // c1 = t2 − i·t3, c3 = t2 + i·t3
                    let c1r = t2r + t3i, c1i = t2i - t3r
                    let c3r = t2r - t3i, c3i = t2i + t3r
                    let o = outBase &+ q
                    yr[o] = c0r
                    yi[o] = c0i
                    yr[o &+ s] = c1r * w1r - c1i * w1i
                    yi[o &+ s] = c1r * w1i + c1i * w1r
                    yr[o &+ 2 &* s] = c2r * w2r - c2i * w2i
                    yi[o &+ 2 &* s] = c2r * w2i + c2i * w2r
                    yr[o &+ 3 &* s] = c3r * w3r - c3i * w3i
                    yi[o &+ 3 &* s] = c3r * w3i + c3i * w3r
                }
            }
        case 2:
            for p in 0..<m {
                let wr = twR[p], wi = twI[p]
                let inBase = s * p
                let outBase = 2 * s * p
                for q in 0..<s {
                    let i0 = inBase + q
                    let ar = xr[i0], ai = xi[i0]
                    let br = xr[i0 + sm], bi = xi[i0 + sm]
                    let dr = ar - br, di = ai - bi
                    let o = outBase + q
                    yr[o] = ar + br
                    yi[o] = ai + bi
                    yr[o + s] = dr * wr - di * wi
                    yi[o + s] = dr * wi + di * wr
                }
            }
        case 3:
            let h = FFTLanes(repeating: 0.86602540378443864676)  // sin(60°)
            let half = FFTLanes(repeating: 0.5)
            for p in 0..<m {
                let w1r = twR[2 * p], w1i = twI[2 * p]
                let w2r = twR[2 * p + 1], w2i = twI[2 * p + 1]
                let inBase = s * p
                let outBase = 3 * s * p
                for q in 0..<s {
                    let i0 = inBase + q
                    let a0r = xr[i0], a0i = xi[i0]
                    let a1r = xr[i0 + sm], a1i = xi[i0 + sm]
                    let a2r = xr[i0 + 2 * sm], a2i = xi[i0 + 2 * sm]
                    let sr = a1r + a2r, si = a1i + a2i
                    let dr = a1r - a2r, di = a1i - a2i
                    let mr = a0r - half * sr, mi = a0i - half * si
                    // c1 = m − i·h·d, c2 = m + i·h·d
                    let c1r = mr + h * di, c1i = mi - h * dr
                    let c2r = mr - h * di, c2i = mi + h * dr
                    let o = outBase + q
                    yr[o] = a0r + sr
                    yi[o] = a0i + si
                    yr[o + s] = c1r * w1r - c1i * w1i
                    yi[o + s] = c1r * w1i + c1i * w1r
                    yr[o + 2 * s] = c2r * w2r - c2i * w2i
                    yi[o + 2 * s] = c2r * w2i + c2i * w2r
                }
            }
        default:
            let rootR = st.rootRe!, rootI = st.rootIm!
            withUnsafeTemporaryAllocation(of: FFTLanes.self, capacity: 2 * r) { tmp in
                let ar = tmp.baseAddress!, ai = ar + r
                for p in 0..<m {
                    let inBase = s * p
                    let outBase = r * s * p
                    for q in 0..<s {
                        for j in 0..<r {
                            ar[j] = xr[inBase + q + j * sm]
                            ai[j] = xi[inBase + q + j * sm]
                        }
                        let o = outBase + q
                        for k in 0..<r {
                            var cr = FFTLanes(), ci = FFTLanes()
                            var t = 0
                            for j in 0..<r {
                                let ur = rootR[t], ui = rootI[t]
                                cr += ar[j] * ur - ai[j] * ui
                                ci += ar[j] * ui + ai[j] * ur
                                t += k
                                if t >= r { t -= r }
                            }
                            if k == 0 {
                                yr[o] = cr
                                yi[o] = ci
                            } else {
                                let wr = twR[p * (r - 1) + k - 1], wi = twI[p * (r - 1) + k - 1]
                                yr[o + k * s] = cr * wr - ci * wi
                                yi[o + k * s] = cr * wi + ci * wr
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `(cos, sin)` of `-2π·k/n`, reduced to the first octant so every twiddle is accurate to
/// the last bit of a double (k in 0..<n).
func unitRoot(_ k: Int, of n: Int) -> (Double, Double) {
    // e^{-2πi·k/n}; use symmetry so the argument passed to cos/sin is at most π/4.
    let k8 = 8 * k
    let octant = k8 / n  // 0...7
    // Angle as a fraction of a full turn: k/n. Work with x = k/n − octant/8 ∈ [0, 1/8).
    let frac = Double(k8 - octant * n) / Double(8 * n)  // in [0, 1/8)
    let a = 2 * Double.pi * frac
    // Positive angle θ = 2π·k/n = octant·π/4 + a; return (cos θ, −sin θ).
    var c: Double, s: Double
    switch octant {
    case 0: c = cos(a); s = sin(a)
    case 1: c = sin(.pi / 4 - a); s = cos(.pi / 4 - a)
    case 2: c = -sin(a); s = cos(a)
    case 3: c = -cos(.pi / 4 - a); s = sin(.pi / 4 - a)
    case 4: c = -cos(a); s = -sin(a)
    case 5: c = -sin(.pi / 4 - a); s = -cos(.pi / 4 - a)
    case 6: c = sin(a); s = -cos(a)
    default: c = cos(.pi / 4 - a); s = -sin(.pi / 4 - a)
    }
    return (c, -s)
}

/// Bluestein's algorithm: an arbitrary-length DFT as a circular convolution of power-of-two
/// length `M ≥ 2n − 1`, `X[k] = w[k]·Σ_j (x[j]·w[j])·conj(w[k−j])` with `w[j] = e^{-iπ·j²/n}`.
private final class Bluestein: @unchecked Sendable {
    let n: Int
    let m: Int
    let inner: ComplexFFTPlan
    /// `w[j]`, broadcast to both lanes.
    let chirpRe: UnsafeMutablePointer<FFTLanes>
    let chirpIm: UnsafeMutablePointer<FFTLanes>
    /// FFT of the conjugate chirp, scaled by 1/M (folds the inverse transform's scale in).
    let kernelRe: UnsafeMutablePointer<FFTLanes>
    let kernelIm: UnsafeMutablePointer<FFTLanes>
    let scratchCount: Int

    init(n: Int) {
        self.n = n
        var m = 1
        while m < 2 * n - 1 { m <<= 1 }
        self.m = m
        inner = ComplexFFTPlan(size: m)
        chirpRe = .allocate(capacity: n)
        chirpIm = .allocate(capacity: n)
        for j in 0..<n {
            // e^{-iπ·j²/n} = e^{-2πi·(j² mod 2n)/(2n)}; exact integer reduction keeps it accurate.
            let (c, s) = unitRoot((j * j) % (2 * n), of: 2 * n)
            chirpRe[j] = FFTLanes(repeating: c)
            chirpIm[j] = FFTLanes(repeating: s)
        }
        let br = UnsafeMutablePointer<FFTLanes>.allocate(capacity: m)
        let bi = UnsafeMutablePointer<FFTLanes>.allocate(capacity: m)
        let tmp = UnsafeMutablePointer<FFTLanes>.allocate(capacity: inner.scratchCount)
        defer { tmp.deallocate() }
        br.initialize(repeating: FFTLanes(), count: m)
        bi.initialize(repeating: FFTLanes(), count: m)
        let scale = 1.0 / Double(m)
        for j in 0..<n {
            br[j] = chirpRe[j] * scale
            bi[j] = -chirpIm[j] * scale
            if j > 0 {
                br[m - j] = br[j]
                bi[m - j] = bi[j]
            }
        }
        inner.transform(re: br, im: bi, scratch: tmp)
        kernelRe = br
        kernelIm = bi
        scratchCount = 2 * m + inner.scratchCount
    }

    deinit {
        chirpRe.deallocate(); chirpIm.deallocate()
        kernelRe.deallocate(); kernelIm.deallocate()
    }

    func transform(re: UnsafeMutablePointer<FFTLanes>, im: UnsafeMutablePointer<FFTLanes>,
                   scratch: UnsafeMutablePointer<FFTLanes>) {
        let ar = scratch, ai = scratch + m
        for j in 0..<n {
            let xr = re[j], xi = im[j], wr = chirpRe[j], wi = chirpIm[j]
            ar[j] = xr * wr - xi * wi
            ai[j] = xr * wi + xi * wr
        }
        (ar + n).update(repeating: FFTLanes(), count: m - n)
        (ai + n).update(repeating: FFTLanes(), count: m - n)
        inner.transform(re: ar, im: ai, scratch: scratch + 2 * m)
        // Pointwise product with the kernel, conjugated so a second forward FFT inverts it.
        for k in 0..<m {
            let xr = ar[k], xi = ai[k], br = kernelRe[k], bi = kernelIm[k]
            ar[k] = xr * br - xi * bi
            ai[k] = -(xr * bi + xi * br)
        }
        inner.transform(re: ar, im: ai, scratch: scratch + 2 * m)
        for k in 0..<n {
            // conj(FFT(conj(C))) = M·IFFT(C); the 1/M is already in the kernel.
            let cr = ar[k], ci = -ai[k], wr = chirpRe[k], wi = chirpIm[k]
            re[k] = cr * wr - ci * wi
            im[k] = cr * wi + ci * wr
        }
    }
}

/// The one-sided DFT `X[k]`, `k = 0...n/2`, of real sequences of length `n` (any `n ≥ 1`),
/// two at a time (one per lane).
///
/// Even `n` packs the input into a complex sequence of length `n/2` and untangles the
/// result; odd `n` runs a full complex transform.
final class RealFFTPlan: @unchecked Sendable {
    let n: Int
    /// Number of output bins, `n/2 + 1`.
    let binCount: Int
    private let complex: ComplexFFTPlan
    private let half: Bool
    /// `e^{-2πi·k/n}` for `k = 0...n/2` (even `n` only), broadcast.
    private let postRe: UnsafeMutablePointer<FFTLanes>
    private let postIm: UnsafeMutablePointer<FFTLanes>

    init(size n: Int) {
        precondition(n >= 1, "FFT size must be positive")
        self.n = n
        binCount = n / 2 + 1
        half = n % 2 == 0
        complex = ComplexFFTPlan(size: half ? n / 2 : n)
        postRe = .allocate(capacity: binCount)
        postIm = .allocate(capacity: binCount)
        for k in 0..<binCount {
            let (c, s) = unitRoot(k % n, of: n)
            postRe[k] = FFTLanes(repeating: c)
            postIm[k] = FFTLanes(repeating: s)
        }
    }

    deinit {
        postRe.deallocate()
        postIm.deallocate()
    }

    /// `FFTLanes` elements of workspace `spectrum` needs.
    var workspaceCount: Int { 2 * complex.n + complex.scratchCount }

    /// Writes `X[k]` for `k < binCount` to `outRe`/`outIm` from the `n` real values at `input`
    /// (lane by lane).
    func spectrum(_ input: UnsafePointer<FFTLanes>,
                  outRe: UnsafeMutablePointer<FFTLanes>, outIm: UnsafeMutablePointer<FFTLanes>,
                  workspace: UnsafeMutablePointer<FFTLanes>) {
        let c = complex.n
        let zr = workspace, zi = workspace + c, scratch = workspace + 2 * c
        if !half {
            for j in 0..<n { zr[j] = input[j]; zi[j] = FFTLanes() }
            complex.transform(re: zr, im: zi, scratch: scratch)
            for k in 0..<binCount { outRe[k] = zr[k]; outIm[k] = zi[k] }
            return
        }
        for j in 0..<c {
            zr[j] = input[2 * j]
            zi[j] = input[2 * j + 1]
        }
        complex.transform(re: zr, im: zi, scratch: scratch)
        // With Z = DFT(x_even + i·x_odd): E[k] = (Z[k] + conj Z[c−k])/2,
        // O[k] = (Z[k] − conj Z[c−k])/(2i), X[k] = E[k] + e^{-2πi·k/n}·O[k].
        // k = 0 and k = c use Z[0] for both terms.
        do {
            let r0 = zr[0], i0 = zi[0]
            outRe[0] = r0 + i0
            outIm[0] = FFTLanes()
            outRe[c] = r0 - i0
            outIm[c] = FFTLanes()
        }
        let half = FFTLanes(repeating: 0.5)
        var k = 1
        while k < c {
            let b = c - k
            let zkr = zr[k], zki = zi[k]
            let zcr = zr[b], zci = -zi[b]
            let er = half * (zkr + zcr), ei = half * (zki + zci)
            let di = zki - zci
            let or = half * di, oi = half * (zcr - zkr)
            let wr = postRe[k], wi = postIm[k]
            outRe[k] = er + (or * wr - oi * wi)
            outIm[k] = ei + (or * wi + oi * wr)
            k += 1
        }
    }
}
