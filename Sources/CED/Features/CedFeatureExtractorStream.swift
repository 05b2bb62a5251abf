import Foundation

extension CedFeatureExtractor {
    /// An incremental extractor for long recordings: feed the waveform in blocks as it is
    /// decoded, then `finish()` returns exactly what `extractor(wholeWaveform)` returns.
    ///
    /// Only a few thousand samples are kept between blocks; the dB features are kept until
    /// the end because the `top_db` floor depends on the whole clip's maximum (64 floats per
    /// 160 samples: 0.4× the size of the waveform).
    public func makeStream() -> Stream { Stream(engine: engine) }

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
            computeReadyFrames()
        }

        /// The `[n_mels, T]` features of everything appended, with the `top_db` floor.
        /// Throws `CedInputError` when nothing (or, without `center`, too little) was appended.
        public func finish() throws -> Tensor {
            precondition(!finished, "finish called twice")
            finished = true
            try engine.checkLength(received)
            let total = engine.frameCount(received)
            compute(done ..< total, length: received)
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
        private func computeReadyFrames() {
            let e = engine
            let firstOffset = e.winOffset - e.pad            // first sample of frame t: t·hop + firstOffset
            let lastOffset = firstOffset + e.winLength - 1   // last sample
            guard received >= e.pad + 2 else { return }
            var end = e.frameCount(received)
            // Frames whose last sample has not arrived yet.
            let lastReady = received - 1 - lastOffset
            end = lastReady < 0 ? 0 : min(end, lastReady / e.hop + 1)
            guard end > done else { return }
            compute(done ..< end, length: received)
            // Keep a margin of two FFT lengths before the next frame's first sample: the
            // frames at the very end reflect back into it.
            let keepFrom = done * e.hop + firstOffset - 2 * e.nFft
            if keepFrom > origin + 65536 {
                buffer.removeFirst(keepFrom - origin)
                origin = keepFrom
            }
        }

        private func compute(_ range: Range<Int>, length: Int) {
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
            for m in 0..<e.nMels { rows[m] += block[m * n ..< (m + 1) * n] }
            done = range.upperBound
        }
    }
}
