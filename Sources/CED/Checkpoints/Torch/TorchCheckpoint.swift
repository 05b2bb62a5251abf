import Foundation

/// The container format of a single checkpoint file, decided from its first bytes (the
/// file name's extension is not trusted).
public enum CheckpointFileFormat: String, Sendable {
    /// safetensors: 8-byte little-endian header length, then a JSON object.
    case safetensors
    /// `torch.save` since PyTorch 1.6: a zip archive with `data.pkl` and `data/<key>`.
    case torchZip
    /// `torch.save` before 1.6 (a bare pickle stream or a tar archive): not supported.
    case torchLegacy
    case unknown

    /// Looks at the first bytes of `path`.
    public static func detect(path: String) throws -> CheckpointFileFormat {
        guard let h = FileHandle(forReadingAtPath: path) else {
            throw CheckpointError(.notFound, file: path, reason: "cannot open the file")
        }
        defer { try? h.close() }
        let head = [UInt8](h.readData(ofLength: 512))
        return detect(head: head)
    }

    static func detect(head: [UInt8]) -> CheckpointFileFormat {
        if head.count >= 4, head[0] == 0x50, head[1] == 0x4b, (head[2] == 3 && head[3] == 4) || (head[2] == 5 && head[3] == 6) {
            return .torchZip
        }
        if head.count >= 2, head[0] == 0x80, head[1] <= 5 { return .torchLegacy }
        if head.count >= 262, Array(head[257..<262]) == Array("ustar".utf8) { return .torchLegacy }
        if head.count >= 10 {
            var n: UInt64 = 0
            for i in 0..<8 { n |= UInt64(head[i]) << (8 * UInt64(i)) }
            if n >= 2, n < 100_000_000, head[8] == UInt8(ascii: "{") { return .safetensors }
        }
        return .unknown
    }
}

/// A checkpoint written by `torch.save` (the zip format of PyTorch ≥ 1.6), read without
/// Python and without executing anything.
///
/// The archive may use any top-level folder name (`archive/`, `micro/`,
/// `pytorch_model/`, …): the folder holding `data.pkl` is used, with its `byteorder`
/// record (little-endian when absent) and its `data/<key>` storage records. The pickle
/// is decoded by a restricted unpickler (see `Unpickler`): a global outside the
/// allowlist stops loading with `CheckpointError.Kind.forbiddenGlobal` naming it.
///
/// The state dict is the unpickled object itself when it is a dict of tensors, or — for
/// training checkpoints such as `{"model": state_dict, "epoch": 42, ...}` — the first
/// dict of tensors under the keys `state_dict`, `model`, `model_state_dict`, `module`,
/// `net`, `network`, `weights`, `params` (in that order), or the only dict-of-tensors
/// value when there is exactly one.
public struct TorchCheckpoint: Sendable {
    /// The tensors (float32) by their names in the file.
    public var stateDict: StateDict
    /// The key of the wrapping dict the state dict was found under, nil for a plain state dict.
    public var wrapperKey: String?
    /// The wrapping dict's other keys (e.g. `epoch`, `config`), sorted.
    public var otherKeys: [String]

    static let wrapperKeys = ["state_dict", "model", "model_state_dict", "module", "net", "network", "weights", "params"]

    /// Reads `path`; throws `CheckpointError` for anything malformed, hostile or unsupported.
    public static func load(path: String) throws -> TorchCheckpoint {
        let file = try MappedFile(path: path)
        let head = Array(file.bytes.prefix(512))
        switch CheckpointFileFormat.detect(head: head) {
        case .torchZip: break
        case .torchLegacy:
            throw CheckpointError(.legacyTorchFormat, file: path,
                                  reason: "this is a PyTorch checkpoint in the legacy pre-1.6 (non-zip) format, which is not supported; re-save it with PyTorch ≥ 1.6 (torch.save(torch.load(path, weights_only=True), new_path)) or convert it to safetensors")
        default:
            throw CheckpointError(.unrecognizedFormat, file: path, reason: "not a PyTorch zip checkpoint (no zip signature at the start)")
        }
        return try load(archive: try ZipArchive(file: file))
    }

    static func load(archive: ZipArchive) throws -> TorchCheckpoint {
        let path = archive.path
        // Locate <folder>/data.pkl.
        let pickles = archive.entries.filter { e in
            let parts = e.name.split(separator: "/", omittingEmptySubsequences: false)
            return parts.count == 2 && parts[1] == "data.pkl" && !parts[0].isEmpty
        }
        guard pickles.count == 1, let pkl = pickles.first else {
            if pickles.count > 1 {
                throw CheckpointError(.corruptArchive, file: path, reason: "the archive holds several data.pkl records: \(pickles.map(\.name).joined(separator: ", "))")
            }
            if archive.entries.contains(where: { $0.name.hasSuffix("/constants.pkl") || $0.name.contains("/code/") }) {
                throw CheckpointError(.unrecognizedFormat, file: path, reason: "this is a TorchScript archive (torch.jit.save), not a torch.save checkpoint; save the model's state_dict() instead")
            }
            throw CheckpointError(.corruptArchive, file: path, reason: "the zip archive has no <folder>/data.pkl record, so it is not a torch.save checkpoint")
        }
        let prefix = String(pkl.name.dropLast("data.pkl".count))

        var bigEndian = false
        if let bo = archive.entry(prefix + "byteorder") {
            let s = String(decoding: try archive.read(bo).array, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            switch s {
            case "little": bigEndian = false
            case "big": bigEndian = true
            default: throw CheckpointError(.corruptArchive, file: path, entry: bo.name, reason: "byteorder is '\(s)', expected 'little' or 'big'")
            }
        }

        let pickleBytes = try archive.read(pkl)
        let root: PickleValue
        do {
            root = try pickleBytes.withBytes { try Unpickler.load($0) }
        } catch let f as UnpicklerFailure {
            throw CheckpointError(f.kind, file: path, entry: pkl.name, offset: f.offset, reason: f.reason)
        }

        let (dict, wrapperKey, otherKeys) = try findStateDict(root, file: path, entry: pkl.name)

        // Pass 1: every tensor's storage record exists and has the declared size.
        var storages: [String: ByteSlice] = [:]
        var records: [(ZipArchive.Entry, ByteSlice)] = []
        var refs: [(String, TorchTensorRef)] = []
        for (k, v) in dict.entries {
            guard case .string(let name) = k else {
                throw CheckpointError(.noStateDict, file: path, entry: pkl.name, reason: "state dict key \(k.typeName) is not a string")
            }
            guard case .tensor(let ref) = v else {
                throw CheckpointError(.noStateDict, file: path, entry: pkl.name, tensor: name, reason: "value is a \(v.typeName), not a tensor")
            }
            refs.append((name, ref))
            if storages[ref.storage.key] != nil { continue }
            let recordName = prefix + "data/" + ref.storage.key
            guard let entry = archive.entry(recordName) else {
                throw CheckpointError(.missingStorage(ref.storage.key), file: path, entry: recordName, tensor: name,
                                      reason: "the storage record '\(recordName)' this tensor refers to is missing from the archive")
            }
            let bytes = try archive.read(entry, verifyCRC: false)
            let needed = ref.storage.numel.multipliedReportingOverflow(by: ref.storage.dtype.byteSize)
            guard !needed.overflow, bytes.count == needed.partialValue else {
                throw CheckpointError(.corruptArchive, file: path, entry: recordName, tensor: name,
                                      reason: "storage holds \(bytes.count) bytes but the pickle declares \(ref.storage.numel) \(ref.storage.dtype.rawValue) elements (\(needed.overflow ? "overflow" : String(needed.partialValue)) bytes)")
            }
            storages[ref.storage.key] = bytes
            records.append((entry, bytes))
        }
        // Pass 2: checksums. Pass 3: copy the (bounds-checked) views out.
        try archive.checkCRCs(records)
        var tensors: [String: Tensor] = [:]
        for (name, ref) in refs {
            tensors[name] = try materialize(ref, storages[ref.storage.key]!, bigEndian: bigEndian, file: path, name: name)
        }
        return TorchCheckpoint(stateDict: StateDict(tensors: tensors, source: path), wrapperKey: wrapperKey, otherKeys: otherKeys)
    }

    private static func isTensorDict(_ v: PickleValue) -> PickleDict? {
        guard case .dict(let d) = v, d.count > 0 else { return nil }
        for (k, value) in d.entries {
            guard case .string = k, case .tensor = value else { return nil }
        }
        return d
    }

    static func findStateDict(_ root: PickleValue, file: String, entry: String) throws -> (PickleDict, String?, [String]) {
        if let d = isTensorDict(root) { return (d, nil, []) }
        guard case .dict(let top) = root else {
            throw CheckpointError(.noStateDict, file: file, entry: entry, reason: "the checkpoint holds a \(root.typeName), not a state dict")
        }
        let keys = top.keys.compactMap(\.stringValue)
        func result(_ key: String, _ d: PickleDict) -> (PickleDict, String?, [String]) {
            (d, key, keys.filter { $0 != key }.sorted())
        }
        for key in wrapperKeys {
            if let v = top[key], let d = isTensorDict(v) { return result(key, d) }
        }
        let candidates = top.entries.compactMap { kv -> (String, PickleDict)? in
            guard let k = kv.key.stringValue, let d = isTensorDict(kv.value) else { return nil }
            return (k, d)
        }
        if candidates.count == 1 { return result(candidates[0].0, candidates[0].1) }
        if top.count > 0, top.entries.contains(where: { if case .tensor = $0.value { return true }; return false }) {
            let bad = top.entries.first { if case .tensor = $0.value { return false }; return true }!
            throw CheckpointError(.noStateDict, file: file, entry: entry,
                                  reason: "the state dict mixes tensors with a \(bad.value.typeName) under '\(bad.key.stringValue ?? bad.key.typeName)'")
        }
        let listed = keys.sorted().joined(separator: ", ")
        throw CheckpointError(.noStateDict, file: file, entry: entry,
                              reason: candidates.isEmpty
                                ? "no dict of tensors found (top-level keys: \(listed))"
                                : "several dicts of tensors (\(candidates.map(\.0).sorted().joined(separator: ", "))); none under a known key (\(wrapperKeys.joined(separator: ", ")))")
    }

    /// Copies a strided view of a storage into a dense float32 tensor, after checking
    /// that every element it addresses lies inside the storage.
    static func materialize(_ t: TorchTensorRef, _ storage: ByteSlice, bigEndian: Bool, file: String, name: String) throws -> Tensor {
        func fail(_ reason: String) -> CheckpointError {
            CheckpointError(.tensorOutOfBounds, file: file, entry: "data/\(t.storage.key)", tensor: name, reason: reason)
        }
        guard t.size.count == t.stride.count else {
            throw fail("size \(t.size) and stride \(t.stride) have different ranks")
        }
        guard t.size.allSatisfy({ $0 >= 0 }) else { throw fail("negative size \(t.size)") }
        guard t.stride.allSatisfy({ $0 >= 0 }) else { throw fail("negative stride \(t.stride)") }
        guard t.offset >= 0 else { throw fail("negative storage offset \(t.offset)") }
        var count = 1
        for s in t.size {
            let (p, o) = count.multipliedReportingOverflow(by: s)
            guard !o else { throw fail("size \(t.size) overflows") }
            count = p
        }
        if count > 0 {
            var last = t.offset
            for (s, st) in zip(t.size, t.stride) {
                let (p, o1) = (s - 1).multipliedReportingOverflow(by: st)
                let (q, o2) = last.addingReportingOverflow(p)
                guard !o1, !o2 else { throw fail("size \(t.size) with stride \(t.stride) overflows") }
                last = q
            }
            guard last < t.storage.numel else {
                throw fail("size \(t.size), stride \(t.stride) and offset \(t.offset) reach element \(last), but the storage holds \(t.storage.numel)")
            }
        }
        if count == 0 { return Tensor(shape: t.size, scalars: []) }

        // Row-major contiguous (ignoring dimensions of size 1)?
        var contiguous = true
        var expected = 1
        for (s, st) in zip(t.size, t.stride).reversed() where s != 1 {
            if st != expected { contiguous = false; break }
            expected *= s
        }
        let raw = storage.bytes
        // Uninitialised storage: every element is written below.
        let out = [Float](unsafeUninitializedCapacity: count) { dst, initialized in
            initialized = count
            withExtendedLifetime(storage) {
                if contiguous {
                    convert(raw, dtype: t.storage.dtype, bigEndian: bigEndian, start: t.offset, count: count, into: dst.baseAddress!)
                } else {
                    // Gather: element indices of the view in row-major order.
                    var indices = [Int](repeating: 0, count: count)
                    var idx = [Int](repeating: 0, count: t.size.count)
                    var linear = t.offset
                    for i in 0..<count {
                        indices[i] = linear
                        var d = t.size.count - 1
                        while d >= 0 {
                            idx[d] += 1
                            linear += t.stride[d]
                            if idx[d] < t.size[d] { break }
                            linear -= t.stride[d] * t.size[d]
                            idx[d] = 0
                            d -= 1
                        }
                    }
                    gather(raw, dtype: t.storage.dtype, bigEndian: bigEndian, indices: indices, into: dst.baseAddress!)
                }
            }
        }
        return Tensor(shape: t.size, scalars: out)
    }

    @inline(__always)
    private static func load<T: FixedWidthInteger>(_ raw: UnsafeRawBufferPointer, _ i: Int, _ type: T.Type, _ big: Bool) -> T {
        let v = raw.loadUnaligned(fromByteOffset: i * MemoryLayout<T>.size, as: T.self)
        return big ? T(bigEndian: v) : T(littleEndian: v)
    }

    static func convert(_ raw: UnsafeRawBufferPointer, dtype: TorchDType, bigEndian big: Bool, start: Int, count: Int,
                        into dst: UnsafeMutablePointer<Float>) {
        switch dtype {
        case .float32:
            if !big && UInt32(littleEndian: 1) == 1 {
                memcpy(dst, raw.baseAddress! + start * 4, count * 4)
            } else {
                for i in 0..<count { dst[i] = Float(bitPattern: load(raw, start + i, UInt32.self, big)) }
            }
        case .float64: for i in 0..<count { dst[i] = Float(Double(bitPattern: load(raw, start + i, UInt64.self, big))) }
        case .float16: for i in 0..<count { dst[i] = halfToFloat(load(raw, start + i, UInt16.self, big)) }
        case .bfloat16: for i in 0..<count { dst[i] = Float(bitPattern: UInt32(load(raw, start + i, UInt16.self, big)) << 16) }
        case .int64: for i in 0..<count { dst[i] = Float(load(raw, start + i, Int64.self, big)) }
        case .int32: for i in 0..<count { dst[i] = Float(load(raw, start + i, Int32.self, big)) }
        case .int16: for i in 0..<count { dst[i] = Float(load(raw, start + i, Int16.self, big)) }
        case .int8: for i in 0..<count { dst[i] = Float(Int8(bitPattern: raw[start + i])) }
        case .uint8, .bool: for i in 0..<count { dst[i] = Float(raw[start + i]) }
        }
    }

    static func gather(_ raw: UnsafeRawBufferPointer, dtype: TorchDType, bigEndian big: Bool, indices: [Int],
                       into dst: UnsafeMutablePointer<Float>) {
        switch dtype {
        case .float32: for (i, j) in indices.enumerated() { dst[i] = Float(bitPattern: load(raw, j, UInt32.self, big)) }
        case .float64: for (i, j) in indices.enumerated() { dst[i] = Float(Double(bitPattern: load(raw, j, UInt64.self, big))) }
        case .float16: for (i, j) in indices.enumerated() { dst[i] = halfToFloat(load(raw, j, UInt16.self, big)) }
        case .bfloat16: for (i, j) in indices.enumerated() { dst[i] = Float(bitPattern: UInt32(load(raw, j, UInt16.self, big)) << 16) }
        case .int64: for (i, j) in indices.enumerated() { dst[i] = Float(load(raw, j, Int64.self, big)) }
        case .int32: for (i, j) in indices.enumerated() { dst[i] = Float(load(raw, j, Int32.self, big)) }
        case .int16: for (i, j) in indices.enumerated() { dst[i] = Float(load(raw, j, Int16.self, big)) }
        case .int8: for (i, j) in indices.enumerated() { dst[i] = Float(Int8(bitPattern: raw[j])) }
        case .uint8, .bool: for (i, j) in indices.enumerated() { dst[i] = Float(raw[j]) }
        }
    }
}
