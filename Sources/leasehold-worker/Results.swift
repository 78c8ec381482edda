import FoundationEssentials

/// JSON encoding of tool results (they become MCP structuredContent, so keys are snake_case and
/// stable: every result type spells its keys in CodingKeys).
enum Results {
    /// Encodes a result; encoding our own value types cannot fail, but if it ever does the caller
    /// still gets a well-formed error object rather than a crash.
    static func encode(_ value: some Encodable) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
        do {
            return Array(try encoder.encode(value))
        } catch {
            // WorkerErrorCode.internalError, spelled out: the encoder is what failed.
            return Array(#"{"error":{"code":"internal_error","message":"the result could not be encoded"}}"#.utf8)
        }
    }

    /// The result of a failed tool call.
    static func error(_ error: ToolError) -> [UInt8] {
        encode(ErrorResult(error: ErrorBody(code: error.code.rawValue, message: error.message, detail: error.detail)))
    }
}

/// `{"error": {...}}`.
struct ErrorResult: Encodable {
    let error: ErrorBody
}

/// `{"code", "message", ...detail}`.
struct ErrorBody: Encodable {
    let code: String
    let message: String
    let detail: [String: ToolError.DetailValue]

    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ string: String) { stringValue = string }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Key.self)
        try container.encode(code, forKey: Key("code"))
        try container.encode(message, forKey: Key("message"))
        for (key, value) in detail where key != "code" && key != "message" {
            try container.encode(value, forKey: Key(key))
        }
    }
}

/// Base64 through FoundationEssentials' Data.
enum Base64 {
    static func encode(_ bytes: some Sequence<UInt8>) -> String {
        Data(bytes).base64EncodedString()
    }

    static func decode(_ text: String) -> [UInt8]? {
        Data(base64Encoded: text).map { Array($0) }
    }
}
