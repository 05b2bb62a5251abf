/// Arithmetic used for the transformer's matrix products.
public enum CedPrecision: String, Sendable, CaseIterable, Codable {
    /// float32 everywhere: matches the PyTorch reference within float32 rounding (the default).
    case fp32
    /// bfloat16 inputs with float32 accumulation for the encoder's matrix products
    /// (opt-in, faster on CPUs with AVX-512 BF16; LayerNorm, softmax and the head stay fp32).
    case bf16
}
