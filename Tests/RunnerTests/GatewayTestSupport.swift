import Foundation
import Sandbox
import Testing
import WorkspaceRegistry

@testable import Runner

/// A gateway over a temporary state directory, with two tenants' workspaces registered.
struct GatewayFixture {
    let directory: String
    let gateway: Gateway
    let admin: AdminService
    let keySet: KeySet

    static var repositoryRoot: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
    }

    init(
        catalog: Catalog? = nil, policy: RiskPolicy? = nil, executor: any ToolExecutor = EchoExecutor(),
        kernel: KernelFeatures = .current, now: @escaping @Sendable () -> Date = { Date() }
    ) async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lh-test-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        directory = URL(fileURLWithPath: dir).resolvingSymlinksInPath().path
        keySet = KeySet(keys: [ClaimKey.generateEdDSA(kid: "test-key")], activeKid: "test-key")
        let claimPolicy = ClaimPolicy()
        let store = try SQLiteStore(path: directory + "/state.sqlite")
        try FileManager.default.createDirectory(atPath: directory + "/workspaces", withIntermediateDirectories: true)
        let rules = WorkspaceRules(
            bases: [try PathChain.resolve(directory + "/workspaces").get()],
            protectedPaths: [("state", directory + "/state.sqlite"), ("audit", directory + "/audit.sqlite")])
        gateway = Gateway(
            store: store, verifier: try await ClaimVerifier(keySet: keySet, policy: claimPolicy, now: now),
            minter: try await ClaimMinter(keySet: keySet, policy: claimPolicy), catalog: try catalog ?? Catalog(),
            policy: try policy ?? RiskPolicy.load(directory: Self.repositoryRoot + "/policies"),
            audit: try AuditLog(path: directory + "/audit.sqlite", node: "test"), kernel: kernel,
            workspaceRules: rules, executor: executor,
            now: now)
        admin = AdminService(gateway: gateway, operatorKey: "operator-test-key")
        for tenant in ["acme", "globex"] {
            _ = try await admin.registerWorkspace(
                RegisterWorkspaceRequest(tenantID: tenant, workspaceID: "main"), by: .operator)
        }
    }

    /// The allocated root of a tenant's workspace.
    func root(_ tenant: String, _ workspace: String = "main") -> String {
        directory + "/workspaces/" + tenant + "/" + workspace
    }

    func session(
        _ tenant: String = "acme", allow: [String]? = nil, deny: [String]? = nil, server: String? = nil,
        bundle: String? = nil
    ) async throws -> (Session, String) {
        try await admin.createSession(
            CreateSessionRequest(
                tenantID: tenant, actorID: "alice", workspaceID: "main", serverID: server, bundleID: bundle,
                allowedToolNames: allow, deniedToolNames: deny),
            by: .operator)
    }
}

extension RefusalCode {
    static func of(_ body: () async throws -> Void) async -> String? {
        do {
            try await body()
            return nil
        } catch let refusal as Refusal {
            return refusal.code.rawValue
        } catch {
            return "unexpected: \(error)"
        }
    }
}

/// Test doubles that stand in for the worker pool only where a test is about deciding, not
/// executing; they hold no workers, so there is nothing for the lifecycle calls to destroy.
protocol WorkerlessExecutor: ToolExecutor {}

extension WorkerlessExecutor {
    func retire(session sessionID: String, reason: WorkerRetirement) async {}
    func retire(session sessionID: String, exceptLease currentLease: String?, reason: WorkerRetirement) async {}
    func retire(tenant tenantID: String, workspace workspaceID: String, reason: WorkerRetirement) async {}
    func shutdown() async {}
}

/// Answers every call with `{"executed": "<tool>"}`, so scope tests can tell a call that reached
/// execution from one that was refused before it.
struct EchoExecutor: WorkerlessExecutor {
    func execute(_ invocation: ToolInvocation) async -> ToolExecution {
        ToolExecution(
            outcome: .completed(result: Array("{\"executed\":\"\(invocation.tool)\"}".utf8), isError: false),
            workerID: nil, isolation: invocation.tier.isolation)
    }

    func tiersChanged(_ tiers: Set<String>) async {}
}
