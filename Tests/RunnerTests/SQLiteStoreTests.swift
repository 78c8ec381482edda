import Foundation
import Testing

@testable import Runner

@Suite struct SQLiteStoreTests {
    func key(_ jti: String, keyID: String = "dev", tenant: String = "acme") -> ClaimBindingKey {
        ClaimBindingKey(keyID: keyID, tenantID: tenant, jti: jti)
    }

    @Test func bindsAClaimToItsFirstConnectionOnlyEvenAcrossReopen() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("store-\(UUID().uuidString).sqlite")
            .path
        let expiry = Date().addingTimeInterval(600)
        do {
            let store = try SQLiteStore(path: path)
            #expect(
                try await store.bindClaim(
                    key("j"), fingerprint: "f", connectionID: "c1", sessionID: "s", expiresAt: expiry) == .bound)
            #expect(
                try await store.bindClaim(
                    key("j"), fingerprint: "f", connectionID: "c1", sessionID: "s", expiresAt: expiry)
                    == .alreadyBoundHere)
        }
        let reopened = try SQLiteStore(path: path)
        #expect(
            try await reopened.bindClaim(
                key("j"), fingerprint: "f", connectionID: "c2", sessionID: "s", expiresAt: expiry) == .boundElsewhere)
        #expect(
            try await reopened.bindClaim(
                key("j"), fingerprint: "other-token", connectionID: "c1", sessionID: "s", expiresAt: expiry)
                == .boundElsewhere)
        try await reopened.pruneBindings(expiredBefore: expiry.addingTimeInterval(1))
        #expect(
            try await reopened.bindClaim(
                key("j"), fingerprint: "f", connectionID: "c2", sessionID: "s", expiresAt: expiry) == .bound)
    }

    @Test func concurrentBindingsOfOneClaimHaveExactlyOneWinner() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("store-\(UUID().uuidString).sqlite")
            .path
        let store = try SQLiteStore(path: path)
        let results = await withTaskGroup(of: BindingResult?.self) { group in
            for index in 0..<16 {
                group.addTask {
                    try? await store.bindClaim(
                        key("race"), fingerprint: "f", connectionID: "c\(index)", sessionID: "s",
                        expiresAt: Date() + 600)
                }
            }
            return await group.reduce(into: [BindingResult?]()) { $0.append($1) }
        }
        #expect(results.filter { $0 == .bound }.count == 1)
        #expect(results.filter { $0 == .boundElsewhere }.count == 15)
    }

    @Test func aJtiIsBoundPerIssuingKeyAndTenant() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("store-\(UUID().uuidString).sqlite")
            .path
        let store = try SQLiteStore(path: path)
        let expiry = Date() + 600
        #expect(
            try await store.bindClaim(
                key("shared", keyID: "globex-orchestrator", tenant: "globex"), fingerprint: "g", connectionID: "c1",
                sessionID: "s1", expiresAt: expiry) == .bound)
        // The same jti from another key or for another tenant is another claim.
        #expect(
            try await store.bindClaim(
                key("shared"), fingerprint: "a", connectionID: "c2", sessionID: "s2", expiresAt: expiry) == .bound)
        #expect(
            try await store.bindClaim(
                key("shared", keyID: "globex-orchestrator"), fingerprint: "b", connectionID: "c3", sessionID: "s3",
                expiresAt: expiry) == .bound)
        #expect(
            try await store.bindClaim(
                key("shared"), fingerprint: "x", connectionID: "c4", sessionID: "s2", expiresAt: expiry)
                == .boundElsewhere)
    }
}
