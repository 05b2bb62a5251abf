import Foundation

/// Class names from a labels CSV in the AudioSet format
/// (`class_labels_indices.csv`: a header `index,mid,display_name`, then one row per
/// class; names containing commas are double-quoted, `""` inside quotes is a quote).
public enum LabelsCSV {
    /// Class names by index, `0..<n`. Throws `CheckpointError` (kind `.labels`) naming the
    /// line of a malformed row, a duplicate or missing index.
    public static func load(from url: URL) throws -> [String] {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw CheckpointError(.notFound, file: url.path, reason: "cannot read the labels file (\(error.localizedDescription))")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw CheckpointError(.labels, file: url.path, reason: "the labels file is not UTF-8 text")
        }
        return try parse(text, file: url.path)
    }

    /// Parses CSV text (see `load`).
    public static func parse(_ text: String, file: String = "<labels>") throws -> [String] {
        let rows: [CedCSV.Record]
        do { rows = try CedCSV.records(text, file: file) } catch let e as CedFileError {
            throw CheckpointError(.labels, file: file, reason: "line \(e.line ?? 1): \(e.reason)")
        }
        guard let header = rows.first else { throw CheckpointError(.labels, file: file, reason: "the labels file is empty") }
        let cols = header.fields.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        let indexCol = cols.firstIndex(of: "index")
        let nameCol = cols.firstIndex(of: "display_name")
        guard let indexCol, let nameCol else {
            throw CheckpointError(.labels, file: file, reason: "line 1: expected a header with 'index' and 'display_name' columns (AudioSet format index,mid,display_name), found \(header.fields)")
        }
        var names: [Int: String] = [:]
        for row in rows.dropFirst() {
            if row.isBlank { continue }
            guard row.fields.count > max(indexCol, nameCol) else {
                throw CheckpointError(.labels, file: file, reason: "line \(row.line): \(row.fields.count) fields, expected at least \(max(indexCol, nameCol) + 1)")
            }
            guard let i = Int(row.fields[indexCol].trimmingCharacters(in: .whitespaces)), i >= 0 else {
                throw CheckpointError(.labels, file: file, reason: "line \(row.line): index '\(row.fields[indexCol])' is not a non-negative integer")
            }
            if names[i] != nil { throw CheckpointError(.labels, file: file, reason: "line \(row.line): index \(i) appears twice") }
            names[i] = row.fields[nameCol]
        }
        guard !names.isEmpty else { throw CheckpointError(.labels, file: file, reason: "the labels file has no rows") }
        if let gap = (0..<names.count).first(where: { names[$0] == nil }) {
            throw CheckpointError(.labels, file: file, reason: "index \(gap) is missing (indices must be 0..<\(names.count))")
        }
        return (0..<names.count).map { names[$0]! }
    }
}
