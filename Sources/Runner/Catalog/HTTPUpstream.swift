import Foundation
import SandboxProtocol

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// A failed request to an upstream server, with the code the caller gets.
struct UpstreamFailure: Error, Sendable {
    /// `upstream_unavailable`, `upstream_protocol`, `upstream_timeout`, `upstream_error` or `limit_exceeded`.
    let code: String
    let message: String
}

/// An MCP client over Streamable HTTP for a `transport: http` server: one deployment someone
/// else runs, which every tenant's sessions share.
///
/// Requests carry the configured headers (e.g. the server's own credential), never the caller's
/// claim; answers are read as JSON or as an SSE stream, and a call's `result` is passed on byte for
/// byte (``JSONSpan``). The MCP session is opened on first use and opened again when the server
/// forgets it (404).
actor HTTPUpstream {
    let server: UpstreamServer
    private let session: URLSession
    private var sessionID: String?
    private var initialized = false
    private var nextID = 1

    init(server: UpstreamServer) {
        self.server = server
        let configuration = URLSessionConfiguration.ephemeral
        configuration.httpCookieStorage = nil
        configuration.urlCache = nil
        self.session = URLSession(configuration: configuration)
    }

    /// Every tool of every page, as one JSON array.
    func listTools(timeout: Duration) async throws(UpstreamFailure) -> [UInt8] {
        var tools: [Any] = []
        var cursor: String?
        for _ in 0..<1000 {
            var params: [String: Any] = [:]
            if let cursor { params["cursor"] = cursor }
            let result = try await request("tools/list", params: Self.json(params), timeout: timeout, cap: 64 << 20)
            guard let object = try? JSONSerialization.jsonObject(with: Data(result)) as? [String: Any],
                let page = object["tools"] as? [Any]
            else {
                throw UpstreamFailure(code: "upstream_protocol", message: "server \(server.id) answered tools/list without a tools array")
            }
            tools += page
            guard let next = object["nextCursor"] as? String else { return Self.json(tools) }
            cursor = next
        }
        throw UpstreamFailure(code: "upstream_protocol", message: "server \(server.id) listed more than 1000 pages of tools")
    }

    /// A `tools/call` with the whole params (name, arguments, `_meta`); the server's result object.
    func call(params: [UInt8], timeout: Duration, cap: Int) async throws(UpstreamFailure) -> [UInt8] {
        try await request("tools/call", params: params, timeout: timeout, cap: cap)
    }

    private func request(_ method: String, params: [UInt8], timeout: Duration, cap: Int) async throws(UpstreamFailure)
        -> [UInt8]
    {
        if !initialized { try await initialize(timeout: timeout) }
        do {
            return try await exchange(method, params: params, timeout: timeout, cap: cap)
        } catch let failure where failure.code == "session_gone" {
            // The server restarted or dropped the session: open a new one, once.
            initialized = false
            sessionID = nil
            try await initialize(timeout: timeout)
            return try await exchange(method, params: params, timeout: timeout, cap: cap)
        }
    }

    private func initialize(timeout: Duration) async throws(UpstreamFailure) {
        let params = #"{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"leasehold","version":"1"}}"#
        _ = try await exchange("initialize", params: Array(params.utf8), timeout: timeout, cap: 1 << 20)
        _ = try await post(Array(#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.utf8), timeout: timeout)
        initialized = true
    }

    private func exchange(_ method: String, params: [UInt8], timeout: Duration, cap: Int) async throws(UpstreamFailure)
        -> [UInt8]
    {
        let id = nextID
        nextID += 1
        let body =
            Array(#"{"jsonrpc":"2.0","id":\#(id),"method":"#.utf8) + Self.json(method) + Array(#","params":"#.utf8) + params
            + [UInt8(ascii: "}")]
        let (data, response) = try await post(body, timeout: timeout)
        if response.statusCode == 404, sessionID != nil {
            throw UpstreamFailure(code: "session_gone", message: "server \(server.id) forgot the MCP session")
        }
        guard response.statusCode == 200 else {
            throw UpstreamFailure(
                code: "upstream_unavailable", message: "server \(server.id) answered \(method) with HTTP \(response.statusCode)")
        }
        guard data.count <= cap else {
            throw UpstreamFailure(
                code: "limit_exceeded", message: "server \(server.id)'s answer of \(data.count) bytes is over the tier's output limit")
        }
        if method == "initialize", let session = response.value(forHTTPHeaderField: "Mcp-Session-Id") {
            sessionID = session
        }
        let contentType = response.value(forHTTPHeaderField: "Content-Type") ?? ""
        let messages: [[UInt8]] =
            contentType.hasPrefix("text/event-stream") ? Self.events(Array(data)) : [Array(data)]
        for message in messages {
            guard let idSpan = JSONSpan.member("id", in: message), message[idSpan].elementsEqual("\(id)".utf8) else {
                continue
            }
            if let error = JSONSpan.member("error", in: message) {
                throw UpstreamFailure(
                    code: "upstream_error",
                    message: "server \(server.id) answered \(method) with an error: \(String(decoding: message[error].prefix(500), as: UTF8.self))")
            }
            guard let result = JSONSpan.member("result", in: message), message[result.lowerBound] == UInt8(ascii: "{") else {
                break
            }
            return Array(message[result])
        }
        throw UpstreamFailure(code: "upstream_protocol", message: "server \(server.id) sent no JSON-RPC answer to \(method)")
    }

    private func post(_ body: [UInt8], timeout: Duration) async throws(UpstreamFailure) -> (Data, HTTPURLResponse) {
        guard let url = server.url else { throw UpstreamFailure(code: "upstream_unavailable", message: "no url") }
        var request = URLRequest(url: url)
        request.httpMethod = "POST"
        request.timeoutInterval = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
        for (name, value) in server.headers { request.setValue(value, forHTTPHeaderField: name) }
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.setValue("application/json, text/event-stream", forHTTPHeaderField: "Accept")
        request.setValue("2025-06-18", forHTTPHeaderField: "MCP-Protocol-Version")
        if let sessionID { request.setValue(sessionID, forHTTPHeaderField: "Mcp-Session-Id") }
        request.httpBody = Data(body)
        do {
            let (data, response) = try await session.data(for: request)
            guard let http = response as? HTTPURLResponse else {
                throw UpstreamFailure(code: "upstream_protocol", message: "server \(server.id) did not answer over HTTP")
            }
            return (data, http)
        } catch let failure as UpstreamFailure {
            throw failure
        } catch let error as URLError where error.code == .timedOut {
            throw UpstreamFailure(code: "upstream_timeout", message: "server \(server.id) did not answer in time")
        } catch {
            throw UpstreamFailure(code: "upstream_unavailable", message: "server \(server.id) cannot be reached: \(error.localizedDescription)")
        }
    }

    /// The `data:` payloads of an SSE body, one message per event.
    static func events(_ body: [UInt8]) -> [[UInt8]] {
        var messages: [[UInt8]] = []
        var current: [UInt8] = []
        for line in body.split(separator: 0x0A, omittingEmptySubsequences: false) {
            let trimmed = line.last == 0x0D ? line.dropLast() : line[...]
            if trimmed.isEmpty {
                if !current.isEmpty { messages.append(current) }
                current = []
            } else if trimmed.starts(with: "data:".utf8) {
                var payload = trimmed.dropFirst(5)
                if payload.first == 0x20 { payload = payload.dropFirst() }
                if !current.isEmpty { current.append(0x0A) }
                current += payload
            }
        }
        if !current.isEmpty { messages.append(current) }
        return messages
    }

    static func json(_ value: Any) -> [UInt8] {
        if let text = value as? String {
            let array = try? JSONSerialization.data(withJSONObject: [text], options: [.withoutEscapingSlashes])
            return array.map { Array($0.dropFirst().dropLast()) } ?? Array("\"\"".utf8)
        }
        return (try? Array(JSONSerialization.data(withJSONObject: value, options: [.withoutEscapingSlashes])))
            ?? Array("{}".utf8)
    }
}
