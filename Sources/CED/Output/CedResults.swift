extension CedConfig {
    /// Class names by output index (`label(for:)` of `0..<outputdim`).
    public var labels: [String] { (0..<outputdim).map { label(for: $0) } }
}
