import Foundation

// Pooling, written once: how a sequence of encoder tokens becomes the vectors the
// classification head reads, its backward pass, and how the head's outputs become clip
// scores. Inference (`CedForAudioClassification`), the embedding (`CedModel.embedding`),
// training (`CedTrainingModel`) and the loss API all call these.

/// The token layout of one encoded sequence (one chunk, or one training clip).
struct TokenGrid: Equatable {
    var frequencyPatches: Int
    var timePatches: Int
    var hasClsToken: Bool
    var patches: Int { frequencyPatches * timePatches }
    var tokens: Int { patches + (hasClsToken ? 1 : 0) }
}

extension CedPooling {
    /// Whether the encoder prepends a cls token.
    var hasClsToken: Bool { self == .token }

    /// Vectors the head reads per sequence: one, or one per time step for `dm`.
    func vectorsPerSequence(_ grid: TokenGrid) -> Int { self == .dm ? grid.timePatches : 1 }

    /// Whether clip scores are probabilities (the head's sigmoid); `logit` gives raw logits.
    public var scoresAreProbabilities: Bool { self != .logit }

    /// Pools one sequence `x` (`grid.tokens` rows, row stride `ld`, `dim` features) into
    /// `vectorsPerSequence` vectors of `dim` values at `out`: the mean token (`mean`,
    /// `logit`), the cls token (`token`), or the frequency mean of every time step (`dm`;
    /// time step t of frequency row f is token f·tp + t). Means accumulate in double.
    func pool(_ x: UnsafePointer<Float>, grid: TokenGrid, ld: Int, dim: Int, into out: UnsafeMutablePointer<Float>) {
        switch self {
        case .token:
            out.update(from: x, count: dim)
        case .mean, .logit:
            meanOfRows(x, rows: grid.tokens, rowStride: ld, count: dim, into: out)
        case .dm:
            let tp = grid.timePatches
            for t in 0..<tp {
                meanOfRows(x + t * ld, rows: grid.frequencyPatches, rowStride: tp * ld, count: dim, into: out + t * dim)
            }
        }
    }

    /// The backward pass of `pool` for one sequence: the gradient of every token row
    /// (row stride `ld`) from the pooled vectors' gradient `dPooled`. Every row is written.
    func poolBackward(_ dPooled: UnsafePointer<Float>, grid: TokenGrid, ld: Int, dim: Int, into dx: UnsafeMutablePointer<Float>) {
        dx.update(repeating: 0, count: grid.tokens * ld)
        switch self {
        case .token:
            dx.update(from: dPooled, count: dim)
        case .mean, .logit:
            let s = 1 / Float(grid.tokens)
            for r in 0..<grid.tokens { let row = dx + r * ld; for j in 0..<dim { row[j] = dPooled[j] * s } }
        case .dm:
            let tp = grid.timePatches, s = 1 / Float(grid.frequencyPatches)
            for f in 0..<grid.frequencyPatches {
                for t in 0..<tp {
                    let v = dPooled + t * dim, row = dx + (f * tp + t) * ld
                    for j in 0..<dim { row[j] = v[j] * s }
                }
            }
        }
    }

    /// The head's outputs turned into scores in place: the sigmoid, except for `logit`.
    func activate(_ z: UnsafeMutablePointer<Float>, count: Int) {
        guard scoresAreProbabilities else { return }
        for i in 0..<count { z[i] = 1 / (1 + expf(-z[i])) }
    }

    /// Clip scores `[classes]` from the activated outputs of a clip's `vectors` head
    /// vectors (`[vectors, classes]`): the vector's scores, or for `dm` their mean over
    /// time (in double).
    func clipScores(_ scores: UnsafePointer<Float>, vectors: Int, classes: Int, into out: UnsafeMutablePointer<Float>) {
        meanOfRows(scores, rows: vectors, rowStride: classes, count: classes, into: out)
    }
}

/// `out[j] = mean over r < rows of x[r·rowStride + j]` for `j < count`, accumulated in
/// double in row order; one row is copied unchanged.
func meanOfRows(_ x: UnsafePointer<Float>, rows: Int, rowStride: Int, count: Int, into out: UnsafeMutablePointer<Float>) {
    precondition(rows > 0)
    if rows == 1 { out.update(from: x, count: count); return }
    let scale = Double(rows)
    var j = 0
    while j + 8 <= count {
        var acc = SIMD8<Double>(repeating: 0)
        for r in 0..<rows {
            let p = x + r * rowStride + j
            acc += SIMD8<Double>(Double(p[0]), Double(p[1]), Double(p[2]), Double(p[3]),
                                 Double(p[4]), Double(p[5]), Double(p[6]), Double(p[7]))
        }
        let m = acc / scale
        for i in 0..<8 { out[j + i] = Float(m[i]) }
        j += 8
    }
    while j < count {
        var acc = 0.0
        for r in 0..<rows { acc += Double(x[r * rowStride + j]) }
        out[j] = Float(acc / scale)
        j += 1
    }
}
