import Crypto
import Foundation
import Testing

@testable import Runner

/// DESIGN.md §3 invariant 7: expired, future, wrongly signed, `alg: none`, algorithm-confused, wrong
/// `aud`/`iss`/`typ` and over-long-lived claims are refused with a clear error. Every refusal test
/// has an accepting twin (same key, same clock, one field changed), so none passes by refusing
/// everything.
@Suite(.timeLimit(.minutes(1)))
struct ClaimVerifierTests {
    let ed = ClaimKey.generateEdDSA(kid: "ed-1")
    let hs = ClaimKey.generateHS256(kid: "hs-1")

    func standardVerifier(now: Int64 = claimTestNow, policy: ClaimPolicy = ClaimPolicy()) async throws -> ClaimVerifier
    {
        try await makeVerifier([ed, hs], now: now, policy: policy)
    }

    // MARK: Accepted claims

    @Test func acceptsAnEdDSAClaimMintedByClaimMinter() async throws {
        let minter = try await ClaimMinter(keySet: KeySet(keys: [ed]), policy: ClaimPolicy())
        let token = try await minter.mint(
            sessionID: "ses_1", tenantID: "acme", actorID: "alice", workspaceID: "ws_main", leaseID: "lse_1",
            leaseExpiresAt: Date(timeIntervalSince1970: TimeInterval(claimTestNow + 3600)), ttl: .seconds(300),
            allowedTools: ["repo.*"], now: Date(timeIntervalSince1970: TimeInterval(claimTestNow)))
        let verifier = try await standardVerifier()
        let verified = try #require(verifier.outcome(token).claim)
        #expect(verified.keyID == "ed-1")
        #expect(verified.claim.tenantID == "acme")
        #expect(verified.claim.sessionID == "ses_1")
        #expect(verified.claim.allowedTools == ["repo.*"])
        #expect(verified.claim.exp - verified.claim.iat == 300)
        #expect(verified.fingerprint == Digest.sha256Hex(token.utf8))
        #expect(!verified.fingerprint.contains(token))
    }

    @Test func acceptsAnHS256ClaimMintedByClaimMinter() async throws {
        let minter = try await ClaimMinter(keySet: KeySet(keys: [hs]), policy: ClaimPolicy())
        let token = try await minter.mint(
            sessionID: "ses_1", tenantID: "acme", actorID: "alice", workspaceID: "ws_main", leaseID: "lse_1",
            leaseExpiresAt: Date(timeIntervalSince1970: TimeInterval(claimTestNow + 3600)), ttl: .seconds(600),
            now: Date(timeIntervalSince1970: TimeInterval(claimTestNow)))
        let verifier = try await standardVerifier()
        let verified = try #require(verifier.outcome(token).claim)
        #expect(verified.keyID == "hs-1")
        #expect(verified.claim.workspaceID == "ws_main")
    }

    @Test func acceptsHandBuiltClaimsForBothAlgorithms() async throws {
        let verifier = try await standardVerifier()
        for key in [ed, hs] {
            let token = HandJWS.claim(sampleClaim(), key: key)
            #expect(verifier.outcome(token).claim?.keyID == key.kid)
        }
    }

    // MARK: alg: none and algorithm confusion

    @Test func refusesAlgNoneWithAndWithoutASignature() async throws {
        let verifier = try await standardVerifier()
        let payload = HandJWS.payload(sampleClaim())
        for alg in ["none", "None", "NONE", "nOnE"] {
            let header = HandJWS.header(alg: alg, kid: "ed-1")
            let unsigned = HandJWS.b64(header) + "." + HandJWS.b64(payload) + "."
            expectRefused(verifier.outcome(unsigned).refusal, .claimInvalid, mentioning: ["\(alg) is not allowed"])
            // A none token carrying a real signature of the key it names is still a none token.
            for signer: HandJWS.Signer in [.ed25519(seed: Base64URL.decode(ed.privateKey!)!), .raw([0x00])] {
                let signed = HandJWS.token(header: header, payload: payload, signer: signer)
                expectRefused(verifier.outcome(signed).refusal, .claimInvalid, mentioning: ["not allowed"])
            }
        }
        // And with no alg at all.
        let noAlg = HandJWS.token(header: HandJWS.header(alg: nil, kid: "ed-1"), payload: payload, signer: .init(ed))
        expectRefused(verifier.outcome(noAlg).refusal, .claimInvalid, mentioning: ["(missing) is not allowed"])
    }

    @Test func refusesAlgorithmsOutsideTheAllowList() async throws {
        let verifier = try await standardVerifier()
        for alg in ["HS384", "HS512", "RS256", "ES256", "PS256", "EdDSA ", "hs256", "eddsa", "Ed25519"] {
            let token = HandJWS.token(
                header: HandJWS.header(alg: alg, kid: "hs-1"), payload: HandJWS.payload(sampleClaim()),
                signer: .init(hs))
            expectRefused(verifier.outcome(token).refusal, .claimInvalid, mentioning: ["allowed: EdDSA, HS256"])
        }
    }

    /// The classic confusion: an HS256 token naming an EdDSA kid, with the (public) Ed25519 key as
    /// the HMAC secret. Tried with the raw key bytes, the base64url text, and the key file JSON.
    @Test func refusesHS256SignedWithTheEdDSAPublicKeyAsSecret() async throws {
        let verifier = try await standardVerifier()
        let publicText = ed.publicKey!
        let publicFile = String(decoding: try JSONEncoder().encode(ed.publicOnly), as: UTF8.self)
        let secrets: [[UInt8]] = [Base64URL.decode(publicText)!, Array(publicText.utf8), Array(publicFile.utf8)]
        for secret in secrets {
            let token = HandJWS.token(
                header: HandJWS.header(alg: "HS256", kid: "ed-1"), payload: HandJWS.payload(sampleClaim()),
                signer: .hmac(secret: secret))
            expectRefused(
                verifier.outcome(token).refusal, .claimInvalid,
                mentioning: ["HS256 does not match key ed-1", "only verifies EdDSA"], token: token)
        }
        // Control: the very same forgery verifies if the public key bytes really were an HS256 secret,
        // so the refusal above comes from binding alg to kid, not from a broken token.
        let confused = ClaimKey(kid: "ed-1", alg: .hs256, secret: publicText)
        let token = HandJWS.token(
            header: HandJWS.header(alg: "HS256", kid: "ed-1"), payload: HandJWS.payload(sampleClaim()),
            signer: .hmac(secret: Base64URL.decode(publicText)!))
        #expect(try await makeVerifier([confused]).outcome(token).claim != nil)
    }

    @Test func refusesAnAlgThatDiffersFromTheKidsAlgorithm() async throws {
        let verifier = try await standardVerifier()
        // EdDSA header naming the HS256 key (signed with a real Ed25519 key).
        let edOnHS = HandJWS.token(
            header: HandJWS.header(alg: "EdDSA", kid: "hs-1"), payload: HandJWS.payload(sampleClaim()),
            signer: .init(ed))
        expectRefused(
            verifier.outcome(edOnHS).refusal, .claimInvalid, mentioning: ["EdDSA does not match key hs-1"])
        // HS256 header naming the EdDSA key, signed with the HS256 key's own secret.
        let hsOnEd = HandJWS.token(
            header: HandJWS.header(alg: "HS256", kid: "ed-1"), payload: HandJWS.payload(sampleClaim()),
            signer: .init(hs))
        expectRefused(verifier.outcome(hsOnEd).refusal, .claimInvalid, mentioning: ["HS256 does not match key ed-1"])
    }

    // MARK: kid

    @Test func refusesAnUnknownOrMissingKid() async throws {
        let verifier = try await standardVerifier()
        let payload = HandJWS.payload(sampleClaim())
        let unknown = HandJWS.token(
            header: HandJWS.header(alg: "EdDSA", kid: "ed-9"), payload: payload, signer: .init(ed))
        expectRefused(verifier.outcome(unknown).refusal, .claimInvalid, mentioning: ["kid ed-9 is not a known key"])
        let missing = HandJWS.token(header: HandJWS.header(alg: "EdDSA", kid: nil), payload: payload, signer: .init(ed))
        expectRefused(verifier.outcome(missing).refusal, .claimInvalid, mentioning: ["has no kid"])
        // A kid of another type is not silently ignored either.
        let numeric = HandJWS.token(
            header: HandJWS.json(["alg": "EdDSA", "kid": 1, "typ": ClaimPolicy.tokenType]), payload: payload,
            signer: .init(ed))
        expectRefused(verifier.outcome(numeric).refusal, .claimInvalid, mentioning: ["string alg, kid and typ"])
    }

    // MARK: typ, iss, aud

    @Test func refusesAWrongOrMissingTyp() async throws {
        let verifier = try await standardVerifier()
        let payload = HandJWS.payload(sampleClaim())
        for typ in ["JWT", "at+jwt", "Session-Claim+JWT", ""] {
            let token = HandJWS.token(
                header: HandJWS.header(alg: "EdDSA", kid: "ed-1", typ: typ), payload: payload, signer: .init(ed))
            expectRefused(
                verifier.outcome(token).refusal, .claimInvalid,
                mentioning: ["typ must be session-claim+jwt", "got \(typ)"])
        }
        let missing = HandJWS.token(
            header: HandJWS.header(alg: "EdDSA", kid: "ed-1", typ: nil), payload: payload, signer: .init(ed))
        expectRefused(verifier.outcome(missing).refusal, .claimInvalid, mentioning: ["got (missing)"])
    }

    @Test func refusesAWrongIssuer() async throws {
        let verifier = try await standardVerifier()
        let token = HandJWS.claim(sampleClaim(iss: "someone-else"), key: ed)
        expectRefused(
            verifier.outcome(token).refusal, .claimInvalid,
            mentioning: ["issuer someone-else is not the configured issuer leasehold"])
        // The policy's issuer is what counts.
        let custom = try await standardVerifier(policy: ClaimPolicy(issuer: "someone-else"))
        #expect(custom.outcome(token).claim != nil)
    }

    @Test func checksTheAudienceInStringAndArrayForm() async throws {
        let verifier = try await standardVerifier()
        for audience: SessionClaim.Audience in [
            .one("other"), .one("Leasehold"), .many(["other", "third"]), .many([]),
        ] {
            let token = HandJWS.claim(sampleClaim(aud: audience), key: hs)
            expectRefused(
                verifier.outcome(token).refusal, .claimInvalid, mentioning: ["audience does not include leasehold"])
        }
        for audience: SessionClaim.Audience in [
            .one("leasehold"), .many(["leasehold"]), .many(["other", "leasehold"]),
        ] {
            let token = HandJWS.claim(sampleClaim(aud: audience), key: hs)
            #expect(verifier.outcome(token).claim != nil, "aud \(audience) should be accepted")
        }
        // aud of another JSON type is a malformed claim.
        var object = HandJWS.payloadObject(sampleClaim())
        object["aud"] = 7
        let numeric = HandJWS.token(
            header: HandJWS.header(alg: "HS256", kid: "hs-1"), payload: HandJWS.json(object), signer: .init(hs))
        expectRefused(verifier.outcome(numeric).refusal, .claimInvalid, mentioning: ["wrong type"])
    }

    // MARK: Time

    @Test func refusesAnExpiredClaimButToleratesTheSkew() async throws {
        // exp = now - 30 is exactly at the 30 s skew boundary: refused; one second later is accepted.
        let expiredAt = claimTestNow - 30
        let verifier = try await standardVerifier()
        let expired = HandJWS.claim(sampleClaim(iat: expiredAt - 300, exp: expiredAt), key: ed)
        expectRefused(
            verifier.outcome(expired).refusal, .claimExpired,
            mentioning: ["expired at \(expiredAt)", "now \(claimTestNow)", "fresh claim"])
        let withinSkew = HandJWS.claim(sampleClaim(iat: expiredAt - 299, exp: expiredAt + 1), key: ed)
        #expect(verifier.outcome(withinSkew).claim != nil)
        // Long expired.
        let ancient = HandJWS.claim(sampleClaim(iat: 1_000, exp: 1_300), key: ed)
        expectRefused(verifier.outcome(ancient).refusal, .claimExpired)
        // The same token turns from accepted to expired as the clock moves (checkTime on every use).
        let fresh = HandJWS.claim(sampleClaim(iat: claimTestNow, exp: claimTestNow + 60), key: ed)
        let claim = try #require(verifier.outcome(fresh).claim).claim
        let stillValid = try await standardVerifier(now: claimTestNow + 89)
        let later = try await standardVerifier(now: claimTestNow + 90)
        #expect(stillValid.outcome(fresh).claim != nil)
        #expect(throws: Never.self) { try stillValid.checkTime(claim) }
        expectRefused(later.outcome(fresh).refusal, .claimExpired)
        #expect(throws: Refusal.self) { try later.checkTime(claim) }
    }

    @Test func refusesAClaimNotYetValid() async throws {
        let verifier = try await standardVerifier()
        let future = HandJWS.claim(
            sampleClaim(iat: claimTestNow - 10, nbf: claimTestNow + 31, exp: claimTestNow + 200), key: ed)
        expectRefused(
            verifier.outcome(future).refusal, .claimNotYetValid,
            mentioning: ["not valid before \(claimTestNow + 31)", "now \(claimTestNow)"])
        let atSkew = HandJWS.claim(
            sampleClaim(iat: claimTestNow - 10, nbf: claimTestNow + 30, exp: claimTestNow + 200), key: ed)
        #expect(verifier.outcome(atSkew).claim != nil)
    }

    @Test func refusesAClaimIssuedInTheFuture() async throws {
        let verifier = try await standardVerifier()
        let future = HandJWS.claim(
            sampleClaim(iat: claimTestNow + 31, nbf: claimTestNow, exp: claimTestNow + 300), key: hs)
        expectRefused(
            verifier.outcome(future).refusal, .claimNotYetValid,
            mentioning: ["issued in the future", "iat \(claimTestNow + 31)"])
        let atSkew = HandJWS.claim(
            sampleClaim(iat: claimTestNow + 30, nbf: claimTestNow, exp: claimTestNow + 300), key: hs)
        #expect(verifier.outcome(atSkew).claim != nil)
    }

    @Test func refusesALifetimeOverFifteenMinutes() async throws {
        let verifier = try await standardVerifier()
        let tooLong = HandJWS.claim(sampleClaim(iat: claimTestNow - 10, exp: claimTestNow - 10 + 901), key: ed)
        expectRefused(
            verifier.outcome(tooLong).refusal, .claimLifetimeExceeded, mentioning: ["lives 901 s", "maximum 900 s"])
        let day = HandJWS.claim(sampleClaim(iat: claimTestNow - 10, exp: claimTestNow + 86_400), key: ed)
        expectRefused(verifier.outcome(day).refusal, .claimLifetimeExceeded)
        let exactly = HandJWS.claim(sampleClaim(iat: claimTestNow - 10, exp: claimTestNow - 10 + 900), key: ed)
        #expect(verifier.outcome(exactly).claim != nil)
        // exp at or before iat is not a lifetime at all.
        for exp in [claimTestNow - 10, claimTestNow - 11] {
            let backwards = HandJWS.claim(sampleClaim(iat: claimTestNow - 10, exp: exp), key: ed)
            expectRefused(verifier.outcome(backwards).refusal, .claimInvalid, mentioning: ["exp must be after iat"])
        }
        // A shorter policy maximum is enforced too.
        let strict = try await standardVerifier(policy: ClaimPolicy(maximumLifetime: .seconds(60)))
        expectRefused(
            strict.outcome(HandJWS.claim(sampleClaim(), key: ed)).refusal, .claimLifetimeExceeded,
            mentioning: ["maximum 60 s"])
    }

    /// Found while writing these tests: `exp - iat` and `exp + skew` were computed with trapping
    /// arithmetic, so a correctly signed claim with extreme times (any key holder, including one
    /// tenant's orchestrator key) crashed the whole runner for every tenant. Without the fix in
    /// ClaimVerifier this test crashes the test process instead of passing.
    @Test func extremeTimesAreRefusedNotACrash() async throws {
        let verifier = try await standardVerifier()
        let cases: [(iat: Int64, nbf: Int64, exp: Int64, code: Refusal.Code)] = [
            (-1, -1, .max, .claimLifetimeExceeded),
            (.min, .min, 0, .claimLifetimeExceeded),
            (.min, .min, .max, .claimLifetimeExceeded),
            (.max - 100, .max - 100, .max - 40, .claimNotYetValid),
            (.max - 10, claimTestNow, .max, .claimNotYetValid),
            (claimTestNow, .max, claimTestNow + 60, .claimNotYetValid),
            (.min, .min, .min + 60, .claimExpired),
        ]
        for (iat, nbf, exp, code) in cases {
            let token = HandJWS.claim(sampleClaim(iat: iat, nbf: nbf, exp: exp), key: ed)
            expectRefused(verifier.outcome(token).refusal, code)
        }
        // checkTime is public and runs on every use of a cached claim; it does not look at the
        // lifetime, so a claim valid from the beginning of time to its end passes it.
        let timeOnly: [(iat: Int64, nbf: Int64, exp: Int64, code: Refusal.Code?)] = [
            (-1, -1, .max, nil),
            (.min, .min, .max, nil),
            (.min, .min, 0, .claimExpired),
            (.min, .min, .min + 60, .claimExpired),
            (.max - 100, .max - 100, .max - 40, .claimNotYetValid),
            (.max - 10, claimTestNow, .max, .claimNotYetValid),
            (claimTestNow, .max, .max, .claimNotYetValid),
        ]
        for (iat, nbf, exp, code) in timeOnly {
            let claim = sampleClaim(iat: iat, nbf: nbf, exp: exp)
            do throws(Refusal) {
                try verifier.checkTime(claim)
                #expect(code == nil, "iat \(iat) nbf \(nbf) exp \(exp) should be refused")
            } catch {
                #expect(error.code == code, "iat \(iat) nbf \(nbf) exp \(exp): \(error.message)")
            }
        }
        // An enormous configured skew does not trap either.
        let lenient = try await standardVerifier(policy: ClaimPolicy(clockSkew: .seconds(Int64.max)))
        #expect(lenient.outcome(HandJWS.claim(sampleClaim(), key: ed)).claim != nil)
        #expect(throws: Refusal.self) { try lenient.checkTime(sampleClaim(iat: .min, nbf: .min, exp: .min + 60)) }
    }

    // MARK: Payload fields

    @Test func refusesMissingOrMistypedRequiredFields() async throws {
        let verifier = try await standardVerifier()
        let header = HandJWS.header(alg: "EdDSA", kid: "ed-1")
        let required = [
            "iss", "aud", "iat", "nbf", "exp", "jti", "session_id", "tenant_id", "actor_id", "workspace_id", "lease_id",
        ]
        for field in required {
            var object = HandJWS.payloadObject(sampleClaim())
            object[field] = nil
            let token = HandJWS.token(header: header, payload: HandJWS.json(object), signer: .init(ed))
            expectRefused(
                verifier.outcome(token).refusal, .claimInvalid, mentioning: ["lacks a required field", field])
            object[field] = ["not": "a string"]
            let mistyped = HandJWS.token(header: header, payload: HandJWS.json(object), signer: .init(ed))
            expectRefused(verifier.outcome(mistyped).refusal, .claimInvalid, mentioning: ["wrong type"])
        }
        for text in ["", "null", "[]", "\"claim\"", "{", "not json"] {
            let token = HandJWS.token(header: header, payload: text, signer: .init(ed))
            expectRefused(verifier.outcome(token).refusal, .claimInvalid, mentioning: ["lacks a required field"])
        }
        // Optional fields really are optional.
        var minimal = HandJWS.payloadObject(sampleClaim())
        minimal["allowed_tools"] = nil
        minimal["approval_fingerprint"] = nil
        #expect(
            verifier.outcome(HandJWS.token(header: header, payload: HandJWS.json(minimal), signer: .init(ed))).claim
                != nil)
    }

    @Test func refusesAnEmptyOrOverlongJti() async throws {
        let verifier = try await standardVerifier()
        for jti in ["", String(repeating: "j", count: 129)] {
            expectRefused(
                verifier.outcome(HandJWS.claim(sampleClaim(jti: jti), key: hs)).refusal, .claimInvalid,
                mentioning: ["jti must be 1-128 bytes"])
        }
        #expect(
            verifier.outcome(HandJWS.claim(sampleClaim(jti: String(repeating: "j", count: 128)), key: hs)).claim != nil)
    }

    // MARK: Tenant-bound keys and tampering

    @Test func aTenantBoundKeySignsOnlyItsOwnTenant() async throws {
        let acmeKey = ClaimKey.generateEdDSA(kid: "acme-orchestrator", tenantID: "acme")
        let verifier = try await makeVerifier([acmeKey, hs])
        let own = HandJWS.claim(sampleClaim(tenant: "acme"), key: acmeKey)
        #expect(verifier.outcome(own).claim?.claim.tenantID == "acme")
        let other = HandJWS.claim(sampleClaim(tenant: "globex"), key: acmeKey)
        expectRefused(
            verifier.outcome(other).refusal, .claimInvalid,
            mentioning: ["key acme-orchestrator may only sign claims of tenant acme"])
        // Case and Unicode look-alikes are other tenants.
        for lookalike in ["Acme", "acme ", "аcme"] {
            expectRefused(
                verifier.outcome(HandJWS.claim(sampleClaim(tenant: lookalike), key: acmeKey)).refusal, .claimInvalid)
        }
        // An unbound key may sign for any tenant.
        #expect(verifier.outcome(HandJWS.claim(sampleClaim(tenant: "globex"), key: hs)).claim != nil)
    }

    @Test func aTamperedPayloadFailsTheSignature() async throws {
        let verifier = try await standardVerifier()
        for key in [ed, hs] {
            let token = HandJWS.claim(sampleClaim(tenant: "acme"), key: key)
            #expect(verifier.outcome(token).claim != nil)
            let parts = token.split(separator: ".").map(String.init)
            var object = HandJWS.payloadObject(sampleClaim(tenant: "acme"))
            object["tenant_id"] = "globex"
            let tampered = parts[0] + "." + HandJWS.b64(HandJWS.json(object)) + "." + parts[2]
            expectRefused(
                verifier.outcome(tampered).refusal, .claimInvalid,
                mentioning: ["signature does not verify with key \(key.kid)"], token: tampered)
            // Swapping in another header breaks the signature too.
            let header = HandJWS.b64(HandJWS.header(alg: key.alg.rawValue, kid: key.kid, extra: ["x": 1]))
            expectRefused(verifier.outcome(header + "." + parts[1] + "." + parts[2]).refusal, .claimInvalid)
        }
    }

    @Test func refusesASignatureFromAnotherKeyOfTheSameAlgorithm() async throws {
        let verifier = try await standardVerifier()
        let impostorEd = ClaimKey.generateEdDSA(kid: "ed-1")
        let impostorHS = ClaimKey.generateHS256(kid: "hs-1")
        for key in [impostorEd, impostorHS] {
            expectRefused(
                verifier.outcome(HandJWS.claim(sampleClaim(), key: key)).refusal, .claimInvalid,
                mentioning: ["signature does not verify"])
        }
    }

    // MARK: Serialization

    @Test func refusesNonCanonicalBase64URL() async throws {
        let verifier = try await standardVerifier()
        for key in [ed, hs] {
            let token = HandJWS.claim(sampleClaim(), key: key)
            #expect(verifier.outcome(token).claim != nil)
            let parts = token.split(separator: ".").map(String.init)
            func joined(_ h: String, _ p: String, _ s: String) -> String { h + "." + p + "." + s }
            // Padding, in every part.
            let padded = [
                (joined(padded(parts[0]), parts[1], parts[2]), "header"),
                (joined(parts[0], padded(parts[1]), parts[2]), "payload"),
                (joined(parts[0], parts[1], padded(parts[2])), "signature"),
            ]
            for (candidate, part) in padded where candidate != token {
                expectRefused(
                    verifier.outcome(candidate).refusal, .claimInvalid,
                    mentioning: ["\(part) is not canonical base64url"])
            }
            // Non-zero unused trailing bits: decodes to the same bytes in a lenient decoder.
            let sloppy = withTrailingBitSet(parts[2])
            #expect(sloppy != parts[2])
            #expect(lenientDecode(sloppy) == lenientDecode(parts[2]), "the test must change only unused bits")
            expectRefused(
                verifier.outcome(joined(parts[0], parts[1], sloppy)).refusal, .claimInvalid,
                mentioning: ["signature is not canonical base64url"])
            // The standard alphabet, whitespace and other characters.
            let standard = parts[2].replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
            if standard != parts[2] {
                expectRefused(verifier.outcome(joined(parts[0], parts[1], standard)).refusal, .claimInvalid)
            }
            for junk in [" ", "\n", "?", "=", "\u{00A0}", "é"] {
                expectRefused(verifier.outcome(joined(parts[0], parts[1], parts[2] + junk)).refusal, .claimInvalid)
                expectRefused(verifier.outcome(joined(junk + parts[0], parts[1], parts[2])).refusal, .claimInvalid)
            }
        }
        // Trailing bits in the payload (hand-built so the signature covers the sloppy text and
        // only the encoding is at fault).
        let header = HandJWS.b64(HandJWS.header(alg: "EdDSA", kid: "ed-1"))
        let payload = try #require(
            (0..<3).lazy.map {
                HandJWS.b64(HandJWS.payload(sampleClaim(jti: "clm_" + String(repeating: "x", count: $0))))
            }
            .first { $0.utf8.count % 4 != 0 })
        let sloppyPayload = withTrailingBitSet(payload)
        let token = HandJWS.token(encodedHeader: header, encodedPayload: sloppyPayload, signer: .init(ed))
        expectRefused(
            verifier.outcome(token).refusal, .claimInvalid, mentioning: ["payload is not canonical base64url"])
    }

    @Test func refusesWrongShapes() async throws {
        let verifier = try await standardVerifier()
        let token = HandJWS.claim(sampleClaim(), key: ed)
        let parts = token.split(separator: ".").map(String.init)
        let structural = [
            "", ".", "..", "...", parts[0], parts[0] + "." + parts[1], parts[0] + "." + parts[1] + "." + parts[2] + ".",
            token + "." + parts[2], parts[1] + "." + parts[2], "." + parts[1] + "." + parts[2],
        ]
        for candidate in structural {
            expectRefused(
                verifier.outcome(candidate).refusal, .claimInvalid,
                mentioning: [
                    candidate.split(separator: ".", omittingEmptySubsequences: false).count == 3
                        ? "claim" : "three dot-separated parts"
                ])
        }
        let emptySignature = parts[0] + "." + parts[1] + "."
        expectRefused(verifier.outcome(emptySignature).refusal, .claimInvalid, mentioning: ["signature"])
        let emptyPayload = parts[0] + ".." + parts[2]
        expectRefused(verifier.outcome(emptyPayload).refusal, .claimInvalid)
        // JWS JSON serialization is not a compact claim.
        let json = HandJWS.json(["payload": parts[1], "protected": parts[0], "signature": parts[2]])
        expectRefused(verifier.outcome(json).refusal, .claimInvalid)
        // Headers that are not JSON objects.
        for header in ["[]", "null", "\"EdDSA\"", "{", "", "{\"alg\":\"EdDSA\",\"kid\":\"ed-1\",\"typ\":1}"] {
            let candidate = HandJWS.token(header: header, payload: HandJWS.payload(sampleClaim()), signer: .init(ed))
            expectRefused(verifier.outcome(candidate).refusal, .claimInvalid, mentioning: ["header"])
        }
    }

    @Test func refusesCriticalHeaderExtensions() async throws {
        let verifier = try await standardVerifier()
        for critical: [String] in [["exp"], ["b64"], ["kid"], [], ["exp", "x"]] {
            let token = HandJWS.claim(
                sampleClaim(), key: ed, extraHeader: ["crit": critical, "exp": claimTestNow + 60])
            expectRefused(verifier.outcome(token).refusal, .claimInvalid, mentioning: ["critical"])
        }
        let mistyped = HandJWS.claim(sampleClaim(), key: ed, extraHeader: ["crit": "exp"])
        expectRefused(verifier.outcome(mistyped).refusal, .claimInvalid, mentioning: ["header"])
        // Unknown header fields that are not marked critical are ignored.
        #expect(
            verifier.outcome(HandJWS.claim(sampleClaim(), key: ed, extraHeader: ["cty": "x", "x-note": 1])).claim != nil
        )
    }

    /// A header that carries or points at a key (RFC 7515 §4.1.2-4.1.6) is refused even when the
    /// token verifies with the configured key: trusting it would let the token pick its own key.
    @Test func refusesEmbeddedOrReferencedKeys() async throws {
        let verifier = try await standardVerifier()
        let attacker = Curve25519.Signing.PrivateKey()
        let jwk: [String: Any] = [
            "kty": "OKP", "crv": "Ed25519", "x": Base64URL.encode(attacker.publicKey.rawRepresentation),
        ]
        let seed = Array(attacker.rawRepresentation)
        // Signed with the attacker's key, which the header offers.
        let offered = HandJWS.token(
            header: HandJWS.header(alg: "EdDSA", kid: "ed-1", extra: ["jwk": jwk]),
            payload: HandJWS.payload(sampleClaim()),
            signer: .ed25519(seed: seed))
        expectRefused(
            verifier.outcome(offered).refusal, .claimInvalid, mentioning: ["jwk/jku/x5u/x5c", "server-side only"])
        // Signed with the configured key: still refused.
        let extras: [[String: Any]] = [
            ["jwk": jwk], ["jku": "https://attacker.example/jwks.json"], ["x5u": "https://attacker.example/cert.pem"],
            ["x5c": ["MIIB"]], ["jwk": [String: Any]()],
        ]
        for extra in extras {
            expectRefused(
                verifier.outcome(HandJWS.claim(sampleClaim(), key: ed, extraHeader: extra)).refusal, .claimInvalid,
                mentioning: ["embeds or points at a key"])
        }
    }

    @Test func refusesTokensOver8192Bytes() async throws {
        let verifier = try await standardVerifier()
        func token(length target: Int) -> String? {
            // allowed_tools and an ignored header field pad the token to an exact length.
            func padded(tool: Int, header: Int) -> String {
                let claim = sampleClaim(allowedTools: ["repo.read_file", String(repeating: "a", count: tool)])
                return HandJWS.claim(claim, key: hs, extraHeader: ["p": String(repeating: "p", count: header)])
            }
            let start = max(0, (target - padded(tool: 0, header: 0).utf8.count) * 3 / 4 - 8)
            for headerPad in 0..<4 {
                for toolPad in start..<(start + 64) {
                    let candidate = padded(tool: toolPad, header: headerPad)
                    if candidate.utf8.count == target { return candidate }
                    if candidate.utf8.count > target { break }
                }
            }
            return nil
        }
        let atLimit = try #require(token(length: 8192))
        #expect(verifier.outcome(atLimit).claim != nil)
        let overLimit = try #require(token(length: 8193))
        expectRefused(verifier.outcome(overLimit).refusal, .claimInvalid, mentioning: ["longer than 8192 bytes"])
        let huge = String(repeating: "A", count: 1 << 20)
        expectRefused(verifier.outcome(huge).refusal, .claimInvalid, mentioning: ["longer than 8192 bytes"])
    }

    // MARK: Key rotation

    @Test func rotationKeepsOldTokensValidUntilTheKeyIsRemoved() async throws {
        let old = ClaimKey.generateEdDSA(kid: "ed-2025")
        let new = ClaimKey.generateEdDSA(kid: "ed-2026")
        let before = KeySet(keys: [old])
        let oldToken = try await ClaimMinter(keySet: before, policy: ClaimPolicy()).mint(
            sessionID: "ses_1", tenantID: "acme", actorID: "alice", workspaceID: "ws_main", leaseID: "lse_1",
            leaseExpiresAt: Date(timeIntervalSince1970: TimeInterval(claimTestNow + 3600)), ttl: .seconds(300),
            now: Date(timeIntervalSince1970: TimeInterval(claimTestNow)))

        // During rotation: the old key is verify-only and public-only, the new key signs.
        var outgoing = old.publicOnly
        outgoing.verifyOnly = true
        let during = KeySet(keys: [outgoing, new])
        #expect(during.signingKey?.kid == "ed-2026")
        let minter = try await ClaimMinter(keySet: during, policy: ClaimPolicy())
        #expect(minter.keyID == "ed-2026")
        let newToken = try await minter.mint(
            sessionID: "ses_1", tenantID: "acme", actorID: "alice", workspaceID: "ws_main", leaseID: "lse_1",
            leaseExpiresAt: Date(timeIntervalSince1970: TimeInterval(claimTestNow + 3600)), ttl: .seconds(300),
            now: Date(timeIntervalSince1970: TimeInterval(claimTestNow)))
        let rotating = try await ClaimVerifier(
            keySet: during, policy: ClaimPolicy(), now: { Date(timeIntervalSince1970: TimeInterval(claimTestNow)) })
        #expect(rotating.outcome(oldToken).claim?.keyID == "ed-2025")
        #expect(rotating.outcome(newToken).claim?.keyID == "ed-2026")

        // After rotation: the old key is gone and so are its tokens.
        let after = try await makeVerifier([new])
        expectRefused(after.outcome(oldToken).refusal, .claimInvalid, mentioning: ["kid ed-2025 is not a known key"])
        #expect(after.outcome(newToken).claim != nil)

        // A verify-only key is never picked to sign, even when this node still holds its private key.
        var retired = old
        retired.verifyOnly = true
        #expect(KeySet(keys: [retired, new]).signingKey?.kid == "ed-2026")
        await #expect(throws: KeySetError.self) {
            _ = try await ClaimMinter(keySet: KeySet(keys: [outgoing]), policy: ClaimPolicy())
        }
    }

    @Test func refusesKeySetsThatCannotBeUsed() async throws {
        let short = ClaimKey(kid: "short", alg: .hs256, secret: Base64URL.encode([UInt8](repeating: 7, count: 31)))
        var mismatched = ClaimKey.generateEdDSA(kid: "mismatch")
        mismatched.publicKey = ClaimKey.generateEdDSA(kid: "other").publicKey
        let invalid: [[ClaimKey]] = [
            [short], [ed, ClaimKey.generateEdDSA(kid: "ed-1")], [mismatched],
            [ClaimKey(kid: "", alg: .hs256, secret: hs.secret)],
            [ClaimKey(kid: "mixed", alg: .hs256, publicKey: ed.publicKey, secret: hs.secret)],
            [ClaimKey(kid: "mixed", alg: .eddsa, publicKey: ed.publicKey, secret: hs.secret)],
            [ClaimKey(kid: "nopub", alg: .eddsa)],
            [ClaimKey(kid: "padded", alg: .hs256, secret: hs.secret! + "=")],
        ]
        for keys in invalid {
            await #expect(throws: KeySetError.self, "\(keys.map(\.kid))") { _ = try await makeVerifier(keys) }
        }
    }

    // MARK: helpers

    private func padded(_ part: String) -> String {
        let remainder = part.utf8.count % 4
        return remainder == 0 ? part + "====" : part + String(repeating: "=", count: 4 - remainder)
    }

    /// Sets the lowest bit of the last base64url character; for lengths of 2 or 3 mod 4 that bit
    /// is always unused padding, so the bytes do not change but the text is no longer canonical.
    private func withTrailingBitSet(_ part: String) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        precondition(part.utf8.count % 4 != 0)
        var characters = Array(part)
        let index = alphabet.firstIndex(of: characters.last!)!
        characters[characters.count - 1] = alphabet[index ^ 1]
        return String(characters)
    }

    /// A deliberately lenient decoder (drops leftover bits) to show that a spelling change really
    /// keeps the bytes.
    private func lenientDecode(_ part: String) -> [UInt8] {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        var bytes: [UInt8] = []
        var buffer = 0
        var bits = 0
        for character in part {
            buffer = (buffer << 6) | alphabet.firstIndex(of: character)!
            bits += 6
            if bits >= 8 {
                bits -= 8
                bytes.append(UInt8((buffer >> bits) & 0xFF))
            }
        }
        return bytes
    }
}
