import CEDKernels

// The platform-dependent part of the kernel choice (issue 20): the AArch64 kernels (NEON
// fp32 tiles and row kernels; `sdot`/`usmmla` int8 and `bfdot`/`bfmmla` bf16 tiles where the
// CPU has FEAT_DotProd, FEAT_I8MM, FEAT_BF16) and the BLAS path (`cblas_sgemm` from
// Accelerate on Apple platforms, from OpenBLAS loaded at run time elsewhere).
//
// Default fp32 path:
// - Apple platforms: BLAS (Accelerate), when it loads. Apple's CPUs have a matrix unit (AMX
//   on M1–M3 and A13+, SME on M4) that only Accelerate reaches; its fp32 throughput is a
//   multiple of the NEON pipes of a core (whisper.cpp measured Accelerate as the fastest CPU
//   path on Apple silicon). Our bias/GELU/residual epilogue then runs as one extra pass over
//   C. (Reasoning only: no Apple machine was available to measure it.)
// - Elsewhere: the tile kernels (NEON on AArch64, AVX-512/AVX2 on x86), whose epilogues are
//   fused into the product; BLAS is opt-in (`CED_GEMM_KERNEL=blas`).

extension GEMMKernel {
    /// The fastest register-tile kernel of this CPU, whatever `CED_GEMM_KERNEL` says: what
    /// `.blas` uses for attention, training products and the row kernels.
    static let tileKernel: GEMMKernel = {
        let features = Int(ced_cpu_features())
        if features & Int(CED_CPU_NEON) != 0 { return .neon }
        if features & Int(CED_CPU_AVX512F) != 0 { return .avx512 }
        if features & Int(CED_CPU_AVX2_FMA) != 0 { return .avx2 }
        return .portable
    }()

    /// The register-tile kernel behind this path (`tileKernel` for `.blas`, else itself).
    var tile: GEMMKernel { self == .blas ? GEMMKernel.tileKernel : self }

    /// Whether `cblas_sgemm` could be loaded (loads it on first use).
    static var blasLoads: Bool { ced_blas_available() != 0 }

    /// `available` from the x86 kernels the CPU runs: the NEON tile on AArch64, BLAS when its
    /// library loads (first on Apple platforms, see above), portable C last.
    static func platformAvailable(x86: [GEMMKernel], features: Int) -> [GEMMKernel] {
        var tiles = x86
        if features & Int(CED_CPU_NEON) != 0 { tiles.insert(.neon, at: 0) }
        guard blasLoads else { return tiles + [.portable] }
        #if canImport(Darwin)
        return [.blas] + tiles + [.portable]
        #else
        return tiles + [.blas, .portable]
        #endif
    }

    /// `best` when the environment forces nothing: BLAS on Apple platforms (when Accelerate
    /// loads), the tile kernel elsewhere (without loading a BLAS library).
    static var defaultKernel: GEMMKernel {
        #if canImport(Darwin)
        return blasLoads ? .blas : tileKernel
        #else
        return tileKernel
        #endif
    }

    /// What `ced bench` prints for this path: the kernel, and for BLAS the library and the
    /// tile kernel of the rest (e.g. `blas (Accelerate) + neon tiles`).
    public var pathName: String {
        guard self == .blas else { return rawValue }
        return "blas (\(String(cString: ced_blas_name()))) + \(GEMMKernel.tileKernel) tiles"
    }
}

extension BF16Kernel {
    /// Register-tile columns.
    var nr: Int {
        switch self {
        case .amx: return Int(CED_AMX_NR)
        case .avx512: return Int(CED_BF16_AVX512_NR)
        case .bfmmla: return Int(CED_BF16_BFMMLA_NR)
        case .bfdot: return Int(CED_BF16_BFDOT_NR)
        }
    }

    typealias TileFunction = @convention(c) (UnsafePointer<ced_tile>?) -> Void

    /// The `ced_tile` function of the register-tile kernels (AMX works on whole blocks instead).
    var tileFunction: TileFunction {
        precondition(BF16Kernel.available.contains(self), "the \(self) bf16 kernel needs a CPU feature this machine lacks")
        switch self {
        case .amx: preconditionFailure("AMX has no register-tile function")
        case .avx512: return ced_tile_bf16_avx512
        case .bfmmla: return ced_tile_bf16_bfmmla
        case .bfdot: return ced_tile_bf16_bfdot
        }
    }
}
