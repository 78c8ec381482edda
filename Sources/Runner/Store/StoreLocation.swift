import Foundation

/// Where a runner keeps sessions, bindings, approvals, workspaces, admin keys and the audit trail:
/// `--store`, the config's `store:` or `LEASEHOLD_STORE`.
///
/// - `sqlite:PATH` (the default, `sqlite:` alone meaning the state directory's files): one node.
/// - `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?pool=N]`: several nodes sharing one
///   PostgreSQL database. The password is better given in `LEASEHOLD_STORE_PASSWORD` (or
///   `PGPASSWORD`) than in a URL that shows in `ps`.
public enum StoreLocation: Sendable, Equatable, CustomStringConvertible {
    /// SQLite files in `directory` (nil: the state directory).
    case sqlite(directory: String?)
    /// A PostgreSQL database.
    case postgres(PostgresLocation)

    /// A PostgreSQL server and database.
    public struct PostgresLocation: Sendable, Equatable {
        /// Host name or address.
        public var host: String
        /// TCP port (default 5432).
        public var port: Int
        /// Database user.
        public var user: String
        /// Password, if any.
        public var password: String?
        /// Database name.
        public var database: String
        /// Connections this node keeps open at most (default 16).
        public var poolSize: Int

        /// The default pool size.
        public static let defaultPoolSize = 16

        /// A location from its parts (``StoreLocation/init(parsing:environment:)`` reads one from a URL).
        public init(
            host: String, port: Int = 5432, user: String, password: String? = nil, database: String,
            poolSize: Int = defaultPoolSize
        ) {
            self.host = host
            self.port = port
            self.user = user
            self.password = password
            self.database = database
            self.poolSize = poolSize
        }
    }

    /// A store location that cannot be used, with the reason.
    public struct Invalid: Error, Sendable, CustomStringConvertible {
        /// What is wrong.
        public let description: String
    }

    /// Parses a location; `environment` supplies `LEASEHOLD_STORE_PASSWORD` / `PGPASSWORD`.
    ///
    /// Written out rather than through `URLComponents`: a percent-decoded user or password is all
    /// it needs, and every refusal names what is wrong (a typed error, never a guess).
    public init(parsing text: String, environment: [String: String] = ProcessInfo.processInfo.environment)
        throws(Invalid)
    {
        if text == "sqlite" || text == "sqlite:" {
            self = .sqlite(directory: nil)
            return
        }
        if text.hasPrefix("sqlite:") {
            let path = String(text.dropFirst("sqlite:".count))
            guard !path.contains("\0") else { throw Invalid(description: "the sqlite path holds a NUL byte") }
            self = .sqlite(directory: path)
            return
        }
        guard text.hasPrefix("postgres://") || text.hasPrefix("postgresql://") else {
            throw Invalid(description: "store must be sqlite:PATH or postgres://USER@HOST:PORT/DATABASE")
        }
        guard let components = URLComponents(string: text), components.fragment == nil else {
            throw Invalid(description: "the store URL does not parse")
        }
        guard let host = components.host, !host.isEmpty else {
            throw Invalid(description: "the store URL names no host")
        }
        guard let user = components.user, !user.isEmpty else {
            throw Invalid(description: "the store URL names no user (postgres://USER@HOST/DATABASE)")
        }
        let port = components.port ?? 5432
        guard (1...65535).contains(port) else { throw Invalid(description: "the store URL's port is out of range") }
        let database = String(components.path.drop { $0 == "/" })
        guard !database.isEmpty, !database.contains("/") else {
            throw Invalid(description: "the store URL names no database (postgres://USER@HOST/DATABASE)")
        }
        var poolSize = PostgresLocation.defaultPoolSize
        for item in components.queryItems ?? [] {
            switch item.name {
            case "pool":
                guard let value = item.value.flatMap(Int.init), (1...512).contains(value) else {
                    throw Invalid(description: "pool must be 1-512 connections")
                }
                poolSize = value
            default:
                throw Invalid(description: "unknown store URL parameter \(item.name) (known: pool)")
            }
        }
        let password =
            components.password ?? environment["LEASEHOLD_STORE_PASSWORD"] ?? environment["PGPASSWORD"]
        self = .postgres(
            PostgresLocation(
                host: host, port: port, user: user, password: password, database: database, poolSize: poolSize))
    }

    /// The location with any password left out (for logs).
    public var description: String {
        switch self {
        case .sqlite(let directory): return "sqlite:" + (directory ?? "")
        case .postgres(let location):
            let address = "\(location.host):\(location.port)"
            return "postgres://\(location.user)@\(address)/\(location.database)?pool=\(location.poolSize)"
        }
    }
}
