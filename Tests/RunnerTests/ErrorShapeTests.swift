import Foundation
import Sandbox
import Testing
import WorkspaceRegistry

@testable import Runner

/// The one error shape as the runner's modules use it: what admins and clients read carries the
/// code and the sentence, the log carries the cause too.
@Suite struct ErrorShapeTests {
    struct StoreFailure: Error, Sendable, CustomStringConvertible {
        var description: String { "SQLite error 11: database disk image is malformed in /srv/state/leasehold.sqlite" }
    }

    @Test func anAdminErrorBodyNeverCarriesTheCause() throws {
        let error = APIError(.storeUnavailable, "the store cannot be written; retry shortly", cause: StoreFailure())
        let body = HTTPJSON.body(of: error)
        let expected = ["code": "store_unavailable", "message": "the store cannot be written; retry shortly"]
        #expect(body == ["error": expected])
        let encoded = String(decoding: try HTTPJSON.encoder.encode(body), as: UTF8.self)
        #expect(!encoded.contains("SQLite") && !encoded.contains("/srv"))
        #expect(error.logDescription.contains("database disk image is malformed"))
        #expect(error.status == 503)
    }

    @Test func aWorkspaceErrorKeepsItsCodeAndStatusAsAnAdminError() {
        let missing = WorkspaceError(.notFound, "workspace main is not registered for tenant acme")
        #expect(AdminService.apiError(missing).status == 404)
        #expect(AdminService.apiError(missing).code.rawValue == "workspace_not_found")
        #expect(APIError(missing, asField: true).status == 400)
        #expect(AdminService.apiError(WorkspaceError(.alreadyExists, "x")).status == 409)
        #expect(AdminService.apiError(WorkspaceError(.rootNotAllowed, "x")).status == 403)
        #expect(AdminService.apiError(WorkspaceError(.noBase, "x")).status == 503)
        #expect(AdminService.apiError(WorkspaceError(.invalidRoot, "x")).status == 400)
    }

    @Test func aSpawnFailureNamesItsStageAndErrnoAsBefore() {
        let error = SandboxError(.spawnFailed, "the worker could not be confined", stage: "pivot_root", errno: 1)
        #expect(
            error.description.hasPrefix(
                "worker_unavailable: the worker could not be confined (stage pivot_root, errno 1 "))
        #expect(error.stage == "pivot_root" && error.errno == 1)
        let noErrno = SandboxError(.spawnFailed, "x", stage: "spec")
        #expect(noErrno.description == "worker_unavailable: x (stage spec)" && noErrno.errno == nil)
        #expect(SandboxError(.retired, "gone").stage == nil)
    }

    @Test func aRefusalOfAStoreFailureLogsTheStoreError() {
        let store = PostgresStoreError(.unavailable, "the connection pool is closed", cause: StoreFailure())
        let refusal = Refusal(.sessionNotFound, "the session store is unavailable", cause: store)
        #expect(refusal.description == "session_not_found: the session store is unavailable")
        #expect(refusal.cause?.description.contains("store_unavailable: the connection pool is closed") == true)
        #expect(refusal.logDescription.contains("database disk image is malformed"))
    }
}
