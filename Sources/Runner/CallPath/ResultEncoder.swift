import Foundation
import MCP
import SandboxProtocol

/// What a call answered, before it is encoded for the client.
public enum CallAnswer: Sendable {
    /// A tool's own JSON result, exactly as its worker (or the result cache) gave it.
    case tool(result: [UInt8], isError: Bool)
    /// A refusal or failure: a tool error with the code in structured content.
    case refusal(Refusal, extra: [String: Value] = [:])
    /// A result the runner built itself (`system.search_tools`).
    case built(CallTool.Result)
    /// An upstream server's whole `CallTool` result object, exactly as the server sent it.
    case upstream(result: [UInt8])

    /// Whether the client sees it as an error.
    public var isError: Bool {
        switch self {
        case .tool(_, let isError): isError
        case .refusal: true
        case .built(let result): result.isError ?? false
        case .upstream(let result):
            JSONSpan.member("isError", in: result).map { result[$0].elementsEqual("true".utf8) } ?? false
        }
    }
}

/// Stage 8 of a call: the answer as an MCP `CallTool` result.
///
/// A tool's result goes to the client byte for byte: as `structuredContent` (a JSON object) and as
/// the text of its one text content. ``json(_:)`` splices those bytes into the result instead of
/// decoding them into the SDK's `Value` tree and encoding them again; they are only validated.
enum ResultEncoder {
    /// The answer as the SDK's result type (the SDK handler path, and tests).
    static func result(_ answer: CallAnswer) -> CallTool.Result {
        switch answer {
        case .tool(let bytes, let isError):
            let value = (try? ExactJSON.value(from: bytes)) ?? .string(String(decoding: bytes, as: UTF8.self))
            return CallTool.Result(
                content: [.text(text: String(decoding: bytes, as: UTF8.self), annotations: nil, _meta: nil)],
                structuredContent: value as Value?, isError: isError)
        case .refusal(let refusal, let extra):
            var error: [String: Value] = ["code": .string(refusal.code.rawValue), "message": .string(refusal.message)]
            error.merge(extra) { current, _ in current }
            return CallTool.Result(
                content: [.text(text: refusal.description, annotations: nil, _meta: nil)],
                structuredContent: ["error": .object(error)] as Value?, isError: true)
        case .built(let result):
            return result
        case .upstream(let bytes):
            // The SDK's own types for the SDK's handler path; the HTTP path splices the bytes.
            return (try? JSONDecoder().decode(CallTool.Result.self, from: Data(bytes)))
                ?? CallTool.Result(
                    content: [.text(text: "the upstream result could not be decoded", annotations: nil, _meta: nil)],
                    isError: true)
        }
    }

    /// The answer as the JSON of a `CallTool` result.
    static func json(_ answer: CallAnswer) -> Data {
        if case .upstream(let bytes) = answer, isJSONObject(bytes) { return Data(bytes) }
        if case .tool(let bytes, let isError) = answer, isJSONObject(bytes) {
            var out = Data()
            out.reserveCapacity(bytes.count * 2 + 64)
            out.append(contentsOf: #"{"content":[{"type":"text","text":"#.utf8)
            appendString(bytes, to: &out)
            out.append(contentsOf: #"}],"structuredContent":"#.utf8)
            out.append(contentsOf: bytes)
            out.append(contentsOf: (isError ? #","isError":true}"# : #","isError":false}"#).utf8)
            return out
        }
        // Runner-built answers are small; a worker result that is not a JSON object (which no
        // worker op produces) keeps the SDK encoding it always had.
        return (try? JSONEncoder().encode(result(answer))) ?? Data(#"{"content":[],"isError":true}"#.utf8)
    }

    /// Whether `bytes` are one JSON object (and so valid UTF-8): only then may they be spliced into
    /// a response.
    static func isJSONObject(_ bytes: [UInt8]) -> Bool {
        JSONValidator.isObject(bytes)
    }

    /// Appends `bytes` (valid UTF-8) as a JSON string.
    ///
    /// Written by hand: RFC 8259 §7 needs only `"`, `\` and the C0 controls escaped, and this is
    /// the hot path's one string; Foundation offers no string escaper short of encoding a whole
    /// value through `JSONEncoder` or `JSONSerialization`, each several times the cost.
    static func appendString(_ bytes: [UInt8], to out: inout Data) {
        out.append(UInt8(ascii: "\""))
        bytes.withUnsafeBufferPointer { input in
            var start = 0
            for index in 0..<input.count {
                let byte = input[index]
                guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else { continue }
                if start < index { out.append(UnsafeBufferPointer(rebasing: input[start..<index])) }
                switch byte {
                case UInt8(ascii: "\""): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
                case UInt8(ascii: "\\"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
                case 0x0A: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
                case 0x0D: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
                case 0x09: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
                default:
                    let hex = Array("0123456789abcdef".utf8)
                    out.append(contentsOf: [
                        UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"),
                        hex[Int(byte >> 4)], hex[Int(byte & 0x0F)],
                    ])
                }
                start = index + 1
            }
            if start < input.count { out.append(UnsafeBufferPointer(rebasing: input[start..<input.count])) }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// The `error.code` of a tool's error result, if it is a short identifier (the worker's codes
    /// are; anything else is not repeated into the audit trail).
    static func errorCode(in result: [UInt8]) -> String? {
        guard case .object(let object)? = try? ExactJSON.value(from: result),
            case .object(let error)? = object["error"], case .string(let code)? = error["code"],
            code.utf8.count <= 64, code.utf8.allSatisfy({ $0 == UInt8(ascii: "_") || ($0 >= 0x61 && $0 <= 0x7A) })
        else { return nil }
        return code
    }
}
