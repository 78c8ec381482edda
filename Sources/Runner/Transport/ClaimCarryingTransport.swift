import Foundation
import Logging
import MCP
import Tracing

/// Wraps a stdio transport so each request's `params._meta["dev.leasehold/claim"]` reaches the
/// handlers (``claim(for:)``), and its raw bytes too, the way an HTTP request's body does
/// (through ``HTTPContextProviding``).
///
/// The SDK's `ListTools.Parameters` does not decode `_meta`, and its decoding of `tools/call`
/// arguments rewrites data-URL-like strings, so the claim and the raw message are kept here, before
/// decoding, and looked up by JSON-RPC id when the handler runs.
public actor ClaimCarryingTransport: Transport, HTTPContextProviding {
    public nonisolated let logger: Logger
    private let inner: any Transport
    private var claims: [String: String] = [:]
    /// Raw request messages by id, until their response is sent.
    private var bodies: [String: Data] = [:]

    /// Exact `tools/call` results by request id (see ``ExactResults``).
    let exactResults = ExactResults()
    /// Where the server spans of requests the SDK answers go (nil: tracing is off). `tools/call`
    /// and `tools/list` have theirs in the handlers (``MCPHandlers``).
    private let tracing: LeaseholdTracing?
    /// Their spans, by request id, until the response is sent.
    private var spans: [String: any Span] = [:]

    /// Wraps `inner`.
    public init(wrapping inner: any Transport, logger: Logger, tracing: LeaseholdTracing? = nil) {
        self.inner = inner
        self.logger = logger
        self.tracing = tracing
    }

    public func connect() async throws { try await inner.connect() }

    public func disconnect() async { await inner.disconnect() }

    public func send(_ data: Data) async throws {
        var data = data
        if let id = try? JSONDecoder().decode(ResponseEnvelope.self, from: data).id {
            if let span = spans.removeValue(forKey: id.description) {
                if data.range(of: Data(#""error":"#.utf8)) != nil, (try? JSONDecoder().decode(ErrorEnvelope.self, from: data))?.error != nil {
                    LeaseholdTracing.fail(span, "jsonrpc_error")
                }
                span.end()
            }
            claims.removeValue(forKey: id.description)
            bodies.removeValue(forKey: id.description)
            if let exact = exactResults.take(id.description),
                let message = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                let rawID = message["id"], message["result"] != nil
            {
                data = HotMethodEdge.envelope(id: rawID, key: "result", value: exact)
            }
        }
        try await inner.send(data)
    }

    public func receive() -> AsyncThrowingStream<Data, any Swift.Error> {
        let upstream = IteratorBox(inner: inner)
        return AsyncThrowingStream {
            while true {
                guard let data = try await upstream.next() else { return nil }
                // A 2026-07-28 message is answered beside the SDK, which speaks the handshake era.
                if let modern = await self.modern, await modern.take(data) { continue }
                await self.record(data)
                return data
            }
        }
    }

    /// Who answers MCP 2026-07-28 messages on this pipe (nil: they go to the SDK).
    private var modern: ModernStdio?

    /// Sends 2026-07-28 messages to `handler` instead of the SDK.
    func serveModern(with handler: ModernStdio) {
        modern = handler
    }

    private func record(_ data: Data) {
        guard let envelope = try? JSONDecoder().decode(PipeRequestEnvelope.self, from: data) else { return }
        if let tracing, let method = envelope.method, method != "tools/call", method != "tools/list" {
            var carrier: [String: String] = [:]
            if let parent = envelope.params?.meta?.traceparent { carrier["traceparent"] = parent }
            if let state = envelope.params?.meta?.tracestate { carrier["tracestate"] = state }
            let span = tracing.serverSpan(
                method: LeaseholdTracing.isKnownMethod(method) ? method : "_unknown", tool: nil, nameTool: nil,
                requestID: envelope.id.map { String($0.description.prefix(128)) } ?? "", carrier: carrier,
                protocolVersion: nil, sessionID: nil, transport: "pipe")
            // A notification has no response: its span is its arrival.
            if let id = envelope.id { spans[id.description] = span } else { span.end() }
        }
        guard let id = envelope.id else { return }
        bodies[id.description] = data
        if let claim = envelope.params?.meta?.claim {
            claims[id.description] = claim
        } else {
            claims.removeValue(forKey: id.description)
        }
    }

    /// The raw message of request `id` (the SDK's handler context carries it to the handlers).
    public func httpRequestContext(for id: ID) -> HTTPRequest? {
        bodies[id.description].map { HTTPRequest(method: "POST", body: $0) }
    }

    /// The claim the request with this id carried in `params._meta`, if any.
    public func claim(forRequest id: String) -> String? {
        claims[id]
    }

    private struct ResponseEnvelope: Decodable {
        let id: ID?
    }

    private struct ErrorEnvelope: Decodable {
        struct Body: Decodable { let code: Int? }
        let error: Body?
    }
}

/// Holds the inner transport's iterator for the one task that consumes the wrapped stream.
///
/// `@unchecked Sendable`: the MCP server iterates a transport's stream from a single task, so
/// `next()` is never called concurrently; the box only crosses into the stream's closure.
private final class IteratorBox: @unchecked Sendable {
    private let inner: any Transport
    private var iterator: AsyncThrowingStream<Data, any Swift.Error>.AsyncIterator?

    init(inner: any Transport) { self.inner = inner }

    func next() async throws -> Data? {
        if iterator == nil { iterator = await inner.receive().makeAsyncIterator() }
        return try await iterator?.next()
    }
}
