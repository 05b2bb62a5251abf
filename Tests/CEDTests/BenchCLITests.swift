import Foundation
import XCTest
@testable import CED

/// `ced bench` runs and reports what it promises (a smoke test: timings themselves are only
/// meaningful in release builds, via scripts/bench.sh, never in `swift test`).
extension CLITests {
    func testBenchHelp() throws {
        let r = try ced(["bench", "--help"])
        XCTAssertEqual(r.status, 0)
        XCTAssertTrue(r.stdout.contains("--precision"), r.stdout)
        XCTAssertTrue(r.stdout.contains("--export"), r.stdout)
        XCTAssertEqual(try ced(["bench", "--models", "huge"]).status, 2)
        XCTAssertEqual(try ced(["bench", "--precision", "fp8"]).status, 2)
    }

    /// JSON with the expected keys; the exported mel and probabilities of the tiny fixture on
    /// a reference clip match the authors' goldens, and the random mini exports as a folder
    /// `ced tag` can load.
    func testBenchQuickJSONAndExport() throws {
        let tiny = try Reference.model("tiny")
        let snap = try Reference.audio("snap_16k_mono_s16.wav")
        let export = tmp.appendingPathComponent("export")
        let r = try ced(["bench", "--quick", "--runs", "1", "--warmup", "0", "--seconds", "1", "--format", "json",
                         "--models", "tiny,mini", "--precision", "fp32", "--tiny", tiny.path, "--wav", snap.path,
                         "--export", export.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try XCTUnwrap(r.json as? [String: Any], r.stdout)
        for key in ["machine", "settings", "front_end", "results"] { XCTAssertNotNil(json[key], key) }
        let settings = try XCTUnwrap(json["settings"] as? [String: Any])
        XCTAssertEqual(settings["frames"] as? Int, 101)
        let results = try XCTUnwrap(json["results"] as? [[String: Any]])
        XCTAssertEqual(results.map { $0["model"] as? String }, ["tiny", "mini"])
        for result in results {
            XCTAssertEqual(result["precision"] as? String, "fp32")
            for figure in ["mel_to_probs", "wav_to_probs"] {
                let f = try XCTUnwrap(result[figure] as? [String: Any], figure)
                let best = try XCTUnwrap(f["best_ms"] as? Double), median = try XCTUnwrap(f["median_ms"] as? Double)
                XCTAssertGreaterThan(best, 0)
                XCTAssertLessThanOrEqual(best, median)
                XCTAssertEqual(f["runs"] as? Int, 1)
            }
            XCTAssertNotNil(result["allocations_per_clip"])
        }
        // Parameter counts: the fixture's tensors, and CED-Mini's 9.7 M (as the reference README lists it).
        let fixture = try SafeTensorsFile(contentsOf: tiny.appendingPathComponent("model.safetensors"))
        let tinyParams = fixture.tensors.filter { $0.dtype == .f32 && !$0.name.contains("running_") }.reduce(0) { $0 + $1.shape.reduce(1, *) }
        XCTAssertEqual(results[0]["parameters"] as? Int, tinyParams)
        XCTAssertEqual(Double(results[1]["parameters"] as? Int ?? 0) / 1e6, 9.7, accuracy: 0.05)

        // What the ONNX Runtime side reads: the clip's mel and tiny's probabilities, against the goldens.
        let golden = try Reference.golden("tiny")
        let mel = try SafeTensorsFile(contentsOf: export.appendingPathComponent("mel.safetensors")).tensor("mel")
        let goldenMel = try golden.tensor("snap_16k_mono_s16.wav/mel")
        XCTAssertEqual(mel.shape, goldenMel.shape)
        XCTAssertLessThanOrEqual(zip(mel.scalars, goldenMel.scalars).map { abs($0 - $1) }.max()!, 0.01)
        let probs = try SafeTensorsFile(contentsOf: export.appendingPathComponent("swift_probs.safetensors"))
        let tinyProbs = try probs.tensor("tiny/fp32")
        let goldenProbs = try golden.tensor("snap_16k_mono_s16.wav/default/output_hf")
        XCTAssertLessThanOrEqual(zip(tinyProbs.scalars, goldenProbs.scalars).map { abs($0 - $1) }.max()!, 1e-4)
        let manifest = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: export.appendingPathComponent("manifest.json"))) as? [String: Any])
        let models = try XCTUnwrap(manifest["models"] as? [String: [String: Any]])
        XCTAssertEqual(models["tiny"]?["fixture"] as? Bool, true)

        // The random mini: a valid Hugging Face folder of the published architecture, usable by `ced tag`.
        let miniDir = try XCTUnwrap(models["mini"]?["dir"] as? String)
        let checkpoint = try PretrainedCheckpoint.load(miniDir)
        XCTAssertEqual(checkpoint.config.embedDim, 256)
        XCTAssertEqual(checkpoint.config.numHeads, 4)
        XCTAssertEqual(checkpoint.config.depth, 12)
        let miniProbs = try probs.tensor("mini/fp32")
        XCTAssertEqual(miniProbs.shape, [527])
        XCTAssertTrue(miniProbs.scalars.allSatisfy { $0 > 0 && $0 < 1 })
        // The random head spreads the scores (plausible scales, not a constant output).
        XCTAssertGreaterThan(miniProbs.scalars.max()! - miniProbs.scalars.min()!, 0.5)
        let tag = try ced(["tag", "--model", miniDir, "--format", "json", "--top-k", "all", snap.path])
        XCTAssertEqual(tag.status, 0, tag.stderr)
        let tagged = try XCTUnwrap((tag.json as? [[String: Any]])?.first?["labels"] as? [[String: Any]])
        let byIndex = Dictionary(uniqueKeysWithValues: tagged.map { ($0["index"] as! Int, ($0["score"] as! NSNumber).floatValue) })
        for (i, p) in miniProbs.scalars.enumerated() { XCTAssertEqual(byIndex[i] ?? -1, p, accuracy: 1e-6) }
    }
}

/// Forced dispatch: `CED_GEMM_KERNEL`, `CED_BF16_KERNEL` and `CED_INT8_KERNEL` choose the
/// kernels, `ced bench` reports the path each figure ran on, and a name the CPU cannot run
/// (or an unknown one) stops the process instead of timing something else.
extension CLITests {
    func benchJSON(_ env: [String: String], precision: String) throws -> [String: Any] {
        let tiny = try Reference.model("tiny")
        let r = try ced(["bench", "--runs", "1", "--warmup", "0", "--seconds", "1", "--format", "json", "--models", "tiny",
                         "--precision", precision, "--tiny", tiny.path], env: env)
        XCTAssertEqual(r.status, 0, r.stderr)
        return try XCTUnwrap(r.json as? [String: Any], r.stdout)
    }

    func testBenchForcedKernelPaths() throws {
        // Every int8 and bf16 kernel this CPU has, each forced once, with the fp32 tile forced too.
        var combos: [(gemm: GEMMKernel, bf16: String, int8: Int8Kernel)] = []
        for (i, k) in Int8Kernel.available.enumerated() {
            let bf16 = (BF16Kernel.available.map(\.rawValue) + ["none"])[i % (BF16Kernel.available.count + 1)]
            combos.append((GEMMKernel.available[i % GEMMKernel.available.count], bf16, k))
        }
        for b in BF16Kernel.available where !combos.contains(where: { $0.bf16 == b.rawValue }) {
            combos.append((GEMMKernel.best, b.rawValue, Int8Kernel.best))
        }
        for combo in combos {
            let env = ["CED_GEMM_KERNEL": combo.gemm.rawValue, "CED_BF16_KERNEL": combo.bf16, "CED_INT8_KERNEL": combo.int8.rawValue]
            let json = try benchJSON(env, precision: "fp32,bf16,int8")
            let kernels = try XCTUnwrap(json["kernels"] as? [String: Any])
            XCTAssertEqual(kernels["gemm"] as? String, combo.gemm.rawValue)
            XCTAssertEqual(kernels["bf16"] as? String, combo.bf16)
            XCTAssertEqual(kernels["int8"] as? String, combo.int8.rawValue)
            XCTAssertEqual((kernels["forced"] as? [String: String])?["CED_INT8_KERNEL"], combo.int8.rawValue)
            let results = try XCTUnwrap(json["results"] as? [[String: Any]])
            let paths = results.map { $0["path"] as? String ?? "" }
            // The blas path names its library and the tile kernel beside it (e.g. `blas
            // (libopenblas.so.0) + neon tiles`): `pathName`, as ced bench prints it.
            let bf16Path = combo.bf16 == "none" ? "fp32 \(combo.gemm.pathName) (no bf16 kernel)" : "bf16 \(combo.bf16)"
            XCTAssertEqual(paths, ["fp32 \(combo.gemm.pathName)", bf16Path, "int8 \(combo.int8) + \(bf16Path) (attention)"], "\(env)")
            // Accuracy against fp32 on every other mode; int8 really differs from fp32.
            for r in results.dropFirst() {
                let d = try XCTUnwrap(r["max_abs_prob_diff_vs_fp32"] as? Double, "\(r)")
                XCTAssertLessThanOrEqual(d, 0.02, "\(env) \(r["precision"] ?? "")")
                XCTAssertNotNil(r["top5_same_as_fp32"] as? Bool)
            }
            XCTAssertGreaterThan(results[2]["max_abs_prob_diff_vs_fp32"] as? Double ?? 0, 1e-5, "int8 ran in fp32? \(env)")
        }
    }

    func testBenchRefusesKernelsItCannotRun() throws {
        let tiny = try Reference.model("tiny")
        let args = ["bench", "--quick", "--seconds", "1", "--models", "tiny", "--precision", "int8", "--tiny", tiny.path]
        let unknown = try ced(args, env: ["CED_INT8_KERNEL": "avx1024"])
        XCTAssertNotEqual(unknown.status, 0)
        XCTAssertTrue(unknown.stderr.contains("CED_INT8_KERNEL=avx1024: unknown kernel"), unknown.stderr)
        if !BF16Kernel.available.contains(.amx) {
            let amx = try ced(args, env: ["CED_BF16_KERNEL": "amx"])
            XCTAssertNotEqual(amx.status, 0)
            XCTAssertTrue(amx.stderr.contains("CED_BF16_KERNEL=amx: this CPU cannot run it"), amx.stderr)
        }
    }
}
