import Foundation
import Hummingbird
import Logging
import MCP
import Metrics
import Prometheus
import Sandbox
import ServiceLifecycle
import Synchronization
import UnixSignals
import WorkspaceRegistry

#if canImport(Glibc)
    import Glibc
#endif

/// Where and how to run.
public struct RuntimeOptions: Sendable {
    /// State directory (SQLite, keys, operator key).
    public var stateDir: String
    /// `leasehold.yaml`, optional.
    public var configFile: String?
    /// Policies directory.
    public var policiesDir: String
    /// Where spans go (OTLP/HTTP); nil: the config's `otlp_endpoint`, else no tracing.
    public var otlpEndpoint: String?
    /// `--store`: where state lives (``StoreLocation``); nil: `LEASEHOLD_STORE`, else the config's
    /// `store:`, else SQLite in the state directory.
    public var store: String?

    /// Creates options.
    public init(
        stateDir: String = "./.leasehold", configFile: String? = nil, policiesDir: String = "./policies",
        otlpEndpoint: String? = nil, store: String? = nil
    ) {
        self.stateDir = stateDir
        self.configFile = configFile
        self.policiesDir = policiesDir
        self.otlpEndpoint = otlpEndpoint
        self.store = store
    }
}

/// A bootstrapped runner: state directory, keys, store, gateway and admin service.
public struct Runtime: Sendable {
    /// Absolute state directory.
    public let stateDir: String
    /// `leasehold.yaml` as written (its catalog, seeded workspaces and store); every setting in
    /// force is in ``settings``.
    public let config: LeaseholdConfig
    /// The configuration in force: the file resolved over its defaults, with the flags merged in.
    public let settings: RunnerSettings
    /// The gateway.
    public let gateway: Gateway
    /// The admin service (operator and tenant keys).
    public let admin: AdminService
    /// Where the operator key came from (a file path, or the environment).
    public let operatorKeySource: String
    /// The key set file.
    public let keysFile: String
    /// The policies directory, watched for edits while serving.
    public let policiesDir: String
    /// The confined workers.
    public let pool: WorkerPool
    /// The config file, whose `servers:` is reloaded with the policies.
    let configFile: String?
    /// The root rules, which also bound upstream servers' mounts.
    let workspaceRules: WorkspaceRules
    /// Batches and exports spans when tracing is on.
    let tracingService: (any Service)?
    /// On a node of a cluster (PostgreSQL store), this node's id; nil on SQLite.
    let clusterNode: String?
    let logger: Logger

    /// Prepares the state directory (creating keys and the operator key on first start), opens the
    /// store, loads policies and catalog, and seeds configured workspaces.
    /// Says at start how worker memory, processes and CPU are held on this host, and which tiers
    /// are refused because a limit cannot be (doctor says the same).
    static func logLimitEnforcement(
        _ enforcement: LimitEnforcement, policy: RiskPolicy, catalog: Catalog, logger: Logger
    ) {
        let cgroups = enforcement.cgroups
        logger.notice(
            "worker cgroups",
            metadata: [
                "version": "\(cgroups?.version.rawValue ?? "none")",
                "controllers": "\(cgroups?.controllers.sorted().map(\.rawValue).joined(separator: ",") ?? "")",
                "parent": "\(cgroups?.parents.values.sorted().first ?? "")",
            ])
        for warning in PolicyReport.check(policy, catalog: catalog, enforcement: enforcement).warnings
        where warning.contains("cannot be enforced") {
            logger.warning("\(warning)")
        }
    }

    ///
    /// A PostgreSQL store comes already running (``withRuntime(_:logger:_:)``).
    static func bootstrap(
        _ options: RuntimeOptions, stateDir: String, config: LeaseholdConfig, storage: Storage, logger: Logger
    ) async throws -> Runtime {
        let settings = try RunnerSettings(config, otlpEndpoint: options.otlpEndpoint)

        let keysFile = settings.keysFile(stateDirectory: stateDir)
        if !FileManager.default.fileExists(atPath: keysFile) {
            let kid = "dev-" + String(RandomID.make(prefix: "k").dropFirst(2).prefix(12))
            try KeySet(keys: [ClaimKey.generateEdDSA(kid: kid)], activeKid: kid).write(to: keysFile)
            logger.notice("generated an Ed25519 dev signing key", metadata: ["file": "\(keysFile)", "kid": "\(kid)"])
        }
        let keySet = try KeySet.load(from: keysFile)

        let operatorKey: String
        let operatorKeySource: String
        if let fromEnvironment = ProcessInfo.processInfo.environment["LEASEHOLD_OPERATOR_KEY"], !fromEnvironment.isEmpty
        {
            operatorKey = fromEnvironment
            operatorKeySource = "environment LEASEHOLD_OPERATOR_KEY"
        } else {
            let path = stateDir + "/operator.key"
            if !FileManager.default.fileExists(atPath: path) {
                try SecretFile.write(Data(RandomID.secret(prefix: "lh_op").utf8), to: path)
            }
            operatorKey = try SecretFile.read(path)
            operatorKeySource = path
        }

        let policy = try RiskPolicy.load(directory: options.policiesDir)
        let catalog = try config.loadCatalog()

        let nodeID = settings.nodeID ?? ProcessInfo.processInfo.hostName
        let store: any LeaseholdStore
        let sqliteDirectory: String
        let location: StoreLocation
        let cluster: PostgresStore?
        switch storage {
        case .sqlite(let directory):
            location = .sqlite(directory: directory)
            cluster = nil
            sqliteDirectory = try directory.map { try prepareDirectory($0) } ?? stateDir
            store = try SQLiteStore(path: sqliteDirectory + "/leasehold.sqlite")
        case .postgres(let running):
            location = .postgres(running.location)
            cluster = running
            // The node id ends this node's MCP connection ids (routing) and names its records.
            guard Identifier.isValid(nodeID) else {
                throw ConfigError(
                    "node_id \(nodeID) must be 1-64 characters of [A-Za-z0-9_-] on a node of a cluster; set node_id")
            }
            sqliteDirectory = stateDir
            try await Self.retryingWhileStarting("migrate the store at \(location)", logger: logger) {
                try await running.migrate()
            }
            store = running
            logger.notice("store: PostgreSQL", metadata: ["store": "\(location)", "node": "\(nodeID)"])
        }
        let workerExecutable = settings.workers.executable ?? WorkerLaunch.defaultExecutable()
        let rules = try workspaceRules(
            stateDir: stateDir, config: config, configFile: options.configFile, policiesDir: options.policiesDir,
            keysFile: keysFile, workerExecutable: workerExecutable, createBases: true, storeDirectory: sqliteDirectory)
        // Workers of a root runner are never host root: each tenant gets unprivileged host ids.
        let hostIDs =
            geteuid() == 0
            ? try TenantHostIDs(
                first: settings.workers.firstHostID, count: settings.workers.hostIDCount, store: store) : nil
        let claimPolicy = settings.claims
        // The audit key sits in the state directory, which no worker ever has mounted (invariant 14).
        let auditCheckpoints = settings.audit.checkpoints
        let poolSettings = settings.workers.pool
        let auditKey = try AuditSigningKey.loadOrCreate(stateDir: stateDir)
        let syncInterval = settings.audit.batchedSyncInterval
        let audit: AuditLog
        switch location {
        case .sqlite:
            audit = try AuditLog(
                path: sqliteDirectory + "/audit.sqlite", node: nodeID, signer: auditKey,
                checkpointEvery: auditCheckpoints.records, syncInterval: syncInterval, logger: logger)
        case .postgres(let postgres):
            audit = try await Self.retryingWhileStarting("open the audit trail at \(location)", logger: logger) {
                try AuditLog(
                    postgres: postgres, node: nodeID, signer: auditKey, checkpointEvery: auditCheckpoints.records,
                    syncInterval: syncInterval, logger: logger)
            }
        }
        let metrics = LeaseholdMetrics(perTenantLabels: settings.metrics.perTenantLabels)
        let otlpEndpoint = settings.otlpEndpoint
        let tracingBackend = try otlpEndpoint.map { try LeaseholdTracing.otlp(endpoint: $0, logger: logger) }
        let tracing = tracingBackend?.tracing
        let tracingService = tracingBackend?.service
        if let otlpEndpoint {
            logger.notice("tracing: spans exported over OTLP/HTTP", metadata: ["endpoint": "\(otlpEndpoint)"])
        }
        let launch = try WorkerLaunch(
            executable: workerExecutable, supportDirectory: stateDir + "/worker")
        let pool = WorkerPool(
            launch: launch, settings: poolSettings,
            cgroups: settings.workers.cgroups ? WorkerCgroups.detect() : nil, logger: logger,
            onEvent: { event in
                metrics.worker(event)
                // Spawned for a traced call: the worker's confinement, as a child of the tool's span
                // (the pool runs in the call's task, so its task-local context is the tool's).
                if let tracing, event.kind == .spawned, let duration = event.spawnDuration {
                    tracing.finishedChild(
                        "leasehold.worker.spawn", lasted: duration,
                        attributes: [
                            "leasehold.worker.id": event.workerID ?? "", "leasehold.tier": event.tier,
                            "leasehold.isolation": event.isolation.rawValue,
                        ])
                }
                await audit.appendWithoutWaiting(AuditEvent(worker: event))
            })
        Self.logLimitEnforcement(pool.limitEnforcement, policy: policy, catalog: catalog, logger: logger)
        let upstreams = try UpstreamRegistry(
            servers: try Self.upstreamServers(
                configFile: options.configFile, policy: policy, catalog: catalog, rules: rules, stateDir: stateDir),
            emptyRoot: stateDir + "/upstream-empty",
            identity: try await UpstreamIdentity(file: stateDir + "/upstream-identity.json"))
        // Space held for the audit log on the state directory's filesystem; allocated by `serve`.
        let reserveBytes = settings.audit.reserveBytes
        let reserve = reserveBytes > 0 ? AuditReserve(stateDirectory: stateDir, bytes: reserveBytes) : nil
        if let reserve { await audit.onDiskFull { reserve.release() } }
        // On a cluster node a write through another node would not retire this node's cached
        // reads in time (each node's cache knows only its own writes): no result cache there.
        let clusterNode = cluster == nil ? nil : nodeID
        let cache = clusterNode == nil ? ResultCache() : ResultCache(maximumEntries: 0, maximumBytes: 0)
        let gateway = Gateway(
            store: store, verifier: try await ClaimVerifier(keySet: keySet, policy: claimPolicy),
            minter: try await ClaimMinter(keySet: keySet, policy: claimPolicy), catalog: catalog, policy: policy,
            audit: audit, cache: cache, workspaceRules: rules, hostIDs: hostIDs, executor: pool,
            refusalSampling: settings.audit.unauthenticatedRefusals, diskQuotas: settings.tenants.disk,
            auditReserve: reserve, upstreams: upstreams, metrics: metrics, tracing: tracing,
            connectionIDSuffix: clusterNode.map { "." + $0 } ?? "",
            requestStateKey: clusterNode == nil ? nil : RequestStates.sharedKey(from: auditKey), logger: logger)
        let admin = AdminService(
            gateway: gateway, operatorKey: operatorKey, sessionLimits: settings.tenants.sessions)
        for workspace in config.workspaces ?? [] {
            if try await store.workspace(tenantID: workspace.tenantID, workspaceID: workspace.workspaceID) == nil {
                _ = try await admin.registerWorkspace(workspace, by: .operator)
            }
        }
        for (workspace, error) in try await refusedRegistrations(store: store, rules: rules) {
            logger.warning(
                "a registered workspace root breaks the root rules; remove it (leasehold doctor lists them all)",
                metadata: [
                    "tenant": "\(workspace.tenantID)", "workspace": "\(workspace.workspaceID)",
                    "root": "\(workspace.root)", "rule": "\(error.code)",
                ])
        }
        return Runtime(
            stateDir: stateDir, config: config, settings: settings, gateway: gateway, admin: admin,
            operatorKeySource: operatorKeySource, keysFile: keysFile, policiesDir: options.policiesDir, pool: pool,
            configFile: options.configFile, workspaceRules: rules, tracingService: tracingService,
            clusterNode: clusterNode, logger: logger)
    }

    /// `servers:` of the config, checked against what else the runner knows: each server's
    /// default tier exists and may run programs (seccomp profile exec), its id is not a catalog
    /// server's, and no mount is, holds or lies inside the runner's own files (state dir,
    /// policies, config, keys, binaries), a workspace base, or a kernel or secret tree.
    static func upstreamServers(
        configFile: String?, policy: RiskPolicy, catalog: Catalog, rules: WorkspaceRules, stateDir: String,
        reloading current: Set<String> = []
    ) throws -> [UpstreamServer] {
        guard let configFile else { return [] }
        let servers: [UpstreamServer]
        do {
            servers = try UpstreamServers.load(configFile: configFile)
        } catch {
            throw ConfigError("servers:\n\(error)")
        }
        let kernelTrees = ["/proc", "/sys", "/dev", "/root", "/run", "/boot", "/etc"]
        var forbidden: [(name: String, chain: PathChain)] = rules.protected
            .filter { !$0.name.hasPrefix("system directory") || kernelTrees.contains($0.chain.path) }
            .map { ($0.name, $0.chain) }
        forbidden += rules.bases.map { ("workspace base", $0) }
        for server in servers {
            if let tier = server.tier {
                guard let settings = policy.tiers[tier] else {
                    throw ConfigError("server \(server.id): tier \(tier) is not defined in tiers.yaml")
                }
                guard server.transport == .http || settings.seccompProfile == .exec else {
                    throw ConfigError(
                        "server \(server.id): tier \(tier) has seccomp_profile \(settings.seccompProfile), which cannot run a program; use a tier with seccomp_profile exec (shipped: upstream)"
                    )
                }
            }
            if catalog.servers.contains(server.id), !current.contains(server.id) {
                throw ConfigError("server \(server.id) is also declared under catalog:; name it once")
            }
            for mount in server.mounts {
                guard let chain = PathChain.resolveExisting(mount) else {
                    throw ConfigError("server \(server.id): mount \(mount) does not exist")
                }
                guard chain.path != "/" else {
                    throw ConfigError("server \(server.id): mount / would show the whole host")
                }
                for entry in forbidden where chain.isWithin(entry.chain) || entry.chain.isWithin(chain) {
                    throw ConfigError(
                        "server \(server.id): mount \(mount) is, holds or lies inside the \(entry.name) (\(entry.chain.path)), which no worker may see"
                    )
                }
            }
        }
        return servers
    }

    /// The root rules of a runner: its workspace bases (created 0700 when `createBases`), and the
    /// paths no root may touch (state dir, policies, config, keys, binaries, system directories).
    public static func workspaceRules(
        stateDir: String, config: LeaseholdConfig, configFile: String?, policiesDir: String, keysFile: String,
        workerExecutable: String, createBases: Bool, storeDirectory: String? = nil
    ) throws -> WorkspaceRules {
        var bases: [PathChain] = []
        for configured in config.workspaceBases ?? RunnerSettings.defaults.workspaceBases(stateDirectory: stateDir) {
            let path = createBases ? try prepareDirectory(configured) : configured
            guard let chain = PathChain.resolveExisting(path), chain.isDirectory else {
                throw ConfigError("workspace base \(configured) does not exist or is not a directory")
            }
            bases.append(chain)
        }
        let executable = URL(fileURLWithPath: CommandLine.arguments.first ?? "leasehold").resolvingSymlinksInPath().path
        var protectedPaths: [(name: String, path: String)] = [
            ("state directory", stateDir), ("policies directory", policiesDir), ("key set", keysFile),
            ("worker executable", workerExecutable), ("leasehold executable", executable),
        ]
        if let configFile { protectedPaths.append(("config file", configFile)) }
        // `--store sqlite:DIR` elsewhere than the state directory: the sessions and the audit trail.
        if let storeDirectory, storeDirectory != stateDir { protectedPaths.append(("store directory", storeDirectory)) }
        if let catalogFile = config.catalogFile { protectedPaths.append(("catalog file", catalogFile)) }
        let rules = WorkspaceRules(bases: bases, protectedPaths: protectedPaths)
        for base in bases {
            do {
                try rules.validateBase(base, others: bases)
            } catch {
                throw ConfigError("\(error.message)")
            }
        }
        return rules
    }

    /// Registered workspaces whose roots the rules would refuse today (registered before the rules
    /// existed, or moved since), with the rule each breaks.
    public static func refusedRegistrations(store: any LeaseholdStore, rules: WorkspaceRules) async throws
        -> [(Workspace, WorkspaceError)]
    {
        var refused: [(Workspace, WorkspaceError)] = []
        let all = try await store.allWorkspaces()
        for workspace in all {
            do {
                try rules.validate(
                    workspace,
                    existing: all.filter { $0.tenantID != workspace.tenantID || $0.workspaceID != workspace.workspaceID })
            } catch {
                refused.append((workspace, error))
            }
        }
        return refused
    }

    /// Creates the directory (0700) if needed and returns its canonical absolute path.
    public static func prepareDirectory(_ path: String) throws -> String {
        try FileManager.default.createDirectory(
            atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        guard let resolved = realpath(path, nil) else { throw ConfigError("cannot resolve state directory \(path)") }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// Points swift-metrics (the process-wide `MetricsSystem`) at this runner's registry, so what
    /// any library counts through swift-metrics shows at `/metrics` too. Once per process: `serve`.
    public func bootstrapMetricsSystem() {
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: gateway.metrics.registry))
    }

    /// Serves until shutdown: HTTP when `http` is set, stdio when `stdio` is true (stdin EOF ends the run).
    public func serve(
        http: HTTPSettings?, stdio: Bool, stdioClaim: String?, metricsListen: (host: String, port: Int)? = nil,
        onHTTPReady: @escaping @Sendable (Int) async -> Void,
        onMetricsReady: @escaping @Sendable (Int) async -> Void = { _ in }
    ) async throws {
        // A file-size limit (or a full disk) must make an audit write fail, which refuses the call;
        // the default action of SIGXFSZ would instead kill the runner for every tenant.
        signal(SIGXFSZ, SIG_IGN)
        // Workspaces sharing the state directory's filesystem must not be able to fill what the
        // audit log needs: hold its reserve from the start (see AuditReserve).
        if let reserve = gateway.disk.reserve, !reserve.allocate() {
            logger.warning(
                "cannot allocate the audit reserve (the filesystem is full or lacks fallocate); the audit log has no room held for it",
                metadata: ["path": "\(reserve.path)", "bytes": "\(reserve.bytes)"])
        }
        // While this process serves, its calls without an outcome record are in flight, not
        // unknown, to `leasehold audit verify` and the audit API. Without the announcement they
        // would read as a crash: worth a warning, not worth refusing to serve.
        do {
            try gateway.audit.announceRunner()
        } catch {
            logger.warning(
                "cannot announce this runner to audit verify; its calls in flight will read as outcome unknown",
                metadata: ["error": "\(error)"])
        }
        // Upstream servers' tools are in the catalog before the first request is served (a server
        // that cannot be listed has none; `GET /api/v1/servers` says why).
        await gateway.listUpstreams()
        // First in, last out: the final checkpoint on shutdown covers what every other service wrote.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        // Before everything: it stops last, so the spans of the last requests are exported.
        if let tracingService { services.append(.init(service: tracingService)) }
        services.append(
            .init(
                service: AuditCheckpointer(
                    audit: gateway.audit, interval: settings.audit.checkpoints.interval, logger: logger)))
        // Unauthenticated refusals are counted per source and written once per interval; the last
        // interval's counts are written at shutdown, after the HTTP server has drained.
        services.append(.init(service: RefusalSampleFlusher(gateway: gateway)))
        if !gateway.upstreams.servers.isEmpty { services.append(.init(service: UpstreamRelister(gateway: gateway))) }
        // Listings a call asked for (its server said its tools changed); before the workers in
        // the list, so it stops after them (a listing in flight then fails like its worker).
        services.append(.init(service: UpstreamRefresher(gateway: gateway)))
        // Connections and workers draw on the same descriptors: take all the kernel allows, and
        // leave workers theirs whatever the connection cap says (DescriptorBudget).
        let descriptors = DescriptorBudget.raisingSoftLimit(workers: settings.workers.pool.maximumWorkers)
        if var http {
            let connections = descriptors.connections(configured: http.maximumConnections)
            if connections < http.maximumConnections {
                logger.warning(
                    "the open-file limit lowers the HTTP connection cap; raise LimitNOFILE (ulimit -n) to serve more",
                    metadata: [
                        "RLIMIT_NOFILE": "\(descriptors.softLimit)", "reserved": "\(descriptors.reserve)",
                        "max_connections": "\(http.maximumConnections)", "in_force": "\(connections)",
                    ])
            }
            let perAddress = DescriptorBudget.connectionsPerAddress(
                configured: http.maximumConnectionsPerAddress, connections: connections)
            if perAddress < http.maximumConnectionsPerAddress {
                logger.warning(
                    "the lowered connection cap lowers the per-address cap, so one client cannot hold every connection",
                    metadata: [
                        "max_connections_per_address": "\(http.maximumConnectionsPerAddress)",
                        "in_force": "\(perAddress)",
                    ])
                http.maximumConnectionsPerAddress = perAddress
            }
            let port = http.port
            let oauth = try settings.oauth.validated()
            let app = HTTPServer.application(
                admin: admin, settings: http, maximumConnections: connections, oauth: oauth,
                subjectTokens: oauth.issuers.isEmpty
                    ? nil : try await SubjectTokenVerifier(config: oauth, logger: logger),
                onServerRunning: { channel in await onHTTPReady(channel.localAddress?.port ?? port) },
                logger: logger)
            services.append(.init(service: app))
        }
        if let metricsListen {
            services.append(
                .init(
                    service: MetricsEndpoint.application(
                        gateway: gateway, host: metricsListen.host, port: metricsListen.port,
                        onServerRunning: { channel in
                            await onMetricsReady(channel.localAddress?.port ?? metricsListen.port)
                        },
                        logger: logger)))
        }
        if stdio {
            services.append(
                .init(
                    service: StdioService(gateway: gateway, claim: stdioClaim, logger: logger),
                    successTerminationBehavior: .gracefullyShutdownGroup))
        }
        // Trap SIGHUP before anything runs, so a reload signal sent as soon as the server is up is
        // never the default action (which ends the process).
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        services.append(
            .init(
                service: PolicyReloader(
                    gateway: gateway, directory: policiesDir, hangups: hangups,
                    interval: settings.policyReloadInterval, logger: logger,
                    servers: configFile.map { file in
                        ServersReload(
                            configFile: file, rules: workspaceRules, stateDir: stateDir, gateway: gateway, logger: logger)
                    })))
        // http upstream servers' GET streams and the listings their list changes ask for.
        services.append(.init(service: UpstreamListeners(gateway: gateway)))
        services.append(
            .init(
                service: Reaper(
                    gateway: gateway, idleTimeout: http?.idleTimeout ?? RunnerSettings.defaults.http.idleTimeout)))
        // What other nodes sharing the store changed (a single-node store has nothing: it ends).
        services.append(.init(service: StoreChangeApplier(gateway: gateway), successTerminationBehavior: .ignore))
        // Last in, first out: on shutdown the workers die before anything else stops.
        services.append(.init(service: WorkerTimers(pool: pool)))
        let group = ServiceGroup(
            configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        await gateway.connections.removeAll()
        await gateway.upstreams.shutdown()
        await pool.shutdown()
        pool.limitEnforcement.cgroups?.removeRunnerGroups()
        await gateway.flushRefusalSamples()
        // Anything the lines above recorded after the checkpointer stopped (normally nothing).
        _ = try? await gateway.audit.checkpoint()
        gateway.audit.retireRunner()
    }
}

/// Ends each interval of the unauthenticated-refusal sampler: writes one
/// `request.refused.sampled` record per source counted in it (``RefusalSampler``), and the last
/// interval's at graceful shutdown.
struct RefusalSampleFlusher: Service {
    let gateway: Gateway

    func run() async throws {
        let interval = gateway.unauthenticatedRefusals.sampling.interval
        while !Task.isShuttingDownGracefully {
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
            } catch {
                break
            }
            await gateway.flushRefusalSamples()
        }
        await gateway.flushRefusalSamples()
    }
}

/// Lists again, with backoff, every upstream server whose last listing failed (it has no tools
/// meanwhile): a server slow to start, or down when `serve` started, joins once it answers.
/// 1 s after a failure, doubling to 60 s while it keeps failing.
struct UpstreamRelister: Service {
    let gateway: Gateway

    func run() async throws {
        var failures: [String: (count: Int, due: ContinuousClock.Instant)] = [:]
        while !Task.isShuttingDownGracefully {
            do {
                // A tick, not an event: a failed server sends nothing when it comes back, so the
                // only way to learn it is to ask again (the backoff below spaces the asking).
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(1)) }
            } catch {
                return
            }
            let failed = Set(gateway.upstreams.status.filter { $0.state == "failed" }.map(\.id))
            failures = failures.filter { failed.contains($0.key) }
            for id in failed.sorted() {
                let now = ContinuousClock.now
                guard let failure = failures[id] else {
                    failures[id] = (1, now + .seconds(1))
                    continue
                }
                guard failure.due <= now else { continue }
                await gateway.refreshUpstream(id)
                let count = failure.count + 1
                failures[id] = (count, now + .seconds(min(60, 1 << min(count - 1, 6))))
            }
        }
    }
}

/// Lists again each upstream server a call asked for (``Gateway/requestUpstreamRefresh(_:)``),
/// servers side by side; asks for a server whose listing is running make one more listing after
/// it, not one each. Ends on graceful shutdown, cancelling the listings in flight.
struct UpstreamRefresher: Service {
    let gateway: Gateway

    func run() async throws {
        let listings = Listings()
        await withDiscardingTaskGroup { group in
            for await id in gateway.upstreamRefreshes.cancelOnGracefulShutdown() {
                let start = listings.state.withLock { listing in
                    guard listing[id] == nil else {
                        listing[id] = true
                        return false
                    }
                    listing[id] = false
                    return true
                }
                guard start else { continue }
                group.addTask {
                    var again = true
                    while again && !Task.isCancelled {
                        await gateway.refreshUpstream(id)
                        again = listings.state.withLock { listing in
                            if listing[id] == true {
                                listing[id] = false
                                return true
                            }
                            listing[id] = nil
                            return false
                        }
                    }
                }
            }
            group.cancelAll()
        }
    }

    /// Per server being listed: whether another ask came meanwhile.
    private final class Listings: Sendable {
        let state = Mutex<[String: Bool]>([:])
    }
}

/// Runs the pool's lease and idle timers and prepares spare workers; on graceful shutdown
/// destroys every worker.
struct WorkerTimers: Service {
    let pool: WorkerPool

    func run() async throws {
        await cancelWhenGracefulShutdown { await pool.run() }
        await pool.shutdown()
    }
}

/// MCP over stdin/stdout for one client; the claim comes per request in `_meta` or is bound at start.
struct StdioService: Service {
    let gateway: Gateway
    let claim: String?
    let logger: Logger

    func run() async throws {
        let connectionID = RandomID.make(prefix: "stdio")
        let transport = ClaimCarryingTransport(
            wrapping: StdioTransport(logger: logger), logger: logger, tracing: gateway.tracing)
        let server = await MCPHandlers.makeServer(
            gateway: gateway, connectionID: connectionID, endpointServer: nil, fallbackClaim: claim,
            stdio: transport)
        await gateway.connections.register(connectionID, server: server, httpTransport: nil, endpointServer: nil)
        await transport.serveModern(
            with: ModernStdio(gateway: gateway, connectionID: connectionID, fallbackClaim: claim) { [transport] data in
                try? await transport.send(data)
            })
        try await server.start(transport: transport)
        // Ends when stdin closes (the client went away) or the group shuts down, whichever is first.
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await server.waitUntilCompleted() }
            group.addTask {
                do {
                    try await gracefulShutdown()
                    await server.stop()
                } catch {}
            }
            await group.next()
            group.cancelAll()
        }
        await gateway.connections.remove(connectionID)
    }
}

/// Reloads `policies/` on SIGHUP and when its files change (checked every `interval`).
///
/// Polling a content hash rather than watching inodes: editors and config management replace
/// files by rename, and a hash also ignores touches that change nothing.
struct PolicyReloader: Service {
    let gateway: Gateway
    let directory: String
    let hangups: UnixSignalsSequence
    let interval: Duration?
    let logger: Logger
    /// `servers:` of the config file, reloaded by the same signal and the same ticks.
    let servers: ServersReload?

    private enum Trigger {
        case hangup, tick
        /// Another node sharing the store loaded this policy version.
        case announced(String)

        var isTick: Bool {
            if case .tick = self { true } else { false }
        }
    }

    /// How long changed policy files must keep the same bytes before a tick reads them.
    static let settle: Duration = .milliseconds(500)

    func run() async throws {
        var seen = PolicyFiles.fingerprint(directory: directory)
        var seenServers = servers?.fingerprint()
        let (triggers, continuation) = AsyncStream<Trigger>.makeStream(bufferingPolicy: .bufferingNewest(4))
        await withDiscardingTaskGroup { group in
            group.addTask {
                for await _ in hangups { continuation.yield(.hangup) }
            }
            // Another node sharing the store loaded a policy this one does not run.
            group.addTask {
                for await version in gateway.policyAnnouncements { continuation.yield(.announced(version)) }
            }
            if let interval {
                group.addTask {
                    while !Task.isCancelled {
                        try? await Task.sleep(for: interval)
                        continuation.yield(.tick)
                    }
                }
            }
            for await trigger in triggers.cancelOnGracefulShutdown() {
                if let servers {
                    let fingerprint = servers.fingerprint()
                    if !trigger.isTick || fingerprint != seenServers {
                        seenServers = fingerprint
                        await servers.reload()
                    }
                }
                let fingerprint = PolicyFiles.fingerprint(directory: directory)
                // A tick reloads only files that changed since the last attempt (applied or
                // rejected), so a broken file is reported once, not every interval.
                if trigger.isTick && fingerprint == seen { continue }
                if trigger.isTick {
                    // A file written in place (truncated, then written) is half a file for a
                    // moment: a tick reads changed files only once they held still for
                    // `settle`, else the next tick looks again. (The load itself also refuses bytes
                    // that changed while it read them: Gateway.reloadPolicy.)
                    try? await Task.sleep(for: Self.settle)
                    guard PolicyFiles.fingerprint(directory: directory) == fingerprint else { continue }
                }
                seen = fingerprint
                if case .hangup = trigger {
                    logger.notice("SIGHUP: reloading policies", metadata: ["directory": "\(directory)"])
                }
                let loaded = await gateway.reloadPolicy(directory: directory)
                if case .announced(let version) = trigger, (try? loaded.get()) != version {
                    logger.error(
                        "another node runs a policy these files do not give: the nodes' policies directories differ",
                        metadata: ["announced": "\(version)", "directory": "\(directory)"])
                }
            }
            group.cancelAll()
        }
    }
}

/// Reloads `servers:` of the config file: validated like at start (file:line errors, tiers,
/// mounts); an invalid list is rejected and the one in force stays.
struct ServersReload: Sendable {
    let configFile: String
    let rules: WorkspaceRules
    let stateDir: String
    let gateway: Gateway
    let logger: Logger

    /// A hash of the config file's bytes (nil when it cannot be read).
    func fingerprint() -> String? {
        FileManager.default.contents(atPath: configFile).map { Digest.sha256Hex($0) }
    }

    func reload() async {
        let resolver = gateway.resolver
        do {
            let servers = try Runtime.upstreamServers(
                configFile: configFile, policy: resolver.policy, catalog: resolver.catalog, rules: rules,
                stateDir: stateDir, reloading: Set(gateway.upstreams.servers.keys))
            await gateway.reloadUpstreams(servers)
        } catch {
            logger.error(
                "servers: reload rejected; the servers in force stay",
                metadata: ["file": "\(configFile)", "error": "\(error)"])
        }
    }
}

/// Listens to every http upstream server (``HTTPUpstream/listen(onToolsChanged:onStream:)``): its
/// GET stream, and a new listing, swapped into the catalog, whenever it says its tools changed
/// (and when it can be reached again after its listing failed). Clients of servers a reload adds
/// or changes join as they are made; those it removes or changes stop. Ends on graceful shutdown.
struct UpstreamListeners: Service {
    let gateway: Gateway

    func run() async throws {
        let upstreams = gateway.upstreams
        let logger = gateway.logger
        await withDiscardingTaskGroup { group in
            for await client in upstreams.clientsToListen.cancelOnGracefulShutdown() {
                group.addTask {
                    await client.listen(
                        onToolsChanged: { id in await gateway.refreshUpstream(id) },
                        onStream: { state in
                            // Reachable again after a listing at start (or a reload) failed: list it now.
                            if state == .open || state == .notOffered,
                                upstreams.status.first(where: { $0.id == client.server.id })?.state == "failed"
                            {
                                client.signals.toolsChanged()
                            }
                            guard upstreams.record(client, stream: state) else { return }
                            let metadata: Logger.Metadata = ["server": "\(client.server.id)", "stream": "\(state)"]
                            if case .open = state {
                                logger.info("upstream GET stream open", metadata: metadata)
                            } else {
                                logger.notice("upstream GET stream not open", metadata: metadata)
                            }
                        })
                }
            }
            group.cancelAll()
        }
    }
}

/// Closes idle MCP connections and prunes expired replay bindings, once a minute; closes every
/// connection on graceful shutdown.
struct Reaper: Service {
    let gateway: Gateway
    let idleTimeout: Duration

    func run() async throws {
        while !Task.isShuttingDownGracefully {
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(60)) }
            } catch {
                break
            }
            let cutoff = Date().addingTimeInterval(-TimeInterval(idleTimeout.components.seconds))
            _ = await gateway.connections.reapIdle(before: cutoff)
            try? await gateway.store.pruneBindings(expiredBefore: Date())
        }
        // The group shuts services down in reverse order, so this runs before the HTTP server
        // drains: ending the open SSE streams here is what lets that drain finish instead of
        // waiting forever on a client that left a GET stream open.
        await gateway.connections.removeAll()
    }
}
