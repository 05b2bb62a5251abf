import Foundation

/// NumPy `.npy` files (format 1.0) of float32 arrays, C order, little-endian: the arrays
/// `ced embed` writes. The header is numpy's: the array's dict, padded with spaces and a
/// newline so that the data starts at a multiple of 64 bytes.
public enum CedNPYEncoder {
    /// The bytes of a `.npy` file holding `tensor`.
    public static func data(_ tensor: Tensor) -> Data {
        let shape = tensor.shape.count == 1 ? "(\(tensor.shape[0]),)" : "(" + tensor.shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': \(shape), }"
        let unpadded = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        var data = Data([0x93] + Array("NUMPY".utf8) + [1, 0])
        withUnsafeBytes(of: UInt16(header.utf8.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(contentsOf: Array(header.utf8))
        data.reserveCapacity(data.count + 4 * tensor.count)
        for v in tensor.scalars { withUnsafeBytes(of: v.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
        return data
    }

    /// Writes a `.npy` file of `tensor`; throws `CedFileError` (`.unwritable`) naming the file.
    public static func write(_ tensor: Tensor, to url: URL) throws {
        try CedFileError.write(data(tensor), to: url)
    }
}
