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
            isolation: .session, approval: .init(required: false), seccompProfile: "read", limits: .init(),
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
            isolation: .call, approval: .init(required: false), seccompProfile: "x", limits: .init(), network: "none",
            cacheable: false, requires: [])
        let policy = try RiskPolicy(
            tiers: ["read": tier, "exec": tier],
            rules: [("kb.*", "read"), ("kb.finance", "exec"), ("*.x_*", "read"), ("*_y.*", "exec")])
        #expect(policy.tier(for: "kb.finance")?.name == "exec")
        #expect(policy.tier(for: "kb.other")?.name == "read")
        #expect(policy.ambiguity(for: "a_y.x_b") != nil)
        #expect(throws: PolicyError.self) { try RiskPolicy(tiers: ["read": tier], rules: [("kb.*", "nope")]) }
    }
}
