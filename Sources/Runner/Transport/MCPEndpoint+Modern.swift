import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Sandbox
import Tracing

/// Streamable HTTP for MCP 2026-07-28: one self-contained POST per request, no `Mcp-Session-Id`.
///
/// What a protocol session did for the claim binding is done by the claim itself: on its first use
/// a claim is bound (for good, in the replay store) to its *sessionless binding*, named by the
/// claim's fingerprint, the client's address (IPv6 as its /64) and the endpoint. The same claim
/// from another address, on another endpoint, or on an `initialize`d connection of an older
/// revision is `claim_replayed`; `subscriptions/listen` streams hang off that binding, so
/// `list_changed` reaches exactly the streams opened with that claim.
extension MCPEndpoint {
    /// The sessionless binding of `token` presented from `source` at `endpointServer`.
    static func sessionlessID(token: String?, source: String, endpointServer: String?) -> String {
        let material = "\(token.map { Digest.sha256Hex($0.utf8) } ?? "")|\(source)|\(endpointServer ?? "")"
        return "sl_" + String(Digest.sha256Hex(material.utf8).prefix(32))
    }

    /// A request of the revision (no `Mcp-Session-Id`; ``ModernProtocol/claims(_:versionHeader:)``).
    func handleModern(
        _ request: Request, body: Data, message: [String: Any]?, token: String?, endpointServer: String?,
        http: LeaseholdRequestContext
    ) async -> Response {
        guard request.method == .post else {
            return Response(status: .methodNotAllowed, headers: [.allow: "POST"])
        }
        if let refusal = checkPostHeaders(request) { return refusal }
        guard let message else {
            let parsed = (try? JSONSerialization.jsonObject(with: body, options: [.fragmentsAllowed])) != nil
            return modernError(
                id: nil,
                parsed
                    ? .init(
                        code: ModernProtocol.ErrorCode.invalidRequest,
                        message: "Body must be a single JSON-RPC request or notification object")
                    : .init(code: ModernProtocol.ErrorCode.parse, message: "Parse error"))
        }
        let versionHeader = request.headers[values: HTTPField.Name("MCP-Protocol-Version")!]
        // A notification is acknowledged and dropped, as the reference does: this revision defines
        // none from client to server over HTTP (a client cancels by closing the response stream).
        if message["id"] == nil {
            guard let version = versionHeader.first, ModernProtocol.versions.contains(version) else {
                return modernError(id: nil, ModernProtocol.unsupported(versionHeader.first ?? ""))
            }
            return Response(status: .accepted)
        }
        var headers = ModernProtocol.Headers()
        for name in ["MCP-Protocol-Version", "Mcp-Method", "Mcp-Name"] {
            let values = request.headers[values: HTTPField.Name(name)!]
            if values.count > 1 { headers.duplicated = name.lowercased() }
            switch name {
            case "MCP-Protocol-Version": headers.version = values.first
            case "Mcp-Method": headers.method = values.first
            default: headers.name = values.first
            }
        }
        let call: ModernProtocol.Request
        switch ModernProtocol.classify(message, headers: headers) {
        case .failure(let rejection):
            return modernError(id: message["id"], rejection)
        case .success(let classified):
            call = classified
        }
        // A method the revision does not have here is answered before the claim is looked at, so
        // a misdirected request (an `initialize` sent with the new version) does not bind it.
        guard ModernEdge.methods.contains(call.method) else {
            return modernError(
                id: call.id,
                .init(code: ModernProtocol.ErrorCode.methodNotFound, message: "Method not found: \(call.method)"))
        }
        if call.method == "subscriptions/listen", !(request.headers[.accept] ?? "").contains("text/event-stream") {
            return Response(status: .notAcceptable)
        }
        let source = http.clientAddress
        let connectionID = Self.sessionlessID(token: token, source: source, endpointServer: endpointServer)
        // The server span (tracing on): claim verification is its child, the call's stages too.
        let tool = call.method == "tools/call" ? call.params["name"] as? String : nil
        let span = gateway.tracing.map { tracing in
            let carrier = HotMethodEdge.traceCarrier(inParams: call.params)
            return tracing.serverSpan(
                method: LeaseholdTracing.isKnownMethod(call.method) ? call.method : "_unknown", tool: tool,
                nameTool: tool.map(gateway.metricToolLabel), requestID: call.idText,
                carrier: carrier.isEmpty ? traceHeaders(request) : carrier, protocolVersion: ModernProtocol.version,
                sessionID: nil, transport: "tcp")
        }
        let verifySpan = span.flatMap { gateway.tracing?.child("leasehold.claim.verify", of: $0) }
        var context: CallContext
        do {
            context = try await gateway.authenticate(
                token: token, connectionID: connectionID, endpointServer: endpointServer, requestID: call.idText,
                source: source)
            verifySpan?.end()
        } catch {
            LeaseholdTracing.fail(verifySpan, error.code.rawValue)
            verifySpan?.end()
            LeaseholdTracing.fail(span, error.code.rawValue)
            span?.end()
            return unauthorized(error)
        }
        LeaseholdTracing.identify(span, context)
        context.span = span
        await gateway.connections.registerSessionless(connectionID, endpointServer: endpointServer)
        if call.method == "subscriptions/listen" {
            span?.end()
            return await listen(call, context: context, http: http)
        }
        let base = approvalBase(request)
        if call.method == "tools/call", let token = call.progressToken {
            return progressStream(call, token: UncheckedToken(value: token), context: context, approvalBase: base)
        }
        let edge = ModernEdge(gateway: gateway)
        let answer = { [context] () async -> ModernEdge.Reply in
            await edge.answer(call, context: context) { id in "\(base)/ui#approvals/\(id)" }
        }
        let reply: ModernEdge.Reply
        if let span {
            reply = await InstrumentationContext.withValue(span.context) { await answer() }
            if reply.status >= 400 { LeaseholdTracing.fail(span, "http_\(reply.status)") }
            span.end()
        } else {
            reply = await answer()
        }
        return Response(
            status: HTTPResponse.Status(code: reply.status), headers: [.contentType: "application/json"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: reply.body)))
    }

    /// `subscriptions/listen`: an SSE stream that acknowledges the honored filter (only
    /// `toolsListChanged`: Leasehold has no prompts or resources), then carries
    /// `notifications/tools/list_changed` when the claim's visible set changes, and ends with the
    /// listen result when the session's connections are closed (revoke, lease end, hand-off).
    /// Counted against the session's SSE streams (`http.max_sse_streams_per_session`).
    private func listen(_ call: ModernProtocol.Request, context: CallContext, http: LeaseholdRequestContext) async
        -> Response
    {
        guard let slot = streams.open(session: context.session.id) else {
            return modernError(
                id: call.id,
                .init(
                    code: ModernProtocol.ErrorCode.invalidRequest,
                    message:
                        "too_many_streams: session \(context.session.id) already holds \(streams.limit) open streams "
                        + "(http.max_sse_streams_per_session); close one before opening another"))
        }
        let filter = call.params["notifications"] as? [String: Any]
        let wantsTools = filter?["toolsListChanged"] as? Bool == true
        let honored: [String: Any] = wantsTools ? ["toolsListChanged": true] : [:]
        let (frames, continuation) = AsyncStream<Data>.makeStream(bufferingPolicy: .bufferingNewest(16))
        continuation.yield(
            ModernProtocol.listenFrame(
                method: "notifications/subscriptions/acknowledged", subscriptionID: call.id,
                params: ["notifications": honored]))
        let listenerID = RandomID.make(prefix: "listen")
        let connections = gateway.connections
        let connectionID = context.connectionID
        if wantsTools {
            // What the client is taken to have seen: the listing in force now.
            await connections.recordListed(
                gateway.resolver.listingJSON(in: context.scope).names, connectionID: connectionID, claim: context.claim)
        }
        // Registered even without a filter, so closing the binding (revoke) ends the stream.
        guard
            await connections.listen(
                listenerID, on: connectionID,
                .init(request: call, toolsListChanged: wantsTools, frames: continuation))
        else {
            continuation.finish()
            slot.release()
            return modernError(
                id: call.id,
                .init(code: ModernProtocol.ErrorCode.invalidRequest, message: "the claim's binding was closed"))
        }
        http.channel.closeFuture.whenComplete { [weak slot] _ in
            slot?.release()
            // A channel callback on the event loop, not a task: the actor call goes in one of its own.
            Task { await connections.stopListening(listenerID, on: connectionID) }
        }
        let result = HotMethodEdge.envelope(
            id: call.id, key: "result",
            value: (try? JSONSerialization.data(
                withJSONObject: [
                    "resultType": "complete", "_meta": [ModernProtocol.subscriptionIDKey: call.id] as [String: Any],
                ] as [String: Any], options: [.sortedKeys])) ?? Data("{}".utf8))
        let body = ResponseBody { writer in
            defer { slot.release() }
            try await withThrowingTaskGroup(of: Void.self) { group in
                // A comment line every 15 s while nothing changes, as the reference server sends:
                // a proxy's idle timeout does not cut the stream, and a peer gone without a FIN is
                // noticed at the next write (the connection's closing then removes the listener).
                group.addTask {
                    while !Task.isCancelled {
                        try await Task.sleep(for: .seconds(15))
                        continuation.yield(Data())
                    }
                }
                for await frame in frames {
                    try await writer.write(
                        frame.isEmpty ? ByteBuffer(string: ": ping\n\n") : ProgressRelay.event(frame))
                }
                group.cancelAll()
            }
            try await writer.write(ProgressRelay.event(result))
            try await writer.finish(nil)
        }
        return Response(
            status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: body)
    }

    /// A call whose client asked for progress: an SSE stream of its `notifications/progress` (under
    /// the client's token), then the response. The revision has no `notifications/cancelled` over
    /// HTTP: a client cancels by closing the stream, which cancels the call (its outcome is still
    /// recorded, `cancelled`). At most 64 reports wait for a slow reader; older ones are dropped.
    private func progressStream(
        _ call: ModernProtocol.Request, token: UncheckedToken, context: CallContext, approvalBase: String
    ) -> Response {
        let (reports, continuation) = AsyncStream<[UInt8]>.makeStream(bufferingPolicy: .bufferingNewest(64))
        var context = context
        context.progress = ProgressSink { continuation.yield($0) }
        let cancellation = CallCancellation()
        context.cancellation = cancellation
        let edge = ModernEdge(gateway: gateway)
        // The call runs in a task of its own (as on the older revisions' progress path), so a
        // client gone mid-stream cancels it and its outcome is still recorded. Unstructured on
        // purpose (a child of the response body's task would be cancelled with it); the event
        // stream awaits it on every path.
        let task = Task { [context] in
            let span = context.span
            let reply = await InstrumentationContext.withValue(span?.context ?? InstrumentationContext.current) {
                await edge.answer(call, context: context) { id in "\(approvalBase)/ui#approvals/\(id)" }
            }
            span?.end()
            continuation.finish()
            return reply.body
        }
        let body = ProgressRelay.eventStream(reports: reports, token: token, answer: task, cancellation: cancellation)
        return Response(
            status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: body)
    }

    /// `scheme://host` of the request, for links to the admin API (approvals).
    private func approvalBase(_ request: Request) -> String {
        let scheme = request.head.scheme ?? "http"
        let host = request.head.authority ?? "\(settings.host):\(settings.port)"
        return "\(scheme)://\(host)"
    }

    /// A JSON-RPC error of the revision with its HTTP status; counted like the edge's other refusals.
    func modernError(id: Any?, _ rejection: ModernProtocol.Rejection) -> Response {
        let status = HTTPResponse.Status(code: rejection.httpStatus)
        if rejection.code == ModernProtocol.ErrorCode.headerMismatch {
            gateway.metrics.refused("header_mismatch", tenant: nil)
        }
        return Response(
            status: status, headers: [.contentType: "application/json"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: ModernProtocol.errorMessage(id: id, rejection))))
    }
}
