import Foundation
import Synchronization

/// Stage 1 of a call: a claim's text becomes a verified claim.
///
/// The signature and the claim's fixed fields are checked once per token text and the result is
/// kept; the time checks (`exp`, `nbf`, `iat`) run again on every use, so a cached claim still ends
/// at its `exp`. Nothing about the session is decided here: that is ``SessionBinder``'s stage.
final class ClaimAuthenticator: Sendable {
    let verifier: ClaimVerifier
    private let now: @Sendable () -> Date
    /// Verified claims by token text. Bounded: when full, expired entries go first, then all of
    /// them (a forgotten claim is verified again, never trusted without it).
    private let verified = Mutex<[String: VerifiedClaim]>([:])
    let limit: Int

    init(verifier: ClaimVerifier, limit: Int = 50_000, now: @escaping @Sendable () -> Date) {
        self.verifier = verifier
        self.limit = limit
        self.now = now
    }

    /// The verified claim of `token`.
    ///
    /// - Throws: ``Refusal`` `claim_missing` for no token, otherwise the verifier's claim codes.
    func verify(_ token: String?) throws(Refusal) -> VerifiedClaim {
        guard let token, !token.isEmpty else {
            throw Refusal(.claimMissing, "no session claim was presented (HTTP: Authorization: Bearer <claim>)")
        }
        if let cached = verified.withLock({ $0[token] }) {
            try verifier.checkTime(cached.claim)
            return cached
        }
        let claim = try verifier.verify(token)
        verified.withLock { cache in
            if cache.count >= limit {
                let cutoff = Int64(now().timeIntervalSince1970)
                cache = cache.filter { $0.value.claim.exp > cutoff }
                if cache.count >= limit { cache.removeAll() }
            }
            cache[token] = claim
        }
        return claim
    }

    /// What a token whose signature already held says about itself, for the audit record of its
    /// refusal; nil for a token never verified (its contents are not to be believed).
    func alreadyVerified(_ token: String) -> VerifiedClaim? {
        verified.withLock { $0[token] }
    }
}
