/// Arithmetic used for the transformer's matrix products.
public enum CedPrecision: String, Sendable, CaseIterable, Codable {
    /// float32 everywhere: matches the PyTorch reference within float32 rounding (the default).
    case fp32
    /// bfloat16 inputs with float32 accumulation for the encoder's matrix products, opt-in
    /// and faster on CPUs with AMX or fast AVX-512 BF16 (`BF16Kernel`; AMD Zen 4/5): the
    /// Linear layers of every block and the attention products (Q·Kᵀ and P·V). The patch
    /// embedding, LayerNorm, softmax and the classification head stay float32; GELU is
    /// computed in float32 with a faster approximation (absolute error < 2e-7·max(1, |x|))
    /// since its output is rounded to bf16 anyway. On the tiny reference model the class
    /// probabilities stay within 0.006 of float32 and the top 5 are unchanged. On a CPU
    /// without AVX-512 BF16 it falls back to `.fp32` (same results as `.fp32`);
    /// `CedPrecision.bf16.isSupported` tells which applies. On Intel CPUs without AMX,
    /// `vdpbf16ps` does no more multiply-adds per cycle than fp32 FMA, so bf16 is slower
    /// there (`CedPrecisionAdvisor` measures it; `auto` then keeps float32).
    case bf16
    /// int8 for every Linear product of the blocks (q·k·v, the attention output projection,
    /// both MLP layers): weights quantised symmetrically per output channel at load time
    /// (stored as int8: a quarter of float32's memory), activations per row at run time with
    /// a zero point (unsigned bytes, so the GELU outputs' one-sided range is not halved),
    /// int32 accumulation (`Int8Kernel`: `vpdpbusd` on AVX-512 VNNI or AVX-VNNI, portable C
    /// elsewhere). The attention products run as in `.bf16`. The fastest and smallest mode,
    /// and the least accurate: on the tiny reference model the probabilities move by up to
    /// about 0.02 (ONNX Runtime's int8 model of the same weights: 0.03), more than the 0.01
    /// that `auto` keeps to. `isSupported` is always true (the portable kernel runs
    /// anywhere).
    case int8
    /// The fastest plan on this CPU among those that keep the probabilities within 0.01 of
    /// float32 with the top 5 unchanged (`CedPrecisionAdvisor`): float32, bf16, or int8 for
    /// the MLP's first layer (`fc1`) with float32 or bf16 for the rest, chosen by a short
    /// measurement of the model's own shapes at load, cached per CPU and shape.
    case auto

    /// Whether this CPU runs this precision natively (always true for `.fp32`, `.int8` and
    /// `.auto`; for `.bf16`, whether a `BF16Kernel` is available, otherwise `.bf16` computes
    /// in float32).
    public var isSupported: Bool {
        switch self {
        case .fp32, .int8, .auto: return true
        case .bf16: return BF16Kernel.best != nil
        }
    }

    /// The precision products actually run in on this CPU (`.bf16` without a bf16 kernel:
    /// `.fp32`). `.auto` is resolved by `plan(for:)`, not here.
    public var effective: CedPrecision { isSupported ? self : .fp32 }

    /// The plan of a fixed mode (`.auto`: the advisor's choice for `config` on this CPU).
    public func plan(for config: CedConfig) -> CedPrecisionPlan {
        switch self {
        case .fp32: return .fp32
        case .bf16: return .bf16
        case .int8: return .int8
        case .auto: return CedPrecisionAdvisor.shared.choice(for: config).plan
        }
    }

    /// The kernels the encoder's products run on with this precision here, after any
    /// `CED_GEMM_KERNEL` / `CED_BF16_KERNEL` / `CED_INT8_KERNEL` override: e.g. `fp32
    /// avx512`, `bf16 amx`, `int8 avx512vnni + bf16 avx512 (attention)`. (`.auto`: see its
    /// plan's `kernelPath`.)
    public var kernelPath: String {
        switch self {
        case .fp32: return CedPrecisionPlan.fp32.kernelPath
        case .bf16: return BF16Kernel.best == nil ? "fp32 \(GEMMKernel.best.pathName) (no bf16 kernel)" : CedPrecisionPlan.bf16.kernelPath
        case .int8: return CedPrecisionPlan.int8.kernelPath
        case .auto: return "auto"
        }
    }
}

/// What each kind of a block's matrix products runs in: float32, bfloat16 or int8 for the
/// four Linear layers, float32 or bfloat16 for the attention products (Q·Kᵀ, P·V).
public struct CedPrecisionPlan: Sendable, Equatable, Hashable, Codable, CustomStringConvertible {
    public var qkv: CedPrecision
    public var proj: CedPrecision
    public var fc1: CedPrecision
    public var fc2: CedPrecision
    public var attention: CedPrecision

    public init(qkv: CedPrecision, proj: CedPrecision, fc1: CedPrecision, fc2: CedPrecision, attention: CedPrecision) {
        // What runs here: bf16 without a kernel is fp32; attention has no int8 form.
        func run(_ p: CedPrecision) -> CedPrecision { p == .auto ? .fp32 : p.effective }
        self.qkv = run(qkv)
        self.proj = run(proj)
        self.fc1 = run(fc1)
        self.fc2 = run(fc2)
        self.attention = attention == .bf16 ? CedPrecision.bf16.effective : .fp32
    }

    public static let fp32 = CedPrecisionPlan(qkv: .fp32, proj: .fp32, fc1: .fp32, fc2: .fp32, attention: .fp32)
    public static var bf16: CedPrecisionPlan { CedPrecisionPlan(qkv: .bf16, proj: .bf16, fc1: .bf16, fc2: .bf16, attention: .bf16) }
    public static var int8: CedPrecisionPlan { CedPrecisionPlan(qkv: .int8, proj: .int8, fc1: .int8, fc2: .int8, attention: .bf16) }
    /// int8 for the MLP's first layer, `rest` for everything else.
    public static func int8FC1(rest: CedPrecision) -> CedPrecisionPlan {
        CedPrecisionPlan(qkv: rest, proj: rest, fc1: .int8, fc2: rest, attention: rest)
    }

    /// The plans that keep the tiny reference model's probabilities within 0.01 of
    /// float32 with the top 5 unchanged on every golden clip, both chunkings, and the bench
    /// clip (`scripts/emulated_int8.py`): float32, bf16, and int8 in `fc1` alone (beside
    /// float32 or bf16). int8 in any other Linear layer, or in two of them, leaves the bound.
    public static var accurate: [CedPrecisionPlan] {
        var plans: [CedPrecisionPlan] = [.fp32, .int8FC1(rest: .fp32)]
        if let kernel = BF16Kernel.best {
            plans.append(.bf16)
            // Beside Arm's BFDOT/BFMMLA (pair sums rounded to odd) fc1 int8 measured 0.0102 on
            // the snap golden clip under qemu, just over the bound: only beside x86's bf16.
            if kernel != .bfdot && kernel != .bfmmla { plans.append(.int8FC1(rest: .bf16)) }
        }
        return plans
    }

    /// The mode it is, when it is one (`nil` for a mixed plan).
    public var mode: CedPrecision? {
        switch self {
        case .fp32: return .fp32
        case .bf16: return .bf16
        case .int8: return .int8
        default: return nil
        }
    }

    /// `fp32`, `bf16`, `int8`, or the mixed plan product by product, e.g.
    /// `fc1 int8, rest bf16`.
    public var description: String {
        if let mode { return mode.rawValue }
        let others = Set([qkv, proj, fc2, attention])
        if others.count == 1, let rest = others.first, fc1 != rest { return "fc1 \(fc1.rawValue), rest \(rest.rawValue)" }
        return "qkv \(qkv.rawValue), proj \(proj.rawValue), fc1 \(fc1.rawValue), fc2 \(fc2.rawValue), attention \(attention.rawValue)"
    }

    /// The kernels the plan's products run on here: e.g. `fp32 avx512`, `bf16 amx`,
    /// `int8 avx512vnni + bf16 avx512 (attention)`, `fc1 int8 avx512vnni, rest bf16 avx512`.
    public var kernelPath: String {
        func path(_ p: CedPrecision) -> String {
            switch p {
            case .bf16: return BF16Kernel.best.map { "bf16 \($0)" } ?? "fp32 \(GEMMKernel.best.pathName) (no bf16 kernel)"
            case .int8: return "int8 \(Int8Kernel.best)"
            default: return "fp32 \(GEMMKernel.best.pathName)"
            }
        }
        let linear = Set([qkv, proj, fc1, fc2])
        if linear.count == 1, let p = linear.first {
            let attentionPath = attention == .fp32 && p == .int8 && BF16Kernel.best == nil ? "fp32 \(GEMMKernel.best.pathName) (no bf16 kernel)"
                : path(attention)
            return p == attention ? path(p) : "\(path(p)) + \(attentionPath) (attention)"
        }
        let others = Set([qkv, proj, fc2, attention])
        if others.count == 1, let rest = others.first { return "fc1 \(path(fc1)), rest \(path(rest))" }
        return "qkv \(path(qkv)), proj \(path(proj)), fc1 \(path(fc1)), fc2 \(path(fc2)), attention \(path(attention))"
    }

    /// Whether any product runs in reduced precision.
    public var isReduced: Bool { self != .fp32 }
}
