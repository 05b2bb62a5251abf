import ArgumentParser
import CED
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `ced bench`: in-process timings of the four CED sizes on one 10 s clip, mel → probabilities
/// and WAV file → probabilities, for each precision. `scripts/bench.sh` runs it beside ONNX
/// Runtime; this command alone needs nothing but the package.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time CED in-process: mel → probabilities and WAV file → probabilities, per size and precision.",
        discussion: """
            Each figure is the best and the median of --runs timed calls after --warmup \
            untimed ones, on one clip (default: a generated 10 s, 16 kHz mono 16-bit WAV; the \
            front end is also timed on a 32 kHz copy, which needs resampling). `tiny` uses \
            the shared reference fixture when found (--tiny, else $CED_SHARED_DIR or \
            ../shared/reference/models/tiny), every other size seeded random weights of the \
            published architecture: speed does not depend on the values.

            When the process runs with the allocation counter of scripts/alloc_count.c \
            preloaded (LD_PRELOAD), the heap allocations per clip are reported too.

            --export DIR writes what the ONNX Runtime side of scripts/bench.sh needs: the \
            models (Hugging Face folders for the random sizes), the clip's mel and these \
            models' probabilities on it.

            Every figure names the kernels it ran on (`path`); the environment variables \
            CED_GEMM_KERNEL (avx512, avx2, portable), CED_BF16_KERNEL (amx, avx512, none) and \
            CED_INT8_KERNEL (avx512vnni, avxvnni, portable) force a path, e.g. \
            CED_BF16_KERNEL=avx512 times the AVX-512 BF16 path of CPUs without AMX on one that \
            has it. Every mode other than fp32 is compared with fp32 on the clip (max |Δp|, \
            whether the top 5 classes are the same, in order); fp32 is computed for that even \
            when --precision does not list it.

            Examples:
              ced bench
              ced bench --models tiny,base --precision fp32 --runs 50
              CED_BF16_KERNEL=avx512 ced bench --precision bf16,int8
              ced bench --quick --format json
            """)

    enum Format: String, ExpressibleByArgument, CaseIterable { case table, json }

    @Option(help: ArgumentHelp("Model sizes to time, comma-separated.", valueName: "tiny,mini,small,base"))
    var models: String = "tiny,mini,small,base"

    @Option(help: ArgumentHelp("Precisions to time, comma-separated (passed to the model as --precision is; auto's row names the plan it picked).", valueName: "fp32,auto,bf16,int8"))
    var precision: String = "fp32,auto,bf16,int8"

    @Option(help: ArgumentHelp("Timed calls per figure.", valueName: "n"))
    var runs: Int?

    @Option(help: ArgumentHelp("Untimed calls before timing.", valueName: "n"))
    var warmup: Int?

    @Flag(help: "Few runs (2 timed after 1 warm-up): a smoke test, not a measurement.")
    var quick = false

    @Option(help: ArgumentHelp("The CED-Tiny folder to use for tiny (default: the shared reference fixture; random weights if absent).", valueName: "dir"))
    var tiny: String?

    @Option(help: ArgumentHelp("Audio file for the end-to-end figure instead of the generated clip.", valueName: "path"))
    var wav: String?

    @Option(help: ArgumentHelp("Length of the generated clip.", valueName: "seconds"))
    var seconds: Double = 10

    @Option(help: ArgumentHelp("Output: table (default) or json.", valueName: "format"))
    var format: Format = .table

    @Option(help: ArgumentHelp("Also write the models, the clip's mel and the probabilities here (for scripts/ort_bench.py).", valueName: "dir"))
    var export: String?

    static let sizes = ["tiny", "mini", "small", "base"]

    var runCount: Int { runs ?? (quick ? 2 : 20) }
    var warmupCount: Int { warmup ?? (quick ? 1 : 3) }

    var modelList: [String] { models.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() } }
    var precisionList: [String] { precision.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() } }

    func validate() throws {
        if modelList.isEmpty { throw ValidationError("--models needs at least one of \(Self.sizes.joined(separator: ", "))") }
        for m in modelList where !Self.sizes.contains(m) {
            throw ValidationError("unknown model size '\(m)' in --models (expected \(Self.sizes.joined(separator: ", ")))")
        }
        if precisionList.isEmpty { throw ValidationError("--precision needs at least one of fp32, bf16, int8") }
        for p in precisionList where CedPrecision(rawValue: p) == nil {
            throw ValidationError("unknown precision '\(p)' in --precision (expected \(CedPrecision.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        if runCount < 1 { throw ValidationError("--runs must be at least 1") }
        if warmupCount < 0 { throw ValidationError("--warmup must not be negative") }
        if !(seconds > 0 && seconds <= 3600) { throw ValidationError("--seconds must be in (0, 3600]") }
    }

    func run() throws {
        let loadAtStart = CedMachine.loadAverage
        let fm = FileManager.default
        let scratch = fm.temporaryDirectory.appendingPathComponent("ced-bench-\(getpid())")
        try fm.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? fm.removeItem(at: scratch) }

        // The clip: generated (16 kHz, and 32 kHz to time resampling) unless --wav is given.
        let clip16 = scratch.appendingPathComponent("clip_16k.wav")
        let clip32 = scratch.appendingPathComponent("clip_32k.wav")
        try WAVWriter.write(BenchAudio.clip(seconds: seconds, sampleRate: 16000), sampleRate: 16000, to: clip16)
        try WAVWriter.write(BenchAudio.clip(seconds: seconds, sampleRate: 32000), sampleRate: 32000, to: clip32)
        let wavPath = wav ?? clip16.path
        let extractor = try CedFeatureExtractor()
        let clip = try Waveform(path: wavPath, sampleRate: extractor.config.samplingRate)
        let mel = try extractor(clip.samples)
        let frames = mel.shape[1]

        let runs = runCount, warmup = warmupCount
        var frontEnd: [(String, CedTiming)] = []
        for (label, path) in [("wav_16k", clip16.path), ("wav_32k", clip32.path)] {
            let t = try CedTiming.measure(warmup: warmup, runs: runs) {
                _ = try extractor(try Waveform(path: path, sampleRate: extractor.config.samplingRate).samples)
            }
            frontEnd.append((label, t))
        }

        let exportDir = export.map { URL(fileURLWithPath: $0) }
        if let exportDir {
            try fm.createDirectory(at: exportDir, withIntermediateDirectories: true)
            try SafeTensorsFile.write(["mel": mel], to: exportDir.appendingPathComponent("mel.safetensors"))
        }

        var results: [CedBenchReport.Result] = []
        var exported: [(size: String, dir: String, fixture: Bool)] = []
        var probs: [String: Tensor] = [:]
        for size in modelList {
            let source = try BenchModels.load(size: size, tinyDir: tiny, export: exportDir)
            exported.append((size, source.directory ?? "", source.isFixture))
            var fp32Probs: Tensor?
            if !precisionList.contains("fp32") {
                fp32Probs = try CedForAudioClassification(config: source.config, weights: source.weights, precision: .fp32)(mel)
            }
            for p in precisionList {
                var (r, out) = try CedBenchReport.Result.measure(size, config: source.config, weights: source.weights,
                                                                 description: source.description, featureExtractor: source.featureExtractor,
                                                                 precision: CedPrecision(rawValue: p)!, mel: mel, wavPath: wavPath,
                                                                 warmup: warmup, runs: runs)
                probs["\(size)/\(p)"] = out
                if p == "fp32" { fp32Probs = out } else if let ref = fp32Probs { r.compare(out, toFP32: ref) }
                results.append(r)
                Terminal.write(to: FileHandle.standardError, "  \(r.summary)\n")
            }
        }

        if let exportDir {
            try SafeTensorsFile.write(probs, to: exportDir.appendingPathComponent("swift_probs.safetensors"))
            var m = "{\n  \"mel\": \"mel.safetensors\", \"frames\": \(frames), \"probs\": \"swift_probs.safetensors\",\n  \"models\": {"
            m += exported.map { "\n    \(CedJSONText.quoted($0.size)): {\"dir\": \(CedJSONText.quoted($0.dir)), \"fixture\": \($0.fixture)}" }
                .joined(separator: ",")
            m += "\n  }\n}\n"
            try Data(m.utf8).write(to: exportDir.appendingPathComponent("manifest.json"))
        }

        let settings = CedBenchReport.Settings(runs: runs, warmup: warmup, clipSeconds: clip.duration, frames: frames,
                                               wav: wav ?? "generated 16 kHz mono s16", threads: ProcessInfo.processInfo.activeProcessorCount)
        let report = CedBenchReport(settings: settings, frontEnd: frontEnd, results: results, export: export, loadAverage: loadAtStart)
        print(format == .json ? report.json : report.table)
    }

}

// MARK: Models

/// The model for one size: the reference fixture for tiny when present, else seeded random
/// weights of the published architecture.
struct BenchModels {
    var config: CedConfig
    var weights: StateDict
    var featureExtractor: CedFeatureExtractor
    var description: String
    var isFixture: Bool
    /// The Hugging Face folder holding these weights (the fixture, or the exported copy).
    var directory: String?


    static func defaultTinyDirectory() -> String? {
        var candidates: [String] = []
        if let env = ProcessInfo.processInfo.environment["CED_SHARED_DIR"], !env.isEmpty {
            candidates.append(env + "/reference/models/tiny")
        }
        candidates.append("../shared/reference/models/tiny")
        return candidates.first { FileManager.default.fileExists(atPath: $0 + "/config.json") }
    }

    static func load(size: String, tinyDir: String?, export: URL?) throws -> BenchModels {
        if size == "tiny", let dir = tinyDir ?? defaultTinyDirectory() {
            let checkpoint = try loadCheckpoint(dir, quiet: true)
            let path = URL(fileURLWithPath: dir).standardizedFileURL.path
            return BenchModels(config: checkpoint.config, weights: checkpoint.weights,
                               featureExtractor: try CedFeatureExtractor(config: checkpoint.featureExtractorConfig),
                               description: "fixture \(path)", isFixture: true, directory: path)
        }
        let config = CedConfig(name: "ced-\(size)")
        let seed = UInt64(0xCED0 + (Bench.sizes.firstIndex(of: size) ?? 0))
        let weights = randomWeights(config: config, seed: seed)
        var directory: String?
        if let export {
            let dir = export.appendingPathComponent("models/ced-\(size)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(config).write(to: dir.appendingPathComponent("config.json"))
            try SafeTensorsFile.write(weights.tensors, metadata: ["format": "pt"], to: dir.appendingPathComponent("model.safetensors"))
            directory = dir.standardizedFileURL.path
        }
        return BenchModels(config: config, weights: weights, featureExtractor: try CedFeatureExtractor(),
                           description: "random (seed \(seed))", isFixture: false, directory: directory)
    }

    /// Every tensor of the model at the scales of a trained one (`CedParameterTable`'s
    /// `trainedScale` random weights), deterministic for a seed.
    static func randomWeights(config c: CedConfig, seed: UInt64) -> StateDict {
        var rng = TrainingRandom(seed: seed)
        return CedParameterTable(config: c).randomWeights(rng: &rng, scheme: .trainedScale)
    }
}

// MARK: Audio

enum BenchAudio {
    /// A deterministic clip that looks like sound to the front end: a gliding harmonic tone,
    /// amplitude-modulated noise and clicks.
    static func clip(seconds: Double, sampleRate: Int) -> [Float] {
        let n = Int(seconds * Double(sampleRate))
        var rng = TrainingRandom(seed: 42)
        var out = [Float](repeating: 0, count: n)
        var phase = 0.0
        let sr = Double(sampleRate)
        for i in 0..<n {
            let t = Double(i) / sr
            let f0 = 220 * (1 + 0.5 * sin(2 * .pi * 0.2 * t))
            phase += 2 * .pi * f0 / sr
            var v = 0.3 * sin(phase) + 0.15 * sin(2 * phase) + 0.08 * sin(3 * phase)
            v += 0.1 * (0.5 + 0.5 * sin(2 * .pi * 0.7 * t)) * (2 * rng.nextDouble() - 1)
            if i % (sampleRate / 4) < 40 { v += 0.5 * (2 * rng.nextDouble() - 1) }
            out[i] = Float(v)
        }
        return out
    }
}
