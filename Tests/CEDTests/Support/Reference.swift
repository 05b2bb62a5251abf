import Foundation
import XCTest
@testable import CED

/// Locates `../shared/reference` (the read-only goldens produced by the authors' PyTorch
/// code). Set `CED_SHARED_DIR` to point elsewhere. When it is missing the test is
/// skipped locally but fails when `CI` is set, so CI can never pass without checking.
enum Reference {
    static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    static var sharedDir: URL {
        if let env = ProcessInfo.processInfo.environment["CED_SHARED_DIR"], !env.isEmpty {
            return URL(fileURLWithPath: env)
        }
        return packageRoot.deletingLastPathComponent().appendingPathComponent("shared")
    }

    static var referenceDir: URL { sharedDir.appendingPathComponent("reference") }

    /// The reference directory, or a skip (fail under CI) when it is not there.
    static func require() throws -> URL {
        let dir = referenceDir
        if FileManager.default.fileExists(atPath: dir.appendingPathComponent("cases.json").path) { return dir }
        let message = "reference fixtures not found at \(dir.path); put the shared folder beside the package or set CED_SHARED_DIR"
        if ProcessInfo.processInfo.environment["CI"] != nil {
            XCTFail(message)
            throw CedInputError(message)
        }
        throw XCTSkip(message)
    }

    static func model(_ name: String) throws -> URL { try require().appendingPathComponent("models/\(name)") }
    static func audio(_ name: String) throws -> URL { try require().appendingPathComponent("audio/\(name)") }

    nonisolated(unsafe) private static var goldenCache: [String: SafeTensorsFile] = [:]
    private static let lock = NSLock()

    /// `golden/<model>.safetensors`, opened once per test process.
    static func golden(_ model: String) throws -> SafeTensorsFile {
        let url = try require().appendingPathComponent("golden/\(model).safetensors")
        lock.lock(); defer { lock.unlock() }
        if let f = goldenCache[model] { return f }
        let f = try SafeTensorsFile(contentsOf: url)
        goldenCache[model] = f
        return f
    }

    struct Case: Decodable {
        var model: String
        var audio: String
        var variant: String
        var frames: Int
        var chunks: Int
        var upstream_drops_last_chunk: Bool
    }

    static func cases() throws -> [Case] {
        struct File: Decodable { var cases: [Case] }
        let data = try Data(contentsOf: try require().appendingPathComponent("cases.json"))
        return try JSONDecoder().decode(File.self, from: data).cases
    }
}

/// Largest absolute difference between two equally long arrays (fails on length mismatch).
func maxAbsDiff(_ a: [Float], _ b: [Float], file: StaticString = #filePath, line: UInt = #line) -> Float {
    XCTAssertEqual(a.count, b.count, "length mismatch", file: file, line: line)
    var m: Float = 0
    for (x, y) in zip(a, b) {
        let d = abs(x - y)
        if d.isNaN { return .nan }
        m = max(m, d)
    }
    return m
}
