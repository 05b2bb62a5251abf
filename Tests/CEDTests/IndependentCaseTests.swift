import XCTest
@testable import CED

/// A case that is not in ../shared: another architecture (48 dims, 4 heads, depth 2,
/// mlp_ratio 3, no qkv bias, 10 classes, target_length 100) on other audio, against the
/// independent numpy float64 reference in Fixtures/independent/gen_independent_case.py.
/// Weights and audio come from the same 32-bit LCG on both sides.
final class IndependentCaseTests: XCTestCase {
    struct LCG {
        var x: UInt32
        mutating func uniform() -> Float {
            x = x &* 1664525 &+ 1013904223
            return Float(x >> 8) / 16777216
        }
        mutating func symmetric(_ n: Int, _ scale: Double) -> [Float] {
            let s = Float(scale)
            return (0..<n).map { _ in (2 * uniform() - 1) * s }
        }
        mutating func uniformDoubles(_ n: Int) -> [Double] { (0..<n).map { _ in Double(uniform()) } }
    }

    static let baseConfigJSON = """
    {"embed_dim": 48, "depth": 2, "num_heads": 4, "mlp_ratio": 3.0, "qkv_bias": false, "outputdim": 10,
     "patch_size": 16, "patch_stride": 16, "target_length": 100, "n_mels": 64, "eval_avg": "mean",
     "pad_last": true, "pooling": "mean", "some_unknown_key": [1, 2, 3],
     "id2label": {"0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five",
                  "6": "six", "7": "seven", "8": "eight", "9": "nine"}}
    """

    /// Mirrors `tensor_specs` + `make_weights` in the generator.
    static func weights(_ config: CedConfig, seed: UInt32) -> StateDict {
        let c = config.embedDim, h = config.mlpHiddenDim
        let f = config.frequencyPatches, t = config.maxTimePatches
        var specs: [(String, [Int], String)] = [
            ("encoder.init_bn.weight", [64], "scale"), ("encoder.init_bn.bias", [64], "shift"),
            ("encoder.init_bn.running_mean", [64], "bn_mean"), ("encoder.init_bn.running_var", [64], "bn_var"),
            ("encoder.patch_embed.proj.weight", [c, 1, 16, 16], "w256"), ("encoder.patch_embed.proj.bias", [c], "bias"),
            ("encoder.time_pos_embed", [1, c, 1, t], "pos"), ("encoder.freq_pos_embed", [1, c, f, 1], "pos"),
        ]
        if config.pooling == .token {
            specs += [("encoder.cls_token", [1, 1, c], "pos"), ("encoder.token_pos_embed", [1, c], "pos")]
        }
        for b in 0..<config.depth {
            let p = "encoder.blocks.\(b)."
            specs += [
                (p + "norm1.weight", [c], "scale"), (p + "norm1.bias", [c], "shift"),
                (p + "attn.qkv.weight", [3 * c, c], "wqkv"),
                (p + "attn.proj.weight", [c, c], "w"), (p + "attn.proj.bias", [c], "bias"),
                (p + "norm2.weight", [c], "scale"), (p + "norm2.bias", [c], "shift"),
                (p + "mlp.fc1.weight", [h, c], "w"), (p + "mlp.fc1.bias", [h], "bias"),
                (p + "mlp.fc2.weight", [c, h], "w"), (p + "mlp.fc2.bias", [c], "bias"),
            ]
        }
        specs += [
            ("encoder.norm.weight", [c], "scale"), ("encoder.norm.bias", [c], "shift"),
            ("outputlayer.0.weight", [c], "scale"), ("outputlayer.0.bias", [c], "shift"),
            ("outputlayer.1.weight", [config.outputdim, c], "w"), ("outputlayer.1.bias", [config.outputdim], "bias"),
        ]
        var rng = LCG(x: seed)
        var tensors: [String: Tensor] = [:]
        for (name, shape, kind) in specs {
            let n = shape.reduce(1, *)
            let fanIn = shape.count == 2 ? shape[1] : 256
            let v: [Float]
            switch kind {
            case "scale": v = rng.symmetric(n, 0.3).map { 1 + $0 }
            case "shift": v = rng.symmetric(n, 0.2)
            case "bn_mean": v = rng.symmetric(n, 10).map { -40 + $0 }
            case "bn_var": v = rng.symmetric(n, 100).map { 250 + $0 }
            case "bias": v = rng.symmetric(n, 0.1)
            case "pos": v = rng.symmetric(n, 0.5)
            case "wqkv": v = rng.symmetric(n, 3.0 / Double(fanIn).squareRoot())
            default: v = rng.symmetric(n, 1.7 / Double(fanIn).squareRoot())
            }
            tensors[name] = Tensor(shape: shape, scalars: v)
        }
        return StateDict(tensors: tensors, source: "LCG(\(seed))")
    }

    /// Mirrors `make_audio`.
    static func audio(samples n: Int, seed: UInt32) -> [Float] {
        var rng = LCG(x: seed)
        let noise = rng.uniformDoubles(n)
        let dur = max(Double(n) / 16000, 1e-9)
        // Typed, short expressions: Swift 6.0's type checker gives up on the long ones.
        return (0..<n).map { (i: Int) -> Float in
            let t: Double = Double(i) / 16000
            let phase: Double = 200 * t + (3000 - 200) / (2 * dur) * t * t
            let chirp: Double = 0.4 * sin(2 * Double.pi * phase)
            let gate: Double = (floor(t * 8).truncatingRemainder(dividingBy: 2) == 0) ? 1 : 0
            let tone: Double = 0.3 * gate * sin(2 * Double.pi * 1000 * t)
            let hiss: Double = 0.05 * (noise[i] * 2 - 1)
            return Float(chirp + tone + hiss)
        }
    }

    static let variants: [(String, (inout CedConfig) -> Void)] = [
        ("mean", { _ in }), ("logit", { $0.pooling = .logit }), ("dm", { $0.pooling = .dm }),
        ("token", { $0.pooling = .token }), ("eval_avg-max", { $0.evalAvg = .max }),
        ("pad_last-false", { $0.padLast = false }),
    ]
    static let audios: [(String, Int, UInt32)] = [("clip", 40000, 7), ("short", 1440, 11)]

    func model(_ variant: (inout CedConfig) -> Void) throws -> CedForAudioClassification { try Self.makeModel(variant) }

    static func makeModel(_ variant: (inout CedConfig) -> Void) throws -> CedForAudioClassification {
        var config = try CedConfig.decode(Data(Self.baseConfigJSON.utf8))
        variant(&config)
        return try CedForAudioClassification(config: config, weights: Self.weights(config, seed: config.pooling == .token ? 4321 : 1234))
    }

    func fixture() throws -> SafeTensorsFile {
        let url = Bundle.module.url(forResource: "Fixtures/independent/independent_case", withExtension: "safetensors")!
        return try SafeTensorsFile(contentsOf: url)
    }

    func testConfigDecodedFromJSON() throws {
        let c = try CedConfig.decode(Data(Self.baseConfigJSON.utf8))
        XCTAssertEqual(c.embedDim, 48)
        XCTAssertEqual(c.numHeads, 4)
        XCTAssertEqual(c.mlpHiddenDim, 144)
        XCTAssertFalse(c.qkvBias)
        XCTAssertEqual(c.maxTimePatches, 6)
        XCTAssertEqual(c.label(for: 3), "three")
    }

    /// From the reference mel: outputs within 1e-5, hidden states within 1e-4.
    func testOutputsFromReferenceMel() throws {
        let fx = try fixture()
        for (vname, change) in Self.variants {
            let m = try model(change)
            for (aname, _, _) in Self.audios {
                let mel = try fx.tensor("\(aname)/mel")
                let hf = try m.forward(mel, chunking: .hf)
                let orig = try m(mel, chunking: .original)
                let chunks = try fx.tensor("\(aname)/\(vname)/chunks").scalars[0]
                XCTAssertEqual(Float(hf.chunks), chunks, "\(aname) \(vname): chunks")
                let dh = maxAbsDiff(hf.scores.scalars, try fx.tensor("\(aname)/\(vname)/output_hf").scalars)
                let dorig = maxAbsDiff(orig.scalars, try fx.tensor("\(aname)/\(vname)/output_original").scalars)
                XCTAssertLessThanOrEqual(dh, 1e-5, "\(aname) \(vname) hf")
                XCTAssertLessThanOrEqual(dorig, 1e-5, "\(aname) \(vname) original")
                XCTAssertTrue(hf.scores.scalars.allSatisfy(\.isFinite))
                if vname == "mean" {
                    let expect = try fx.tensor("\(aname)/mean/last_hidden_state")
                    let hidden = try m.encoder(mel).lastHiddenState
                    XCTAssertEqual(hidden.shape, expect.shape)
                    XCTAssertLessThanOrEqual(maxAbsDiff(hidden.scalars, expect.scalars), 1e-4)
                }
            }
        }
    }

    /// The clip exercises three chunks (the last padded), the short clip the below-one-patch rule.
    func testChunkLayout() throws {
        let m = try model { _ in }
        let fx = try fixture()
        let long = try m.forward(try fx.tensor("clip/mel"), outputHiddenStates: true)
        XCTAssertEqual(long.chunks, 3)
        XCTAssertEqual(long.encoder?.chunks, 3)
        XCTAssertEqual(long.encoder?.timePatches, 6)
        XCTAssertEqual(long.chunkScores.shape, [3, 10])
        let short = try m.forward(try fx.tensor("short/mel"), outputHiddenStates: true)
        XCTAssertEqual(short.chunks, 1)
        XCTAssertEqual(short.encoder?.timePatches, 1)
        XCTAssertEqual(short.encoder?.lastHiddenState.shape, [4, 48])
    }
}

extension IndependentCaseTests {
    /// End to end from the formula waveform: our mel within 0.01 dB of numpy's, outputs within 1e-4.
    func testEndToEndFromWaveform() throws {
        let fx = try fixture()
        let extractor = try CedFeatureExtractor()
        for (vname, change) in Self.variants {
            let tagger = try CedAudioTagger(model: model(change), featureExtractor: extractor)
            for (aname, n, seed) in Self.audios {
                let wave = Self.audio(samples: n, seed: seed)
                let mel = try extractor(wave)
                XCTAssertLessThanOrEqual(maxAbsDiff(mel.scalars, try fx.tensor("\(aname)/mel").scalars), 0.01)
                let hf = try tagger.scores(wave, chunking: .hf)
                let orig = try tagger.scores(wave, chunking: .original)
                XCTAssertLessThanOrEqual(maxAbsDiff(hf.scalars, try fx.tensor("\(aname)/\(vname)/output_hf").scalars), 1e-4, "\(aname) \(vname)")
                XCTAssertLessThanOrEqual(maxAbsDiff(orig.scalars, try fx.tensor("\(aname)/\(vname)/output_original").scalars), 1e-4, "\(aname) \(vname)")
            }
        }
    }
}

extension IndependentCaseTests {
    /// Long inputs are encoded a group of chunks at a time; the result must equal encoding
    /// every chunk at once (the path taken when hidden states are requested).
    func testGroupedChunksEqualAllAtOnce() throws {
        let frames = 1950  // 20 chunks of 100 frames, the last one half full
        var rng = LCG(x: 99)
        let mel = Tensor(shape: [64, frames], scalars: rng.symmetric(64 * frames, 30).map { $0 - 50 })
        XCTAssertGreaterThan(20, try model(Self.variants[0].1).encoder.chunksPerGroup)
        for (vname, change) in Self.variants {
            let m = try model(change)
            for chunking in CedChunking.allCases {
                let grouped = try m.forward(mel, chunking: chunking)
                let whole = try m.forward(mel, chunking: chunking, outputHiddenStates: true)
                XCTAssertEqual(grouped.chunks, vname == "pad_last-false" ? 19 : 20)
                XCTAssertNil(grouped.encoder)
                XCTAssertLessThanOrEqual(maxAbsDiff(grouped.scores.scalars, whole.scores.scalars), 1e-6, "\(vname) \(chunking)")
                XCTAssertLessThanOrEqual(maxAbsDiff(grouped.chunkScores.scalars, whole.chunkScores.scalars), 1e-6, "\(vname) \(chunking)")
            }
        }
    }
}

extension IndependentCaseTests {
    /// The clip embedding is what the head reads, averaged over chunks, also across
    /// groups of chunks: the mean of every token of every chunk (mean pooling), the mean
    /// of the chunks' cls tokens (token pooling).
    func testEmbeddingIsTheMeanToken() throws {
        let frames = 1950
        var rng = LCG(x: 5)
        let mel = Tensor(shape: [64, frames], scalars: rng.symmetric(64 * frames, 30).map { $0 - 50 })
        for (name, change) in [Self.variants[0], Self.variants[3]] {
            let m = try model(change)
            let out = try m.encoder(mel)
            let tokens = out.lastHiddenState
            let n = tokens.shape[0], c = tokens.shape[1]
            let rows = name == "token" ? (0..<out.chunks).map { $0 * out.tokensPerChunk } : Array(0..<n)
            XCTAssertGreaterThan(out.chunks, m.encoder.chunksPerGroup, "several groups of chunks")
            let expect = (0..<c).map { ch in Float(rows.reduce(0.0) { $0 + Double(tokens.scalars[$1 * c + ch]) } / Double(rows.count)) }
            XCTAssertLessThanOrEqual(maxAbsDiff(try m.encoder.embedding(mel).scalars, expect), 1e-6, name)
        }
    }
}
