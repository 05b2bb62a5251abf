import Foundation

/// Chooses `CedPrecision.auto`'s plan: the fastest plan on this CPU among those that keep
/// the accuracy bound (`CedPrecisionPlan.accurate`), by timing the model's own block (one
/// transformer block of the model's shapes with random weights, on a 10 s chunk) in each
/// plan. Whether bf16 or int8 pays depends on the CPU, not on a rule one can write down from
/// its flags (Intel CPUs without AMX have AVX-512 BF16 that is no faster than fp32 FMA; AMD
/// Zen 4/5 run it at twice the rate), so it is measured, once per CPU and model shape: the
/// result is kept in memory and in `precision.json` in the cache folder
/// (`$CED_CACHE_DIR`, else `$XDG_CACHE_HOME/ced`, else `~/.cache/ced`).
///
/// A reduced plan is chosen only when it is at least 5 % faster than fp32, so `auto` is
/// never slower than fp32. The same measurement tells when an explicitly chosen mode is
/// slower than fp32 here (`slowdown(of:for:)`).
public final class CedPrecisionAdvisor: @unchecked Sendable {
    /// One measurement of a model shape on this CPU.
    public struct Choice: Sendable, Codable, Equatable {
        /// The plan `auto` uses.
        public var plan: CedPrecisionPlan
        /// Milliseconds per block (best of the rounds) of every plan measured, by its
        /// description (`fp32`, `bf16`, `int8`, `fc1 int8, rest fp32`, …).
        public var milliseconds: [String: Double]
        /// The CPU and kernels it was measured with.
        public var machine: String
    }

    public static let shared = CedPrecisionAdvisor()

    /// Where choices are kept between runs (nil: memory only).
    let cacheFile: URL?
    private let lock = NSLock()
    private var memory: [String: Choice] = [:]

    public init(cacheFile: URL? = CedPrecisionAdvisor.defaultCacheFile()) {
        self.cacheFile = cacheFile
    }

    public static func defaultCacheFile(environment: [String: String] = ProcessInfo.processInfo.environment) -> URL {
        EmbeddingCache.defaultDirectory(environment: environment).deletingLastPathComponent().appendingPathComponent("precision.json")
    }

    /// The plans measured: the accurate candidates, and the bf16 and int8 modes (to tell
    /// whether they pay here).
    static var measured: [CedPrecisionPlan] {
        var plans = CedPrecisionPlan.accurate
        for p in [CedPrecisionPlan.bf16, .int8] where !plans.contains(p) && (p != .bf16 || BF16Kernel.best != nil) { plans.append(p) }
        return plans
    }

    /// What identifies a measurement: the CPU, the kernels chosen (environment overrides
    /// included) and the model's shape.
    static func key(_ c: CedConfig) -> String {
        #if DEBUG
        let build = "debug"
        #else
        let build = "release"
        #endif
        return "v1|\(build)|\(machine)|e\(c.embedDim) h\(c.numHeads) m\(c.mlpHiddenDim) qkvb\(c.qkvBias) p\(c.patchSize.frequency)x\(c.patchSize.time) s\(c.patchStride.frequency)x\(c.patchStride.time) n\(c.nMels) t\(c.targetLength) \(c.pooling.hasClsToken ? "cls" : "")"
    }

    static var machine: String {
        let info = CedMachine.cpuinfo.split(separator: "\n")
        func field(_ name: String) -> String {
            guard let line = info.first(where: { $0.hasPrefix(name) }), let colon = line.firstIndex(of: ":") else { return "?" }
            return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let kernels = "fp32 \(GEMMKernel.best), bf16 \(BF16Kernel.best.map(\.rawValue) ?? "none"), int8 \(Int8Kernel.best)"
        return "\(CedMachine.cpuModel) (family \(field("cpu family")), model \(field("model\t"))); \(kernels)"
    }

    /// `auto`'s choice for a model shape on this CPU: cached, or measured now (about a
    /// second for CED-Base, a few milliseconds for CED-Tiny).
    public func choice(for config: CedConfig) -> Choice {
        let key = Self.key(config)
        lock.lock()
        defer { lock.unlock() }
        if let c = memory[key] { return c }
        if let c = readCache()[key], Set(c.milliseconds.keys) == Set(Self.measured.map(\.description)) {
            memory[key] = c
            return c
        }
        let c = measure(config)
        memory[key] = c
        writeCache(key, c)
        return c
    }

    /// How many times slower than fp32 a mode runs here (nil when it is not slower), from
    /// the same measurement as `auto`.
    public func slowdown(of precision: CedPrecision, for config: CedConfig) -> Double? {
        guard precision != .fp32, precision != .auto, precision.isSupported else { return nil }
        let c = choice(for: config)
        guard let own = c.milliseconds[precision.plan(for: config).description], let fp32 = c.milliseconds["fp32"],
              own > fp32 * 1.02 else { return nil }
        return own / fp32
    }

    /// One line for a user who chose `precision` explicitly when it is slower than fp32
    /// here (nil otherwise): how much slower, and what `auto` picks.
    public func warning(for precision: CedPrecision, config: CedConfig) -> String? {
        guard let r = slowdown(of: precision, for: config) else { return nil }
        return String(format: "--precision %@ is %.2f× slower than fp32 on this CPU (%@, measured on the model's own block); --precision auto picks %@",
                      precision.rawValue, r, CedMachine.cpuModel, choice(for: config).plan.description)
    }

    /// `auto`'s choice in words: the plan, its kernels, and the milliseconds per block of
    /// every plan measured.
    public func summary(for config: CedConfig) -> String {
        let c = choice(for: config)
        let times = c.milliseconds.sorted { $0.value < $1.value }.map { String(format: "%@ %.3f ms", $0.key, $0.value) }
        return "\(c.plan) [\(c.plan.kernelPath)]; per block: \(times.joined(separator: ", "))"
    }

    // MARK: Measuring

    func measure(_ config: CedConfig) -> Choice {
        var c = config
        c.depth = 1
        var rng = TrainingRandom(seed: 0xA0_70)
        let weights = CedParameterTable(config: c).randomWeights(rng: &rng, scheme: .trainedScale)
        let frames = min(c.targetLength, 1001)
        let mel = Tensor(shape: [c.nMels, frames], scalars: (0 ..< c.nMels * frames).map { _ in Float(-50 + 20 * rng.nextDouble()) })
        let plans = Self.measured
        let models = plans.compactMap { try? CedForAudioClassification(config: c, weights: weights, plan: $0) }
        guard models.count == plans.count else { return Choice(plan: .fp32, milliseconds: [:], machine: Self.machine) }
        var best = [Double](repeating: .infinity, count: plans.count)
        // Rounds taking turns, so that a slow moment of the machine hits every plan alike.
        for round in 0..<6 {
            for (i, m) in models.enumerated() {
                let t0 = DispatchTime.now().uptimeNanoseconds
                _ = try? m(mel)
                let ms = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
                if round > 0 { best[i] = min(best[i], ms) }
            }
        }
        var times: [String: Double] = [:]
        for (p, t) in zip(plans, best) { times[p.description] = (t * 1000).rounded() / 1000 }
        let fp32 = best[plans.firstIndex(of: .fp32)!]
        var chosen = CedPrecisionPlan.fp32, chosenTime = fp32
        for (p, t) in zip(plans, best) where CedPrecisionPlan.accurate.contains(p) && t < chosenTime && t < 0.95 * fp32 {
            chosen = p
            chosenTime = t
        }
        return Choice(plan: chosen, milliseconds: times, machine: Self.machine)
    }

    // MARK: The cache file

    private func readCache() -> [String: Choice] {
        guard let url = cacheFile, let data = try? Data(contentsOf: url) else { return [:] }
        return (try? JSONDecoder().decode([String: Choice].self, from: data)) ?? [:]
    }

    /// Adds a choice to the cache file (atomically; a cache that cannot be written only
    /// costs a measurement next time).
    private func writeCache(_ key: String, _ choice: Choice) {
        guard let url = cacheFile else { return }
        var all = readCache()
        all[key] = choice
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        guard let data = try? encoder.encode(all) else { return }
        try? FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try? data.write(to: url, options: .atomic)
    }
}
