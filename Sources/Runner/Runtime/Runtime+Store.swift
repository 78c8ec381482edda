import Failures
import Foundation
import Logging

/// The PostgreSQL store's connection pool and change listener, running from bootstrap until the
/// runner stops.
///
/// A task of its own, not a service of `serve`'s group: bootstrap (and every CLI command that opens
/// a runtime) reads and migrates the store before any group runs, and the store must outlive the
/// group's services, which use it until they stop. `serve` ends it last (``stop()``).
final class StoreRun: Sendable {
    private let task: Task<Void, Never>

    init(_ store: PostgresStore) {
        task = Task {
            do {
                try await store.run()
            } catch {
                // run() ends on cancellation (stop) or graceful shutdown; its own failures are
                // per operation (each caller's error), never a reason to stop serving.
            }
        }
    }

    /// Closes the pool and the listener; operations after this fail.
    func stop() { task.cancel() }
}

extension Runtime {
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
