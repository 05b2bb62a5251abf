import Foundation

/// The classification head's training passes (`CedParameterTable.head`: LayerNorm, then
/// Linear), forward and backward side by side. The whole-network model
/// (`CedTrainingModel`) and the head trained on its own over cached pooled vectors
/// (`HeadTrainer`) both run these; inference runs the same head as `ClassificationHead`.
struct TrainingHead {
    let p: CedHeadParameters
    var dim: Int { p.inputDim }
    var classes: Int { p.classes }

    /// `logits = Linear(LayerNorm(x))` for `rows` pooled vectors `x` (`[rows, dim]`),
    /// saving the LayerNorm's output and statistics for `backward`. `w` gives a
    /// parameter's values.
    func forward(_ w: (CedParameter) -> UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, rows: Int,
                 normed: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>,
                 logits: UnsafeMutablePointer<Float>, bf16: BF16Kernel?) {
        TrainingKernels.layerNormForward(x, ldx: dim, rows: rows, cols: dim, weight: w(p.norm.weight), bias: w(p.norm.bias),
                                         eps: Float(p.norm.eps), y: normed, ldy: dim, mean: mean, rstd: rstd)
        TrainingGEMM.forward(x: normed, ldx: dim, rows: rows, weight: w(p.linear.weight), out: classes, in: dim,
                             bias: w(p.linear.bias!), y: logits, ldy: classes, bf16: bf16)
    }

    /// From the logits' gradient `dz` (`[rows, classes]`): the parameters' gradients, added
    /// into `g(parameter)`, and the pooled vectors' gradient into `dx` (`[rows, dim]`).
    /// `dNormed` is scratch of `rows · dim` floats.
    func backward(_ w: (CedParameter) -> UnsafeMutablePointer<Float>, _ g: (CedParameter) -> UnsafeMutablePointer<Float>,
                  dz: UnsafePointer<Float>, x: UnsafePointer<Float>, rows: Int, normed: UnsafePointer<Float>,
                  mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, dNormed: UnsafeMutablePointer<Float>,
                  dx: UnsafeMutablePointer<Float>, bf16: BF16Kernel?) {
        TrainingGEMM.backwardWeight(dy: dz, lddy: classes, x: normed, ldx: dim, rows: rows, out: classes, in: dim,
                                    dw: g(p.linear.weight), accumulate: true, bf16: bf16)
        TrainingKernels.columnSums(dz, lddy: classes, rows: rows, cols: classes, into: g(p.linear.bias!), accumulate: true)
        TrainingGEMM.backwardInput(dy: dz, lddy: classes, rows: rows, weight: w(p.linear.weight), out: classes, in: dim,
                                   dx: dNormed, lddx: dim, accumulate: false, bf16: bf16)
        TrainingKernels.layerNormBackward(dy: dNormed, lddy: dim, x: x, ldx: dim, mean: mean, rstd: rstd,
                                          weight: w(p.norm.weight), rows: rows, cols: dim, dx: dx, lddx: dim, accumulate: false,
                                          dweight: g(p.norm.weight), dbias: g(p.norm.bias))
    }
}
