import Foundation

/// JSON as the package writes it: one line, `", "` between items and `": "` after keys, keys in
/// the order a type encodes them (declaration order for synthesised `Codable`), nil optionals
/// left out, each float in the shortest text that reads back as the same value, non-finite
/// numbers as `null`. Encodes any `Encodable`, so a result type's `CodingKeys` are its schema.
public enum CedJSONText {
    /// `value` as one line of JSON.
    public static func encode<T: Encodable>(_ value: T) throws -> String {
        var out = ""
        try node(value, codingPath: []).render(into: &out)
        return out
    }

    /// `s` as a JSON string literal.
    public static func quoted(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case let c where c.value < 0x20: out += String(format: "\\u%04x", c.value)
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }

    /// A float score as a JSON number: the shortest text that reads back as the same Float.
    public static func number(_ v: Float) -> String { v.isFinite ? "\(v)" : "null" }

    /// A JSON number: the shortest text that reads back as the same Double.
    public static func number(_ v: Double) -> String { v.isFinite ? "\(v)" : "null" }

    /// The node of a value: scalars written as JSON text, anything else through its `encode(to:)`.
    fileprivate static func node<T: Encodable>(_ value: T, codingPath: [CodingKey]) throws -> Node {
        let n = Node()
        switch value {
        case let v as String: n.text = quoted(v)
        case let v as Bool: n.text = v ? "true" : "false"
        case let v as Float: n.text = number(v)
        case let v as Double: n.text = number(v)
        case let v as any BinaryInteger: n.text = "\(v)"
        default: try value.encode(to: NodeEncoder(node: n, codingPath: codingPath))
        }
        return n
    }
}

/// A JSON value being built: a scalar's text, an object or an array (a class, so that nested
/// containers fill it in place); nothing at all is `null`.
private final class Node {
    var text: String?
    var object: [(key: String, value: Node)]?
    var array: [Node]?

    func render(into out: inout String) {
        if let object {
            out += "{"
            for (i, item) in object.enumerated() {
                out += (i == 0 ? "" : ", ") + CedJSONText.quoted(item.key) + ": "
                item.value.render(into: &out)
            }
            out += "}"
        } else if let array {
            out += "["
            for (i, item) in array.enumerated() {
                if i > 0 { out += ", " }
                item.render(into: &out)
            }
            out += "]"
        } else {
            out += text ?? "null"
        }
    }
}

private struct NodeEncoder: Encoder {
    let node: Node
    var codingPath: [CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        if node.object == nil { node.object = [] }
        return KeyedEncodingContainer(KeyedNode<Key>(node: node, codingPath: codingPath))
    }

    func unkeyedContainer() -> UnkeyedEncodingContainer {
        if node.array == nil { node.array = [] }
        return UnkeyedNode(node: node, codingPath: codingPath)
    }

    func singleValueContainer() -> SingleValueEncodingContainer { SingleNode(node: node, codingPath: codingPath) }
}

private struct KeyedNode<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let node: Node
    var codingPath: [CodingKey]

    /// A new member node under `key`.
    private func member(_ key: Key, _ child: Node = Node()) -> Node {
        node.object!.append((key.stringValue, child))
        return child
    }

    mutating func encodeNil(forKey key: Key) throws { _ = member(key) }

    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        _ = member(key, try CedJSONText.node(value, codingPath: codingPath + [key]))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type,
                                                        forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        NodeEncoder(node: member(key), codingPath: codingPath + [key]).container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> UnkeyedEncodingContainer {
        NodeEncoder(node: member(key), codingPath: codingPath + [key]).unkeyedContainer()
    }

    mutating func superEncoder() -> Encoder {
        let child = Node()
        node.object!.append(("super", child))
        return NodeEncoder(node: child, codingPath: codingPath)
    }

    mutating func superEncoder(forKey key: Key) -> Encoder { NodeEncoder(node: member(key), codingPath: codingPath + [key]) }
}

private struct UnkeyedNode: UnkeyedEncodingContainer {
    let node: Node
    var codingPath: [CodingKey]
    var count: Int { node.array!.count }

    private struct Index: CodingKey {
        var intValue: Int?
        var stringValue: String { "\(intValue!)" }
        init(intValue: Int) { self.intValue = intValue }
        init?(stringValue: String) { nil }
    }

    /// A new element node.
    private func element(_ child: Node = Node()) -> Node {
        node.array!.append(child)
        return child
    }

    private var path: [CodingKey] { codingPath + [Index(intValue: count)] }

    mutating func encodeNil() throws { _ = element() }

    mutating func encode<T: Encodable>(_ value: T) throws { _ = element(try CedJSONText.node(value, codingPath: path)) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        let p = path
        return NodeEncoder(node: element(), codingPath: p).container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer() -> UnkeyedEncodingContainer {
        let p = path
        return NodeEncoder(node: element(), codingPath: p).unkeyedContainer()
    }

    mutating func superEncoder() -> Encoder {
        let p = path
        return NodeEncoder(node: element(), codingPath: p)
    }
}

private struct SingleNode: SingleValueEncodingContainer {
    let node: Node
    var codingPath: [CodingKey]

    mutating func encodeNil() throws { node.text = "null" }

    mutating func encode<T: Encodable>(_ value: T) throws {
        let n = try CedJSONText.node(value, codingPath: codingPath)
        (node.text, node.object, node.array) = (n.text, n.object, n.array)
    }
}
