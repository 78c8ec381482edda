import Foundation
import Testing

@testable import Runner

/// Claims presented to the real binary by an attacker: forged, confused, stale, replayed, misbound.
/// Every case must be refused with 401, `WWW-Authenticate`, the stable code, and no canary.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct ClaimAttackTests {
    let server: LeaseholdServer
    let acme: (id: String, lease: String, claim: String)
    let globexKeyFile: String

    init() async throws {
        // A second, tenant-bound key (globex's orchestrator) sits in the key set beside the dev key.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lh-keys-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let devKey = ClaimKey.generateEdDSA(kid: "dev")
        let globexKey = ClaimKey.generateEdDSA(kid: "globex-orchestrator", tenantID: "globex")
        try KeySet(keys: [devKey, globexKey], activeKid: "dev").write(to: dir + "/keys.json")
        globexKeyFile = dir + "/globex.json"
        try KeySet(keys: [globexKey], activeKid: "globex-orchestrator").write(to: globexKeyFile)
        server = try await LeaseholdServer(config: "keys_file: \(dir)/keys.json\n")
        acme = try await server.createSession(["tenant_id": "acme", "actor_id": "alice", "workspace_id": "main"])
    }

    func keySet() throws -> KeySet { try KeySet.load(from: server.stateDir + "/../" + "keys.json") }

    func sign(_ claim: SessionClaim, keyFile: String? = nil, header: [String: Any]? = nil) async throws -> String {
        let keys = try KeySet.load(from: keyFile ?? serverKeyFile)
        if let header {
            let resolved = try await ResolvedKey(keys.signingKey!)
            let headerPart = Base64URL.encode(try JSONSerialization.data(withJSONObject: header, options: .sortedKeys))
            let payloadPart = Base64URL.encode(try JSONEncoder().encode(claim))
            let signature = try resolved.algorithm.sign(Array((headerPart + "." + payloadPart).utf8))
            return headerPart + "." + payloadPart + "." + Base64URL.encode(signature)
        }
        return try await ClaimMinter(keySet: keys, policy: ClaimPolicy()).sign(claim)
    }

    var serverKeyFile: String {
        (try? String(contentsOfFile: server.stateDir + "/leasehold.yaml", encoding: .utf8))
            .map {
                $0.replacingOccurrences(of: "keys_file: ", with: "").trimmingCharacters(in: .whitespacesAndNewlines)
            } ?? ""
    }

    func claim(
        tenant: String = "acme", actor: String = "alice", workspace: String = "main", session: String? = nil,
        lease: String? = nil, iat: Int64? = nil, exp: Int64? = nil, nbf: Int64? = nil, aud: String = "leasehold",
        iss: String = "leasehold"
    ) -> SessionClaim {
        let now = Int64(Date().timeIntervalSince1970)
        return SessionClaim(
            iss: iss, aud: .one(aud), iat: iat ?? now, nbf: nbf ?? now, exp: exp ?? now + 300,
            jti: RandomID.make(prefix: "atk"),
            sessionID: session ?? acme.id, tenantID: tenant, actorID: actor, workspaceID: workspace,
            leaseID: lease ?? acme.lease)
    }

    /// Asserts the binary refuses `token` on initialize with 401, WWW-Authenticate and `code`.
    func expectRefused(_ token: String?, _ code: String, sourceLocation: SourceLocation = #_sourceLocation) async throws
    {
        let (result, session) = try await server.initialize(claim: token)
        #expect(result.status == 401, "status \(result.status) body \(result.body)", sourceLocation: sourceLocation)
        #expect(session == nil, sourceLocation: sourceLocation)
        #expect(
            result.headers["www-authenticate"]?.contains("error_code=\"\(code)\"") == true,
            "WWW-Authenticate: \(result.headers["www-authenticate"] ?? "none")", sourceLocation: sourceLocation)
        #expect(
            result.errorMessage.hasPrefix(code + ":"), "message: \(result.errorMessage)", sourceLocation: sourceLocation
        )
        #expect(!result.body.contains("CANARY"), sourceLocation: sourceLocation)
    }

    @Test func aValidClaimIsAccepted() async throws {
        let (result, session) = try await server.initialize(claim: acme.claim)
        #expect(result.status == 200)
        #expect(session != nil)
    }

    @Test func missingAndMalformedClaims() async throws {
        try await expectRefused(nil, "claim_missing")
        try await expectRefused("not-a-jwt", "claim_invalid")
        try await expectRefused("a.b.c", "claim_invalid")
        try await expectRefused(acme.claim + "x", "claim_invalid")
        try await expectRefused(String(repeating: "A", count: 10_000), "claim_invalid")
    }

    @Test func algNoneIsRefused() async throws {
        let payload = Base64URL.encode(try JSONEncoder().encode(claim()))
        for alg in ["none", "None", "NONE"] {
            let header = Base64URL.encode(Array(#"{"alg":"\#(alg)","typ":"session-claim+jwt","kid":"dev"}"#.utf8))
            try await expectRefused(header + "." + payload + ".", "claim_invalid")
        }
    }

    @Test func hs256SignedWithThePublicKeyIsRefused() async throws {
        // The classic algorithm confusion: an attacker who knows the Ed25519 public key signs HS256 with it.
        let keys = try KeySet.load(from: serverKeyFile)
        let publicKey = keys.keys.first { $0.kid == "dev" }!.publicKey!
        for secret in [publicKey, String(decoding: Base64URL.decode(publicKey)!, as: UTF8.self)] {
            let confused = ClaimKey(
                kid: "dev", alg: .hs256,
                secret: Base64URL.encode(Array((secret + String(repeating: "\u{0}", count: 32)).utf8)))
            let set = KeySet(keys: [confused], activeKid: "dev")
            let file = server.stateDir + "/confused.json"
            try set.write(to: file)
            try await expectRefused(try await sign(claim(), keyFile: file), "claim_invalid")
        }
    }

    @Test func expiredFutureAndOverLongClaims() async throws {
        let now = Int64(Date().timeIntervalSince1970)
        try await expectRefused(try await sign(claim(iat: now - 600, exp: now - 120, nbf: now - 600)), "claim_expired")
        try await expectRefused(try await sign(claim(iat: now, exp: now + 600, nbf: now + 300)), "claim_not_yet_valid")
        try await expectRefused(try await sign(claim(iat: now + 300, exp: now + 600, nbf: now)), "claim_not_yet_valid")
        try await expectRefused(try await sign(claim(iat: now, exp: now + 3600)), "claim_lifetime_exceeded")
    }

    @Test func wrongAudienceIssuerAndType() async throws {
        try await expectRefused(try await sign(claim(aud: "another-service")), "claim_invalid")
        try await expectRefused(try await sign(claim(iss: "evil")), "claim_invalid")
        let jwtTyped = try await sign(claim(), header: ["alg": "EdDSA", "kid": "dev", "typ": "JWT"])
        try await expectRefused(jwtTyped, "claim_invalid")
        let embeddedKey = try await sign(
            claim(), header: ["alg": "EdDSA", "kid": "dev", "typ": "session-claim+jwt", "jwk": ["kty": "OKP"]])
        try await expectRefused(embeddedKey, "claim_invalid")
    }

    @Test func anotherTenantsKeyCannotSpeakForAcme() async throws {
        try await expectRefused(try await sign(claim(), keyFile: globexKeyFile), "claim_invalid")
    }

    @Test func tamperedBoundariesAreRefused() async throws {
        try await expectRefused(try await sign(claim(tenant: "globex")), "boundary_mismatch")
        try await expectRefused(try await sign(claim(actor: "mallory")), "boundary_mismatch")
        try await expectRefused(try await sign(claim(workspace: "other")), "boundary_mismatch")
        try await expectRefused(
            try await sign(claim(session: "ses_00000000000000000000000000000000")), "session_not_found")
        // Tampering with the signed payload without re-signing breaks the signature.
        let parts = acme.claim.split(separator: ".").map(String.init)
        var payload = try JSONSerialization.jsonObject(with: Data(Base64URL.decode(parts[1])!)) as! [String: Any]
        payload["tenant_id"] = "globex"
        let forged =
            parts[0] + "." + Base64URL.encode(try JSONSerialization.data(withJSONObject: payload)) + "." + parts[2]
        try await expectRefused(forged, "claim_invalid")
    }

    @Test func replayOnASecondConnectionIsRefused() async throws {
        let claim = try await server.freshClaim(acme.id)
        let (first, session) = try await server.initialize(claim: claim)
        #expect(first.status == 200)
        try await expectRefused(claim, "claim_replayed")
        // The first connection keeps working with it.
        let list = try await server.call("tools/list", claim: claim, session: try #require(session))
        #expect(list.status == 200)
        #expect((list.result["tools"] as? [Any])?.isEmpty == false)
    }

    @Test func anotherTenantsKeyCannotBurnAClaimByReusingItsJti() async throws {
        // globex holds a key bound to globex. Replay bindings once keyed by jti alone: globex could mint
        // a claim for its own session carrying acme's jti, present it first, and acme's claim was then
        // refused as replayed. A jti names a claim only within its verifying key and tenant.
        let acmeClaim = try await server.freshClaim(acme.id)
        let payload = try #require(Base64URL.decode(String(acmeClaim.split(separator: ".")[1])))
        let acmeJti = try #require(
            (try JSONSerialization.jsonObject(with: Data(payload)) as? [String: Any])?["jti"] as? String)
        let globex = try await server.createSession(["tenant_id": "globex", "actor_id": "gina", "workspace_id": "main"])
        var squatter = claim(tenant: "globex", actor: "gina", session: globex.id, lease: globex.lease)
        squatter.jti = acmeJti
        let (globexResult, _) = try await server.initialize(claim: try await sign(squatter, keyFile: globexKeyFile))
        #expect(globexResult.status == 200, "globex's own claim works: \(globexResult.body)")

        let (acmeResult, acmeSession) = try await server.initialize(claim: acmeClaim)
        #expect(acmeResult.status == 200, "acme's claim was burned: \(acmeResult.body)")
        let list = try await server.call("tools/list", claim: acmeClaim, session: try #require(acmeSession))
        #expect(list.status == 200)
        #expect((list.result["tools"] as? [Any])?.isEmpty == false)
        // Replay protection of acme's claim itself is intact: a second connection is still refused.
        try await expectRefused(acmeClaim, "claim_replayed")
    }

    @Test func revokedSessionAndReplacedLeaseAreRefused() async throws {
        let victim = try await server.createSession(["tenant_id": "acme", "actor_id": "bob", "workspace_id": "main"])
        let (renewStatus, renewed) = try await server.admin("POST", "/api/v1/sessions/\(victim.id)/lease")
        #expect(renewStatus == 201)
        try await expectRefused(victim.claim, "lease_replaced")
        let newClaim = try #require(renewed["claim"] as? String)
        let (ok, mcpSession) = try await server.initialize(claim: newClaim)
        #expect(ok.status == 200)

        let (revokeStatus, _) = try await server.admin("DELETE", "/api/v1/sessions/\(victim.id)")
        #expect(revokeStatus == 200)
        // Revoking closed the session's live connection: the client learns at once (404, re-initialize)...
        let afterRevoke = try await server.call("tools/list", claim: newClaim, session: try #require(mcpSession))
        #expect(afterRevoke.status == 404)
        // ...and re-initializing says why.
        let (reopen, reopened) = try await server.initialize(claim: newClaim)
        #expect(reopen.status == 401)
        #expect(reopen.errorMessage.hasPrefix("session_revoked:"))
        #expect(reopened == nil)
    }

    @Test func aClaimInToolArgumentsIsNeverTrusted() async throws {
        let (_, session) = try await server.initialize(claim: try await server.freshClaim(acme.id))
        let result = try await server.call(
            "tools/call",
            params: ["name": "repo.read_file", "arguments": ["path": "secret.txt", "claim": acme.claim]],
            claim: nil, session: try #require(session))
        #expect(result.status == 401)
        #expect(result.errorMessage.hasPrefix("claim_missing:"))
    }
}
