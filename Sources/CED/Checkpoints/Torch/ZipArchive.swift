import Foundation

/// A read-only zip archive over a memory-mapped file, as PyTorch writes them
/// (`torch.save` since 1.6: stored entries, 64-byte aligned, zip64 when large).
///
/// Everything is validated before use: the end-of-central-directory record (and its
/// zip64 form), every central-directory entry, every local header, and every entry's
/// byte range against the file size. Entries are stored (method 0) or deflated (method
/// 8); others are refused. CRC-32 is checked when an entry is read (entries whose CRC
/// field is 0 — `torch.save` with CRC computation disabled — are not checked).
final class ZipArchive: @unchecked Sendable {
    struct Entry: Sendable {
        var name: String
        var method: UInt16
        var flags: UInt16
        var crc32: UInt32
        var compressedSize: Int
        var uncompressedSize: Int
        var localHeaderOffset: Int
        /// Start of the entry's data in the file (after the local header).
        var dataOffset: Int
    }

    let file: MappedFile
    let entries: [Entry]
    private let index: [String: Int]

    var path: String { file.path }

    private static func fail(_ path: String, _ reason: String, entry: String? = nil, offset: Int? = nil) -> CheckpointError {
        CheckpointError(.corruptArchive, file: path, entry: entry, offset: offset, reason: reason)
    }

    init(file: MappedFile) throws {
        self.file = file
        let b = file.bytes
        let path = file.path
        let size = b.count
        func u16(_ o: Int) -> Int { Int(UInt16(littleEndian: b.loadUnaligned(fromByteOffset: o, as: UInt16.self))) }
        func u32(_ o: Int) -> Int { Int(UInt32(littleEndian: b.loadUnaligned(fromByteOffset: o, as: UInt32.self))) }
        func u64(_ o: Int) throws -> Int {
            let v = UInt64(littleEndian: b.loadUnaligned(fromByteOffset: o, as: UInt64.self))
            guard v <= UInt64(Int.max / 2) else { throw Self.fail(path, "zip64 field \(v) is implausibly large", offset: o) }
            return Int(v)
        }

        // End of central directory: 22 bytes + comment (≤ 65535), searched from the end.
        guard size >= 22 else {
            throw Self.fail(path, "file is \(size) bytes, too short for a zip archive (truncated?)")
        }
        var eocd = -1
        var o = size - 22
        let lowest = max(0, size - 22 - 65535)
        while o >= lowest {
            if u32(o) == 0x0605_4b50 && o + 22 + u16(o + 20) == size { eocd = o; break }
            o -= 1
        }
        if eocd < 0 {
            // Accept trailing garbage only when no exact match exists.
            o = size - 22
            while o >= lowest {
                if u32(o) == 0x0605_4b50 { eocd = o; break }
                o -= 1
            }
        }
        guard eocd >= 0 else {
            throw Self.fail(path, "no end-of-central-directory record: the archive is truncated or not a zip file")
        }
        var count = u16(eocd + 10)
        var cdSize = u32(eocd + 12)
        var cdOffset = u32(eocd + 16)
        if count == 0xffff || cdSize == 0xffff_ffff || cdOffset == 0xffff_ffff {
            // Zip64: locator right before the EOCD points at the zip64 EOCD record.
            let loc = eocd - 20
            guard loc >= 0, u32(loc) == 0x0706_4b50 else {
                throw Self.fail(path, "zip64 sizes announced but no zip64 locator found", offset: max(loc, 0))
            }
            let rec = try u64(loc + 8)
            guard rec >= 0, rec + 56 <= size, u32(rec) == 0x0606_4b50 else {
                throw Self.fail(path, "zip64 end-of-central-directory record missing or outside the file", offset: rec)
            }
            count = try u64(rec + 32)
            cdSize = try u64(rec + 40)
            cdOffset = try u64(rec + 48)
        }
        guard cdOffset <= size, cdSize <= size - cdOffset else {
            throw Self.fail(path, "central directory (\(cdSize) bytes at \(cdOffset)) lies outside the \(size)-byte file (truncated?)", offset: cdOffset)
        }
        guard count <= cdSize / 46 else {
            throw Self.fail(path, "\(count) entries cannot fit in a \(cdSize)-byte central directory", offset: cdOffset)
        }

        var entries: [Entry] = []
        entries.reserveCapacity(count)
        var p = cdOffset
        let cdEnd = cdOffset + cdSize
        for i in 0..<count {
            guard p + 46 <= cdEnd, u32(p) == 0x0201_4b50 else {
                throw Self.fail(path, "central directory entry \(i) is malformed", offset: p)
            }
            let flags = UInt16(u16(p + 8))
            let method = UInt16(u16(p + 10))
            let crc = UInt32(u32(p + 16))
            var csize = u32(p + 20)
            var usize = u32(p + 24)
            let nameLen = u16(p + 28), extraLen = u16(p + 30), commentLen = u16(p + 32)
            var local = u32(p + 42)
            let next = p + 46 + nameLen + extraLen + commentLen
            guard next <= cdEnd else {
                throw Self.fail(path, "central directory entry \(i) runs past the directory", offset: p)
            }
            let name = String(decoding: UnsafeRawBufferPointer(rebasing: b[(p + 46)..<(p + 46 + nameLen)]), as: UTF8.self)
            // Zip64 extended information: only the fields saturated above are present.
            var e = p + 46 + nameLen
            let extraEnd = e + extraLen
            while e + 4 <= extraEnd {
                let id = u16(e), len = u16(e + 2)
                guard e + 4 + len <= extraEnd else { break }
                if id == 0x0001 {
                    var f = e + 4
                    if usize == 0xffff_ffff { guard f + 8 <= e + 4 + len else { break }; usize = try u64(f); f += 8 }
                    if csize == 0xffff_ffff { guard f + 8 <= e + 4 + len else { break }; csize = try u64(f); f += 8 }
                    if local == 0xffff_ffff { guard f + 8 <= e + 4 + len else { break }; local = try u64(f); f += 8 }
                }
                e += 4 + len
            }
            if flags & 1 != 0 {
                throw CheckpointError(.unsupported, file: path, entry: name, reason: "entry is encrypted")
            }
            guard local + 30 <= size, u32(local) == 0x0403_4b50 else {
                throw Self.fail(path, "local header missing or outside the file (truncated?)", entry: name, offset: local)
            }
            let dataOffset = local + 30 + u16(local + 26) + u16(local + 28)
            guard dataOffset <= size, csize <= size - dataOffset else {
                throw Self.fail(path, "data (\(csize) bytes at \(dataOffset)) runs past the end of the \(size)-byte file: the archive is truncated", entry: name, offset: dataOffset)
            }
            if method == 0 && csize != usize {
                throw Self.fail(path, "stored entry declares \(csize) compressed but \(usize) uncompressed bytes", entry: name, offset: p)
            }
            entries.append(Entry(name: name, method: method, flags: flags, crc32: crc, compressedSize: csize,
                                 uncompressedSize: usize, localHeaderOffset: local, dataOffset: dataOffset))
            p = next
        }
        self.entries = entries
        var index: [String: Int] = [:]
        for (i, e) in entries.enumerated() {
            if index[e.name] != nil {
                throw Self.fail(path, "the archive holds two entries with this name", entry: e.name)
            }
            index[e.name] = i
        }
        self.index = index
    }

    func entry(_ name: String) -> Entry? { index[name].map { entries[$0] } }

    /// The entry's uncompressed bytes (zero-copy for stored entries), CRC-checked.
    func read(_ entry: Entry, verifyCRC: Bool = true) throws -> ByteSlice {
        let raw = UnsafeRawBufferPointer(rebasing: file.bytes[entry.dataOffset..<(entry.dataOffset + entry.compressedSize)])
        let out: ByteSlice
        switch entry.method {
        case 0:
            out = ByteSlice(owner: file, bytes: raw)
        case 8:
            // Deflate cannot expand more than ~1032:1; refuse a header that claims more.
            guard entry.uncompressedSize <= entry.compressedSize * 1032 + 1024 else {
                throw Self.fail(path, "declares \(entry.uncompressedSize) bytes from \(entry.compressedSize) deflated bytes, more than deflate can produce", entry: entry.name)
            }
            let buffer = OwnedBytes(capacity: entry.uncompressedSize)
            do {
                try Inflate.decode(raw, into: buffer.pointer, outputSize: entry.uncompressedSize)
            } catch let e as InflateError {
                throw Self.fail(path, "deflated data is corrupt: \(e.reason)", entry: entry.name, offset: entry.dataOffset + min(e.offset, entry.compressedSize))
            }
            out = buffer.slice
        default:
            throw CheckpointError(.unsupported, file: path, entry: entry.name,
                                  reason: "compression method \(entry.method) is not supported (only stored and deflate)")
        }
        if verifyCRC { try checkCRC(entry, out) }
        return out
    }

    /// Throws when `bytes` (the entry's uncompressed data) do not match its CRC-32.
    func checkCRC(_ entry: Entry, _ bytes: ByteSlice) throws {
        guard entry.crc32 != 0 else { return }
        let crc = bytes.withBytes { CRC32.checksum($0) }
        if crc != entry.crc32 {
            throw Self.fail(path, "CRC-32 mismatch (stored \(String(entry.crc32, radix: 16)), computed \(String(crc, radix: 16))): the data is corrupt", entry: entry.name, offset: entry.dataOffset)
        }
    }

    /// Checks several entries' CRC-32 on two threads (CRC runs at ~1.5 GB/s per core,
    /// a large share of loading a big checkpoint); throws the first mismatch found.
    func checkCRCs(_ items: [(Entry, ByteSlice)]) throws {
        let order = items.indices.sorted { items[$0].1.count > items[$1].1.count }
        // Greedy split by size into two balanced halves.
        var parts: [[Int]] = [[], []]
        var load = [0, 0]
        for i in order {
            let w = load[0] <= load[1] ? 0 : 1
            parts[w].append(i)
            load[w] += items[i].1.count
        }
        let failures = UnsafeMutableBufferPointer<Error?>.allocate(capacity: 2)
        failures.initialize(repeating: nil)
        defer { failures.deinitialize(); failures.deallocate() }
        DispatchQueue.concurrentPerform(iterations: 2) { w in
            for i in parts[w] {
                do { try checkCRC(items[i].0, items[i].1) } catch { failures[w] = error; return }
            }
        }
        if let e = failures[0] ?? failures[1] { throw e }
    }
}
