/// The payload of a session claim (`typ: session-claim+jwt`).
///
/// It names the session and the boundaries the orchestrator expects; the server checks every
/// one of them against its own session record and never trusts the claim alone.
public struct SessionClaim: Codable, Sendable, Hashable {
    /// Issuer; must equal the configured issuer.
    public var iss: String
    /// Audience; must equal (or contain) the configured audience.
    public var aud: Audience
    /// Issued-at, seconds since the epoch.
    public var iat: Int64
    /// Not-before, seconds since the epoch.
    public var nbf: Int64
    /// Expiry, seconds since the epoch.
    public var exp: Int64
    /// Unique claim id; replay binding is keyed on it.
    public var jti: String
    /// The session the claim speaks for.
    public var sessionID: String
    /// The tenant the orchestrator believes owns the session.
    public var tenantID: String
    /// The actor (end user) the orchestrator believes drives the session.
    public var actorID: String
    /// The workspace the orchestrator believes the session works in.
    public var workspaceID: String
    /// The lease the claim was minted under.
    public var leaseID: String
    /// Claim-level narrowing; nil means no narrowing at the claim level.
    public var allowedTools: [String]?
    /// The fingerprint of an approval grant this claim carries, if any.
    public var approvalFingerprint: String?

    /// `aud` as a string or an array of strings (RFC 7519 §4.1.3).
    public enum Audience: Codable, Sendable, Hashable {
        /// A single audience.
        case one(String)
        /// Several audiences.
        case many([String])

        /// True when `value` is among the audiences.
        public func contains(_ value: String) -> Bool {
            switch self {
            case .one(let audience): audience == value
            case .many(let audiences): audiences.contains(value)
            }
        }

        /// Decodes a string or an array of strings.
        public init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let one = try? container.decode(String.self) {
                self = .one(one)
            } else {
                self = .many(try container.decode([String].self))
            }
        }

        /// Encodes a string or an array of strings.
        public func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            switch self {
            case .one(let audience): try container.encode(audience)
            case .many(let audiences): try container.encode(audiences)
            }
        }
    }

    enum CodingKeys: String, CodingKey {
        case iss, aud, iat, nbf, exp, jti
        case sessionID = "session_id"
        case tenantID = "tenant_id"
        case actorID = "actor_id"
        case workspaceID = "workspace_id"
        case leaseID = "lease_id"
        case allowedTools = "allowed_tools"
        case approvalFingerprint = "approval_fingerprint"
    }

    /// Creates a claim payload.
    public init(
        iss: String, aud: Audience, iat: Int64, nbf: Int64, exp: Int64, jti: String, sessionID: String,
        tenantID: String, actorID: String, workspaceID: String, leaseID: String, allowedTools: [String]? = nil,
        approvalFingerprint: String? = nil
    ) {
        self.iss = iss
        self.aud = aud
        self.iat = iat
        self.nbf = nbf
        self.exp = exp
        self.jti = jti
        self.sessionID = sessionID
        self.tenantID = tenantID
        self.actorID = actorID
        self.workspaceID = workspaceID
        self.leaseID = leaseID
        self.allowedTools = allowedTools
        self.approvalFingerprint = approvalFingerprint
    }
}

/// A claim that passed signature and registered-claim checks, with the facts the rest of the
/// path needs.
public struct VerifiedClaim: Sendable, Hashable {
    /// The payload.
    public var claim: SessionClaim
    /// SHA-256 of the token text, hex; logged and audited instead of the token.
    public var fingerprint: String
    /// The key id that verified it.
    public var keyID: String
}
