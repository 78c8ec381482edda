import Foundation
import Runner

/// Figure 1: full claim verification (`ClaimVerifier.verify`: structure, header, signature,
/// iss/aud/exp/nbf/iat/lifetime/jti, fingerprint) for EdDSA and HS256 keys, no cache.
struct ClaimsResult: Encodable, Sendable {
    let alg: String
    let distinctTokens: Int
    let tokenBytes: Int
    let warmup: Int
    let verify: Summary

    enum CodingKeys: String, CodingKey {
        case alg
        case distinctTokens = "distinct_tokens"
        case tokenBytes = "token_bytes"
        case warmup
        case verify
    }
}

/// The tokens and keys handed to the PyJWT side, so both verify exactly the same bytes.
struct TokenExport: Encodable, Sendable {
    struct Key: Encodable, Sendable {
        let kid: String
        let alg: String
        /// Ed25519 public key, raw 32 bytes, base64url (EdDSA).
        let publicKey: String?
        /// HMAC secret, base64url (HS256).
        let secret: String?

        enum CodingKeys: String, CodingKey {
            case kid, alg, secret
            case publicKey = "public_key"
        }
    }

    let issuer: String
    let audience: String
    let keys: [Key]
    /// Tokens by algorithm name.
    let tokens: [String: [String]]
    /// Earliest `exp` among the tokens (seconds since the epoch).
    let expiresAt: Int64

    enum CodingKeys: String, CodingKey {
        case issuer, audience, keys, tokens
        case expiresAt = "expires_at"
    }
}

enum ClaimsBench {
    static let issuer = "leasehold"
    static let audience = "leasehold"

    /// Mints `distinct` tokens per algorithm, times `samples` verifications of each (cycling over
    /// the tokens) after `warmup` untimed ones.
    static func run(samples: Int, warmup: Int, distinct: Int) async throws -> ([ClaimsResult], TokenExport) {
        let ed = ClaimKey.generateEdDSA(kid: "bench-ed25519")
        let hs = ClaimKey.generateHS256(kid: "bench-hs256")
        let policy = ClaimPolicy(issuer: issuer, audience: audience)
        // One verifier over both keys, as a gateway mid-rotation would hold them.
        let verifier = try await ClaimVerifier(keySet: KeySet(keys: [ed, hs]), policy: policy)

        var results: [ClaimsResult] = []
        var exported: [String: [String]] = [:]
        var earliestExpiry = Int64.max
        for key in [ed, hs] {
            let minter = try await ClaimMinter(keySet: KeySet(keys: [ed, hs], activeKid: key.kid), policy: policy)
            var tokens: [String] = []
            for index in 0..<distinct {
                let token = try await minter.mint(
                    sessionID: "ses_bench\(index)", tenantID: "acme", actorID: "alice@acme.example",
                    workspaceID: "acme-monorepo", leaseID: "lse_bench\(index)",
                    leaseExpiresAt: Date().addingTimeInterval(3600), ttl: .seconds(900),
                    allowedTools: ["repo.*", "kb.*", "crm.contacts_*", "shell.run"])
                tokens.append(token)
            }
            // Every token must verify before anything is timed.
            for token in tokens {
                let verified: VerifiedClaim
                do {
                    verified = try verifier.verify(token)
                } catch {
                    throw BenchError("\(key.alg.rawValue) token failed verification: \(error)")
                }
                guard verified.keyID == key.kid else { throw BenchError("token verified with the wrong key") }
                earliestExpiry = min(earliestExpiry, verified.claim.exp)
            }

            let clock = ContinuousClock()
            var timings: [Double] = []
            timings.reserveCapacity(samples)
            for iteration in 0..<(warmup + samples) {
                let token = tokens[iteration % tokens.count]
                let start = clock.now
                let verified = try verifier.verify(token)
                let elapsed = clock.now - start
                consume(verified.fingerprint.utf8.count)
                if iteration >= warmup { timings.append(elapsed.nanoseconds) }
            }
            let summary = Summary(nanoseconds: timings)
            note(
                "claims \(key.alg.rawValue): median \(fmt(summary.medianUs)) us, p99 \(fmt(summary.p99Us)) us "
                    + "(\(samples) samples)")
            results.append(
                ClaimsResult(
                    alg: key.alg.rawValue, distinctTokens: tokens.count, tokenBytes: tokens[0].utf8.count,
                    warmup: warmup, verify: summary))
            exported[key.alg.rawValue] = tokens
        }
        let export = TokenExport(
            issuer: issuer, audience: audience,
            keys: [
                .init(kid: ed.kid, alg: ed.alg.rawValue, publicKey: ed.publicKey, secret: nil),
                .init(kid: hs.kid, alg: hs.alg.rawValue, publicKey: nil, secret: hs.secret),
            ],
            tokens: exported, expiresAt: earliestExpiry)
        return (results, export)
    }
}

func fmt(_ value: Double) -> String {
    String(format: "%.2f", value)
}
