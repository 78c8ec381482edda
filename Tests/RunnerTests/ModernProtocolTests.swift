import Foundation
import Synchronization
import Testing

@testable import Runner

/// MCP 2026-07-28's envelope ladder and the signed `requestState` on their own (the interop tests
/// drive both through the binary).
@Suite(.timeLimit(.minutes(1))) struct ModernProtocolTests {
    private func message(_ method: String = "tools/call", version: Any = "2026-07-28", name: String = "repo.read_file")
        -> [String: Any]
    {
        [
            "jsonrpc": "2.0", "id": 7, "method": method,
            "params": [
                "name": name,
                "_meta": [ModernProtocol.protocolVersionKey: version, ModernProtocol.capabilitiesKey: [:]]
                    as [String: Any],
            ] as [String: Any],
        ]
    }

    private func code(_ result: Result<ModernProtocol.Request, ModernProtocol.Rejection>) -> Int? {
        if case .failure(let rejection) = result { rejection.code } else { nil }
    }

    @Test func theLadderChecksEnvelopeThenHeadersThenVersion() {
        let good = ModernProtocol.Headers(version: "2026-07-28", method: "tools/call", name: "repo.read_file")
        #expect(code(ModernProtocol.classify(message(), headers: good)) == nil)
        #expect(code(ModernProtocol.classify(message(), headers: nil)) == nil)
        var other = good
        other.method = "tools/list"
        #expect(code(ModernProtocol.classify(message(), headers: other)) == -32020)
        other = good
        other.name = "shell.run"
        #expect(code(ModernProtocol.classify(message(), headers: other)) == -32020)
        other = good
        other.duplicated = "mcp-method"
        #expect(code(ModernProtocol.classify(message(), headers: other)) == -32020)
        other = good
        other.version = nil
        #expect(code(ModernProtocol.classify(message(), headers: other)) == -32020)
        // A client that disagrees with itself is told so before being told the version is unknown.
        other = good
        other.version = "2099-01-01"
        #expect(code(ModernProtocol.classify(message(version: "2026-07-28"), headers: other)) == -32020)
        #expect(code(ModernProtocol.classify(message(version: "2099-01-01"), headers: nil)) == -32022)
        #expect(code(ModernProtocol.classify(message(version: 5), headers: nil)) == -32602)
        var bare = message()
        bare["params"] = ["name": "x"]
        #expect(code(ModernProtocol.classify(bare, headers: nil)) == -32602)
        bare = message()
        bare["id"] = true
        #expect(code(ModernProtocol.classify(bare, headers: nil)) == -32600)
    }

    @Test func headerValuesDecodeOnlyFromCanonicalBase64() {
        #expect(ModernProtocol.decodeHeaderValue("repo.read_file") == "repo.read_file")
        #expect(ModernProtocol.decodeHeaderValue("=?base64?cmVwby5yZWFkX2ZpbGU=?=") == "repo.read_file")
        #expect(ModernProtocol.decodeHeaderValue("=?base64?cmVwby5yZWFkX2ZpbGU?=") == nil)
        #expect(ModernProtocol.decodeHeaderValue("=?base64?!!!!?=") == nil)
    }

    @Test func fieldsAreSplicedIntoResults() {
        let listed = ModernProtocol.listResult(Data(#"{"tools":[]}"#.utf8), ttlMs: 1500)
        let object = try? JSONSerialization.jsonObject(with: listed) as? [String: Any]
        #expect(object?["cacheScope"] as? String == "private")
        #expect(object?["ttlMs"] as? Int == 1500)
        #expect(object?["resultType"] as? String == "complete")
        #expect((object?["tools"] as? [Any])?.isEmpty == true)
        let empty = ModernProtocol.withFields(Data("{}".utf8), [ModernProtocol.complete])
        #expect(String(decoding: empty, as: UTF8.self) == #"{"resultType":"complete"}"#)
    }

    private func expected(digest: String = "d1") -> RequestStates.Payload {
        .init(
            nonce: "", session: "ses_1", lease: "lea_1", connection: "sl_1", tool: "kb.publish", digest: digest,
            approval: "", expires: 0)
    }

    private func issue(_ states: RequestStates) -> String {
        states.issue(
            session: "ses_1", lease: "lea_1", connection: "sl_1", tool: "kb.publish", digest: "d1", approval: "apr_1")
    }

    @Test func aRequestStateServesOneRetryOfItsOwnCall() throws {
        let states = RequestStates(now: { Date() })
        let state = issue(states)
        #expect(throws: RequestStates.Failure.mismatched("arguments")) {
            try states.redeem(state, expected: expected(digest: "d2"))
        }
        let payload = try states.redeem(state, expected: expected())
        #expect(payload.approval == "apr_1")
        #expect(throws: RequestStates.Failure.replayed) { try states.redeem(state, expected: expected()) }
    }

    @Test func anAlteredForeignOrExpiredStateIsRefused() throws {
        let clock = Mutex(Date())
        let states = RequestStates(lifetime: 60, now: { clock.withLock { $0 } })
        let state = issue(states)
        let (body, mac) = (state.split(separator: ".")[0], state.split(separator: ".")[1])
        var flipped = Array(body.utf8)
        flipped[3] = flipped[3] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
        #expect(throws: RequestStates.Failure.invalid) {
            try states.redeem(String(decoding: flipped, as: UTF8.self) + "." + mac, expected: expected())
        }
        #expect(throws: RequestStates.Failure.invalid) { try states.redeem(String(body), expected: expected()) }
        // Another runner's key (or a restart) does not verify.
        let other = RequestStates(now: { Date() })
        #expect(throws: RequestStates.Failure.invalid) { try other.redeem(state, expected: expected()) }
        clock.withLock { $0 = $0.addingTimeInterval(61) }
        #expect(throws: RequestStates.Failure.expired) { try states.redeem(state, expected: expected()) }
    }
}
