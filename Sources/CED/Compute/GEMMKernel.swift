import CEDKernels

/// A family of matrix-multiply microkernels. `GEMM` picks `.best` (from cpuid, once)
/// unless a call forces another one, which tests and benchmarks use to check every
/// variant the machine can run.
public enum GEMMKernel: String, Sendable, CaseIterable, CustomStringConvertible {
    /// AVX-512F + FMA, 14×32 register tile.
    case avx512
    /// AVX2 + FMA, 6×16 register tile.
    case avx2
    /// Plain C, 4×16 tile; runs anywhere.
    case portable

    /// The fastest kernel this CPU supports.
    public static let best: GEMMKernel = available[0]

    /// Kernels this CPU can run, fastest first.
    public static let available: [GEMMKernel] = {
        let features = Int(ced_cpu_features())
        var list: [GEMMKernel] = []
        if features & Int(CED_CPU_AVX512F) != 0 { list.append(.avx512) }
        if features & Int(CED_CPU_AVX2_FMA) != 0 { list.append(.avx2) }
        list.append(.portable)
        return list
    }()

    public var description: String { rawValue }

    /// Register-tile rows.
    var mr: Int {
        switch self {
        case .avx512: return Int(CED_AVX512_MR)
        case .avx2: return Int(CED_AVX2_MR)
        case .portable: return Int(CED_PORTABLE_MR)
        }
    }

    /// Register-tile columns (divides `packedPanelWidth`).
    var nr: Int {
        switch self {
        case .avx512: return Int(CED_AVX512_NR)
        case .avx2: return Int(CED_AVX2_NR)
        case .portable: return Int(CED_PORTABLE_NR)
        }
    }

    typealias TileFunction = @convention(c) (UnsafePointer<ced_tile>?) -> Void

    var tileFunction: TileFunction {
        precondition(GEMMKernel.available.contains(self), "the \(self) GEMM kernel needs a CPU feature this machine lacks")
        switch self {
        case .avx512: return ced_tile_avx512
        case .avx2: return ced_tile_avx2
        case .portable: return ced_tile_portable
        }
    }

    /// Argument of `ced_gelu` for this variant.
    var geluVariant: Int32 {
        switch self {
        case .avx512: return 2
        case .avx2: return 1
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

    /// Kernels this CPU (and operating system) can run, fastest first; empty when the CPU
    /// has no AVX-512 BF16, in which case `.bf16` weights fall back to float32.
    public static let available: [BF16Kernel] = {
        let features = Int(ced_cpu_features())
        var list: [BF16Kernel] = []
        if features & Int(CED_CPU_AMX_BF16) != 0 { list.append(.amx) }
        if features & Int(CED_CPU_AVX512_BF16) != 0 { list.append(.avx512) }
        return list
    }()

    /// The fastest bf16 kernel here, nil when there is none.
    public static let best: BF16Kernel? = available.first

    public var description: String { rawValue }

    /// Rows of C one kernel call block covers (A is padded to a multiple of 32 rows).
    var mr: Int {
        switch self {
        case .amx: return Int(CED_AMX_MR)
        case .avx512: return Int(CED_BF16_AVX512_MR)
        }
    }
}

/// k of bf16 operands is padded with zeros to a multiple of this (one AMX tile row).
let bf16KAlignment = 32
