import Foundation
import MCP
import Sandbox
import Synchronization
import Testing
import WorkspaceRegistry

@testable import Runner

/// Each stage of the call path on its own (the gateway's tests cover them composed).
@Suite(.timeLimit(.minutes(1))) struct CallStageTests {
    // MARK: 1. authenticate

    @Test func theAuthenticatorRechecksTimeOnACachedClaim() async throws {
        let clock = Mutex<Date>(Date())
        let now: @Sendable () -> Date = { clock.withLock { $0 } }
        let fixture = try await GatewayFixture(now: now)
        let (_, claim) = try await fixture.session()
        let authenticator = ClaimAuthenticator(verifier: fixture.gateway.verifier, now: now)
        #expect(authenticator.alreadyVerified(claim) == nil)
        let first = try authenticator.verify(claim)
        #expect(authenticator.alreadyVerified(claim)?.fingerprint == first.fingerprint)
        // Cached, but not trusted past its exp.
        clock.withLock { $0 = $0.addingTimeInterval(TimeInterval(first.claim.exp - first.claim.iat + 3600)) }
        #expect(await Refusal.Code.of { _ = try authenticator.verify(claim) } == "claim_expired")
        #expect(await Refusal.Code.of { _ = try authenticator.verify(nil) } == "claim_missing")
        #expect(await Refusal.Code.of { _ = try authenticator.verify("") } == "claim_missing")
        #expect(await Refusal.Code.of { _ = try authenticator.verify(claim + "x") } != nil)
    }

    @Test func theAuthenticatorsCacheIsBounded() async throws {
        let fixture = try await GatewayFixture()
        let authenticator = ClaimAuthenticator(verifier: fixture.gateway.verifier, limit: 2, now: { Date() })
        var claims: [String] = []
        for _ in 0..<3 { claims.append(try await fixture.session().1) }
        for claim in claims { _ = try authenticator.verify(claim) }
        // Full at the third: the live entries could not be thinned, so the cache started over.
        #expect(authenticator.alreadyVerified(claims[0]) == nil)
        #expect(authenticator.alreadyVerified(claims[2]) != nil)
        // A forgotten claim is verified again, not refused.
        _ = try authenticator.verify(claims[0])
    }

    // MARK: 2. bind

    @Test func theBinderKeepsAClaimOnItsFirstConnectionAndAConnectionOnItsSession() async throws {
        let fixture = try await GatewayFixture()
        let (session, claim) = try await fixture.session()
        let (_, otherClaim) = try await fixture.session()
        let binder = SessionBinder(store: fixture.gateway.store, connections: fixture.gateway.connections, now: { Date() })
        let verified = try fixture.gateway.authenticator.verify(claim)
        let bound = try await binder.bind(verified, connectionID: "c1")
        #expect(bound.session.id == session.id)
        _ = try await binder.bind(verified, connectionID: "c1")
        #expect(await Refusal.Code.of { _ = try await binder.bind(verified, connectionID: "c2") } == "claim_replayed")
        let other = try fixture.gateway.authenticator.verify(otherClaim)
        #expect(await Refusal.Code.of { _ = try await binder.bind(other, connectionID: "c1") } == "boundary_mismatch")
        // The session as stored decides: a revocation applies to the next bind.
        _ = try await fixture.admin.revokeSession(id: session.id, by: .operator)
        #expect(await Refusal.Code.of { _ = try await binder.bind(verified, connectionID: "c1") } == "session_revoked")
    }

    // MARK: 6. execute (preparation)

    @Test func dispatchRefusesWhatCannotRunBeforeAnythingIsRecorded() async throws {
        let fixture = try await GatewayFixture(
            kernel: KernelFeatures(userNamespaces: .available, seccomp: .available, openat2: .available, landlockABI: nil))
        let (_, claim) = try await fixture.session()
        let context = try await fixture.gateway.authenticate(token: claim, connectionID: "c")
        let policy = fixture.gateway.resolver.policy
        let before = try fixture.gateway.audit.tail(1000).count
        // A tier that needs Landlock on a kernel without it.
        let needsLandlock = try #require(policy.tiers.first { $0.value.requires.contains("landlock") })
        #expect(
            await Refusal.Code.of {
                _ = try await fixture.gateway.dispatch.prepare(
                    "repo.read_file", tier: needsLandlock.key, settings: needsLandlock.value,
                    policyVersion: policy.version, arguments: [:], in: context)
            } == "tier_unavailable")
        #expect(
            await Refusal.Code.of {
                _ = try await fixture.gateway.dispatch.prepare(
                    "repo.read_file", tier: "nonexistent", settings: nil, policyVersion: policy.version,
                    arguments: [:], in: context)
            } == "tier_unavailable")
        #expect(try fixture.gateway.audit.tail(1000).count == before)
    }

    @Test func dispatchNamesACallByTheDigestOfItsCanonicalArguments() async throws {
        let fixture = try await GatewayFixture()
        let (_, claim) = try await fixture.session()
        let context = try await fixture.gateway.authenticate(token: claim, connectionID: "c")
        let policy = fixture.gateway.resolver.policy
        let read = try #require(policy.tiers["read"])
        let prepared = try await fixture.gateway.dispatch.prepare(
            "repo.read_file", tier: "read", settings: read, policyVersion: policy.version,
            arguments: ["path": "data:,x", "b": 1, "a": ["z": true]], in: context)
        let canonical = #"{"a":{"z":true},"b":1,"path":"data:,x"}"#
        #expect(String(decoding: prepared.arguments, as: UTF8.self) == canonical)
        #expect(prepared.digest == Digest.sha256Hex(Array(canonical.utf8)))
        #expect(prepared.workspace.tenantID == "acme")
        #expect(!prepared.mayWrite)
    }

    // MARK: 5 and 7. audit

    @Test func theRecorderWritesTheOutcomeOfItsIntent() async throws {
        let fixture = try await GatewayFixture()
        let (session, claim) = try await fixture.session()
        let context = try await fixture.gateway.authenticate(token: claim, connectionID: "c")
        let recorder = fixture.gateway.recorder
        var intent = recorder.event("call.intent", tool: "repo.read_file", in: context, requestID: "7")
        intent.argumentsDigest = "d1"
        let intentSeq = try await recorder.commit(intent)
        let failed = ToolExecution(
            outcome: .completed(result: Array(#"{"error":{"code":"not_found","message":"no"}}"#.utf8), isError: true),
            workerID: "wrk_1", isolation: .session)
        try await recorder.outcome(
            of: intent, intentSeq: intentSeq, execution: failed, elapsed: .milliseconds(3), sync: .batched)
        await fixture.gateway.audit.waitUntilCommitted()
        let records = try fixture.gateway.audit.tail(2).map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.body.utf8)) as? [String: Any])
        }
        #expect(records.map { $0["event"] as? String } == ["call.intent", "call.outcome"])
        let outcome = records[1]
        #expect(outcome["session"] as? String == session.id && outcome["request_id"] as? String == "7")
        #expect(outcome["arguments_digest"] as? String == "d1" && outcome["outcome"] as? String == "error")
        #expect(outcome["code"] as? String == "not_found" && outcome["worker_id"] as? String == "wrk_1")
        #expect(outcome["duration_ms"] as? Double == 3)
        // The outcome names its intent, so a reader pairs them without guessing.
        #expect((outcome["intent_seq"] as? NSNumber)?.int64Value == intentSeq)
        // A code that is not a short identifier is not repeated into the trail.
        #expect(ResultEncoder.errorCode(in: Array(#"{"error":{"code":"Not Found!"}}"#.utf8)) == nil)
    }

    // MARK: 8. encode

    @Test func theEncoderSplicesAToolsResultByteForByte() throws {
        let result = #"{"content":"data: [1, 2]","url":"data:,abc","q":"\"\\\n\t\u0001é😀","n":[1.50,2e3]}"#
        let json = ResultEncoder.json(.tool(result: Array(result.utf8), isError: false))
        let text = String(decoding: json, as: UTF8.self)
        // structuredContent is the worker's text itself, not a re-encoding of it (1.50 stays 1.50).
        #expect(text.contains(#""structuredContent":"# + result))
        let object = try #require(try JSONSerialization.jsonObject(with: json) as? [String: Any])
        let content = try #require(object["content"] as? [[String: Any]])
        #expect(content.count == 1 && content[0]["type"] as? String == "text")
        #expect(content[0]["text"] as? String == result)
        #expect(object["isError"] as? Bool == false)
        // The SDK decodes it to the same result the SDK path gives.
        let decoded = try JSONDecoder().decode(CallTool.Result.self, from: json)
        #expect(decoded.isError == false)
        if case .text(let decodedText, _, _) = decoded.content.first { #expect(decodedText == result) } else {
            Issue.record("no text content")
        }
    }

    @Test func theEncoderEscapesEveryControlCharacter() throws {
        var bytes: [UInt8] = Array(#"{"s":""#.utf8)
        var expected = ""
        for byte in UInt8(0)..<0x20 {
            bytes += Array(String(format: "\\u%04x", byte).utf8)
            expected += String(UnicodeScalar(byte))
        }
        bytes += Array(#""}"#.utf8)
        var out = Data()
        ResultEncoder.appendString(Array(expected.utf8) + Array(#"\""#.utf8), to: &out)
        let decoded = try JSONSerialization.jsonObject(with: out, options: [.fragmentsAllowed]) as? String
        #expect(decoded == expected + #"\""#)
        #expect(ResultEncoder.isJSONObject(bytes))
    }

    @Test func theEncoderNeverSplicesWhatIsNotOneJSONObject() throws {
        for bad in [
            #"{"a":1}, "isError": false, "x": {"#, "[1,2]", "\"text\"", #"{"a":1} trailing"#, "",
            #"{"a":"\#u{FF}"}"#,
        ] {
            var bytes = Array(bad.utf8)
            if bad.contains("\u{FF}") { bytes = Array(#"{"a":""#.utf8) + [0xFF, 0xFE] + Array(#""}"#.utf8) }
            #expect(!ResultEncoder.isJSONObject(bytes), "\(bad)")
            let json = ResultEncoder.json(.tool(result: bytes, isError: false))
            // Whatever the worker sent, the response is one well-formed result object.
            let object = try #require(try JSONSerialization.jsonObject(with: json) as? [String: Any], "\(bad)")
            #expect(Set(object.keys).isSubset(of: ["content", "structuredContent", "isError"]))
        }
    }

    @Test func refusalsAndBuiltResultsEncodeAsTheSDKWould() throws {
        let refusal = CallAnswer.refusal(Refusal(.toolNotInScope, "no"), extra: ["approval_id": "apr_1"])
        let decoded = try JSONDecoder().decode(CallTool.Result.self, from: ResultEncoder.json(refusal))
        #expect(decoded.isError == true)
        #expect(
            decoded.structuredContent
                == .object([
                    "error": .object(["code": "tool_not_in_scope", "message": "no", "approval_id": "apr_1"])
                ]))
    }
}

@Suite struct BearerHeaderTests {
    @Test func theBearerTokenIsReadAsBefore() {
        let cases: [(String?, String?)] = [
            (nil, nil), ("", nil), ("Bearer", nil), ("Bearer ", nil), ("Bearer    ", nil), ("Bearer abc", "abc"),
            ("bearer abc", "abc"), ("BEARER abc", "abc"), ("  Bearer   abc  ", "abc"), ("Bearer a b", "a b"),
            ("Bearer\tabc", nil), ("Basic abc", nil), ("Bearerabc", nil), ("Bearer abc\t", "abc"),
            ("Bearær abc", nil), ("Bearer é", "é"),
        ]
        for (header, token) in cases {
            #expect(MCPHandlers.bearer(header) == token, "\(String(describing: header))")
        }
    }
}
