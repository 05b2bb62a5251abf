import CED
import Foundation
import Hummingbird

/// An error answered to the client: its HTTP status and `{"error": {"code", "type", "message"}}`.
struct APIError: Error, CustomStringConvertible {
    var status: HTTPResponse.Status
    /// A stable machine-readable name (`unsupported_media_type`, `invalid_audio`, …).
    var type: String
    var message: String
    var headers: HTTPFields = [:]

    var description: String { "\(status.code) \(type): \(message)" }

    static func badRequest(_ m: String) -> APIError { APIError(status: .badRequest, type: "invalid_request", message: m) }
    static func invalidParameter(_ name: String, _ m: String) -> APIError {
        APIError(status: .badRequest, type: "invalid_parameter", message: "\(name): \(m)")
    }
    static func unsupportedMediaType(_ m: String) -> APIError { APIError(status: .unsupportedMediaType, type: "unsupported_media_type", message: m) }
    static func tooLarge(_ limit: Int) -> APIError {
        APIError(status: .contentTooLarge, type: "payload_too_large",
                 message: "the request body is larger than the limit of \(limit) bytes (--max-body-mb)", headers: [.connection: "close"])
    }
    static func timeout(_ seconds: Double, _ what: String) -> APIError {
        APIError(status: .requestTimeout, type: "request_timeout",
                 message: "\(what) took longer than the limit of \(CedJSONText.number(seconds)) s (--timeout)", headers: [.connection: "close"])
    }
    static func overCapacity(_ m: String) -> APIError {
        APIError(status: .serviceUnavailable, type: "over_capacity", message: m, headers: [.retryAfter: "1"])
    }
    static func unprocessable(_ m: String) -> APIError { APIError(status: .unprocessableContent, type: "invalid_audio", message: m) }
    static func notFound(_ m: String) -> APIError { APIError(status: .notFound, type: "not_found", message: m) }
    static func unauthorized(_ m: String) -> APIError {
        APIError(status: .unauthorized, type: "unauthorized", message: m, headers: [.wwwAuthenticate: #"Bearer realm="ced""#])
    }

    /// The library's errors as statuses: undecodable or non-finite audio 422 (with the
    /// decoder's message), a format that needs the absent ffmpeg 415, a bad option 400.
    static func from(_ error: Error) -> APIError {
        switch error {
        case let e as APIError: return e
        case let e as AudioError where e.kind == .ffmpegNotFound: return .unsupportedMediaType(e.description)
        case let e as AudioError: return .unprocessable(e.description)
        case let e as CedInputError: return .unprocessable(e.description)
        case let e as StreamingError where e.kind == .invalidOption: return .badRequest(e.reason)
        case let e as CedFileError: return .badRequest(e.description)
        default:
            return APIError(status: .internalServerError, type: "internal_error", message: "\(error)")
        }
    }

    /// The JSON document of this error.
    var json: String {
        #"{"error": {"code": \#(status.code), "type": "# + CedJSONText.quoted(type) + #", "message": "# + CedJSONText.quoted(message) + "}}\n"
    }

    var response: Response {
        var h = headers
        h[.contentType] = "application/json"
        return Response(status: status, headers: h, body: .init(byteBuffer: ByteBuffer(string: json)))
    }
}

/// A text response.
func textResponse(_ text: String, type: String = "application/json", status: HTTPResponse.Status = .ok) -> Response {
    Response(status: status, headers: [.contentType: type], body: .init(byteBuffer: ByteBuffer(string: text)))
}

/// The parameters of a request: form fields (multipart) over query parameters.
struct Parameters {
    var values: [String: String] = [:]

    func string(_ name: String) -> String? { values[name].flatMap { $0.isEmpty ? nil : $0 } }

    func int(_ name: String, min lo: Int = .min, max hi: Int = .max) throws -> Int? {
        guard let s = string(name) else { return nil }
        guard let v = Int(s.trimmingCharacters(in: .whitespaces)), v >= lo, v <= hi else {
            throw APIError.invalidParameter(name, "expected an integer\(lo > .min ? " ≥ \(lo)" : "")\(hi < .max ? " and ≤ \(hi)" : ""), got \(CedJSONText.quoted(s))")
        }
        return v
    }

    func double(_ name: String, positive: Bool = false, nonNegative: Bool = false, atMost: Double? = nil) throws -> Double? {
        guard let s = string(name) else { return nil }
        guard let v = Double(s.trimmingCharacters(in: .whitespaces)), v.isFinite,
              !positive || v > 0, !nonNegative || v >= 0, atMost.map({ v <= $0 }) ?? true else {
            let want = positive ? "a positive number" : nonNegative ? "a number ≥ 0" : "a number"
            throw APIError.invalidParameter(name, "expected \(want)\(atMost.map { " ≤ \(CedJSONText.number($0))" } ?? ""), got \(CedJSONText.quoted(s))")
        }
        return v
    }

    func float(_ name: String) throws -> Float? { try double(name).map { Float($0) } }

    func bool(_ name: String) throws -> Bool {
        guard let s = string(name)?.lowercased() else { return false }
        switch s {
        case "1", "true", "yes", "on": return true
        case "0", "false", "no", "off": return false
        default: throw APIError.invalidParameter(name, "expected true or false (1 or 0), got \(CedJSONText.quoted(s))")
        }
    }
}

/// The audio of a request and its parameters.
struct AudioUpload {
    var data: Data
    /// The upload's file name (multipart `filename`), or `-` for a raw body (as `ced tag -`).
    var name: String
    var parameters: Parameters
}

enum RequestBodyKind {
    case multipart(boundary: String)
    case raw
}

/// What the request's Content-Type says the body is: multipart/form-data, or raw audio
/// (`audio/*`, `video/*`, `application/octet-stream`, `application/ogg`). Anything else is 415.
func bodyKind(of request: Request) throws -> RequestBodyKind {
    guard let value = request.headers[.contentType], !value.isEmpty else {
        throw APIError.unsupportedMediaType("the request has no Content-Type: send the audio as multipart/form-data with a `file` field, or as the body with Content-Type audio/wav (audio/*, application/octet-stream)")
    }
    let parts = value.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
    let type = parts[0].lowercased()
    if type == "multipart/form-data" {
        for p in parts.dropFirst() {
            let kv = p.split(separator: "=", maxSplits: 1).map(String.init)
            if kv.count == 2 && kv[0].lowercased() == "boundary" {
                var b = kv[1]
                if b.hasPrefix("\"") && b.hasSuffix("\"") && b.count >= 2 { b = String(b.dropFirst().dropLast()) }
                guard !b.isEmpty, b.utf8.count <= 200 else { break }
                return .multipart(boundary: b)
            }
        }
        throw APIError.badRequest("multipart/form-data without a boundary parameter in Content-Type")
    }
    if type.hasPrefix("audio/") || type.hasPrefix("video/") || type == "application/octet-stream" || type == "application/ogg" {
        return .raw
    }
    throw APIError.unsupportedMediaType("Content-Type \(type) is not audio: send multipart/form-data with a `file` field, or the audio itself as audio/* (audio/wav, audio/flac, audio/mpeg, …) or application/octet-stream")
}

/// Splits a multipart/form-data body into its `file` part and its text fields.
enum Multipart {
    struct Part {
        var name: String
        var fileName: String?
        var body: Data
    }

    static func parse(_ body: Data, boundary: String) throws -> [Part] {
        let bytes = [UInt8](body)
        let delimiter = Array(("--" + boundary).utf8)
        guard var i = find(delimiter, in: bytes, from: 0) else {
            throw APIError.badRequest("the multipart body does not contain its boundary")
        }
        var parts: [Part] = []
        while true {
            i += delimiter.count
            // "--" after a delimiter ends the body.
            if i + 1 < bytes.count && bytes[i] == 0x2D && bytes[i + 1] == 0x2D { return parts }
            // The rest of the delimiter line.
            guard let lineEnd = find([0x0D, 0x0A], in: bytes, from: i) else {
                throw APIError.badRequest("the multipart body ends without its closing boundary")
            }
            let headerStart = lineEnd + 2
            guard let headerEnd = find([0x0D, 0x0A, 0x0D, 0x0A], in: bytes, from: headerStart, limit: 16384) ?? (bytes.count >= headerStart + 2 && bytes[headerStart] == 0x0D && bytes[headerStart + 1] == 0x0A ? headerStart - 2 : nil) else {
                throw APIError.badRequest("a multipart part has no end of headers (or headers over 16 kB)")
            }
            let headers = String(decoding: bytes[headerStart ..< max(headerStart, headerEnd)], as: UTF8.self)
            let contentStart = headerEnd + 4
            guard let next = find([0x0D, 0x0A] + delimiter, in: bytes, from: contentStart) else {
                throw APIError.badRequest("the multipart body ends without its closing boundary")
            }
            var name: String?, fileName: String?
            for line in headers.components(separatedBy: "\r\n") where line.lowercased().hasPrefix("content-disposition:") {
                (name, fileName) = disposition(String(line.dropFirst("content-disposition:".count)))
            }
            guard let name else { throw APIError.badRequest("a multipart part has no Content-Disposition name") }
            parts.append(Part(name: name, fileName: fileName, body: body.subdata(in: (body.startIndex + contentStart) ..< (body.startIndex + next))))
            if parts.count > 256 { throw APIError.badRequest("more than 256 parts in the multipart body") }
            i = next + 2
        }
    }

    /// `form-data; name="x"; filename="y"` → (x, y).
    static func disposition(_ value: String) -> (String?, String?) {
        var name: String?, fileName: String?
        var rest = Substring(value)
        while let semi = rest.firstIndex(of: ";") {
            rest = rest[rest.index(after: semi)...]
            let trimmed = rest.drop { $0 == " " || $0 == "\t" }
            guard let eq = trimmed.firstIndex(of: "=") else { break }
            let key = trimmed[..<eq].trimmingCharacters(in: .whitespaces).lowercased()
            var v = trimmed[trimmed.index(after: eq)...]
            var parsed = ""
            if v.first == "\"" {
                v = v.dropFirst()
                var escaped = false
                var end = v.endIndex
                for idx in v.indices {
                    let c = v[idx]
                    if escaped { parsed.append(c); escaped = false } else if c == "\\" { escaped = true } else if c == "\"" { end = idx; break } else { parsed.append(c) }
                }
                rest = end < v.endIndex ? v[v.index(after: end)...] : ""
            } else {
                let end = v.firstIndex(of: ";") ?? v.endIndex
                parsed = v[..<end].trimmingCharacters(in: .whitespaces)
                rest = v[end...]
            }
            if key == "name" { name = parsed } else if key == "filename" { fileName = parsed }
        }
        return (name, fileName)
    }

    static func find(_ needle: [UInt8], in hay: [UInt8], from start: Int, limit: Int? = nil) -> Int? {
        guard !needle.isEmpty, hay.count >= needle.count else { return nil }
        let last = min(hay.count - needle.count, limit.map { start + $0 } ?? .max)
        guard start <= last else { return nil }
        let first = needle[0]
        var i = start
        while i <= last {
            if hay[i] == first {
                var j = 1
                while j < needle.count && hay[i + j] == needle[j] { j += 1 }
                if j == needle.count { return i }
            }
            i += 1
        }
        return nil
    }
}
