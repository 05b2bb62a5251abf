import Foundation

/// The polyphase filter of one reduced rate pair, built exactly as
/// `torchaudio.functional._get_sinc_resample_kernel` builds it for a float32 waveform
/// (its arithmetic is float32 there), keeping per phase only the taps inside the filter's
/// support: the ones outside are clamped to the window's zero and weigh about 1e-24.
final class PolyphaseKernel: @unchecked Sendable {
    /// Input samples per block (original rate / gcd).
    let inputStep: Int
    /// Output samples per block, one per phase (new rate / gcd).
    let phases: Int
    /// Taps stored per phase (a multiple of 8; zero-padded).
    let taps: Int
    /// `phases × taps` weights; phase k's tap i applies to input sample `block·inputStep + start[k] + i`.
    let weights: [Float]
    let start: [Int]
    /// Smallest `start[k]` and largest `start[k] + taps`: the input span one block needs.
    let minStart: Int
    let maxEnd: Int

    init(inputStep o: Int, phases nw: Int, lowpassFilterWidth lpw: Int, rolloff: Double) {
        inputStep = o
        phases = nw
        // Python-side scalars (float64), then the float32 tensor arithmetic of torchaudio.
        let base = Double(min(o, nw)) * rolloff
        let width = Int((Double(lpw) * Double(o) / base).rounded(.up))
        let baseF = Float(base)
        let piF = Float(Double.pi)
        let lpwF = Float(lpw)
        let scaleF = Float(base / Double(o))
        let oF = Float(o), nwF = Float(nw)

        var rows: [(first: Int, values: [Float])] = []
        rows.reserveCapacity(nw)
        let half = Double(lpw) * Double(o) / base
        for k in 0..<nw {
            let t0 = Float(-k) / nwF
            let center = Double(k) * Double(o) / Double(nw)
            let lo = max(-width, Int((center - half).rounded(.down)) - 2)
            let hi = min(width + o - 1, Int((center + half).rounded(.up)) + 2)
            var first = Int.max
            var values: [Float] = []
            if lo <= hi {
                for m in lo...hi {
                    let t = (t0 + Float(m) / oF) * baseF
                    // Outside the support the reference clamps t to ±width, where the window is 0.
                    guard abs(t) < lpwF else { continue }
                    let c = cos(t * piF / lpwF / 2)
                    let window = c * c
                    let tp = t * piF
                    let sinc: Float = tp == 0 ? 1 : sin(tp) / tp
                    if first == Int.max { first = m }
                    // Fill any gap (cannot happen for a contiguous support, kept for safety).
                    while first + values.count < m { values.append(0) }
                    values.append(sinc * (window * scaleF))
                }
            }
            if first == Int.max { first = 0 }
            rows.append((first, values))
        }
        let longest = rows.map { $0.values.count }.max() ?? 1
        let t = max(8, (longest + 7) / 8 * 8)
        taps = t
        var w = [Float](repeating: 0, count: nw * t)
        var s = [Int](repeating: 0, count: nw)
        for (k, row) in rows.enumerated() {
            s[k] = row.first
            for (i, v) in row.values.enumerated() { w[k * t + i] = v }
        }
        weights = w
        start = s
        minStart = s.min() ?? 0
        maxEnd = (s.max() ?? 0) + t
    }

    private struct Key: Hashable { var o: Int; var nw: Int; var lpw: Int; var rolloff: UInt64 }
    nonisolated(unsafe) private static var cache: [Key: PolyphaseKernel] = [:]
    private static let lock = NSLock()

    /// The kernel for a reduced rate pair, computed once per process.
    static func shared(inputStep: Int, phases: Int, lowpassFilterWidth: Int, rolloff: Double) -> PolyphaseKernel {
        let key = Key(o: inputStep, nw: phases, lpw: lowpassFilterWidth, rolloff: rolloff.bitPattern)
        lock.lock()
        if let k = cache[key] { lock.unlock(); return k }
        lock.unlock()
        let k = PolyphaseKernel(inputStep: inputStep, phases: phases, lowpassFilterWidth: lowpassFilterWidth, rolloff: rolloff)
        lock.lock(); defer { lock.unlock() }
        if cache.count >= 32 { cache.removeAll() }  // bounded: odd rate pairs do not pile up
        cache[key] = k
        return k
    }
}

/// Band-limited resampling identical to `torchaudio.functional.resample(x, orig_freq,
/// new_freq)` with its defaults (windowed sinc, `lowpass_filter_width=6`, `rolloff=0.99`,
/// `sinc_interp_hann`), as a streaming filter: feed blocks of any size with `process`, then
/// call `finish`. The concatenated output is the same, bit for bit, whatever the block sizes,
/// and has `ceil(new_freq · length / orig_freq)` samples like the reference.
///
/// The rates are reduced by their gcd and the polyphase kernel is computed once per rate pair
/// and shared. Memory use is independent of the input length.
public final class SincResampler {
    public let inputRate: Int
    public let outputRate: Int
    public let lowpassFilterWidth: Int
    public let rolloff: Double
    let kernel: PolyphaseKernel?

    /// Input samples from absolute index `bufferStart` (negative indices are the zero padding).
    private var buffer: [Float] = []
    private var bufferStart: Int64 = 0
    private var received: Int64 = 0
    private var produced: Int64 = 0
    private var finished = false

    /// - Throws: `CedInputError` for non-positive rates or filter parameters.
    public init(inputRate: Int, outputRate: Int = 16000, lowpassFilterWidth: Int = 6, rolloff: Double = 0.99) throws {
        guard inputRate > 0, outputRate > 0 else {
            throw CedInputError("sample rates must be positive, got \(inputRate) → \(outputRate) Hz")
        }
        guard lowpassFilterWidth > 0, rolloff > 0, rolloff.isFinite else {
            throw CedInputError("lowpass_filter_width must be positive and rolloff a positive number")
        }
        self.inputRate = inputRate
        self.outputRate = outputRate
        self.lowpassFilterWidth = lowpassFilterWidth
        self.rolloff = rolloff
        if inputRate == outputRate {
            kernel = nil
        } else {
            let g = Self.gcd(inputRate, outputRate)
            let o = inputRate / g, nw = outputRate / g
            // Taps in all phases ≈ 2·width·new/… ≈ 12·o/rolloff; refuse what would not fit in memory.
            let approxTaps = Double(nw) * (2 * Double(lowpassFilterWidth) * Double(o) / (Double(min(o, nw)) * rolloff) + 16)
            guard approxTaps < 64e6 else {
                throw CedInputError("resampling \(inputRate) → \(outputRate) Hz needs a filter of \(Int(approxTaps)) taps; the rates are too far apart or too odd")
            }
            let k = PolyphaseKernel.shared(inputStep: o, phases: nw, lowpassFilterWidth: lowpassFilterWidth, rolloff: rolloff)
            kernel = k
            bufferStart = Int64(min(0, k.minStart))
            buffer = [Float](repeating: 0, count: Int(-bufferStart))
        }
    }

    static func gcd(_ a: Int, _ b: Int) -> Int {
        var a = a, b = b
        while b != 0 { (a, b) = (b, a % b) }
        return a
    }

    /// Output length for `inputLength` samples: `ceil(outputRate · inputLength / inputRate)`.
    public static func outputLength(inputLength: Int, inputRate: Int, outputRate: Int) -> Int {
        if inputRate == outputRate { return inputLength }
        let g = gcd(inputRate, outputRate)
        let o = inputRate / g, nw = outputRate / g
        let q = inputLength / o, r = inputLength % o
        return nw * q + (nw * r + o - 1) / o
    }

    /// Resamples a whole signal at once (the same result as streaming it).
    public static func resample(_ x: [Float], from inputRate: Int, to outputRate: Int = 16000) throws -> [Float] {
        if inputRate == outputRate { return x }
        let r = try SincResampler(inputRate: inputRate, outputRate: outputRate)
        var out = r.process(x)
        out += r.finish()
        return out
    }

    /// Feeds the next block of input; returns every output sample that no longer depends on
    /// input still to come.
    public func process(_ input: [Float]) -> [Float] {
        input.withUnsafeBufferPointer { process($0) }
    }

    /// Feeds the next block of input from a buffer.
    public func process(_ input: UnsafeBufferPointer<Float>) -> [Float] {
        precondition(!finished, "SincResampler.process called after finish()")
        guard let k = kernel else { return Array(input) }
        buffer.append(contentsOf: input)
        received += Int64(input.count)
        // Complete blocks n with n·o + maxEnd ≤ received (and n·o + o ≤ received, so every
        // output of the block lies within the final length).
        let need = Int64(max(k.maxEnd, k.inputStep))
        let o = Int64(k.inputStep)
        let nextBlock = produced / Int64(k.phases)
        guard received >= need else { return [] }
        let lastBlock = (received - need) / o
        guard lastBlock >= nextBlock else { return [] }
        let out = compute(blocks: nextBlock...lastBlock, limit: Int64.max)
        discard(upTo: (lastBlock + 1) * o + Int64(k.minStart))
        return out
    }

    /// Flushes the filter at the end of the input (zeros beyond the last sample, as the
    /// reference pads) and returns the remaining output.
    public func finish() -> [Float] {
        precondition(!finished, "SincResampler.finish called twice")
        finished = true
        guard let k = kernel else { return [] }
        let total = Int64(Self.outputLength(inputLength: Int(received), inputRate: inputRate, outputRate: outputRate))
        guard total > produced else { buffer = []; return [] }
        let nw = Int64(k.phases), o = Int64(k.inputStep)
        let firstBlock = produced / nw
        let lastBlock = (total - 1) / nw
        let needEnd = lastBlock * o + Int64(k.maxEnd)
        let have = bufferStart + Int64(buffer.count)
        if needEnd > have { buffer.append(contentsOf: repeatElement(0, count: Int(needEnd - have))) }
        let out = compute(blocks: firstBlock...lastBlock, limit: total)
        buffer = []
        return out
    }

    /// Computes outputs `produced ..< min(limit, (last+1)·phases)` for the given blocks.
    private func compute(blocks: ClosedRange<Int64>, limit: Int64) -> [Float] {
        guard let k = kernel else { return [] }
        let nw = k.phases, o = k.inputStep, t = k.taps
        let end = min(limit, (blocks.upperBound + 1) * Int64(nw))
        let count = Int(end - produced)
        guard count > 0 else { return [] }
        var out = [Float](repeating: 0, count: count)
        out.withUnsafeMutableBufferPointer { dst in
            buffer.withUnsafeBufferPointer { src in
                k.weights.withUnsafeBufferPointer { w in
                    k.start.withUnsafeBufferPointer { start in
                        var j = produced
                        var idx = 0
                        while idx < count {
                            let n = j / Int64(nw)
                            let phase = Int(j - n * Int64(nw))
                            let base = Int(n * Int64(o) - bufferStart)
                            let x = src.baseAddress! + base + start[phase]
                            dst[idx] = Self.dot(w.baseAddress! + phase * t, x, t)
                            idx += 1
                            j += 1
                        }
                    }
                }
            }
        }
        produced = end
        return out
    }

    private func discard(upTo absolute: Int64) {
        let drop = Int(absolute - bufferStart)
        guard drop > 0 else { return }
        buffer.removeFirst(min(drop, buffer.count))
        bufferStart += Int64(drop)
    }

    @inline(__always)
    static func dot(_ w: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int) -> Float {
        var a0 = SIMD8<Float>(), a1 = SIMD8<Float>()
        var i = 0
        let wr = UnsafeRawPointer(w), xr = UnsafeRawPointer(x)
        let stride = MemoryLayout<Float>.stride
        while i + 16 <= n {
            a0 += wr.loadUnaligned(fromByteOffset: i * stride, as: SIMD8<Float>.self)
                * xr.loadUnaligned(fromByteOffset: i * stride, as: SIMD8<Float>.self)
            a1 += wr.loadUnaligned(fromByteOffset: (i + 8) * stride, as: SIMD8<Float>.self)
                * xr.loadUnaligned(fromByteOffset: (i + 8) * stride, as: SIMD8<Float>.self)
            i += 16
        }
        if i < n {
            a0 += wr.loadUnaligned(fromByteOffset: i * stride, as: SIMD8<Float>.self)
                * xr.loadUnaligned(fromByteOffset: i * stride, as: SIMD8<Float>.self)
        }
        return (a0 + a1).sum()
    }
}
