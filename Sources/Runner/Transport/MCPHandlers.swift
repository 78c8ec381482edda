import Foundation
import MCP
import Sandbox
import Tracing

/// Builds the MCP server for one connection, with every handler going through the gateway.
enum MCPHandlers {
    /// The claim carrier inside `params._meta` (stdio).
    static let metaClaimKey = "dev.leasehold/claim"

    /// A server for `connectionID`; `fallbackClaim` is the claim bound at process start (stdio).
    static func makeServer(
        gateway: Gateway, connectionID: String, endpointServer: String?, fallbackClaim: String?,
        stdio: ClaimCarryingTransport? = nil
    ) async -> Server {
        let server = Server(
            name: "leasehold", version: LeaseholdVersion.current,
            instructions: "Tools are scoped to your session; call system.search_tools to find one.",
            capabilities: .init(tools: .init(listChanged: true)))

        /// The request's id, read once per request from its raw message (HTTP body, or the message the
        /// stdio transport kept).
        @Sendable func currentRequestID() -> String? {
            Server.currentHandlerContext?.httpContext?.body.flatMap(requestID(in:))
        }

        @Sendable func context(requestID: String?) async throws -> CallContext {
            // HTTP: the context the endpoint authenticated this request with, once.
            if let held = Server.currentHandlerContext?.httpContext?.header(RequestContexts.header) {
                guard let context = gateway.requestContexts.context(held) else {
                    throw MCPError.internalError("the request's authentication is no longer held")
                }
                return context
            }
            // stdio: the request's own `_meta` claim, else the claim bound at process start.
            var token = bearer(Server.currentHandlerContext?.httpContext?.header("Authorization"))
            if token == nil, let stdio, let requestID { token = await stdio.claim(forRequest: requestID) }
            token = token ?? fallbackClaim
            do {
                return try await gateway.authenticate(
                    token: token, connectionID: connectionID, endpointServer: endpointServer, requestID: requestID,
                    source: stdio != nil ? "stdio" : nil)
            } catch {
                gateway.logger.info("refused", metadata: ["code": "\(error.code)", "connection": "\(connectionID)"])
                throw MCPError.serverError(code: -32001, message: error.description)
            }
        }

        /// The server span of a request this path answers (stdio, or an HTTP request the SDK
        /// handles), and its context once its claim verified (nil span: tracing is off).
        @Sendable func traced(_ method: String, tool: String?, meta: Metadata?, requestID: String?) async throws
            -> (CallContext, (any Span)?)
        {
            guard let tracing = gateway.tracing else { return (try await context(requestID: requestID), nil) }
            var carrier: [String: String] = [:]
            for key in ["traceparent", "tracestate"] {
                if let value = meta?[key]?.stringValue, value.utf8.count <= 512 { carrier[key] = value }
            }
            let span = tracing.serverSpan(
                method: method, tool: tool, nameTool: tool.map(gateway.metricToolLabel), requestID: requestID ?? "",
                carrier: carrier, protocolVersion: nil, sessionID: nil, transport: stdio != nil ? "pipe" : "tcp")
            let verify = tracing.child("leasehold.claim.verify", of: span)
            do {
                var context = try await context(requestID: requestID)
                verify.end()
                LeaseholdTracing.identify(span, context)
                context.span = span
                return (context, span)
            } catch {
                LeaseholdTracing.fail(verify, "claim_refused")
                verify.end()
                LeaseholdTracing.fail(span, "claim_refused")
                span.end()
                throw error
            }
        }

        await server.withMethodHandler(ListTools.self) { _ in
            let requestID = currentRequestID()
            let (context, span) = try await traced("tools/list", tool: nil, meta: nil, requestID: requestID)
            defer { span?.end() }
            return ListTools.Result(tools: await gateway.listTools(in: context, requestID: requestID))
        }
        await server.withMethodHandler(CallTool.self) { [weak server] params in
            let requestID = currentRequestID()
            var (context, span) = try await traced("tools/call", tool: params.name, meta: params._meta, requestID: requestID)
            defer { span?.end() }
            // The arguments exactly as the client sent them: the SDK's decoding of `params`
            // rewrites strings that look like data URLs (see ExactJSON).
            guard let body = Server.currentHandlerContext?.httpContext?.body,
                case .some(let arguments) = ExactJSON.callArguments(in: body, id: requestID)
            else {
                throw MCPError.invalidParams("invalid_arguments: the tools/call request could not be read")
            }
            // Progress goes out as notifications, in order, before the response.
            var relay: Task<Void, Never>?
            var reports: AsyncStream<[UInt8]>.Continuation?
            if let token = ProgressRelay.token(inMessage: body).flatMap(ProgressRelay.sdkToken), let server {
                let (stream, continuation) = AsyncStream<[UInt8]>.makeStream(bufferingPolicy: .bufferingNewest(64))
                context.progress = ProgressSink { continuation.yield($0) }
                reports = continuation
                relay = Task {
                    for await params in stream {
                        guard let fields = ProgressRelay.fields(params) else { continue }
                        try? await server.notify(
                            ProgressNotification.message(
                                .init(
                                    progressToken: token, progress: fields.progress, total: fields.total,
                                    message: fields.message)))
                    }
                }
            }
            // The SDK cancels this handler's task on the client's `notifications/cancelled`; the
            // call itself runs in a task of its own, so it is cancelled through its
            // CallCancellation and still records its outcome. Unstructured on purpose, and awaited
            // on every path: a child task would be cancelled with the handler's (Swift has no
            // cancellation shield). The relay above likewise: awaited once the call answered,
            // cancelled when it did not.
            let cancellation = CallCancellation()
            context.cancellation = cancellation
            let running = Task { [context] () async throws(Refusal) -> CallAnswer in
                guard let span = context.span else {
                    return try await gateway.answer(params.name, arguments: arguments, in: context, requestID: requestID)
                }
                // The stages' spans are children of this request's.
                let result = await InstrumentationContext.withValue(span.context) {
                    () async -> Result<CallAnswer, Refusal> in
                    do throws(Refusal) {
                        return .success(
                            try await gateway.answer(params.name, arguments: arguments, in: context, requestID: requestID))
                    } catch {
                        return .failure(error)
                    }
                }
                return try result.get()
            }
            defer { relay?.cancel() }
            do {
                let answer = try await withTaskCancellationHandler {
                    try await running.value
                } onCancel: {
                    cancellation.cancel()
                }
                reports?.finish()
                await relay?.value
                // A call the client cancelled gets no response (the SDK sends none for this).
                if cancellation.isCancelled { throw CancellationError() }
                // The SDK re-decodes results into `Value` (rewriting data-URL-like strings); the
                // transport sends these exact bytes instead.
                if let stdio, let requestID { stdio.exactResults.put(ResultEncoder.json(answer), for: requestID) }
                return ResultEncoder.result(answer)
            } catch let refusal as Refusal {
                throw MCPError.invalidParams(refusal.description)
            }
        }
        return server
    }

    /// The JSON-RPC `id` of a single-request body, for the audit trail (the SDK keeps its own copy
    /// package-internal). Nil for batches, notifications and anything unparsable.
    static func requestID(in body: Data) -> String? {
        let ids = requestIDs(in: body)
        return ids.count == 1 ? ids[0] : nil
    }

    /// The ids of the requests in a body (one request or a batch); notifications and responses
    /// carry none. 1 and "1" count as the same id: refusing a rare false duplicate is safer than
    /// letting two requests share a response route.
    static func requestIDs(in body: Data) -> [String] {
        struct Message: Decodable {
            let id: ID?
            let method: String?
        }
        enum ID: Decodable {
            case string(String), number(Int64)
            init(from decoder: any Decoder) throws {
                let container = try decoder.singleValueContainer()
                if let number = try? container.decode(Int64.self) {
                    self = .number(number)
                } else {
                    self = .string(try container.decode(String.self))
                }
            }
            /// Cut at 128 characters: ids are caller-chosen and end up in audit records and in
            /// the connection's in-flight set.
            var text: String {
                switch self {
                case .string(let text): String(text.prefix(128))
                case .number(let number): String(number)
                }
            }
        }
        let decoder = JSONDecoder()
        let messages: [Message]
        if let batch = try? decoder.decode([Message].self, from: body) {
            messages = batch
        } else if let single = try? decoder.decode(Message.self, from: body) {
            messages = [single]
        } else {
            return []
        }
        return messages.compactMap { message in message.method == nil ? nil : message.id?.text }
    }

    /// The token of an `Authorization: Bearer` value: the scheme matched without regard to case,
    /// spaces and tabs around the token dropped. On UTF-8 bytes: Foundation's `trimmingCharacters`
    /// bridges through NSString and was 3.5% of a warm read's CPU.
    static func bearer(_ header: String?) -> String? {
        guard var header else { return nil }
        return header.withUTF8 { bytes -> String? in
            func isBlank(_ byte: UInt8) -> Bool { byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") }
            var start = 0
            while start < bytes.count, isBlank(bytes[start]) { start += 1 }
            let scheme = Array("bearer".utf8)
            guard bytes.count - start > scheme.count else { return nil }
            for (offset, letter) in scheme.enumerated() where bytes[start + offset] | 0x20 != letter { return nil }
            var tokenStart = start + scheme.count
            guard bytes[tokenStart] == UInt8(ascii: " ") else { return nil }
            while tokenStart < bytes.count, isBlank(bytes[tokenStart]) { tokenStart += 1 }
            var end = bytes.count
            while end > tokenStart, isBlank(bytes[end - 1]) { end -= 1 }
            guard end > tokenStart else { return nil }
            return String(decoding: UnsafeBufferPointer(rebasing: bytes[tokenStart..<end]), as: UTF8.self)
        }
    }
}
