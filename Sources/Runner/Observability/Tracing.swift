import Foundation
import Logging
import OTel
import ServiceLifecycle
import Tracing

/// OpenTelemetry traces of MCP requests, exported over OTLP/HTTP (protobuf) when
/// `--otlp-endpoint` (or `tracing.otlp_endpoint`) is set, off otherwise: without a tracer no span
/// is started and nothing on the call path changes.
///
/// One server span per `tools/call` and `tools/list` following the OpenTelemetry semantic
/// conventions for MCP (name `{mcp.method.name} {gen_ai.tool.name}`), with child spans for the
/// stages of the call; Leasehold's own attributes under `leasehold.` (tenant, workspace, session,
/// lease, tier, isolation, worker id, claim fingerprint — never the claim). A trace context is
/// taken from the request's `params._meta` (`traceparent`, `tracestate`), else from its HTTP
/// headers. The tracer is the runner's own (not bootstrapped process-wide).
public struct LeaseholdTracing: Sendable {
    /// The tracer spans are started with.
    public let tracer: any Tracer

    /// Wraps a tracer (tests pass their own).
    public init(tracer: any Tracer) {
        self.tracer = tracer
    }

    /// A tracer exporting to `endpoint` over OTLP/HTTP with protobuf, and the service that
    /// batches and exports its spans (run it in the runner's service group: it flushes on
    /// shutdown). `endpoint` is the collector's base URL (`http://collector:4318`, to which
    /// `/v1/traces` is added) or the full traces URL (ending in `/v1/traces`).
    public static func otlp(endpoint: String, logger: Logger) throws -> (
        tracing: LeaseholdTracing, service: any Service
    ) {
        var configuration = OTel.Configuration.default
        configuration.serviceName = "leasehold"
        configuration.resourceAttributes = ["service.version": LeaseholdVersion.current]
        configuration.diagnosticLogger = .custom(logger)
        configuration.diagnosticLogLevel = .warning
        configuration.propagators = [.traceContext]
        configuration.metrics.enabled = false
        configuration.logs.enabled = false
        configuration.traces.enabled = true
        configuration.traces.sampler = .parentBasedAlwaysOn
        configuration.traces.exporter = .otlp
        configuration.traces.otlpExporter.protocol = .httpProtobuf
        var url = endpoint
        while url.hasSuffix("/") { url.removeLast() }
        configuration.traces.otlpExporter.endpoint = url.hasSuffix("/v1/traces") ? url : url + "/v1/traces"
        // A second between batches: spans reach the collector soon after their request.
        configuration.traces.batchSpanProcessor.scheduleDelay = .seconds(1)
        let backend = try OTel.makeTracingBackend(configuration: configuration)
        return (LeaseholdTracing(tracer: backend.factory), backend.service)
    }

    // MARK: Spans of a request

    /// The server span of one MCP request, its parent taken from `carrier` (`traceparent`,
    /// `tracestate`: the request's `_meta` when it has them, else its HTTP headers). `nameTool`
    /// is the tool as the span's name gives it: a name not in the catalog is `_unknown` there, so
    /// made-up names do not make span names unbounded (the attribute keeps what was asked).
    func serverSpan(
        method: String, tool: String?, nameTool: String?, requestID: String, carrier: [String: String],
        protocolVersion: String?, sessionID: String?, transport: String
    ) -> any Span {
        var parent = InstrumentationContext.topLevel
        if !carrier.isEmpty { tracer.extract(carrier, into: &parent, using: DictionaryExtractor()) }
        let name = nameTool.map { "\(method) \($0)" } ?? method
        let span = tracer.startSpan(name, context: parent, ofKind: .server)
        // Built whole and set once: each assignment to a span's attributes takes its lock.
        var attributes = SpanAttributes()
        attributes["mcp.method.name"] = method
        if let tool {
            attributes["gen_ai.tool.name"] = ToolName.display(tool)
            attributes["gen_ai.operation.name"] = "execute_tool"
        }
        attributes["jsonrpc.request.id"] = requestID
        if let protocolVersion { attributes["mcp.protocol.version"] = protocolVersion }
        // Sessionless revisions have no MCP session to name.
        if let sessionID, protocolVersion.map(Self.hasSessions) ?? true { attributes["mcp.session.id"] = sessionID }
        attributes["network.transport"] = transport
        if transport == "tcp" { attributes["network.protocol.name"] = "http" }
        span.attributes = attributes
        return span
    }

    /// A child span of the current (task-local) context, or of `parent`.
    func child(_ name: String, of parent: (any Span)? = nil) -> any Span {
        tracer.startSpan(name, context: parent?.context ?? InstrumentationContext.current ?? .topLevel)
    }

    /// A child span that already ended: began at `start`, ends now (a worker's spawn, known only
    /// once it is over).
    func finishedChild(_ name: String, lasted duration: Duration, attributes: [String: String]) {
        guard let current = InstrumentationContext.current else { return }
        let nanoseconds =
            UInt64(max(0, duration.components.seconds)) * 1_000_000_000
            + UInt64(max(0, duration.components.attoseconds) / 1_000_000_000)
        let now = DefaultTracerClock.now
        let start = DefaultTracerClock.Timestamp(
            nanosecondsSinceEpoch: now.nanosecondsSinceEpoch - min(nanoseconds, now.nanosecondsSinceEpoch))
        let span = tracer.startSpan(name, context: current, ofKind: .internal, at: start)
        for (key, value) in attributes { span.attributes[key] = value }
        span.end(at: now)
    }

    /// A child of `parent` from `start` for `duration` (a stage measured by another module's
    /// clock, e.g. the worker pool's acquisition).
    func child(
        _ name: String, of parent: any Span, from start: DefaultTracerClock.Timestamp, lasting duration: Duration
    ) {
        let nanoseconds =
            UInt64(max(0, duration.components.seconds)) * 1_000_000_000
            + UInt64(max(0, duration.components.attoseconds) / 1_000_000_000)
        let span = tracer.startSpan(name, context: parent.context, ofKind: .internal, at: start)
        span.end(at: DefaultTracerClock.Timestamp(nanosecondsSinceEpoch: start.nanosecondsSinceEpoch + nanoseconds))
    }

    /// Whether `method` may name a span (a method Leasehold does not know is `_unknown` there, so a
    /// client cannot make span names unbounded): the MCP methods, any notification, and the
    /// edge's `batch`, `response` and `invalid`.
    static func isKnownMethod(_ method: String) -> Bool {
        method.hasPrefix("notifications/") || knownMethods.contains(method)
    }

    private static let knownMethods: Set<String> = [
        "initialize", "ping", "tools/list", "tools/call", "resources/list", "resources/read", "resources/templates/list",
        "resources/subscribe", "resources/unsubscribe", "prompts/list", "prompts/get", "completion/complete",
        "logging/setLevel", "batch", "response", "invalid", "server/discover", "subscriptions/listen",
    ]

    /// Protocol revisions before 2026-07-28 have `Mcp-Session-Id` sessions.
    static func hasSessions(_ version: String) -> Bool { version < "2026-07-28" }

    /// Names the request's Leasehold identities on its span once its claim verified: never the
    /// claim, only its fingerprint.
    static func identify(_ span: (any Span)?, _ context: CallContext) {
        span?.updateAttributes { attributes in
            attributes["leasehold.tenant.id"] = context.session.tenantID
            attributes["leasehold.workspace.id"] = context.session.workspaceID
            attributes["leasehold.session.id"] = context.session.id
            attributes["leasehold.lease.id"] = context.session.lease.id
            attributes["leasehold.actor.id"] = context.session.actorID
            attributes["leasehold.claim.fingerprint"] = context.claim.fingerprint
        }
    }

    /// Marks a span failed with `type` (a refusal code, or `tool_error`).
    static func fail(_ span: (any Span)?, _ type: String) {
        guard let span else { return }
        span.attributes["error.type"] = type
        span.setStatus(SpanStatus(code: .error, message: type))
    }
}

/// Reads `traceparent` / `tracestate` from a plain dictionary.
struct DictionaryExtractor: Extractor {
    func extract(key: String, from carrier: [String: String]) -> String? { carrier[key] }
}
