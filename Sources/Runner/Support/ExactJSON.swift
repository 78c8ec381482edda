import Foundation
import MCP

/// JSON to the SDK's `Value` without changing a byte of any string.
///
/// The SDK's own `Value` decoding turns every string that looks like a data URL into `.data`,
/// which it re-encodes as `data:<mime>;base64,...`: a file holding `data: [1, 2]` came back as
/// `data: [1;base64,IDJd`, and `repo.write_file` of `data:,abc` wrote `data:text/plain;base64,YWJj`.
/// Tool arguments and results never go through that decoder: Foundation's JSONSerialization
/// parses them (no hand-written parser), and this maps its objects to `Value` one to one.
public enum ExactJSON {
    /// What could not be parsed.
    public struct Invalid: Error, Sendable {}

    /// Parses any JSON text (objects, arrays and bare values).
    public static func value(from bytes: some Collection<UInt8>) throws(Invalid) -> Value {
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])
        } catch {
            throw Invalid()
        }
        guard let value = value(of: object) else { throw Invalid() }
        return value
    }

    /// Maps one JSONSerialization object.
    static func value(of object: Any) -> Value? {
        switch object {
        case is NSNull:
            return .null
        case let string as String:
            return .string(string)
        case let number as NSNumber:
            // JSONSerialization boxes true/false as boolean NSNumbers (type "c"), integers as
            // integer types and everything else as doubles: integers never pass through Double.
            switch String(cString: number.objCType) {
            case "c", "B": return .bool(number.boolValue)
            case "d", "f": return .double(number.doubleValue)
            case "Q", "L", "I":
                return number.uint64Value > UInt64(Int.max) ? .double(number.doubleValue) : .int(number.intValue)
            default: return .int(number.intValue)
            }
        case let array as [Any]:
            var values: [Value] = []
            values.reserveCapacity(array.count)
            for element in array {
                guard let value = value(of: element) else { return nil }
                values.append(value)
            }
            return .array(values)
        case let dictionary as [String: Any]:
            var values: [String: Value] = [:]
            values.reserveCapacity(dictionary.count)
            for (key, element) in dictionary {
                guard let value = value(of: element) else { return nil }
                values[key] = value
            }
            return .object(values)
        default:
            return nil
        }
    }

    /// The `params.arguments` of the `tools/call` request with JSON-RPC id `id` in a raw message
    /// body (one request or a batch), parsed exactly. `.some(nil)` when that request carries no
    /// arguments; nil when the body holds no such request.
    public static func callArguments(in body: Data, id: String?) -> [String: Value]?? {
        guard let parsed = try? JSONSerialization.jsonObject(with: body, options: []) else { return nil }
        let messages: [[String: Any]]
        if let single = parsed as? [String: Any] {
            messages = [single]
        } else if let batch = parsed as? [[String: Any]] {
            messages = batch
        } else {
            return nil
        }
        for message in messages where message["method"] as? String == "tools/call" {
            if let id, messages.count > 1 {
                guard let own = message["id"], "\(own)" == id else { continue }
            }
            let params = message["params"] as? [String: Any]
            guard let arguments = params?["arguments"] else { return .some(nil) }
            guard case .object(let object)? = value(of: arguments) else { return nil }
            return .some(object)
        }
        return nil
    }
}
