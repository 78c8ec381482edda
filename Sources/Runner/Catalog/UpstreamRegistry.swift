import Foundation
import Logging
import MCP
import Sandbox
import SandboxProtocol
import Synchronization

/// The upstream MCP servers of this runner: their configuration, the tools each reported, and
/// how each is doing (for `GET /api/v1/servers` and `leasehold servers`).
///
/// A stdio server's tools are listed by a process of its own that holds no tenant's data (an
/// empty workspace, no tenant in its environment), at start and whenever a call's process says
/// its tools changed. Calls go to processes shared as the server's `isolation` says. An http
/// server is reached from the runner by its ``HTTPUpstream`` (one HTTP client for them all), listed
/// at start and whenever it says its tools changed (``UpstreamListeners``).
public final class UpstreamRegistry: Sendable {
    /// How a server is doing.
    public struct Status: Sendable, Codable, Hashable {
        /// The server id.
        public var id: String
        /// `session`, `tenant` or `shared`.
        public var isolation: String
        /// Its network grant (`host:port` each), nil when it has none.
        public var network: [String]?
        /// Tools it reported at the last listing that joined the catalog.
        public var tools: Int
        /// `listed`, `failed` or `starting`.
        public var state: String
        /// Why the last listing failed, or which tool names were refused.
        public var lastError: String?
        /// When it was last listed.
        public var listedAt: Date?
        /// An http server's standalone GET stream, which brings its tool list changes: `open`,
        /// `reconnecting in N ms: why`, or `not offered ...` (nil for stdio servers, and until
        /// `serve` first opens it).
        public var stream: String?

        enum CodingKeys: String, CodingKey {
            case id, isolation, network, tools, state, stream
            case lastError = "last_error"
            case listedAt = "listed_at"
        }
    }

    /// The pseudo-tenant catalog and shared processes run as (a root runner gives it host ids of
    /// its own, never a real tenant's).
    public static let sharedTenant = "-upstream"

    /// The servers by id (replaced whole when `servers:` is reloaded).
    public var servers: [String: UpstreamServer] { configured.withLock { $0.servers } }
    private let configured: Mutex<(servers: [String: UpstreamServer], http: [String: HTTPUpstream])>
    /// An empty directory: `/workspace` of processes that see no tenant's workspace.
    public let emptyRoot: String
    /// Signs who calls, for every upstream call (nil only where there are no servers).
    public let identity: UpstreamIdentity?
    /// Clients of the `transport: http` servers, by id.
    var httpClients: [String: HTTPUpstream] { configured.withLock { $0.http } }
    private let statuses: Mutex<[String: Status]>
    /// The one HTTP client every http server's client uses.
    let http: UpstreamHTTPClient
    /// Every http client made, to be listened to (``UpstreamListeners``); ends at ``shutdown()``.
    let clientsToListen: AsyncStream<HTTPUpstream>
    private let newClients: AsyncStream<HTTPUpstream>.Continuation

    /// Creates the registry; `emptyRoot` is created (empty, read-only to workers) if missing.
    public init(servers: [UpstreamServer], emptyRoot: String, identity: UpstreamIdentity?) throws {
        let http = UpstreamHTTPClient()
        let clients = Dictionary(
            uniqueKeysWithValues: servers.filter { $0.transport == .http }.map {
                ($0.id, HTTPUpstream(server: $0, http: http))
            })
        self.http = http
        self.configured = Mutex((Dictionary(uniqueKeysWithValues: servers.map { ($0.id, $0) }), clients))
        let (listen, newClients) = AsyncStream<HTTPUpstream>.makeStream()
        for (_, client) in clients.sorted(by: { $0.key < $1.key }) { newClients.yield(client) }
        self.clientsToListen = listen
        self.newClients = newClients
        self.emptyRoot = emptyRoot
        self.identity = identity
        try FileManager.default.createDirectory(atPath: emptyRoot, withIntermediateDirectories: true)
        chmod(emptyRoot, 0o755)
        self.statuses = Mutex(
            Dictionary(
                uniqueKeysWithValues: servers.map { ($0.id, Self.startingStatus($0)) }))
    }

    /// No servers.
    public static let none: UpstreamRegistry = {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("leasehold-no-upstream").path
        // swiftlint:disable:next force_try
        return try! UpstreamRegistry(servers: [], emptyRoot: directory, identity: nil)
    }()

    /// What a reload of `servers:` changed, by server id.
    struct Change: Sendable {
        var removed: Set<String> = []
        var changed: Set<String> = []
        var added: Set<String> = []
    }

    /// Replaces the servers with `servers` (already validated); a changed or new http server gets
    /// a new client (a new MCP session).
    func replace(with servers: [UpstreamServer]) -> Change {
        let next = Dictionary(uniqueKeysWithValues: servers.map { ($0.id, $0) })
        let change = configured.withLock { state -> Change in
            var change = Change()
            change.removed = Set(state.servers.keys).subtracting(next.keys)
            change.added = Set(next.keys).subtracting(state.servers.keys)
            change.changed = Set(next.keys.filter { state.servers[$0] != nil && state.servers[$0] != next[$0] })
            var http = state.http.filter { next[$0.key] != nil && !change.changed.contains($0.key) }
            // The old client of a removed or changed server stops listening; its calls in flight go on.
            for (id, client) in state.http where http[id] == nil { client.stop() }
            for server in servers where server.transport == .http && http[server.id] == nil {
                let client = HTTPUpstream(server: server, http: self.http)
                http[server.id] = client
                newClients.yield(client)
            }
            state = (next, http)
            return change
        }
        statuses.withLock { statuses in
            for id in change.removed { statuses[id] = nil }
            for id in change.added.union(change.changed) {
                guard let server = next[id] else { continue }
                statuses[id] = Self.startingStatus(server)
            }
        }
        return change
    }

    private static func startingStatus(_ server: UpstreamServer) -> Status {
        Status(
            id: server.id, isolation: server.isolation.rawValue,
            network: server.network.isEmpty ? nil : server.network.map(\.description), tools: 0, state: "starting")
    }

    /// Every server's status, by id.
    public var status: [Status] { statuses.withLock { $0.values.sorted { $0.id < $1.id } } }

    /// Records how `client`'s GET stream is doing, while it is its server's client; true when
    /// that changed what the status says.
    func record(_ client: HTTPUpstream, stream: HTTPUpstream.StreamState) -> Bool {
        guard configured.withLock({ $0.http[client.server.id] === client }) else { return false }
        let text = stream.description
        return statuses.withLock { statuses in
            guard statuses[client.server.id] != nil, statuses[client.server.id]?.stream != text else { return false }
            statuses[client.server.id]?.stream = text
            return true
        }
    }

    /// Stops every http client's listening and shuts the HTTP client down (runner exit; also
    /// after a one-off listing such as `leasehold servers check`).
    public func shutdown() async {
        newClients.finish()
        for client in httpClients.values { client.stop() }
        await http.shutdown()
    }

    /// The default tiers of servers' tools (`tier:`), for the policy.
    public var defaultTiers: [String: String] {
        servers.compactMapValues(\.tier)
    }

    /// Where a call of an upstream server's tool goes.
    enum Route: Sendable {
        /// A process of a stdio server; `seesWorkspace` says whether it mounts the session's workspace.
        case stdio(UpstreamCall, seesWorkspace: Bool)
        /// An http server.
        case http(HTTPUpstream)
    }

    /// Where a call of `tool` goes, nil when it is not an upstream server's (one look at the
    /// configuration per call).
    func route(for tool: String, tenant: String) -> Route? {
        let id = String(ToolName.server(of: tool))
        let (server, client) = configured.withLock { ($0.servers[id], $0.http[id]) }
        guard let server else { return nil }
        if let client { return .http(client) }
        let scope: UpstreamCall.Scope =
            switch server.isolation {
            case .session: .session
            case .tenant: .tenant(workspace: server.workspace)
            case .shared: .shared
            }
        let call = UpstreamCall(
            launch: launch(server, tenant: server.isolation == .shared ? nil : tenant), mounts: server.mounts,
            scope: scope, tool: String(tool.dropFirst(id.count + 1)), network: server.network)
        return .stdio(call, seesWorkspace: server.workspace && server.isolation != .shared)
    }

    /// How a process of `server` is started: its environment, with the public key that verifies
    /// Leasehold's identity assertions.
    func launch(_ server: UpstreamServer, tenant: String?) -> UpstreamLaunch {
        var environment = server.launchEnvironment(tenant: tenant)
        if let identity { environment["LEASEHOLD_IDENTITY_JWKS"] = identity.publicJWKS }
        return UpstreamLaunch(server: server.id, command: server.command, environment: environment)
    }

    /// Lists `id`'s tools through `executor` in a process of its own, as catalog descriptors
    /// named `<id>.<tool>`; records the outcome in the status.
    func list(
        _ id: String, executor: any ToolExecutor, tier: WorkerTier, hostIdentity: WorkerHostIdentity?, logger: Logger
    ) async -> [ToolDescriptor]? {
        guard let server = servers[id] else { return nil }
        if let client = httpClients[id] {
            do {
                let listed = try await client.listTools(timeout: .milliseconds(max(1000, tier.limits.wallMs)))
                return record(id, listed: listed, logger: logger)
            } catch {
                return record(id, failure: "\(error.code): \(error.message)", logger: logger)
            }
        }
        let invocation = ToolInvocation(
            tool: id + "." + UpstreamLaunch.listTools, tier: tier, arguments: [],
            tenantID: Self.sharedTenant, workspaceID: "-", workspaceRoot: emptyRoot, workspaceReadOnly: true,
            sessionID: "-catalog-" + id, actorID: "-", leaseID: "-", leaseExpiresAt: .distantFuture, policyVersion: "",
            hostIdentity: hostIdentity,
            upstream: UpstreamCall(
                launch: launch(server, tenant: nil), mounts: server.mounts,
                scope: server.isolation == .shared ? .shared : .session, tool: UpstreamLaunch.listTools,
                network: server.network))
        let execution = await executor.execute(invocation)
        // A shared server's listing process is the one its calls use; any other server's exists
        // only to be listed, and nothing of it outlives the listing.
        if server.isolation != .shared { await executor.retire(session: invocation.sessionID, reason: .callFinished) }
        let failure: String
        switch execution.outcome {
        case .completed(let result, false):
            return record(id, listed: result, logger: logger)
        case .completed(let result, true):
            failure = String(decoding: result.prefix(600), as: UTF8.self)
        case .limitExceeded(let limit, let message, _):
            failure = "\(limit): \(message)"
        case .failed(let code, let message):
            failure = "\(code): \(message)"
        }
        return record(id, failure: failure, logger: logger)
    }

    /// Records a listing and returns its tools (nil when it is not a JSON array of tools).
    private func record(_ id: String, listed: [UInt8], logger: Logger) -> [ToolDescriptor]? {
        let (tools, refused) = Self.descriptors(server: id, listed: listed)
        guard let tools else { return record(id, failure: "tools/list did not answer a JSON array of tools", logger: logger) }
        statuses.withLock {
            $0[id]?.tools = tools.count
            $0[id]?.state = "listed"
            $0[id]?.lastError = refused.isEmpty ? nil : "tool names refused: " + refused.prefix(10).joined(separator: ", ")
            $0[id]?.listedAt = Date()
        }
        if !refused.isEmpty {
            logger.warning("upstream tools refused", metadata: ["server": "\(id)", "names": "\(refused.prefix(10))"])
        }
        return tools
    }

    private func record(_ id: String, failure: String, logger: Logger) -> [ToolDescriptor]? {
        statuses.withLock {
            $0[id]?.state = "failed"
            $0[id]?.lastError = failure
        }
        logger.error("upstream server could not be listed", metadata: ["server": "\(id)", "error": "\(failure)"])
        return nil
    }

    /// The longest `<server>.<tool>` name an upstream tool may have.
    static let maximumToolName = 64

    /// Descriptors from a JSON array of MCP tool objects, and the names refused (not valid as
    /// `<server>.<tool>`, over 64 characters, or listed twice).
    static func descriptors(server: String, listed: [UInt8]) -> ([ToolDescriptor]?, [String]) {
        guard let array = try? JSONSerialization.jsonObject(with: Data(listed)) as? [Any] else { return (nil, []) }
        var tools: [ToolDescriptor] = []
        var refused: [String] = []
        var seen: Set<String> = []
        for element in array {
            guard let object = element as? [String: Any], let name = object["name"] as? String else {
                refused.append("(a tool without a name)")
                continue
            }
            let full = server + "." + name
            guard ToolName.isValid(full), full.count <= maximumToolName, seen.insert(full).inserted else {
                refused.append(ToolName.display(full))
                continue
            }
            let schema = object["inputSchema"].flatMap(ExactJSON.value(of:)) ?? ["type": "object"]
            // Annotations are hints from the server: kept for clients, never used for a tier.
            var annotations: Tool.Annotations = nil
            if let hints = object["annotations"] as? [String: Any],
                let data = try? JSONSerialization.data(withJSONObject: hints)
            {
                annotations = (try? JSONDecoder().decode(Tool.Annotations.self, from: data)) ?? nil
            }
            tools.append(
                ToolDescriptor(
                    name: full, description: object["description"] as? String ?? "", inputSchema: schema,
                    outputSchema: object["outputSchema"].flatMap(ExactJSON.value(of:)), annotations: annotations))
        }
        return (tools, refused)
    }
}

/// Body of `GET /api/v1/servers`.
public struct ServersStatus: Sendable, Codable {
    /// Every upstream server, by id.
    public var servers: [UpstreamRegistry.Status]

    /// Creates the body.
    public init(servers: [UpstreamRegistry.Status]) { self.servers = servers }
}
