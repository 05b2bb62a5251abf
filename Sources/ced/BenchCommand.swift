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

    @Option(help: ArgumentHelp("Precisions to time, comma-separated (passed to the model as --precision is).", valueName: "fp32,bf16,int8"))
    var precision: String = "fp32,bf16,int8"

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
        let loadAtStart = Machine.loadAverage
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
        var frontEnd: [(String, Timing)] = []
        for (label, path) in [("wav_16k", clip16.path), ("wav_32k", clip32.path)] {
            let t = try Timing.measure(warmup: warmup, runs: runs) {
                _ = try extractor(try Waveform(path: path, sampleRate: extractor.config.samplingRate).samples)
            }
            frontEnd.append((label, t))
        }

        let exportDir = export.map { URL(fileURLWithPath: $0) }
        if let exportDir {
            try fm.createDirectory(at: exportDir, withIntermediateDirectories: true)
            try SafeTensorsFile.write(["mel": mel], to: exportDir.appendingPathComponent("mel.safetensors"))
        }

        var results: [BenchResult] = []
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
                let precision = CedPrecision(rawValue: p)!
                let loadStart = Timing.now()
                let model = try CedForAudioClassification(config: source.config, weights: source.weights, precision: precision)
                let loadMs = Timing.ms(since: loadStart)
                let tagger = try CedAudioTagger(model: model, featureExtractor: source.featureExtractor)
                let rate = tagger.samplingRate

                let melTiming = try Timing.measure(warmup: warmup, runs: runs) { _ = try model(mel) }
                let melAllocs = try AllocationCounter.perCall(runs: 5) { _ = try model(mel) }
                let e2e: () throws -> Tensor = {
                    try tagger.scores(try Waveform(path: wavPath, sampleRate: rate).samples)
                }
                let wavTiming = try Timing.measure(warmup: warmup, runs: runs) { _ = try e2e() }
                let wavAllocs = try AllocationCounter.perCall(runs: 5) { _ = try e2e() }

                let out = try model(mel)
                probs["\(size)/\(p)"] = out
                var r = BenchResult(model: size, weights: source.description, precision: p, path: precision.kernelPath,
                               parameters: source.parameters,
                               loadMs: loadMs, melToProbs: melTiming, wavToProbs: wavTiming,
                               melAllocations: melAllocs, wavAllocations: wavAllocs)
                if precision == .fp32 { fp32Probs = out }
                if precision != .fp32, let ref = fp32Probs {
                    r.maxAbsProbDiffVsFp32 = zip(out.scalars, ref.scalars).map { abs(Double($0) - Double($1)) }.max() ?? 0
                    r.top5SameAsFp32 = Self.top(out.scalars, 5) == Self.top(ref.scalars, 5)
                }
                results.append(r)
                Terminal.write(to: FileHandle.standardError, "  \(r.summary)\n")
            }
        }

        if let exportDir {
            try SafeTensorsFile.write(probs, to: exportDir.appendingPathComponent("swift_probs.safetensors"))
            var m = "{\n  \"mel\": \"mel.safetensors\", \"frames\": \(frames), \"probs\": \"swift_probs.safetensors\",\n  \"models\": {"
            m += exported.map { "\n    \($0.size.jsonQuoted): {\"dir\": \($0.dir.jsonQuoted), \"fixture\": \($0.fixture)}" }.joined(separator: ",")
            m += "\n  }\n}\n"
            try Data(m.utf8).write(to: exportDir.appendingPathComponent("manifest.json"))
        }

        let settings = Settings(runs: runs, warmup: warmup, clipSeconds: clip.duration,
                                frames: frames, wav: wav ?? "generated 16 kHz mono s16", threads: ProcessInfo.processInfo.activeProcessorCount)
        switch format {
        case .json: print(Self.json(settings: settings, frontEnd: frontEnd, results: results, export: export, load: loadAtStart))
        case .table: print(Self.table(settings: settings, frontEnd: frontEnd, results: results))
        }
    }

    static func top(_ v: [Float], _ k: Int) -> [Int] {
        Array(v.indices.sorted { v[$0] > v[$1] }.prefix(k))
    }

    // MARK: Results

    struct Settings {
        var runs: Int
        var warmup: Int
        var clipSeconds: Double
        var frames: Int
        var wav: String
        var threads: Int
    }

    struct BenchResult {
        var model: String
        var weights: String
        var precision: String
        /// The kernels the figure came from (`CedPrecision.kernelPath`).
        var path: String
        var parameters: Int
        var loadMs: Double
        var melToProbs: Timing
        var wavToProbs: Timing
        var melAllocations: AllocationCounter.Delta?
        var wavAllocations: AllocationCounter.Delta?
        var maxAbsProbDiffVsFp32: Double?
        var top5SameAsFp32: Bool?

        var summary: String {
            "\(model) \(precision) [\(path)]: mel→probs \(fmt(melToProbs.best)) ms, WAV→probs \(fmt(wavToProbs.best)) ms"
        }
    }

    static func json(settings s: Settings, frontEnd: [(String, Timing)], results: [BenchResult], export: String?, load: String) -> String {
        var o = "{\n"
        o += "  \"tool\": \"ced bench\", \"version\": \(cedVersion.jsonQuoted), \"date\": \(ISO8601DateFormatter().string(from: Date()).jsonQuoted),\n"
        o += "  \"machine\": {\"cpu\": \(Machine.cpuModel.jsonQuoted), \"cores\": \(ProcessInfo.processInfo.activeProcessorCount), \"cpu_flags\": \(Machine.vectorFlags.jsonQuoted), \"load_average_at_start\": \(load.jsonQuoted)},\n"
        o += "  \"kernels\": {\"gemm\": \(GEMMKernel.best.rawValue.jsonQuoted), \"bf16\": \((BF16Kernel.best?.rawValue ?? "none").jsonQuoted), \"int8\": \(Int8Kernel.best.rawValue.jsonQuoted), "
        o += "\"available\": {\"gemm\": \(GEMMKernel.available.map(\.rawValue).joined(separator: ",").jsonQuoted), \"bf16\": \(BF16Kernel.available.map(\.rawValue).joined(separator: ",").jsonQuoted), \"int8\": \(Int8Kernel.available.map(\.rawValue).joined(separator: ",").jsonQuoted)}, "
        o += "\"forced\": {" + Machine.kernelOverrides.map { "\($0.key.jsonQuoted): \($0.value.jsonQuoted)" }.joined(separator: ", ") + "}},\n"
        o += "  \"settings\": {\"runs\": \(s.runs), \"warmup\": \(s.warmup), \"clip_seconds\": \(jsonNumber(s.clipSeconds)), \"frames\": \(s.frames), \"wav\": \(s.wav.jsonQuoted), \"threads\": \(s.threads), \"allocation_counter\": \(AllocationCounter.available)},\n"
        o += "  \"front_end\": {" + frontEnd.map { "\($0.0.jsonQuoted): \($0.1.json)" }.joined(separator: ", ") + "},\n"
        o += "  \"results\": [\n"
        o += results.map { r in
            var f = "    {\"model\": \(r.model.jsonQuoted), \"weights\": \(r.weights.jsonQuoted), \"precision\": \(r.precision.jsonQuoted), \"path\": \(r.path.jsonQuoted), "
            f += "\"parameters\": \(r.parameters), \"load_ms\": \(jsonNumber(round3(r.loadMs))),\n"
            f += "     \"mel_to_probs\": \(r.melToProbs.json),\n"
            f += "     \"wav_to_probs\": \(r.wavToProbs.json),\n"
            f += "     \"allocations_per_clip\": {\"mel_to_probs\": \(r.melAllocations?.json ?? "null"), \"wav_to_probs\": \(r.wavAllocations?.json ?? "null")}"
            if let d = r.maxAbsProbDiffVsFp32 { f += ",\n     \"max_abs_prob_diff_vs_fp32\": \(jsonNumber(d))" }
            if let t = r.top5SameAsFp32 { f += ", \"top5_same_as_fp32\": \(t)" }
            return f + "}"
        }.joined(separator: ",\n")
        o += "\n  ]"
        if let export { o += ",\n  \"export\": \(export.jsonQuoted)" }
        return o + "\n}"
    }

    static func table(settings s: Settings, frontEnd: [(String, Timing)], results: [BenchResult]) -> String {
        var rows: [[String]] = [["model", "precision", "params", "mel→probs best", "median", "WAV→probs best", "median",
                                 "max |Δp| vs fp32", "top-5", "allocs/clip (model)", "load", "path"]]
        for r in results {
            let allocs = r.melAllocations.map { "\($0.count) (\(bytes($0.bytes)))" } ?? "n/a"
            let diff = r.maxAbsProbDiffVsFp32.map { String(format: "%.2g", $0) } ?? "reference"
            let top5 = r.top5SameAsFp32.map { $0 ? "same" : "CHANGED" } ?? "–"
            rows.append([r.model, r.precision, String(format: "%.1f M", Double(r.parameters) / 1e6),
                         fmt(r.melToProbs.best) + " ms", fmt(r.melToProbs.median) + " ms",
                         fmt(r.wavToProbs.best) + " ms", fmt(r.wavToProbs.median) + " ms", diff, top5, allocs,
                         String(format: "%.0f ms", r.loadMs), r.path])
        }
        let widths = rows[0].indices.map { c in rows.map { $0[c].count }.max()! }
        var out = "ced bench: \(String(format: "%.2f", s.clipSeconds)) s clip (\(s.frames) frames), best and median of \(s.runs) runs after \(s.warmup) warm-up, \(s.threads) threads\n"
        out += "CPU: \(Machine.cpuModel) (\(Machine.vectorFlags))\n"
        let forced = Machine.kernelOverrides.map { "\($0.key)=\($0.value)" }
        out += "kernels: fp32 \(GEMMKernel.best), bf16 \(BF16Kernel.best?.rawValue ?? "none"), int8 \(Int8Kernel.best)"
        out += forced.isEmpty ? " (the fastest here)\n\n" : " (forced: \(forced.joined(separator: " ")))\n\n"
        for (i, row) in rows.enumerated() {
            out += zip(row, widths).enumerated().map { c, p in
                c < 2 || c == row.count - 1 ? p.0.padding(toLength: p.1, withPad: " ", startingAt: 0) : String(repeating: " ", count: p.1 - p.0.count) + p.0
            }.joined(separator: "  ") + "\n"
            if i == 0 { out += widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ") + "\n" }
        }
        out += "\nfront end (decode + resample + mel), best: "
        out += frontEnd.map { "\($0.0) \(fmt($0.1.best)) ms" }.joined(separator: ", ")
        out += "\nmax |Δp| vs fp32: on this clip; top-5: the five highest classes, in order, same as fp32's"
        if !AllocationCounter.available { out += "\nallocations: not measured (run under LD_PRELOAD with scripts/alloc_count.c, as scripts/bench.sh does)" }
        return out
    }

    static func bytes(_ n: UInt64) -> String {
        n >= 1 << 20 ? String(format: "%.1f MB", Double(n) / 1048576) : n >= 1024 ? String(format: "%.1f KB", Double(n) / 1024) : "\(n) B"
    }
}

private func fmt(_ ms: Double) -> String { String(format: ms < 100 ? "%.2f" : "%.1f", ms) }
private func round3(_ v: Double) -> Double { (v * 1000).rounded() / 1000 }

// MARK: Timing

/// Wall-clock timings of repeated calls, in milliseconds.
struct Timing {
    var samples: [Double]

    var best: Double { samples.min() ?? .nan }
    var median: Double {
        let s = samples.sorted()
        return s.isEmpty ? .nan : s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }
    var mean: Double { samples.reduce(0, +) / Double(max(1, samples.count)) }

    var json: String {
        "{\"best_ms\": \(jsonNumber(round3(best))), \"median_ms\": \(jsonNumber(round3(median))), \"mean_ms\": \(jsonNumber(round3(mean))), \"runs\": \(samples.count)}"
    }

    static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }
    static func ms(since start: UInt64) -> Double { Double(now() - start) / 1e6 }

    static func measure(warmup: Int, runs: Int, _ body: () throws -> Void) rethrows -> Timing {
        for _ in 0..<warmup { try body() }
        var samples: [Double] = []
        samples.reserveCapacity(runs)
        for _ in 0..<runs {
            let start = now()
            try body()
            samples.append(ms(since: start))
        }
        return Timing(samples: samples)
    }
}

// MARK: Allocation counting

/// Reads the process-wide malloc counters of scripts/alloc_count.c when that library is
/// preloaded (it exports `ced_alloc_stats`); otherwise allocations are not measured.
enum AllocationCounter {
    struct Delta {
        var count: UInt64
        var bytes: UInt64
        var json: String { "{\"count\": \(count), \"bytes\": \(bytes)}" }
    }

    private typealias Stats = @convention(c) (UnsafeMutablePointer<UInt64>) -> Void

    private static let stats: Stats? = {
        guard let handle = dlopen(nil, RTLD_NOW), let symbol = dlsym(handle, "ced_alloc_stats") else { return nil }
        return unsafeBitCast(symbol, to: Stats.self)
    }()

    static var available: Bool { stats != nil }

    private static func snapshot() -> (UInt64, UInt64)? {
        guard let stats else { return nil }
        var v: [UInt64] = [0, 0]
        stats(&v)
        return (v[0], v[1])
    }

    /// Heap allocations (calls to malloc, calloc, realloc, posix_memalign, aligned_alloc,
    /// memalign; all threads) per call of `body`, averaged over `runs` calls after one more.
    static func perCall(runs: Int, _ body: () throws -> Void) rethrows -> Delta? {
        guard available else { return nil }
        try body()
        let before = snapshot()!
        for _ in 0..<runs { try body() }
        let after = snapshot()!
        return Delta(count: (after.0 - before.0) / UInt64(runs), bytes: (after.1 - before.1) / UInt64(runs))
    }
}

// MARK: Machine

enum Machine {
    static let cpuinfo: String = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""

    static var cpuModel: String {
        for line in cpuinfo.split(separator: "\n") where line.hasPrefix("model name") {
            if let colon = line.firstIndex(of: ":") { return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces) }
        }
        return "unknown"
    }

    /// The vector extensions that matter for the kernels, as /proc/cpuinfo names them.
    static var vectorFlags: String {
        guard let line = cpuinfo.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return "" }
        let flags = Set(line.split(separator: " ").map(String.init))
        return ["avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx512_fp16", "amx_bf16", "amx_int8"].filter(flags.contains).joined(separator: " ")
    }

    /// The kernel choices forced through the environment, sorted by name.
    static var kernelOverrides: [(key: String, value: String)] {
        let env = ProcessInfo.processInfo.environment
        return ["CED_BF16_KERNEL", "CED_GEMM_KERNEL", "CED_INT8_KERNEL"].compactMap { k in
            env[k].flatMap { $0.isEmpty ? nil : (k, $0) }
        }
    }

    static var loadAverage: String {
        ((try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? "").split(separator: " ").prefix(3).joined(separator: " ")
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

    /// Trainable parameters (BatchNorm running statistics are buffers, not parameters).
    var parameters: Int { weights.parameterCount }

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

    /// Every tensor of `CedForAudioClassification` (mean pooling) with deterministic uniform
    /// values at plausible scales: fan-in-scaled matrices (activations keep unit scale
    /// through the 12 blocks), LayerNorm scales near 1, dB-like BatchNorm statistics, large
    /// positional embeddings and a head whose probabilities spread over (0, 1).
    static func randomWeights(config c: CedConfig, seed: UInt64) -> StateDict {
        var rng = SplitMix64(seed: seed)
        var t: [String: Tensor] = [:]
        let e = c.embedDim, h = c.mlpHiddenDim, ph = c.patchSize.frequency, pw = c.patchSize.time
        /// Uniform values with mean `mean` and standard deviation `std`.
        func fill(_ name: String, _ shape: [Int], std: Double, mean: Double = 0) {
            let n = shape.reduce(1, *)
            let a = std * 3.0.squareRoot()
            var v = [Float](repeating: 0, count: n)
            for i in 0..<n { v[i] = Float(mean + a * (2 * rng.uniform() - 1)) }
            t[name] = Tensor(shape: shape, scalars: v)
        }
        fill("encoder.init_bn.weight", [c.nMels], std: 0.1, mean: 1)
        fill("encoder.init_bn.bias", [c.nMels], std: 0.1)
        fill("encoder.init_bn.running_mean", [c.nMels], std: 10, mean: -40)
        fill("encoder.init_bn.running_var", [c.nMels], std: 50, mean: 250)
        fill("encoder.patch_embed.proj.weight", [e, 1, ph, pw], std: 1 / Double(ph * pw).squareRoot())
        fill("encoder.patch_embed.proj.bias", [e], std: 0.02)
        fill("encoder.time_pos_embed", [1, e, 1, c.maxTimePatches], std: 0.5)
        fill("encoder.freq_pos_embed", [1, e, c.frequencyPatches, 1], std: 0.5)
        for i in 0..<c.depth {
            let b = "encoder.blocks.\(i)"
            fill("\(b).norm1.weight", [e], std: 0.1, mean: 1)
            fill("\(b).norm1.bias", [e], std: 0.05)
            fill("\(b).attn.qkv.weight", [3 * e, e], std: 1.5 / Double(e).squareRoot())
            if c.qkvBias { fill("\(b).attn.qkv.bias", [3 * e], std: 0.02) }
            fill("\(b).attn.proj.weight", [e, e], std: 1 / Double(e).squareRoot())
            fill("\(b).attn.proj.bias", [e], std: 0.02)
            fill("\(b).norm2.weight", [e], std: 0.1, mean: 1)
            fill("\(b).norm2.bias", [e], std: 0.05)
            fill("\(b).mlp.fc1.weight", [h, e], std: 1 / Double(e).squareRoot())
            fill("\(b).mlp.fc1.bias", [h], std: 0.02)
            fill("\(b).mlp.fc2.weight", [e, h], std: 1 / Double(h).squareRoot())
            fill("\(b).mlp.fc2.bias", [e], std: 0.02)
        }
        fill("encoder.norm.weight", [e], std: 0.1, mean: 1)
        fill("encoder.norm.bias", [e], std: 0.05)
        fill("outputlayer.0.weight", [e], std: 0.1, mean: 1)
        fill("outputlayer.0.bias", [e], std: 0.05)
        fill("outputlayer.1.weight", [c.outputdim, e], std: 1.5 / Double(e).squareRoot())
        fill("outputlayer.1.bias", [c.outputdim], std: 0.3)
        return StateDict(tensors: t, source: "random ced-\(c.embedDim) (seed \(seed))")
    }
}

/// SplitMix64: a tiny, fast, well-mixed deterministic generator.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    mutating func uniform() -> Double { Double(next() >> 11) * 0x1p-53 }
}

// MARK: Audio

enum BenchAudio {
    /// A deterministic clip that looks like sound to the front end: a gliding harmonic tone,
    /// amplitude-modulated noise and clicks.
    static func clip(seconds: Double, sampleRate: Int) -> [Float] {
        let n = Int(seconds * Double(sampleRate))
        var rng = SplitMix64(seed: 42)
        var out = [Float](repeating: 0, count: n)
        var phase = 0.0
        let sr = Double(sampleRate)
        for i in 0..<n {
            let t = Double(i) / sr
            let f0 = 220 * (1 + 0.5 * sin(2 * .pi * 0.2 * t))
            phase += 2 * .pi * f0 / sr
            var v = 0.3 * sin(phase) + 0.15 * sin(2 * phase) + 0.08 * sin(3 * phase)
            v += 0.1 * (0.5 + 0.5 * sin(2 * .pi * 0.7 * t)) * (2 * rng.uniform() - 1)
            if i % (sampleRate / 4) < 40 { v += 0.5 * (2 * rng.uniform() - 1) }
            out[i] = Float(v)
        }
        return out
    }
}
