import Foundation
import SandboxProtocol
import Testing
import WorkspaceRegistry

@testable import Runner

/// `servers:` is operator input that names programs, paths and secrets: read exactly, every
/// problem with its line, and nothing that would show a worker the runner's own files.
@Suite struct UpstreamServersTests {
    func file(_ yaml: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("servers-\(UUID().uuidString).yaml").path
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func aServerIsReadWithItsSecretsFromFiles() throws {
        let secret = try file("s3cr3t\n")
        let servers = try UpstreamServers.load(
            configFile: try file(
                """
                listen: 127.0.0.1:8080
                servers:
                  - id: vivi
                    transport: stdio
                    command: [python3, /srv/kb.py]
                    mounts: [/tmp]
                    env: {KB_TOKEN: {file: \(secret)}, MODE: fast}
                    isolation: tenant
                    workspace: true
                    tier: upstream
                """))
        let vivi = try #require(servers.first)
        #expect(vivi.id == "vivi" && vivi.isolation == .tenant && vivi.workspace && vivi.tier == "upstream")
        #expect(vivi.environment == ["KB_TOKEN": "s3cr3t", "MODE": "fast"])
        let environment = vivi.launchEnvironment(tenant: "acme")
        #expect(environment["LEASEHOLD_TENANT"] == "acme" && environment["LEASEHOLD_WORKSPACE"] == "/workspace")
        #expect(try UpstreamServers.load(configFile: try file("listen: x\n")).isEmpty)
    }

    @Test func everyProblemIsReportedWithItsLine() throws {
        let path = try file(
            """
            servers:
              - id: system
                command: [x]
              - id: web
                transport: smtp
                command: [x]
              - id: web2
                transport: http
                command: [x]
              - id: shared1
                command: [x]
                isolation: shared
              - id: env1
                command: [x]
                env: {LEASEHOLD_TENANT: globex, KEY: {file: /nonexistent/secret}}
              - id: mounts1
                command: [x]
                mounts: [relative/path, /nonexistent, /tmp/../etc]
              - id: dup
                command: [x]
              - id: dup
                command: [x]
              - {id: extra, command: [x], colour: blue}
              - {id: empty, command: []}
            """)
        do {
            _ = try UpstreamServers.load(configFile: path)
            Issue.record("a bad servers: list was accepted")
        } catch {
            let messages = error.diagnostics.map(\.description)
            for expected in [
                ":2:", "not system, repo or shell", "transport \"smtp\" is not one of", "needs url", "command is for transport stdio",
                "needs multi_tenant: true",
                "not LEASEHOLD_", "cannot read /nonexistent/secret", "mount relative/path", "mount /nonexistent",
                "mount /tmp/../etc", "id dup appears twice", "unknown key \"colour\"", "command must not be empty",
            ] {
                #expect(messages.contains { $0.contains(expected) }, "missing \(expected): \(messages)")
            }
            #expect(error.diagnostics.allSatisfy { $0.line != nil }, "\(messages)")
            #expect(!messages.contains { $0.contains("s3cr3t") })
        }
    }

    /// A mount is seen by every process of the server: it may not be, hold or lie inside the
    /// state dir, a workspace base, the config, or a kernel tree.
    @Test func aNetworkGrantNamesHostsAndPortsAndPointsTheServerAtTheProxy() throws {
        let servers = try UpstreamServers.load(
            configFile: try file(
                """
                servers:
                  - id: fetcher
                    command: [python3, /srv/fetch.py]
                    env: {HTTPS_PROXY: http://elsewhere:8080, MODE: fast}
                    network: [API.Example.com:443, "127.0.0.1:9300", "[0:0::1]:8443"]
                  - {id: quiet, command: [x]}
                """))
        let fetcher = try #require(servers.first { $0.id == "fetcher" })
        #expect(fetcher.network.map(\.description) == ["api.example.com:443", "127.0.0.1:9300", "[::1]:8443"])
        let environment = fetcher.launchEnvironment(tenant: "acme")
        for name in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"] {
            #expect(environment[name] == "http://127.0.0.1:3128", "\(name): \(environment[name] ?? "unset")")
        }
        #expect(environment["NO_PROXY"] == "" && environment["no_proxy"] == "" && environment["MODE"] == "fast")
        // No grant: no network and no proxy variables.
        let quiet = try #require(servers.first { $0.id == "quiet" })
        #expect(quiet.network.isEmpty)
        #expect(!quiet.launchEnvironment(tenant: nil).keys.contains { $0.lowercased().hasSuffix("_proxy") })
    }

    @Test func badNetworkGrantsAreRefusedWithTheirLines() throws {
        let path = try file(
            """
            servers:
              - id: a
                command: [x]
                network:
                  - api.example.com
                  - "*.example.com:443"
                  - "bad_host!:80"
                  - "api.example.com:0"
                  - "api.example.com:65536"
                  - "::1:443"
                  - "[::g]:443"
                  - "300.1.1.1:80"
                  - "api.example.com:443"
                  - "API.example.com:443"
                  - "http://api.example.com:443"
              - {id: b, command: [x], network: []}
              - {id: c, command: [x], network: api.example.com:443}
              - {id: web, transport: http, url: "http://127.0.0.1:9/mcp", network: ["127.0.0.1:9"]}
            """)
        do {
            _ = try UpstreamServers.load(configFile: path)
            Issue.record("bad network grants were accepted")
        } catch {
            let messages = error.diagnostics.map(\.description)
            for (line, expected) in [
                (5, "api.example.com: a port is required"),
                (6, "wildcards are not allowed"),
                (7, "bad_host! is not a host name"),
                (8, "port must be a number from 1 to 65535"),
                (9, "port must be a number from 1 to 65535"),
                (10, "an IPv6 address goes in brackets"),
                (11, "::g is not an IPv6 address"),
                (12, "300.1.1.1 is not a dotted IPv4 address"),
                (14, "network names api.example.com:443 twice"),
                (15, "without a scheme, user or path"),
                (16, "network must name at least one host:port"),
                (17, "network must be a list"),
                (18, "network is for transport stdio"),
            ] {
                #expect(
                    messages.contains { $0.contains(":\(line):") && $0.contains(expected) },
                    "missing line \(line): \(expected): \(messages)")
            }
        }
    }

    @Test func mountsNeverShowTheRunnersFilesOrTenantsWorkspaces() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("mounts-\(UUID().uuidString)").path
        let state = root + "/state"
        let base = root + "/state-workspaces"
        for directory in [state, base + "/acme/w1", root + "/srv/kb"] {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        let config = try file("listen: x\n")
        let rules = try Runtime.workspaceRules(
            stateDir: state, config: LeaseholdConfig(), configFile: config, policiesDir: root + "/state",
            keysFile: state + "/keys.json", workerExecutable: "/nonexistent", createBases: false)
        let policy = try RiskPolicy.load(directory: URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("policies").path)
        func check(_ mount: String, tier: String = "upstream") throws {
            let yaml = try file("servers:\n  - {id: kb, command: [x], mounts: [\(mount)], tier: \(tier)}\n")
            _ = try Runtime.upstreamServers(
                configFile: yaml, policy: policy, catalog: try Catalog(), rules: rules, stateDir: state)
        }
        try check(root + "/srv/kb")
        for refused in [state, base, base + "/acme/w1", root, "/proc", "/etc/ssl", "/", config] {
            #expect(throws: ConfigError.self, "\(refused)") { try check(refused) }
        }
        // A tier that cannot run a program, or none by that name.
        #expect(throws: ConfigError.self) { try check(root + "/srv/kb", tier: "read") }
        #expect(throws: ConfigError.self) { try check(root + "/srv/kb", tier: "nope") }
    }

    /// What an upstream lists becomes `<server>.<tool>`; names that cannot be are refused, not
    /// guessed at, and a duplicate is listed once.
    @Test func listedToolsAreNamedUnderTheirServer() {
        let listed = Array(
            #"[{"name":"kb_finance","description":"Finance","inputSchema":{"type":"object"},"annotations":{"readOnlyHint":true}},{"name":"bad name"},{"name":"kb_finance"},{"description":"no name"},{"name":"\#(String(repeating: "x", count: 80))"}]"#
                .utf8)
        let (tools, refused) = UpstreamRegistry.descriptors(server: "vivi", listed: listed)
        #expect(tools?.map(\.name) == ["vivi.kb_finance"])
        #expect(tools?.first?.annotations.readOnlyHint == true)
        #expect(refused.count == 4, "\(refused)")
        #expect(UpstreamRegistry.descriptors(server: "vivi", listed: Array("{}".utf8)).0 == nil)
    }
}

/// Finding a member's bytes without decoding: what the upstream relay passes on unchanged.
@Suite struct JSONSpanTests {
    func span(_ key: String, _ json: String) -> String? {
        let bytes = Array(json.utf8)
        return JSONSpan.member(key, in: bytes).map { String(decoding: bytes[$0], as: UTF8.self) }
    }

    @Test func membersAreFoundExactly() {
        #expect(span("result", #"{"jsonrpc":"2.0","id":7,"result":{"a":[1,2,{"b":"}"}],"c":"\"x\\"}}"#) == #"{"a":[1,2,{"b":"}"}],"c":"\"x\\"}"#)
        #expect(span("id", #" { "id" : 12 , "x": null } "#) == "12")
        #expect(span("id", #"{"nested":{"id":1},"id":"s"}"#) == #""s""#, "only top-level members")
        #expect(span("isError", #"{"isError":true}"#) == "true")
        #expect(span("missing", #"{"a":1}"#) == nil)
        #expect(span("a", "{}") == nil)
        #expect(span("a", "[1]") == nil)
    }

    @Test func brokenInputIsRefusedNotFollowed() {
        for broken in [#"{"a":"#, #"{"a":"unterminated}"#, #"{"a":[1,2}"#, "{\"a\":\"\u{01}\"}", #"{"a" 1}"#, #"{"b":1 "a":2}"#] {
            #expect(span("a", broken) == nil, "\(broken)")
        }
        let deep = String(repeating: "[", count: 300) + String(repeating: "]", count: 300)
        #expect(span("a", #"{"a":"# + deep + "}") == nil, "nesting past the bound is refused")
    }
}
