import Foundation
import Testing

@testable import Runner

@Suite struct ApprovalTests {
    static func approval(_ arguments: String) -> Approval {
        Approval(
            id: "apr_test", tenantID: "acme", sessionID: "ses", leaseID: "lse", actorID: "alice", workspaceID: "main",
            tool: "shell.run", arguments: arguments, createdAt: Date())
    }

    @Test func aLongCommandIsCarriedWholeAndItsSummarySaysItIsCut() throws {
        let arguments = #"{"command":"true"# + String(repeating: " ", count: 200) + #"; echo PWNED"}"#
        let approval = Self.approval(arguments)
        #expect(approval.arguments == arguments)
        #expect(approval.argumentsSHA256 == Digest.sha256Hex(arguments.utf8))
        #expect(approval.argumentsDigest == approval.argumentsSHA256)
        #expect(approval.summaryTruncated == true)
        #expect(!approval.summary.contains("PWNED"))
        // 157 bytes shown, the rest counted.
        #expect(approval.summary.hasSuffix("… (\(arguments.utf8.count - Approval.summaryArgumentsBytes) more bytes)"))
        // The API form carries both new fields under their wire names.
        let json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(approval)) as? [String: Any]
        #expect(json?["arguments"] as? String == arguments)
        #expect(json?["arguments_sha256"] as? String == approval.argumentsDigest)
        #expect(json?["summary_truncated"] as? Bool == true)
    }

    @Test func aShortCallIsSummarizedWholeAndControlCharactersAreEscaped() {
        let approval = Self.approval("{\"command\":\"ls\u{202E}\"}")
        #expect(approval.summaryTruncated == false)
        #expect(approval.summary.hasSuffix(#"{"command":"ls\u{202E}"}"#))
        #expect(!approval.summary.unicodeScalars.contains { $0.value == 0x202E })
    }
}
