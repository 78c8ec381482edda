import Foundation
import MCP

/// The wire rules of MCP 2026-07-28, the sessionless revision: no `initialize` and no
/// `Mcp-Session-Id`; every request carries its protocol version and the client's capabilities in
/// `params._meta`, and over HTTP mirrors its version, method and tool name in headers
/// (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`). Read from the official Python SDK 2.x
/// (`mcp/shared/inbound.py`, `mcp/server/_streamable_http_modern.py`), which is the reference.
///
/// Messages are parsed with `JSONSerialization` (ids are echoed as sent) and results are the
/// gateway's own encoded JSON with the revision's fields spliced in (``withFields(_:_:)``).
enum ModernProtocol {
    /// The sessionless revision.
    static let version = "2026-07-28"
    /// The revisions served without a protocol session.
    static let versions: Set<String> = [version]
    /// Every revision Leasehold speaks (`server/discover` names them all).
    static let allVersions = ["2025-06-18", "2025-11-25", "2026-07-28"]

    static let protocolVersionKey = "io.modelcontextprotocol/protocolVersion"
    static let capabilitiesKey = "io.modelcontextprotocol/clientCapabilities"
    static let serverInfoKey = "io.modelcontextprotocol/serverInfo"
    static let subscriptionIDKey = "io.modelcontextprotocol/subscriptionId"

    /// JSON-RPC codes of the revision.
    enum ErrorCode {
        static let parse = -32700
        static let invalidRequest = -32600
        static let methodNotFound = -32601
        static let invalidParams = -32602
        static let headerMismatch = -32020
        static let unsupportedVersion = -32022
    }

    /// One request of the revision, its envelope checked.
    struct Request: @unchecked Sendable {
        /// The JSON-RPC id as parsed (a string or a number); only ever re-serialized.
        /// `@unchecked Sendable`: JSONSerialization gives immutable NSString/NSNumber values.
        let id: Any
        /// The id as text (audit records), cut at 128 characters.
        let idText: String
        let method: String
        /// `params` as parsed (immutable Foundation values).
        let params: [String: Any]
        /// The client's `_meta.progressToken`, if any.
        var progressToken: Any? { ProgressRelay.token(inParams: params) }
    }

    /// A request refused by the envelope ladder (or a later check), as its JSON-RPC error.
    struct Rejection: Error, @unchecked Sendable {
        let code: Int
        let message: String
        /// `@unchecked Sendable`: immutable JSON values only.
        var data: [String: Any]? = nil

        /// The HTTP status the reference server gives this code (`ERROR_CODE_HTTP_STATUS`).
        var httpStatus: Int { ModernProtocol.httpStatus(code) }
    }

    /// The routing headers of an HTTP request: each value, or `duplicated` naming one that came
    /// twice (first-copy and last-copy readers would disagree).
    struct Headers {
        var version: String?
        var method: String?
        var name: String?
        var duplicated: String?
    }

    /// HTTP status of a JSON-RPC error code on this revision; 200 for codes the table does not name.
    static func httpStatus(_ code: Int) -> Int {
        switch code {
        case ErrorCode.parse, ErrorCode.invalidRequest, ErrorCode.invalidParams, ErrorCode.headerMismatch,
            ErrorCode.unsupportedVersion, -32021:
            400
        case ErrorCode.methodNotFound: 404
        default: 200
        }
    }

    /// Whether a message (no `Mcp-Session-Id`) belongs to this revision: its version header names it,
    /// or its body carries the per-request envelope, or it is `server/discover`.
    static func claims(_ message: [String: Any]?, versionHeader: String?) -> Bool {
        if let versionHeader, versions.contains(versionHeader) { return true }
        guard let message else { return false }
        if let method = message["method"] as? String,
            method == "server/discover" || method == "subscriptions/listen"
        {
            return true
        }
        let meta = (message["params"] as? [String: Any])?["_meta"] as? [String: Any]
        return meta?[protocolVersionKey] != nil
    }

    /// Runs the reference ladder over one request: envelope, then headers (HTTP only), then version.
    static func classify(_ message: [String: Any], headers: Headers?) -> Result<Request, Rejection> {
        guard let method = message["method"] as? String, let id = message["id"], isValidID(id) else {
            return .failure(
                Rejection(
                    code: ErrorCode.invalidRequest,
                    message:
                        "invalid_request: the body must be one JSON-RPC request (a method and a string or number id)"))
        }
        let params = message["params"] as? [String: Any] ?? [:]
        guard let meta = params["_meta"] as? [String: Any] else {
            return .failure(
                Rejection(
                    code: ErrorCode.invalidParams,
                    message:
                        "params._meta must be an object carrying the required '\(protocolVersionKey)' and '\(capabilitiesKey)' envelope keys"
                ))
        }
        let missing = [protocolVersionKey, capabilitiesKey].filter { meta[$0] == nil }
        guard missing.isEmpty else {
            return .failure(
                Rejection(
                    code: ErrorCode.invalidParams,
                    message: "params._meta is missing the required envelope key(s): \(missing.joined(separator: ", "))")
            )
        }
        let version = meta[protocolVersionKey]
        if let headers {
            if let duplicated = headers.duplicated {
                return .failure(
                    Rejection(code: ErrorCode.headerMismatch, message: "\(duplicated) header appears more than once"))
            }
            guard let header = headers.version, header == version as? String else {
                return .failure(
                    Rejection(
                        code: ErrorCode.headerMismatch,
                        message: "mcp-protocol-version header does not match the request envelope's protocol version"))
            }
            guard headers.method == method else {
                return .failure(
                    Rejection(
                        code: ErrorCode.headerMismatch,
                        message: "mcp-method header does not match the request body's method"
                    ))
            }
            if method == "tools/call", let name = params["name"] as? String,
                headers.name.flatMap(decodeHeaderValue) != name
            {
                return .failure(
                    Rejection(
                        code: ErrorCode.headerMismatch,
                        message: "mcp-name header does not match the request body's 'name' parameter"))
            }
        }
        guard let version = version as? String else {
            return .failure(
                Rejection(
                    code: ErrorCode.invalidParams, message: "the protocol-version envelope value must be a string"))
        }
        guard versions.contains(version) else { return .failure(unsupported(version)) }
        return .success(
            Request(id: id, idText: String(describing: id).prefix(128).description, method: method, params: params))
    }

    /// `-32022` naming the versions served without a session (a client then falls back to
    /// `initialize` only if it also speaks a handshake revision).
    static func unsupported(_ requested: String) -> Rejection {
        Rejection(
            code: ErrorCode.unsupportedVersion, message: "Unsupported protocol version",
            data: ["supported": versions.sorted(), "requested": requested])
    }

    /// A string, or a number that is not a boolean.
    static func isValidID(_ id: Any) -> Bool {
        id is String || (id as? NSNumber).map { String(cString: $0.objCType) != "c" } == true
    }

    /// The value of a header the client may have wrapped as `=?base64?…?=` (non-ASCII names); nil
    /// for a malformed or non-canonical wrapping, so a corrupt header never matches by accident.
    static func decodeHeaderValue(_ value: String) -> String? {
        guard value.hasPrefix("=?base64?"), value.hasSuffix("?="), value.count >= 11 else { return value }
        let payload = String(value.dropFirst(9).dropLast(2))
        guard let data = Data(base64Encoded: payload), data.base64EncodedString() == payload else { return nil }
        return String(data: data, encoding: .utf8)
    }

    // MARK: Results

    /// `object` (a JSON object Leasehold encoded, starting with `{`) with `fields` (pre-encoded
    /// `"key":value` members of Leasehold's own constants) inserted first. Splicing rather than
    /// decoding and re-encoding keeps a tool's result bytes exactly as the worker gave them.
    static func withFields(_ object: Data, _ fields: [String]) -> Data {
        guard object.first == UInt8(ascii: "{"), !fields.isEmpty else { return object }
        var out = Data("{".utf8)
        out.append(contentsOf: Array(fields.joined(separator: ",").utf8))
        let rest = object.dropFirst()
        // `{}`: nothing follows the inserted members.
        if rest.first(where: { !$0.isJSONSpace }) != UInt8(ascii: "}") { out.append(UInt8(ascii: ",")) }
        out.append(rest)
        return out
    }

    /// A complete (not input-required) result.
    static let complete = #""resultType":"complete""#

    /// The `tools/list` result of this revision: the listing with its cache rules. A listing is
    /// the view of one claim's scope, so it is never shareable (`private`).
    static func listResult(_ listing: Data, ttlMs: Int) -> Data {
        withFields(listing, [#""cacheScope":"private""#, complete, "\"ttlMs\":\(max(0, ttlMs))"])
    }

    /// The `server/discover` result.
    static func discoverResult(ttlMs: Int) -> Data {
        let result: [String: Any] = [
            "supportedVersions": Array(allVersions.reversed()),
            "capabilities": ["tools": ["listChanged": true]],
            "instructions": "Tools are scoped to your session; call system.search_tools to find one.",
            "cacheScope": "private",
            "ttlMs": max(0, ttlMs),
            "resultType": "complete",
            "_meta": [serverInfoKey: ["name": "leasehold", "version": LeaseholdVersion.current]],
        ]
        return (try? JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])) ?? Data("{}".utf8)
    }

    /// `{"jsonrpc":"2.0","id":…,"error":{…}}` for `rejection` (`id: null` when there is none).
    static func errorMessage(id: Any?, _ rejection: Rejection) -> Data {
        var error: [String: Any] = ["code": rejection.code, "message": rejection.message]
        if let data = rejection.data { error["data"] = data }
        let encoded = (try? JSONSerialization.data(withJSONObject: error, options: [.sortedKeys])) ?? Data("{}".utf8)
        return HotMethodEdge.envelope(id: id ?? NSNull(), key: "error", value: encoded)
    }

    /// A notification frame of a `subscriptions/listen` stream, stamped with the stream's id.
    static func listenFrame(method: String, subscriptionID: Any, params: [String: Any] = [:]) -> Data {
        var params = params
        params["_meta"] = [subscriptionIDKey: subscriptionID]
        let message: [String: Any] = ["jsonrpc": "2.0", "method": method, "params": params]
        return (try? JSONSerialization.data(withJSONObject: message, options: [.sortedKeys])) ?? Data()
    }
}

extension UInt8 {
    fileprivate var isJSONSpace: Bool {
        self == UInt8(ascii: " ") || self == UInt8(ascii: "\n") || self == UInt8(ascii: "\r")
            || self == UInt8(ascii: "\t")
    }
}
