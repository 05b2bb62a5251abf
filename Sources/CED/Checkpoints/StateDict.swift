/// Named float32 tensors as a checkpoint stores them (PyTorch `state_dict` names),
/// whatever the file format. Integer buffers such as BatchNorm's step counter are
/// converted to float.
///
/// A state dict read from a safetensors file is lazy: its tensors stay in the file and are
/// read (and converted to float32) one at a time when asked for, so packing a model for
/// inference never holds a float32 copy of all its weights (CED-Base: 344 MB) beside the
/// packed ones. `tensors` reads every tensor; `subscript`, `names`, `shape(of:)` read one
/// or none.
public struct StateDict: @unchecked Sendable {
    /// Tensors held in memory.
    private var held: [String: Tensor]
    /// Tensors still in a file: name → the file and the tensor's name there.
    private var inFile: [String: (file: SafeTensorsFile, key: String)]
    /// Where the tensors came from (a path), for error messages.
    public var source: String

    public init(tensors: [String: Tensor], source: String) {
        self.held = tensors
        self.inFile = [:]
        self.source = source
    }

    /// The tensors of a safetensors file, read when asked for.
    public init(file: SafeTensorsFile) {
        held = [:]
        inFile = Dictionary(uniqueKeysWithValues: file.names.map { ($0, (file, $0)) })
        source = file.path
    }

    /// Every tensor (a state dict read from a file reads all of them). Setting it replaces
    /// the whole dict with tensors held in memory.
    public var tensors: [String: Tensor] {
        get {
            var all = held
            for (name, e) in inFile where all[name] == nil { all[name] = try? e.file.tensor(e.key) }
            return all
        }
        set {
            held = newValue
            inFile = [:]
        }
    }

    /// One tensor (read from its file when it is still there). A tensor that cannot be read
    /// (a damaged file) reads as nil.
    public subscript(name: String) -> Tensor? {
        get {
            if let t = held[name] { return t }
            guard let e = inFile[name] else { return nil }
            return try? e.file.tensor(e.key)
        }
        set {
            held[name] = newValue
            inFile[name] = nil
        }
    }

    /// One tensor, with the file's error when it cannot be read.
    public func tensor(_ name: String) throws -> Tensor? {
        if let t = held[name] { return t }
        guard let e = inFile[name] else { return nil }
        return try e.file.tensor(e.key)
    }

    /// Whether there is a tensor of this name.
    public func contains(_ name: String) -> Bool { held[name] != nil || inFile[name] != nil }

    /// A tensor's shape, without reading its values.
    public func shape(of name: String) -> [Int]? {
        if let t = held[name] { return t.shape }
        guard let e = inFile[name] else { return nil }
        return e.file.info(e.key)?.shape
    }

    /// Every name, sorted.
    public var names: [String] { Set(held.keys).union(inFile.keys).sorted() }

    /// Number of tensors.
    public var count: Int { Set(held.keys).union(inFile.keys).count }

    /// The same tensors under other names: `rename` gives each name's new name, or nil to
    /// leave the tensor out. Tensors still in their file stay there.
    public func renamed(_ rename: (String) -> String?) -> StateDict {
        var out = StateDict(tensors: [:], source: source)
        for (name, t) in held { if let n = rename(name) { out.held[n] = t } }
        for (name, e) in inFile { if let n = rename(name) { out.inFile[n] = e } }
        return out
    }
}
