import Failures
import Foundation
import Logging

extension Runtime {
    /// Where ``bootstrap(_:stateDir:config:storage:logger:)`` finds state: SQLite in a directory (nil:
    /// the state directory), or a PostgreSQL store already running.
    enum Storage {
        case sqlite(directory: String?)
        case postgres(PostgresStore)
    }

    /// Bootstraps a runner (``bootstrap(_:stateDir:config:storage:logger:)``) and runs `body` with
    /// it; on PostgreSQL the store's connection pool and change listener run alongside, from before
    /// bootstrap reads and migrates the store until `body` has returned (or thrown), and are then
    /// cancelled and awaited.
    ///
    /// A scope, not a service of `serve`'s group: bootstrap and every CLI command that opens a
    /// runtime use the store before any group runs, and the store must outlive the group's
    /// services, which use it until they stop. Cancelled, the pool fails the requests it queues
    /// and closes its connections, so the scope's end is bounded by its connect timeout.
    public static func withRuntime<T>(
        _ options: RuntimeOptions, logger: Logger, _ body: (Runtime) async throws -> T
    ) async throws -> T {
        let stateDir = try prepareDirectory(options.stateDir)
        let config = try options.configFile.map(LeaseholdConfig.load(file:)) ?? LeaseholdConfig()
        let location = try storeLocation(flag: options.store, config: config)
        let cluster: PostgresStore
        switch location {
        case .sqlite(let directory):
            let runtime = try await bootstrap(
                options, stateDir: stateDir, config: config, storage: .sqlite(directory: directory), logger: logger)
            return try await body(runtime)
        case .postgres(let postgres):
            cluster = PostgresStore(postgres, logger: logger)
        }
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                do {
                    try await cluster.run()
                } catch {
                    // run() ends on cancellation; its own failures are per operation (each
                    // caller's error), never a reason to stop serving.
                }
            }
            defer { group.cancelAll() }
            let runtime = try await bootstrap(
                options, stateDir: stateDir, config: config, storage: .postgres(cluster), logger: logger)
            return try await body(runtime)
        }
    }

    /// Where state lives: `--store`, else `LEASEHOLD_STORE`, else the config's `store:`, else
    /// SQLite in the state directory.
    static func storeLocation(
        flag: String?, config: LeaseholdConfig,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> StoreLocation {
        let named: (text: String, source: String)? =
            flag.map { ($0, "--store") }
            ?? environment["LEASEHOLD_STORE"].flatMap { $0.isEmpty ? nil : ($0, "LEASEHOLD_STORE") }
            ?? config.store.map { ($0, "store: in the config") }
        guard let named else { return .sqlite(directory: nil) }
        do {
            return try StoreLocation(parsing: named.text, environment: environment)
        } catch {
            throw ConfigError("\(named.source): \(error)")
        }
    }

    /// Runs `body` until it succeeds, for up to `limit`: a node started together with its database
    /// (a host boot, a compose of services) waits for it rather than failing at once. Each failure
    /// is logged; the last one is thrown.
    static func retryingWhileStarting<T>(
        _ what: String, logger: Logger, limit: Duration = .seconds(60), _ body: () async throws -> T
    ) async throws -> T {
        let deadline = ContinuousClock.now.advanced(by: limit)
        var delay = Duration.milliseconds(250)
        while true {
            do {
                return try await body()
            } catch {
                guard ContinuousClock.now.advanced(by: delay) < deadline else { throw error }
                logger.warning(
                    "cannot \(what) yet; trying again",
                    metadata: ["error": "\(logDescription(of: error))", "in": "\(delay)"])
                try await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(5))
            }
        }
    }
}
