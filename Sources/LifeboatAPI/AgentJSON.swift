public import Foundation

/// The one JSON coder of the agent API: snake-case keys, sorted, pretty printed, slashes unescaped.
///
/// Property names map to the API's keys through `.convertToSnakeCase` alone (`stallMs` is
/// `stall_ms`), so a model never carries a hand-written key list. The agent answers
/// `encode(value)` followed by a newline; the client decodes with `decoder()`.
public enum AgentJSON {
    /// A new encoder with the API's settings.
    public static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    /// A new decoder that reads what `encoder()` writes.
    public static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return decoder
    }

    /// `value` as the API writes it (no trailing newline).
    public static func encode(_ value: some Encodable) throws -> Data {
        try encoder().encode(value)
    }

    /// Reads `type` from an API body.
    public static func decode<Value: Decodable>(_ type: Value.Type, from data: Data) throws -> Value {
        try decoder().decode(type, from: data)
    }
}
