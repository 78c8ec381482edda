import Foundation

/// A human's decision about one exact call: this session, this tool, this workspace, these
/// arguments (by SHA-256 of their canonical JSON), under this lease.
public struct Approval: Codable, Sendable, Hashable {
    /// Where an approval stands.
    public enum Status: String, Codable, Sendable, Hashable {
        /// Asked, not yet decided.
        case pending
        /// Granted: usable until `expiresAt`, `usesLeft` more times.
        case granted
        /// Denied by a human.
        case denied
        /// Granted and used up.
        case exhausted
    }

    /// `apr_...`.
    public let id: String
    /// The tenant.
    public var tenantID: String
    /// The only session that may use it.
    public var sessionID: String
    /// The lease it was asked under; a new lease needs a new approval.
    public var leaseID: String
    /// The actor whose call asked for it.
    public var actorID: String
    /// The workspace of the call.
    public var workspaceID: String
    /// The tool of the call.
    public var tool: String
    /// SHA-256 of the call's canonical JSON arguments.
    public var argumentsDigest: String
    /// One line for the human deciding: tool, workspace, digest, a short rendering of the arguments.
    public var summary: String
    /// Where it stands.
    public var status: Status
    /// When it was asked.
    public var createdAt: Date
    /// Who decided (`operator` or `tenant:<id>`).
    public var decidedBy: String?
    /// When it was decided.
    public var decidedAt: Date?
    /// A grant is usable until then.
    public var expiresAt: Date?
    /// Uses granted.
    public var uses: Int?
    /// Uses left.
    public var usesLeft: Int?

    /// The value a claim's `approval_fingerprint` carries to name this approval (derived from the
    /// id once, and stored with it so API output and store rows carry it).
    public let fingerprint: String

    /// The key of the exact call this approval is for.
    public var bindingKey: String {
        Self.bindingKey(session: sessionID, tool: tool, workspace: workspaceID, argumentsDigest: argumentsDigest)
    }

    /// The key of an exact call.
    public static func bindingKey(session: String, tool: String, workspace: String, argumentsDigest: String) -> String {
        Digest.sha256Hex(Array([session, tool, workspace, argumentsDigest].joined(separator: "\u{0}").utf8))
    }

    /// True when a grant can serve a call of `session` at `now`: same session, lease and actor
    /// (a hand-off to another actor keeps the lease but not the grants), unexpired, uses left.
    public func isUsable(at now: Date, by session: Session) -> Bool {
        isUsable(at: now, sessionID: session.id, leaseID: session.lease.id, actorID: session.actorID)
    }

    /// ``isUsable(at:by:)`` from the session's parts.
    public func isUsable(at now: Date, sessionID: String, leaseID: String, actorID: String) -> Bool {
        status == .granted && self.sessionID == sessionID && self.leaseID == leaseID && self.actorID == actorID
            && (expiresAt.map { now < $0 } ?? false) && (usesLeft ?? 0) > 0
    }

    enum CodingKeys: String, CodingKey {
        case id, tool, summary, status, uses, fingerprint
        case tenantID = "tenant_id"
        case sessionID = "session_id"
        case leaseID = "lease_id"
        case actorID = "actor_id"
        case workspaceID = "workspace_id"
        case argumentsDigest = "arguments_digest"
        case createdAt = "created_at"
        case decidedBy = "decided_by"
        case decidedAt = "decided_at"
        case expiresAt = "expires_at"
        case usesLeft = "uses_left"
    }

    public init(
        id: String, tenantID: String, sessionID: String, leaseID: String, actorID: String, workspaceID: String,
        tool: String, argumentsDigest: String, summary: String, createdAt: Date
    ) {
        self.id = id
        self.fingerprint = Digest.sha256Hex(Array(("leasehold-approval\u{0}" + id).utf8))
        self.tenantID = tenantID
        self.sessionID = sessionID
        self.leaseID = leaseID
        self.actorID = actorID
        self.workspaceID = workspaceID
        self.tool = tool
        self.argumentsDigest = argumentsDigest
        self.summary = summary
        self.status = .pending
        self.createdAt = createdAt
    }
}
