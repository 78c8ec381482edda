import ArgumentParser
import Foundation
import Runner
import WorkspaceRegistry

/// Encodes admin results for the terminal.
func printJSON(_ value: some Encodable) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    encoder.dateEncodingStrategy = .iso8601
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

/// Runs an admin operation as the operator against the state directory directly.
func asOperator<T>(_ state: StateOptions, _ body: (AdminService) async throws(APIError) -> T) async throws -> T {
    Leasehold.bootstrapLogging()
    let runtime = try await state.runtime()
    do {
        return try await body(runtime.admin)
    } catch {
        throw ValidationError(error.description)
    }
}

struct SessionOutput: Encodable {
    let session: Session
    let claim: String?
}

struct SessionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "session", abstract: "Manage sessions in a state directory.",
        subcommands: [Create.self, Get.self, Revoke.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a session and print it with a claim.")
        @OptionGroup var state: StateOptions
        @Option var tenant: String
        @Option var actor: String
        @Option var workspace: String
        @Option var server: String?
        @Option var bundle: String?
        @Option(name: .customLong("allow")) var allow: [String] = []
        @Option(name: .customLong("deny")) var deny: [String] = []
        @Option var leaseTtl: Int?
        @Option var claimTtl: Int?

        func run() async throws {
            let request = CreateSessionRequest(
                tenantID: tenant, actorID: actor, workspaceID: workspace, serverID: server, bundleID: bundle,
                allowedToolNames: allow.isEmpty ? nil : allow, deniedToolNames: deny.isEmpty ? nil : deny,
                leaseTTLSeconds: leaseTtl, claimTTLSeconds: claimTtl)
            let (session, claim) = try await asOperator(state) { admin throws(APIError) in
                try await admin.createSession(request, by: .operator)
            }
            try printJSON(SessionOutput(session: session, claim: claim))
        }
    }

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print a session.")
        @OptionGroup var state: StateOptions
        @Argument var id: String

        func run() async throws {
            let session = try await asOperator(state) { admin throws(APIError) in
                try await admin.session(id: id, by: .operator)
            }
            try printJSON(SessionOutput(session: session, claim: nil))
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a session.")
        @OptionGroup var state: StateOptions
        @Argument var id: String

        func run() async throws {
            let session = try await asOperator(state) { admin throws(APIError) in
                try await admin.revokeSession(id: id, by: .operator)
            }
            try printJSON(SessionOutput(session: session, claim: nil))
        }
    }
}

struct WorkspaceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "workspace", abstract: "Manage workspaces in a state directory.",
        subcommands: [Add.self, List.self, Remove.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Register a workspace root for a tenant.")
        @OptionGroup var state: StateOptions
        @Option var tenant: String
        @Option var workspace: String
        @Option var root: String
        @Flag var readOnly = false

        func run() async throws {
            let registered = try await asOperator(state) { admin throws(APIError) in
                try await admin.registerWorkspace(
                    Workspace(tenantID: tenant, workspaceID: workspace, root: root, readOnly: readOnly), by: .operator)
            }
            try printJSON(registered)
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List workspaces.")
        @OptionGroup var state: StateOptions
        @Option var tenant: String?

        func run() async throws {
            let all = try await asOperator(state) { admin throws(APIError) in
                try await admin.listWorkspaces(tenantID: tenant, by: .operator)
            }
            try printJSON(all)
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a workspace registration.")
        @OptionGroup var state: StateOptions
        @Option var tenant: String
        @Option var workspace: String

        func run() async throws {
            try await asOperator(state) { admin throws(APIError) in
                try await admin.removeWorkspace(tenantID: tenant, workspaceID: workspace, by: .operator)
            }
            print("removed \(tenant)/\(workspace)")
        }
    }
}

struct PolicyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy", abstract: "Check and explain policies.", subcommands: [Check.self])

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate policies and report catalog tools without a tier.")
        @Option var policies = "./policies"
        @Option var config: String?

        func run() async throws {
            let policy: RiskPolicy
            do {
                policy = try RiskPolicy.load(directory: policies)
            } catch {
                print("error: \(error)")
                throw ExitCode(1)
            }
            let config = try config.map(LeaseholdConfig.load(file:)) ?? LeaseholdConfig()
            let catalog = try config.catalog?.catalog() ?? Catalog()
            let resolver = ScopeResolver(catalog: catalog, policy: policy)
            var warnings = 0
            for tool in catalog.tools where resolver.tier(of: tool.name) == nil {
                if let (a, b) = policy.ambiguity(for: tool.name) {
                    print("error: \(tool.name) matches \(a) and \(b) with different tiers")
                    throw ExitCode(1)
                }
                print("warning: \(tool.name) has no risk tier and will be denied")
                warnings += 1
            }
            print(
                "ok: \(policy.tiers.count) tiers, \(policy.rules.count) tool patterns, \(warnings) warnings (version \(policy.version))"
            )
        }
    }
}
