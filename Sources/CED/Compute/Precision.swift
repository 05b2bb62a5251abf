/// Arithmetic used for the transformer's matrix products.
public enum CedPrecision: String, Sendable, CaseIterable, Codable {
    /// float32 everywhere: matches the PyTorch reference within float32 rounding (the default).
    case fp32
    /// bfloat16 inputs with float32 accumulation for the encoder's matrix products, opt-in
    /// and faster on CPUs with AMX or AVX-512 BF16 (`BF16Kernel`): the Linear layers of
    /// every block, and with AMX also the attention products (Q·Kᵀ and P·V). The patch
    /// embedding, LayerNorm, softmax and the classification head stay float32; GELU is
    /// computed in float32 with a faster approximation (absolute error < 2e-7·max(1, |x|))
    /// since its output is rounded to bf16 anyway. On the tiny reference model the class
    /// probabilities stay within 0.006 of float32 and the top 5 are unchanged. On a CPU
    /// without AVX-512 BF16 it falls back to `.fp32` (same results as `.fp32`);
    /// `CedPrecision.bf16.isSupported` tells which applies.
    case bf16

    /// Whether this CPU runs this precision natively (always true for `.fp32`; for `.bf16`,
    /// whether a `BF16Kernel` is available, otherwise `.bf16` computes in float32).
    public var isSupported: Bool {
        switch self {
        case .fp32: return true
        case .bf16: return BF16Kernel.best != nil
        }
    }

    /// The precision products actually run in on this CPU.
    public var effective: CedPrecision { isSupported ? self : .fp32 }
}
