import XCTest
@testable import CED

/// Seeded random mutations of valid WAV headers: every one must decode or throw an
/// `AudioError` (never another error, a crash, non-finite output or a hang).
final class AudioFuzzTests: XCTestCase {
    /// SplitMix64, so every run mutates the same way.
    struct RNG {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func below(_ n: Int) -> Int { Int(next() % UInt64(max(n, 1))) }
    }

    static func seeds() -> [[UInt8]] {
        let v1 = TestWAV.baseSignal(frames: 48, channels: 1, seed: 1)
        let v2 = TestWAV.baseSignal(frames: 40, channels: 2, seed: 2)
        let v6 = TestWAV.baseSignal(frames: 20, channels: 6, seed: 3)
        return [
            TestWAV.file(.s16, channels: 2, rate: 44100, data: TestWAV.sampleData(v2, .s16), variant: .plain),
            TestWAV.file(.u8, channels: 1, rate: 22050, data: TestWAV.sampleData(v1, .u8), variant: .plain),
            TestWAV.file(.s24, channels: 2, rate: 48000, data: TestWAV.sampleData(v2, .s24), variant: .chunkorder),
            TestWAV.file(.f32, channels: 6, rate: 32000, data: TestWAV.sampleData(v6, .f32), variant: .extensible),
            TestWAV.file(.f64, channels: 1, rate: 16000, data: TestWAV.sampleData(v1, .f64), variant: .streaming),
            TestWAV.file(.s32, channels: 2, rate: 8000, data: TestWAV.sampleData(v2, .s32), variant: .rf64),
            TestWAV.file(.s16, channels: 1, rate: 24000, data: TestWAV.sampleData(v1, .s16), variant: .datasize0),
        ]
    }

    static func mutate(_ input: [UInt8], _ rng: inout RNG) -> [UInt8] {
        var b = input
        let headerSpan = min(b.count, 96)
        let specials32: [UInt32] = [0, 1, 2, 0xFFFF_FFFF, 0xFFFF_FFFE, 0x7FFF_FFFF, 0x8000_0000, 16, 40, 44100, 1_000_000]
        let specials16: [UInt16] = [0, 1, 2, 3, 7, 8, 0xFFFF, 0xFFFE, 0x8000, 24, 32, 64]
        for _ in 0...rng.below(4) {
            guard !b.isEmpty else { break }
            switch rng.below(7) {
            case 0:  // flip bits of a header byte
                let i = rng.below(min(b.count, headerSpan))
                b[i] ^= UInt8(truncatingIfNeeded: rng.next() | 1)
            case 1:  // a special 32-bit value at a 2-aligned header offset
                let i = rng.below(max(1, min(b.count, headerSpan) - 4)) & ~1
                guard i + 4 <= b.count else { continue }
                let v = rng.below(3) == 0 ? UInt32(truncatingIfNeeded: rng.next()) : specials32[rng.below(specials32.count)]
                for k in 0..<4 { b[i + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(k))) }
            case 2:  // a special 16-bit value
                let i = rng.below(max(1, min(b.count, headerSpan) - 2)) & ~1
                guard i + 2 <= b.count else { continue }
                let v = specials16[rng.below(specials16.count)]
                b[i] = UInt8(v & 0xFF); b[i + 1] = UInt8(v >> 8)
            case 3:  // truncate anywhere
                b.removeLast(rng.below(b.count))
            case 4:  // insert random bytes in the header
                let i = rng.below(min(b.count, headerSpan))
                b.insert(contentsOf: (0..<(1 + rng.below(9))).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, at: i)
            case 5:  // delete header bytes
                let i = rng.below(min(b.count, headerSpan))
                b.removeSubrange(i..<min(b.count, i + 1 + rng.below(8)))
            default:  // garbage in the samples
                let i = rng.below(b.count)
                b[i] = UInt8(truncatingIfNeeded: rng.next())
            }
        }
        return b
    }

    func testRandomHeaderMutationsNeverCrashOrHang() throws {
        let dir = try TestWAV.tempDir(self)
        let seeds = Self.seeds()
        // The unmutated seeds decode.
        for (i, s) in seeds.enumerated() {
            let url = dir.appendingPathComponent("seed\(i).wav")
            try TestWAV.write(s, to: url)
            XCTAssertFalse(try Waveform(contentsOf: url).samples.isEmpty)
        }
        // CED_FUZZ_ITERATIONS / CED_FUZZ_SEED run a longer or different campaign locally.
        let env = ProcessInfo.processInfo.environment
        var rng = RNG(state: env["CED_FUZZ_SEED"].flatMap { UInt64($0) } ?? 0xCED_A0D10)
        var decoded = 0, rejected = 0
        var kinds: [AudioError.Kind: Int] = [:]
        let start = Date()
        let url = dir.appendingPathComponent("fuzz.wav")
        let iterations = env["CED_FUZZ_ITERATIONS"].flatMap { Int($0) } ?? 3000
        for iteration in 0..<iterations {
            let bytes = Self.mutate(seeds[iteration % seeds.count], &rng)
            try TestWAV.write(bytes, to: url)
            do {
                let w = try Waveform(contentsOf: url, options: AudioDecodingOptions(ffmpeg: .disabled, blockFrames: 1 + rng.below(64)))
                XCTAssertTrue(w.samples.allSatisfy { $0.isFinite }, "iteration \(iteration)")
                decoded += 1
            } catch let e as AudioError {
                XCTAssertEqual(e.file, url.path)
                kinds[e.kind, default: 0] += 1
                rejected += 1
            } catch {
                XCTFail("iteration \(iteration): \(type(of: error)) \(error) for bytes \(bytes.prefix(64))")
            }
        }
        let elapsed = Date().timeIntervalSince(start)
        print("fuzz: \(iterations) mutated files, \(decoded) decoded, \(rejected) rejected \(kinds) in \(String(format: "%.2f", elapsed)) s")
        XCTAssertGreaterThan(decoded, 100)
        XCTAssertGreaterThan(rejected, 100)
        XCTAssertLessThan(elapsed, Double(iterations) / 10, "decoding mutated headers is too slow")
    }

    /// A few mutated files through ffmpeg as well: errors, never a hang.
    func testMutationsThroughFFmpeg() throws {
        _ = try TestWAV.requireFFmpeg()
        let dir = try TestWAV.tempDir(self)
        var rng = RNG(state: 42)
        let seeds = Self.seeds()
        for iteration in 0..<12 {
            var bytes = Self.mutate(seeds[iteration % seeds.count], &rng)
            bytes[0] = UInt8(ascii: "X")  // not RIFF: goes to ffmpeg
            let url = dir.appendingPathComponent("f\(iteration).bin")
            try TestWAV.write(bytes, to: url)
            do {
                _ = try Waveform(contentsOf: url)
            } catch let e as AudioError {
                XCTAssertEqual(e.kind, .ffmpegFailed, "\(e)")
            }
        }
    }
}
