import XCTest
@testable import CED

final class ConfigTests: XCTestCase {
    func decode(_ json: String) throws -> CedConfig { try CedConfig.decode(Data(json.utf8), file: "config.json") }

    func assertConfigError(_ json: String, field: String?, contains text: String, line: UInt = #line) {
        XCTAssertThrowsError(try decode(json), line: line) { error in
            guard let e = error as? ConfigError else { return XCTFail("not a ConfigError: \(error)", line: line) }
            XCTAssertEqual(e.field, field, "\(e)", line: line)
            XCTAssertEqual(e.file, "config.json", line: line)
            XCTAssertTrue(e.description.contains(text), "\(e.description) lacks '\(text)'", line: line)
        }
    }

    func testUpstreamDefaults() throws {
        let c = try decode("{}")
        XCTAssertEqual(c.embedDim, 768)
        XCTAssertEqual(c.depth, 12)
        XCTAssertEqual(c.numHeads, 12)
        XCTAssertEqual(c.mlpRatio, 4)
        XCTAssertTrue(c.qkvBias)
        XCTAssertEqual(c.outputdim, 527)
        XCTAssertEqual(c.patchSize, CedPair(16))
        XCTAssertEqual(c.patchStride, CedPair(16))
        XCTAssertEqual(c.pooling, .mean)
        XCTAssertEqual(c.targetLength, 1012)
        XCTAssertEqual(c.evalAvg, .mean)
        XCTAssertTrue(c.padLast)
        XCTAssertEqual(c.nMels, 64)
        XCTAssertEqual(c.nFft, 512)
        XCTAssertEqual(c.hopSize, 160)
        XCTAssertEqual(c.winSize, 512)
        XCTAssertEqual(c.fMin, 0)
        XCTAssertEqual(c.fMax, 8000)
        XCTAssertTrue(c.center)
        XCTAssertNil(c.name)
        XCTAssertNil(c.id2label)
        XCTAssertEqual(c.label(for: 5), "LABEL_5")
    }

    func testPresetsOverrideWidthAndHeads() throws {
        for (name, dim, heads) in [("ced-tiny", 192, 3), ("ced-mini", 256, 4), ("ced-small", 384, 6), ("ced-base", 768, 12)] {
            // Upstream overrides even explicit values when a preset name is given.
            let c = try decode(#"{"name": "\#(name)", "embed_dim": 64, "num_heads": 2}"#)
            XCTAssertEqual(c.embedDim, dim, name)
            XCTAssertEqual(c.numHeads, heads, name)
            XCTAssertEqual(CedConfig(name: name).embedDim, dim)
        }
        let custom = try decode(#"{"name": "my-model", "embed_dim": 64, "num_heads": 2}"#)
        XCTAssertEqual(custom.embedDim, 64)
    }

    func testSharedConfigsDecode() throws {
        for (model, dim, depth, heads, pooling) in [("micro", 64, 2, 2, CedPooling.mean), ("micro-token", 64, 2, 2, .token), ("tiny", 192, 12, 3, .mean)] {
            let c = try CedConfig.load(from: try Reference.model(model).appendingPathComponent("config.json"))
            XCTAssertEqual(c.embedDim, dim)
            XCTAssertEqual(c.depth, depth)
            XCTAssertEqual(c.numHeads, heads)
            XCTAssertEqual(c.pooling, pooling)
            XCTAssertEqual(c.id2label?.count, 527)
            XCTAssertEqual(c.label(for: 0), "Speech")
            XCTAssertEqual(c.label2id?["Speech"], 0)
        }
    }

    func testIntegersWrittenAsFloatsAndPairs() throws {
        let c = try decode(#"{"embed_dim": 64.0, "num_heads": 2, "patch_size": [16, 16], "patch_stride": 16, "f_max": null}"#)
        XCTAssertEqual(c.embedDim, 64)
        XCTAssertNil(c.fMax)
    }

    func testInvalidValuesNameTheField() {
        assertConfigError(#"{"embed_dim": 100, "num_heads": 3}"#, field: "num_heads", contains: "not divisible")
        assertConfigError(#"{"pooling": "max"}"#, field: "pooling", contains: "unknown value 'max'")
        assertConfigError(#"{"eval_avg": "median"}"#, field: "eval_avg", contains: "median")
        assertConfigError(#"{"depth": 0}"#, field: "depth", contains: "positive")
        assertConfigError(#"{"embed_dim": -4, "num_heads": 2}"#, field: "embed_dim", contains: "positive")
        assertConfigError(#"{"target_length": 0}"#, field: "target_length", contains: "positive")
        assertConfigError(#"{"patch_size": 0}"#, field: "patch_size", contains: "positive")
        assertConfigError(#"{"mlp_ratio": 0}"#, field: "mlp_ratio", contains: "positive")
        assertConfigError(#"{"depth": 2.5}"#, field: "depth", contains: "integer")
        assertConfigError(#"{"depth": "twelve"}"#, field: "depth", contains: "type")
        assertConfigError(#"{"outputdim": 2, "id2label": {"0": "a"}}"#, field: "id2label", contains: "1 labels but outputdim is 2")
        assertConfigError(#"{"outputdim": 2, "id2label": {"0": "a", "5": "b"}}"#, field: "id2label", contains: "outside")
        assertConfigError(#"{"outputdim": 1, "id2label": {"x": "a"}}"#, field: "id2label", contains: "not an integer")
        assertConfigError(#"{"target_length": 8}"#, field: "target_length", contains: "shorter than one patch")
        assertConfigError(#"{"f_max": -1}"#, field: "f_max", contains: "above f_min")
        assertConfigError("not json", field: nil, contains: "not valid JSON")
        assertConfigError("[1, 2]", field: nil, contains: "not a JSON object")
    }

    func testRoundTripsThroughJSON() throws {
        var c = try decode(#"{"embed_dim": 48, "num_heads": 4, "depth": 3, "outputdim": 2, "pooling": "dm", "id2label": {"0": "a", "1": "b"}, "label2id": {"a": 0, "b": 1}}"#)
        c.evalAvg = .max
        let data = try JSONEncoder().encode(c)
        XCTAssertEqual(try CedConfig.decode(data), c)
    }

    func testFeatureExtractorConfig() throws {
        let url = try Reference.model("micro").appendingPathComponent("preprocessor_config.json")
        let fe = try CedFeatureExtractorConfig.load(from: url)
        XCTAssertEqual(fe.samplingRate, 16000)
        XCTAssertEqual(fe.featureSize, 64)
        XCTAssertNil(fe.fMax)
        XCTAssertEqual(fe.resolvedFMax, 8000)
        XCTAssertEqual(fe.hopSize, 160)
        XCTAssertEqual(fe.winSize, 512)
        var custom = fe
        custom.topDb = 80
        XCTAssertEqual(try JSONDecoder().decode(CedFeatureExtractorConfig.self, from: JSONEncoder().encode(custom)), custom)
        XCTAssertEqual(try JSONDecoder().decode(CedFeatureExtractorConfig.self, from: JSONEncoder().encode(fe)), fe)
        let fromModel = CedFeatureExtractorConfig(model: CedConfig())
        XCTAssertEqual(fromModel.resolvedFMax, 8000)
        var bad = CedFeatureExtractorConfig()
        bad.winSize = 1024
        XCTAssertThrowsError(try bad.validate()) { XCTAssertEqual(($0 as? ConfigError)?.field, "win_size") }
        bad = CedFeatureExtractorConfig()
        bad.fMax = 9000
        XCTAssertThrowsError(try bad.validate()) { XCTAssertEqual(($0 as? ConfigError)?.field, "f_max") }
    }
}
