import Foundation
import XCTest
@testable import CED

/// `--precision auto`: the advisor measures the model's own block in every plan, picks the
/// fastest accurate one (never one slower than fp32), caches it per CPU and shape, and tells
/// when an explicit mode is slower than fp32.
final class PrecisionAdvisorTests: XCTestCase {
    func micro() -> CedConfig {
        var c = CedConfig()
        c.embedDim = 64; c.numHeads = 2; c.depth = 2; c.outputdim = 10
        return c
    }

    func testChoosesAnAccuratePlanAndCachesIt() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ced-advisor-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("precision.json")
        let advisor = CedPrecisionAdvisor(cacheFile: file)
        let c = advisor.choice(for: micro())
        XCTAssertTrue(CedPrecisionPlan.accurate.contains(c.plan), "\(c.plan)")
        XCTAssertEqual(Set(c.milliseconds.keys), Set(CedPrecisionAdvisor.measured.map(\.description)))
        let fp32 = try XCTUnwrap(c.milliseconds["fp32"])
        XCTAssertLessThanOrEqual(try XCTUnwrap(c.milliseconds[c.plan.description]), fp32, "auto is never slower than fp32")
        if c.plan != .fp32 {
            XCTAssertLessThan(c.milliseconds[c.plan.description]!, 0.95 * fp32, "a reduced plan only when 5 % faster")
        }
        // Kept on disk: a new advisor reads it instead of measuring.
        let saved = try JSONDecoder().decode([String: CedPrecisionAdvisor.Choice].self, from: Data(contentsOf: file))
        XCTAssertEqual(saved[CedPrecisionAdvisor.key(micro())], c)
        XCTAssertEqual(CedPrecisionAdvisor(cacheFile: file).choice(for: micro()), c)
        // Another shape is another entry.
        var other = micro()
        other.embedDim = 32
        _ = advisor.choice(for: other)
        XCTAssertEqual(try JSONDecoder().decode([String: CedPrecisionAdvisor.Choice].self, from: Data(contentsOf: file)).count, 2)
        // The model built with .auto runs that plan.
        var rng = TrainingRandom(seed: 5)
        let weights = CedParameterTable(config: micro()).randomWeights(rng: &rng)
        XCTAssertEqual(try CedForAudioClassification(config: micro(), weights: weights, plan: c.plan).plan, c.plan)
    }

    /// From a measurement where bf16 and int8 are slower than fp32 (as on an Intel CPU
    /// without AMX): auto keeps fp32, and the explicit modes say how much slower they are.
    func testSlowerModesAreNamed() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ced-advisor-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let file = dir.appendingPathComponent("precision.json")
        var ms: [String: Double] = [:]
        for p in CedPrecisionAdvisor.measured { ms[p.description] = p == .fp32 ? 10 : 17 }
        let measured = CedPrecisionAdvisor.Choice(plan: .fp32, milliseconds: ms, machine: "test")
        try JSONEncoder().encode([CedPrecisionAdvisor.key(micro()): measured]).write(to: file)
        let advisor = CedPrecisionAdvisor(cacheFile: file)
        XCTAssertEqual(advisor.choice(for: micro()).plan, .fp32)
        XCTAssertNil(advisor.warning(for: .fp32, config: micro()))
        XCTAssertNil(advisor.warning(for: .auto, config: micro()))
        let int8 = try XCTUnwrap(advisor.warning(for: .int8, config: micro()))
        XCTAssertTrue(int8.contains("1.70× slower than fp32") && int8.contains("auto picks fp32"), int8)
        if CedPrecision.bf16.isSupported {
            XCTAssertNotNil(advisor.warning(for: .bf16, config: micro()))
        }
    }
}
