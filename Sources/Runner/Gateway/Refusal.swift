/// A decision not to serve a request: a stable machine-readable code plus a sentence an operator
/// can act on ("tool shell.run is denied by session pattern shell.*").
public struct Refusal: Error, Sendable, Hashable, CustomStringConvertible {
    /// Stable refusal codes. Clients and the audit trail rely on their spelling.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        /// The wire form.
        public let rawValue: String
        /// Creates a code from its wire form.
        public init(_ rawValue: String) { self.rawValue = rawValue }

        /// No claim was presented.
        public static let claimMissing = Code("claim_missing")
        /// The claim is malformed, wrongly signed, of an unknown key, or has a wrong typ/iss/aud/alg.
        public static let claimInvalid = Code("claim_invalid")
        /// The claim's `exp` has passed.
        public static let claimExpired = Code("claim_expired")
        /// The claim's `nbf` or `iat` lies in the future.
        public static let claimNotYetValid = Code("claim_not_yet_valid")
        /// `exp - iat` exceeds the configured maximum lifetime.
        public static let claimLifetimeExceeded = Code("claim_lifetime_exceeded")
        /// The claim was first bound to another MCP connection.
        public static let claimReplayed = Code("claim_replayed")
        /// The claim names a session that does not exist.
        public static let sessionNotFound = Code("session_not_found")
        /// The session was revoked.
        public static let sessionRevoked = Code("session_revoked")
        /// The session's lease has expired or was revoked.
        public static let leaseExpired = Code("lease_expired")
        /// The claim's lease was replaced by a renewal.
        public static let leaseReplaced = Code("lease_replaced")
        /// The claim's tenant, actor or workspace differs from its session's, or the connection
        /// belongs to another session.
        public static let boundaryMismatch = Code("boundary_mismatch")
        /// The tool does not exist or is not visible to this session (the two are indistinguishable).
        public static let toolNotInScope = Code("tool_not_in_scope")
        /// The session's workspace is no longer registered.
        public static let workspaceNotFound = Code("workspace_not_found")
        /// The arguments are not what the tool accepts.
        public static let invalidArguments = Code("invalid_arguments")
        /// The workspace is registered read-only and the tool's tier may change it.
        public static let workspaceReadOnly = Code("workspace_read_only")
        /// The call's worker exceeded a limit of its tier and was killed (the result names which).
        public static let limitExceeded = Code("limit_exceeded")
        /// The tool's tier requires a human's approval of this exact call; none is usable yet.
        public static let approvalRequired = Code("approval_required")
        /// An approval was presented or matched but cannot serve this call (another session, tool,
        /// workspace or arguments; expired; used up; another lease).
        public static let approvalInvalid = Code("approval_invalid")
        /// A human denied this exact call.
        public static let approvalDenied = Code("approval_denied")
        /// The call needs approval and its arguments are larger than an approval carries
        /// (``Approval/maximumArgumentsBytes``); nothing was stored.
        public static let approvalArgumentsTooLarge = Code("approval_arguments_too_large")
        /// A `requestState` (MCP 2026-07-28) that this runner did not sign, or that was changed, or
        /// that names another session, lease, claim binding, tool or arguments.
        public static let requestStateInvalid = Code("request_state_invalid")
        /// A `requestState` past its expiry: start the call again.
        public static let requestStateExpired = Code("request_state_expired")
        /// A `requestState` whose one retry was already accepted.
        public static let requestStateReplayed = Code("request_state_replayed")
        /// The tool's tier cannot run here (not defined by the deciding policy, or a kernel feature it
        /// requires is missing).
        public static let tierUnavailable = Code("tier_unavailable")
        /// The audit record for the call could not be written, so the call was not run.
        public static let auditUnavailable = Code("audit_unavailable")
        /// The call would take the tenant's or the workspace's disk usage past its quota (bytes or
        /// files), or the workspace is frozen over it, or its filesystem is full; only that
        /// tenant's growing calls are refused.
        public static let quotaExceeded = Code("quota_exceeded")

        /// Every code the gateway refuses with (docs/operations.md's table is checked against it).
        public static let allCases: [Code] = [
            .claimMissing, .claimInvalid, .claimExpired, .claimNotYetValid, .claimLifetimeExceeded, .claimReplayed,
            .sessionNotFound, .sessionRevoked, .leaseExpired, .leaseReplaced, .boundaryMismatch, .toolNotInScope,
            .workspaceNotFound, .invalidArguments, .workspaceReadOnly, .limitExceeded, .approvalRequired,
            .approvalInvalid, .approvalDenied, .approvalArgumentsTooLarge, .tierUnavailable, .auditUnavailable,
            .quotaExceeded,
        ]

        /// The wire form.
        public var description: String { rawValue }
    }

    /// What was refused, as a code.
    public let code: Code
    /// Why, in words an operator can act on.
    public let message: String
    /// What failed underneath (a store's error, say), kept for the runner's log only: it is in
    /// neither ``message`` nor ``description``, so it never reaches a client, a tenant admin or
    /// the audit trail a tenant can read.
    public let cause: ErrorCause?

    /// Creates a refusal; `cause` goes to the runner's log, never to the client.
    public init(_ code: Code, _ message: String, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause.map(ErrorCause.init)
    }

    /// Two refusals are the same when they say the same; the cause is for logs.
    public static func == (lhs: Refusal, rhs: Refusal) -> Bool {
        lhs.code == rhs.code && lhs.message == rhs.message
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(code)
        hasher.combine(message)
    }

    /// `code: message`, the form sent in JSON-RPC error messages.
    public var description: String { "\(code.rawValue): \(message)" }
}

/// The error underneath a refusal or an admin API error, as text for the runner's log (the
/// error itself may not be `Sendable`; its words are all a log needs).
public struct ErrorCause: Sendable, CustomStringConvertible {
    /// The underlying error, described.
    public let description: String

    /// Keeps `error`'s description.
    public init(_ error: any Error) {
        description = String(describing: error)
    }
}
