import Foundation
import MCP
import Testing

@testable import Runner

@Suite struct ScopeResolverTests {
    static let catalog: Catalog = {
        let tools = ["kb.finance", "kb.support_billing", "kb.support_login", "crm.contacts_read", "crm.users_admin"].map
        {
            ToolDescriptor(name: $0, description: "fixture tool \($0)", inputSchema: ["type": "object"])
        }
        return try! Catalog(extra: tools, bundles: ["support-desk": ["kb.support_*", "repo.read_file"]])
    }()

    static let policy: RiskPolicy = {
        let tier = RiskTier(
            isolation: .session, approval: .init(required: false), seccompProfile: .read, limits: .init(),
            network: "none",
            cacheable: false, requires: [])
        return try! RiskPolicy(
            tiers: ["read": tier, "exec": tier],
            rules: [("repo.*", "read"), ("shell.run", "exec"), ("kb.*", "read"), ("crm.contacts_*", "read")])
    }()

    func visible(
        allow: [String]? = nil, deny: [String]? = nil, claim: [String]? = nil, server: String? = nil,
        bundle: String? = nil, endpoint: String? = nil
    ) throws -> [String] {
        let now = Date()
        let session = Session(
            id: "s", tenantID: "acme", actorID: "a", workspaceID: "w", serverID: server, bundleID: bundle,
            allowedToolNames: allow, deniedToolNames: deny, lease: Lease(id: "l", issuedAt: now, expiresAt: now + 60),
            claimTTLSeconds: 60, leaseTTLSeconds: 60, createdAt: now, updatedAt: now, revokedAt: nil, version: 1)
        let scope = try Scope(
            session: session, claimAllowedTools: claim, endpointServer: endpoint, catalog: Self.catalog)
        return ScopeResolver(catalog: Self.catalog, policy: Self.policy).visibleTools(in: scope).map(\.name)
            .filter { !$0.hasPrefix("system.") }
    }

    @Test func noAllowListMeansEverythingWithATier() throws {
        let names = try visible()
        #expect(names.contains("repo.read_file"))
        #expect(names.contains("kb.finance"))
        #expect(names.contains("crm.contacts_read"))
        #expect(!names.contains("crm.users_admin"), "a tool without a tier is denied")
    }

    @Test func denyWinsOverAllow() throws {
        let names = try visible(allow: ["kb.*", "repo.read_file"], deny: ["kb.support_*"])
        #expect(Set(names) == ["kb.finance", "repo.read_file"])
    }

    @Test func claimNarrowsButNeverWidens() throws {
        #expect(Set(try visible(allow: ["kb.*"], claim: ["kb.finance", "repo.*"])) == ["kb.finance"])
    }

    @Test func serverAndBundleUniverses() throws {
        #expect(Set(try visible(server: "kb")) == ["kb.finance", "kb.support_billing", "kb.support_login"])
        #expect(
            Set(try visible(bundle: "support-desk")) == ["kb.support_billing", "kb.support_login", "repo.read_file"])
        #expect(
            Set(try visible(deny: ["kb.support_login"], bundle: "support-desk")) == [
                "kb.support_billing", "repo.read_file",
            ])
    }

    @Test func serverScopedEndpointNarrowsNeverWidens() throws {
        #expect(Set(try visible(endpoint: "kb")) == ["kb.finance", "kb.support_billing", "kb.support_login"])
        #expect(try visible(server: "repo", endpoint: "kb").isEmpty)
    }

    @Test func systemBuiltinsAreAlwaysVisibleAndHiddenToolsLookNonexistent() throws {
        let now = Date()
        let session = Session(
            id: "s", tenantID: "acme", actorID: "a", workspaceID: "w", serverID: nil, bundleID: nil,
            allowedToolNames: ["kb.finance"], deniedToolNames: ["*"],
            lease: Lease(id: "l", issuedAt: now, expiresAt: now + 60),
            claimTTLSeconds: 60, leaseTTLSeconds: 60, createdAt: now, updatedAt: now, revokedAt: nil, version: 1)
        let scope = try Scope(session: session, claimAllowedTools: nil, endpointServer: nil, catalog: Self.catalog)
        let resolver = ScopeResolver(catalog: Self.catalog, policy: Self.policy)
        #expect(resolver.visibleTools(in: scope).map(\.name) == ["system.search_tools", "system.execute_tool"])
        guard case .hidden(let reason) = resolver.decide("kb.finance", in: scope) else {
            Issue.record("kb.finance should be hidden")
            return
        }
        #expect(reason.contains("denied by session pattern *"))
    }

    @Test func searchRanksThenFiltersByScope() throws {
        let now = Date()
        let session = Session(
            id: "s", tenantID: "acme", actorID: "a", workspaceID: "w", serverID: nil, bundleID: nil,
            allowedToolNames: nil, deniedToolNames: ["kb.support_billing"],
            lease: Lease(id: "l", issuedAt: now, expiresAt: now + 60),
            claimTTLSeconds: 60, leaseTTLSeconds: 60, createdAt: now, updatedAt: now, revokedAt: nil, version: 1)
        let scope = try Scope(session: session, claimAllowedTools: nil, endpointServer: nil, catalog: Self.catalog)
        let resolver = ScopeResolver(catalog: Self.catalog, policy: Self.policy)
        let found = resolver.search("support billing", in: scope, limit: 10).map(\.name)
        #expect(found.first == "kb.support_login")
        #expect(!found.contains("kb.support_billing"))
    }

    @Test func mostSpecificPolicyPatternWinsAndTiesAreReported() throws {
        let tier = RiskTier(
            isolation: .call, approval: .init(required: false), seccompProfile: .exec, limits: .init(), network: "none",
            cacheable: false, requires: [])
        let policy = try RiskPolicy(
            tiers: ["read": tier, "exec": tier],
            rules: [("kb.*", "read"), ("kb.finance", "exec"), ("*.x_*", "read"), ("*_y.*", "exec")])
        #expect(policy.tier(for: "kb.finance")?.name == "exec")
        #expect(policy.tier(for: "kb.other")?.name == "read")
        #expect(policy.ambiguity(for: "a_y.x_b") != nil)
        #expect(throws: PolicyError.self) { try RiskPolicy(tiers: ["read": tier], rules: [("kb.*", "nope")]) }
    }

    /// The list path (bit sets) and the call path (`decide`) agree with each other and with an
    /// independent recursive glob matcher, over random catalogs, scopes and repeated (cached) patterns.
    @Test func listAndDecideAgreeWithAnIndependentOracle() throws {
        var random = SplitMix64(seed: 0x5EED_1EA5)
        let servers = ["kb", "crm", "analytics", "kb_x"]
        let words = ["get", "list", "admin", "support", "a", "b_c"]
        func name() -> String {
            "\(servers[Int(random.next() % 4)]).\(words[Int(random.next() % 6)])_\(words[Int(random.next() % 6)])"
        }
        func pattern() -> String {
            let pieces = ["kb", "crm", ".", "*", "_", "get", "admin", "a", "support", "kb_x."]
            var text = ""
            for _ in 0..<(1 + Int(random.next() % 4)) { text += pieces[Int(random.next() % UInt64(pieces.count))] }
            return random.next() % 4 == 0 ? name() : text
        }
        for round in 0..<40 {
            let names = Set((0..<60).map { _ in name() })
            let tools = names.map { ToolDescriptor(name: $0, description: $0, inputSchema: ["type": "object"]) }
            let bundlePatterns = (0..<3).map { _ in pattern() }
            let catalog = try Catalog(extra: tools, bundles: ["b": bundlePatterns])
            let tier = RiskTier(
                isolation: .session, approval: .init(required: false), seccompProfile: .read, limits: .init(),
                network: "none", cacheable: false, requires: [])
            let policy = try RiskPolicy(
                tiers: ["read": tier], rules: [("repo.*", "read"), ("kb*", "read"), ("crm.*_get", "read")])
            let resolver = ScopeResolver(catalog: catalog, policy: policy)
            for _ in 0..<10 {
                let allow: [String]? = random.next() % 3 == 0 ? nil : (0..<3).map { _ in pattern() }
                let deny = (0..<Int(random.next() % 3)).map { _ in pattern() }
                let claim: [String]? = random.next() % 2 == 0 ? nil : (0..<2).map { _ in pattern() }
                let server: String? = random.next() % 4 == 0 ? servers[Int(random.next() % 4)] : nil
                let bundle: String? = server == nil && random.next() % 4 == 0 ? "b" : nil
                let now = Date()
                let session = Session(
                    id: "s", tenantID: "acme", actorID: "a", workspaceID: "w", serverID: server, bundleID: bundle,
                    allowedToolNames: allow, deniedToolNames: deny,
                    lease: Lease(id: "l", issuedAt: now, expiresAt: now + 60), claimTTLSeconds: 60,
                    leaseTTLSeconds: 60, createdAt: now, updatedAt: now, revokedAt: nil, version: 1)
                let scope = try Scope(session: session, claimAllowedTools: claim, endpointServer: nil, catalog: catalog)
                let listed = resolver.listing(in: scope).map(\.name)
                let decided =
                    ["system.search_tools", "system.execute_tool"]
                    + catalog.tools.map(\.name).filter { resolver.decide($0, in: scope).isVisible }
                func any(_ patterns: [String]?, _ tool: String) -> Bool? {
                    patterns.map { $0.contains { Glob.matches($0, tool) } }
                }
                let oracle =
                    ["system.search_tools", "system.execute_tool"]
                    + catalog.tools.map(\.name).filter { tool in
                        (server.map { tool.hasPrefix($0 + ".") } ?? true)
                            && (bundle == nil || any(bundlePatterns, tool)!)
                            && (any(claim, tool) ?? true) && !(any(deny, tool)!) && (any(allow, tool) ?? true)
                            && (tool.hasPrefix("repo.") || tool.hasPrefix("kb") || Glob.matches("crm.*_get", tool))
                    }
                #expect(listed == decided, "round \(round): list and decide disagree")
                // The lean tools/list answer lists exactly the same tools, encoded the same way.
                let (names, json) = resolver.listingJSON(in: scope)
                #expect(names == listed)
                let fromFragments = try JSONSerialization.jsonObject(with: json) as? NSDictionary
                let fromSDK = try JSONSerialization.jsonObject(
                    with: JSONEncoder().encode(ListTools.Result(tools: resolver.listing(in: scope)))) as? NSDictionary
                #expect(fromFragments != nil && fromFragments == fromSDK, "round \(round): tools/list JSON differs")
                #expect(listed == oracle, "round \(round): allow \(allow ?? []) deny \(deny) claim \(claim ?? [])")
            }
        }
    }
}

/// A deliberately naive recursive `*` glob, independent of `ToolPattern`'s matcher.
private enum Glob {
    static func matches(_ pattern: String, _ name: String) -> Bool {
        matches(Array(pattern.utf8)[...], Array(name.utf8)[...])
    }

    private static func matches(_ pattern: ArraySlice<UInt8>, _ name: ArraySlice<UInt8>) -> Bool {
        guard let first = pattern.first else { return name.isEmpty }
        if first == UInt8(ascii: "*") {
            let rest = pattern.dropFirst()
            var tail = name
            while true {
                if matches(rest, tail) { return true }
                if tail.isEmpty { return false }
                tail = tail.dropFirst()
            }
        }
        guard let head = name.first, head == first else { return false }
        return matches(pattern.dropFirst(), name.dropFirst())
    }
}

/// A small deterministic generator, so a failing round can be replayed (also JSONValidatorTests).
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
