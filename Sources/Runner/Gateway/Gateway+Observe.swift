import Foundation
import Logging
import MCP

// What each MCP request leaves behind besides its audit records: its duration and outcome in
// `/metrics` (``LeaseholdMetrics``).
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
        since started: ContinuousClock.Instant
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
        metrics.operation(
            method: "tools/call", tool: metricToolLabel(tool), tier: tier ?? "none", outcome: outcome.rawValue,
            tenant: context.session.tenantID, seconds: LeaseholdMetrics.seconds(elapsed))
    }

    /// A `tools/list` answered.
    func observeList(in context: CallContext, since started: ContinuousClock.Instant) {
        metrics.operation(
            method: "tools/list", tool: "", tier: "none", outcome: Outcome.ok.rawValue,
            tenant: context.session.tenantID, seconds: LeaseholdMetrics.seconds(ContinuousClock.now - started))
    }

    /// The tool's name when the catalog has it; `_unknown` for a name a caller made up, so made-up
    /// names cannot grow the number of series without bound.
    func metricToolLabel(_ tool: String) -> String {
        if tool == BuiltinTools.searchTools || tool == BuiltinTools.executeTool { return tool }
        return resolver.catalog.tool(named: tool) != nil ? tool : "_unknown"
    }
}
