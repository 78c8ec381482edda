import Foundation
import MCP

/// Stage 4 of a call: the approval gate. A tier that requires approval runs only with a matching,
/// unexpired, unused grant bound to the session, lease, actor, tool, workspace and arguments
/// digest; without one, a pending approval is asked for this exact call and the call is refused
/// `approval_required`.
struct ApprovalGate: Sendable {
    let store: any LeaseholdStore
    let recorder: CallRecorder
    let metrics: LeaseholdMetrics
    let now: @Sendable () -> Date

    enum ApprovalCheck {
        case proceed(fingerprint: String)
        case refuse(CallAnswer)
    }

    /// Decides whether an approval lets this exact call run, consuming one use if so.
    ///
    /// A claim's `approval_fingerprint`, when present, must name a grant of the claim's own session
    /// for this exact call. Otherwise the session's grants for this exact call (same tool, workspace
    /// and arguments digest) are tried, oldest first. Anything that looks like reuse of a grant it
    /// cannot serve is refused `approval_invalid` and audited as a replay.
    func check(_ call: ToolDispatch.Prepared, in context: CallContext, requestID: String?) async -> ApprovalCheck {
        let tool = call.tool
        let workspace = call.workspace.workspaceID
        let digest = call.digest
        let arguments = call.arguments
        // An approval stores the arguments whole for the approver to read: bounded here, before
        // anything is stored, rather than by the transport's body limit (4 MiB over HTTP).
        guard arguments.count <= Approval.maximumArgumentsBytes else {
            return .refuse(
                await recorder.refused(
                    Refusal(
                        .approvalArgumentsTooLarge,
                        "\(ToolName.display(tool)) needs a human's approval and its arguments are \(arguments.count) bytes "
                            + "of canonical JSON; approvals carry at most \(Approval.maximumArgumentsBytes) bytes so an "
                            + "approver can read all of them. Pass less inline (e.g. put the data in a workspace file)"),
                    tool: tool, in: context, requestID: requestID, digest: digest))
        }
        let session = context.session
        let key = Approval.bindingKey(session: session.id, tool: tool, workspace: workspace, argumentsDigest: digest)
        let now = self.now()
        func replay(_ message: String, approval: Approval?, extra: [String: Value] = [:]) async -> ApprovalCheck {
            let refusal = Refusal(.approvalInvalid, message)
            guard
                await recorder.refusal(
                    refusal, kind: "approval.replay", tool: tool, in: context, requestID: requestID, digest: digest,
                    approval: approval)
            else {
                return .refuse(.refusal(Refusal(.auditUnavailable, "the call was not run")))
            }
            return .refuse(.refusal(refusal, extra: extra))
        }
        do {
            var candidates: [Approval]
            if let named = context.claim.claim.approvalFingerprint {
                guard let approval = try await store.approval(fingerprint: named), approval.sessionID == session.id
                else {
                    return await replay(
                        "the claim's approval_fingerprint names no approval of session \(session.id)", approval: nil)
                }
                guard approval.bindingKey == key else {
                    return await replay(
                        "approval \(approval.id) was granted for another call (tool, workspace or arguments differ)",
                        approval: approval)
                }
                candidates = [approval]
            } else {
                candidates = try await store.approvals(bindingKey: key)
            }
            for candidate in candidates where candidate.isUsable(at: now, by: session) {
                // Consumed under the store's write lock, re-checked there: two concurrent retries
                // cannot share one use (nil when another call took the last one first).
                if let consumed = try await store.consumeApproval(
                    id: candidate.id, sessionID: session.id, leaseID: session.lease.id, actorID: session.actorID,
                    at: now)
                {
                    var event = recorder.event("approval.used", tool: tool, in: context, requestID: requestID)
                    event.decision = "allowed"
                    event.argumentsDigest = digest
                    event.approvalFingerprint = consumed.fingerprint
                    event.detail = "approval \(consumed.id), \(consumed.usesLeft ?? 0) use(s) left"
                    if (try? await recorder.audit.append(event)) == nil {
                        return .refuse(.refusal(Refusal(.auditUnavailable, "the call was not run")))
                    }
                    return .proceed(fingerprint: consumed.fingerprint)
                }
            }
            if let pending = candidates.first(where: { $0.status == .pending && $0.leaseID == session.lease.id }) {
                return .refuse(
                    await recorder.refused(
                        requiredRefusal(pending), tool: tool, in: context, requestID: requestID, digest: digest,
                        approval: pending, extra: requiredExtra(pending)))
            }
            if let denied = candidates.last(where: { $0.status == .denied && $0.leaseID == session.lease.id }) {
                return .refuse(
                    await recorder.refused(
                        Refusal(
                            .approvalDenied,
                            "approval \(denied.id) for this exact call was denied by \(denied.decidedBy ?? "a human")"),
                        tool: tool, in: context, requestID: requestID, digest: digest, approval: denied,
                        extra: ["approval_id": .string(denied.id)]))
            }
            if let spent = candidates.last(where: { $0.status == .granted || $0.status == .exhausted }) {
                let why =
                    spent.leaseID != session.lease.id
                    ? "was granted under an earlier lease"
                    : spent.actorID != session.actorID
                        ? "was granted for another actor's call"
                        : spent.status == .exhausted ? "has no uses left" : "has expired"
                if spent.status == .granted && spent.leaseID == session.lease.id && spent.actorID == session.actorID {
                    metrics.approval("expired")
                }
                let fresh = try await ask(
                    tool: tool, workspace: workspace, digest: digest, arguments: arguments, in: context,
                    requestID: requestID)
                return await replay(
                    "approval \(spent.id) \(why); a new approval \(fresh.id) was requested", approval: spent,
                    extra: ["approval_id": .string(fresh.id), "summary": .string(fresh.summary)])
            }
            return .refuse(
                required(
                    try await ask(
                        tool: tool, workspace: workspace, digest: digest, arguments: arguments, in: context,
                        requestID: requestID)))
        } catch {
            return .refuse(
                await recorder.refused(
                    Refusal(.approvalRequired, "the approval store is unavailable", cause: error), tool: tool, in: context,
                    requestID: requestID, digest: digest))
        }
    }

    func requiredRefusal(_ approval: Approval) -> Refusal {
        Refusal(
            .approvalRequired,
            "\(approval.tool) needs a human's approval of this exact call; ask for approval \(approval.id) to be granted, then retry the same call"
        )
    }

    func requiredExtra(_ approval: Approval) -> [String: Value] {
        ["approval_id": .string(approval.id), "summary": .string(approval.summary)]
    }

    func required(_ approval: Approval) -> CallAnswer {
        .refusal(requiredRefusal(approval), extra: requiredExtra(approval))
    }

    /// Records a pending approval for this exact call and audits the request.
    func ask(
        tool: String, workspace: String, digest: String, arguments: [UInt8], in context: CallContext,
        requestID: String?
    ) async throws -> Approval {
        // The approval carries the canonical arguments whole (the summary is only a preview that
        // says when it is cut); an approver grants exactly the text whose SHA-256 is the digest.
        let approval = Approval(
            id: RandomID.make(prefix: "apr"), tenantID: context.session.tenantID, sessionID: context.session.id,
            leaseID: context.session.lease.id, actorID: context.session.actorID, workspaceID: workspace, tool: tool,
            arguments: String(decoding: arguments, as: UTF8.self), createdAt: now())
        // Canonical JSON is UTF-8, so the text hashes to the digest the call is checked against; if it
        // ever did not, the approval could never match its call, so refuse rather than store it.
        guard approval.argumentsDigest == digest else {
            throw Refusal(.invalidArguments, "the call's arguments are not valid UTF-8 JSON")
        }
        var event = recorder.event("approval.asked", tool: tool, in: context, requestID: requestID)
        event.argumentsDigest = digest
        event.approvalFingerprint = approval.fingerprint
        event.detail = "approval \(approval.id)"
        try await recorder.audit.append(event)
        try await store.insertApproval(approval)
        metrics.approval("requested")
        return approval
    }

}
