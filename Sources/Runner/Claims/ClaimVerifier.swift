import Crypto
import Foundation
import JWTKit

/// The rules a claim must satisfy beyond its signature.
public struct ClaimPolicy: Sendable, Hashable {
    /// The required `iss`.
    public var issuer: String
    /// The audience that must appear in `aud`.
    public var audience: String
    /// The longest `exp - iat` accepted.
    public var maximumLifetime: Duration
    /// Tolerated clock difference for `exp`, `nbf` and `iat`.
    public var clockSkew: Duration

    /// The required `typ` header.
    public static let tokenType = "session-claim+jwt"

    /// Creates a policy; defaults: 15 minutes maximum lifetime, 30 s skew.
    public init(
        issuer: String = "leasehold", audience: String = "leasehold", maximumLifetime: Duration = .seconds(900),
        clockSkew: Duration = .seconds(30)
    ) {
        self.issuer = issuer
        self.audience = audience
        self.maximumLifetime = maximumLifetime
        self.clockSkew = clockSkew
    }
}

/// Verifies session claims: structure, header (`alg` allow-list, `kid`, `typ`, `crit`), signature
/// (jwt-kit algorithms), then `iss`, `aud`, `exp`, `nbf`, `iat`, lifetime, `jti`, and key-tenant binding.
///
/// Verification is split in two layers so the signature layer can be checked against the
/// Wycheproof JWS vectors on its own.
public struct ClaimVerifier: Sendable {
    private let keys: [String: ResolvedKey]
    /// The rules applied after the signature.
    public let policy: ClaimPolicy
    private let now: @Sendable () -> Date

    /// Creates a verifier over a key set.
    public init(keySet: KeySet, policy: ClaimPolicy, now: @escaping @Sendable () -> Date = { Date() }) async throws {
        try keySet.validate()
        var keys: [String: ResolvedKey] = [:]
        for key in keySet.keys {
            keys[key.kid] = try await ResolvedKey(key)
        }
        self.keys = keys
        self.policy = policy
        self.now = now
    }

    /// The header fields this verifier understands; a `crit` naming anything else is refused.
    static let understoodCritical: Set<String> = []

    /// Checks the compact serialization, the header and the signature; returns the payload bytes.
    ///
    /// - Throws: ``Refusal`` with code `claim_invalid` naming the first failed check.
    public func verifySignature(_ token: String) throws(Refusal) -> (payload: [UInt8], key: ClaimKey) {
        let (payload, key, _) = try verifySignatureAndHeader(token)
        return (payload, key)
    }

    private func verifySignatureAndHeader(_ token: String) throws(Refusal) -> (
        payload: [UInt8], key: ClaimKey, header: ClaimHeader
    ) {
        guard token.utf8.count <= 8192 else { throw Refusal(.claimInvalid, "claim is longer than 8192 bytes") }
        // Split on bytes: splitting the String would segment grapheme clusters, a fifth of the cost
        // of verifying a claim, for a format that is ASCII or invalid.
        let parts = token.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false).map {
            Substring($0)
        }
        guard parts.count == 3 else {
            throw Refusal(.claimInvalid, "claim is not a compact JWS (expected three dot-separated parts)")
        }
        guard let headerBytes = Base64URL.decode(parts[0]) else {
            throw Refusal(.claimInvalid, "claim header is not canonical base64url")
        }
        guard let payloadBytes = Base64URL.decode(parts[1]) else {
            throw Refusal(.claimInvalid, "claim payload is not canonical base64url")
        }
        guard let signature = Base64URL.decode(parts[2]) else {
            throw Refusal(.claimInvalid, "claim signature is not canonical base64url")
        }
        let header: ClaimHeader
        do {
            header = try JSONDecoder().decode(ClaimHeader.self, from: Data(headerBytes))
        } catch {
            throw Refusal(.claimInvalid, "claim header is not a JSON object with string alg, kid and typ")
        }
        guard let alg = header.alg, let algorithm = ClaimKey.Algorithm(rawValue: alg) else {
            throw Refusal(
                .claimInvalid, "claim algorithm \(header.alg ?? "(missing)") is not allowed (allowed: EdDSA, HS256)")
        }
        if header.jwk != nil || header.jku != nil || header.x5u != nil || header.x5c != nil {
            throw Refusal(
                .claimInvalid,
                "claim header embeds or points at a key (jwk/jku/x5u/x5c); keys are configured server-side only")
        }
        if let critical = header.crit {
            let unknown = critical.filter { !Self.understoodCritical.contains($0) }
            guard unknown.isEmpty, !critical.isEmpty else {
                throw Refusal(.claimInvalid, "claim header marks unsupported extensions as critical: \(critical)")
            }
        }
        guard let kid = header.kid else { throw Refusal(.claimInvalid, "claim header has no kid") }
        guard let resolved = keys[kid] else { throw Refusal(.claimInvalid, "claim kid \(kid) is not a known key") }
        guard resolved.key.alg == algorithm else {
            throw Refusal(
                .claimInvalid,
                "claim algorithm \(alg) does not match key \(kid), which only verifies \(resolved.key.alg.rawValue)")
        }
        let signingInput = Array(token.utf8.prefix(parts[0].utf8.count + 1 + parts[1].utf8.count))
        let valid: Bool
        do {
            valid = try resolved.algorithm.verify(signature, signs: signingInput)
        } catch {
            valid = false
        }
        guard valid else { throw Refusal(.claimInvalid, "claim signature does not verify with key \(kid)") }
        return (payloadBytes, resolved.key, header)
    }

    /// Fully verifies a claim for use on the call path.
    public func verify(_ token: String) throws(Refusal) -> VerifiedClaim {
        let (payloadBytes, key, header) = try verifySignatureAndHeader(token)
        guard header.typ == ClaimPolicy.tokenType else {
            throw Refusal(
                .claimInvalid, "claim typ must be \(ClaimPolicy.tokenType), got \(header.typ ?? "(missing)")")
        }
        let claim: SessionClaim
        do {
            claim = try JSONDecoder().decode(SessionClaim.self, from: Data(payloadBytes))
        } catch {
            throw Refusal(
                .claimInvalid,
                "claim payload lacks a required field or has a wrong type (iss, aud, iat, nbf, exp, jti, session_id, "
                    + "tenant_id, actor_id, workspace_id, lease_id)")
        }
        try check(claim, key: key)
        return VerifiedClaim(claim: claim, fingerprint: Digest.sha256Hex(token.utf8), keyID: key.kid)
    }

    private func check(_ claim: SessionClaim, key: ClaimKey) throws(Refusal) {
        guard claim.iss == policy.issuer else {
            throw Refusal(.claimInvalid, "claim issuer \(claim.iss) is not the configured issuer \(policy.issuer)")
        }
        guard claim.aud.contains(policy.audience) else {
            throw Refusal(.claimInvalid, "claim audience does not include \(policy.audience)")
        }
        guard !claim.jti.isEmpty, claim.jti.utf8.count <= 128 else {
            throw Refusal(.claimInvalid, "claim jti must be 1-128 bytes")
        }
        if let tenant = key.tenantID, tenant != claim.tenantID {
            throw Refusal(.claimInvalid, "claim key \(key.kid) may only sign claims of tenant \(tenant)")
        }
        guard claim.exp > claim.iat else { throw Refusal(.claimInvalid, "claim exp must be after iat") }
        // The times are whatever Int64s the signer chose; trapping arithmetic here would let any key
        // holder (one tenant's orchestrator key included) crash the runner for every tenant.
        let maximum = policy.maximumLifetime.components.seconds
        let (lifetime, overflow) = claim.exp.subtractingReportingOverflow(claim.iat)
        guard !overflow, lifetime <= maximum else {
            let lives = overflow ? "longer than \(Int64.max) s" : "\(lifetime) s"
            throw Refusal(.claimLifetimeExceeded, "claim lives \(lives), more than the maximum \(maximum) s")
        }
        try checkTime(claim)
    }

    /// The time-dependent checks (`exp`, `nbf`, `iat` against now, with skew); run on every use.
    public func checkTime(_ claim: SessionClaim) throws(Refusal) {
        let now = Int64(self.now().timeIntervalSince1970)
        let skew = policy.clockSkew.components.seconds
        // Skew is applied to `now`, never to the claim's times (which may sit at the ends of
        // Int64), and saturates, so no claim and no configured skew can trap.
        let earliest = now.subtractingSaturating(skew)
        let latest = now.addingSaturating(skew)
        guard claim.exp > earliest else {
            throw Refusal(
                .claimExpired, "claim expired at \(claim.exp) (now \(now)); ask the orchestrator for a fresh claim")
        }
        guard claim.nbf <= latest else {
            throw Refusal(.claimNotYetValid, "claim is not valid before \(claim.nbf) (now \(now))")
        }
        guard claim.iat <= latest else {
            throw Refusal(.claimNotYetValid, "claim was issued in the future (iat \(claim.iat), now \(now))")
        }
    }
}

extension Int64 {
    fileprivate func addingSaturating(_ other: Int64) -> Int64 {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? (other > 0 ? .max : .min) : sum
    }

    fileprivate func subtractingSaturating(_ other: Int64) -> Int64 {
        let (difference, overflow) = subtractingReportingOverflow(other)
        return overflow ? (other > 0 ? .min : .max) : difference
    }
}

/// The protected header fields the verifier looks at.
struct ClaimHeader: Decodable {
    let alg: String?
    let kid: String?
    let typ: String?
    let crit: [String]?
    let jwk: JSONAny?
    let jku: JSONAny?
    let x5u: JSONAny?
    let x5c: JSONAny?
}

/// Accepts any JSON value; used only to detect the presence of a header field.
struct JSONAny: Decodable {
    init(from decoder: any Decoder) throws {}
}
