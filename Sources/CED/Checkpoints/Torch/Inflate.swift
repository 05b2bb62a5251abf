/// A raw DEFLATE (RFC 1951) decoder, for zip entries stored with method 8. `torch.save`
/// writes stored (uncompressed) entries, but an archive re-packed by a zip tool may be
/// deflated. The output size is known from the zip header and is enforced: a stream
/// that would produce more (or fewer) bytes is rejected, so a "zip bomb" cannot make us
/// allocate more than the header declares.
struct InflateError: Error, CustomStringConvertible {
    var reason: String
    /// Byte offset in the compressed input where decoding failed.
    var offset: Int
    var description: String { "\(reason) (at compressed byte \(offset))" }
}

enum Inflate {
    /// Decodes `input` into exactly `outputSize` bytes written to `output`.
    static func decode(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawPointer, outputSize: Int) throws {
        var state = Decoder(input: input, output: output.assumingMemoryBound(to: UInt8.self), capacity: outputSize)
        try state.run()
        if state.written != outputSize {
            throw InflateError(reason: "stream ends after \(state.written) bytes, the header declares \(outputSize)", offset: state.bytePosition)
        }
    }

    // Length codes 257...285: base length and extra bits.
    static let lengthBase: [UInt16] = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31,
                                       35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258]
    static let lengthExtra: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2,
                                       3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0]
    static let distBase: [UInt32] = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193,
                                     257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145,
                                     8193, 12289, 16385, 24577]
    static let distExtra: [UInt8] = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6,
                                     7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13]
    static let codeLengthOrder: [Int] = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]

    /// A canonical Huffman code as a single-level lookup table indexed by the next
    /// `bits` input bits (LSB first). Entry = symbol << 4 | code length; 0 = no code.
    struct Huffman {
        var table: [UInt32]
        var bits: Int

        init(lengths: [UInt8], what: String, offset: Int) throws {
            var count = [Int](repeating: 0, count: 16)
            for l in lengths { count[Int(l)] += 1 }
            count[0] = 0
            let maxLen = (1...15).last(where: { count[$0] > 0 }) ?? 0
            guard maxLen > 0 else {
                // No codes at all (allowed for a distance code of a block without matches).
                table = [0]
                bits = 0
                return
            }
            var left = 1
            for len in 1...15 {
                left <<= 1
                left -= count[len]
                if left < 0 { throw InflateError(reason: "over-subscribed \(what) code", offset: offset) }
            }
            var next = [Int](repeating: 0, count: 16)
            var code = 0
            for len in 1...15 {
                code = (code + count[len - 1]) << 1
                next[len] = code
            }
            bits = maxLen
            table = [UInt32](repeating: 0, count: 1 << maxLen)
            for (symbol, l) in lengths.enumerated() where l > 0 {
                let len = Int(l)
                let c = next[len]
                next[len] += 1
                var reversed = 0
                for i in 0..<len where (c >> i) & 1 != 0 { reversed |= 1 << (len - 1 - i) }
                var idx = reversed
                let entry = UInt32(symbol) << 4 | UInt32(len)
                while idx < table.count {
                    table[idx] = entry
                    idx += 1 << len
                }
            }
        }
    }

    struct Decoder {
        let input: UnsafeRawBufferPointer
        let output: UnsafeMutablePointer<UInt8>
        let capacity: Int
        var written = 0
        var pos = 0           // next input byte to load into the bit buffer
        var bitBuffer: UInt64 = 0
        var bitCount = 0
        var overrun = 0       // zero bytes supplied past the end of input

        init(input: UnsafeRawBufferPointer, output: UnsafeMutablePointer<UInt8>, capacity: Int) {
            self.input = input
            self.output = output
            self.capacity = capacity
        }

        var bytePosition: Int { max(0, pos - bitCount / 8) }

        @inline(__always) mutating func refill() {
            while bitCount <= 56 {
                let byte: UInt64
                if pos < input.count {
                    byte = UInt64(input[pos])
                } else {
                    byte = 0
                    overrun += 1
                }
                pos += 1
                bitBuffer |= byte << UInt64(bitCount)
                bitCount += 8
            }
        }

        @inline(__always) mutating func take(_ n: Int) throws -> Int {
            if n == 0 { return 0 }
            if bitCount < n { refill() }
            let v = Int(bitBuffer & ((1 << UInt64(n)) - 1))
            bitBuffer >>= UInt64(n)
            bitCount -= n
            try checkOverrun()
            return v
        }

        @inline(__always) func checkOverrun() throws {
            // Bits consumed beyond the real input mean the stream is truncated.
            if overrun > 0 && bitCount < overrun * 8 {
                throw InflateError(reason: "compressed data ends early (truncated entry)", offset: input.count)
            }
        }

        @inline(__always) mutating func decodeSymbol(_ h: Huffman) throws -> Int {
            if h.bits == 0 { throw InflateError(reason: "a symbol is coded with an empty code", offset: bytePosition) }
            if bitCount < h.bits { refill() }
            let entry = h.table[Int(bitBuffer & ((1 << UInt64(h.bits)) - 1))]
            let len = Int(entry & 15)
            if len == 0 { throw InflateError(reason: "invalid Huffman code", offset: bytePosition) }
            bitBuffer >>= UInt64(len)
            bitCount -= len
            try checkOverrun()
            return Int(entry >> 4)
        }

        mutating func run() throws {
            var last = false
            while !last {
                last = try take(1) == 1
                let type = try take(2)
                switch type {
                case 0: try storedBlock()
                case 1: try huffmanBlock(Inflate.fixedLiteral, Inflate.fixedDistance)
                case 2:
                    let (lit, dist) = try dynamicTables()
                    try huffmanBlock(lit, dist)
                default:
                    throw InflateError(reason: "invalid block type 3", offset: bytePosition)
                }
            }
        }

        mutating func storedBlock() throws {
            // Drop to a byte boundary, then LEN and NLEN.
            let skip = bitCount % 8
            bitBuffer >>= UInt64(skip)
            bitCount -= skip
            let len = try take(16)
            let nlen = try take(16)
            if len != (~nlen & 0xffff) {
                throw InflateError(reason: "stored block length \(len) does not match its complement", offset: bytePosition)
            }
            // Bytes still in the bit buffer come first, then straight from the input.
            var remaining = len
            while remaining > 0 && bitCount >= 8 {
                try emit(UInt8(try take(8)))
                remaining -= 1
            }
            guard remaining <= input.count - pos else {
                throw InflateError(reason: "stored block of \(len) bytes runs past the end of the data", offset: pos)
            }
            guard written + remaining <= capacity else {
                throw InflateError(reason: "stream produces more than the \(capacity) bytes the header declares", offset: pos)
            }
            if remaining > 0 {
                (output + written).update(from: input.baseAddress!.advanced(by: pos).assumingMemoryBound(to: UInt8.self), count: remaining)
                written += remaining
                pos += remaining
            }
        }

        @inline(__always) mutating func emit(_ b: UInt8) throws {
            guard written < capacity else {
                throw InflateError(reason: "stream produces more than the \(capacity) bytes the header declares", offset: bytePosition)
            }
            output[written] = b
            written += 1
        }

        mutating func dynamicTables() throws -> (Huffman, Huffman) {
            let hlit = try take(5) + 257
            let hdist = try take(5) + 1
            let hclen = try take(4) + 4
            guard hlit <= 286, hdist <= 30 else {
                throw InflateError(reason: "too many length or distance codes (\(hlit), \(hdist))", offset: bytePosition)
            }
            var clLengths = [UInt8](repeating: 0, count: 19)
            for i in 0..<hclen { clLengths[Inflate.codeLengthOrder[i]] = UInt8(try take(3)) }
            let cl = try Huffman(lengths: clLengths, what: "code-length", offset: bytePosition)
            var lengths = [UInt8]()
            lengths.reserveCapacity(hlit + hdist)
            while lengths.count < hlit + hdist {
                let sym = try decodeSymbol(cl)
                switch sym {
                case 0...15: lengths.append(UInt8(sym))
                case 16:
                    guard let prev = lengths.last else {
                        throw InflateError(reason: "repeat code with no previous length", offset: bytePosition)
                    }
                    let n = 3 + (try take(2))
                    lengths += [UInt8](repeating: prev, count: n)
                case 17: lengths += [UInt8](repeating: 0, count: 3 + (try take(3)))
                default: lengths += [UInt8](repeating: 0, count: 11 + (try take(7)))
                }
            }
            guard lengths.count == hlit + hdist else {
                throw InflateError(reason: "code lengths overflow the declared count", offset: bytePosition)
            }
            guard lengths[256] != 0 else {
                throw InflateError(reason: "block has no end-of-block code", offset: bytePosition)
            }
            let lit = try Huffman(lengths: Array(lengths[0..<hlit]), what: "literal/length", offset: bytePosition)
            let dist = try Huffman(lengths: Array(lengths[hlit...]), what: "distance", offset: bytePosition)
            return (lit, dist)
        }

        mutating func huffmanBlock(_ lit: Huffman, _ dist: Huffman) throws {
            while true {
                let sym = try decodeSymbol(lit)
                if sym < 256 {
                    try emit(UInt8(sym))
                } else if sym == 256 {
                    return
                } else {
                    let li = sym - 257
                    guard li < 29 else { throw InflateError(reason: "invalid length symbol \(sym)", offset: bytePosition) }
                    let length = Int(Inflate.lengthBase[li]) + (try take(Int(Inflate.lengthExtra[li])))
                    let ds = try decodeSymbol(dist)
                    guard ds < 30 else { throw InflateError(reason: "invalid distance symbol \(ds)", offset: bytePosition) }
                    let distance = Int(Inflate.distBase[ds]) + (try take(Int(Inflate.distExtra[ds])))
                    guard distance <= written else {
                        throw InflateError(reason: "distance \(distance) reaches before the start of the output", offset: bytePosition)
                    }
                    guard written + length <= capacity else {
                        throw InflateError(reason: "stream produces more than the \(capacity) bytes the header declares", offset: bytePosition)
                    }
                    var src = written - distance
                    for _ in 0..<length {
                        output[written] = output[src]
                        written += 1
                        src += 1
                    }
                }
            }
        }
    }

    static let fixedLiteral: Huffman = {
        var l = [UInt8](repeating: 8, count: 288)
        for i in 144..<256 { l[i] = 9 }
        for i in 256..<280 { l[i] = 7 }
        return try! Huffman(lengths: l, what: "fixed literal", offset: 0)
    }()
    static let fixedDistance: Huffman = try! Huffman(lengths: [UInt8](repeating: 5, count: 30), what: "fixed distance", offset: 0)
}
