/// Hands checkpoint tensors to the layers that own them, by their `CedParameterTable`
/// entry (Hugging Face name and shape), and
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
    /// What the matrix products of the layers being built run in.
    let plan: CedPrecisionPlan

    /// `ignorable`: names a checkpoint may carry that the layers being built do not read
    /// (besides the BatchNorm's step counter, which inference never reads).
    init(_ dict: StateDict, table: CedParameterTable, plan: CedPrecisionPlan = .fp32,
         ignorable: @escaping (String) -> Bool = { _ in false }) {
        self.dict = dict
        self.plan = plan
        let counter = table.initBN.batchesTracked.name
        self.ignorable = { $0 == counter || ignorable($0) }
    }

    /// The values of a table entry, which must have its shape. On a problem the problem is
    /// recorded and zeros are returned so construction can go on and report everything.
    func tensor(_ p: CedParameter) -> [Float] { tensor(p.name, shape: p.shape) }

    private func tensor(_ name: String, shape: [Int]) -> [Float] {
        used.insert(name)
        guard let t = dict[name] else {
            missing.append(name)
            return [Float](repeating: 0, count: shape.reduce(1, *))
        }
        guard t.shape == shape else {
            mismatched.append(.init(name: name, expected: shape, found: t.shape))
            return [Float](repeating: 0, count: shape.reduce(1, *))
        }
        if !allFinite(t.scalars) { nonFinite.append(name) }
        return t.scalars
    }

    /// Throws if anything was missing, mis-shaped, non-finite or left unused.
    func finish() throws {
        let unexpected = dict.names.filter { !used.contains($0) && !ignorable($0) }
        let error = WeightLoadingError(source: dict.source, missing: missing, unexpected: Array(unexpected),
                                       mismatched: mismatched, nonFinite: nonFinite)
        if !error.isEmpty { throw error }
    }
}

/// True when no value is NaN or ±infinity (all-ones exponent), in a loop the compiler
/// vectorises (a max over masked bit patterns).
func allFinite(_ values: [Float]) -> Bool {
    values.withUnsafeBufferPointer { p in
        p.withMemoryRebound(to: UInt32.self) { bits in
            var m: UInt32 = 0
            for b in bits { m = max(m, b & 0x7f80_0000) }
            return m != 0x7f80_0000
        }
    }
}
