/// Arithmetic used for the transformer's matrix products.
public enum CedPrecision: String, Sendable, CaseIterable, Codable {
    /// float32 everywhere: matches the PyTorch reference within float32 rounding (the default).
    case fp32
    /// bfloat16 inputs with float32 accumulation for the encoder's matrix products, opt-in
    /// and faster on CPUs with AMX or AVX-512 BF16 (`BF16Kernel`): the Linear layers of
    /// every block and the attention products (Q·Kᵀ and P·V). The patch embedding,
    /// LayerNorm, softmax and the classification head stay float32; GELU is computed in
    /// float32 with a faster approximation (absolute error < 2e-7·max(1, |x|)) since its
    /// output is rounded to bf16 anyway. On the tiny reference model the class probabilities
    /// stay within 0.006 of float32 and the top 5 are unchanged. On a CPU without AVX-512
    /// BF16 it falls back to `.fp32` (same results as `.fp32`); `CedPrecision.bf16.isSupported`
    /// tells which applies.
    case bf16
    /// int8 for the product that keeps the accuracy bound in int8 — the MLP's first layer
    /// (`fc1`, a third of the encoder's multiply-adds): weights quantised symmetrically per
    /// output channel at load time, activations per row at run time, int32 accumulation
    /// (`Int8Kernel`: `vpdpbusd` on AVX-512 VNNI or AVX-VNNI, portable C elsewhere). Every
    /// other product (q·k·v and output projections, `fc2`, the attention products) runs as in
    /// `.bf16`, since in int8 each of them alone moves the tiny reference model's
    /// probabilities by 0.011–0.015 or reorders its top 5 (measured; see the README). On the
    /// tiny reference model the class probabilities stay within 0.01 of float32 with the
    /// top 5 unchanged. `isSupported` is always true (the portable kernel runs anywhere); the
    /// bf16 parts fall back to float32 like `.bf16`.
    case int8

    /// Whether this CPU runs this precision natively (always true for `.fp32` and `.int8`;
    /// for `.bf16`, whether a `BF16Kernel` is available, otherwise `.bf16` computes in
    /// float32).
    public var isSupported: Bool {
        switch self {
        case .fp32, .int8: return true
        case .bf16: return BF16Kernel.best != nil
        }
    }

    /// The products of a transformer block, for mixed-precision modes.
    enum Product {
        case qkv, attentionProjection, mlpIn, mlpOut, attention
    }

    /// The precision one kind of product runs in under this mode (`.int8`: int8 for the
    /// MLP's first layer, bf16 for the rest).
    func precision(of product: Product) -> CedPrecision {
        switch self {
        case .fp32, .bf16: return self
        case .int8: return product == .mlpIn ? .int8 : .bf16
        }
    }

    /// The precision products actually run in on this CPU.
    public var effective: CedPrecision { isSupported ? self : .fp32 }

    /// The kernels the encoder's products run on with this precision here, after any
    /// `CED_GEMM_KERNEL` / `CED_BF16_KERNEL` / `CED_INT8_KERNEL` override: e.g. `fp32
    /// avx512`, `bf16 amx`, `int8 avx512vnni (fc1) + bf16 avx512`. `ced bench` prints it
    /// beside each figure.
    public var kernelPath: String {
        switch self {
        case .fp32:
            return "fp32 \(GEMMKernel.best.pathName)"
        case .bf16:
            guard let kernel = BF16Kernel.best else { return "fp32 \(GEMMKernel.best.pathName) (no bf16 kernel)" }
            return "bf16 \(kernel)"
        case .int8:
            return "int8 \(Int8Kernel.best) (fc1) + \(CedPrecision.bf16.kernelPath)"
        }
    }
}
