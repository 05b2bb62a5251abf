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
