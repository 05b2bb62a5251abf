/// A restricted unpickler for what `torch.save` writes for state dicts.
///
/// It is a pure data decoder: it never imports, calls or evaluates anything. Pickle
/// protocols 0–5 opcodes that build plain data (None, bools, ints, floats, strings,
/// bytes, tuples, lists, dicts, sets) are understood; the only globals it accepts are
/// an allowlist of names whose effect it reproduces itself:
///
/// - `collections.OrderedDict` (a dict that keeps insertion order),
/// - `torch._utils._rebuild_tensor_v2`, `_rebuild_tensor`, `_rebuild_parameter`,
///   `_rebuild_parameter_with_state` (a tensor view: storage, offset, size, stride),
/// - the typed storages `torch.FloatStorage`, `DoubleStorage`, `HalfStorage`,
///   `BFloat16Storage`, `LongStorage`, `IntStorage`, `ShortStorage`, `CharStorage`,
///   `ByteStorage`, `BoolStorage` (only inside a persistent id),
/// - `builtins.set`, `builtins.frozenset`, `_codecs.encode` (how protocol 2 spells sets
///   and bytes).
///
/// Any other global (`os.system`, `builtins.eval`, `numpy...`, a user class) stops
/// decoding with `CheckpointError.Kind.forbiddenGlobal` naming it, at the opcode that
/// names it. Like PyTorch's `weights_only` unpickler it also restricts `BUILD` to dicts
/// and tensors and `REDUCE` to the allowlisted callables. Containers may not be mutated
/// after they were nested in another object (which rules out cycles and lets nesting
/// depth be bounded), and all lengths are checked against the remaining input.
enum TorchDType: String, Sendable, CaseIterable {
    case float32, float64, float16, bfloat16, int64, int32, int16, int8, uint8, bool

    var byteSize: Int {
        switch self {
        case .float64, .int64: return 8
        case .float32, .int32: return 4
        case .float16, .bfloat16, .int16: return 2
        case .int8, .uint8, .bool: return 1
        }
    }

    /// The dtype of a typed-storage class name (`FloatStorage` → float32).
    init?(storageClass: String) {
        switch storageClass {
        case "FloatStorage": self = .float32
        case "DoubleStorage": self = .float64
        case "HalfStorage": self = .float16
        case "BFloat16Storage": self = .bfloat16
        case "LongStorage": self = .int64
        case "IntStorage": self = .int32
        case "ShortStorage": self = .int16
        case "CharStorage": self = .int8
        case "ByteStorage": self = .uint8
        case "BoolStorage": self = .bool
        default: return nil
        }
    }
}

/// A storage record named by a persistent id: `('storage', torch.FloatStorage, key, location, numel)`.
struct TorchStorageRef: Sendable, Equatable {
    var key: String
    var dtype: TorchDType
    var location: String
    var numel: Int
}

/// A tensor as `_rebuild_tensor_v2` describes it: a strided view of a storage.
struct TorchTensorRef: Sendable, Equatable {
    var storage: TorchStorageRef
    var offset: Int
    var size: [Int]
    var stride: [Int]
}

/// Globals the unpickler accepts (see `Unpickler`).
enum PickleGlobal: Sendable, Equatable {
    case orderedDict
    case rebuildTensorV2
    case rebuildTensor
    case rebuildParameter
    case rebuildParameterWithState
    case storageType(TorchDType, String)
    case set
    case frozenset
    case codecsEncode

    var name: String {
        switch self {
        case .orderedDict: return "collections.OrderedDict"
        case .rebuildTensorV2: return "torch._utils._rebuild_tensor_v2"
        case .rebuildTensor: return "torch._utils._rebuild_tensor"
        case .rebuildParameter: return "torch._utils._rebuild_parameter"
        case .rebuildParameterWithState: return "torch._utils._rebuild_parameter_with_state"
        case .storageType(_, let n): return "torch.\(n)"
        case .set: return "builtins.set"
        case .frozenset: return "builtins.frozenset"
        case .codecsEncode: return "_codecs.encode"
        }
    }

    static func resolve(module: String, name: String) -> PickleGlobal? {
        switch (module, name) {
        case ("collections", "OrderedDict"): return .orderedDict
        case ("torch._utils", "_rebuild_tensor_v2"): return .rebuildTensorV2
        case ("torch._utils", "_rebuild_tensor"): return .rebuildTensor
        case ("torch._utils", "_rebuild_parameter"): return .rebuildParameter
        case ("torch._utils", "_rebuild_parameter_with_state"): return .rebuildParameterWithState
        case ("builtins", "set"), ("__builtin__", "set"): return .set
        case ("builtins", "frozenset"), ("__builtin__", "frozenset"): return .frozenset
        case ("_codecs", "encode"): return .codecsEncode
        case ("torch", _):
            if let d = TorchDType(storageClass: name) { return .storageType(d, name) }
            return nil
        default: return nil
        }
    }
}

/// A mutable list/set under construction.
final class PickleList {
    var items: [PickleValue] = []
    var frozen = false
    var depth = 1
    init(_ items: [PickleValue] = []) { self.items = items }
}

/// A dict (ordered, as Python's are) under construction.
final class PickleDict {
    private(set) var keys: [PickleValue] = []
    private(set) var values: [PickleValue] = []
    private var index: [PickleKey: Int] = [:]
    var frozen = false
    var depth = 1
    let isOrderedDict: Bool

    init(ordered: Bool) { isOrderedDict = ordered }

    var count: Int { keys.count }

    func set(_ key: PickleValue, _ value: PickleValue, offset: Int) throws {
        guard let k = PickleKey(key) else {
            throw UnpicklerFailure(.malformedPickle, "unhashable dict key (\(key.typeName))", offset)
        }
        if let i = index[k] {
            values[i] = value
        } else {
            index[k] = keys.count
            keys.append(key)
            values.append(value)
        }
    }

    subscript(_ key: String) -> PickleValue? {
        index[.string(key)].map { values[$0] }
    }

    var entries: [(key: PickleValue, value: PickleValue)] { Array(zip(keys, values)).map { (key: $0.0, value: $0.1) } }
}

/// Hashable form of the keys Python dicts of a checkpoint may use.
indirect enum PickleKey: Hashable {
    case none, bool(Bool), int(Int), bigInt(String), float(Double), string(String), bytes([UInt8]), tuple([PickleKey])

    init?(_ v: PickleValue) {
        switch v {
        case .none: self = .none
        case .bool(let b): self = .bool(b)
        case .int(let i): self = .int(i)
        case .bigInt(let s): self = .bigInt(s)
        case .float(let d): self = .float(d)
        case .string(let s): self = .string(s)
        case .bytes(let b): self = .bytes(b)
        case .tuple(let items, _):
            var ks: [PickleKey] = []
            for i in items {
                guard let k = PickleKey(i) else { return nil }
                ks.append(k)
            }
            self = .tuple(ks)
        default: return nil
        }
    }
}

/// A decoded pickle value.
enum PickleValue {
    case none
    case bool(Bool)
    case int(Int)
    /// An integer outside Int's range, as decimal text.
    case bigInt(String)
    case float(Double)
    case string(String)
    case bytes([UInt8])
    /// Items and nesting depth.
    case tuple([PickleValue], depth: Int)
    case list(PickleList)
    case set(PickleList)
    case dict(PickleDict)
    case global(PickleGlobal)
    case storage(TorchStorageRef)
    case tensor(TorchTensorRef)

    var typeName: String {
        switch self {
        case .none: return "None"
        case .bool: return "bool"
        case .int, .bigInt: return "int"
        case .float: return "float"
        case .string: return "str"
        case .bytes: return "bytes"
        case .tuple: return "tuple"
        case .list: return "list"
        case .set: return "set"
        case .dict(let d): return d.isOrderedDict ? "OrderedDict" : "dict"
        case .global(let g): return g.name
        case .storage: return "storage"
        case .tensor: return "tensor"
        }
    }

    var depth: Int {
        switch self {
        case .tuple(_, let d): return d
        case .list(let l), .set(let l): return l.depth
        case .dict(let d): return d.depth
        case .tensor: return 1
        default: return 0
        }
    }

    var intValue: Int? { if case .int(let i) = self { return i }; if case .bool(let b) = self { return b ? 1 : 0 }; return nil }
    var stringValue: String? { if case .string(let s) = self { return s }; return nil }
    var tupleItems: [PickleValue]? {
        switch self {
        case .tuple(let t, _): return t
        case .list(let l): return l.items
        default: return nil
        }
    }
}

struct UnpicklerFailure: Error {
    var kind: CheckpointError.Kind
    var reason: String
    var offset: Int
    init(_ kind: CheckpointError.Kind, _ reason: String, _ offset: Int) {
        self.kind = kind
        self.reason = reason
        self.offset = offset
    }
}

struct Unpickler {
    /// Deepest nesting of containers accepted (state dicts nest 2–4 levels).
    static let maxDepth = 100

    private let data: UnsafeRawBufferPointer
    private var pos = 0
    private var stack: [PickleValue] = []
    private var marks: [Int] = []
    private var memo: [Int: PickleValue] = [:]

    init(_ data: UnsafeRawBufferPointer) { self.data = data }

    /// Decodes one pickle; throws `UnpicklerFailure` (offset = byte in the pickle).
    static func load(_ data: UnsafeRawBufferPointer) throws -> PickleValue {
        var u = Unpickler(data)
        return try u.run()
    }

    private func fail(_ reason: String, at offset: Int, _ kind: CheckpointError.Kind = .malformedPickle) -> UnpicklerFailure {
        UnpicklerFailure(kind, reason, offset)
    }

    // MARK: Reading

    private mutating func bytes(_ n: Int, at op: Int) throws -> UnsafeRawBufferPointer {
        guard n >= 0, n <= data.count - pos else {
            throw fail("needs \(n) bytes but only \(data.count - pos) remain (truncated pickle)", at: op)
        }
        let r = UnsafeRawBufferPointer(rebasing: data[pos..<(pos + n)])
        pos += n
        return r
    }

    private mutating func u8(at op: Int) throws -> Int { Int(try bytes(1, at: op)[0]) }
    private mutating func u16(at op: Int) throws -> Int {
        Int(UInt16(littleEndian: try bytes(2, at: op).loadUnaligned(as: UInt16.self)))
    }
    private mutating func u32(at op: Int) throws -> Int {
        Int(UInt32(littleEndian: try bytes(4, at: op).loadUnaligned(as: UInt32.self)))
    }
    private mutating func i32(at op: Int) throws -> Int {
        Int(Int32(littleEndian: try bytes(4, at: op).loadUnaligned(as: Int32.self)))
    }
    private mutating func u64(at op: Int) throws -> Int {
        let v = UInt64(littleEndian: try bytes(8, at: op).loadUnaligned(as: UInt64.self))
        guard v <= UInt64(Int.max) else { throw fail("length \(v) is too large", at: op) }
        return Int(v)
    }

    /// A newline-terminated line (text opcodes), without the newline.
    private mutating func line(at op: Int) throws -> String {
        var end = pos
        while end < data.count && data[end] != 0x0a { end += 1 }
        guard end < data.count else { throw fail("unterminated text argument (truncated pickle)", at: op) }
        let s = String(decoding: UnsafeRawBufferPointer(rebasing: data[pos..<end]), as: UTF8.self)
        pos = end + 1
        return s
    }

    private func utf8(_ b: UnsafeRawBufferPointer, at op: Int) throws -> String {
        guard let s = String(validating: b, as: UTF8.self) else {
            throw fail("string is not valid UTF-8", at: op)
        }
        return s
    }

    // MARK: Stack

    private mutating func pop(at op: Int) throws -> PickleValue {
        if let m = marks.last, stack.count <= m { throw fail("stack underflow (pops past a mark)", at: op) }
        guard let v = stack.popLast() else { throw fail("stack underflow", at: op) }
        return v
    }

    private mutating func popMark(at op: Int) throws -> [PickleValue] {
        guard let m = marks.popLast() else { throw fail("no mark on the stack", at: op) }
        let items = Array(stack[m...])
        stack.removeSubrange(m...)
        return items
    }

    private func top(at op: Int) throws -> PickleValue {
        if let m = marks.last, stack.count <= m { throw fail("stack underflow (reads past a mark)", at: op) }
        guard let v = stack.last else { throw fail("stack underflow", at: op) }
        return v
    }

    /// Marks a value as nested in another (its containers may no longer change) and
    /// returns its depth.
    private func nest(_ v: PickleValue, at op: Int) throws -> Int {
        switch v {
        case .list(let l), .set(let l): l.frozen = true
        case .dict(let d): d.frozen = true
        default: break
        }
        let d = v.depth
        if d >= Self.maxDepth { throw fail("objects nest deeper than \(Self.maxDepth) levels", at: op) }
        return d
    }

    private func makeTuple(_ items: [PickleValue], at op: Int) throws -> PickleValue {
        var d = 0
        for i in items { d = max(d, try nest(i, at: op)) }
        return .tuple(items, depth: d + 1)
    }

    private func mutableList(_ v: PickleValue, _ what: String, at op: Int) throws -> PickleList {
        guard case .list(let l) = v else { throw fail("\(what) on a \(v.typeName), not a list", at: op) }
        guard !l.frozen else { throw fail("\(what) on a list that is already nested in another object", at: op) }
        return l
    }

    private func mutableDict(_ v: PickleValue, _ what: String, at op: Int) throws -> PickleDict {
        guard case .dict(let d) = v else { throw fail("\(what) on a \(v.typeName), not a dict", at: op) }
        guard !d.frozen else { throw fail("\(what) on a dict that is already nested in another object", at: op) }
        return d
    }

    private func append(_ items: [PickleValue], to l: PickleList, at op: Int) throws {
        for i in items {
            l.depth = max(l.depth, try nest(i, at: op) + 1)
            l.items.append(i)
        }
    }

    private func setItems(_ kv: [PickleValue], in d: PickleDict, at op: Int) throws {
        guard kv.count % 2 == 0 else { throw fail("odd number of items for SETITEMS", at: op) }
        var i = 0
        while i < kv.count {
            d.depth = max(d.depth, try nest(kv[i], at: op) + 1, try nest(kv[i + 1], at: op) + 1)
            try d.set(kv[i], kv[i + 1], offset: op)
            i += 2
        }
    }

    private mutating func memoGet(_ i: Int, at op: Int) throws -> PickleValue {
        guard let v = memo[i] else { throw fail("memo key \(i) was never stored", at: op) }
        return v
    }

    // MARK: Globals and calls

    private func global(_ module: String, _ name: String, at op: Int) throws -> PickleValue {
        if let g = PickleGlobal.resolve(module: module, name: name) { return .global(g) }
        let full = "\(module).\(name)"
        if module == "torch" && name.hasSuffix("Storage") {
            throw fail("storage type \(full) is not supported (only real float, integer and bool storages)", at: op, .unsupported)
        }
        throw fail("refusing to load global '\(full)': it is not on the allowlist of what a state dict needs (nothing was executed)",
                   at: op, .forbiddenGlobal(full))
    }

    private func ints(_ v: PickleValue, _ what: String, at op: Int) throws -> [Int] {
        guard let items = v.tupleItems else { throw fail("\(what) is a \(v.typeName), not a tuple of ints", at: op) }
        return try items.map {
            guard let i = $0.intValue else { throw fail("\(what) holds a \($0.typeName), not an int", at: op) }
            return i
        }
    }

    private func call(_ callable: PickleValue, _ args: [PickleValue], at op: Int) throws -> PickleValue {
        guard case .global(let g) = callable else {
            throw fail("REDUCE calls a \(callable.typeName), which is not an allowlisted callable", at: op)
        }
        switch g {
        case .orderedDict:
            let d = PickleDict(ordered: true)
            if let first = args.first {
                // OrderedDict(iterable of pairs)
                guard let pairs = first.tupleItems else { throw fail("OrderedDict argument is a \(first.typeName)", at: op) }
                for p in pairs {
                    guard let kv = p.tupleItems, kv.count == 2 else { throw fail("OrderedDict item is not a pair", at: op) }
                    try setItems(kv, in: d, at: op)
                }
            }
            return .dict(d)
        case .set, .frozenset:
            let l = PickleList()
            if let first = args.first {
                guard let items = first.tupleItems else { throw fail("set argument is a \(first.typeName)", at: op) }
                try append(items, to: l, at: op)
            }
            return .set(l)
        case .codecsEncode:
            guard args.count >= 1, case .string(let s) = args[0] else { throw fail("_codecs.encode needs a str", at: op) }
            let encoding = args.count > 1 ? args[1].stringValue ?? "" : "utf-8"
            if encoding == "latin1" || encoding == "latin-1" {
                var out: [UInt8] = []
                for u in s.unicodeScalars {
                    guard u.value < 256 else { throw fail("_codecs.encode: character outside latin-1", at: op) }
                    out.append(UInt8(u.value))
                }
                return .bytes(out)
            }
            return .bytes(Array(s.utf8))
        case .rebuildTensorV2, .rebuildTensor:
            guard args.count >= 4 else { throw fail("\(g.name) needs at least 4 arguments, got \(args.count)", at: op) }
            guard case .storage(let storage) = args[0] else {
                throw fail("\(g.name): first argument is a \(args[0].typeName), not a storage", at: op)
            }
            guard let offset = args[1].intValue else { throw fail("\(g.name): storage offset is not an int", at: op) }
            let size = try ints(args[2], "tensor size", at: op)
            let stride = try ints(args[3], "tensor stride", at: op)
            return .tensor(TorchTensorRef(storage: storage, offset: offset, size: size, stride: stride))
        case .rebuildParameter, .rebuildParameterWithState:
            guard let first = args.first, case .tensor = first else {
                throw fail("\(g.name): first argument is not a tensor", at: op)
            }
            return first
        case .storageType:
            throw fail("\(g.name) may only appear inside a persistent id", at: op)
        }
    }

    private func persistentLoad(_ pid: PickleValue, at op: Int) throws -> PickleValue {
        guard let t = pid.tupleItems, t.count == 5, t[0].stringValue == "storage" else {
            throw fail("persistent id is not ('storage', type, key, location, numel)", at: op)
        }
        guard case .global(.storageType(let dtype, _)) = t[1] else {
            throw fail("persistent id names a \(t[1].typeName), not a typed storage", at: op)
        }
        guard let key = t[2].stringValue ?? t[2].intValue.map(String.init) else {
            throw fail("storage key is a \(t[2].typeName)", at: op)
        }
        guard !key.isEmpty, !key.contains("/"), key != "..", key != "." else {
            throw fail("storage key '\(key)' is not a plain record name", at: op)
        }
        guard let location = t[3].stringValue else { throw fail("storage location is a \(t[3].typeName)", at: op) }
        guard let numel = t[4].intValue, numel >= 0 else { throw fail("storage size is not a non-negative int", at: op) }
        return .storage(TorchStorageRef(key: key, dtype: dtype, location: location, numel: numel))
    }

    // MARK: Main loop

    private mutating func run() throws -> PickleValue {
        while true {
            let op = pos
            guard pos < data.count else { throw fail("pickle ends without a STOP opcode (truncated)", at: op) }
            let code = data[pos]
            pos += 1
            switch code {
            case 0x80: // PROTO
                let v = try u8(at: op)
                guard v <= 5 else { throw fail("unsupported pickle protocol \(v)", at: op) }
            case 0x95: // FRAME
                let n = try u64(at: op)
                guard n <= data.count - pos else { throw fail("frame of \(n) bytes runs past the end", at: op) }
            case UInt8(ascii: "."): // STOP
                let v = try pop(at: op)
                return v
            case UInt8(ascii: "("): marks.append(stack.count)
            case UInt8(ascii: "0"): _ = try pop(at: op)
            case UInt8(ascii: "1"): _ = try popMark(at: op)
            case UInt8(ascii: "2"): stack.append(try top(at: op))
            case UInt8(ascii: "N"): stack.append(.none)
            case 0x88: stack.append(.bool(true))
            case 0x89: stack.append(.bool(false))
            case UInt8(ascii: "I"): // INT (text)
                let s = try line(at: op)
                if s == "00" { stack.append(.bool(false)) } else if s == "01" { stack.append(.bool(true)) } else {
                    guard let i = Int(s) else { throw fail("INT argument '\(s)' is not an integer", at: op) }
                    stack.append(.int(i))
                }
            case UInt8(ascii: "J"): stack.append(.int(try i32(at: op)))
            case UInt8(ascii: "K"): stack.append(.int(try u8(at: op)))
            case UInt8(ascii: "M"): stack.append(.int(try u16(at: op)))
            case UInt8(ascii: "L"): // LONG (text)
                var s = try line(at: op)
                if s.hasSuffix("L") { s.removeLast() }
                if let i = Int(s) { stack.append(.int(i)) } else {
                    guard !s.isEmpty, s.drop(while: { $0 == "-" }).allSatisfy(\.isNumber) else {
                        throw fail("LONG argument '\(s)' is not an integer", at: op)
                    }
                    stack.append(.bigInt(s))
                }
            case 0x8a, 0x8b: // LONG1, LONG4
                let n = code == 0x8a ? try u8(at: op) : try i32(at: op)
                guard n >= 0 else { throw fail("negative LONG4 length", at: op) }
                let b = try bytes(n, at: op)
                stack.append(Self.decodeLong(b))
            case UInt8(ascii: "F"):
                let s = try line(at: op)
                guard let d = Double(s) else { throw fail("FLOAT argument '\(s)' is not a number", at: op) }
                stack.append(.float(d))
            case UInt8(ascii: "G"):
                let b = try bytes(8, at: op)
                stack.append(.float(Double(bitPattern: UInt64(bigEndian: b.loadUnaligned(as: UInt64.self)))))
            case UInt8(ascii: "X"): stack.append(.string(try utf8(try bytes(try u32(at: op), at: op), at: op)))
            case 0x8c: stack.append(.string(try utf8(try bytes(try u8(at: op), at: op), at: op)))
            case 0x8d: stack.append(.string(try utf8(try bytes(try u64(at: op), at: op), at: op)))
            case UInt8(ascii: "V"): stack.append(.string(try line(at: op)))
            case UInt8(ascii: "S"): // STRING: a quoted Python 2 str literal
                var s = try line(at: op)
                if s.count >= 2, let f = s.first, f == "'" || f == "\"", s.last == f { s = String(s.dropFirst().dropLast()) }
                stack.append(.string(s))
            case UInt8(ascii: "T"):
                let n = try i32(at: op)
                guard n >= 0 else { throw fail("negative BINSTRING length", at: op) }
                stack.append(.string(String(decoding: try bytes(n, at: op), as: UTF8.self)))
            case UInt8(ascii: "U"): stack.append(.string(String(decoding: try bytes(try u8(at: op), at: op), as: UTF8.self)))
            case UInt8(ascii: "B"): stack.append(.bytes(Array(try bytes(try u32(at: op), at: op))))
            case UInt8(ascii: "C"): stack.append(.bytes(Array(try bytes(try u8(at: op), at: op))))
            case 0x8e, 0x96: stack.append(.bytes(Array(try bytes(try u64(at: op), at: op))))
            case UInt8(ascii: ")"): stack.append(.tuple([], depth: 1))
            case UInt8(ascii: "t"): stack.append(try makeTuple(try popMark(at: op), at: op))
            case 0x85, 0x86, 0x87: // TUPLE1..3
                let n = Int(code) - 0x84
                var items: [PickleValue] = []
                for _ in 0..<n { items.insert(try pop(at: op), at: 0) }
                stack.append(try makeTuple(items, at: op))
            case UInt8(ascii: "]"): stack.append(.list(PickleList()))
            case UInt8(ascii: "l"):
                let l = PickleList()
                try append(try popMark(at: op), to: l, at: op)
                stack.append(.list(l))
            case UInt8(ascii: "a"):
                let v = try pop(at: op)
                try append([v], to: try mutableList(try top(at: op), "APPEND", at: op), at: op)
            case UInt8(ascii: "e"):
                let items = try popMark(at: op)
                try append(items, to: try mutableList(try top(at: op), "APPENDS", at: op), at: op)
            case UInt8(ascii: "}"): stack.append(.dict(PickleDict(ordered: false)))
            case UInt8(ascii: "d"):
                let d = PickleDict(ordered: false)
                try setItems(try popMark(at: op), in: d, at: op)
                stack.append(.dict(d))
            case UInt8(ascii: "s"):
                let v = try pop(at: op)
                let k = try pop(at: op)
                try setItems([k, v], in: try mutableDict(try top(at: op), "SETITEM", at: op), at: op)
            case UInt8(ascii: "u"):
                let kv = try popMark(at: op)
                try setItems(kv, in: try mutableDict(try top(at: op), "SETITEMS", at: op), at: op)
            case 0x8f: stack.append(.set(PickleList()))
            case 0x90: // ADDITEMS
                let items = try popMark(at: op)
                guard case .set(let l) = try top(at: op), !l.frozen else { throw fail("ADDITEMS on something other than a fresh set", at: op) }
                try append(items, to: l, at: op)
            case 0x91: // FROZENSET
                let l = PickleList()
                try append(try popMark(at: op), to: l, at: op)
                stack.append(.set(l))
            case UInt8(ascii: "p"):
                let s = try line(at: op)
                guard let i = Int(s), i >= 0 else { throw fail("PUT index '\(s)' is not a non-negative int", at: op) }
                memo[i] = try top(at: op)
            case UInt8(ascii: "q"): memo[try u8(at: op)] = try top(at: op)
            case UInt8(ascii: "r"): memo[try u32(at: op)] = try top(at: op)
            case 0x94: memo[memo.count] = try top(at: op)
            case UInt8(ascii: "g"):
                let s = try line(at: op)
                guard let i = Int(s) else { throw fail("GET index '\(s)' is not an int", at: op) }
                stack.append(try memoGet(i, at: op))
            case UInt8(ascii: "h"): stack.append(try memoGet(try u8(at: op), at: op))
            case UInt8(ascii: "j"): stack.append(try memoGet(try u32(at: op), at: op))
            case UInt8(ascii: "c"): // GLOBAL
                let module = try line(at: op)
                let name = try line(at: op)
                stack.append(try global(module, name, at: op))
            case 0x93: // STACK_GLOBAL
                let name = try pop(at: op)
                let module = try pop(at: op)
                guard let m = module.stringValue, let n = name.stringValue else {
                    throw fail("STACK_GLOBAL needs two strings", at: op)
                }
                stack.append(try global(m, n, at: op))
            case UInt8(ascii: "R"): // REDUCE
                let args = try pop(at: op)
                let callable = try pop(at: op)
                guard case .tuple(let a, _) = args else { throw fail("REDUCE arguments are a \(args.typeName), not a tuple", at: op) }
                stack.append(try call(callable, a, at: op))
            case 0x81: // NEWOBJ
                let args = try pop(at: op)
                let cls = try pop(at: op)
                guard case .tuple(let a, _) = args else { throw fail("NEWOBJ arguments are not a tuple", at: op) }
                guard case .global(let g) = cls, g == .orderedDict || g == .set || g == .frozenset else {
                    throw fail("NEWOBJ on \(cls.typeName), which is not an allowlisted class", at: op)
                }
                stack.append(try call(cls, a, at: op))
            case 0x92: // NEWOBJ_EX
                _ = try pop(at: op) // kwargs
                let args = try pop(at: op)
                let cls = try pop(at: op)
                guard case .tuple(let a, _) = args else { throw fail("NEWOBJ_EX arguments are not a tuple", at: op) }
                guard case .global(let g) = cls, g == .orderedDict || g == .set || g == .frozenset else {
                    throw fail("NEWOBJ_EX on \(cls.typeName), which is not an allowlisted class", at: op)
                }
                stack.append(try call(cls, a, at: op))
            case UInt8(ascii: "b"): // BUILD: state is dropped (attributes such as _metadata)
                let state = try pop(at: op)
                _ = try nest(state, at: op)
                switch try top(at: op) {
                case .dict, .tensor: break
                case let other: throw fail("BUILD on a \(other.typeName) (only dicts and tensors may carry state)", at: op)
                }
            case UInt8(ascii: "Q"): // BINPERSID
                let pid = try pop(at: op)
                stack.append(try persistentLoad(pid, at: op))
            case UInt8(ascii: "P"):
                throw fail("text persistent ids (PERSID) are not used by torch.save", at: op)
            case UInt8(ascii: "i"): // INST module\nname\n
                let module = try line(at: op)
                let name = try line(at: op)
                throw fail("refusing to load global '\(module).\(name)' (INST): only allowlisted globals are loaded (nothing was executed)",
                           at: op, .forbiddenGlobal("\(module).\(name)"))
            case UInt8(ascii: "o"):
                throw fail("OBJ opcode (instantiates a class) is not allowed", at: op)
            case 0x82, 0x83, 0x84:
                throw fail("extension registry opcodes (EXT) are not allowed", at: op)
            case 0x97, 0x98:
                throw fail("out-of-band buffers are not supported", at: op)
            default:
                throw fail("unknown opcode 0x\(String(code, radix: 16))", at: op)
            }
        }
    }

    /// Two's-complement little-endian integer (LONG1/LONG4).
    static func decodeLong(_ b: UnsafeRawBufferPointer) -> PickleValue {
        if b.isEmpty { return .int(0) }
        if b.count <= 8 {
            var v: UInt64 = 0
            for (i, byte) in b.enumerated() { v |= UInt64(byte) << (8 * UInt64(i)) }
            if b.count < 8, b[b.count - 1] & 0x80 != 0 { v |= ~0 << (8 * UInt64(b.count)) }
            return .int(Int(Int64(bitPattern: v)))
        }
        // Wider: fits in Int only if the extra bytes are sign extension.
        let negative = b[b.count - 1] & 0x80 != 0
        let ext: UInt8 = negative ? 0xff : 0
        if b[8...].allSatisfy({ $0 == ext }) && ((b[7] & 0x80 != 0) == negative) {
            var v: UInt64 = 0
            for i in 0..<8 { v |= UInt64(b[i]) << (8 * UInt64(i)) }
            return .int(Int(Int64(bitPattern: v)))
        }
        let hex = b.reversed().map { byte -> String in
            let h = String(byte, radix: 16)
            return h.count == 1 ? "0" + h : h
        }.joined()
        return .bigInt("0x" + hex + (negative ? " (two's complement, negative)" : ""))
    }
}
