/// A dense, row-major float32 tensor: the value type the public API hands out
/// (mel spectrograms, hidden states, attention maps, probabilities) and the form
/// every checkpoint tensor takes once loaded.
public struct Tensor: Sendable, Equatable {
    /// Extent of each dimension, outermost first (PyTorch order).
    public var shape: [Int]
    /// `shape.reduce(1, *)` values in row-major order.
    public var scalars: [Float]

    public init(shape: [Int], scalars: [Float]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        precondition(shape.reduce(1, *) == scalars.count,
                     "shape \(shape) needs \(shape.reduce(1, *)) values, got \(scalars.count)")
        self.shape = shape
        self.scalars = scalars
    }

    public init(zeros shape: [Int]) {
        self.init(shape: shape, scalars: [Float](repeating: 0, count: shape.reduce(1, *)))
    }

    /// Number of elements.
    public var count: Int { scalars.count }

    /// Number of dimensions.
    public var rank: Int { shape.count }

    /// The element at a multi-dimensional index (bounds-checked; for tests and inspection).
    public subscript(_ index: Int...) -> Float {
        precondition(index.count == shape.count, "index \(index) does not match shape \(shape)")
        var flat = 0
        for (i, (ix, dim)) in zip(index, shape).enumerated() {
            precondition(ix >= 0 && ix < dim, "index \(ix) out of range for dimension \(i) of \(shape)")
            flat = flat * dim + ix
        }
        return scalars[flat]
    }

    /// The same values viewed with another shape of equal element count.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        Tensor(shape: newShape, scalars: scalars)
    }
}
