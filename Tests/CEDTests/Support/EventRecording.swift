import Foundation
import XCTest
@testable import CED

/// A long recording assembled, deterministically from a seed, out of the labelled 2 s clips
/// of `../shared/reference/distill/test/` over faint white noise, with its true events: the
/// sound-event check of issue 14.
///
/// Between sounds there are 1–5 s of background. A sound is one clip (a 2 s event), two
/// clips of one class back to back (one 4 s event), or two clips of different classes back
/// to back (two adjacent 2 s events).
struct EventRecording {
    struct Truth: Equatable {
        var label: String
        var start: Double
        var end: Double
    }

    var samples: [Float]
    var events: [Truth]
    static let sampleRate = 16000

    /// The clips of `test.csv` by label, in file order.
    static func clips() throws -> [String: [URL]] {
        let dir = try Reference.require().appendingPathComponent("distill")
        let csv = try String(contentsOf: dir.appendingPathComponent("test.csv"), encoding: .utf8)
        var out: [String: [URL]] = [:]
        for line in csv.split(separator: "\n").dropFirst() {
            let parts = line.split(separator: ",")
            guard parts.count == 2 else { continue }
            out[String(parts[1]), default: []].append(dir.appendingPathComponent(String(parts[0])))
        }
        return out
    }

    static func make(seconds: Double = 240, seed: UInt64 = 14, noiseLevel: Float = 0.002,
                     gaps: ClosedRange<Double> = 1...5, differentPairs: Bool = true) throws -> EventRecording {
        let byLabel = try clips()
        let labels = byLabel.keys.sorted()
        var rng = TrainingRandom(seed: seed)
        var decks: [String: [URL]] = [:]
        func draw(_ label: String) throws -> [Float] {
            if decks[label, default: []].isEmpty {
                var deck = byLabel[label]!
                rng.shuffle(&deck)
                decks[label] = deck
            }
            return try Waveform(contentsOf: decks[label]!.removeLast()).samples
        }
        let sr = Double(sampleRate)
        let n = Int(seconds * sr)
        // Background: Gaussian white noise.
        var x = [Float](repeating: 0, count: n)
        for i in 0..<n { x[i] = noiseLevel * Float(rng.nextGaussian()) }
        var events: [Truth] = []
        func gap() -> Double { gaps.lowerBound + (gaps.upperBound - gaps.lowerBound) * rng.nextDouble() }
        var t = gap()
        while true {
            let kind = rng.nextDouble()
            let first = labels[rng.nextInt(below: labels.count)]
            var parts = [first]
            if kind > 0.6 {
                let other = labels.filter { $0 != first }[rng.nextInt(below: labels.count - 1)]
                parts.append(kind > 0.8 || !differentPairs ? first : other)
            }
            let start = (t * sr).rounded()
            guard Int(start) + parts.count * 2 * sampleRate <= n - sampleRate else { break }
            var offset = Int(start)
            for label in parts {
                let clip = try draw(label)
                for (k, v) in clip.enumerated() where offset + k < n { x[offset + k] += v }
                let s = Double(offset) / sr, e = Double(offset + clip.count) / sr
                if let last = events.last, last.label == label, abs(last.end - s) < 1e-9 {
                    events[events.count - 1].end = e
                } else {
                    events.append(Truth(label: label, start: s, end: e))
                }
                offset += clip.count
            }
            t = Double(offset) / sr + gap()
        }
        return EventRecording(samples: x, events: events)
    }

    /// Event-based F1: a detection matches a true event of the same label when both its onset
    /// and its offset are within `tolerance` seconds; each event matches at most once.
    static func f1(truth: [Truth], detected: [Truth], tolerance: Double = 1) -> (f1: Double, precision: Double, recall: Double, matched: Int) {
        var used = [Bool](repeating: false, count: detected.count)
        var tp = 0
        for t in truth {
            var best: Int?
            var bestCost = Double.infinity
            for (j, d) in detected.enumerated() where !used[j] && d.label == t.label {
                let on = abs(d.start - t.start), off = abs(d.end - t.end)
                if on <= tolerance && off <= tolerance && on + off < bestCost { best = j; bestCost = on + off }
            }
            if let best { used[best] = true; tp += 1 }
        }
        let p = detected.isEmpty ? 0 : Double(tp) / Double(detected.count)
        let r = truth.isEmpty ? 0 : Double(tp) / Double(truth.count)
        return (p + r > 0 ? 2 * p * r / (p + r) : 0, p, r, tp)
    }

    /// 16-bit PCM mono WAV bytes (`dataSize` overrides the declared data size, e.g. 0 or
    /// 0xFFFFFFFF as streaming writers put there).
    static func wav(_ samples: [Float], sampleRate: Int = sampleRate, dataSize: UInt32? = nil) -> Data {
        var d = Data()
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
        func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
        let bytes = UInt32(samples.count * 2)
        d.append(contentsOf: Array("RIFF".utf8)); u32(dataSize.map { $0 == 0 ? 0 : 0xFFFF_FFFF } ?? 36 + bytes)
        d.append(contentsOf: Array("WAVE".utf8))
        d.append(contentsOf: Array("fmt ".utf8)); u32(16); u16(1); u16(1); u32(UInt32(sampleRate)); u32(UInt32(sampleRate * 2)); u16(2); u16(16)
        d.append(contentsOf: Array("data".utf8)); u32(dataSize ?? bytes)
        d.reserveCapacity(d.count + samples.count * 2)
        for s in samples {
            let v = Int16(max(-32768, min(32767, (Double(s) * 32768).rounded())))
            u16(UInt16(bitPattern: v))
        }
        return d
    }

    /// The samples as a 16-bit WAV file reads back (so the library sees what the CLI sees).
    static func quantized(_ samples: [Float]) -> [Float] {
        samples.map { Float(Int16(max(-32768, min(32767, (Double($0) * 32768).rounded())))) / 32768 }
    }
}
