import Foundation
import Testing

/// Transport-level and admin-API attacks against the real binary, with two tenants.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct ProtocolAttackTests {
    let server: LeaseholdServer
    let acme: (id: String, lease: String, claim: String)
    let globex: (id: String, lease: String, claim: String)

    init() async throws {
        server = try await LeaseholdServer(
            config: """
                catalog:
                  servers:
                    - id: kb
                      tools:
                        - {name: kb.finance, description: "finance pages"}
                  bundles:
                    support-desk: ["repo.read_file"]
                """)
        acme = try await server.createSession(["tenant_id": "acme", "actor_id": "alice", "workspace_id": "main"])
        globex = try await server.createSession(["tenant_id": "globex", "actor_id": "gina", "workspace_id": "main"])
    }

    @Test func foreignOriginAndHostAreForbidden() async throws {
        let (foreign, session) = try await server.initialize(
            claim: acme.claim, extraHeaders: ["Origin": "https://evil.example"])
        #expect(foreign.status == 403)
        #expect(session == nil)
        let (rebound, _) = try await server.initialize(claim: acme.claim, extraHeaders: ["Host": "evil.example:80"])
        #expect(rebound.status == 403)
        // Neither attempt consumed the claim: it still binds on a clean request.
        let (clean, cleanSession) = try await server.initialize(
            claim: acme.claim, extraHeaders: ["Origin": "http://localhost:3000"])
        #expect(clean.status == 200)
        #expect(cleanSession != nil)
    }

    @Test func deletedAndUnknownMCPSessionsAre404() async throws {
        let claim = try await server.freshClaim(acme.id)
        let (_, session) = try await server.initialize(claim: claim)
        let id = try #require(session)
        var headers = LeaseholdServer.mcpHeaders
        headers["Authorization"] = "Bearer \(claim)"
        headers["Mcp-Session-Id"] = id
        let deleted = try await server.request("DELETE", "/mcp", headers: headers)
        #expect(deleted.status == 200)
        let after = try await server.call("tools/list", claim: claim, session: id)
        #expect(after.status == 404)
        let unknown = try await server.call("tools/list", claim: claim, session: "mcp_does_not_exist")
        #expect(unknown.status == 404)
        #expect(id.utf8.allSatisfy { $0 >= 0x21 && $0 <= 0x7E }, "session ids are visible ASCII")
    }

    @Test func anotherTenantsConnectionCannotBeUsed() async throws {
        let (_, acmeConnection) = try await server.initialize(claim: acme.claim)
        let globexClaim = try await server.freshClaim(globex.id)
        // globex's valid claim presented on acme's MCP connection.
        let hijack = try await server.call("tools/list", claim: globexClaim, session: try #require(acmeConnection))
        #expect(hijack.status == 401)
        #expect(hijack.errorMessage.hasPrefix("boundary_mismatch:"))
        // The refused attempt did not burn globex's claim: its owner still binds it to its own connection.
        let (owner, ownerConnection) = try await server.initialize(claim: globexClaim)
        #expect(owner.status == 200, "a claim refused on a foreign connection stays usable: \(owner.body)")
        #expect(ownerConnection != nil)
    }

    @Test func serverScopedEndpointNarrows() async throws {
        let claim = try await server.freshClaim(acme.id)
        let (result, session) = try await server.initialize(claim: claim, path: "/mcp/servers/repo")
        #expect(result.status == 200)
        let list = try await server.call(
            "tools/list", claim: claim, session: try #require(session), path: "/mcp/servers/repo")
        let names = ((list.result["tools"] as? [[String: Any]]) ?? []).compactMap { $0["name"] as? String }
        #expect(names.contains("repo.read_file"))
        #expect(!names.contains("kb.finance"))
        // The connection is tied to its endpoint: it does not exist on the unscoped one.
        let wider = try await server.call("tools/list", claim: claim, session: try #require(session))
        #expect(wider.status == 404)
        let (missing, _) = try await server.initialize(
            claim: try await server.freshClaim(acme.id), path: "/mcp/servers/nope")
        #expect(missing.status == 404)
    }

    @Test func malformedAndOversizedRequestsGetCleanErrors() async throws {
        let claim = try await server.freshClaim(acme.id)
        let (_, session) = try await server.initialize(claim: claim)
        var headers = LeaseholdServer.mcpHeaders
        headers["Authorization"] = "Bearer \(claim)"
        headers["Mcp-Session-Id"] = try #require(session)
        let garbage = try await server.request("POST", "/mcp", headers: headers, body: Data("{not json".utf8))
        #expect(garbage.status == 400)
        let huge = try await server.request(
            "POST", "/mcp", headers: headers, body: Data(repeating: 0x20, count: 5 << 20))
        #expect(huge.status == 413)
        let unknownMethod = try await server.call("no/such/method", claim: claim, session: try #require(session))
        #expect(unknownMethod.status == 200)
        #expect((unknownMethod.message["error"] as? [String: Any])?["code"] as? Int == -32601)
        // The server is still healthy afterwards.
        let health = try await server.request("GET", "/healthz")
        #expect(health.status == 200)
    }

    @Test func hiddenToolsLookLikeNonexistentOnes() async throws {
        let narrow = try await server.createSession([
            "tenant_id": "acme", "actor_id": "alice", "workspace_id": "main", "allowed_tool_names": ["repo.read_file"],
        ])
        let (_, session) = try await server.initialize(claim: narrow.claim)
        let id = try #require(session)
        var messages: [String] = []
        for (index, name) in ["kb.finance", "no.such_tool", "Repo.read_file", "repo.read_fіle"].enumerated() {
            let result = try await server.call(
                "tools/call", params: ["name": name, "arguments": [:] as [String: Any]], claim: narrow.claim,
                session: id, id: 10 + index)
            #expect(result.status == 200)
            let message = result.errorMessage
            #expect(message.contains("tool_not_in_scope"), "\(name): \(message)")
            // A name that is not a valid tool name is shown escaped and quoted; the refusal is otherwise the same.
            let shown = name == "repo.read_fіle" ? "\"repo.read_f\\u{456}le\"" : name
            #expect(message.contains(shown), "\(name): \(message)")
            messages.append(message.replacingOccurrences(of: shown, with: "<tool>"))
        }
        #expect(Set(messages).count == 1, "hidden and nonexistent tools must be refused identically: \(messages)")
        let viaExecute = try await server.call(
            "tools/call", params: ["name": "system.execute_tool", "arguments": ["name": "kb.finance"]],
            claim: narrow.claim, session: id,
            id: 20)
        #expect(viaExecute.errorMessage.contains("tool_not_in_scope"))
        let search = try await server.call(
            "tools/call", params: ["name": "system.search_tools", "arguments": ["query": "finance"]],
            claim: narrow.claim, session: id,
            id: 21)
        #expect(!search.body.contains("kb.finance"))
    }

    @Test func tenantAdminKeyCannotTouchAnotherTenant() async throws {
        let (status, created) = try await server.admin("POST", "/api/v1/tenants/acme/admin-keys")
        #expect(status == 201)
        let acmeKey = try #require(created["key"] as? String)

        let (get, _) = try await server.admin("GET", "/api/v1/sessions/\(globex.id)", key: acmeKey)
        #expect(get == 404)
        let (patch, _) = try await server.admin(
            "PATCH", "/api/v1/sessions/\(globex.id)", ["denied_tool_names": ["*"]], key: acmeKey)
        #expect(patch == 404)
        let (revoke, _) = try await server.admin("DELETE", "/api/v1/sessions/\(globex.id)", key: acmeKey)
        #expect(revoke == 404)
        let (mint, _) = try await server.admin("POST", "/api/v1/sessions/\(globex.id)/claims", key: acmeKey)
        #expect(mint == 404)
        let (lease, _) = try await server.admin("POST", "/api/v1/sessions/\(globex.id)/lease", key: acmeKey)
        #expect(lease == 404)
        let (create, _) = try await server.admin(
            "POST", "/api/v1/sessions", ["tenant_id": "globex", "actor_id": "x", "workspace_id": "main"], key: acmeKey)
        #expect(create == 403)
        let (crossWorkspace, _) = try await server.admin(
            "POST", "/api/v1/sessions", ["tenant_id": "acme", "actor_id": "x", "workspace_id": "globex-main"],
            key: acmeKey)
        #expect(crossWorkspace == 400)
        let (register, _) = try await server.admin(
            "POST", "/api/v1/workspaces", ["tenant_id": "globex", "workspace_id": "w2", "root": server.stateDir],
            key: acmeKey)
        #expect(register == 403)
        let (newKey, _) = try await server.admin("POST", "/api/v1/tenants/globex/admin-keys", key: acmeKey)
        #expect(newKey == 403)
        let (listStatus, list) = try await server.admin("GET", "/api/v1/workspaces", key: acmeKey)
        #expect(listStatus == 200)
        let tenants = ((list["workspaces"] as? [[String: Any]]) ?? []).compactMap { $0["tenant_id"] as? String }
        #expect(tenants == ["acme"])
        // Still works on its own tenant.
        let (own, _) = try await server.admin("GET", "/api/v1/sessions/\(acme.id)", key: acmeKey)
        #expect(own == 200)
        let (noKey, _) = try await server.admin("GET", "/api/v1/sessions/\(acme.id)", key: "")
        #expect(noKey == 401)
    }

    @Test func adminInputIsValidated() async throws {
        let (both, body) = try await server.admin(
            "POST", "/api/v1/sessions",
            [
                "tenant_id": "acme", "actor_id": "a", "workspace_id": "main", "server_id": "kb",
                "bundle_id": "support-desk",
            ])
        #expect(both == 400)
        #expect((body["error"] as? [String: Any])?["code"] as? String == "scope_conflict")
        for bad: [String: Any] in [
            ["tenant_id": "../acme", "actor_id": "a", "workspace_id": "main"],
            ["tenant_id": "acme", "actor_id": "a", "workspace_id": "main", "allowed_tool_names": ["repo read"]],
            ["tenant_id": "acme", "actor_id": "a", "workspace_id": "main", "lease_ttl_seconds": -1],
            ["tenant_id": "acme", "actor_id": "a"],
            ["tenant_id": "acme", "actor_id": "a", "workspace_id": "main", "server_id": "nope"],
        ] {
            let (status, _) = try await server.admin("POST", "/api/v1/sessions", bad)
            #expect(status == 400, "\(bad)")
        }
        for root in ["/", "/etc", "relative", server.stateDir + "/workspaces/acme", server.stateDir + "/workspaces"] {
            let (status, _) = try await server.admin(
                "POST", "/api/v1/workspaces",
                ["tenant_id": "acme", "workspace_id": "x\(abs(root.hashValue) % 1000)", "root": root])
            #expect(status == 400 || status == 409, "\(root) -> \(status)")
        }
    }
}
