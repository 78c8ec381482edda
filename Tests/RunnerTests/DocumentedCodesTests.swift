import Failures
import Foundation
import Sandbox
import SandboxProtocol
import Testing
import WorkspaceRegistry

@testable import Runner

/// docs/operations.md's table of refusal codes names every code the runner refuses or fails a
/// call with: the gateway's (``Refusal/Code``) and the sandbox's (``SandboxError/Code``).
@Suite struct DocumentedCodesTests {
    /// The codes in the first column of the "Refusal codes" table.
    static func documentedCodes() throws -> Set<String> {
        let docs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/operations.md")
        let text = try String(contentsOf: docs, encoding: .utf8)
        guard let start = text.range(of: "\n## Refusal codes\n") else { return [] }
        let section = text[start.upperBound...]
        let end = section.range(of: "\n## ")?.lowerBound ?? section.endIndex
        var codes: Set<String> = []
        for line in section[..<end].split(separator: "\n") where line.hasPrefix("| `") {
            let first = line.dropFirst(2).prefix { $0 != "|" }
            for part in first.split(separator: "`").enumerated() where part.offset % 2 == 0 {
                codes.insert(String(part.element))
            }
        }
        return codes
    }

    @Test func everyCodeIsDocumented() throws {
        let documented = try Self.documentedCodes()
        #expect(documented.count > 20, "the table was found")
        let refusals = Refusal.Code.allCases.map(\.rawValue).filter { !documented.contains($0) }
        let sandbox = SandboxError.Code.allCases.map(\.rawValue).filter { !documented.contains($0) }
        #expect(refusals.isEmpty, "refusal codes missing from docs/operations.md: \(refusals)")
        #expect(sandbox.isEmpty, "sandbox codes missing from docs/operations.md: \(sandbox)")
    }

    @Test func codeListsHoldNoDuplicates() {
        #expect(Set(Refusal.Code.allCases).count == Refusal.Code.allCases.count)
        #expect(Set(SandboxError.Code.allCases).count == SandboxError.Code.allCases.count)
    }

    /// Every closed code set, by the module that owns it.
    static let codeSets: [(name: String, codes: [String])] = [
        ("refusal", wire(RefusalCode.self)), ("sandbox", wire(SandboxErrorCode.self)),
        ("workspace", wire(WorkspaceErrorCode.self)), ("admin API", wire(APIErrorCode.self)),
        ("PostgreSQL store", wire(PostgresStoreErrorCode.self)), ("HTTP upstream", wire(UpstreamFailureCode.self)),
        ("worker", wire(WorkerErrorCode.self)),
    ]

    static func wire<Code: ErrorCode>(_: Code.Type) -> [String] { Code.allCases.map(\.rawValue) }

    @Test(arguments: codeSets.map(\.name)) func everyCodeOfEverySetIsDocumented(set: String) throws {
        let documented = try Self.documentedCodes()
        let codes = try #require(Self.codeSets.first { $0.name == set }).codes
        #expect(!codes.isEmpty)
        let missing = codes.filter { !documented.contains($0) }
        #expect(missing.isEmpty, "\(set) codes missing from docs/operations.md: \(missing)")
    }

    @Test func everyDocumentedCodeExists() throws {
        let known = Set(Self.codeSets.flatMap(\.codes))
        let unknown = try Self.documentedCodes().subtracting(known)
        #expect(unknown.isEmpty, "docs/operations.md documents codes no code set has: \(unknown.sorted())")
    }

    @Test func everyAdminCodeHasOneStatus() {
        let statuses = Dictionary(grouping: APIErrorCode.allCases, by: \.rawValue).mapValues { Set($0.map(\.status)) }
        // A workspace that a new session names is a field of that request: 400, not the 404 of
        // the workspace itself (the one code with two statuses, documented in the table).
        let several = statuses.filter { $0.value.count > 1 && $0.key != "workspace_not_found" }
        #expect(several.isEmpty, "codes sent with several statuses: \(several)")
        #expect(APIError(.storeUnavailable, "x").status == 503 && APIError.notFound("session s").status == 404)
    }
}

/// A refusal keeps what failed underneath for the runner's log and never says it to a client.
@Suite struct RefusalCauseTests {
    struct StoreFailure: Error, CustomStringConvertible {
        var description: String { "SQLite error 11: database disk image is malformed in /srv/state/leasehold.sqlite" }
    }

    @Test func theCauseIsKeptButNeverInWhatAClientReads() {
        let refusal = Refusal(.sessionNotFound, "the session store is unavailable", cause: StoreFailure())
        #expect(refusal.cause?.description.contains("malformed") == true)
        #expect(!refusal.description.contains("SQLite") && !refusal.message.contains("/srv"))
        #expect(refusal == Refusal(.sessionNotFound, "the session store is unavailable"), "the cause is for logs")
    }
}
