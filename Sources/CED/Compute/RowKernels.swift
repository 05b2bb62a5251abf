import CEDKernels

/// Row-wise kernels of the transformer besides the matrix products (LayerNorm, softmax),
/// vectorised in CEDKernels with the same run-time CPU dispatch as the GEMM microkernels.
enum RowKernels {
    /// `y = (x − mean) / sqrt(var + eps) · w + b` over each row of `cols` floats (`y` may
    /// equal `x`); float32 two-pass statistics, as PyTorch's CPU LayerNorm.
    static func layerNorm(_ x: UnsafePointer<Float>, rows: Int, cols: Int, weight: UnsafePointer<Float>,
                          bias: UnsafePointer<Float>, eps: Float, into y: UnsafeMutablePointer<Float>,
                          kernel: GEMMKernel = .best) {
        ced_layernorm_rows(x, y, Int64(rows), Int64(cols), weight, bias, eps, kernel.geluVariant)
    }

    /// Numerically stable softmax of each row of `cols` floats, in place.
    static func softmax(_ p: UnsafeMutablePointer<Float>, rows: Int, cols: Int, kernel: GEMMKernel = .best) {
        ced_softmax_rows(p, Int64(rows), Int64(cols), kernel.geluVariant)
    }
}
