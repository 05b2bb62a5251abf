/// One class of a tagging result.
public struct CedPrediction: Sendable, Equatable, Codable {
    /// Output index (AudioSet class index for the published models).
    public var index: Int
    /// Class name from the model's `id2label`.
    public var label: String
    /// Probability (or raw logit for `logit` pooling).
    public var score: Float

    public init(index: Int, label: String, score: Float) {
        self.index = index
        self.label = label
        self.score = score
    }
}

extension CedConfig {
    /// The classes of a `[outputdim]` score vector, highest score first (ties by index),
    /// keeping at most `topK` (nil: all) with a score of at least `threshold` (nil: any).
    public func predictions(from scores: Tensor, topK: Int? = nil, threshold: Float? = nil) -> [CedPrediction] {
        var order = Array(scores.scalars.indices)
        if let threshold { order = order.filter { scores.scalars[$0] >= threshold } }
        order.sort { a, b in
            let sa = scores.scalars[a], sb = scores.scalars[b]
            return sa != sb ? sa > sb : a < b
        }
        if let topK { order = Array(order.prefix(max(0, topK))) }
        return order.map { CedPrediction(index: $0, label: label(for: $0), score: scores.scalars[$0]) }
    }
}
