import Foundation
import Sandbox
import SandboxProtocol
import WorkspaceRegistry
import Yams

/// An upstream MCP server from `servers:` in leasehold.yaml: a stdio program Leasehold runs in
/// confined workers, whose tools join the catalog as `<id>.<tool>`.
public struct UpstreamServer: Sendable, Hashable {
    /// Who shares one process of the server.
    public enum Isolation: String, Sendable, Hashable, CaseIterable {
        /// One per session and lease, destroyed with them.
        case session
        /// One per tenant (and workspace, when the server mounts it).
        case tenant
        /// One for all tenants: only for servers marked `multi_tenant: true`.
        case shared
    }

    /// How Leasehold reaches it.
    public enum Transport: String, Sendable, Hashable {
        /// A program Leasehold runs in confined workers, spoken to over its stdin and stdout.
        case stdio
        /// A server someone else runs, spoken to over MCP Streamable HTTP from the runner.
        case http
    }

    /// The id, and the prefix of its tools.
    public var id: String
    /// stdio or http.
    public var transport: Transport = .stdio
    /// The MCP endpoint of an http server.
    public var url: URL?
    /// Headers an http server gets on every request (values may come from files; never logged).
    public var headers: [String: String] = [:]
    /// argv of the program.
    public var command: [String]
    /// Host paths its program needs (its code, a virtualenv), mounted read-only at the same path.
    public var mounts: [String]
    /// Its environment: literal values and secrets read from files. Never logged or audited.
    public var environment: [String: String]
    /// Who shares a process.
    public var isolation: Isolation
    /// The tier of its tools that `policies/tools.yaml` does not map (nil: those are denied).
    public var tier: String?
    /// Whether it sees the session's workspace at `/workspace` (else an empty directory).
    public var workspace: Bool
    /// The operator's statement that one process may serve every tenant.
    public var multiTenant: Bool
    /// The only places its processes may reach, each `host:port`, through the runner's egress
    /// proxy (stdio servers only). Empty: no network at all.
    public var network: [EgressTarget] = []

    /// The proxy variables a process with a network grant gets: every common spelling names the
    /// runner's egress proxy, and nothing bypasses it.
    static let proxyEnvironment: [String: String] = {
        var variables: [String: String] = [:]
        for name in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"] {
            variables[name] = EgressTarget.proxyURL
            variables[name.lowercased()] = EgressTarget.proxyURL
        }
        variables["NO_PROXY"] = ""
        variables["no_proxy"] = ""
        return variables
    }()

    /// The environment a process gets for `tenant` (nil: a shared or catalog process).
    func launchEnvironment(tenant: String?) -> [String: String] {
        var environment = ["PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8"]
        environment.merge(self.environment) { _, configured in configured }
        // After the operator's env: with a grant, the proxy is the one way out whatever env says.
        if !network.isEmpty { environment.merge(Self.proxyEnvironment) { _, proxy in proxy } }
        environment["LEASEHOLD_SERVER"] = id
        if workspace { environment["LEASEHOLD_WORKSPACE"] = WorkerProtocol.workspacePath }
        if let tenant { environment["LEASEHOLD_TENANT"] = tenant }
        return environment
    }
}

/// Reads `servers:` of a leasehold.yaml, walking YAML nodes so every problem names its line.
public enum UpstreamServers {
    /// Server ids Leasehold's own tools use.
    static let reserved: Set<String> = ["system", "repo", "shell"]
    static let keys = [
        "id", "transport", "command", "mounts", "env", "isolation", "tier", "workspace", "multi_tenant", "url", "headers",
        "network",
    ]

    /// The servers of `file` (none when it has no `servers:` key).
    ///
    /// - Throws: ``PolicyValidationError`` listing every problem with file:line:column.
    public static func load(configFile file: String) throws(PolicyValidationError) -> [UpstreamServer] {
        var reader = PolicyYAMLReader()
        guard let text = reader.read(file) else { throw PolicyValidationError(diagnostics: reader.diagnostics) }
        guard let root = reader.compose(text, file: file) else { throw PolicyValidationError(diagnostics: reader.diagnostics) }
        guard let list = root.mapping?["servers"] else { return [] }
        var servers: [UpstreamServer] = []
        var seen: Set<String> = []
        for node in reader.list(list, file: file, what: "servers") ?? [] {
            guard let server = reader.server(node, file: file) else { continue }
            guard seen.insert(server.id).inserted else {
                reader.error(file, node, "servers: id \(server.id) appears twice")
                continue
            }
            servers.append(server)
        }
        guard reader.diagnostics.isEmpty else { throw PolicyValidationError(diagnostics: reader.diagnostics) }
        return servers
    }
}

extension PolicyYAMLReader {
    /// A string, or `{file: PATH}` read from that file (trimmed); the value never appears in a message.
    fileprivate mutating func secretOrString(_ value: Node, file: String, what: String) -> String? {
        if let secret = value.mapping {
            guard secret.count == 1, let pathNode = secret["file"], let path = string(pathNode, file: file, what: "\(what).file")
            else {
                error(file, value, "\(what) must be a string or {file: PATH}")
                return nil
            }
            guard let data = FileManager.default.contents(atPath: path) else {
                error(file, pathNode, "\(what): cannot read \(path)")
                return nil
            }
            return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        guard let literal = value.scalar?.string else {
            error(file, value, "\(what) must be a string or {file: PATH}")
            return nil
        }
        return literal
    }

    /// An http server: a URL, headers, a tier; one deployment every tenant shares.
    fileprivate mutating func httpServer(
        _ f: [String: Node], id: String?, file: String, what: String, before: Int, node: Node
    ) -> UpstreamServer? {
        for key in ["command", "mounts", "env", "workspace"] where f[key] != nil {
            error(file, f[key], "\(what): \(key) is for transport stdio (Leasehold does not run an http server)")
        }
        if f["network"] != nil {
            error(
                file, f["network"],
                "\(what): network is for transport stdio (an http server runs elsewhere; the runner reaches its url itself)")
        }
        if let isolation = f["isolation"], isolation.scalar?.string != "shared" {
            error(file, isolation, "\(what): an http server is one deployment every tenant shares: isolation shared")
        }
        var url: URL?
        if let text = string(f["url"], file: file, what: "\(what): url") {
            url = URL(string: text)
            if url == nil || !["http", "https"].contains(url?.scheme ?? "") || url?.host == nil {
                error(file, f["url"], "\(what): url \(text) must be an http or https URL")
            }
        } else if f["url"] == nil {
            error(file, node, "\(what): transport http needs url")
        }
        var headers: [String: String] = [:]
        if let node = f["headers"] {
            if let mapping = node.mapping {
                for (keyNode, value) in mapping {
                    let name = keyNode.scalar?.string ?? ""
                    let token = name.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: ":") }
                    guard !name.isEmpty, token,
                        !["host", "content-length", "mcp-session-id", "mcp-protocol-version"].contains(name.lowercased())
                    else {
                        error(file, keyNode, "\(what): header \(name) cannot be set")
                        continue
                    }
                    if let value = secretOrString(value, file: file, what: "\(what): header \(name)") {
                        guard !value.contains("\r"), !value.contains("\n") else {
                            error(file, value.isEmpty ? keyNode : keyNode, "\(what): header \(name) spans lines")
                            continue
                        }
                        headers[name] = value
                    }
                }
            } else {
                error(file, node, "\(what): headers must be a mapping")
            }
        }
        let tier = string(f["tier"], file: file, what: "\(what): tier")
        let multiTenant = f["multi_tenant"] == nil ? true : boolean(f["multi_tenant"], file: file, what: "\(what): multi_tenant")
        guard diagnostics.count == before, let id, let url, let multiTenant else { return nil }
        var server = UpstreamServer(
            id: id, command: [], mounts: [], environment: [:], isolation: .shared, tier: tier, workspace: false,
            multiTenant: multiTenant)
        server.transport = .http
        server.url = url
        server.headers = headers
        return server
    }

    fileprivate mutating func server(_ node: Node, file: String) -> UpstreamServer? {
        guard let f = fields(node, file: file, what: "server", known: UpstreamServers.keys, required: ["id"]) else {
            return nil
        }
        let before = diagnostics.count
        let id = string(f["id"], file: file, what: "server id")
        if let id, !Identifier.isValid(id) || id.count > 32 || UpstreamServers.reserved.contains(id) {
            error(file, f["id"], "server id \(id) must be 1-32 characters of [A-Za-z0-9_-] and not system, repo or shell")
        }
        let what = "server \(id ?? "?")"
        let transport =
            f["transport"] == nil
            ? UpstreamServer.Transport.stdio
            : oneOf(f["transport"], file: file, what: "\(what): transport", choices: ["stdio", "http"])
                .flatMap(UpstreamServer.Transport.init(rawValue:))
        if transport == .http {
            return httpServer(f, id: id, file: file, what: what, before: before, node: node)
        }
        if f["command"] == nil { error(file, node, "\(what): missing required key \"command\"") }
        for key in ["url", "headers"] where f[key] != nil {
            error(file, f[key], "\(what): \(key) is for transport http")
        }
        var command: [String] = []
        for item in list(f["command"], file: file, what: "\(what): command") ?? [] {
            if let part = string(item, file: file, what: "\(what): command") { command.append(part) }
        }
        if f["command"] != nil, command.isEmpty { error(file, f["command"], "\(what): command must not be empty") }
        var mounts: [String] = []
        for item in list(f["mounts"], file: file, what: "\(what): mounts") ?? [] {
            guard let path = string(item, file: file, what: "\(what): mounts") else { continue }
            // Named by the operator, seen by every process of the server: absolute, plain, existing.
            let plain = path.hasPrefix("/") && !path.split(separator: "/").contains { $0 == ".." || $0 == "." }
            guard plain, FileManager.default.fileExists(atPath: path) else {
                error(file, item, "\(what): mount \(path) must be an existing absolute path without . or ..")
                continue
            }
            mounts.append(path)
        }
        var environment: [String: String] = [:]
        if let envNode = f["env"] {
            if let mapping = envNode.mapping {
                for (keyNode, value) in mapping {
                    guard let name = keyNode.scalar?.string, !name.isEmpty, !name.contains("="),
                        !name.hasPrefix("LEASEHOLD_")
                    else {
                        error(file, keyNode, "\(what): env names must be non-empty, without =, and not LEASEHOLD_*")
                        continue
                    }
                    if let value = secretOrString(value, file: file, what: "\(what): env \(name)") {
                        environment[name] = value
                    }
                }
            } else {
                error(file, envNode, "\(what): env must be a mapping")
            }
        }
        let isolationName =
            f["isolation"] == nil
            ? UpstreamServer.Isolation.session.rawValue
            : oneOf(
                f["isolation"], file: file, what: "\(what): isolation",
                choices: UpstreamServer.Isolation.allCases.map(\.rawValue))
        let tier = string(f["tier"], file: file, what: "\(what): tier")
        let workspace = f["workspace"] == nil ? false : boolean(f["workspace"], file: file, what: "\(what): workspace")
        let multiTenant =
            f["multi_tenant"] == nil ? false : boolean(f["multi_tenant"], file: file, what: "\(what): multi_tenant")
        let isolation = isolationName.flatMap(UpstreamServer.Isolation.init(rawValue:))
        if isolation == .shared, multiTenant != true {
            error(file, f["isolation"], "\(what): isolation shared needs multi_tenant: true (one process serves every tenant)")
        }
        if isolation == .shared, workspace == true {
            error(file, f["workspace"], "\(what): a shared server cannot mount a tenant's workspace")
        }
        let network = network(f["network"], file: file, what: what)
        guard diagnostics.count == before, let id, let isolation, let workspace, let multiTenant else { return nil }
        var server = UpstreamServer(
            id: id, command: command, mounts: mounts, environment: environment, isolation: isolation, tier: tier,
            workspace: workspace, multiTenant: multiTenant)
        server.network = network
        return server
    }

    /// `network: [host:port, ...]`: each a DNS name or an IP literal (IPv6 in brackets) and a port;
    /// no wildcards. Absent: no network.
    fileprivate mutating func network(_ node: Node?, file: String, what: String) -> [EgressTarget] {
        guard let node else { return [] }
        guard let items = list(node, file: file, what: "\(what): network") else { return [] }
        if items.isEmpty {
            error(file, node, "\(what): network must name at least one host:port (leave it out for no network)")
        }
        var targets: [EgressTarget] = []
        for item in items {
            guard let text = string(item, file: file, what: "\(what): network") else { continue }
            do {
                let target = try EgressTarget(parsing: text)
                if targets.contains(target) {
                    error(file, item, "\(what): network names \(target) twice")
                    continue
                }
                targets.append(target)
            } catch {
                self.error(file, item, "\(what): network \(error.reason)")
            }
        }
        return targets
    }
}
