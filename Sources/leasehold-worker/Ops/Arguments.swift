import FoundationEssentials

/// Tool arguments: a Decodable struct that also names every field it accepts, so unknown keys are
/// refused (a misspelt `create_only` must not silently overwrite a file).
protocol ToolArguments: Decodable {
    /// The JSON keys this tool accepts.
    static var fields: Set<String> { get }
}

/// Collects the keys of a JSON object without decoding the values.
private struct KeyProbe: Decodable {
    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    let keys: [String]

    init(from decoder: any Decoder) throws {
        keys = try decoder.container(keyedBy: Key.self).allKeys.map(\.stringValue)
    }
}

extension ToolArguments {
    /// Decodes the arguments object, mapping every failure to `invalid_arguments` naming the field.
    static func decode(_ bytes: ArraySlice<UInt8>) throws(ToolError) -> Self {
        let data = Data(bytes.isEmpty ? Array("{}".utf8) : Array(bytes))
        let decoder = JSONDecoder()
        do {
            let probe = try decoder.decode(KeyProbe.self, from: data)
            let unknown = probe.keys.filter { !fields.contains($0) }.sorted()
            if let first = unknown.first {
                throw ToolError.invalidArguments(
                    "unknown argument \(ToolError.quoted(first)); accepted: \(fields.sorted().joined(separator: ", "))")
            }
            return try decoder.decode(Self.self, from: data)
        } catch let error as ToolError {
            throw error
        } catch let error as DecodingError {
            throw ToolError.invalidArguments(describe(error))
        } catch {
            throw ToolError.invalidArguments("the arguments are not a JSON object")
        }
    }

    private static func describe(_ error: DecodingError) -> String {
        func field(_ path: [any CodingKey]) -> String {
            let name = path.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
            return ToolError.quoted(name)
        }
        switch error {
        case .typeMismatch(let type, let context):
            if context.codingPath.isEmpty { return "the arguments must be a JSON object" }
            return "argument \(field(context.codingPath)) must be \(typeName(type))"
        case .valueNotFound(let type, let context):
            return "argument \(field(context.codingPath)) must be \(typeName(type)), not null"
        case .keyNotFound(let key, let context):
            return "missing required argument \(field(context.codingPath + [key]))"
        case .dataCorrupted(let context):
            if context.codingPath.isEmpty { return "the arguments are not valid JSON (or hold a number out of range)" }
            return "argument \(field(context.codingPath)) is out of range or malformed"
        @unknown default:
            return "the arguments could not be decoded"
        }
    }

    private static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: return "a string"
        case is Int.Type: return "an integer"
        case is Bool.Type: return "a boolean"
        case is [String].Type: return "an array of strings"
        case is [String: String].Type: return "an object of strings"
        default: return "of type \(type)"
        }
    }
}

/// Checks an optional non-negative integer against a range; huge values are refused, not wrapped.
func checkRange(_ value: Int?, _ name: String, _ range: ClosedRange<Int>, default fallback: Int) throws(ToolError) -> Int {
    guard let value else { return fallback }
    guard range.contains(value) else {
        throw ToolError.invalidArguments(
            "argument '\(name)' must be between \(range.lowerBound) and \(range.upperBound), got \(value)")
    }
    return value
}
