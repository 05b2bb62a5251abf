/// Named float32 tensors as a checkpoint stores them (PyTorch `state_dict` names),
/// whatever the file format. Integer buffers such as BatchNorm's step counter are
/// converted to float.
public struct StateDict: Sendable {
    public var tensors: [String: Tensor]
    /// Where the tensors came from (a path), for error messages.
    public var source: String

    public init(tensors: [String: Tensor], source: String) {
        self.tensors = tensors
        self.source = source
    }

    public subscript(name: String) -> Tensor? {
        get { tensors[name] }
        set { tensors[name] = newValue }
    }

    public var names: [String] { tensors.keys.sorted() }
}
