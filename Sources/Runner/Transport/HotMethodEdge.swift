import Foundation
import MCP
import Synchronization

/// The lean edge for the hot methods, `tools/call` and `tools/list`: the request is parsed exactly
/// (``ExactJSON``), goes to the gateway with the context its transport authenticated once, and the
/// JSON-RPC response is encoded here: a tool's result spliced in by ``ResultEncoder``, `tools/list`
/// from per-tool fragments encoded once per catalog and policy.
///
/// Why not the SDK's handler path: its type erasure decodes every result back into `Value`, whose
/// decoder rewrites any string that looks like a data URL (a file holding `data: [1, 2]` came back
/// as `data: [1;base64,IDJd`), and it decodes, re-encodes and re-authenticates every call.
enum HotMethodEdge {
    /// One hot request, parsed exactly.
    struct Call: @unchecked Sendable {
        enum Method {
            case call(name: String, arguments: [String: Value]?)
            case list
        }
        /// The JSON-RPC id as parsed (a string or a number); only ever re-serialized.
        /// `@unchecked Sendable`: JSONSerialization gives immutable NSString/NSNumber here.
        let id: Any
        /// The id as text (audit records, in-flight guard).
        let idText: String
        let method: Method
        /// The client's `_meta.progressToken` (a string or an integer), if it asked for progress.
        var progressToken: Any? = nil
        /// `traceparent` and `tracestate` from `params._meta`, when the client propagates a trace there.
        var traceCarrier: [String: String] = [:]

        /// `tools/call` or `tools/list`.
        var methodName: String {
            if case .call = method { "tools/call" } else { "tools/list" }
        }

        /// The called tool's name (nil for `tools/list`).
        var toolName: String? {
            if case .call(let name, _) = method { name } else { nil }
        }
    }

    /// `traceparent` / `tracestate` in `params._meta` (the MCP conventions' propagation).
    static func traceCarrier(inParams params: [String: Any]?) -> [String: String] {
        guard let meta = params?["_meta"] as? [String: Any] else { return [:] }
        var carrier: [String: String] = [:]
        for key in ["traceparent", "tracestate"] {
            if let value = meta[key] as? String, value.utf8.count <= 512 { carrier[key] = value }
        }
        return carrier
    }

    /// The single `tools/call` or `tools/list` request in `body`; nil for anything else (batches,
    /// other methods, notifications, a call without a string `name`), which the SDK handles.
    static func parse(_ body: Data) -> Call? {
        guard let message = try? JSONSerialization.jsonObject(with: body, options: []) as? [String: Any],
            let method = message["method"] as? String, method == "tools/call" || method == "tools/list",
            let id = message["id"],
            id is String || (id as? NSNumber).map({ String(cString: $0.objCType) != "c" }) == true
        else { return nil }
        let idText = String(describing: id).prefix(128).description
        let params = message["params"] as? [String: Any]
        guard method == "tools/call" else {
            return Call(id: id, idText: idText, method: .list, traceCarrier: traceCarrier(inParams: params))
        }
        guard let name = params?["name"] as? String else { return nil }
        var arguments: [String: Value]? = nil
        if let raw = params?["arguments"] {
            guard case .object(let object)? = ExactJSON.value(of: raw) else { return nil }
            arguments = object
        }
        return Call(
            id: id, idText: idText, method: .call(name: name, arguments: arguments),
            progressToken: ProgressRelay.token(inParams: params), traceCarrier: traceCarrier(inParams: params))
    }

    /// Whether JSONSerialization (this edge, the in-flight id guard, the SDK transport's routing)
    /// and JSONDecoder (the SDK server, which answers what this edge does not) read the same
    /// `method` and `id` in `body`. A member given twice is kept last by the one and first by the
    /// other: the SDK then answered an id its transport had no stream for, and the request's
    /// stream never ended. True for what is not one JSON object (the SDK refuses that itself).
    static func readersAgree(_ body: Data) -> Bool {
        struct Envelope: Decodable {
            let id: ID?
            let method: String?
        }
        guard let message = try? JSONSerialization.jsonObject(with: body, options: []) as? [String: Any],
            let envelope = try? JSONDecoder().decode(Envelope.self, from: body)
        else { return true }
        let id = message["id"].flatMap { $0 is NSNull ? nil : String(describing: $0) }
        return envelope.method == message["method"] as? String && envelope.id?.description == id
    }

    /// The JSON-RPC id (as text, the way ``Call/idText`` and the in-flight guard spell it) of the
    /// request a single `notifications/cancelled` in `body` cancels; nil for anything else.
    static func cancelledRequest(_ body: Data) -> String? {
        // Most bodies are not a cancellation: skip the parse for them.
        guard body.count < 4096, body.range(of: Data("notifications/cancelled".utf8)) != nil,
            let message = try? JSONSerialization.jsonObject(with: body, options: []) as? [String: Any],
            message["method"] as? String == "notifications/cancelled", message["id"] == nil,
            let id = (message["params"] as? [String: Any])?["requestId"],
            id is String || (id as? NSNumber).map({ String(cString: $0.objCType) != "c" }) == true
        else { return nil }
        return String(describing: id).prefix(128).description
    }

    /// `{"jsonrpc":"2.0","id":…,"error":…}`.
    static func response(id: Any, error: MCPError) -> Data {
        let encoded = (try? JSONEncoder().encode(error)) ?? Data(#"{"code":-32603,"message":"Internal error"}"#.utf8)
        return envelope(id: id, key: "error", value: encoded)
    }

    /// Splices already-encoded JSON into the envelope: the result bytes are never parsed again.
    static func envelope(id: Any, key: String, value: Data) -> Data {
        let idJSON =
            (try? JSONSerialization.data(withJSONObject: id, options: [.fragmentsAllowed])) ?? Data("null".utf8)
        var out = Data(#"{"jsonrpc":"2.0","id":"#.utf8)
        out.append(idJSON)
        out.append(contentsOf: Array(",\"\(key)\":".utf8))
        out.append(value)
        out.append(UInt8(ascii: "}"))
        return out
    }
}

/// Exact results of `tools/call` answered through the SDK's handler path (stdio), by request id,
/// until the transport sends that request's response: the transport replaces the SDK's rewritten
/// result with these bytes.
final class ExactResults: Sendable {
    private let results = Mutex<[String: Data]>([:])

    func put(_ result: Data, for id: String) { results.withLock { $0[id] = result } }

    func take(_ id: String) -> Data? { results.withLock { $0.removeValue(forKey: id) } }
}
