import Foundation
import XCTest
@testable import CED

/// Short, deterministic, audibly different sounds for the head-training tests: each class is
/// a family with randomised parameters (frequency, level, rate, direction) plus a little
/// white noise, so a classifier must generalise rather than memorise one waveform.
enum SyntheticSounds {
    enum Kind: String, CaseIterable {
        /// A steady harmonic tone, 400–800 Hz, 1–3 harmonics.
        case tone
        /// Band-passed white noise (RBJ biquad, Q = 2), centre 2–4 kHz.
        case noise
        /// A train of short decaying noise bursts, 8–12 per second.
        case clicks
        /// Exponential sweeps back and forth (100–200 ms each way) between 400–800 Hz and
        /// 2.5–5 kHz.
        case chirp
    }

    static let sampleRate = 16000

    /// One clip of `seconds` at 16 kHz.
    static func clip(_ kind: Kind, seconds: Double, rng: inout TrainingRandom) -> [Float] {
        let n = Int(seconds * Double(sampleRate))
        let sr = Double(sampleRate)
        var x = [Double](repeating: 0, count: n)
        let level = 0.1 + 0.2 * rng.nextDouble()
        switch kind {
        case .tone:
            let f = 400 * pow(2, rng.nextDouble())
            let harmonics = 1 + rng.nextInt(below: 3)
            let phase = 2 * Double.pi * rng.nextDouble()
            for i in 0..<n {
                var v = 0.0
                for h in 1...harmonics where Double(h) * f < sr / 2 {
                    v += sin(2 * Double.pi * Double(h) * f * Double(i) / sr + phase) / Double(h)
                }
                x[i] = v
            }
        case .noise:
            let fc = 2000 * pow(2, rng.nextDouble())
            let q = 2.0
            let w0 = 2 * Double.pi * fc / sr
            let alpha = sin(w0) / (2 * q)
            let a0 = 1 + alpha
            let b0 = alpha / a0, b2 = -alpha / a0
            let a1 = -2 * cos(w0) / a0, a2 = (1 - alpha) / a0
            var x1 = 0.0, x2 = 0.0, y1 = 0.0, y2 = 0.0
            for i in 0..<n {
                let w = 2 * rng.nextDouble() - 1
                let y = b0 * w + b2 * x2 - a1 * y1 - a2 * y2
                x2 = x1; x1 = w; y2 = y1; y1 = y
                x[i] = y * 3
            }
        case .clicks:
            let rate = 8 + 4 * rng.nextDouble()
            let decay = 0.001 + 0.001 * rng.nextDouble()
            var t = rng.nextDouble() / rate
            while t < seconds {
                let start = Int(t * sr)
                for k in 0..<Int(6 * decay * sr) where start + k < n {
                    x[start + k] += (2 * rng.nextDouble() - 1) * exp(-Double(k) / (decay * sr)) * 3
                }
                t += (0.7 + 0.6 * rng.nextDouble()) / rate
            }
        case .chirp:
            // Sweeps back and forth (each way 100–200 ms) on a log-frequency scale, starting
            // up or down; the frequency is continuous, so there are no transients.
            let f0 = 400 * pow(2, rng.nextDouble()), f1 = 2500 * pow(2, rng.nextDouble())
            let up = rng.nextInt(below: 2) == 0
            let sweep = 0.1 + 0.1 * rng.nextDouble()
            var phase = 2 * Double.pi * rng.nextDouble()
            for i in 0..<n {
                let cycle = (Double(i) / sr / sweep).truncatingRemainder(dividingBy: 2)
                let u = cycle < 1 ? cycle : 2 - cycle
                let f = f0 * pow(f1 / f0, up ? u : 1 - u)
                phase += 2 * Double.pi * f / sr
                x[i] = sin(phase)
            }
        }
        // Normalise to the drawn level, add a faint noise floor, fade 5 ms at both ends.
        let peak = max(x.map { abs($0) }.max() ?? 1, 1e-9)
        let fade = min(80, n / 2)
        var out = [Float](repeating: 0, count: n)
        for i in 0..<n {
            var g = 1.0
            if i < fade { g = Double(i) / Double(fade) } else if i >= n - fade { g = Double(n - 1 - i) / Double(fade) }
            out[i] = Float(level * x[i] / peak * g + 0.002 * (2 * rng.nextDouble() - 1))
        }
        return out
    }

    /// A mono IEEE-float WAV file at 16 kHz.
    static func wav(_ samples: [Float]) -> [UInt8] {
        var data: [UInt8] = []
        data.reserveCapacity(samples.count * 4)
        for s in samples { TestWAV.append(&data, s.bitPattern) }
        return TestWAV.file(.f32, channels: 1, rate: sampleRate, data: data, variant: .plain)
    }

    /// Writes `perClass` clips of each kind into `<dir>/<kind>/<kind>_<i>.wav` (a folder per
    /// class). Lengths vary between `seconds` and 1.5 × `seconds`. Returns the files by class.
    @discardableResult
    static func writeDataset(to dir: URL, kinds: [Kind] = Kind.allCases, perClass: Int, seconds: Double, jitter: Double = 0,
                             seed: UInt64) throws -> [Kind: [URL]] {
        var rng = TrainingRandom(seed: seed)
        var files: [Kind: [URL]] = [:]
        for kind in kinds {
            let classDir = dir.appendingPathComponent(kind.rawValue)
            try FileManager.default.createDirectory(at: classDir, withIntermediateDirectories: true)
            for i in 0..<perClass {
                let length = seconds * (1 + jitter * rng.nextDouble())
                let url = classDir.appendingPathComponent("\(kind.rawValue)_\(i).wav")
                try Data(wav(clip(kind, seconds: length, rng: &rng))).write(to: url)
                files[kind, default: []].append(url)
            }
        }
        return files
    }
}
