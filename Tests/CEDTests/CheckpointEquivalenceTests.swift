import XCTest
@testable import CED

/// The same micro weights in every format a user meets give the same model outputs.
final class CheckpointEquivalenceTests: XCTestCase {
    func testEveryFormatGivesTheSameOutputs() throws {
        let golden = try Reference.golden("micro")
        let specs: [(String, PretrainedCheckpoint.Options)] = [
            (try Reference.model("micro").path, .init()),
            (try Reference.model("micro-bin").path, .init()),
            // The authors' .pt files carry no config: architecture from shapes, heads given.
            (try Reference.model("micro.pt").path, .init(numHeads: 2)),
            (try Reference.model("micro-wrapped.pt").path, .init(numHeads: 2)),
        ]
        let audios = ["snap_16k_mono_s16.wav", "tones_noise_16k_mono_f32_23s.wav", "exact_two_chunks_16k_mono_s16.wav"]
        var first: [String: [Float]] = [:]
        for (spec, options) in specs {
            let ckpt = try PretrainedCheckpoint.load(spec, options: options)
            let tagger = try CedAudioTagger(ckpt)
            // Hugging Face folders name the classes; the .pt files have no labels of their own.
            XCTAssertEqual(tagger.config.label(for: 0), spec.hasSuffix(".pt") ? "LABEL_0" : "Speech", spec)
            for audio in audios {
                let mel = try golden.tensor("\(audio)/mel")
                for chunking in CedChunking.allCases {
                    let out = try tagger.model(mel, chunking: chunking).scalars
                    let key = "\(audio)/default/output_\(chunking == .hf ? "hf" : "original")"
                    XCTAssertLessThanOrEqual(maxAbsDiff(out, try golden.tensor(key).scalars), 1e-6, "\(spec) \(key)")
                    if let f = first[key] {
                        XCTAssertLessThanOrEqual(maxAbsDiff(out, f), 1e-6, "\(spec) \(key)")
                    } else {
                        first[key] = out
                    }
                }
            }
        }
    }

    /// The .pt files carry no labels: a labels CSV supplies them.
    func testLabelsFromCSV() throws {
        let csv = Reference.sharedDir.appendingPathComponent("data/audioset_class_labels_indices.csv")
        _ = try Reference.require()
        let tagger = try CedAudioTagger.fromPretrained(try Reference.model("micro.pt").path,
                                                       options: .init(labelsFile: csv, numHeads: 2))
        XCTAssertEqual(tagger.config.label(for: 0), "Speech")
        XCTAssertEqual(tagger.config.label(for: 526), "Field recording")
        XCTAssertEqual(tagger.config.id2label?.count, 527)
    }
}
