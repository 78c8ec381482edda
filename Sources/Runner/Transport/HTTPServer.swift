import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import MCP
import NIOCore
import Sandbox
import ServiceLifecycle
import Tracing
import WorkspaceRegistry

/// Builds the Hummingbird application: `/mcp`, `/mcp/servers/{id}`, `/api/v1/...`, `/healthz`, `/readyz`.
public enum HTTPServer {
    /// The application serving `admin` and its gateway on `settings.host:port`, with every HTTP
    /// bound of `settings` in force; at most `maximumConnections` open connections (the
    /// configured cap, lowered to what the open-file limit allows: ``DescriptorBudget``).
    public static func application(
        admin: AdminService, settings: HTTPSettings, maximumConnections: Int, oauth: OAuthConfig = OAuthConfig(),
        subjectTokens: SubjectTokenVerifier? = nil,
        onServerRunning: @escaping @Sendable (any Channel) async -> Void, logger: Logger
    ) -> some Service {
        let perAddress = ConnectionsPerAddress(limit: settings.maximumConnectionsPerAddress)
        return Application(
            router: router(
                admin: admin, settings: settings, oauth: TokenExchange(admin: admin, config: oauth, verifier: subjectTokens),
                logger: logger),
            server: HTTPServerBuilder { responder in
                BoundedHTTP1Channel(responder: responder, settings: settings, perAddress: perAddress, logger: logger)
            },
            // Over the total cap the server stops accepting: new connections wait in the listen
            // backlog (then the kernel's SYN queue) until one closes, and use no descriptor here.
            configuration: .init(
                address: .hostname(settings.host, port: settings.port), serverName: "leasehold",
                availableConnectionsDelegate: MaximumAvailableConnections(max(1, maximumConnections), logger: logger)),
            onServerRunning: onServerRunning, logger: logger)
    }

    /// The router for `admin` and its gateway.
    static func router(admin: AdminService, settings: HTTPSettings, oauth: TokenExchange? = nil, logger: Logger)
        -> Router<LeaseholdRequestContext>
    {
        let router = Router(context: LeaseholdRequestContext.self)
        let gateway = admin.gateway
        let mcp = MCPEndpoint(gateway: gateway, settings: settings, logger: logger)

        // Liveness: the process answers. Readiness: it can run calls, which it cannot while the
        // audit log refuses appends (every audited call is refused until an operator restarts it)
        // or its store cannot be reached (a cluster node without its database); a load balancer
        // then sends tenants elsewhere. The reason is in the runner's log only.
        router.get("/healthz") { _, _ in
            HTTPJSON.response(.ok, ["status": "ok", "version": LeaseholdVersion.current])
        }
        router.get("/readyz") { _, _ in
            if await gateway.audit.refusesAppends {
                return HTTPJSON.response(.serviceUnavailable, ["status": "audit_unavailable"])
            }
            guard await gateway.store.isReady() else {
                return HTTPJSON.response(.serviceUnavailable, ["status": "store_unavailable"])
            }
            return HTTPJSON.response(.ok, ["status": "ready"])
        }
        for method in [HTTPRequest.Method.post, .get, .delete] {
            router.on("/mcp", method: method) { request, context in
                await mcp.handle(request, endpointServer: nil, context: context)
            }
            router.on("/mcp/servers/:server_id", method: method) { request, context in
                await mcp.handle(request, endpointServer: context.parameters.get("server_id"), context: context)
            }
        }
        // The operator's view of the whole runner: the operator key only (a tenant admin key would
        // see every tenant's tools and volumes). `--metrics HOST:PORT` serves it without a key on
        // a listener of its own (docs/observability.md).
        router.get("/metrics") { request, _ in
            let principal: Principal
            do {
                principal = try await admin.principal(forKey: MCPHandlers.bearer(request.headers[.authorization]))
            } catch let error as APIError {
                return HTTPJSON.error(error, headers: [.wwwAuthenticate: "Bearer realm=\"leasehold-admin\""])
            }
            guard principal == .operator else {
                return HTTPJSON.error(APIError.forbidden("/metrics needs the operator key"))
            }
            return await MetricsEndpoint.response(gateway: gateway)
        }
        AdminRoutes(admin: admin).register(on: router)
        ConsoleRoutes(
            admin: admin, settings: settings, sessions: ConsoleSessions(), limiter: ConsoleSignInLimiter()
        ).register(on: router)
        (oauth ?? TokenExchange(admin: admin, config: OAuthConfig(), verifier: nil)).register(on: router)
        return router
    }
}

/// A progress token as JSONSerialization parsed it (an immutable NSString or NSNumber).
struct UncheckedToken: @unchecked Sendable {
    let value: Any
}

/// The Streamable HTTP endpoint: authenticates each request, then hands it to the connection's
/// SDK transport.
struct MCPEndpoint: Sendable {
    let gateway: Gateway
    let settings: HTTPSettings
    let logger: Logger
    /// Open GET (SSE) streams per session.
    let streams: SessionStreams

    init(gateway: Gateway, settings: HTTPSettings, logger: Logger) {
        self.gateway = gateway
        self.settings = settings
        self.logger = logger
        self.streams = SessionStreams(limit: settings.maximumSSEStreamsPerSession)
    }

    func handle(_ request: Request, endpointServer: String?, context http: LeaseholdRequestContext) async -> Response {
        let source = http.clientAddress
        if let refusal = checkOriginAndHost(request) { return refusal }
        if let endpointServer, !gateway.resolver.catalog.servers.contains(endpointServer) || endpointServer == "system"
        {
            return jsonRPCError(
                status: .notFound, code: -32600, message: "not_found: no server \(endpointServer) at this endpoint")
        }
        var request = request
        let body: ByteBuffer
        do {
            body = try await request.collectBody(upTo: settings.maximumBodyBytes)
        } catch {
            return jsonRPCError(
                status: .contentTooLarge, code: -32600,
                message: "body_too_large: MCP requests are limited to \(settings.maximumBodyBytes) bytes")
        }
        let token = MCPHandlers.bearer(request.headers[.authorization])
        let bodyData = Data(buffer: body)
        let sessionHeader = request.headers[HTTPField.Name("Mcp-Session-Id")!]
        // MCP 2026-07-28 has no protocol session: its requests (named by their version header or
        // their per-request envelope) go to the sessionless edge; a session id with them is refused.
        let versionHeader = request.headers[HTTPField.Name("MCP-Protocol-Version")!]
        if let versionHeader, ModernProtocol.versions.contains(versionHeader), sessionHeader != nil {
            return jsonRPCError(
                status: .badRequest, code: -32600,
                message: "invalid_request: protocol \(versionHeader) has no Mcp-Session-Id; send requests without it")
        }
        if sessionHeader == nil {
            let message =
                request.method == .post
                ? (try? JSONSerialization.jsonObject(with: bodyData, options: [])) as? [String: Any] : nil
            if ModernProtocol.claims(message, versionHeader: versionHeader) {
                return await handleModern(
                    request, body: bodyData, message: message, token: token, endpointServer: endpointServer,
                    http: http)
            }
        }
        // Parsed once: the ids guard against duplicates in flight, and a single request's id goes
        // into the audit record of a refusal. A hot method on an established connection is parsed
        // by the edge, which then answers it from that same parse.
        let hot = request.method == .post && sessionHeader != nil ? HotMethodEdge.parse(bodyData) : nil
        if request.method == .post, hot == nil, !HotMethodEdge.readersAgree(bodyData) {
            return jsonRPCError(
                status: .badRequest, code: -32600,
                message: "invalid_request: the request gives its id or method twice; give each once")
        }
        let ids = hot.map { [$0.idText] } ?? (request.method == .post ? MCPHandlers.requestIDs(in: bodyData) : [])
        let requestID = ids.count == 1 ? ids[0] : nil

        let connectionID: String
        let transport: StatefulHTTPServerTransport
        let context: CallContext
        if let sessionHeader {
            guard let (existing, endpoint) = await gateway.connections.httpConnection(sessionHeader),
                endpoint == endpointServer
            else {
                return jsonRPCError(
                    status: .notFound, code: -32600, message: "not_found: unknown or deleted MCP session id")
            }
            connectionID = sessionHeader
            transport = existing
            // A hot request is traced from here, so claim verification is a child of its span.
            let span = hot.flatMap { call in
                gateway.tracing.map { tracing in
                    tracing.serverSpan(
                        method: call.methodName, tool: call.toolName,
                        nameTool: call.toolName.map(gateway.metricToolLabel), requestID: call.idText,
                        carrier: call.traceCarrier.isEmpty ? traceHeaders(request) : call.traceCarrier,
                        protocolVersion: request.headers[HTTPField.Name("MCP-Protocol-Version")!],
                        sessionID: sessionHeader, transport: "tcp")
                }
            }
            let verifySpan = span.flatMap { gateway.tracing?.child("leasehold.claim.verify", of: $0) }
            do {
                context = try await gateway.authenticate(
                    token: token, connectionID: connectionID, endpointServer: endpointServer,
                    requestID: requestID, source: source)
                verifySpan?.end()
            } catch {
                LeaseholdTracing.fail(verifySpan, error.code.rawValue)
                verifySpan?.end()
                LeaseholdTracing.fail(span, error.code.rawValue)
                span?.end()
                return unauthorized(error)
            }
            if let call = hot {
                LeaseholdTracing.identify(span, context)
                return await answer(call, request: request, context: context, connectionID: connectionID, span: span)
            }
            // A client's cancellation of a call in flight on this connection reaches the call;
            // the SDK then answers the notification as usual (202).
            if request.method == .post, let cancelled = HotMethodEdge.cancelledRequest(bodyData) {
                await gateway.connections.cancel(cancelled, on: connectionID)
            }
        } else {
            guard request.method == .post else {
                return jsonRPCError(
                    status: .badRequest, code: -32600, message: "invalid_request: Mcp-Session-Id header required")
            }
            if let refusal = checkPostHeaders(request) { return refusal }
            connectionID = RandomID.make(prefix: "mcp") + gateway.connectionIDSuffix
            // Checked but not bound yet: the claim is bound once the SDK has opened the connection
            // (below), so a first request it refuses (not `initialize`, an unsupported version, a
            // newer client's probe) does not use up the claim.
            do {
                context = try await gateway.authenticate(
                    token: token, connectionID: connectionID, endpointServer: endpointServer,
                    requestID: requestID, source: source, binding: false)
            } catch {
                return unauthorized(error)
            }
            transport = StatefulHTTPServerTransport(
                sessionIDGenerator: FixedSessionID(id: connectionID),
                validationPipeline: StandardValidationPipeline(validators: [
                    AcceptHeaderValidator(mode: .sseRequired), ContentTypeValidator(), ProtocolVersionValidator(),
                    SessionValidator(),
                ]))
            let server = await MCPHandlers.makeServer(
                gateway: gateway, connectionID: connectionID, endpointServer: endpointServer, fallbackClaim: nil)
            await gateway.connections.register(
                connectionID, server: server, httpTransport: transport, endpointServer: endpointServer)
            do {
                try await server.start(transport: transport)
            } catch {
                await gateway.connections.remove(connectionID)
                return jsonRPCError(status: .internalServerError, code: -32603, message: "internal_error: \(error)")
            }
        }

        // The SDK's handlers take the context this request was authenticated with (see
        // RequestContexts); a client's own value for that header never reaches them.
        var headers: [String: String] = [:]
        for field in request.headers where field.name.canonicalName.lowercased() != RequestContexts.header.lowercased()
        {
            headers[field.name.canonicalName] = field.value
        }
        // A GET opens a stream that lasts as long as the client keeps it: bounded per session.
        var stream: SessionStreams.Slot?
        if request.method == .get {
            guard let slot = streams.open(session: context.session.id) else {
                return jsonRPCError(
                    status: .tooManyRequests, code: -32600,
                    message:
                        "too_many_streams: session \(context.session.id) already holds \(streams.limit) open SSE (GET) "
                        + "streams (http.max_sse_streams_per_session); close one before opening another")
            }
            // A client gone mid-stream is noticed by the response task only at the next event it
            // cannot write; the connection's closing gives the slot back at once.
            // (Weakly: a stream that ends first gives its slot back with its last reference.)
            http.channel.closeFuture.whenComplete { [weak slot] _ in slot?.release() }
            slot.closeConnection.withLock { [channel = http.channel] in $0 = { channel.close(promise: nil) } }
            stream = slot
        }
        let contextToken = gateway.requestContexts.hold(context)
        headers[RequestContexts.header] = contextToken
        let sdkRequest = MCP.HTTPRequest(
            method: request.method.rawValue, headers: headers, body: bodyData, path: request.uri.path)
        // JSON-RPC ids must be unique among a connection's requests in flight. The SDK transport
        // routes responses by id, so a duplicate would strand one request's stream forever (and
        // with it graceful shutdown); refuse it instead.
        if !ids.isEmpty {
            guard await gateway.connections.startRequests(ids, on: connectionID) else {
                gateway.requestContexts.release(contextToken)
                stream?.release()
                return jsonRPCError(
                    status: .conflict, code: -32600,
                    message: "invalid_request: a request with this id is already in flight on this MCP session")
            }
        }
        let release = RequestRelease(
            registry: gateway.connections, connectionID: connectionID, ids: ids, contexts: gateway.requestContexts,
            contextToken: contextToken)
        // A request the SDK answers (initialize, notifications, other methods, a batch) gets its
        // server span here; the hot methods have theirs in the lean edge.
        let span = request.method == .post ? edgeSpan(bodyData, request: request, sessionID: connectionID) : nil
        let response = await InstrumentationContext.withValue(span?.context ?? InstrumentationContext.current) {
            await transport.handleRequest(sdkRequest)
        }
        if response.statusCode >= 400 { LeaseholdTracing.fail(span, "http_\(response.statusCode)") }
        span?.end()
        if sessionHeader == nil {
            // The connection opened only if the SDK accepted the request and named it; otherwise
            // nothing of it stays, and the claim was never bound.
            let opened =
                response.statusCode == 200
                && response.headers.contains { key, value in
                    key.lowercased() == "mcp-session-id" && value == connectionID
                }
            guard opened else {
                await gateway.connections.remove(connectionID)
                return convert(response, release: release, stream: stream)
            }
            do {
                try await gateway.bindOpened(context, requestID: requestID)
            } catch {
                stream?.release()
                await gateway.connections.remove(connectionID)
                return unauthorized(error)
            }
        }
        if request.method == .delete, response.statusCode == 200 {
            await gateway.connections.remove(connectionID)
        }
        return convert(response, release: release, stream: stream)
    }

    /// `tools/call` on an established connection, answered by the lean edge with the context this
    /// request was authenticated with (once): the same header checks as the SDK transport, the same
    /// in-flight id guard, and a plain JSON response.
    private func answer(
        _ call: HotMethodEdge.Call, request: Request, context: CallContext, connectionID: String, span: (any Span)?
    ) async -> Response {
        if let refusal = checkPostHeaders(request) {
            LeaseholdTracing.fail(span, "invalid_request")
            span?.end()
            return refusal
        }
        if let version = request.headers[HTTPField.Name("MCP-Protocol-Version")!], !Version.supported.contains(version)
        {
            LeaseholdTracing.fail(span, "invalid_request")
            span?.end()
            return jsonRPCError(
                status: .badRequest, code: -32600,
                message:
                    "Bad Request: Unsupported protocol version: \(version). Supported: \(Version.supported.sorted().joined(separator: ", "))"
            )
        }
        // A call can be cancelled by the client (`notifications/cancelled`) until it finishes.
        var context = context
        context.span = span
        let cancellation: CallCancellation? = if case .call = call.method { CallCancellation() } else { nil }
        context.cancellation = cancellation
        guard await gateway.connections.startRequests([call.idText], on: connectionID, cancellation: cancellation)
        else {
            LeaseholdTracing.fail(span, "invalid_request")
            span?.end()
            return jsonRPCError(
                status: .conflict, code: -32600,
                message: "invalid_request: a request with this id is already in flight on this MCP session")
        }
        var headers = HTTPFields()
        headers[HTTPField.Name("Mcp-Session-Id")!] = connectionID
        if let token = call.progressToken, let cancellation {
            headers[.contentType] = "text/event-stream"
            headers[.cacheControl] = "no-cache"
            return Response(
                status: .ok, headers: headers,
                body: progressStream(
                    call, token: token, context: context, cancellation: cancellation, connectionID: connectionID))
        }
        let body: Data
        if let span {
            body = await InstrumentationContext.withValue(span.context) {
                await HotMethodEdge.answer(call, gateway: gateway, context: context)
            }
            span.end()
        } else {
            body = await HotMethodEdge.answer(call, gateway: gateway, context: context)
        }
        await gateway.connections.finishRequests([call.idText], on: connectionID)
        headers[.contentType] = "application/json"
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
    }

    /// The answer of a call whose client asked for progress: an SSE stream of its
    /// `notifications/progress`, then the response. The call runs in a task of its own, so a
    /// client gone mid-stream cancels it (the server is told) but its outcome is still recorded.
    /// At most 64 reports wait for a slow reader; older ones are dropped (progress is advisory).
    private func progressStream(
        _ call: HotMethodEdge.Call, token: Any, context: CallContext, cancellation: CallCancellation,
        connectionID: String
    ) -> ResponseBody {
        let (reports, continuation) = AsyncStream<[UInt8]>.makeStream(bufferingPolicy: .bufferingNewest(64))
        var context = context
        context.progress = ProgressSink { continuation.yield($0) }
        let gateway = self.gateway
        let token = UncheckedToken(value: token)
        // Unstructured on purpose (a child of the response body's task would be cancelled with
        // it); the event stream awaits it on every path.
        let task = Task {
            let span = context.span
            let body = await InstrumentationContext.withValue(span?.context ?? InstrumentationContext.current) {
                await HotMethodEdge.answer(call, gateway: gateway, context: context)
            }
            span?.end()
            continuation.finish()
            await gateway.connections.finishRequests([call.idText], on: connectionID)
            return body
        }
        return ProgressRelay.eventStream(reports: reports, token: token, answer: task, cancellation: cancellation)
    }

    /// `traceparent` / `tracestate` of the request's HTTP headers (W3C Trace Context).
    /// The server span of a POST the SDK answers (nil when tracing is off): named by its JSON-RPC
    /// method (`batch` for several messages), its id when it is a request. For a streamed answer it
    /// ends when the stream starts.
    private func edgeSpan(_ body: Data, request: Request, sessionID: String) -> (any Span)? {
        guard let tracing = gateway.tracing else { return nil }
        let parsed = try? JSONSerialization.jsonObject(with: body, options: [])
        let message = parsed as? [String: Any]
        let method = message.map { ($0["method"] as? String) ?? "response" } ?? (parsed is [Any] ? "batch" : "invalid")
        // Leasehold's own names only in the span name: a made-up method is `_unknown` there.
        let known = LeaseholdTracing.isKnownMethod(method)
        let requestID = message?["id"].map { String(describing: $0).prefix(128).description } ?? ""
        let version = request.headers[HTTPField.Name("MCP-Protocol-Version")!]
        return tracing.serverSpan(
            method: known ? method : "_unknown", tool: nil, nameTool: nil, requestID: requestID,
            carrier: traceHeaders(request), protocolVersion: version, sessionID: sessionID, transport: "tcp")
    }

    func traceHeaders(_ request: Request) -> [String: String] {
        var carrier: [String: String] = [:]
        if let parent = request.headers[HTTPField.Name("traceparent")!] { carrier["traceparent"] = parent }
        if let state = request.headers[HTTPField.Name("tracestate")!] { carrier["tracestate"] = state }
        return carrier
    }

    /// DNS-rebinding protection: a foreign `Origin` or an unexpected `Host` gets 403.
    private func checkOriginAndHost(_ request: Request) -> Response? {
        if let origin = request.headers[.origin] {
            let allowed =
                settings.allowedOrigins.contains(origin)
                || (settings.allowedOrigins.isEmpty && isLoopbackOrigin(origin))
            if !allowed {
                return jsonRPCError(
                    status: .forbidden, code: -32600, message: "forbidden_origin: origin \(origin) is not allowed")
            }
        }
        let hosts = settings.allowedHosts
        if let host = request.head.authority {
            let name = hostName(host)
            let allowed =
                hosts.isEmpty
                ? (!settings.isLoopback || ["127.0.0.1", "localhost", "[::1]", "::1"].contains(name))
                : hosts.contains(host) || hosts.contains(name)
            if !allowed {
                return jsonRPCError(
                    status: .forbidden, code: -32600, message: "forbidden_host: host \(host) is not allowed")
            }
        }
        return nil
    }

    private func isLoopbackOrigin(_ origin: String) -> Bool {
        guard let url = URL(string: origin), let host = url.host else { return false }
        return ["127.0.0.1", "localhost", "::1", "[::1]"].contains(host)
    }

    private func hostName(_ authority: String) -> String {
        if authority.hasPrefix("[") { return String(authority.prefix { $0 != "]" }) + "]" }
        return String(authority.prefix { $0 != ":" })
    }

    /// The transport checks these too; checking first keeps a malformed initialize from binding a claim.
    func checkPostHeaders(_ request: Request) -> Response? {
        let accept = request.headers[.accept] ?? ""
        guard accept.contains("application/json"), accept.contains("text/event-stream") else {
            return jsonRPCError(
                status: .notAcceptable, code: -32600,
                message: "not_acceptable: Accept must include application/json and text/event-stream")
        }
        guard (request.headers[.contentType] ?? "").lowercased().hasPrefix("application/json") else {
            return jsonRPCError(
                status: .unsupportedMediaType, code: -32600,
                message: "unsupported_media_type: Content-Type must be application/json")
        }
        return nil
    }

    func unauthorized(_ refusal: Refusal) -> Response {
        var headers = HTTPFields()
        let description = refusal.message.replacingOccurrences(of: "\"", with: "'")
        headers[.wwwAuthenticate] =
            "Bearer realm=\"leasehold\", error=\"invalid_token\", error_code=\"\(refusal.code.rawValue)\", error_description=\"\(description)\""
        logger.info("refused", metadata: ["code": "\(refusal.code)"])
        return jsonRPCError(
            status: .unauthorized, code: -32001, message: refusal.description, headers: headers, counted: true)
    }

    /// A refusal at the HTTP edge, counted in `leasehold_refusals_total` under the code its message
    /// starts with (`body_too_large: ...`); `counted` when the gateway has counted it already
    /// (claims and sessions, see ``unauthorized(_:)``). Only codes of Leasehold's own messages
    /// (lower-case words and underscores) become labels, so a label set stays bounded.
    private func jsonRPCError(
        status: HTTPResponse.Status, code: Int, message: String, headers: HTTPFields = [:], counted: Bool = false
    ) -> Response {
        if !counted, let colon = message.firstIndex(of: ":") {
            let prefix = message[..<colon]
            if (1...40).contains(prefix.utf8.count),
                prefix.utf8.allSatisfy({ ($0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "z")) || $0 == UInt8(ascii: "_") })
            {
                gateway.metrics.refused(String(prefix), tenant: nil)
            }
        }
        struct Body: Encodable {
            struct ErrorBody: Encodable {
                let code: Int
                let message: String
            }
            let jsonrpc = "2.0"
            let id: String? = nil
            let error: ErrorBody

            func encode(to encoder: any Encoder) throws {
                var container = encoder.container(keyedBy: CodingKeys.self)
                try container.encode(jsonrpc, forKey: .jsonrpc)
                try container.encodeNil(forKey: .id)
                try container.encode(error, forKey: .error)
            }
            enum CodingKeys: String, CodingKey { case jsonrpc, id, error }
        }
        return HTTPJSON.response(status, Body(error: .init(code: code, message: message)), headers: headers)
    }

    /// `release` (and a GET's `stream` slot) lives as long as the response body: until a stream
    /// ends or is dropped (client gone), or until a plain body is written; a GET answered without
    /// a stream (an error) gives its slot back at once.
    private func convert(_ response: MCP.HTTPResponse, release: RequestRelease, stream: SessionStreams.Slot?)
        -> Response
    {
        var headers = HTTPFields()
        for (name, value) in response.headers {
            if let field = HTTPField.Name(name) { headers[field] = value }
        }
        let status = HTTPResponse.Status(code: response.statusCode)
        let slot = stream
        switch response {
        case .stream(let stream, _):
            // A GET stream's events wait for a slow client in a bounded backlog.
            let buffers = (slot?.bounded(stream) ?? stream).map { bytes in
                withExtendedLifetime((release, slot)) { ByteBuffer(bytes: bytes) }
            }
            return Response(status: status, headers: headers, body: ResponseBody(asyncSequence: buffers))
        default:
            slot?.release()
            let data = response.bodyData ?? Data()
            return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
        }
    }
}

/// Hands the transport the connection id chosen (and bound to a claim) before it was created.
struct FixedSessionID: SessionIDGenerator {
    let id: String
    func generateSessionID() -> String { id }
}

/// Ends a request's hold on its JSON-RPC ids when the last reference to it goes: the response
/// stream finished or was dropped. (A deinit rather than a callback at stream end, so a client
/// that disconnects mid-stream cannot leave ids held.)
final class RequestRelease: Sendable {
    let registry: ConnectionRegistry
    let connectionID: String
    let ids: [String]
    let contexts: RequestContexts
    let contextToken: String

    init(
        registry: ConnectionRegistry, connectionID: String, ids: [String], contexts: RequestContexts,
        contextToken: String
    ) {
        self.registry = registry
        self.connectionID = connectionID
        self.ids = ids
        self.contexts = contexts
        self.contextToken = contextToken
    }

    deinit {
        contexts.release(contextToken)
        guard !ids.isEmpty else { return }
        let registry = registry
        let connectionID = connectionID
        let ids = ids
        // A deinit cannot await: the one unstructured step, a single actor call that ends.
        Task { await registry.finishRequests(ids, on: connectionID) }
    }
}
