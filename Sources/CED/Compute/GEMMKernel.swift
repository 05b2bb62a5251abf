import CEDKernels
import Foundation

/// A family of matrix-multiply microkernels. `GEMM` picks `.best` (from cpuid, once)
/// unless a call forces another one, which tests and benchmarks use to check every
/// variant the machine can run.
public enum GEMMKernel: String, Sendable, CaseIterable, CustomStringConvertible {
    /// AVX-512F + FMA, 14×32 register tile.
    case avx512
    /// AVX2 + FMA, 6×16 register tile.
    case avx2
    /// NEON (AArch64), 5×16 register tile, `fmla` by element (see PlatformKernels.swift).
    case neon
    /// `cblas_sgemm` (Accelerate on Apple platforms, OpenBLAS loaded at run time elsewhere)
    /// for the Linear and batched products; attention and training use the best tile kernel
    /// (`tileKernel`). See PlatformKernels.swift.
    case blas
    /// Plain C, 4×16 tile; runs anywhere.
    case portable

    /// The kernel `GEMM` uses: the fastest this CPU supports (`defaultKernel`), or the one
    /// the environment variable `CED_GEMM_KERNEL` (`avx512`, `avx2`, `neon`, `blas`,
    /// `portable`) forces. It also picks the variant of the row kernels (LayerNorm, softmax,
    /// GELU).
    public static let best: GEMMKernel = KernelOverride.requested("CED_GEMM_KERNEL") == nil
        ? defaultKernel : KernelOverride.choose("CED_GEMM_KERNEL", available: available)

    /// Kernels this CPU can run, fastest first.
    public static let available: [GEMMKernel] = {
        let features = Int(ced_cpu_features())
        var list: [GEMMKernel] = []
        if features & Int(CED_CPU_AVX512F) != 0 { list.append(.avx512) }
        if features & Int(CED_CPU_AVX2_FMA) != 0 { list.append(.avx2) }
        return platformAvailable(x86: list, features: features)
    }()

    public var description: String { rawValue }

    /// Register-tile rows.
    var mr: Int {
        switch self {
        case .avx512: return Int(CED_AVX512_MR)
        case .avx2: return Int(CED_AVX2_MR)
        case .neon: return Int(CED_NEON_MR)
        case .blas: return GEMMKernel.tileKernel.mr
        case .portable: return Int(CED_PORTABLE_MR)
        }
    }

    /// Register-tile columns (divides `packedPanelWidth`).
    var nr: Int {
        switch self {
        case .avx512: return Int(CED_AVX512_NR)
        case .avx2: return Int(CED_AVX2_NR)
        case .neon: return Int(CED_NEON_NR)
        case .blas: return GEMMKernel.tileKernel.nr
        case .portable: return Int(CED_PORTABLE_NR)
        }
    }

    typealias TileFunction = @convention(c) (UnsafePointer<ced_tile>?) -> Void

    var tileFunction: TileFunction {
        precondition(GEMMKernel.available.contains(self), "the \(self) GEMM kernel needs a CPU feature this machine lacks")
        switch self {
        case .avx512: return ced_tile_avx512
        case .avx2: return ced_tile_avx2
        case .neon: return ced_tile_neon
        case .blas: return GEMMKernel.tileKernel.tileFunction
        case .portable: return ced_tile_portable
        }
    }

    /// Argument of `ced_gelu` for this variant.
    var geluVariant: Int32 {
        switch self {
        case .avx512: return 2
        case .avx2: return 1
        case .neon: return Int32(CED_VARIANT_NEON)
        case .blas: return GEMMKernel.tileKernel.geluVariant
        case .portable: return 0
        }
    }
}

/// Width of the column panels B is packed into (a multiple of every kernel's NR).
let packedPanelWidth = 32

/// A family of bfloat16 matrix-multiply kernels (bf16 inputs rounded to nearest even,
/// float32 accumulation and epilogue), used for weights packed with `CedPrecision.bf16`.
/// `GEMM.linear` picks `.best` unless a call forces another one (tests, benchmarks).
public enum BF16Kernel: String, Sendable, CaseIterable, CustomStringConvertible {
    /// AMX tiles (`tdpbf16ps`), 32×32 blocks: Intel Sapphire Rapids and later.
    case amx
    /// AVX-512 BF16 (`vdpbf16ps`), 14×32 register tiles: e.g. Cooper Lake, AMD Zen 4.
    /// (On CPUs that also have AMX it runs at half the fp32 FMA rate, so AMX is preferred.)
    case avx512
    /// AArch64 FEAT_BF16 `bfmmla` (2×4 by 4×2 blocks, 16 multiply-adds an instruction), 4×16
    /// tiles: Graviton 3/4, Apple M2 and later, Ampere One.
    case bfmmla
    /// AArch64 FEAT_BF16 `bfdot` by element, 5×16 tiles (the same CPUs; forcible to compare).
    case bfdot

    /// Kernels this CPU (and operating system) can run, fastest first; empty when the CPU
    /// has no AVX-512 BF16, in which case `.bf16` weights fall back to float32.
    public static let available: [BF16Kernel] = {
        let features = Int(ced_cpu_features())
        var list: [BF16Kernel] = []
        if features & Int(CED_CPU_AMX_BF16) != 0 { list.append(.amx) }
        if features & Int(CED_CPU_AVX512_BF16) != 0 { list.append(.avx512) }
        if features & Int(CED_CPU_BF16) != 0 { list += [.bfmmla, .bfdot] }
        return list
    }()

    /// The bf16 kernel products use: the fastest here (nil when there is none), or the one
    /// the environment variable `CED_BF16_KERNEL` forces: `amx`, `avx512`, `bfmmla`, `bfdot`, or `none` (bf16
    /// then computes in float32, as on a CPU without bf16 support). `CED_BF16_KERNEL=avx512`
    /// on an AMX machine times the path of AVX-512 BF16 CPUs without AMX (e.g. AMD Zen 4/5).
    public static let best: BF16Kernel? = KernelOverride.chooseOptional("CED_BF16_KERNEL", available: available)

    public var description: String { rawValue }

    /// Rows of C one kernel call block covers (A is padded to a multiple of 32 rows).
    var mr: Int {
        switch self {
        case .amx: return Int(CED_AMX_MR)
        case .avx512: return Int(CED_BF16_AVX512_MR)
        case .bfmmla: return Int(CED_BF16_BFMMLA_MR)
        case .bfdot: return Int(CED_BF16_BFDOT_MR)
        }
    }
}

/// k of bf16 operands is padded with zeros to a multiple of this (one AMX tile row).
let bf16KAlignment = 32

/// A family of int8 matrix-multiply kernels (`CedPrecision.int8`: weights quantised per
/// output channel, activations per row, int32 accumulation, float32 epilogue).
/// `GEMM.linear` picks `.best` unless a call forces another one (tests, benchmarks).
/// AMX-INT8 (`tdpbusd`) has no kernel yet: AMX CPUs run the AVX-512 VNNI one.
public enum Int8Kernel: String, Sendable, CaseIterable, CustomStringConvertible {
    /// AVX-512 VNNI (`vpdpbusd` on zmm), 14×32 register tiles: Intel Cascade Lake and
    /// later, AMD Zen 4 and later.
    case avx512vnni
    /// AVX-VNNI (VEX `vpdpbusd` on ymm), 6×16 tiles: Intel Alder Lake and later, AMD Zen 5
    /// client CPUs, without AVX-512.
    case avxvnni
    /// AArch64 FEAT_I8MM `usmmla` (2×8 by 8×2 blocks), 4×16 tiles: Graviton 3/4, Apple M2+.
    case i8mm
    /// AArch64 FEAT_DotProd `sdot` by element, 5×16 tiles: Apple M1+, Graviton 2+, Cortex-A76+.
    case dotprod
    /// Plain C, 4×32 tiles; runs anywhere (slow: a fallback and a cross-check).
    case portable

    /// Kernels this CPU can run, fastest first (`.portable` always).
    public static let available: [Int8Kernel] = {
        let features = Int(ced_cpu_features())
        var list: [Int8Kernel] = []
        if features & Int(CED_CPU_AVX512_VNNI) != 0 { list.append(.avx512vnni) }
        if features & Int(CED_CPU_AVX_VNNI) != 0 { list.append(.avxvnni) }
        if features & Int(CED_CPU_I8MM) != 0 { list.append(.i8mm) }
        if features & Int(CED_CPU_DOTPROD) != 0 { list.append(.dotprod) }
        list.append(.portable)
        return list
    }()

    /// The int8 kernel products use: the fastest here, or the one the environment variable
    /// `CED_INT8_KERNEL` (`avx512vnni`, `avxvnni`, `i8mm`, `dotprod`, `portable`) forces.
    public static let best: Int8Kernel = KernelOverride.choose("CED_INT8_KERNEL", available: available)

    public var description: String { rawValue }

    /// Register-tile rows.
    var mr: Int {
        switch self {
        case .avx512vnni: return Int(CED_Q8_AVX512_MR)
        case .avxvnni: return Int(CED_Q8_AVXVNNI_MR)
        case .i8mm: return Int(CED_Q8_I8MM_MR)
        case .dotprod: return Int(CED_Q8_DOTPROD_MR)
        case .portable: return Int(CED_Q8_PORTABLE_MR)
        }
    }

    /// Register-tile columns (divides `packedPanelWidth`).
    var nr: Int {
        switch self {
        case .avx512vnni: return Int(CED_Q8_AVX512_NR)
        case .avxvnni: return Int(CED_Q8_AVXVNNI_NR)
        case .i8mm: return Int(CED_Q8_I8MM_NR)
        case .dotprod: return Int(CED_Q8_DOTPROD_NR)
        case .portable: return Int(CED_Q8_PORTABLE_NR)
        }
    }

    typealias TileFunction = @convention(c) (UnsafePointer<ced_q8_tile>?) -> Void

    var tileFunction: TileFunction {
        precondition(Int8Kernel.available.contains(self), "the \(self) int8 kernel needs a CPU feature this machine lacks")
        switch self {
        case .avx512vnni: return ced_tile_q8_avx512
        case .avxvnni: return ced_tile_q8_avxvnni
        case .i8mm: return ced_tile_q8_i8mm
        case .dotprod: return ced_tile_q8_dotprod
        case .portable: return ced_tile_q8_portable
        }
    }

    /// `variant` argument of `ced_q8_quantize_rows` (the AVX-512 one needs AVX-512F/BW,
    /// which every AVX-512 VNNI CPU has; on AArch64 1 selects the NEON one).
    var quantizeVariant: Int32 { self == .avx512vnni || self == .i8mm || self == .dotprod ? 1 : 0 }
}

/// Kernel choice forced through the environment (`CED_GEMM_KERNEL`, `CED_BF16_KERNEL`,
/// `CED_INT8_KERNEL`), read once per process, so one machine can time the paths another
/// would take. A name the CPU cannot run, or an unknown one, stops the process with a
/// message: a benchmark must not silently time something else.
enum KernelOverride {
    static func requested(_ variable: String) -> String? {
        guard let value = ProcessInfo.processInfo.environment[variable]?.trimmingCharacters(in: .whitespaces).lowercased(),
              !value.isEmpty else { return nil }
        return value
    }

    static func choose<K: CaseIterable & RawRepresentable & Equatable>(_ variable: String, available: [K]) -> K
    where K.RawValue == String {
        guard let name = requested(variable) else { return available[0] }
        return pick(name, variable: variable, available: available)
    }

    /// As `choose`, for a family that may be absent (`none` forces its absence).
    static func chooseOptional<K: CaseIterable & RawRepresentable & Equatable>(_ variable: String, available: [K]) -> K?
    where K.RawValue == String {
        guard let name = requested(variable) else { return available.first }
        if name == "none" { return nil }
        return pick(name, variable: variable, available: available)
    }

    private static func pick<K: CaseIterable & RawRepresentable & Equatable>(_ name: String, variable: String,
                                                                            available: [K]) -> K
    where K.RawValue == String {
        let names = K.allCases.map(\.rawValue)
        guard let kernel = K(rawValue: name) else {
            fatalError("\(variable)=\(name): unknown kernel (one of \(names.joined(separator: ", ")))")
        }
        guard available.contains(kernel) else {
            fatalError("\(variable)=\(name): this CPU cannot run it (available: \(available.map(\.rawValue).joined(separator: ", ")))")
        }
        return kernel
    }
}
