import Foundation
import Sandbox
import WorkspaceRegistry
import Yams

/// `leasehold.yaml`: listen address, claims, keys, HTTP bounds, catalog and seeded workspaces.
public struct LeaseholdConfig: Decodable, Sendable {
    /// `HOST:PORT` for Streamable HTTP and the admin API.
    public var listen: String?
    /// Required claim issuer.
    public var issuer: String?
    /// Required claim audience.
    public var audience: String?
    /// Longest accepted claim lifetime, seconds (default 900).
    public var claimMaxLifetimeSeconds: Int?
    /// Accepted clock skew, seconds (default 30).
    public var clockSkewSeconds: Int?
    /// Key set file; default `<state dir>/keys.json`, generated on first start.
    public var keysFile: String?
    /// Browser origins allowed on `/mcp`.
    public var allowedOrigins: [String]?
    /// Host header values allowed.
    public var allowedHosts: [String]?
    /// Extra servers and bundles.
    public var catalog: CatalogFile?
    /// A separate catalog file.
    public var catalogFile: String?
    /// Workspaces registered at start when missing (without `root`: allocated under the first base).
    public var workspaces: [RegisterWorkspaceRequest]?
    /// Directories under which workspace roots live, as `<base>/<tenant>/<workspace>`; the first
    /// one is where new workspaces are allocated (default: `<state dir>-workspaces`).
    public var workspaceBases: [String]?
    /// The unprivileged host ids a root runner gives tenants (`first`, `count`).
    public var workerHostIDs: HostIDRange?
    /// This runner's id in audit records (default: the host name).
    public var nodeID: String?
    /// Where state lives: `sqlite:PATH` (default: the state directory) or
    /// `postgres://USER@HOST:PORT/DATABASE` for several nodes (``StoreLocation``); `--store` and
    /// `LEASEHOLD_STORE` take precedence.
    public var store: String?
    /// How often `serve` looks for edited policy files, seconds (default 2; 0 = only on SIGHUP).
    public var policyReloadIntervalSeconds: Int?
    /// The statically linked worker executable (default: `leasehold-worker` beside `leasehold`,
    /// or `LEASEHOLD_WORKER`).
    public var workerExecutable: String?
    /// A warm worker without a call for this long is destroyed, seconds (default 300).
    public var workerIdleTimeoutSeconds: Int?
    /// Calls one session may have in flight at once (default 8).
    public var workerMaxCallsPerSession: Int?
    /// Live workers this runner may hold (default 512).
    public var workerMaxLive: Int?
    /// Spares (per-call workers confined ahead of their session's next call) this runner may hold
    /// at once, ready or being confined (default 16; 0 turns them off). They count against
    /// `worker_max_live` too.
    public var workerMaxSpares: Int?
    /// Spares one session keeps per lease and per-call tier, ready or being confined (default 2).
    public var workerSparesPerSession: Int?
    /// A spare not taken by a call for this long is destroyed, seconds (default 60).
    public var workerSpareIdleTimeoutSeconds: Int?
    /// A signed audit checkpoint at least every this many records (default 256, 1-1000000).
    public var auditCheckpointRecords: Int?
    /// A signed audit checkpoint this often while records are unsigned, seconds (default 5, 1-3600).
    public var auditCheckpointSeconds: Int?
    /// The longest a `batched` audit commit stays unsynced, milliseconds (default 5, 1-1000).
    public var auditBatchedSyncMs: Int?
    /// Unauthenticated refusals from one source are aggregated over this many seconds
    /// (default 10, 1-3600); see ``RefusalSampler``.
    public var auditUnauthenticatedIntervalSeconds: Int?
    /// Distinct sources aggregated per interval before the rest share one record (default 256).
    public var auditUnauthenticatedSources: Int?
    /// `auto` (default): each worker gets its own cgroups (memory, pids, CPU weight of its whole
    /// tree) where the host delegates them to the runner; `off`: none, and tiers whose limits then
    /// cannot be held on a whole worker are refused unless they accept them as `best_effort`.
    public var workerCgroups: String?
    /// HTTP bounds (`http:`): timeouts, connection caps, size limits, SSE streams per session.
    public var http: HTTPLimits?
    /// What each tenant may hold of the runner (`tenant_limits:`): live workers and calls in flight,
    /// with per-tenant overrides.
    public var tenantLimits: TenantLimitsConfig?
    /// Space held for the audit log on the state directory's filesystem, MiB (default 64; 0: none).
    /// See ``AuditReserve``.
    public var auditReserveMiB: Int?
    /// The token endpoint's trusted issuers (`oauth:`; see ``OAuthConfig``).
    public var oauth: OAuthConfig?
    /// `/metrics` (`metrics:`; see ``MetricsConfig``).
    public var metrics: MetricsConfig?
    /// Where OpenTelemetry spans go over OTLP/HTTP (`--otlp-endpoint` overrides; default: no tracing).
    public var otlpEndpoint: String?

    /// `tenant_limits:` what every tenant may hold (the keys at its top) and per-tenant overrides
    /// of the same keys (`tenants: {ID: {...}}`); an absent value keeps its default.
    public struct TenantLimitsConfig: Decodable, Sendable {
        /// The values for every tenant without an override.
        public var standard: TenantCaps
        /// Overrides by tenant id.
        public var tenants: [String: TenantCaps]?

        /// One set of `tenant_limits` values.
        public struct TenantCaps: Decodable, Sendable {
            public var workerMaxLive: Int?
            public var callsInFlight: Int?
            public var sessions: Int?
            /// Disk quotas: MiB and inodes per tenant, then per workspace (see
            /// ``LeaseholdConfig/diskQuotas()``).
            public var diskMiB: Int?
            public var diskFiles: Int?
            public var workspaceDiskMiB: Int?
            public var workspaceDiskFiles: Int?

            enum CodingKeys: String, CodingKey, CaseIterable {
                case workerMaxLive = "worker_max_live"
                case callsInFlight = "calls_in_flight"
                case sessions
                case diskMiB = "disk_mib"
                case diskFiles = "disk_files"
                case workspaceDiskMiB = "workspace_disk_mib"
                case workspaceDiskFiles = "workspace_disk_files"
            }

            public init(from decoder: any Decoder) throws {
                try self.init(from: decoder, alsoKnown: [])
            }

            /// Decodes the caps, refusing keys that are neither theirs nor `alsoKnown`.
            init(from decoder: any Decoder, alsoKnown: [String]) throws {
                let path = decoder.codingPath.map(\.stringValue).joined(separator: ".")
                try StrictKeys.check(decoder, known: CodingKeys.allCases.map(\.rawValue) + alsoKnown, in: path)
                let container = try decoder.container(keyedBy: CodingKeys.self)
                workerMaxLive = try container.decodeIfPresent(Int.self, forKey: .workerMaxLive)
                callsInFlight = try container.decodeIfPresent(Int.self, forKey: .callsInFlight)
                sessions = try container.decodeIfPresent(Int.self, forKey: .sessions)
                diskMiB = try container.decodeIfPresent(Int.self, forKey: .diskMiB)
                diskFiles = try container.decodeIfPresent(Int.self, forKey: .diskFiles)
                workspaceDiskMiB = try container.decodeIfPresent(Int.self, forKey: .workspaceDiskMiB)
                workspaceDiskFiles = try container.decodeIfPresent(Int.self, forKey: .workspaceDiskFiles)
            }
        }

        enum CodingKeys: String, CodingKey {
            case tenants
        }

        public init(from decoder: any Decoder) throws {
            // The top-level keys are one TenantCaps; `tenants` is not among its keys.
            standard = try TenantCaps(from: decoder, alsoKnown: [CodingKeys.tenants.rawValue])
            tenants = try decoder.container(keyedBy: CodingKeys.self).decodeIfPresent(
                [String: TenantCaps].self, forKey: .tenants)
        }

        /// `make` applied to the top-level values (over `base`), then to each tenant's override
        /// (over that result), every tenant id checked: the standard value and the overrides.
        func resolve<Value>(
            _ base: Value, _ make: (TenantCaps, Value, String) throws(ConfigError) -> Value
        ) throws(ConfigError) -> (standard: Value, overrides: [String: Value]) {
            let standard = try make(self.standard, base, "tenant_limits")
            var overrides: [String: Value] = [:]
            for (tenant, caps) in tenants ?? [:] {
                guard Identifier.isValid(tenant) else {
                    throw ConfigError("tenant_limits.tenants names \(tenant.debugDescription), which is not a tenant id")
                }
                overrides[tenant] = try make(caps, standard, "tenant_limits.tenants.\(tenant)")
            }
            return (standard, overrides)
        }
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case listen, issuer, audience, catalog, workspaces
        case claimMaxLifetimeSeconds = "claim_max_lifetime_seconds"
        case clockSkewSeconds = "clock_skew_seconds"
        case keysFile = "keys_file"
        case allowedOrigins = "allowed_origins"
        case allowedHosts = "allowed_hosts"
        case catalogFile = "catalog_file"
        case policyReloadIntervalSeconds = "policy_reload_interval_seconds"
        case nodeID = "node_id"
        case store
        case workerExecutable = "worker_executable"
        case workerIdleTimeoutSeconds = "worker_idle_timeout_seconds"
        case workerMaxCallsPerSession = "worker_max_calls_per_session"
        case workerMaxLive = "worker_max_live"
        case workerMaxSpares = "worker_max_spares"
        case workerSparesPerSession = "worker_spares_per_session"
        case workerSpareIdleTimeoutSeconds = "worker_spare_idle_timeout_seconds"
        case workspaceBases = "workspace_bases"
        case workerHostIDs = "worker_host_ids"
        case auditCheckpointRecords = "audit_checkpoint_records"
        case auditCheckpointSeconds = "audit_checkpoint_seconds"
        case auditBatchedSyncMs = "audit_batched_sync_ms"
        case auditUnauthenticatedIntervalSeconds = "audit_unauthenticated_interval_seconds"
        case auditUnauthenticatedSources = "audit_unauthenticated_sources"
        case http
        case tenantLimits = "tenant_limits"
        case workerCgroups = "worker_cgroups"
        case auditReserveMiB = "audit_reserve_mib"
        case oauth
        case metrics
        case otlpEndpoint = "otlp_endpoint"
    }

    /// Keys of `leasehold.yaml` read by other parts of the runner from the same file.
    static let otherKeys = ["servers"]

    /// Decodes the file, refusing keys it does not know: a misspelt `allowed_hosts` must not
    /// silently leave every host allowed.
    public init(from decoder: any Decoder) throws {
        try StrictKeys.check(
            decoder, known: CodingKeys.allCases.map(\.rawValue) + Self.otherKeys, in: "leasehold.yaml")
        let container = try decoder.container(keyedBy: CodingKeys.self)
        listen = try container.decodeIfPresent(String.self, forKey: .listen)
        issuer = try container.decodeIfPresent(String.self, forKey: .issuer)
        audience = try container.decodeIfPresent(String.self, forKey: .audience)
        claimMaxLifetimeSeconds = try container.decodeIfPresent(Int.self, forKey: .claimMaxLifetimeSeconds)
        clockSkewSeconds = try container.decodeIfPresent(Int.self, forKey: .clockSkewSeconds)
        keysFile = try container.decodeIfPresent(String.self, forKey: .keysFile)
        allowedOrigins = try container.decodeIfPresent([String].self, forKey: .allowedOrigins)
        allowedHosts = try container.decodeIfPresent([String].self, forKey: .allowedHosts)
        catalog = try container.decodeIfPresent(CatalogFile.self, forKey: .catalog)
        catalogFile = try container.decodeIfPresent(String.self, forKey: .catalogFile)
        workspaces = try container.decodeIfPresent([RegisterWorkspaceRequest].self, forKey: .workspaces)
        workspaceBases = try container.decodeIfPresent([String].self, forKey: .workspaceBases)
        workerHostIDs = try container.decodeIfPresent(HostIDRange.self, forKey: .workerHostIDs)
        nodeID = try container.decodeIfPresent(String.self, forKey: .nodeID)
        store = try container.decodeIfPresent(String.self, forKey: .store)
        policyReloadIntervalSeconds = try container.decodeIfPresent(Int.self, forKey: .policyReloadIntervalSeconds)
        workerExecutable = try container.decodeIfPresent(String.self, forKey: .workerExecutable)
        workerIdleTimeoutSeconds = try container.decodeIfPresent(Int.self, forKey: .workerIdleTimeoutSeconds)
        workerMaxCallsPerSession = try container.decodeIfPresent(Int.self, forKey: .workerMaxCallsPerSession)
        workerMaxLive = try container.decodeIfPresent(Int.self, forKey: .workerMaxLive)
        workerMaxSpares = try container.decodeIfPresent(Int.self, forKey: .workerMaxSpares)
        workerSparesPerSession = try container.decodeIfPresent(Int.self, forKey: .workerSparesPerSession)
        workerSpareIdleTimeoutSeconds = try container.decodeIfPresent(Int.self, forKey: .workerSpareIdleTimeoutSeconds)
        auditCheckpointRecords = try container.decodeIfPresent(Int.self, forKey: .auditCheckpointRecords)
        auditCheckpointSeconds = try container.decodeIfPresent(Int.self, forKey: .auditCheckpointSeconds)
        auditBatchedSyncMs = try container.decodeIfPresent(Int.self, forKey: .auditBatchedSyncMs)
        auditUnauthenticatedIntervalSeconds = try container.decodeIfPresent(Int.self, forKey: .auditUnauthenticatedIntervalSeconds)
        auditUnauthenticatedSources = try container.decodeIfPresent(Int.self, forKey: .auditUnauthenticatedSources)
        workerCgroups = try container.decodeIfPresent(String.self, forKey: .workerCgroups)
        http = try container.decodeIfPresent(HTTPLimits.self, forKey: .http)
        tenantLimits = try container.decodeIfPresent(TenantLimitsConfig.self, forKey: .tenantLimits)
        auditReserveMiB = try container.decodeIfPresent(Int.self, forKey: .auditReserveMiB)
        oauth = try container.decodeIfPresent(OAuthConfig.self, forKey: .oauth)
        metrics = try container.decodeIfPresent(MetricsConfig.self, forKey: .metrics)
        otlpEndpoint = try container.decodeIfPresent(String.self, forKey: .otlpEndpoint)
    }

    /// `worker_host_ids: {first: N, count: M}`.
    public struct HostIDRange: Decodable, Sendable {
        /// The first uid/gid of the range.
        public var first: UInt32
        /// How many tenants the range holds.
        public var count: UInt32

        enum CodingKeys: String, CodingKey, CaseIterable {
            case first, count
        }

        public init(from decoder: any Decoder) throws {
            try StrictKeys.check(decoder, known: CodingKeys.allCases.map(\.rawValue), in: "worker_host_ids")
            let container = try decoder.container(keyedBy: CodingKeys.self)
            first = try container.decode(UInt32.self, forKey: .first)
            count = try container.decode(UInt32.self, forKey: .count)
        }
    }

    /// An empty configuration (every default).
    public init() {}

    /// Reads a config file.
    public static func load(file: String) throws -> LeaseholdConfig {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw ConfigError("cannot read config file \(file)")
        }
        return try decode(text, file: file)
    }

    /// Decodes the text of config file `file`; an error names the file, and the line when it has a
    /// place (`file:line: message`).
    static func decode(_ text: String, file: String) throws(ConfigError) -> LeaseholdConfig {
        do {
            return try YAMLDecoder().decode(LeaseholdConfig.self, from: text)
        } catch let error as ConfigError {
            throw error.placed(in: file, text: text)
        } catch DecodingError.dataCorrupted(let context) where context.underlyingError is ConfigError {
            // A strict section's own refusal (an unknown key), not the decoder's wrapping of it.
            guard let error = context.underlyingError as? ConfigError else { throw ConfigError("\(file): \(context)") }
            throw error.placed(in: file, text: text)
        } catch {
            throw ConfigError("\(file): \(error)")
        }
    }
}

/// `http:` in leasehold.yaml. Unknown keys are refused: a misspelt bound must not silently leave
/// its default in force.
public struct HTTPLimits: Decodable, Sendable {
    /// Seconds a request head may take (default 10).
    public var headerTimeoutSeconds: Double?
    /// Seconds a request body may take after its head (default 30).
    public var bodyTimeoutSeconds: Double?
    /// Seconds an idle keep-alive connection stays open (default 75).
    public var keepAliveTimeoutSeconds: Double?
    /// Seconds an MCP connection (`Mcp-Session-Id`) may go without a request (default 3600).
    public var mcpIdleTimeoutSeconds: Double?
    /// Open connections in total (default 4096).
    public var maxConnections: Int?
    /// Open connections per client address (default 256; 0 = no cap).
    public var maxConnectionsPerAddress: Int?
    /// Bytes of request head (default 32768).
    public var maxHeaderBytes: Int?
    /// Header fields per request (default 100).
    public var maxHeaderFields: Int?
    /// Bytes of MCP request body (default 4194304).
    public var maxBodyBytes: Int?
    /// Open GET (SSE) streams per session (default 4).
    public var maxSSEStreamsPerSession: Int?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case headerTimeoutSeconds = "header_timeout_seconds"
        case bodyTimeoutSeconds = "body_timeout_seconds"
        case keepAliveTimeoutSeconds = "keep_alive_timeout_seconds"
        case mcpIdleTimeoutSeconds = "mcp_idle_timeout_seconds"
        case maxConnections = "max_connections"
        case maxConnectionsPerAddress = "max_connections_per_address"
        case maxHeaderBytes = "max_header_bytes"
        case maxHeaderFields = "max_header_fields"
        case maxBodyBytes = "max_body_bytes"
        case maxSSEStreamsPerSession = "max_sse_streams_per_session"
    }

    /// Creates limits with every key absent (every default).
    public init() {}

    /// Decodes `http:`, refusing keys it does not know.
    public init(from decoder: any Decoder) throws {
        try StrictKeys.check(decoder, known: CodingKeys.allCases.map(\.rawValue), in: "http")
        let container = try decoder.container(keyedBy: CodingKeys.self)
        headerTimeoutSeconds = try container.decodeIfPresent(Double.self, forKey: .headerTimeoutSeconds)
        bodyTimeoutSeconds = try container.decodeIfPresent(Double.self, forKey: .bodyTimeoutSeconds)
        keepAliveTimeoutSeconds = try container.decodeIfPresent(Double.self, forKey: .keepAliveTimeoutSeconds)
        mcpIdleTimeoutSeconds = try container.decodeIfPresent(Double.self, forKey: .mcpIdleTimeoutSeconds)
        maxConnections = try container.decodeIfPresent(Int.self, forKey: .maxConnections)
        maxConnectionsPerAddress = try container.decodeIfPresent(Int.self, forKey: .maxConnectionsPerAddress)
        maxHeaderBytes = try container.decodeIfPresent(Int.self, forKey: .maxHeaderBytes)
        maxHeaderFields = try container.decodeIfPresent(Int.self, forKey: .maxHeaderFields)
        maxBodyBytes = try container.decodeIfPresent(Int.self, forKey: .maxBodyBytes)
        maxSSEStreamsPerSession = try container.decodeIfPresent(Int.self, forKey: .maxSSEStreamsPerSession)
    }

    /// Writes the configured bounds into `settings`, refusing values outside their ranges.
    func apply(to settings: inout HTTPSettings) throws(ConfigError) {
        func duration(_ value: Double?, _ key: CodingKeys, _ range: ClosedRange<Double>) throws(ConfigError)
            -> Duration?
        {
            guard let value else { return nil }
            guard range.contains(value) else {
                throw ConfigError(
                    "http.\(key.rawValue) must be between \(range.lowerBound) and \(range.upperBound) seconds, not \(value)"
                )
            }
            return .milliseconds(Int64((value * 1000).rounded()))
        }
        func count(_ value: Int?, _ key: CodingKeys, _ range: ClosedRange<Int>) throws(ConfigError) -> Int? {
            guard let value else { return nil }
            guard range.contains(value) else {
                throw ConfigError(
                    "http.\(key.rawValue) must be between \(range.lowerBound) and \(range.upperBound), not \(value)")
            }
            return value
        }
        if let value = try duration(headerTimeoutSeconds, .headerTimeoutSeconds, 0.1...3600) {
            settings.headerTimeout = value
        }
        if let value = try duration(bodyTimeoutSeconds, .bodyTimeoutSeconds, 0.1...3600) {
            settings.bodyTimeout = value
        }
        if let value = try duration(keepAliveTimeoutSeconds, .keepAliveTimeoutSeconds, 0.1...3600) {
            settings.keepAliveTimeout = value
        }
        if let value = try duration(mcpIdleTimeoutSeconds, .mcpIdleTimeoutSeconds, 1...86400) {
            settings.idleTimeout = value
        }
        if let value = try count(maxConnections, .maxConnections, 1...1_000_000) { settings.maximumConnections = value }
        if let value = try count(maxConnectionsPerAddress, .maxConnectionsPerAddress, 0...1_000_000) {
            settings.maximumConnectionsPerAddress = value
        }
        if let value = try count(maxHeaderBytes, .maxHeaderBytes, 1024...(1 << 20)) {
            settings.maximumHeaderBytes = value
        }
        if let value = try count(maxHeaderFields, .maxHeaderFields, 8...10_000) { settings.maximumHeaderFields = value }
        if let value = try count(maxBodyBytes, .maxBodyBytes, 1024...(1 << 30)) { settings.maximumBodyBytes = value }
        if let value = try count(maxSSEStreamsPerSession, .maxSSEStreamsPerSession, 1...1000) {
            settings.maximumSSEStreamsPerSession = value
        }
    }
}

/// When the audit log signs its head (see ``AuditLog/checkpoint()``).
public struct AuditCheckpointPolicy: Sendable, Equatable {
    /// Default records between checkpoints.
    public static let defaultRecords = 256
    /// Default seconds between checkpoints while records are unsigned.
    public static let defaultSeconds = 5
    /// At least one checkpoint every this many records (written inside the commit).
    public var records: Int
    /// At least one checkpoint this often while records are unsigned (the timer).
    public var interval: Duration

    /// Creates a policy; the defaults are the configuration's.
    public init(records: Int = defaultRecords, interval: Duration = .seconds(defaultSeconds)) {
        self.records = records
        self.interval = interval
    }
}

/// A configuration that cannot be used.
public struct ConfigError: Error, Sendable, CustomStringConvertible {
    /// What is wrong.
    public let description: String
    /// Where in the file, as the keys (and sequence indexes) leading to it, when it has a place.
    let keyPath: [String]?

    /// Creates an error.
    public init(_ description: String) {
        self.description = description
        self.keyPath = nil
    }

    /// An error at `keyPath` (an unknown key: the path ends with it).
    init(_ description: String, at keyPath: [String]) {
        self.description = description
        self.keyPath = keyPath
    }

    /// The error with its file, and its line when it has a place (`file:line: message`, like
    /// `policies/`).
    func placed(in file: String, text: String) -> ConfigError {
        guard let keyPath, let line = Self.line(of: keyPath, in: text) else { return ConfigError("\(file): \(description)") }
        return ConfigError("\(file):\(line): \(description)")
    }

    /// The 1-based line of the key at `path` in the YAML `text`.
    static func line(of path: [String], in text: String) -> Int? {
        guard var node = try? Yams.compose(yaml: text) else { return nil }
        for (index, component) in path.enumerated() {
            let last = index == path.count - 1
            if let mapping = node.mapping {
                guard let pair = mapping.first(where: { $0.key.string == component }) else { return nil }
                if last { return pair.key.mark.map { $0.line } }
                node = pair.value
            } else if let sequence = node.sequence, let position = Int(component.filter(\.isNumber)),
                sequence.indices.contains(position)
            {
                node = sequence[position]
                if last { return node.mark.map { $0.line } }
            } else {
                return nil
            }
        }
        return nil
    }
}

/// Parses `HOST:PORT` (`[::1]:8080` for IPv6).
public func parseHostPort(_ text: String) throws -> (host: String, port: Int) {
    let host: String
    let portText: Substring
    if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
        host = String(text[text.index(after: text.startIndex)..<close])
        portText = text[text.index(after: close)...].dropFirst()
    } else if let colon = text.lastIndex(of: ":") {
        host = String(text[..<colon])
        portText = text[text.index(after: colon)...]
    } else {
        throw ConfigError("listen address \(text) must be HOST:PORT")
    }
    guard !host.isEmpty, let port = Int(portText), (0...65535).contains(port) else {
        throw ConfigError("listen address \(text) must be HOST:PORT with a port of 0-65535")
    }
    return (host, port)
}
