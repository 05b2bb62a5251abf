import Foundation
#if canImport(Darwin)
import Darwin
#endif

/// What differs between the platforms the library builds for (macOS, iOS/iPadOS, Linux),
/// in one place: paths, subprocess support (see Subprocess.swift), the capture backend,
/// resource-usage units and the CPU's name. The kernels' platform choices are in
/// Compute/PlatformKernels.swift and Compute/PlatformBLAS.swift.
public enum CedPlatform {
    /// Whether this platform can run other programs (ffmpeg, for audio that is not WAV and
    /// for capture devices): macOS and Linux can; iOS, iPadOS, tvOS, watchOS and visionOS
    /// cannot. Elsewhere those calls throw `AudioError` (`.ffmpegNotFound`) saying so; WAV,
    /// raw PCM and samples in memory work everywhere.
    public static let hasSubprocesses: Bool = Subprocess.isSupported

    /// The user's home directory: `HOME` when set, else the system's idea of it (on iOS, the
    /// app's sandbox).
    static func homeDirectory(environment: [String: String]) -> URL {
        if let home = environment["HOME"], !home.isEmpty { return URL(fileURLWithPath: home) }
        return URL(fileURLWithPath: NSHomeDirectory())
    }

    /// Where per-user caches go by default below the home directory: `Library/Caches` on
    /// Apple platforms, `.cache` elsewhere (XDG).
    static let cacheSubdirectory: String = {
        #if canImport(Darwin)
        return "Library/Caches"
        #else
        return ".cache"
        #endif
    }()

    /// The capture backend of ffmpeg on this platform, and how ffmpeg lists its devices.
    static var defaultCaptureBackend: String {
        #if os(macOS)
        return "avfoundation"
        #else
        let runtime = ProcessInfo.processInfo.environment["XDG_RUNTIME_DIR"] ?? "/run/user/\(getuid())"
        if ProcessInfo.processInfo.environment["PULSE_SERVER"] != nil
            || FileManager.default.fileExists(atPath: runtime + "/pulse/native") {
            return "pulse"
        }
        return "alsa"
        #endif
    }

    static var captureDeviceListings: [[String]] {
        #if os(macOS)
        return [["-hide_banner", "-f", "avfoundation", "-list_devices", "true", "-i", ""]]
        #else
        return [["-hide_banner", "-sources", "pulse"], ["-hide_banner", "-sources", "alsa"]]
        #endif
    }

    /// Bytes per unit of `rusage.ru_maxrss` (kilobytes on Linux, bytes on Apple platforms).
    static let maxRSSUnit: Double = {
        #if os(Linux)
        return 1024
        #else
        return 1
        #endif
    }()

    /// The CPU's name where /proc/cpuinfo has no "model name" (AArch64 Linux names the
    /// implementer and part instead; Apple platforms have no /proc).
    static func cpuName(cpuinfo: String) -> String? {
        #if canImport(Darwin)
        var size = 0
        if sysctlbyname("machdep.cpu.brand_string", nil, &size, nil, 0) == 0, size > 1 {
            var bytes = [CChar](repeating: 0, count: size)
            if sysctlbyname("machdep.cpu.brand_string", &bytes, &size, nil, 0) == 0 {
                return String(cString: bytes)
            }
        }
        return nil
        #else
        func field(_ name: String) -> String? {
            guard let line = cpuinfo.split(separator: "\n").first(where: { $0.hasPrefix(name) }),
                  let colon = line.firstIndex(of: ":") else { return nil }
            return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        guard let implementer = field("CPU implementer"), let part = field("CPU part") else { return nil }
        return "AArch64 CPU implementer \(implementer) part \(part)"
        #endif
    }
}
