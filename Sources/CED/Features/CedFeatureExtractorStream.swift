import Foundation

extension CedFeatureExtractor {
    /// An incremental extractor for long recordings: feed the waveform in blocks as it is
    /// decoded, then `finish()` returns exactly what `extractor(wholeWaveform)` returns.
    ///
    /// Only a few thousand samples are kept between blocks; the dB features are kept until
    /// the end because the `top_db` floor depends on the whole clip's maximum (64 floats per
    /// 160 samples: 0.4× the size of the waveform).
    public func makeStream() -> Stream { Stream(engine: engine) }

    /// A stream that hands every finished block of frames to `deliver`, `[n_mels, frames]`
    /// bin-major with the `top_db` floor `floor` already applied, instead of keeping them:
    /// the second pass over a long recording whose peak (hence floor) the first pass found.
    /// The frames delivered, in order, are exactly `finish()`'s columns for that floor.
    func makeStream(floor: Float, deliver: @escaping (UnsafePointer<Float>, Int) throws -> Void) -> Stream {
        let s = Stream(engine: engine)
        s.delivery = (floor, deliver)
        return s
    }

    public final class Stream {
        let engine: MelEngine
        /// Samples `origin ..< received` of the signal.
        private var buffer: [Float] = []
        private var origin = 0
        private var received = 0
        /// Frames computed so far (all frames before `done`).
        private var done = 0
        /// dB values before the floor, one growing array per mel bin.
        private var rows: [[Float]]
        private var peak = -Float.infinity
        private var finished = false
        /// Frames kept at most; past it the stream keeps only the peak and the count
        /// (`keptAll` turns false), so a first pass over a long recording stays small.
        var keepLimit = Int.max
        /// Whether every frame is still kept.
        private(set) var keptAll = true
        /// Second-pass mode: frames go to the closure (with this floor) instead of `rows`.
        fileprivate var delivery: (floor: Float, deliver: (UnsafePointer<Float>, Int) throws -> Void)?
        /// The dB maximum over every frame computed so far (before the floor).
        var peakSoFar: Float { peak }
        /// Frames computed so far.
        var framesComputed: Int { done }

        init(engine: MelEngine) {
            self.engine = engine
            rows = Array(repeating: [], count: engine.nMels)
        }

        /// Samples received so far.
        public var sampleCount: Int { received }

        /// Adds the next samples. Throws `CedInputError` for a NaN or infinite sample (naming
        /// its index in the whole waveform).
        public func append(_ samples: [Float]) throws {
            precondition(!finished, "append after finish")
            try samples.withUnsafeBufferPointer { try engine.checkFinite($0, firstIndex: received) }
            buffer += samples
            received += samples.count
            try computeReadyFrames()
        }

        /// Ends the input without building the features: the frame count and the peak (the
        /// first pass of a long recording). Throws as `finish()` does.
        func finishCounting() throws -> (frames: Int, peak: Float) {
            precondition(!finished, "finish called twice")
            finished = true
            try engine.checkLength(received)
            let total = engine.frameCount(received)
            try compute(done ..< total, length: received)
            rows = []
            buffer = []
            return (total, peak)
        }

        /// The `[n_mels, T]` features of everything appended, with the `top_db` floor.
        /// Throws `CedInputError` when nothing (or, without `center`, too little) was appended.
        public func finish() throws -> Tensor {
            precondition(!finished, "finish called twice")
            finished = true
            try engine.checkLength(received)
            let total = engine.frameCount(received)
            try compute(done ..< total, length: received)
            precondition(keptAll && delivery == nil, "finish() needs every frame kept; use finishCounting()")
            let floor = peak - engine.topDb
            var scalars = [Float]()
            scalars.reserveCapacity(engine.nMels * total)
            for m in 0..<engine.nMels {
                for v in rows[m] { scalars.append(v < floor ? floor : v) }
                rows[m] = []
            }
            buffer = []
            return Tensor(shape: [engine.nMels, total], scalars: scalars)
        }

        /// Computes the frames that cannot change any more: they lie wholly inside the
        /// samples received (reflection at the start needs `pad + 2` samples) and exist
        /// whatever the final length.
        private func computeReadyFrames() throws {
            let e = engine
            let firstOffset = e.winOffset - e.pad            // first sample of frame t: t·hop + firstOffset
            let lastOffset = firstOffset + e.winLength - 1   // last sample
            guard received >= e.pad + 2 else { return }
            var end = e.frameCount(received)
            // Frames whose last sample has not arrived yet.
            let lastReady = received - 1 - lastOffset
            end = lastReady < 0 ? 0 : min(end, lastReady / e.hop + 1)
            guard end > done else { return }
            try compute(done ..< end, length: received)
            // Keep a margin of two FFT lengths before the next frame's first sample: the
            // frames at the very end reflect back into it.
            let keepFrom = done * e.hop + firstOffset - 2 * e.nFft
            if keepFrom > origin + 65536 {
                buffer.removeFirst(keepFrom - origin)
                origin = keepFrom
            }
        }

        private func compute(_ range: Range<Int>, length: Int) throws {
            guard !range.isEmpty else { return }
            let e = engine
            let n = range.count
            var block = [Float](repeating: 0, count: e.nMels * n)
            buffer.withUnsafeBufferPointer { x in
                block.withUnsafeMutableBufferPointer { out in
                    let cores = min(ProcessInfo.processInfo.activeProcessorCount, CedCompute.threadLimit)
                    let parts = cores > 1 && n >= 128 ? min(2 * cores, n / 64) : 1
                    if parts == 1 {
                        peak = max(peak, e.computeFrames(x, range, frameCount: n, into: out.baseAddress!,
                                                         workspace: e.makeWorkspace(), origin: origin,
                                                         length: length, outBase: range.lowerBound))
                    } else {
                        let peaks = UnsafeMutablePointer<Float>.allocate(capacity: parts)
                        defer { peaks.deallocate() }
                        let base = out.baseAddress!, org = origin
                        DispatchQueue.concurrentPerform(iterations: parts) { p in
                            let sub = (range.lowerBound + n * p / parts) ..< (range.lowerBound + n * (p + 1) / parts)
                            peaks[p] = e.computeFrames(x, sub, frameCount: n, into: base, workspace: e.makeWorkspace(),
                                                       origin: org, length: length, outBase: range.lowerBound)
                        }
                        for p in 0..<parts { peak = max(peak, peaks[p]) }
                    }
                }
            }
            done = range.upperBound
            if let delivery {
                for i in block.indices where block[i] < delivery.floor { block[i] = delivery.floor }
                try block.withUnsafeBufferPointer { try delivery.deliver($0.baseAddress!, n) }
                return
            }
            if keptAll && done > keepLimit {
                keptAll = false
                rows = Array(repeating: [], count: e.nMels)
            }
            if keptAll { for m in 0..<e.nMels { rows[m] += block[m * n ..< (m + 1) * n] } }
        }
    }
}
