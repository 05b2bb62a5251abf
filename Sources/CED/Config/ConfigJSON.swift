import Foundation

/// A configuration read from a Hugging Face JSON file and validated after decoding.
protocol ValidatedJSONConfig: Decodable {
    func validate() throws
}

extension ValidatedJSONConfig {
    /// Decodes and validates JSON contents; `file` only labels errors. Every failure is a
    /// `ConfigError` naming the field (and the file).
    static func decodeValidated(_ data: Data, file: String?) throws -> Self {
        do {
            let config = try JSONDecoder().decode(Self.self, from: data)
            try config.validate()
            return config
        } catch var e as ConfigError {
            e.file = e.file ?? file
            throw e
        } catch let e as DecodingError {
            throw ConfigError(decodingError: e, file: file)
        }
    }

    /// Reads, decodes and validates a JSON file.
    static func loadValidated(from url: URL) throws -> Self {
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw ConfigError(field: nil, reason: "cannot read the file (\(error.localizedDescription))", file: url.path)
        }
        return try decodeValidated(data, file: url.path)
    }
}

extension KeyedDecodingContainer {
    /// An integer field that may be written as `12` or `12.0`; `current` when absent or null.
    func flexibleInt(_ key: K, default current: Int) throws -> Int {
        guard contains(key), try !decodeNil(forKey: key) else { return current }
        if let v = try? decode(Int.self, forKey: key) { return v }
        let d = try decode(Double.self, forKey: key)
        guard d.rounded() == d, abs(d) < 1e15 else {
            throw ConfigError(field: key.stringValue, reason: "expected an integer, found \(d)")
        }
        return Int(d)
    }

    /// A field that may be absent, null or a number (`f_max: null` means "default").
    func optionalDouble(_ key: K, default current: Double?) throws -> Double? {
        guard contains(key) else { return current }
        return try decodeNil(forKey: key) ? nil : decode(Double.self, forKey: key)
    }
}
