import Foundation
import Runner
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A throwaway PostgreSQL server (Debian's binaries through `scripts/pg-throwaway.sh`) shared by
/// every test of this process, with a fresh database per test: tests never see each other's rows.
/// Stopped when the test process exits. Needs the `postgresql` package (`make test` installs it);
/// without it the tests that ask for one fail with that reason, they are not skipped.
enum ThrowawayPostgres {
    struct Unavailable: Error, CustomStringConvertible {
        let description: String
    }

    private struct Server: Sendable {
        let directory: String
        let port: Int
    }

    private static let server = Mutex<Result<Server, Unavailable>?>(nil)

    static var repositoryRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
    }

    /// A new, empty database on the shared server.
    static func freshDatabase(poolSize: Int = 8) throws -> StoreLocation.PostgresLocation {
        let server = try started()
        let name = "t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(20)
        try run([
            "/usr/bin/psql", "-h", "127.0.0.1", "-p", String(server.port), "-U", "leasehold", "-d", "postgres",
            "-v", "ON_ERROR_STOP=1", "-qc", "CREATE DATABASE \(name)",
        ])
        return StoreLocation.PostgresLocation(
            host: "127.0.0.1", port: server.port, user: "leasehold", password: nil, database: String(name),
            poolSize: poolSize)
    }

    /// Runs SQL against `location` with psql (a test's way to tamper with or inspect rows).
    @discardableResult
    static func psql(_ location: StoreLocation.PostgresLocation, _ sql: String) throws -> String {
        try run([
            "/usr/bin/psql", "-h", location.host, "-p", String(location.port), "-U", location.user, "-d",
            location.database, "-v", "ON_ERROR_STOP=1", "-tAqc", sql,
        ])
    }

    private static func started() throws -> Server {
        try server.withLock { state in
            if let state { return try state.get() }
            let result: Result<Server, Unavailable>
            do {
                let directory = FileManager.default.temporaryDirectory
                    .appendingPathComponent("lh-pg-\(getpid())-\(UUID().uuidString.prefix(8))").path
                let port = try freePort()
                let script = repositoryRoot.appendingPathComponent("scripts/pg-throwaway.sh").path
                try run(["/bin/bash", script, "start", directory, String(port)])
                stopDirectory.withLock { $0 = directory }
                atexit {
                    guard let directory = ThrowawayPostgres.stopDirectory.withLock({ $0 }) else { return }
                    let script = ThrowawayPostgres.repositoryRoot.appendingPathComponent("scripts/pg-throwaway.sh")
                        .path
                    _ = try? ThrowawayPostgres.run(["/bin/bash", script, "stop", directory])
                    try? FileManager.default.removeItem(atPath: directory)
                }
                result = .success(Server(directory: directory, port: port))
            } catch let error as Unavailable {
                result = .failure(error)
            } catch {
                result = .failure(Unavailable(description: "\(error)"))
            }
            state = result
            return try result.get()
        }
    }

    private static let stopDirectory = Mutex<String?>(nil)

    /// A TCP port nothing listens on right now (bound to port 0, read back, closed).
    private static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Unavailable(description: "socket() failed") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { generic in
                Glibc.bind(fd, generic, length) == 0 && getsockname(fd, generic, &length) == 0
            }
        }
        guard bound else { throw Unavailable(description: "could not find a free port") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    @discardableResult
    fileprivate static func run(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: arguments[0])
        process.arguments = Array(arguments.dropFirst())
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        do {
            try process.run()
        } catch {
            throw Unavailable(description: "\(arguments[0]) could not start: \(error) (apt-get install postgresql)")
        }
        let out = output.fileHandleForReading.readDataToEndOfFile()
        let err = errors.fileHandleForReading.readDataToEndOfFile()
        let status = exitStatus(of: process)
        guard status == 0 else {
            throw Unavailable(
                description:
                    "\(arguments.joined(separator: " ")) failed (\(status)): " + String(decoding: err, as: UTF8.self))
        }
        return String(decoding: out, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Waits for `process` with waitpid. Foundation's `waitUntilExit()` never returned here for
    /// `pg-throwaway.sh start` in the test process (the script's bash left as a zombie, its exit
    /// never noticed), hanging every PostgreSQL test; when Foundation did reap the child first,
    /// its own status is used.
    private static func exitStatus(of process: Process) -> Int32 {
        var status: Int32 = 0
        var reaped = waitpid(process.processIdentifier, &status, 0)
        while reaped < 0 && errno == EINTR { reaped = waitpid(process.processIdentifier, &status, 0) }
        guard reaped == process.processIdentifier else {
            process.waitUntilExit()
            return process.terminationStatus
        }
        // WIFEXITED / WEXITSTATUS (macros Swift does not import): a signal's death is 128 + signal.
        return status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }
}
