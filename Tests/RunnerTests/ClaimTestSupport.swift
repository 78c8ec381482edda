import Crypto
import Foundation
import Testing

@testable import Runner

// Shared fixtures for ClaimVerifierTests and WycheproofTests.
//
// Hand-built tokens are signed here with swift-crypto directly, not with the code under test, so a
// test never asks the verifier's own signing path whether a token is good.

/// The instant every claim test runs at (seconds since the epoch); the verifier's clock is pinned to it.
let claimTestNow: Int64 = 1_760_000_000

/// A verifier over `keys` whose clock always reads `now`.
func makeVerifier(
    _ keys: [ClaimKey], now: Int64 = claimTestNow, policy: ClaimPolicy = ClaimPolicy()
) async throws -> ClaimVerifier {
    try await ClaimVerifier(
        keySet: KeySet(keys: keys), policy: policy, now: { Date(timeIntervalSince1970: TimeInterval(now)) })
}

/// A session claim that the default policy accepts at `claimTestNow`; tests change one thing at a time.
func sampleClaim(
    tenant: String = "acme", iat: Int64 = claimTestNow - 60, nbf: Int64? = nil, exp: Int64? = nil,
    aud: SessionClaim.Audience = .one("leasehold"), iss: String = "leasehold", jti: String = "clm_0123456789abcdef",
    allowedTools: [String]? = nil
) -> SessionClaim {
    SessionClaim(
        iss: iss, aud: aud, iat: iat, nbf: nbf ?? iat, exp: exp ?? iat + 300, jti: jti, sessionID: "ses_1",
        tenantID: tenant, actorID: "alice", workspaceID: "ws_main", leaseID: "lse_1", allowedTools: allowedTools)
}

/// The outcome of one verification, so tests can look at refusals without `do`/`catch` noise.
enum ClaimOutcome {
    case accepted(VerifiedClaim)
    case refused(Refusal)

    var refusal: Refusal? {
        if case .refused(let refusal) = self { return refusal }
        return nil
    }

    var claim: VerifiedClaim? {
        if case .accepted(let claim) = self { return claim }
        return nil
    }
}

/// The outcome of the signature layer alone.
enum SignatureOutcome {
    case accepted(payload: [UInt8], kid: String)
    case refused(Refusal)

    var refusal: Refusal? {
        if case .refused(let refusal) = self { return refusal }
        return nil
    }

    var isAccepted: Bool { refusal == nil }
}

extension ClaimVerifier {
    func outcome(_ token: String) -> ClaimOutcome {
        do throws(Refusal) {
            return .accepted(try verify(token))
        } catch {
            return .refused(error)
        }
    }

    func signatureOutcome(_ token: String) -> SignatureOutcome {
        do throws(Refusal) {
            let (payload, key) = try verifySignature(token)
            return .accepted(payload: payload, kid: key.kid)
        } catch {
            return .refused(error)
        }
    }
}

/// Checks a refusal's code and that its message is a sentence an operator can act on: it names
/// the claim, carries every expected fragment, and never echoes the token (tokens are secrets).
func expectRefused(
    _ refusal: Refusal?, _ code: Refusal.Code, mentioning fragments: [String] = [], token: String? = nil,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    guard let refusal else {
        Issue.record("expected a \(code) refusal, but the claim was accepted", sourceLocation: sourceLocation)
        return
    }
    #expect(refusal.code == code, "message: \(refusal.message)", sourceLocation: sourceLocation)
    #expect(refusal.message.hasPrefix("claim"), "\(refusal.message)", sourceLocation: sourceLocation)
    #expect(refusal.message.split(separator: " ").count >= 4, "\(refusal.message)", sourceLocation: sourceLocation)
    for fragment in fragments {
        #expect(
            refusal.message.contains(fragment), "\"\(refusal.message)\" should mention \"\(fragment)\"",
            sourceLocation: sourceLocation)
    }
    if let token, token.count > 16 {
        #expect(!refusal.message.contains(token), "the refusal echoes the token", sourceLocation: sourceLocation)
    }
}

/// Compact JWS built by hand: the header and payload are exactly the JSON text given, so tests can
/// present headers and payloads that `ClaimMinter` would never produce.
enum HandJWS {
    /// How the signature part is made.
    enum Signer {
        /// Ed25519 over the signing input with this 32-byte seed.
        case ed25519(seed: [UInt8])
        /// HMAC-SHA-256 over the signing input with this secret (any length).
        case hmac(secret: [UInt8])
        /// These exact signature bytes.
        case raw([UInt8])

        /// The key's own algorithm and material (private key or secret).
        init(_ key: ClaimKey) {
            switch key.alg {
            case .eddsa: self = .ed25519(seed: Base64URL.decode(key.privateKey!)!)
            case .hs256: self = .hmac(secret: Base64URL.decode(key.secret!)!)
            }
        }
    }

    static func b64(_ text: String) -> String { Base64URL.encode(Array(text.utf8)) }

    static func b64(_ bytes: [UInt8]) -> String { Base64URL.encode(bytes) }

    /// Canonical JSON text of `object` (sorted keys), for headers and payloads.
    static func json(_ object: [String: Any]) -> String {
        let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
        return String(decoding: data, as: UTF8.self)
    }

    /// A header object with `alg`, `kid` and `typ` (each left out when nil) plus `extra` fields.
    static func header(
        alg: String?, kid: String?, typ: String? = ClaimPolicy.tokenType, extra: [String: Any] = [:]
    ) -> String {
        var object = extra
        if let alg { object["alg"] = alg }
        if let kid { object["kid"] = kid }
        if let typ { object["typ"] = typ }
        return json(object)
    }

    /// The JSON object form of a claim (the `SessionClaim` encoding), to edit before signing.
    static func payloadObject(_ claim: SessionClaim) -> [String: Any] {
        let data = try! JSONEncoder().encode(claim)
        return try! JSONSerialization.jsonObject(with: data) as! [String: Any]
    }

    static func payload(_ claim: SessionClaim) -> String { json(payloadObject(claim)) }

    /// `b64(header).b64(payload).b64(signature over the first two parts)`.
    static func token(header: String, payload: String, signer: Signer) -> String {
        token(encodedHeader: b64(header), encodedPayload: b64(payload), signer: signer)
    }

    static func token(encodedHeader: String, encodedPayload: String, signer: Signer) -> String {
        let input = encodedHeader + "." + encodedPayload
        return input + "." + b64(signature(over: Array(input.utf8), signer))
    }

    static func signature(over input: [UInt8], _ signer: Signer) -> [UInt8] {
        switch signer {
        case .ed25519(let seed):
            let key = try! Curve25519.Signing.PrivateKey(rawRepresentation: seed)
            return Array(try! key.signature(for: input))
        case .hmac(let secret):
            return Array(HMAC<SHA256>.authenticationCode(for: input, using: SymmetricKey(data: secret)))
        case .raw(let bytes):
            return bytes
        }
    }

    /// A properly signed session claim with the key's `alg` and `kid`.
    static func claim(_ claim: SessionClaim, key: ClaimKey, extraHeader: [String: Any] = [:]) -> String {
        token(
            header: header(alg: key.alg.rawValue, kid: key.kid, extra: extraHeader), payload: payload(claim),
            signer: Signer(key))
    }
}

/// Parses lowercase or uppercase hex (Wycheproof's byte encoding).
func hexBytes(_ hex: String) -> [UInt8] {
    var bytes: [UInt8] = []
    bytes.reserveCapacity(hex.utf8.count / 2)
    var iterator = hex.utf8.makeIterator()
    while let high = iterator.next(), let low = iterator.next() {
        bytes.append(UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16)!)
    }
    return bytes
}
