import Foundation
import Logging
import MCP
import OTel
import Tracing

// What each MCP request leaves behind besides its audit records: its duration and outcome in
// `/metrics` (``LeaseholdMetrics``), and one `mcp.request` log line at info carrying the ids its
// audit records carry (request id, session, lease, claim fingerprint), so the three join. Never
// the claim, the arguments or what the tool returned.
extension Gateway {
    /// How a request ended, as the metrics label it: `ok`, `tool_error` (the tool ran, or refused
    /// inside its worker, and said so with `isError`) or `refused` (the runner refused it).
    enum Outcome: String {
        case ok
        case toolError = "tool_error"
        case refused
    }

    /// A `tools/call` answered (or refused with a thrown ``Refusal``).
    func observeCall(
        _ tool: String, tier: String?, answer: CallAnswer?, refusal: Refusal?, in context: CallContext,
        requestID: String?, since started: ContinuousClock.Instant
    ) {
        let elapsed = ContinuousClock.now - started
        var outcome = Outcome.ok
        var code: String? = nil
        if let refusal {
            outcome = .refused
            code = refusal.code.rawValue
        } else if let answer {
            switch answer {
            case .refusal(let refusal, _):
                outcome = .refused
                code = refusal.code.rawValue
            case .tool(let result, true):
                outcome = .toolError
                code = ResultEncoder.errorCode(in: result)
            case .tool, .built, .upstream:
                if answer.isError { outcome = .toolError }
            }
        }
        if let code { metrics.refused(code, tenant: context.session.tenantID) }
        if outcome != .ok {
            LeaseholdTracing.fail(context.span, outcome == .refused ? (code ?? outcome.rawValue) : "tool_error")
        }
        metrics.operation(
            method: "tools/call", tool: metricToolLabel(tool), tier: tier ?? "none", outcome: outcome.rawValue,
            tenant: context.session.tenantID, seconds: LeaseholdMetrics.seconds(elapsed))
        logRequest(
            "tools/call", tool: tool, tier: tier, outcome: outcome, code: code, in: context, requestID: requestID,
            elapsed: elapsed)
    }

    /// A `tools/list` answered.
    func observeList(in context: CallContext, requestID: String?, since started: ContinuousClock.Instant) {
        let elapsed = ContinuousClock.now - started
        metrics.operation(
            method: "tools/list", tool: "", tier: "none", outcome: Outcome.ok.rawValue,
            tenant: context.session.tenantID, seconds: LeaseholdMetrics.seconds(elapsed))
        logRequest(
            "tools/list", tool: nil, tier: nil, outcome: .ok, code: nil, in: context, requestID: requestID,
            elapsed: elapsed)
    }

    /// The request's `mcp.request` line: its ids as the audit trail spells them (`request_id`,
    /// `session`, `lease`, `claim_fingerprint`...), what was asked and how it ended. Built only
    /// when info is logged (the metadata is an autoclosure).
    private func logRequest(
        _ method: String, tool: String?, tier: String?, outcome: Outcome, code: String?, in context: CallContext,
        requestID: String?, elapsed: Duration
    ) {
        logger.info(
            "mcp.request",
            metadata: {
                var metadata: Logger.Metadata = [
                    "mcp.method.name": .string(method),
                    "outcome": .string(outcome.rawValue),
                    "duration_ms": .stringConvertible(
                        (LeaseholdMetrics.seconds(elapsed) * 1_000_000).rounded() / 1000),
                    "tenant": .string(context.session.tenantID),
                    "actor": .string(context.session.actorID),
                    "workspace": .string(context.session.workspaceID),
                    "session": .string(context.session.id),
                    "lease": .string(context.session.lease.id),
                    "claim_fingerprint": .string(context.claim.fingerprint),
                    "mcp.session.id": .string(context.connectionID),
                ]
                // The requested name is caller-supplied: escaped and bounded as the audit record has it.
                if let tool { metadata["gen_ai.tool.name"] = .string(ToolName.display(tool)) }
                if let tier { metadata["tier"] = .string(tier) }
                if let code { metadata["code"] = .string(code) }
                if let requestID { metadata["request_id"] = .string(requestID) }
                // The request's trace, when it is traced (hex, as trace backends show it).
                if let traceID = context.span?.context.otelTraceID { metadata["trace_id"] = .string(traceID) }
                return metadata
            }())
    }

    /// The tool's name when the catalog has it; `_unknown` for a name a caller made up, so made-up
    /// names cannot grow the number of series without bound.
    func metricToolLabel(_ tool: String) -> String {
        if tool == BuiltinTools.searchTools || tool == BuiltinTools.executeTool { return tool }
        return resolver.catalog.tool(named: tool) != nil ? tool : "_unknown"
    }
}
