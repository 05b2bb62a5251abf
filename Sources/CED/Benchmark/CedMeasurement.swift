import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Wall-clock timings of repeated calls, in milliseconds (`ced bench`).
public struct CedTiming: Sendable {
    public var samples: [Double]

    public init(samples: [Double]) { self.samples = samples }

    public var best: Double { samples.min() ?? .nan }
    public var median: Double {
        let s = samples.sorted()
        return s.isEmpty ? .nan : s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }
    public var mean: Double { samples.reduce(0, +) / Double(max(1, samples.count)) }

    /// `{"best_ms", "median_ms", "mean_ms", "runs"}`, times rounded to microseconds.
    public var json: String {
        func ms(_ v: Double) -> String { CedJSONText.number((v * 1000).rounded() / 1000) }
        return "{\"best_ms\": \(ms(best)), \"median_ms\": \(ms(median)), \"mean_ms\": \(ms(mean)), \"runs\": \(samples.count)}"
    }

    /// A monotonic clock in nanoseconds.
    public static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }
    /// Milliseconds since a `now()`.
    public static func ms(since start: UInt64) -> Double { Double(now() - start) / 1e6 }

    /// Times `runs` calls of `body` after `warmup` untimed ones.
    public static func measure(warmup: Int, runs: Int, _ body: () throws -> Void) rethrows -> CedTiming {
        for _ in 0..<warmup { try body() }
        var samples: [Double] = []
        samples.reserveCapacity(runs)
        for _ in 0..<runs {
            let start = now()
            try body()
            samples.append(ms(since: start))
        }
        return CedTiming(samples: samples)
    }
}

/// Reads the process-wide malloc counters of scripts/alloc_count.c when that library is
/// preloaded (it exports `ced_alloc_stats`); otherwise allocations are not measured.
public enum CedAllocationCounter {
    public struct Delta: Sendable {
        public var count: UInt64
        public var bytes: UInt64
        public var json: String { "{\"count\": \(count), \"bytes\": \(bytes)}" }
    }

    private typealias Stats = @convention(c) (UnsafeMutablePointer<UInt64>) -> Void

    nonisolated(unsafe) private static let stats: Stats? = {
        guard let handle = dlopen(nil, RTLD_NOW), let symbol = dlsym(handle, "ced_alloc_stats") else { return nil }
        return unsafeBitCast(symbol, to: Stats.self)
    }()

    public static var available: Bool { stats != nil }

    private static func snapshot() -> (UInt64, UInt64)? {
        guard let stats else { return nil }
        var v: [UInt64] = [0, 0]
        stats(&v)
        return (v[0], v[1])
    }

    /// Heap allocations (calls to malloc, calloc, realloc, posix_memalign, aligned_alloc,
    /// memalign; all threads) per call of `body`, averaged over `runs` calls after one more.
    public static func perCall(runs: Int, _ body: () throws -> Void) rethrows -> Delta? {
        guard available else { return nil }
        try body()
        let before = snapshot()!
        for _ in 0..<runs { try body() }
        let after = snapshot()!
        return Delta(count: (after.0 - before.0) / UInt64(runs), bytes: (after.1 - before.1) / UInt64(runs))
    }
}

/// The machine a benchmark runs on: CPU, the vector extensions the kernels use, forced
/// kernels, load, and the process's CPU time and peak memory.
public enum CedMachine {
    static let cpuinfo: String = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""

    public static var cpuModel: String {
        for line in cpuinfo.split(separator: "\n") where line.hasPrefix("model name") {
            if let colon = line.firstIndex(of: ":") { return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces) }
        }
        return CedPlatform.cpuName(cpuinfo: cpuinfo) ?? "unknown"
    }

    /// The vector extensions that matter for the kernels, as /proc/cpuinfo names them.
    public static var vectorFlags: String {
        // x86 "flags"; AArch64 Linux "Features" (asimd = NEON, asimddp = DotProd).
        guard let line = cpuinfo.split(separator: "\n").first(where: { $0.hasPrefix("flags") || $0.hasPrefix("Features") })
        else { return "" }
        let flags = Set(line.split(separator: " ").map(String.init))
        return ["avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx512_fp16", "amx_bf16", "amx_int8",
                "asimd", "asimddp", "i8mm", "bf16", "sve"]
            .filter(flags.contains).joined(separator: " ")
    }

    /// The kernel choices forced through the environment, sorted by name.
    public static var kernelOverrides: [(key: String, value: String)] {
        let env = ProcessInfo.processInfo.environment
        return ["CED_BF16_KERNEL", "CED_GEMM_KERNEL", "CED_INT8_KERNEL"].compactMap { k in
            env[k].flatMap { $0.isEmpty ? nil : (k, $0) }
        }
    }

    /// The 1, 5 and 15 minute load averages.
    public static var loadAverage: String {
        ((try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? "").split(separator: " ").prefix(3).joined(separator: " ")
    }

    /// CPU time of the process so far (user + system, every thread), in seconds.
    public static func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(rusageSelf, &usage)
        func s(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) * 1e-6 }
        return s(usage.ru_utime) + s(usage.ru_stime)
    }

    /// The process's peak resident set in MB (ru_maxrss: kilobytes on Linux, bytes on macOS).
    public static func peakRSSMegabytes() -> Double {
        var usage = rusage()
        getrusage(rusageSelf, &usage)
        return Double(usage.ru_maxrss) * CedPlatform.maxRSSUnit / (1024 * 1024)
    }

    #if os(Linux)
    private static let rusageSelf = __rusage_who_t(RUSAGE_SELF.rawValue)
    #else
    private static let rusageSelf = RUSAGE_SELF
    #endif
}
