import Crypto
import ExtrasBase64
import Foundation
import JWTKit

/// Who calls, for an upstream server that needs to know: a short-lived assertion Leasehold
/// signs for every upstream call and puts in `params._meta["dev.leasehold/identity"]`.
///
/// The values come from the server-side session that authorized the call, never from the model
/// or the caller's arguments; the session claim itself never reaches an upstream. An upstream
/// verifies the compact JWS with the public key in its `LEASEHOLD_IDENTITY_JWKS` environment
/// variable (a JWKS of one Ed25519 key, RFC 8037): `alg` must be `EdDSA`, `typ`
/// `leasehold-identity+jwt`, `aud` its own server id, and `exp` in the future (60 s after `iat`).
public struct UpstreamIdentity: Sendable {
    /// The `_meta` key the assertion travels under.
    public static let metaKey = "dev.leasehold/identity"
    /// The JWS `typ`.
    public static let tokenType = "leasehold-identity+jwt"
    /// How long an assertion is good for.
    public static let lifetime: Int64 = 60

    /// The signed payload.
    struct Claim: JWTPayload, Equatable {
        var iss: String
        var aud: String
        var sub: String
        var tenantID: String
        var workspaceID: String
        var sessionID: String
        var leaseID: String
        var tool: String
        var iat: Int64
        var exp: Int64
        var jti: String

        enum CodingKeys: String, CodingKey {
            case iss, aud, sub, tool, iat, exp, jti
            case tenantID = "tenant_id"
            case workspaceID = "workspace_id"
            case sessionID = "session_id"
            case leaseID = "lease_id"
        }

        func verify(using algorithm: some JWTAlgorithm) async throws {}
    }

    private let key: ResolvedKey
    /// The public key as a JWKS document, for upstream servers.
    public let publicJWKS: String

    /// Loads the signing key from `file`, creating it (owner-only) on first use.
    public init(file: String) async throws {
        let key: ClaimKey
        if FileManager.default.fileExists(atPath: file) {
            key = try JSONDecoder().decode(ClaimKey.self, from: Data(try SecretFile.read(file).utf8))
        } else {
            key = ClaimKey.generateEdDSA(kid: "upstream-" + String(RandomID.make(prefix: "k").suffix(12)))
            try SecretFile.write(try JSONEncoder().encode(key), to: file)
        }
        guard key.alg == .eddsa, key.privateKey != nil else {
            throw KeySetError("\(file) must hold an Ed25519 key with its private key")
        }
        self.key = try await ResolvedKey(key)
        let jwk: [String: String] = [
            "kty": "OKP", "crv": "Ed25519", "x": key.publicKey ?? "", "kid": key.kid, "alg": "EdDSA", "use": "sig",
        ]
        let document = try JSONSerialization.data(withJSONObject: ["keys": [jwk]], options: [.sortedKeys])
        self.publicJWKS = String(decoding: document, as: UTF8.self)
    }

    /// The assertion for one call of `tool` on `server` by `session`.
    func sign(server: String, tool: String, session: Session, now: Date) async throws -> String {
        let issuedAt = Int64(now.timeIntervalSince1970)
        let claim = Claim(
            iss: "leasehold", aud: server, sub: session.actorID, tenantID: session.tenantID,
            workspaceID: session.workspaceID, sessionID: session.id, leaseID: session.lease.id, tool: tool,
            iat: issuedAt, exp: issuedAt + Self.lifetime, jti: RandomID.make(prefix: "ida"))
        var header = JWTHeader()
        header.typ = Self.tokenType
        header.alg = key.key.alg.rawValue
        return try await key.collection.sign(claim, kid: JWKIdentifier(string: key.key.kid), header: header)
    }
}
