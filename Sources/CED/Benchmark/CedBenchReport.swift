import Foundation

/// What `ced bench` reports: the settings, the front end's timings and one result per model
/// and precision, as a JSON document or a table.
public struct CedBenchReport {
    public struct Settings: Sendable {
        public var runs: Int
        public var warmup: Int
        public var clipSeconds: Double
        public var frames: Int
        public var wav: String
        public var threads: Int

        public init(runs: Int, warmup: Int, clipSeconds: Double, frames: Int, wav: String, threads: Int) {
            (self.runs, self.warmup, self.clipSeconds, self.frames, self.wav, self.threads) = (runs, warmup, clipSeconds, frames, wav, threads)
        }
    }

    /// One model at one precision.
    public struct Result: Sendable {
        public var model: String
        public var weights: String
        public var precision: String
        /// The kernels the figure came from (`CedPrecision.kernelPath`).
        public var path: String
        public var parameters: Int
        public var loadMs: Double
        public var melToProbs: CedTiming
        public var wavToProbs: CedTiming
        public var melAllocations: CedAllocationCounter.Delta?
        public var wavAllocations: CedAllocationCounter.Delta?
        public var maxAbsProbDiffVsFp32: Double?
        public var top5SameAsFp32: Bool?

        public init(model: String, weights: String, precision: String, path: String, parameters: Int, loadMs: Double,
                    melToProbs: CedTiming, wavToProbs: CedTiming, melAllocations: CedAllocationCounter.Delta?,
                    wavAllocations: CedAllocationCounter.Delta?) {
            (self.model, self.weights, self.precision, self.path, self.parameters) = (model, weights, precision, path, parameters)
            (self.loadMs, self.melToProbs, self.wavToProbs) = (loadMs, melToProbs, wavToProbs)
            (self.melAllocations, self.wavAllocations) = (melAllocations, wavAllocations)
        }

        /// Builds `config`/`weights` at `precision` and times it: the model on `mel`, and the
        /// tagger on the WAV file at `wavPath` (decoding, features and model), `runs` calls
        /// after `warmup`, with allocations per call when counted. Returns the result and the
        /// model's output on `mel`.
        public static func measure(_ model: String, config: CedConfig, weights: StateDict, description: String,
                                   featureExtractor: CedFeatureExtractor, precision: CedPrecision, mel: Tensor, wavPath: String,
                                   warmup: Int, runs: Int) throws -> (result: Result, output: Tensor) {
            let loadStart = CedTiming.now()
            let network = try CedForAudioClassification(config: config, weights: weights, precision: precision)
            let loadMs = CedTiming.ms(since: loadStart)
            let tagger = try CedAudioTagger(model: network, featureExtractor: featureExtractor)
            let endToEnd = { _ = try tagger.scores(try Waveform(path: wavPath, sampleRate: tagger.samplingRate).samples) }
            let path = precision == .auto ? "auto → \(network.plan): \(network.plan.kernelPath)" : precision.kernelPath
            let result = Result(model: model, weights: description, precision: precision.rawValue, path: path,
                                parameters: CedParameterTable(config: config).trainableValues(in: weights), loadMs: loadMs,
                                melToProbs: try CedTiming.measure(warmup: warmup, runs: runs) { _ = try network(mel) },
                                wavToProbs: try CedTiming.measure(warmup: warmup, runs: runs, endToEnd),
                                melAllocations: try CedAllocationCounter.perCall(runs: 5) { _ = try network(mel) },
                                wavAllocations: try CedAllocationCounter.perCall(runs: 5, endToEnd))
            return (result, try network(mel))
        }

        /// Records how far `output` is from the fp32 model's: the largest probability change and
        /// whether the five highest classes are the same, in order.
        public mutating func compare(_ output: Tensor, toFP32 reference: Tensor) {
            func top5(_ v: [Float]) -> [Int] { Array(v.indices.sorted { v[$0] > v[$1] }.prefix(5)) }
            maxAbsProbDiffVsFp32 = zip(output.scalars, reference.scalars).map { abs(Double($0) - Double($1)) }.max() ?? 0
            top5SameAsFp32 = top5(output.scalars) == top5(reference.scalars)
        }

        /// `tiny fp32 [path]: mel→probs 1.23 ms, WAV→probs 4.56 ms`
        public var summary: String {
            "\(model) \(precision) [\(path)]: mel→probs \(fmt(melToProbs.best)) ms, WAV→probs \(fmt(wavToProbs.best)) ms"
        }
    }

    public var settings: Settings
    /// Front-end timings by input name.
    public var frontEnd: [(String, CedTiming)]
    public var results: [Result]
    /// Where the models, mel and probabilities were exported, if they were.
    public var export: String?
    /// The load average when the run started.
    public var loadAverage: String

    public init(settings: Settings, frontEnd: [(String, CedTiming)], results: [Result], export: String?, loadAverage: String) {
        (self.settings, self.frontEnd, self.results, self.export, self.loadAverage) = (settings, frontEnd, results, export, loadAverage)
    }

    public var json: String {
        let s = settings
        func q(_ s: String) -> String { CedJSONText.quoted(s) }
        func list(_ names: [String]) -> String { q(names.joined(separator: ",")) }
        var o = "{\n"
        o += "  \"tool\": \"ced bench\", \"version\": \(q(cedVersion)), \"date\": \(q(ISO8601DateFormatter().string(from: Date()))),\n"
        o += "  \"machine\": {\"cpu\": \(q(CedMachine.cpuModel)), \"cores\": \(ProcessInfo.processInfo.activeProcessorCount), "
            + "\"cpu_flags\": \(q(CedMachine.vectorFlags)), \"load_average_at_start\": \(q(loadAverage))},\n"
        o += "  \"kernels\": {\"gemm\": \(q(GEMMKernel.best.rawValue)), \"bf16\": \(q(BF16Kernel.best?.rawValue ?? "none")), "
            + "\"int8\": \(q(Int8Kernel.best.rawValue)), \"available\": {\"gemm\": \(list(GEMMKernel.available.map(\.rawValue))), "
            + "\"bf16\": \(list(BF16Kernel.available.map(\.rawValue))), \"int8\": \(list(Int8Kernel.available.map(\.rawValue)))}, "
        o += "\"forced\": {" + CedMachine.kernelOverrides.map { "\(q($0.key)): \(q($0.value))" }.joined(separator: ", ") + "}},\n"
        o += "  \"settings\": {\"runs\": \(s.runs), \"warmup\": \(s.warmup), \"clip_seconds\": \(CedJSONText.number(s.clipSeconds)), "
            + "\"frames\": \(s.frames), \"wav\": \(q(s.wav)), \"threads\": \(s.threads), "
            + "\"allocation_counter\": \(CedAllocationCounter.available)},\n"
        o += "  \"front_end\": {" + frontEnd.map { "\(q($0.0)): \($0.1.json)" }.joined(separator: ", ") + "},\n"
        o += "  \"results\": [\n"
        o += results.map { r in
            var f = "    {\"model\": \(q(r.model)), \"weights\": \(q(r.weights)), \"precision\": \(q(r.precision)), \"path\": \(q(r.path)), "
            f += "\"parameters\": \(r.parameters), \"load_ms\": \(CedJSONText.number((r.loadMs * 1000).rounded() / 1000)),\n"
            f += "     \"mel_to_probs\": \(r.melToProbs.json),\n"
            f += "     \"wav_to_probs\": \(r.wavToProbs.json),\n"
            f += "     \"allocations_per_clip\": {\"mel_to_probs\": \(r.melAllocations?.json ?? "null"), "
                + "\"wav_to_probs\": \(r.wavAllocations?.json ?? "null")}"
            if let d = r.maxAbsProbDiffVsFp32 { f += ",\n     \"max_abs_prob_diff_vs_fp32\": \(CedJSONText.number(d))" }
            if let t = r.top5SameAsFp32 { f += ", \"top5_same_as_fp32\": \(t)" }
            return f + "}"
        }.joined(separator: ",\n")
        o += "\n  ]"
        if let export { o += ",\n  \"export\": \(q(export))" }
        return o + "\n}"
    }

    public var table: String {
        let s = settings
        var rows: [[String]] = [["model", "precision", "params", "mel→probs best", "median", "WAV→probs best", "median",
                                 "max |Δp| vs fp32", "top-5", "allocs/clip (model)", "load", "path"]]
        for r in results {
            let allocs = r.melAllocations.map { "\($0.count) (\(Self.bytes($0.bytes)))" } ?? "n/a"
            let diff = r.maxAbsProbDiffVsFp32.map { String(format: "%.2g", $0) } ?? "reference"
            let top5 = r.top5SameAsFp32.map { $0 ? "same" : "CHANGED" } ?? "–"
            rows.append([r.model, r.precision, String(format: "%.1f M", Double(r.parameters) / 1e6),
                         fmt(r.melToProbs.best) + " ms", fmt(r.melToProbs.median) + " ms",
                         fmt(r.wavToProbs.best) + " ms", fmt(r.wavToProbs.median) + " ms", diff, top5, allocs,
                         String(format: "%.0f ms", r.loadMs), r.path])
        }
        let widths = rows[0].indices.map { c in rows.map { $0[c].count }.max()! }
        var out = "ced bench: \(String(format: "%.2f", s.clipSeconds)) s clip (\(s.frames) frames), best and median of \(s.runs) runs "
            + "after \(s.warmup) warm-up, \(s.threads) threads\n"
        out += "CPU: \(CedMachine.cpuModel) (\(CedMachine.vectorFlags))\n"
        let forced = CedMachine.kernelOverrides.map { "\($0.key)=\($0.value)" }
        out += "kernels: fp32 \(GEMMKernel.best), bf16 \(BF16Kernel.best?.rawValue ?? "none"), int8 \(Int8Kernel.best)"
        out += forced.isEmpty ? " (the fastest here)\n\n" : " (forced: \(forced.joined(separator: " ")))\n\n"
        for (i, row) in rows.enumerated() {
            out += zip(row, widths).enumerated().map { c, p in
                c < 2 || c == row.count - 1 ? TextColumns.left(p.0, p.1) : TextColumns.right(p.0, p.1)
            }.joined(separator: "  ") + "\n"
            if i == 0 { out += widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ") + "\n" }
        }
        out += "\nfront end (decode + resample + mel), best: "
        out += frontEnd.map { "\($0.0) \(fmt($0.1.best)) ms" }.joined(separator: ", ")
        out += "\nmax |Δp| vs fp32: on this clip; top-5: the five highest classes, in order, same as fp32's"
        if !CedAllocationCounter.available {
            out += "\nallocations: not measured (run under LD_PRELOAD with scripts/alloc_count.c, as scripts/bench.sh does)"
        }
        return out
    }

    static func bytes(_ n: UInt64) -> String {
        n >= 1 << 20 ? String(format: "%.1f MB", Double(n) / 1048576) : n >= 1024 ? String(format: "%.1f KB", Double(n) / 1024) : "\(n) B"
    }
}

private func fmt(_ ms: Double) -> String { String(format: ms < 100 ? "%.2f" : "%.1f", ms) }

/// What `ced bench-train` reports per model size: training-step timings per step and per
/// clip, CPU time, planned activation memory and peak memory.
public struct CedTrainingBenchRow: Codable, Sendable {
    public var model: String
    public var batch: Int
    public var frames: Int
    public var parameters: Int
    public var bestMsPerStep: Double
    public var medianMsPerStep: Double
    public var bestMsPerClip: Double
    public var medianMsPerClip: Double
    /// Median CPU time (user + system, all threads) of a step: the work, whatever else runs.
    public var cpuMsPerStep: Double
    public var activationMB: Double
    public var peakRssMB: Double
    public var threads: Int

    enum CodingKeys: String, CodingKey {
        case model, batch, frames, parameters, threads
        case bestMsPerStep = "best_ms_per_step", medianMsPerStep = "median_ms_per_step"
        case bestMsPerClip = "best_ms_per_clip", medianMsPerClip = "median_ms_per_clip"
        case cpuMsPerStep = "cpu_ms_per_step"
        case activationMB = "activation_mb", peakRssMB = "peak_rss_mb"
    }

    /// The row of `batch` clips of `frames` frames from step times and CPU times (ms).
    public init(model: String, batch: Int, frames: Int, parameters: Int, stepMs: [Double], cpuMs: [Double], activationBytes: Int) {
        let times = stepMs.sorted(), cpu = cpuMs.sorted()
        (self.model, self.batch, self.frames, self.parameters) = (model, batch, frames, parameters)
        (bestMsPerStep, medianMsPerStep) = (times[0], times[times.count / 2])
        (bestMsPerClip, medianMsPerClip) = (bestMsPerStep / Double(batch), medianMsPerStep / Double(batch))
        cpuMsPerStep = cpu[cpu.count / 2]
        activationMB = Double(activationBytes) / 1e6
        peakRssMB = CedMachine.peakRSSMegabytes()
        threads = CedCompute.threadLimit
    }

    /// The column titles of `tableRow`.
    public static let tableHeader = "model  batch  params   ms/step best  median   ms/clip best  median  CPU ms/step  activations  peak RSS"

    public var tableRow: String {
        String(format: "%-5@  %5d  %5.1f M  %12.1f  %6.1f  %12.2f  %6.2f  %11.0f  %8.0f MB  %5.0f MB",
               model as NSString, batch, Double(parameters) / 1e6, bestMsPerStep, medianMsPerStep,
               bestMsPerClip, medianMsPerClip, cpuMsPerStep, activationMB, peakRssMB)
    }
}
