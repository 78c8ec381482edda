import ArgumentParser
import Foundation

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif
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
    return try await state.withRuntime { runtime in
        do throws(APIError) {
            return try await body(runtime.admin)
        } catch {
            throw ValidationError(error.description)
        }
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

struct ApprovalCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "approval", abstract: "Show approvals in a state directory, each with its arguments whole.",
        subcommands: [List.self, Get.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List approvals, newest first.")
        @OptionGroup var state: StateOptions
        @Option var tenant: String?
        @Option var session: String?
        @Option(help: "pending, granted, denied or exhausted.") var status: String?
        @Option var limit = 100

        func run() async throws {
            let approvals = try await asOperator(state) { admin throws(APIError) in
                try await admin.approvals(
                    sessionID: session, status: status, tenantID: tenant, limit: limit, by: .operator)
            }
            try printJSON(approvals)
        }
    }

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print one approval with the exact arguments that would run (`arguments`).")
        @OptionGroup var state: StateOptions
        @Argument var id: String

        func run() async throws {
            let approval = try await asOperator(state) { admin throws(APIError) in
                try await admin.approval(id: id, by: .operator)
            }
            try printJSON(approval)
        }
    }
}

struct WorkspaceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "workspace", abstract: "Manage workspaces in a state directory.",
        subcommands: [Add.self, List.self, Remove.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a workspace for a tenant (its root allocated under the workspace base), or register an existing directory inside <base>/<tenant>/.")
        @OptionGroup var state: StateOptions
        @Option var tenant: String
        @Option var workspace: String
        @Option(help: "An existing directory inside <base>/<tenant>/ (default: allocate one).") var root: String?
        @Flag var readOnly = false

        func run() async throws {
            let registered = try await asOperator(state) { admin throws(APIError) in
                try await admin.registerWorkspace(
                    RegisterWorkspaceRequest(tenantID: tenant, workspaceID: workspace, root: root, readOnly: readOnly),
                    by: .operator)
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
        static let configuration = CommandConfiguration(
            abstract: "Remove a workspace registration (its files stay the tenant's until purged).")
        @OptionGroup var state: StateOptions
        @Option var tenant: String
        @Option var workspace: String
        @Flag(help: "Also delete the workspace's directory and everything in it.") var purge = false

        func run() async throws {
            try await asOperator(state) { admin throws(APIError) in
                try await admin.removeWorkspace(tenantID: tenant, workspaceID: workspace, purge: purge, by: .operator)
            }
            print((purge ? "purged " : "removed ") + "\(tenant)/\(workspace)")
        }
    }
}

struct PolicyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy", abstract: "Check and explain policies.", subcommands: [Check.self, Explain.self])

    /// Loads the policies, printing every problem with file:line and exiting 1 when there is one.
    static func load(_ policies: String) throws -> RiskPolicy {
        do {
            return try RiskPolicy.load(directory: policies)
        } catch {
            for diagnostic in error.diagnostics { print("error: \(diagnostic)") }
            print("\(error.diagnostics.count) error(s); the policy cannot be used")
            throw ExitCode(1)
        }
    }

    static func catalog(_ config: String?) throws -> Catalog {
        try (config.map(LeaseholdConfig.load(file:)) ?? LeaseholdConfig()).loadCatalog()
    }

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate policies (file:line errors, exit 1) and report catalog tools without a tier.")
        @Option(help: "Policies directory (tiers.yaml, tools.yaml, tenants/).") var policies = "./policies"
        @Option(help: "leasehold.yaml, for the catalog the policy decides.") var config: String?

        func run() async throws {
            let policy = try PolicyCommand.load(policies)
            let report = PolicyReport.check(policy, catalog: try PolicyCommand.catalog(config))
            for error in report.errors { print("error: \(error)") }
            for warning in report.warnings { print("warning: \(warning)") }
            guard report.errors.isEmpty else { throw ExitCode(1) }
            print(
                "ok: \(policy.tiers.count) tiers, \(policy.rules.count) tool patterns, \(policy.tenantOverrides.count) tenant overrides, \(report.warnings.count) warnings (version \(policy.version))"
            )
        }
    }

    struct Explain: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the decision path for a tool: patterns, tier, tenant overrides, session visibility.")
        @Argument(help: "The tool name, e.g. repo.write_file.") var tool: String
        @Option(help: "Apply this tenant's overrides.") var tenant: String?
        @Option(help: "Decide for this session (read from --state-dir).") var session: String?
        @Option(help: "State directory, for --session.") var stateDir = "./.leasehold"
        @Option(help: "Policies directory.") var policies = "./policies"
        @Option(help: "leasehold.yaml, for the catalog.") var config: String?

        func run() async throws {
            let policy = try PolicyCommand.load(policies)
            let resolver = ScopeResolver(catalog: try PolicyCommand.catalog(config), policy: policy)
            var found: Session?
            if let session {
                let path = stateDir + "/leasehold.sqlite"
                guard FileManager.default.fileExists(atPath: path) else {
                    throw ValidationError("no state at \(path); pass --state-dir")
                }
                guard let stored = try await SQLiteStore(path: path).session(id: session) else {
                    throw ValidationError("session \(session) does not exist in \(path)")
                }
                if let tenant, tenant != stored.tenantID {
                    throw ValidationError("session \(session) belongs to tenant \(stored.tenantID), not \(tenant)")
                }
                found = stored
            }
            for line in PolicyReport.explain(tool: tool, resolver: resolver, tenant: tenant, session: found) {
                print(line)
            }
        }
    }
}

struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit", abstract: "Verify and read the hash-chained audit trail.",
        subcommands: [Verify.self, Tail.self, Export.self])

    static let storeHelp = ArgumentHelp(
        "The store holding the trail: postgres://USER@HOST:PORT/DATABASE for a cluster (password in "
            + "LEASEHOLD_STORE_PASSWORD or PGPASSWORD), or sqlite:DIR (default: the state directory's audit.sqlite).")

    /// Opens `<state dir>/audit.sqlite`, which must already exist, or with `store` (`--store`) the
    /// trail of a cluster's PostgreSQL database, or the SQLite files of another directory.
    static func open(_ stateDir: String, store: String? = nil) throws -> AuditLog {
        var directory = stateDir
        if let store {
            switch try StoreLocation(parsing: store) {
            case .postgres(let location):
                return try AuditLog(postgres: location, node: "cli")
            case .sqlite(let path):
                directory = path ?? stateDir
            }
        }
        let path = directory + "/audit.sqlite"
        guard FileManager.default.fileExists(atPath: path) else {
            throw ValidationError("no audit log at \(path); pass the server's --state-dir")
        }
        return try AuditLog(path: path, node: "cli")
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Check every record's place and hash and every signed checkpoint; exit 1 naming the first problem.",
            discussion: """
                A checkpoint is the audit key's signature over a record's hash. It fails when the signature \
                is not the public key's or when the record it covers no longer has the signed hash, which \
                catches records deleted or edited even if the chain was recomputed. Records after the last \
                checkpoint are reported, not failed: the runner signs them within seconds.

                Every call.intent is paired with its call.outcome. An intent with none is listed as \
                "outcome unknown" when no running runner can still write it: the runner stopped (crash, \
                kill -9, power loss) while the call ran, or the outcome could not be written, so what the \
                call did is unknown. While a runner serves the state directory, intents it may still be \
                running are listed as "in flight" instead and do not count.

                Exit status: 0 intact; 1 a bad record, checkpoint or outcome link (the log was changed); \
                2 intact, but some calls' outcomes are unknown (0 with --allow-unknown-outcomes).
                """)
        @Option(help: "The server's state directory.") var stateDir = "./.leasehold"
        @Option(help: AuditCommand.storeHelp) var store: String?
        @Option(help: "The audit public key (default <state dir>/audit-signing.pub).") var publicKey: String?
        @Option(help: "With no checkpoint at all, more records than this fail verification.")
        var checkpointRecords = AuditCheckpointPolicy.defaultRecords
        @Flag(help: "Accept a log with no signed checkpoint (written before checkpoints existed).")
        var allowUnsigned = false
        @Flag(help: "Exit 0 even when some calls' outcomes are unknown (they are still listed).")
        var allowUnknownOutcomes = false

        func run() async throws {
            let log = try AuditCommand.open(stateDir, store: store)
            let (records, head): (Int64, String)
            switch try log.verify() {
            case .ok(let count, let hash):
                (records, head) = (count, hash)
            case .broken(let seq, let reason):
                print("bad record \(seq): \(reason)")
                throw ExitCode(1)
            }
            let keyFile = publicKey ?? stateDir + "/" + AuditSigningKey.publicFileName
            let report: CheckpointReport
            if FileManager.default.fileExists(atPath: keyFile) {
                report = try log.verifyCheckpoints(publicKey: AuditPublicKey.load(file: keyFile))
            } else if try publicKey != nil || !log.checkpoints().isEmpty {
                throw ValidationError("no audit public key at \(keyFile); pass --public-key")
            } else {
                report = CheckpointReport(records: records)
            }
            if !report.failures.isEmpty {
                for failure in report.failures { print("bad checkpoint: \(failure)") }
                throw ExitCode(1)
            }
            if report.checkpoints == 0 && records > checkpointRecords && !allowUnsigned {
                print(
                    "unsigned: no signed checkpoint covers any of the \(records) records (the chain is intact "
                        + "but could have been recomputed); pass --allow-unsigned for a log written before checkpoints")
                throw ExitCode(1)
            }
            let outcomes = try log.callOutcomes()
            if !outcomes.badLinks.isEmpty {
                for link in outcomes.badLinks { print("bad outcome link: \(link)") }
                throw ExitCode(1)
            }
            print("ok: \(records) records (head \(head))")
            if report.lastCoveredSeq > 0 {
                print("signed: \(report.checkpoints) checkpoints, the last covers records 1-\(report.lastCoveredSeq)")
            }
            if report.unsignedRecords > 0 {
                print("\(report.unsignedRecords) records after the last checkpoint are not yet signed")
            }
            if outcomes.intents > 0 {
                print(
                    "calls: \(outcomes.intents) intents, \(outcomes.unknown.count) with outcome unknown, "
                        + "\(outcomes.inFlight.count) in flight")
            }
            for record in outcomes.inFlight {
                print("in flight: \(AuditCommand.describeIntent(record))")
            }
            if let from = outcomes.liveRunnerFrom, !outcomes.inFlight.isEmpty {
                let served = store == nil ? "state directory" : "store"
                print("(a runner serving this \(served) since record \(from) may still be running these)")
            }
            for record in outcomes.unknown {
                print("outcome unknown: \(AuditCommand.describeIntent(record)); no call.outcome record")
            }
            if !outcomes.unknown.isEmpty {
                print(
                    "\(outcomes.unknown.count) calls have no outcome record and no running runner can write one: "
                        + "the runner stopped (crash, kill -9, power loss) while they ran, or their outcome could not "
                        + "be written. What they did is unknown; check their workspaces.")
                if !allowUnknownOutcomes { throw ExitCode(2) }
            }
        }
    }

    struct Tail: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the last records, one JSON object per line.")
        @Option(help: "The server's state directory.") var stateDir = "./.leasehold"
        @Option(help: AuditCommand.storeHelp) var store: String?
        @Option(name: [.customShort("n"), .long], help: "How many records.") var count = 20

        func run() async throws {
            for record in try AuditCommand.open(stateDir, store: store).tail(max(1, count)) {
                print(AuditCommand.line(record))
            }
        }
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Write every record (or one tenant's) to stdout.")
        @Option(help: "The server's state directory.") var stateDir = "./.leasehold"
        @Option(help: AuditCommand.storeHelp) var store: String?
        @Option(help: "Output format; only jsonl.") var format = "jsonl"
        @Option(help: "Only this tenant's records.") var tenant: String?

        func run() async throws {
            guard format == "jsonl" else { throw ValidationError("--format must be jsonl") }
            let log = try AuditCommand.open(stateDir, store: store)
            var after: Int64 = 0
            while true {
                let page = try log.records(tenant: tenant, afterSeq: after, limit: 5000)
                for record in page { print(AuditCommand.line(record)) }
                guard let last = page.last else { break }
                after = last.seq
            }
        }
    }

    /// `record 12: shell.run, tenant acme, session s_…, request 7, at 2026-…Z (tier exec)`.
    static func describeIntent(_ record: AuditRecord) -> String {
        guard let event = record.event else { return "record \(record.seq)" }
        var parts = ["record \(record.seq): \(event.tool ?? "?")"]
        if let tenant = event.tenant { parts.append("tenant \(tenant)") }
        if let session = event.session { parts.append("session \(session)") }
        if let request = event.requestID { parts.append("request \(request)") }
        if let time = event.time {
            parts.append("at \(time.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true)))")
        }
        return parts.joined(separator: ", ") + (event.tier.map { " (tier \($0))" } ?? "")
    }

    /// `{"seq":..,"prev_hash":..,"hash":..,"event":{...}}`, built around the stored canonical body
    /// so the exported bytes are exactly what was hashed.
    static func line(_ record: AuditRecord) -> String {
        "{\"seq\":\(record.seq),\"prev_hash\":\"\(record.previousHash)\",\"hash\":\"\(record.hash)\",\"event\":\(record.body)}"
    }
}

struct ServersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "servers", abstract: "Upstream MCP servers (servers: in leasehold.yaml).",
        subcommands: [List.self, Check.self])

    static func print(_ statuses: [UpstreamRegistry.Status]) {
        for status in statuses {
            Swift.print(
                "\(status.id): \(status.state), \(status.tools) tools, isolation \(status.isolation)"
                    + ", network \(status.network?.joined(separator: " ") ?? "none")"
                    + (status.lastError.map { "; last error: \($0)" } ?? "")
                    + (status.stream.map { "; GET stream: \($0)" } ?? ""))
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print each server of a running runner: state, tool count, last error (GET /api/v1/servers).")
        @Option(help: "The runner's admin API.") var url = "http://127.0.0.1:8080"
        @Option(help: "State directory holding operator.key.") var stateDir = "./.leasehold"

        func run() async throws {
            let key = try String(contentsOfFile: stateDir + "/operator.key", encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            guard let endpoint = URL(string: url + "/api/v1/servers") else { throw ValidationError("bad --url \(url)") }
            var request = URLRequest(url: endpoint)
            request.setValue("Bearer \(key)", forHTTPHeaderField: "Authorization")
            let (data, response) = try await URLSession.shared.data(for: request)
            guard (response as? HTTPURLResponse)?.statusCode == 200 else {
                throw ValidationError("\(url) answered: \(String(decoding: data.prefix(500), as: UTF8.self))")
            }
            let decoder = JSONDecoder()
            decoder.dateDecodingStrategy = .iso8601
            ServersCommand.print(try decoder.decode(ServersStatus.self, from: data).servers)
        }
    }

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate servers: (file:line errors), start each in a confined worker and list its tools.")
        @OptionGroup var state: StateOptions

        func run() async throws {
            guard state.config != nil else { throw ValidationError("pass --config leasehold.yaml") }
            Leasehold.bootstrapLogging()
            let statuses = try await state.withRuntime { runtime in
                await runtime.gateway.listUpstreams()
                let statuses = runtime.gateway.upstreams.status
                ServersCommand.print(statuses)
                await runtime.gateway.upstreams.shutdown()
                await runtime.gateway.executor.shutdown()
                return statuses
            }
            if statuses.contains(where: { $0.state != "listed" }) { throw ExitCode(1) }
        }
    }
}
