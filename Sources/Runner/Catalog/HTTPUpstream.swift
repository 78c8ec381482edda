import AsyncHTTPClient
import Failures
import Foundation
import NIOCore
import NIOHTTP1
import SandboxProtocol

/// A failed request to an upstream server, with the code the caller gets.
typealias UpstreamFailure = CodedError<UpstreamFailureCode>

/// Stable codes of an HTTP upstream's failure; a call's failure is passed on to the caller with
/// its code (``ToolOutcome/failed(code:message:)``).
struct UpstreamFailureCode: ErrorCode {
    /// The wire form.
    let rawValue: String
    private init(_ rawValue: String) { self.rawValue = rawValue }

    /// The server could not be reached or answered with an HTTP error.
    static let unavailable = UpstreamFailureCode("upstream_unavailable")
    /// The server's answer is not what MCP says it should be.
    static let protocolViolation = UpstreamFailureCode("upstream_protocol")
    /// The server did not answer in time; the request was cancelled.
    static let timeout = UpstreamFailureCode("upstream_timeout")
    /// The server answered the call with a JSON-RPC error.
    static let errorAnswer = UpstreamFailureCode("upstream_error")
    /// The answer was larger than the call may return.
    static let limitExceeded = UpstreamFailureCode("limit_exceeded")
    /// The client cancelled the call; the server was told.
    static let cancelled = UpstreamFailureCode("cancelled")
    /// The server forgot the MCP session; it is opened again and the request retried (never
    /// reported to a caller).
    static let sessionGone = UpstreamFailureCode("session_gone")

    /// Every code a call of an HTTP upstream can end with (docs/operations.md's table is checked
    /// against it; `session_gone` is handled inside and is no caller's).
    static let allCases: [UpstreamFailureCode] = [
        .unavailable, .protocolViolation, .timeout, .errorAnswer, .limitExceeded, .cancelled,
    ]
}

/// An MCP client over Streamable HTTP for a `transport: http` server: one deployment someone
/// else runs, which every tenant's sessions share.
///
/// Requests carry the configured headers (e.g. the server's own credential), never the caller's
/// claim. Answers are read as they arrive, as JSON or as an SSE stream: the byte cap holds while
/// reading (reading stops as soon as it is passed), the timeout is a deadline for the whole
/// request, and a call's `result` is passed on byte for byte (``JSONSpan``). What the server
/// sends before its answer is handled on the way: progress for the call is passed to the caller,
/// `notifications/tools/list_changed` asks for the server to be listed again, and requests of
/// the client (sampling, roots, elicitation) are answered "not offered". The MCP session is opened
/// on first use and opened again when the server forgets it (404).
///
/// The server's standalone GET stream, and the listings it asks for, run in ``listen(onToolsChanged:onStream:)``.
actor HTTPUpstream {
    nonisolated let server: UpstreamServer
    nonisolated let http: UpstreamHTTPClient
    /// What the listener acts on: list changes to refresh, notifications to send (see HTTPUpstream+Listening).
    nonisolated let signals = Signals()
    private var sessionID: String?
    private var initialized = false
    /// Callers waiting for the session being opened (nil when none is being opened).
    private var opening: [CheckedContinuation<Result<Void, UpstreamFailure>, Never>]?
    private var nextID = 1

    /// The protocol revision Leasehold asks for and names on every request.
    static let protocolVersion = "2025-06-18"
    /// At most this many progress notifications are passed on per call; later ones are dropped.
    static let maximumProgressPerCall = 1000
    /// How long a notification Leasehold sends (initialized, cancelled, an answer) may take.
    static let notificationTimeout = Duration.seconds(5)

    init(server: UpstreamServer, http: UpstreamHTTPClient) {
        self.server = server
        self.http = http
    }

    /// Every tool of every page, as one JSON array.
    func listTools(timeout: Duration) async throws(UpstreamFailure) -> [UInt8] {
        let deadline = ContinuousClock.now + timeout
        var tools: [Any] = []
        var cursor: String?
        for _ in 0..<1000 {
            var params: [String: Any] = [:]
            if let cursor { params["cursor"] = cursor }
            let result = try await request(
                "tools/list", params: Self.json(params), deadline: deadline, cap: 64 << 20, progress: nil)
            guard let object = try? JSONSerialization.jsonObject(with: Data(result)) as? [String: Any],
                let page = object["tools"] as? [Any]
            else {
                throw UpstreamFailure(
                    .protocolViolation, "server \(server.id) answered tools/list without a tools array")
            }
            tools += page
            guard let next = object["nextCursor"] as? String else { return Self.json(tools) }
            cursor = next
        }
        throw UpstreamFailure(
            .protocolViolation, "server \(server.id) listed more than 1000 pages of tools")
    }

    /// A `tools/call` with the whole params (name, arguments, `_meta`); the server's result object.
    ///
    /// - Parameters:
    ///   - timeout: the deadline of the whole call, from now (`upstream_timeout`; the server is
    ///     sent `notifications/cancelled`).
    ///   - cap: the most bytes the server's answer may hold, everything it sends for the call
    ///     included (`limit_exceeded`, as soon as it is passed).
    ///   - progress: when `params._meta.progressToken` is set, gets the `params` of each
    ///     `notifications/progress` for that token, in order, before the result (at most
    ///     ``maximumProgressPerCall``).
    /// - Throws: `cancelled` when the calling task is cancelled (the server is sent
    ///   `notifications/cancelled`, without the caller waiting for it), and the codes of ``UpstreamFailure``.
    func call(params: [UInt8], timeout: Duration, cap: Int, progress: (@Sendable ([UInt8]) -> Void)?)
        async throws(UpstreamFailure) -> [UInt8]
    {
        let relay = progress.flatMap { sink in
            Self.progressToken(in: params).map { UpstreamProgress(token: $0, sink: sink) }
        }
        return try await request(
            "tools/call", params: params, deadline: ContinuousClock.now + timeout, cap: cap, progress: relay)
    }

    private func request(
        _ method: String, params: [UInt8], deadline: ContinuousClock.Instant, cap: Int, progress: UpstreamProgress?
    ) async throws(UpstreamFailure) -> [UInt8] {
        try await openSession(deadline: deadline)
        let session = sessionID
        do {
            return try await exchange(method, params: params, deadline: deadline, cap: cap, progress: progress).result
        } catch let failure where failure.code == .sessionGone {
            // The server restarted or dropped the session: open a new one (unless another request
            // already did), once.
            forget(session: session)
            try await openSession(deadline: deadline)
            return try await exchange(method, params: params, deadline: deadline, cap: cap, progress: progress).result
        }
    }

    /// The session the server forgot is no longer used; the next request opens another.
    func forget(session: String?) {
        guard initialized, sessionID == session else { return }
        initialized = false
        sessionID = nil
    }

    /// The current session id, opening a session first when there is none.
    func openedSession(deadline: ContinuousClock.Instant) async throws(UpstreamFailure) -> String? {
        try await openSession(deadline: deadline)
        return sessionID
    }

    /// Opens the MCP session unless it is open; callers arriving meanwhile wait for the same one.
    private func openSession(deadline: ContinuousClock.Instant) async throws(UpstreamFailure) {
        if initialized { return }
        if opening != nil {
            let result = await withCheckedContinuation { opening?.append($0) }
            return try result.get()
        }
        opening = []
        let result: Result<Void, UpstreamFailure>
        do {
            try await initialize(deadline: deadline)
            result = .success(())
        } catch {
            result = .failure(error)
        }
        let waiting = opening ?? []
        opening = nil
        for waiter in waiting { waiter.resume(returning: result) }
        try result.get()
    }

    private func initialize(deadline: ContinuousClock.Instant) async throws(UpstreamFailure) {
        sessionID = nil
        let params =
            #"{"protocolVersion":"\#(Self.protocolVersion)","capabilities":{},"clientInfo":{"name":"leasehold","version":"1"}}"#
        let answer = try await exchange(
            "initialize", params: Array(params.utf8), deadline: deadline, cap: 1 << 20, progress: nil)
        sessionID = answer.session
        try await notify(Array(#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.utf8), session: sessionID)
        initialized = true
    }

    /// One request and its answer, until `deadline`.
    private func exchange(
        _ method: String, params: [UInt8], deadline: ContinuousClock.Instant, cap: Int, progress: UpstreamProgress?
    ) async throws(UpstreamFailure) -> (result: [UInt8], session: String?) {
        let id = nextID
        nextID += 1
        let body =
            Array(#"{"jsonrpc":"2.0","id":\#(id),"method":"#.utf8) + Self.json(method) + Array(#","params":"#.utf8)
            + params
            + [UInt8(ascii: "}")]
        let session = sessionID
        do {
            return try await Self.within(deadline, server: server.id, method: method) {
                () async throws(UpstreamFailure) in
                try await self.read(id: id, method: method, body: body, session: session, cap: cap, progress: progress)
            }
        } catch let failure where failure.code == .cancelled || failure.code == .timeout {
            // The server may stop working on it; initialize is never cancelled (the spec says so).
            if method != "initialize" {
                let reason = failure.code == .cancelled ? "cancelled by the client" : "timeout"
                signals.send(
                    Array(
                        #"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":\#(id),"reason":"\#(reason)"}}"#
                            .utf8), session: session)
            }
            throw failure
        }
    }

    /// Runs `body` until `deadline`: its value; `upstream_timeout` at the deadline, or `cancelled`
    /// when the calling task is cancelled (`body` is cancelled either way, which ends its request).
    static func within<T: Sendable>(
        _ deadline: ContinuousClock.Instant, server: String, method: String,
        _ body: @escaping @Sendable () async throws(UpstreamFailure) -> T
    ) async throws(UpstreamFailure) -> T {
        let outcome = await withTaskGroup(of: Result<T, UpstreamFailure>?.self) { group in
            group.addTask {
                do throws(UpstreamFailure) { return .success(try await body()) } catch { return .failure(error) }
            }
            group.addTask {
                // The request's deadline (the tier's wall clock) racing its answer; cancelled when
                // the answer comes first.
                do { try await Task.sleep(until: deadline, clock: .continuous) } catch { return nil }
                return .failure(
                    UpstreamFailure(
                        .timeout, "server \(server) did not answer \(method) in time; the request was cancelled"))
            }
            var first: Result<T, UpstreamFailure>?
            while let next = await group.next() {
                if let next {
                    first = next
                    break
                }
            }
            group.cancelAll()
            return first
        }
        if case .success(let value)? = outcome { return value }
        if Task.isCancelled {
            throw UpstreamFailure(
                .cancelled, "the call of server \(server) was cancelled by the client")
        }
        if case .failure(let failure)? = outcome { throw failure }
        throw UpstreamFailure(.cancelled, "the call of server \(server) was cancelled by the client")
    }

    /// POSTs one request and reads its answer as it arrives.
    private nonisolated func read(
        id: Int, method: String, body: [UInt8], session: String?, cap: Int, progress: UpstreamProgress?
    ) async throws(UpstreamFailure) -> (result: [UInt8], session: String?) {
        let response = try await send(body, session: session, accept: "application/json, text/event-stream")
        if response.status == .notFound, session != nil {
            throw UpstreamFailure(.sessionGone, "server \(server.id) forgot the MCP session")
        }
        guard response.status == .ok else {
            throw UpstreamFailure(
                .unavailable, "server \(server.id) answered \(method) with HTTP \(response.status.code)")
        }
        let answered = response.headers.first(name: "Mcp-Session-Id")
        var answer = Answer(id: Array("\(id)".utf8), method: method, progress: progress)
        var received = 0
        func count(_ bytes: Int) throws(UpstreamFailure) {
            received += bytes
            guard received <= cap else {
                throw UpstreamFailure(
                    .limitExceeded,
                    "server \(server.id)'s answer to \(method) passed \(cap) bytes, over the tier's output limit; the rest was not read"
                )
            }
        }
        if (response.headers.first(name: "Content-Type") ?? "").lowercased().hasPrefix("text/event-stream") {
            var parser = SSEParser(maximumEventBytes: cap)
            var chunks = response.body.makeAsyncIterator()
            while let chunk = try await next(&chunks, method: method) {
                try count(chunk.readableBytes)
                let events: [[UInt8]]
                do {
                    events = try parser.feed(chunk.readableBytesView)
                } catch {
                    throw UpstreamFailure(
                        .limitExceeded, "server \(server.id) sent an event over \(cap) bytes")
                }
                for event in events {
                    if let result = try await handle(event, answer: &answer, session: session) {
                        return (result, answered)
                    }
                }
            }
            if let event = parser.finish(), let result = try await handle(event, answer: &answer, session: session) {
                return (result, answered)
            }
        } else {
            var whole: [UInt8] = []
            var chunks = response.body.makeAsyncIterator()
            while let chunk = try await next(&chunks, method: method) {
                try count(chunk.readableBytes)
                whole += chunk.readableBytesView
            }
            if let result = try await handle(whole, answer: &answer, session: session) { return (result, answered) }
        }
        throw UpstreamFailure(
            .protocolViolation, "server \(server.id) sent no JSON-RPC answer to \(method)")
    }

    /// The next chunk of a body; nil at its end. The body's end is also what a cancelled task
    /// sees: that is reported as such, not as an answer cut short.
    private nonisolated func next(_ chunks: inout HTTPClientResponse.Body.AsyncIterator, method: String)
        async throws(UpstreamFailure) -> ByteBuffer?
    {
        do {
            let chunk = try await chunks.next()
            if chunk == nil, Task.isCancelled {
                throw UpstreamFailure(.cancelled, "the request was cancelled")
            }
            return chunk
        } catch let failure as UpstreamFailure {
            throw failure
        } catch {
            throw failure(error, during: method)
        }
    }

    /// The state of reading one request's answer.
    private struct Answer {
        /// The request's id, as JSON.
        let id: [UInt8]
        let method: String
        let progress: UpstreamProgress?
        var progressPassed = 0
    }

    /// Handles one message of an answer: the result when it is the answer to the request.
    private nonisolated func handle(_ message: [UInt8], answer: inout Answer, session: String?)
        async throws(UpstreamFailure) -> [UInt8]?
    {
        let message = message[...]
        if let method = Self.value(of: "method", in: message) {
            if let id = Self.value(of: "id", in: message) {
                // Sampling, roots, elicitation: nothing of the caller's is offered upstream.
                try await notify(Self.notOffered(id: id), session: session)
            } else if method.elementsEqual(#""notifications/tools/list_changed""#.utf8) {
                signals.toolsChanged()
            } else if method.elementsEqual(#""notifications/progress""#.utf8), let relay = answer.progress,
                answer.progressPassed < Self.maximumProgressPerCall,
                let params = Self.value(of: "params", in: message),
                let token = Self.value(of: "progressToken", in: params), token.elementsEqual(relay.token)
            {
                answer.progressPassed += 1
                relay.sink(Array(params))
            }
            return nil
        }
        guard let id = Self.value(of: "id", in: message), id.elementsEqual(answer.id) else { return nil }
        if let error = Self.value(of: "error", in: message) {
            throw UpstreamFailure(
                .errorAnswer,
                "server \(server.id) answered \(answer.method) with an error: \(String(decoding: error.prefix(500), as: UTF8.self))"
            )
        }
        guard let result = Self.value(of: "result", in: message), result.first == UInt8(ascii: "{") else {
            throw UpstreamFailure(
                .protocolViolation, "server \(server.id) answered \(answer.method) without a result object")
        }
        return Array(result)
    }

    /// The value of the top-level member `key` of the object in `bytes`, as a slice of it.
    static func value(of key: String, in bytes: ArraySlice<UInt8>) -> ArraySlice<UInt8>? {
        guard let span = JSONSpan.member(key, in: bytes) else { return nil }
        return bytes[(bytes.startIndex + span.lowerBound)..<(bytes.startIndex + span.upperBound)]
    }

    /// The answer to a request of the server's: not offered.
    static func notOffered(id: some Collection<UInt8>) -> [UInt8] {
        Array(#"{"jsonrpc":"2.0","id":"#.utf8) + id
            + Array(#","error":{"code":-32601,"message":"Leasehold does not offer this to upstream servers"}}"#.utf8)
    }

    /// POSTs a notification or an answer (the server acknowledges with 202), within ``notificationTimeout``.
    nonisolated func notify(_ message: [UInt8], session: String?) async throws(UpstreamFailure) {
        try await Self.within(
            ContinuousClock.now + Self.notificationTimeout, server: server.id, method: "a notification"
        ) {
            () async throws(UpstreamFailure) in
            let response = try await self.send(message, session: session, accept: "application/json, text/event-stream")
            // 202 is what the spec says; any success will do.
            guard (200..<300).contains(response.status.code) else {
                throw UpstreamFailure(
                    .unavailable, "server \(self.server.id) answered a notification with HTTP \(response.status.code)")
            }
            // Nothing is expected back; read at most a little so the connection can be reused.
            var left = 1 << 16
            do {
                for try await chunk in response.body {
                    left -= chunk.readableBytes
                    if left < 0 { break }
                }
            } catch {}
        }
    }

    /// One HTTP request to the server's endpoint: POST `body`, or GET when it is nil; the
    /// response head (its body still to be read).
    nonisolated func send(_ body: [UInt8]?, session: String?, accept: String) async throws(UpstreamFailure)
        -> HTTPClientResponse
    {
        guard let url = server.url else {
            throw UpstreamFailure(.unavailable, "server \(server.id) has no url")
        }
        guard let client = http.client else {
            throw UpstreamFailure(.unavailable, "the runner is shutting down")
        }
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = body == nil ? .GET : .POST
        for (name, value) in server.headers { request.headers.replaceOrAdd(name: name, value: value) }
        if let body {
            request.headers.replaceOrAdd(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        request.headers.replaceOrAdd(name: "Accept", value: accept)
        request.headers.replaceOrAdd(name: "MCP-Protocol-Version", value: Self.protocolVersion)
        if let session { request.headers.replaceOrAdd(name: "Mcp-Session-Id", value: session) }
        do {
            // The caller's deadline (``within(_:server:method:_:)``) bounds the whole request; this
            // one only keeps a forgotten request from living forever.
            return try await client.execute(request, timeout: .hours(24))
        } catch {
            throw failure(error, during: body == nil ? "the GET stream" : "a request")
        }
    }

    /// What an error of the HTTP client means to the caller (the configured headers never
    /// appear: the client's errors do not carry them).
    private nonisolated func failure(_ error: any Error, during what: String) -> UpstreamFailure {
        if Task.isCancelled || error is CancellationError || (error as? HTTPClientError) == .cancelled {
            return UpstreamFailure(.cancelled, "the request was cancelled")
        }
        if let error = error as? HTTPClientError,
            [.deadlineExceeded, .connectTimeout, .readTimeout].contains(error)
        {
            return UpstreamFailure(
                .timeout, "server \(server.id) did not answer \(what) in time")
        }
        return UpstreamFailure(.unavailable, "server \(server.id) cannot be reached", cause: error)
    }

    /// `params._meta.progressToken` of a call, as JSON (nil when there is none).
    static func progressToken(in params: [UInt8]) -> [UInt8]? {
        guard let meta = value(of: "_meta", in: params[...]), let token = value(of: "progressToken", in: meta),
            let first = token.first,
            first == UInt8(ascii: "\"") || first == UInt8(ascii: "-") || (0x30...0x39).contains(first)
        else { return nil }
        return Array(token)
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

/// Where a call's progress goes: the token it asked for, and the caller's sink.
struct UpstreamProgress: Sendable {
    let token: [UInt8]
    let sink: @Sendable ([UInt8]) -> Void
}
