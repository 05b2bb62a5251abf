import Foundation
import XCTest
@testable import CED

/// The NPY and WAV writers, byte for byte against independent writers.
final class WriterTests: XCTestCase {
    func hex(_ s: String) -> [UInt8] {
        stride(from: 0, to: s.count, by: 2).map { UInt8(s.dropFirst($0).prefix(2), radix: 16)! }
    }

    /// The expected bytes are numpy 2.4's `np.save` of the same float32 arrays.
    func testNPYIsWhatNumpyWrites() {
        let cases: [(Tensor, String, Int, String)] = [
            (Tensor(shape: [2, 3], scalars: [0, 1, -2.5, 0.125, 3e-5, -0.0]), "(2, 3)", 58, "000000000000803f000020c00000003e82a8fb3700000080"),
            (Tensor(shape: [2], scalars: [1.5, -1]), "(2,)", 60, "0000c03f000080bf"),
            (Tensor(shape: [1, 0, 2], scalars: []), "(1, 0, 2)", 55, ""),
        ]
        for (tensor, shape, spaces, data) in cases {
            let header = "{'descr': '<f4', 'fortran_order': False, 'shape': \(shape), }" + String(repeating: " ", count: spaces) + "\n"
            XCTAssertEqual(header.utf8.count, 118)
            let expected = [0x93] + Array("NUMPY".utf8) + [1, 0, 118, 0] + Array(header.utf8) + hex(data)
            XCTAssertEqual(Array(CedNPYEncoder.data(tensor)), expected, shape)
        }
    }

    func testWAVReadsBackAndMatchesTheTestWriter() throws {
        var rng = TrainingRandom(seed: 3)
        let edges: [Float] = [1, -1, 2, -2, 0.5 / 32768, -0.5 / 32768]
        let x: [Float] = (0..<4000).map { _ in Float(rng.nextGaussian() * 0.4) } + edges
        let data = WAVWriter.data(x, sampleRate: 22050)
        XCTAssertEqual(data, EventRecording.wav(x, sampleRate: 22050))
        // Typed pieces: Swift 6.0's type checker gives up on the header as one expression.
        let riff: [UInt8] = Array("RIFF".utf8) + [0x70, 0x1F, 0, 0]
        let fmt: [UInt8] = Array("WAVEfmt ".utf8) + [16, 0, 0, 0, 1, 0, 1, 0] + [0x22, 0x56, 0, 0, 0x44, 0xAC, 0, 0, 2, 0, 16, 0]
        let dataChunk: [UInt8] = Array("data".utf8) + [0x4C, 0x1F, 0, 0]   // 4006 samples
        XCTAssertEqual(Array(data.prefix(44)), riff + fmt + dataChunk)
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("ced-wav-\(UUID().uuidString).wav")
        defer { try? FileManager.default.removeItem(at: url) }
        try WAVWriter.write(x, sampleRate: 22050, to: url)
        let back = try Waveform(path: url.path, sampleRate: 22050)
        XCTAssertEqual(back.samples, EventRecording.quantized(x))
        // Clipped to [-1, 1), half a step rounded away from zero.
        let step: Float = 1 / 32768, top: Float = 32767 / 32768
        XCTAssertEqual(Array(back.samples.suffix(6)), [top, -1, top, -1, step, -step])
        // What was read writes back to the same bytes.
        XCTAssertEqual(WAVWriter.data(back.samples, sampleRate: 22050), data)
        XCTAssertThrowsError(try WAVWriter.write(x, sampleRate: 16000, to: URL(fileURLWithPath: "/nonexistent/dir/x.wav"))) {
            XCTAssertEqual(($0 as? CedFileError)?.kind, .unwritable)
        }
    }
}
