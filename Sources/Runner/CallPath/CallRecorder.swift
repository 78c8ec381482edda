import Foundation
import Logging
import MCP
import Sandbox

/// Stages 5 and 7 of a call: its records in the audit trail.
///
/// The intent record is committed before the tool runs (a tool never runs without it); the
/// outcome record follows the execution and names its intent. Both are as durable as the tier's
/// `audit_sync` says.
/// Every refusal is recorded with its code (invariant 9). A record that cannot be written stops
/// the call: the caller gets `audit_unavailable`.
struct CallRecorder: Sendable {
    let audit: AuditLog
    let logger: Logger

    /// An event carrying the request's session, claim and tool.
    func event(_ kind: String, tool: String, in context: CallContext, requestID: String?) -> AuditEvent {
        var event = AuditEvent(kind)
        event.tenant = context.session.tenantID
        event.actor = context.session.actorID
        event.session = context.session.id
        event.lease = context.session.lease.id
        event.claimFingerprint = context.claim.fingerprint
        event.approvalFingerprint = context.claim.claim.approvalFingerprint
        event.workspace = context.session.workspaceID
        // The requested name is caller-supplied: shown escaped and bounded unless it is a valid name.
        event.tool = ToolName.display(tool)
        event.requestID = requestID
        return event
    }

    /// Commits the record a call is allowed on (`call.intent`, `call.cached`, `call.builtin`).
    ///
    /// - Throws: ``Refusal`` `audit_unavailable`; the call must not go on.
    @discardableResult
    func commit(_ event: AuditEvent, sync: AuditSync = .full, otherwise: String = "the call was not run")
        async throws(Refusal) -> Int64
    {
        do throws(AuditUnavailable) {
            return try await audit.append(event, sync: sync)
        } catch {
            // The database's own words were logged where the write failed; the caller gets the sentence.
            throw Refusal(.auditUnavailable, "\(error.message); \(otherwise)")
        }
    }

    /// Records how a call that ran ended; `intent` is its intent record, committed as `intentSeq`,
    /// which the outcome names. A `full` outcome is committed and fsynced before this returns; a
    /// `batched` one is queued for the writer's next commit and does not hold the response (a crash
    /// before that commit leaves the call reported as "outcome unknown", never silently missing).
    ///
    /// - Throws: ``Refusal`` `audit_unavailable` when the record cannot be written (for `batched`:
    ///   when the log already refuses writes): the call ran, but its result is withheld rather
    ///   than given without its record.
    func outcome(
        of intent: AuditEvent, intentSeq: Int64, execution: ToolExecution, elapsed: Duration, sync: AuditSync
    ) async throws(Refusal) {
        var event = intent
        event.event = "call.outcome"
        event.time = nil
        event.durationMs =
            Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
        event.workerID = execution.workerID
        event.isolation = execution.isolation.rawValue
        switch execution.outcome {
        case .completed(let result, let isError):
            event.outcome = isError ? "error" : "completed"
            // A tool's own refusal (path_outside_workspace, hard_link, ...) is audited with its
            // code like every other refusal (invariant 9).
            if isError { event.code = ResultEncoder.errorCode(in: result) }
        case .limitExceeded(let limit, _, _):
            event.outcome = "limit_exceeded"
            event.code = Refusal.Code.limitExceeded.rawValue
            event.detail = limit
        case .failed(let code, let message):
            event.outcome = "failed"
            event.code = code
            event.detail = String(message.prefix(512))
        }
        do throws(AuditUnavailable) {
            try await audit.appendOutcome(event, intent: intentSeq, sync: sync)
        } catch {
            throw Refusal(.auditUnavailable, "\(error.message); the call ran but its outcome could not be recorded")
        }
    }

    /// Writes the record of a refused call; false when it could not be written. `detail` defaults
    /// to the refusal's sentence (cut at 512 bytes).
    func refusal(
        _ refusal: Refusal, kind: String = "call.refused", tool: String, in context: CallContext, requestID: String?,
        digest: String? = nil, approval: Approval? = nil, detail: String? = nil, policyVersion: String? = nil
    ) async -> Bool {
        var event = event(kind, tool: tool, in: context, requestID: requestID)
        event.decision = "refused"
        event.code = refusal.code.rawValue
        let text = detail ?? refusal.message
        event.detail = String(text.utf8.prefix(512)) ?? String(text.prefix(128))
        event.argumentsDigest = digest
        event.policyVersion = policyVersion
        if let approval { event.approvalFingerprint = approval.fingerprint }
        return (try? await audit.append(event)) != nil
    }

    /// A refused call: recorded with its code, then answered as a tool error (`audit_unavailable`
    /// is logged, not answered, when even the refusal cannot be recorded: the call is refused
    /// either way).
    func refused(
        _ refusal: Refusal, tool: String, in context: CallContext, requestID: String?, digest: String? = nil,
        approval: Approval? = nil, extra: [String: Value] = [:]
    ) async -> CallAnswer {
        if let cause = refusal.cause {
            logger.warning(
                "call refused on an internal failure",
                metadata: ["code": "\(refusal.code)", "session": "\(context.session.id)", "cause": "\(cause)"])
        }
        if !(await self.refusal(
            refusal, tool: tool, in: context, requestID: requestID, digest: digest, approval: approval))
        {
            logger.error(
                "refusal not audited", metadata: ["code": "\(refusal.code)", "session": "\(context.session.id)"])
        }
        return .refusal(refusal, extra: extra)
    }
}
