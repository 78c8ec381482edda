import ArgumentParser
import Foundation
import Logging
import Runner
import Sandbox
import WorkspaceRegistry

@main
struct Leasehold: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "leasehold",
        abstract: "Session-bound MCP tool runner for multi-tenant agent platforms.",
        version: LeaseholdVersion.current,
        subcommands: [
            Serve.self, Doctor.self, Keys.self, Claim.self, SessionCommand.self, ApprovalCommand.self,
            WorkspaceCommand.self,
            PolicyCommand.self,
            AuditCommand.self,
            ServersCommand.self,
        ])

    /// Log lines on standard error: text (the default), or one JSON object per line (`serve
    /// --log-format json` or `LEASEHOLD_LOG_FORMAT=json`). `LOG_LEVEL` sets the level; without it,
    /// text logs from notice up and JSON from info up (one `mcp.request` line per request).
    static func bootstrapLogging(format: LogFormat? = nil) {
        let environment = ProcessInfo.processInfo.environment
        let format = format ?? LogFormat(rawValue: environment["LEASEHOLD_LOG_FORMAT"] ?? "") ?? .text
        let level = Logger.Level(rawValue: environment["LOG_LEVEL"] ?? "")
        switch format {
        case .text:
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level ?? .notice
                return handler
            }
        case .json:
            LoggingSystem.bootstrap { label in
                var handler = JSONLogHandler(label: label)
                handler.logLevel = level ?? .info
                return handler
            }
        }
    }

    /// `--log-format`.
    enum LogFormat: String, ExpressibleByArgument, CaseIterable {
        case text
        case json
    }
}

/// Options shared by commands that open the state directory.
struct StateOptions: ParsableArguments {
    @Option(name: .long, help: "State directory (SQLite, keys, operator key).")
    var stateDir = "./.leasehold"

    @Option(name: .long, help: "leasehold.yaml configuration file.")
    var config: String?

    @Option(name: .long, help: "Policies directory (tiers.yaml, tools.yaml).")
    var policies = "./policies"

    @Option(
        name: .long,
        help: """
            Where sessions, approvals, workspaces, admin keys and the audit trail live: sqlite:DIR (default: the \
            state directory) or postgres://USER@HOST:PORT/DB for several nodes (also LEASEHOLD_STORE, or store: in \
            the config).
            """)
    var store: String?

    /// Runs `body` with the runner bootstrapped from these options (``Runtime/withRuntime(_:logger:_:)``).
    func withRuntime<T>(otlpEndpoint: String? = nil, _ body: (Runtime) async throws -> T) async throws -> T {
        try await Runtime.withRuntime(
            RuntimeOptions(
                stateDir: stateDir, configFile: config, policiesDir: policies, otlpEndpoint: otlpEndpoint, store: store),
            logger: Logger(label: "leasehold"), body)
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve MCP (Streamable HTTP and/or stdio) and the admin API.")

    @OptionGroup var state: StateOptions

    @Option(name: .long, help: "HOST:PORT for Streamable HTTP and the admin API (default 127.0.0.1:8080).")
    var http: String?

    @Flag(name: .long, help: "Serve one MCP client over stdin/stdout.")
    var stdio = false

    @Option(name: .long, help: "With --stdio: a file holding the claim bound at start.")
    var claimFile: String?

    @Flag(name: .long, help: "Register the demo tenants acme and globex and print a ready claim.")
    var demo = false

    @Option(
        name: .long,
        help: "HOST:PORT of a listener serving only /metrics, without a key (bind it to a private interface).")
    var metrics: String?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Log lines as text or json (one object per line, with an mcp.request line per request at info; "
                + "default: LEASEHOLD_LOG_FORMAT, else text)."))
    var logFormat: Leasehold.LogFormat?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "OpenTelemetry collector for traces, OTLP/HTTP protobuf (e.g. http://127.0.0.1:4318; /v1/traces is "
                + "added). Default: otlp_endpoint in the config, else off."))
    var otlpEndpoint: String?

    func run() async throws {
        Leasehold.bootstrapLogging(format: logFormat)
        try await state.withRuntime(otlpEndpoint: otlpEndpoint) { runtime in
            runtime.bootstrapMetricsSystem()
            var settings: HTTPSettings?
            if http != nil || !stdio {
                settings = try runtime.settings.httpSettings(listen: http)
            }
            var claim = ProcessInfo.processInfo.environment["LEASEHOLD_CLAIM"]
            if let claimFile {
                claim = try String(contentsOfFile: claimFile, encoding: .utf8).trimmingCharacters(
                    in: .whitespacesAndNewlines)
            }
            let demoSession = demo ? try await Demo.prepare(runtime) : nil
            let source = runtime.operatorKeySource
            let host = settings?.host ?? "127.0.0.1"
            let metricsListen = try runtime.settings.metricsListen(metrics)
            try await runtime.serve(
                http: settings, stdio: stdio, stdioClaim: claim, metricsListen: metricsListen,
                onHTTPReady: { port in
                    let base = "http://\(host.contains(":") ? "[\(host)]" : host):\(port)"
                    printError(
                        "leasehold: listening on \(base) (MCP at \(base)/mcp, admin API at \(base)/api/v1, console at \(base)/ui)"
                    )
                    printError("leasehold: operator key: \(source)")
                    if let (session, claim) = demoSession {
                        printError(
                            DemoText.render(base: base, session: session, claim: claim, operatorKeySource: source))
                    }
                },
                onMetricsReady: { port in
                    let metricsHost = metricsListen?.host ?? "127.0.0.1"
                    printError(
                        "leasehold: metrics on http://\(metricsHost.contains(":") ? "[\(metricsHost)]" : metricsHost):\(port)/metrics"
                    )
                })
        }
    }
}

func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

struct Doctor: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Report the kernel features confinement relies on and which tiers can run here.")

    @Option(help: "Policies directory (tiers.yaml, tools.yaml).") var policies = "./policies"
    @Option(name: .long, help: "State directory whose workspace registrations are checked.") var stateDir = "./.leasehold"
    @Option(name: .long, help: "leasehold.yaml configuration file.") var config: String?

    func run() async throws {
        let features = KernelFeatures.current
        print("user namespaces: \(features.userNamespaces)")
        print("seccomp:         \(features.seccomp)")
        print("openat2:         \(features.openat2)")
        print("landlock:        \(features.landlockABI.map { "ABI \($0)" } ?? "unavailable")")
        let config = try self.config.map { try LeaseholdConfig.load(file: $0) }
        let cgroups = try (config?.usesWorkerCgroups() ?? true) ? WorkerCgroups.probe() : nil
        let enforcement = LimitEnforcement(cgroups: cgroups)
        if let cgroups {
            let controllers = cgroups.controllers.sorted().map(\.rawValue).joined(separator: ", ")
            print("worker cgroups:  \(cgroups.version) (\(controllers)) under \(Set(cgroups.parents.values).sorted().joined(separator: ", "))")
        } else {
            print(
                "worker cgroups:  none"
                    + (config?.workerCgroups == "off"
                        ? " (worker_cgroups: off)"
                        : " (no writable cgroup: run as root, or under systemd with Delegate=yes; see deploy/leasehold.service)"))
        }
        let example = WorkerLimits(processes: 64, cpuWeight: 100)
        for limit in LimitEnforcement.hostDependentLimits {
            let how = enforcement.mechanism(limit, for: example)
            let single = limit == "memory_mib" ? enforcement.mechanism(limit, for: WorkerLimits(processes: 1)) : nil
            print(
                "limit \(limit):".padding(toLength: 18, withPad: " ", startingAt: 0)
                    + (how ?? "NOT enforced on a whole worker" + (single.map { "; a tier of one process: \($0)" } ?? "")))
        }
        let worker = WorkerLaunch.defaultExecutable()
        print("worker:          \(FileManager.default.isExecutableFile(atPath: worker) ? worker : "missing at \(worker) (set LEASEHOLD_WORKER or worker_executable)")")
        if let policy = try? RiskPolicy.load(directory: policies) {
            for (name, tier) in policy.tiers.sorted(by: { $0.key < $1.key }) {
                let missing = tier.requires.filter { !features.isAvailable($0) }
                let workerTier = tier.workerTier(named: name)
                let unenforceable = enforcement.unenforceable(workerTier)
                let bestEffort = enforcement.bestEffortInEffect(workerTier)
                let status: String
                if !missing.isEmpty {
                    status = "unavailable: needs \(missing.joined(separator: ", ")) (calls refused tier_unavailable)"
                } else if !unenforceable.isEmpty {
                    status =
                        "unavailable: \(unenforceable.joined(separator: ", ")) cannot be enforced here and is not best_effort (calls refused tier_unavailable)"
                } else if !bestEffort.isEmpty {
                    status = "available; best-effort, NOT enforced here: \(bestEffort.joined(separator: ", "))"
                } else {
                    status = "available"
                }
                print("tier \(name):".padding(toLength: 17, withPad: " ", startingAt: 0) + status)
            }
        } else {
            print("tiers:           cannot read \(policies) (leasehold policy check --policies \(policies) says why)")
        }
        for profile in SeccompProfileName.allCases {
            let allowed = SeccompPrograms.describe(profile).split(separator: ",")
            print("seccomp \(profile):".padding(toLength: 17, withPad: " ", startingAt: 0) + "\(allowed.count) syscalls allowed")
        }
        reportBounds()
        await checkRegistrations(worker: worker)
        reportDisk()
        await selfTest(worker: worker)
    }

    /// The configuration `serve` would run with (`--config`, else every default).
    func resolvedSettings() throws -> RunnerSettings {
        try config.map { try RunnerSettings(LeaseholdConfig.load(file: $0)) } ?? .defaults
    }

    /// The HTTP and audit bounds `serve` would hold with this configuration on this host.
    private func reportBounds() {
        let resolved: RunnerSettings
        do {
            resolved = try resolvedSettings()
        } catch {
            print("http bounds:     cannot read the configuration: \(error)")
            return
        }
        var settings = resolved.http
        let sampling = resolved.audit.unauthenticatedRefusals
        let shares = resolved.workers.pool.shares
        let sessions = resolved.tenants.sessions
        // What serve will have: the soft limit raised to the hard one.
        var budget = DescriptorBudget.current(workers: resolved.workers.pool.maximumWorkers)
        budget.softLimit = budget.hardLimit
        let connections = budget.connections(configured: settings.maximumConnections)
        settings.maximumConnectionsPerAddress = DescriptorBudget.connectionsPerAddress(
            configured: settings.maximumConnectionsPerAddress, connections: connections)
        print(
            "open files:      RLIMIT_NOFILE hard \(budget.hardLimit) (serve raises the soft limit to it); "
                + "\(budget.reserve) reserved for the runner and \(budget.workers) workers"
                + (connections < settings.maximumConnections
                    ? "; only \(connections) left for connections: raise LimitNOFILE" : ""))
        for line in settings.describeBounds(effectiveConnections: connections) {
            print("http:            " + line)
        }
        print(
            "audit:           unauthenticated refusals sampled: the first per source every "
                + "\(sampling.interval.components.seconds) s, then one aggregate record "
                + "(\(sampling.maximumSources) sources per interval, the rest as one)")
        let overridden = Set(shares.overrides.keys).union(sessions.overrides.keys)
        print(
            "tenants:         each at most \(shares.standard.workers) live workers, \(shares.standard.callsInFlight) "
                + "calls in flight, \(sessions.standard) live sessions"
                + (overridden.isEmpty ? "" : " (overridden for \(overridden.sorted().joined(separator: ", ")))"))
    }

    /// Lists registered workspaces whose roots the root rules refuse (registered before the rules
    /// existed, or changed since): each should be removed and re-created under a workspace base.
    private func checkRegistrations(worker: String) async {
        let database = stateDir + "/leasehold.sqlite"
        guard FileManager.default.fileExists(atPath: database), let state = realpath(stateDir, nil) else {
            print("workspaces:      no state directory at \(stateDir); nothing registered to check")
            return
        }
        let canonical = String(cString: state)
        free(state)
        do {
            let configuration = try config.map(LeaseholdConfig.load(file:)) ?? LeaseholdConfig()
            let settings = try RunnerSettings(configuration)
            let rules = try Runtime.workspaceRules(
                stateDir: canonical, config: configuration, configFile: config, policiesDir: policies,
                keysFile: settings.keysFile(stateDirectory: canonical),
                workerExecutable: settings.workers.executable ?? worker, createBases: false)
            print("workspace bases: " + rules.bases.map(\.path).joined(separator: ", "))
            let store = try SQLiteStore(path: database)
            let refused = try await Runtime.refusedRegistrations(store: store, rules: rules)
            let total = try await store.allWorkspaces().count
            if refused.isEmpty {
                print("workspaces:      \(total) registered, every root passes the root rules")
            }
            for (workspace, error) in refused {
                print(
                    "workspace REFUSED: \(workspace.tenantID)/\(workspace.workspaceID) root \(workspace.root): \(error.code): \(error.message) (remove it and re-create it under a base)")
            }
        } catch {
            print("workspaces:      cannot check the registrations: \(error)")
        }
    }

    /// Confines one real worker per seccomp profile over a scratch workspace and runs one call in
    /// it: what the kernel probes promise, shown by doing it.
    private func selfTest(worker: String) async {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("leasehold-doctor-\(getpid())")
        defer { try? FileManager.default.removeItem(at: scratch) }
        do {
            let root = scratch.appendingPathComponent("workspace").resolvingSymlinksInPath().path
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
            // A root runner's workers are never host root: the self-test's run as nobody.
            let identity: WorkerHostIdentity? = geteuid() == 0 ? WorkerHostIdentity(uid: 65534, gid: 65534) : nil
            if let identity { _ = WorkspaceTree.chown(root, to: WorkspaceOwner(uid: identity.uid, gid: identity.gid)) }
            let launch = try WorkerLaunch(executable: worker, supportDirectory: scratch.appendingPathComponent("support").path)
            let pool = WorkerPool(launch: launch)
            let calls: [(SeccompProfileName, String, String)] = [
                (.read, "repo.stat", #"{"path":"."}"#), (.write, "repo.write_file", #"{"path":"probe.txt","content":"ok"}"#),
                (.exec, "shell.run", #"{"argv":["true"]}"#),
            ]
            for (profile, tool, arguments) in calls {
                let started = ContinuousClock.now
                let execution = await pool.execute(
                    ToolInvocation(
                        tool: tool,
                        tier: WorkerTier(name: profile.rawValue, isolation: .call, profile: profile, limits: WorkerLimits(fileSizeMiB: 1, processes: 8)),
                        arguments: Array(arguments.utf8), tenantID: "doctor", workspaceID: "doctor", workspaceRoot: root,
                        sessionID: "doctor", actorID: "doctor", leaseID: "doctor", leaseExpiresAt: Date().addingTimeInterval(60),
                        policyVersion: "doctor", hostIdentity: identity))
                let elapsed = ContinuousClock.now - started
                let verdict: String
                switch execution.outcome {
                case .completed(_, false): verdict = "ok (\(elapsed.formatted(.units(allowed: [.milliseconds]))) spawn + call)"
                case .completed(let result, true): verdict = "FAILED: " + String(decoding: result.prefix(300), as: UTF8.self)
                case .limitExceeded(let limit, let message, _): verdict = "FAILED: \(limit): \(message)"
                case .failed(let code, let message): verdict = "FAILED: \(code): \(message)"
                }
                print("worker \(profile):".padding(toLength: 17, withPad: " ", startingAt: 0) + verdict)
            }
            await pool.shutdown()
        } catch {
            print("worker self-test: could not run: \(error)")
        }
    }
}

struct Keys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Manage claim keys.", subcommands: [Generate.self])

    struct Generate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Generate a key set file with one signing key.")

        @Option(help: "Output file (written 0600).") var out: String
        @Option(help: "EdDSA or HS256.") var alg = "EdDSA"
        @Option(help: "Key id (default: random).") var kid: String?
        @Option(help: "Bind the key to one tenant: it will only verify that tenant's claims.") var tenant: String?

        func run() async throws {
            let kid = kid ?? "key-" + String(RandomID.make(prefix: "k").dropFirst(2).prefix(12))
            let key: ClaimKey
            switch alg {
            case "EdDSA": key = .generateEdDSA(kid: kid, tenantID: tenant)
            case "HS256": key = .generateHS256(kid: kid, tenantID: tenant)
            default: throw ValidationError("--alg must be EdDSA or HS256")
            }
            try KeySet(keys: [key], activeKid: kid).write(to: out)
            print("wrote \(alg) key \(kid) to \(out)")
        }
    }
}

struct Claim: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Mint claims.", subcommands: [Mint.self])

    struct Mint: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print a signed session claim.")

        @Option(help: "Key set file with a signing key.") var key: String
        @Option(help: "Session id.") var session: String
        @Option(help: "Tenant id.") var tenant: String
        @Option(help: "Actor id.") var actor: String
        @Option(help: "Workspace id.") var workspace: String
        @Option(help: "Lease id.") var lease: String
        @Option(help: "Lifetime in seconds.") var ttl = 900
        @Option(name: .customLong("allow"), help: "Claim-level allowed tool pattern (repeatable).") var allow:
            [String] = []
        @Option(help: "Issuer.") var issuer = "leasehold"
        @Option(help: "Audience.") var audience = "leasehold"

        func run() async throws {
            let keySet = try KeySet.load(from: key)
            let policy = ClaimPolicy(issuer: issuer, audience: audience, maximumLifetime: .seconds(Int64(max(ttl, 1))))
            let minter = try await ClaimMinter(keySet: keySet, policy: policy)
            let now = Date()
            let claim = SessionClaim(
                iss: issuer, aud: .one(audience), iat: Int64(now.timeIntervalSince1970),
                nbf: Int64(now.timeIntervalSince1970),
                exp: Int64(now.timeIntervalSince1970) + Int64(ttl), jti: RandomID.make(prefix: "clm"),
                sessionID: session,
                tenantID: tenant, actorID: actor, workspaceID: workspace, leaseID: lease,
                allowedTools: allow.isEmpty ? nil : allow)
            print(try await minter.sign(claim))
        }
    }
}
