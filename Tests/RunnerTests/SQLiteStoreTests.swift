import Foundation
import Testing

@testable import Runner

@Suite struct SQLiteStoreTests {
    @Test func bindsAClaimToItsFirstConnectionOnlyEvenAcrossReopen() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("store-\(UUID().uuidString).sqlite")
            .path
        let expiry = Date().addingTimeInterval(600)
        do {
            let store = try SQLiteStore(path: path)
            #expect(
                try await store.bindClaim(
                    jti: "j", fingerprint: "f", connectionID: "c1", sessionID: "s", expiresAt: expiry) == .bound)
            #expect(
                try await store.bindClaim(
                    jti: "j", fingerprint: "f", connectionID: "c1", sessionID: "s", expiresAt: expiry)
                    == .alreadyBoundHere)
        }
        let reopened = try SQLiteStore(path: path)
        #expect(
            try await reopened.bindClaim(
                jti: "j", fingerprint: "f", connectionID: "c2", sessionID: "s", expiresAt: expiry) == .boundElsewhere)
        #expect(
            try await reopened.bindClaim(
                jti: "j", fingerprint: "other-token", connectionID: "c1", sessionID: "s", expiresAt: expiry)
                == .boundElsewhere)
        try await reopened.pruneBindings(expiredBefore: expiry.addingTimeInterval(1))
        #expect(
            try await reopened.bindClaim(
                jti: "j", fingerprint: "f", connectionID: "c2", sessionID: "s", expiresAt: expiry) == .bound)
    }

    @Test func concurrentBindingsOfOneClaimHaveExactlyOneWinner() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("store-\(UUID().uuidString).sqlite")
            .path
        let store = try SQLiteStore(path: path)
        let results = await withTaskGroup(of: BindingResult?.self) { group in
            for index in 0..<16 {
                group.addTask {
                    try? await store.bindClaim(
                        jti: "race", fingerprint: "f", connectionID: "c\(index)", sessionID: "s",
                        expiresAt: Date() + 600)
                }
            }
            return await group.reduce(into: [BindingResult?]()) { $0.append($1) }
        }
        #expect(results.filter { $0 == .bound }.count == 1)
        #expect(results.filter { $0 == .boundElsewhere }.count == 15)
    }
}
