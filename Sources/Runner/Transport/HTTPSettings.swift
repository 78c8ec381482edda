import Foundation

/// Settings of the HTTP surface, with every bound it holds and the defaults in one place.
///
/// The bounds exist so that one client cannot take what the others need (issue 14, finding 4):
/// a connection must send its request head within ``headerTimeout`` of opening (or of its first
/// byte after a response) and its body within ``bodyTimeout`` of the head; an idle keep-alive
/// connection is closed after ``keepAliveTimeout``; the runner holds at most
/// ``maximumConnections`` connections (fewer when its open-file limit is lower, see
/// ``DescriptorBudget``) and ``maximumConnectionsPerAddress`` from one client address.
public struct HTTPSettings: Sendable, Equatable {
    /// Bind host.
    public var host: String
    /// Bind port (0 = any free port).
    public var port: Int
    /// Origins allowed to call `/mcp` from a browser; any other `Origin` gets 403.
    public var allowedOrigins: [String]
    /// Host header values allowed; empty = derive from the bind address when it is loopback.
    public var allowedHosts: [String]
    /// Largest MCP request body (413 above it).
    public var maximumBodyBytes: Int
    /// MCP connections (`Mcp-Session-Id`) without a request for this long are closed.
    public var idleTimeout: Duration
    /// A request head must be complete this long after the connection opened, or after the first
    /// byte of a later request; else 408 and the connection is closed (slowloris).
    public var headerTimeout: Duration
    /// A request body must be complete this long after its head; else 408 and close.
    public var bodyTimeout: Duration
    /// A kept-alive HTTP connection with no request for this long is closed.
    public var keepAliveTimeout: Duration
    /// Open HTTP connections the runner holds at most; further ones wait in the listen backlog.
    public var maximumConnections: Int
    /// Open HTTP connections one client address may hold (IPv6: one /64); 0 = no per-address cap.
    /// A connection above it gets 429 and is closed at once.
    public var maximumConnectionsPerAddress: Int
    /// Largest request head (each header line and all of them together); 400 and close above it.
    public var maximumHeaderBytes: Int
    /// Most header fields in one request; 400 and close above it.
    public var maximumHeaderFields: Int
    /// Open GET (SSE) streams one session may hold across its MCP connections; 429 above it.
    public var maximumSSEStreamsPerSession: Int

    /// The defaults, each also documented in docs/operations.md.
    public enum Defaults {
        /// 4 MiB.
        public static let maximumBodyBytes = 4 << 20
        /// One hour.
        public static let idleTimeout = Duration.seconds(3600)
        /// 10 s, as nginx's `client_header_timeout` is 60 s and slowloris needs minutes against it.
        public static let headerTimeout = Duration.seconds(10)
        /// 30 s for the whole body (4 MiB at the default limit is ~140 KB/s).
        public static let bodyTimeout = Duration.seconds(30)
        /// 75 s, nginx's `keepalive_timeout`.
        public static let keepAliveTimeout = Duration.seconds(75)
        /// 4096 connections.
        public static let maximumConnections = 4096
        /// 256 connections per address.
        public static let maximumConnectionsPerAddress = 256
        /// 32 KiB of request head (a claim is ~1 KiB).
        public static let maximumHeaderBytes = 32 << 10
        /// 100 header fields.
        public static let maximumHeaderFields = 100
        /// 4 GET streams per session.
        public static let maximumSSEStreamsPerSession = 4
    }

    /// Creates settings.
    public init(
        host: String = "127.0.0.1", port: Int = 8080, allowedOrigins: [String] = [], allowedHosts: [String] = [],
        maximumBodyBytes: Int = Defaults.maximumBodyBytes, idleTimeout: Duration = Defaults.idleTimeout,
        headerTimeout: Duration = Defaults.headerTimeout, bodyTimeout: Duration = Defaults.bodyTimeout,
        keepAliveTimeout: Duration = Defaults.keepAliveTimeout, maximumConnections: Int = Defaults.maximumConnections,
        maximumConnectionsPerAddress: Int = Defaults.maximumConnectionsPerAddress,
        maximumHeaderBytes: Int = Defaults.maximumHeaderBytes, maximumHeaderFields: Int = Defaults.maximumHeaderFields,
        maximumSSEStreamsPerSession: Int = Defaults.maximumSSEStreamsPerSession
    ) {
        self.host = host
        self.port = port
        self.allowedOrigins = allowedOrigins
        self.allowedHosts = allowedHosts
        self.maximumBodyBytes = maximumBodyBytes
        self.idleTimeout = idleTimeout
        self.headerTimeout = headerTimeout
        self.bodyTimeout = bodyTimeout
        self.keepAliveTimeout = keepAliveTimeout
        self.maximumConnections = maximumConnections
        self.maximumConnectionsPerAddress = maximumConnectionsPerAddress
        self.maximumHeaderBytes = maximumHeaderBytes
        self.maximumHeaderFields = maximumHeaderFields
        self.maximumSSEStreamsPerSession = maximumSSEStreamsPerSession
    }

    var isLoopback: Bool { host == "127.0.0.1" || host == "localhost" || host == "::1" || host.hasPrefix("127.") }

    /// One line per bound, for `leasehold doctor` and the start-up log.
    public func describeBounds(effectiveConnections: Int? = nil) -> [String] {
        func seconds(_ duration: Duration) -> String { duration.secondsText }
        var connections = "\(maximumConnections) in total"
        if let effectiveConnections, effectiveConnections < maximumConnections {
            connections =
                "\(effectiveConnections) in total (max_connections \(maximumConnections), lowered to fit RLIMIT_NOFILE)"
        }
        let perAddress =
            maximumConnectionsPerAddress > 0
            ? "\(maximumConnectionsPerAddress) per client address" : "no per-address cap"
        return [
            "header timeout \(seconds(headerTimeout)), body timeout \(seconds(bodyTimeout)), keep-alive \(seconds(keepAliveTimeout))",
            "connections: \(connections), \(perAddress)",
            "request head \(maximumHeaderBytes) bytes / \(maximumHeaderFields) fields, body \(maximumBodyBytes) bytes",
            "SSE (GET) streams: \(maximumSSEStreamsPerSession) per session; MCP connections idle \(seconds(idleTimeout)) are closed",
        ]
    }
}

extension Duration {
    /// `10 s`, `0.5 s`.
    var secondsText: String {
        let value = Double(components.seconds) + Double(components.attoseconds) / 1e18
        return value == value.rounded() ? "\(Int(value)) s" : "\(value) s"
    }
}
