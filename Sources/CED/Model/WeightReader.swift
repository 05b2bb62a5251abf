/// Hands checkpoint tensors to the layers that own them, by Hugging Face name, and
/// collects every problem (missing, mis-shaped, non-finite, unexpected) so that loading
/// reports all of them at once in one `WeightLoadingError`.
final class WeightReader {
    private let dict: StateDict
    private var used: Set<String> = []
    private var missing: [String] = []
    private var mismatched: [WeightLoadingError.Mismatch] = []
    private var nonFinite: [String] = []
    /// Buffers a checkpoint may carry that inference does not need.
    private let ignorable: (String) -> Bool

    init(_ dict: StateDict, ignorable: @escaping (String) -> Bool = { $0.hasSuffix("num_batches_tracked") }) {
        self.dict = dict
        self.ignorable = ignorable
    }

    /// The tensor called `name`, which must have `shape`. On a problem the problem is
    /// recorded and zeros are returned so construction can go on and report everything.
    func tensor(_ name: String, shape: [Int]) -> [Float] {
        used.insert(name)
        guard let t = dict[name] else {
            missing.append(name)
            return [Float](repeating: 0, count: shape.reduce(1, *))
        }
        guard t.shape == shape else {
            mismatched.append(.init(name: name, expected: shape, found: t.shape))
            return [Float](repeating: 0, count: shape.reduce(1, *))
        }
        if !t.scalars.allSatisfy({ $0.isFinite }) { nonFinite.append(name) }
        return t.scalars
    }

    /// Throws if anything was missing, mis-shaped, non-finite or left unused.
    func finish() throws {
        let unexpected = dict.tensors.keys.filter { !used.contains($0) && !ignorable($0) }
        let error = WeightLoadingError(source: dict.source, missing: missing, unexpected: Array(unexpected),
                                       mismatched: mismatched, nonFinite: nonFinite)
        if !error.isEmpty { throw error }
    }
}
