import Foundation
import JWTKit

extension SessionClaim: JWTPayload {
    /// Registered-claim checks happen in ``ClaimVerifier`` (with an injectable clock and typed
    /// refusals); jwt-kit is used here only to sign.
    public func verify(using algorithm: some JWTAlgorithm) async throws {}
}

/// Signs session claims with the key set's active key (jwt-kit).
public struct ClaimMinter: Sendable {
    private let key: ResolvedKey
    /// The issuer and audience written into claims.
    public let policy: ClaimPolicy

    /// Creates a minter; throws when the key set has no key that can sign.
    public init(keySet: KeySet, policy: ClaimPolicy) async throws {
        guard let signing = keySet.signingKey, signing.canSign else {
            throw KeySetError("the key set has no key with private material to sign claims")
        }
        self.key = try await ResolvedKey(signing)
        self.policy = policy
    }

    /// The `kid` claims are signed with.
    public var keyID: String { key.key.kid }

    /// Signs `claim`, setting `typ: session-claim+jwt` and the key's `kid` and `alg`.
    public func sign(_ claim: SessionClaim) async throws -> String {
        var header = JWTHeader()
        header.typ = ClaimPolicy.tokenType
        header.alg = key.key.alg.rawValue
        return try await key.collection.sign(claim, kid: JWKIdentifier(string: key.key.kid), header: header)
    }

    /// Builds and signs a claim for a session's current lease; the claim never outlives the lease.
    public func mint(
        sessionID: String, tenantID: String, actorID: String, workspaceID: String, leaseID: String,
        leaseExpiresAt: Date, ttl: Duration, allowedTools: [String]? = nil, approvalFingerprint: String? = nil,
        now: Date = Date()
    ) async throws -> String {
        let issuedAt = Int64(now.timeIntervalSince1970)
        let lifetime = min(ttl.components.seconds, policy.maximumLifetime.components.seconds)
        let expiry = min(issuedAt + max(lifetime, 1), Int64(leaseExpiresAt.timeIntervalSince1970))
        let claim = SessionClaim(
            iss: policy.issuer, aud: .one(policy.audience), iat: issuedAt, nbf: issuedAt,
            exp: max(expiry, issuedAt + 1),
            jti: RandomID.make(prefix: "clm"), sessionID: sessionID, tenantID: tenantID, actorID: actorID,
            workspaceID: workspaceID, leaseID: leaseID, allowedTools: allowedTools)
        var signed = claim
        signed.approvalFingerprint = approvalFingerprint
        return try await sign(signed)
    }
}
