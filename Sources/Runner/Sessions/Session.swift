import Foundation

/// The server-side record of one conversation: who, where, what it may use, and its lease.
public struct Session: Codable, Sendable, Hashable {
    /// The session id.
    public var id: String
    /// The tenant that owns it (never changes).
    public var tenantID: String
    /// The actor currently driving it (a hand-off changes it).
    public var actorID: String
    /// The workspace it works in.
    public var workspaceID: String
    /// Universe: one server's tools only.
    public var serverID: String?
    /// Universe: one bundle's tools only.
    public var bundleID: String?
    /// Allow patterns; nil = allow all that survives deny.
    public var allowedToolNames: [String]?
    /// Deny patterns; deny always wins.
    public var deniedToolNames: [String]?
    /// The current lease.
    public var lease: Lease
    /// Default lifetime of claims minted for this session, seconds.
    public var claimTTLSeconds: Int
    /// Default lifetime of a lease, seconds (used by renewals).
    public var leaseTTLSeconds: Int
    /// Creation time.
    public var createdAt: Date
    /// Last change.
    public var updatedAt: Date
    /// Set when revoked; a revoked session accepts nothing.
    public var revokedAt: Date?
    /// Bumped on every change.
    public var version: Int

    enum CodingKeys: String, CodingKey {
        case id, lease, version
        case tenantID = "tenant_id"
        case actorID = "actor_id"
        case workspaceID = "workspace_id"
        case serverID = "server_id"
        case bundleID = "bundle_id"
        case allowedToolNames = "allowed_tool_names"
        case deniedToolNames = "denied_tool_names"
        case claimTTLSeconds = "claim_ttl_seconds"
        case leaseTTLSeconds = "lease_ttl_seconds"
        case createdAt = "created_at"
        case updatedAt = "updated_at"
        case revokedAt = "revoked_at"
    }
}

/// The time window in which a session may hold workers and use claims. A renewal is a new lease.
public struct Lease: Codable, Sendable, Hashable {
    /// The lease id; claims name it.
    public var id: String
    /// When it was issued.
    public var issuedAt: Date
    /// When it ends.
    public var expiresAt: Date
    /// Set when the lease was revoked before its expiry.
    public var revokedAt: Date?

    enum CodingKeys: String, CodingKey {
        case id
        case issuedAt = "issued_at"
        case expiresAt = "expires_at"
        case revokedAt = "revoked_at"
    }

    /// True when the lease is neither expired nor revoked at `now`.
    public func isLive(at now: Date) -> Bool {
        revokedAt == nil && now < expiresAt
    }
}

extension Session {
    /// Who holds the session: its actor in its workspace. A hand-off (PATCH of either) changes it,
    /// and a connection bound for one holder never serves the next.
    public var holder: String { actorID + "/" + workspaceID }
}
