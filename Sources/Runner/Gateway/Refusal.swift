import Failures

/// A decision not to serve a request: a stable machine-readable code plus a sentence an operator
/// can act on ("tool shell.run is denied by session pattern shell.*"); what failed underneath (a
/// store's error, say) is its ``CodedError/cause``, for the runner's log only.
public typealias Refusal = CodedError<RefusalCode>

/// Stable refusal codes. Clients and the audit trail rely on their spelling.
public struct RefusalCode: ErrorCode {
    /// The wire form.
    public let rawValue: String
    private init(_ rawValue: String) { self.rawValue = rawValue }

    /// A code a ``ToolExecutor`` reported in ``ToolOutcome/failed(code:message:)`` (the pool's are
    /// ``SandboxError/Code``'s, an HTTP upstream's ``UpstreamFailure``'s), passed on unchanged.
    init(reported rawValue: String) { self.rawValue = rawValue }

    /// No claim was presented.
    public static let claimMissing = RefusalCode("claim_missing")
    /// The claim is malformed, wrongly signed, of an unknown key, or has a wrong typ/iss/aud/alg.
    public static let claimInvalid = RefusalCode("claim_invalid")
    /// The claim's `exp` has passed.
    public static let claimExpired = RefusalCode("claim_expired")
    /// The claim's `nbf` or `iat` lies in the future.
    public static let claimNotYetValid = RefusalCode("claim_not_yet_valid")
    /// `exp - iat` exceeds the configured maximum lifetime.
    public static let claimLifetimeExceeded = RefusalCode("claim_lifetime_exceeded")
    /// The claim was first bound to another MCP connection.
    public static let claimReplayed = RefusalCode("claim_replayed")
    /// The claim names a session that does not exist.
    public static let sessionNotFound = RefusalCode("session_not_found")
    /// The session was revoked.
    public static let sessionRevoked = RefusalCode("session_revoked")
    /// The session's lease has expired or was revoked.
    public static let leaseExpired = RefusalCode("lease_expired")
    /// The claim's lease was replaced by a renewal.
    public static let leaseReplaced = RefusalCode("lease_replaced")
    /// The claim's tenant, actor or workspace differs from its session's, or the connection
    /// belongs to another session.
    public static let boundaryMismatch = RefusalCode("boundary_mismatch")
    /// The tool does not exist or is not visible to this session (the two are indistinguishable).
    public static let toolNotInScope = RefusalCode("tool_not_in_scope")
    /// The session's workspace is no longer registered.
    public static let workspaceNotFound = RefusalCode("workspace_not_found")
    /// The arguments are not what the tool accepts.
    public static let invalidArguments = RefusalCode("invalid_arguments")
    /// The workspace is registered read-only and the tool's tier may change it.
    public static let workspaceReadOnly = RefusalCode("workspace_read_only")
    /// The call's worker exceeded a limit of its tier and was killed (the result names which).
    public static let limitExceeded = RefusalCode("limit_exceeded")
    /// The tool's tier requires a human's approval of this exact call; none is usable yet.
    public static let approvalRequired = RefusalCode("approval_required")
    /// An approval was presented or matched but cannot serve this call (another session, tool,
    /// workspace or arguments; expired; used up; another lease).
    public static let approvalInvalid = RefusalCode("approval_invalid")
    /// A human denied this exact call.
    public static let approvalDenied = RefusalCode("approval_denied")
    /// The call needs approval and its arguments are larger than an approval carries
    /// (``Approval/maximumArgumentsBytes``); nothing was stored.
    public static let approvalArgumentsTooLarge = RefusalCode("approval_arguments_too_large")
    /// A `requestState` (MCP 2026-07-28) that this runner did not sign, or that was changed, or
    /// that names another session, lease, claim binding, tool or arguments.
    public static let requestStateInvalid = RefusalCode("request_state_invalid")
    /// A `requestState` past its expiry: start the call again.
    public static let requestStateExpired = RefusalCode("request_state_expired")
    /// A `requestState` whose one retry was already accepted.
    public static let requestStateReplayed = RefusalCode("request_state_replayed")
    /// The tool's tier cannot run here (not defined by the deciding policy, or a kernel feature it
    /// requires is missing).
    public static let tierUnavailable = RefusalCode("tier_unavailable")
    /// The audit record for the call could not be written, so the call was not run.
    public static let auditUnavailable = RefusalCode("audit_unavailable")
    /// The call would take the tenant's or the workspace's disk usage past its quota (bytes or
    /// files), or the workspace is frozen over it, or its filesystem is full; only that
    /// tenant's growing calls are refused.
    public static let quotaExceeded = RefusalCode("quota_exceeded")

    /// Every code the gateway refuses with (docs/operations.md's table is checked against it).
    public static let allCases: [RefusalCode] = [
        .claimMissing, .claimInvalid, .claimExpired, .claimNotYetValid, .claimLifetimeExceeded, .claimReplayed,
        .sessionNotFound, .sessionRevoked, .leaseExpired, .leaseReplaced, .boundaryMismatch, .toolNotInScope,
        .workspaceNotFound, .invalidArguments, .workspaceReadOnly, .limitExceeded, .approvalRequired,
        .approvalInvalid, .approvalDenied, .approvalArgumentsTooLarge, .requestStateInvalid, .requestStateExpired,
        .requestStateReplayed, .tierUnavailable, .auditUnavailable, .quotaExceeded,
    ]
}
