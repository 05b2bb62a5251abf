import Dispatch
import Foundation

/// The CED log-mel front end: waveform → `[n_mels, T]` dB features, numerically the
/// pipeline the CED authors run in PyTorch,
///
/// ```python
/// torchaudio.transforms.MelSpectrogram(sample_rate, n_fft, win_length, hop_length, f_min, f_max,
///     n_mels, center, pad_mode="reflect", power=2.0)      # periodic Hann, HTK mel, no norm
/// torchaudio.transforms.AmplitudeToDB(stype="power", top_db=120)
/// ```
///
/// Step by step, for a mono waveform `x` of `L` samples at `sampling_rate`:
/// 1. **Framing** (`torch.stft`). With `center` the signal is reflect-padded by `n_fft / 2`
///    samples on both sides and frame `t` covers padded samples `t·hop ..< t·hop + n_fft`, so
///    `T = 1 + (L + 2·(n_fft/2) − n_fft) / hop` (`1 + L/hop` for even `n_fft`). Without
///    `center`, `T = 1 + (L − n_fft) / hop` and `L ≥ n_fft` is required.
/// 2. **Window**: periodic Hann of `win_size` samples, zero-padded to `n_fft` with
///    `(n_fft − win_size) / 2` zeros in front (as `torch.stft` centres a short window).
/// 3. **Power spectrum** `|X[k]|²` of the one-sided real DFT of size `n_fft`
///    (`n_fft/2 + 1` bins). Any `n_fft` works; the transform runs in float64.
/// 4. **Mel projection** with `melFilterbank` (`melscale_fbanks`, HTK scale, `norm=None`,
///    `f_max = nil` meaning `sampling_rate // 2` as in torchaudio).
/// 5. **dB**: `10·log10(max(mel, 1e-10))`, then clamped below at `max − top_db` where the
///    maximum is taken over the whole clip.
///
/// Inputs torch rejects are given a definite meaning instead of an error where one exists:
/// a waveform of at most `n_fft / 2` samples cannot be reflect-padded once by torch (it
/// raises); here padding repeats the reflection as many times as needed, exactly numpy's
/// `np.pad(x, n_fft // 2, mode="reflect")` (the signal extended periodically as
/// `x0 x1 … x(L−1) x(L−2) … x1`, a single sample repeated as a constant). Wherever torch can
/// pad, this is the same as torch.
///
/// The dB maximum is per clip, also in the batch form. (torchaudio's `AmplitudeToDB` applied to
/// a 3-D batch `[B, n_mels, T]` takes one maximum over the whole batch; CED's reference runs one
/// clip at a time, and a clip's features should not depend on its batch mates.)
///
/// Creating an extractor validates the configuration and precomputes the window, the
/// filterbank and the FFT plan once; the extractor is immutable and can be shared freely
/// across threads.
public struct CedFeatureExtractor: Sendable {
    /// The validated configuration this extractor implements.
    public let config: CedFeatureExtractorConfig

    /// The analysis window, `[win_size]`: `torch.hann_window(win_size, periodic=True)`, the
    /// counterpart of a checkpoint's `front_end.0.spectrogram.window` buffer (equal to it within
    /// one float32 ulp).
    public let window: Tensor

    /// The mel filterbank, `[n_fft/2 + 1, n_mels]` like torchaudio's `MelScale.fb` (the
    /// checkpoint buffer `front_end.0.mel_scale.fb`): column `m` holds filter `m`'s weight for
    /// each STFT bin. Computed in float64 and rounded; agrees with a torch-built buffer within
    /// about 1e-5 absolute (torch's own float32 values depend on the CPU's SIMD width).
    public let melFilterbank: Tensor

    /// `f_max` actually used: the configured value, or `sampling_rate // 2` (integer division,
    /// torchaudio's default) when it is `nil`.
    public let effectiveFMax: Double

    let engine: MelEngine

    /// Upper bound accepted for `n_fft` (2²⁰ samples, over a minute at 16 kHz).
    public static let maxFFTSize = 1 << 20
    /// Upper bound accepted for `feature_size` (number of mel bins).
    public static let maxMelBins = 4096

    /// Validates `config` (throwing the `ConfigError` of the first bad field) and precomputes
    /// the window, the mel filterbank and the FFT plan.
    public init(config: CedFeatureExtractorConfig = .init()) throws {
        try config.validate()
        guard config.nFft <= Self.maxFFTSize else {
            throw ConfigError(field: "n_fft", reason: "\(config.nFft) exceeds the supported maximum \(Self.maxFFTSize)")
        }
        guard config.featureSize <= Self.maxMelBins else {
            throw ConfigError(field: "feature_size", reason: "\(config.featureSize) mel bins exceed the supported maximum \(Self.maxMelBins)")
        }
        // validate() has checked that this lies above f_min.
        let fMax = config.resolvedFMax
        self.config = config
        self.effectiveFMax = fMax
        let nFreqs = config.nFft / 2 + 1
        let win = MelFrontEndTensors.periodicHann(config.winSize)
        let fb = MelFrontEndTensors.melFilterbank(nFreqs: nFreqs, fMin: config.fMin, fMax: fMax,
                                                  nMels: config.featureSize, sampleRate: config.samplingRate)
        window = Tensor(shape: [config.winSize], scalars: win)
        melFilterbank = Tensor(shape: [nFreqs, config.featureSize], scalars: fb)
        engine = MelEngine(config: config, window: win, filterbank: fb)
    }

    /// Number of mel bins (`feature_size`), the first dimension of every output.
    public var melBinCount: Int { config.featureSize }

    /// Number of one-sided STFT bins, `n_fft/2 + 1` (the first dimension of `melFilterbank`).
    public var frequencyBinCount: Int { engine.nFreqs }

    /// Number of frames `T` the extractor produces for a waveform of `sampleCount` samples,
    /// or 0 when it would reject that length (empty, or shorter than `n_fft` without `center`).
    public func frameCount(sampleCount: Int) -> Int {
        engine.frameCount(sampleCount)
    }

    /// Log-mel features of one mono waveform at `sampling_rate`: a `[n_mels, T]` tensor in dB.
    ///
    /// Throws `CedInputError` for an empty waveform, a NaN or infinite sample (naming its
    /// index), or (with `center == false`) fewer than `n_fft` samples. Long clips are split
    /// across the available cores; memory stays at the output plus a few kilobytes per core.
    public func callAsFunction(_ waveform: [Float]) throws -> Tensor {
        try waveform.withUnsafeBufferPointer { x in
            try engine.check(x, clip: nil)
            return engine.extract(x, parallel: true)
        }
    }

    /// Log-mel features of several waveforms of any lengths: element `i` is exactly
    /// `self(batch[i])` (its own frame count and its own `top_db` floor; nothing is padded to a
    /// common length).
    ///
    /// Every clip is checked before any work starts; the first bad one throws a `CedInputError`
    /// that names its batch index. Clips are processed concurrently on the available cores
    /// (longest first); a clip holding at least half of all frames is split across the cores
    /// on its own instead.
    public func callAsFunction(_ batch: [[Float]]) throws -> [Tensor] {
        for (i, clip) in batch.enumerated() {
            try clip.withUnsafeBufferPointer { try engine.check($0, clip: i) }
        }
        if batch.count <= 1 {
            return batch.map { clip in clip.withUnsafeBufferPointer { engine.extract($0, parallel: true) } }
        }
        let frames = batch.map { engine.frameCount($0.count) }
        let total = frames.reduce(0, +)
        var results = [Tensor?](repeating: nil, count: batch.count)
        var rest: [Int] = []
        for i in batch.indices {
            if 2 * frames[i] >= total {
                results[i] = batch[i].withUnsafeBufferPointer { engine.extract($0, parallel: true) }
            } else {
                rest.append(i)
            }
        }
        rest.sort { frames[$0] > frames[$1] }
        let shared = engine
        let order = rest
        results.withUnsafeMutableBufferPointer { slots in
            let out = slots
            DispatchQueue.concurrentPerform(iterations: order.count) { j in
                let i = order[j]
                out[i] = batch[i].withUnsafeBufferPointer { shared.extract($0, parallel: false) }
            }
        }
        return results.map { $0! }
    }
}

/// The precomputed state behind `CedFeatureExtractor` (immutable, shared between threads).
final class MelEngine: @unchecked Sendable {
    let nFft: Int
    let hop: Int
    let center: Bool
    /// Reflect padding on each side (`n_fft / 2` with `center`, else 0).
    let pad: Int
    let winLength: Int
    /// Offset of the window inside the `n_fft` frame, `(n_fft − win_size) / 2`.
    let winOffset: Int
    let nMels: Int
    let nFreqs: Int
    let topDb: Float
    /// Window as float64 (the float32 window values, widened), broadcast to both lanes.
    private let window: UnsafeMutablePointer<FFTLanes>
    private let fft: RealFFTPlan
    /// Sparse filterbank: filter `m` spans bins `melStart[m] ..< melStart[m] + melCount[m]`
    /// with weights `melWeights[melOffset[m] ...]` (float32 values widened to float64, broadcast).
    private let melStart: UnsafeMutablePointer<Int>
    private let melCount: UnsafeMutablePointer<Int>
    private let melOffset: UnsafeMutablePointer<Int>
    private let melWeights: UnsafeMutablePointer<FFTLanes>

    /// `AmplitudeToDB`'s `amin`.
    static let amin: Float = 1e-10

    init(config: CedFeatureExtractorConfig, window win: [Float], filterbank fb: [Float]) {
        nFft = config.nFft
        hop = config.hopSize
        center = config.center
        pad = config.center ? config.nFft / 2 : 0
        winLength = config.winSize
        winOffset = (config.nFft - config.winSize) / 2
        nMels = config.featureSize
        nFreqs = config.nFft / 2 + 1
        topDb = Float(config.topDb)
        window = .allocate(capacity: winLength)
        for i in 0..<winLength { window[i] = FFTLanes(repeating: Double(win[i])) }
        fft = RealFFTPlan(size: nFft)

        melStart = .allocate(capacity: nMels)
        melCount = .allocate(capacity: nMels)
        melOffset = .allocate(capacity: nMels)
        var weights: [Double] = []
        for m in 0..<nMels {
            var first = -1, last = -1
            for k in 0..<nFreqs where fb[k * nMels + m] != 0 {
                if first < 0 { first = k }
                last = k
            }
            melOffset[m] = weights.count
            if first < 0 {
                melStart[m] = 0
                melCount[m] = 0
            } else {
                melStart[m] = first
                melCount[m] = last - first + 1
                for k in first...last { weights.append(Double(fb[k * nMels + m])) }
            }
        }
        melWeights = .allocate(capacity: max(1, weights.count))
        for (i, w) in weights.enumerated() { melWeights[i] = FFTLanes(repeating: w) }
    }

    deinit {
        window.deallocate()
        melStart.deallocate()
        melCount.deallocate()
        melOffset.deallocate()
        melWeights.deallocate()
    }

    func frameCount(_ samples: Int) -> Int {
        guard samples > 0 else { return 0 }
        let padded = samples + 2 * pad
        guard padded >= nFft else { return 0 }
        return 1 + (padded - nFft) / hop
    }

    /// Throws the `CedInputError` describing why `x` cannot be featurised, if any.
    func check(_ x: UnsafeBufferPointer<Float>, clip: Int?) throws {
        let prefix = clip.map { "clip \($0) of the batch: " } ?? ""
        try checkLength(x.count, prefix: prefix)
        try checkFinite(x, firstIndex: 0, prefix: prefix)
    }

    /// Throws when a waveform of `count` samples gives no frame.
    func checkLength(_ count: Int, prefix: String = "") throws {
        guard count > 0 else {
            throw CedInputError(prefix + "the waveform is empty (need at least 1 sample)")
        }
        if !center && count < nFft {
            throw CedInputError(prefix + "the waveform has \(count) samples, but with center=false at least n_fft = \(nFft) are needed for one frame")
        }
    }

    /// Throws for the first NaN or infinite sample of `x`, which starts at sample `firstIndex`.
    func checkFinite(_ x: UnsafeBufferPointer<Float>, firstIndex: Int, prefix: String = "") throws {
        guard !x.isEmpty else { return }
        // Fast scan: a float is NaN or ±infinity exactly when its exponent bits are all ones;
        // adding one exponent step to the exponent field then carries into the sign bit.
        let base = x.baseAddress!
        let block = 4096
        var start = 0
        while start < x.count {
            let end = min(start + block, x.count)
            var flags: UInt32 = 0
            for i in start..<end { flags |= (base[i].bitPattern & 0x7f80_0000) &+ 0x0080_0000 }
            if flags & 0x8000_0000 != 0 {
                for i in start..<end where !x[i].isFinite {
                    let v = x[i]
                    let what = v.isNaN ? "NaN" : (v > 0 ? "+infinity" : "-infinity")
                    throw CedInputError(prefix + "sample \(firstIndex + i) of the waveform is \(what)")
                }
            }
            start = end
        }
    }

    /// Per-thread buffers: two windowed frames (one per lane, zero outside the window), their
    /// spectra and power spectra, and the FFT's own workspace.
    final class Workspace {
        let frame: UnsafeMutablePointer<FFTLanes>
        let re: UnsafeMutablePointer<FFTLanes>
        let im: UnsafeMutablePointer<FFTLanes>
        let fftWork: UnsafeMutablePointer<FFTLanes>

        init(nFft: Int, nFreqs: Int, fftWorkCount: Int) {
            frame = .allocate(capacity: nFft)
            frame.initialize(repeating: FFTLanes(), count: nFft)
            re = .allocate(capacity: nFreqs)
            im = .allocate(capacity: nFreqs)
            fftWork = .allocate(capacity: fftWorkCount)
        }

        deinit {
            frame.deallocate(); re.deallocate(); im.deallocate(); fftWork.deallocate()
        }
    }

    func makeWorkspace() -> Workspace {
        Workspace(nFft: nFft, nFreqs: nFreqs, fftWorkCount: fft.workspaceCount)
    }

    /// Index into a waveform of `count` samples for position `i` of its infinite reflect
    /// extension (numpy `mode="reflect"`, period `2·(count − 1)`).
    @inline(__always)
    static func reflect(_ i: Int, count: Int) -> Int {
        if i >= 0 && i < count { return i }
        if count == 1 { return 0 }
        let period = 2 * (count - 1)
        var j = i % period
        if j < 0 { j += period }
        return j < count ? j : period - j
    }

    /// Features of a checked waveform (see `check`), `[nMels, T]` in dB with the top_db floor.
    func extract(_ x: UnsafeBufferPointer<Float>, parallel: Bool) -> Tensor {
        let frames = frameCount(x.count)
        let total = nMels * frames
        let cores = min(ProcessInfo.processInfo.activeProcessorCount, CedCompute.threadLimit)
        let chunks = parallel && cores > 1 ? min(2 * cores, frames / 64) : 1
        let scalars = [Float](unsafeUninitializedCapacity: total) { buffer, initialized in
            let out = buffer.baseAddress!
            var peak = -Float.infinity
            if chunks <= 1 {
                peak = computeFrames(x, 0..<frames, frameCount: frames, into: out, workspace: makeWorkspace())
            } else {
                let peaks = UnsafeMutablePointer<Float>.allocate(capacity: chunks)
                defer { peaks.deallocate() }
                DispatchQueue.concurrentPerform(iterations: chunks) { c in
                    let range = (frames * c / chunks) ..< (frames * (c + 1) / chunks)
                    peaks[c] = computeFrames(x, range, frameCount: frames, into: out, workspace: makeWorkspace())
                }
                for c in 0..<chunks { peak = max(peak, peaks[c]) }
            }
            // AmplitudeToDB(top_db): clamp below at (clip maximum − top_db), in float32 like torch.
            let floor = peak - topDb
            for i in 0..<total where out[i] < floor { out[i] = floor }
            initialized = total
        }
        return Tensor(shape: [nMels, frames], scalars: scalars)
    }

    /// Writes frames `range` of `x` into columns of the `[nMels, frameCount]` output at `out`
    /// (dB, before the top_db floor) and returns their largest value. Frames go through the
    /// FFT in pairs, one per lane.
    ///
    /// `x` may be a window of a longer signal: it holds samples `origin ..< origin + x.count`
    /// of a signal of `length` samples (default: `x` is the whole signal), and the frames in
    /// `range` must only need samples inside the window (after reflection at the signal's
    /// ends); `out` then has `frameCount` columns and frame `t` goes to column `t − outBase`.
    func computeFrames(_ x: UnsafeBufferPointer<Float>, _ range: Range<Int>, frameCount: Int,
                       into out: UnsafeMutablePointer<Float>, workspace ws: Workspace,
                       origin: Int = 0, length: Int? = nil, outBase: Int = 0) -> Float {
        let frame = ws.frame + winOffset
        let re = ws.re, im = ws.im
        var peak = -Float.infinity
        var t = range.lowerBound
        while t < range.upperBound {
            let pair = t + 1 < range.upperBound
            // A lone last frame is duplicated into lane 1 and its result ignored.
            loadFrames(x, t, pair ? t + 1 : t, into: frame, origin: origin, length: length ?? x.count)
            fft.spectrum(ws.frame, outRe: re, outIm: im, workspace: ws.fftWork)
            for k in 0..<nFreqs { re[k] = re[k] * re[k] + im[k] * im[k] }  // power, in place
            for m in 0..<nMels {
                let w = melWeights + melOffset[m]
                let p = re + melStart[m]
                var acc = FFTLanes()
                for j in 0..<melCount[m] { acc += w[j] * p[j] }
                let db = Self.decibels(acc)
                let o = out + m * frameCount + (t - outBase)
                o[0] = db.x
                peak = max(peak, db.x)
                if pair {
                    o[1] = db.y
                    peak = max(peak, db.y)
                }
            }
            t += pair ? 2 : 1
        }
        return peak
    }

    /// Windowed samples of frames `a` and `b` into lanes 0 and 1 of `frame` (which points at
    /// the window's first sample inside the `n_fft` buffer).
    @inline(__always)
    private func loadFrames(_ x: UnsafeBufferPointer<Float>, _ a: Int, _ b: Int,
                            into frame: UnsafeMutablePointer<FFTLanes>, origin: Int, length count: Int) {
        let src = x.baseAddress!
        let firstA = a * hop - pad + winOffset
        let firstB = b * hop - pad + winOffset
        if firstA >= origin && firstB >= origin && firstA + winLength <= origin + x.count && firstB + winLength <= origin + x.count
            && firstA + winLength <= count && firstB + winLength <= count {
            let sa = src + (firstA - origin), sb = src + (firstB - origin)
            for r in 0..<winLength {
                frame[r] = window[r] * FFTLanes(Double(sa[r]), Double(sb[r]))
            }
        } else {
            for r in 0..<winLength {
                let ia = Self.reflect(firstA + r, count: count) - origin
                let ib = Self.reflect(firstB + r, count: count) - origin
                precondition(ia >= 0 && ia < x.count && ib >= 0 && ib < x.count, "frame outside the sample window")
                frame[r] = window[r] * FFTLanes(Double(src[ia]), Double(src[ib]))
            }
        }
    }

    /// `AmplitudeToDB`: `10·log10(max(power, amin))` of two mel powers, each first rounded to
    /// float32 as torch holds it.
    @inline(__always)
    static func decibels(_ power: FFTLanes) -> SIMD2<Float> {
        let limit = Double(Float.greatestFiniteMagnitude)
        guard power.x < limit && power.y < limit else {
            // Beyond float32 range (samples near 1e17 and up): stay finite.
            return SIMD2(decibels(power.x), decibels(power.y))
        }
        let p = pointwiseMax(SIMD2<Float>(power), SIMD2(repeating: amin))
        return SIMD2<Float>(tenLog10(FFTLanes(p)))
    }

    /// Scalar form of `decibels(_: FFTLanes)`.
    static func decibels(_ power: Double) -> Float {
        guard power < Double(Float.greatestFiniteMagnitude) else { return Float(10 * log10(power)) }
        let p = Double(max(Float(power), amin))
        return Float(tenLog10(FFTLanes(repeating: p)).x)
    }

    /// `10·log10(x)` lane by lane for positive normal doubles, to about 1e-13 relative:
    /// `x = 2^e·m` with `m ∈ [√½, √2)`, `ln m = 2·atanh(s)`, `s = (m−1)/(m+1)`, `|s| < 0.172`,
    /// summed to s¹³ (truncation < 2e-12 in dB). Several times faster than libm's `log10f`;
    /// the float32 dB value is the correctly rounded one except in rare near-ties (one ulp).
    @inline(__always)
    static func tenLog10(_ x: FFTLanes) -> FFTLanes {
        let bits = unsafeBitCast(x, to: SIMD2<UInt64>.self)
        let mantissa = (bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000
        var m = unsafeBitCast(mantissa, to: FFTLanes.self)  // [1, 2)
        var e = FFTLanes(Double(Int64(bitPattern: bits.x >> 52) - 1023),
                         Double(Int64(bitPattern: bits.y >> 52) - 1023))
        let fold = m .> 1.4142135623730951
        m.replace(with: m * 0.5, where: fold)
        e.replace(with: e + 1, where: fold)
        let s = (m - 1) / (m + 1)
        let s2 = s * s
        var q = FFTLanes(repeating: 1.0 / 13)
        q = q * s2 + 1.0 / 11
        q = q * s2 + 1.0 / 9
        q = q * s2 + 1.0 / 7
        q = q * s2 + 1.0 / 5
        q = q * s2 + 1.0 / 3
        q = q * s2 + 1
        let ln = e * 0.69314718055994530942 + 2 * s * q
        return ln * 4.3429448190325182765  // 10 / ln 10
    }
}
