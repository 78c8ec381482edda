import Foundation
import Synchronization

@testable import Runner

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

    /// Runs a program and returns its standard output; its standard error goes into the error.
    ///
    /// posix_spawn and waitpid rather than Foundation's `Process`: in the test process its
    /// `waitUntilExit` never returned after `pg-throwaway.sh start` (the script stayed a zombie no
    /// one reaped), hanging every test that asked for a database.
    @discardableResult
    fileprivate static func run(_ arguments: [String]) throws -> String {
        var output: [Int32] = [-1, -1]
        var errors: [Int32] = [-1, -1]
        // pipe2 is not in Swift's Glibc module: close-on-exec is set right after.
        guard pipe(&output) == 0, pipe(&errors) == 0 else { throw Unavailable(description: "pipe failed") }
        for fd in output + errors { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, output[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errors[1], 2)
        let argv = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, arguments[0], &actions, nil, argv, environ)
        close(output[1])
        close(errors[1])
        defer {
            close(output[0])
            close(errors[0])
        }
        guard spawned == 0 else {
            throw Unavailable(
                description:
                    "\(arguments[0]) could not start: \(String(cString: strerror(spawned))) (apt-get install postgresql)"
            )
        }
        let (out, err) = drain(output[0], errors[0])
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let exited = status & 0x7f == 0
        let code = (status >> 8) & 0xff
        guard exited && code == 0 else {
            throw Unavailable(
                description:
                    "\(arguments.joined(separator: " ")) failed (\(exited ? "exit \(code)" : "signal \(status & 0x7f)")): "
                    + String(decoding: err, as: UTF8.self))
        }
        return String(decoding: out, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Reads two descriptors to their ends together (either may fill its pipe first).
    private static func drain(_ first: Int32, _ second: Int32) -> ([UInt8], [UInt8]) {
        var buffers: [[UInt8]] = [[], []]
        var fds = [
            pollfd(fd: first, events: Int16(POLLIN), revents: 0), pollfd(fd: second, events: Int16(POLLIN), revents: 0),
        ]
        var chunk = [UInt8](repeating: 0, count: 65536)
        while fds.contains(where: { $0.fd >= 0 }) {
            guard poll(&fds, nfds_t(fds.count), -1) >= 0 else {
                if errno == EINTR { continue }
                break
            }
            for index in fds.indices where fds[index].fd >= 0 && fds[index].revents != 0 {
                let count = read(fds[index].fd, &chunk, chunk.count)
                if count > 0 {
                    buffers[index] += chunk[0..<count]
                } else if count == 0 || errno != EINTR {
                    fds[index].fd = -1
                }
            }
        }
        return (buffers[0], buffers[1])
    }
}
