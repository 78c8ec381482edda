import Foundation
import Logging
import MCP
import Testing

@testable import Runner

/// Drives the gateway through the MCP SDK's in-memory transport: the same handlers that serve
/// stdio and HTTP, with the claim carried in `_meta` or bound at start.
@Suite(.timeLimit(.minutes(1))) struct MCPSurfaceTests {
    static let catalog = try! Catalog(
        extra: (0..<40).map {
            ToolDescriptor(
                name: "kb.doc_\($0)", description: "knowledge base page \($0)", inputSchema: ["type": "object"])
        },
        bundles: [:])

    static let policy: RiskPolicy = {
        var policy = try! RiskPolicy.load(directory: GatewayFixture.repositoryRoot + "/policies")
        let rules = policy.rules.map { ($0.pattern.text, $0.tier) } + [("kb.*", "read")]
        policy = try! RiskPolicy(tiers: policy.tiers, rules: rules)
        return policy
    }()

    func connect(_ fixture: GatewayFixture, claim: String?) async throws -> (Client, String) {
        let (clientTransport, serverTransport) = await InMemoryTransport.createConnectedPair()
        let connectionID = RandomID.make(prefix: "test")
        let transport = ClaimCarryingTransport(wrapping: serverTransport, logger: Logger(label: "test"))
        let server = await MCPHandlers.makeServer(
            gateway: fixture.gateway, connectionID: connectionID, endpointServer: nil, fallbackClaim: claim,
            stdio: transport)
        await fixture.gateway.connections.register(
            connectionID, server: server, httpTransport: nil, endpointServer: nil)
        try await server.start(transport: transport)
        let client = Client(name: "test", version: "1")
        _ = try await client.connect(transport: clientTransport)
        return (client, connectionID)
    }

    @Test func listAndCallGoThroughOneAuthorizePath() async throws {
        let fixture = try await GatewayFixture(catalog: Self.catalog, policy: Self.policy)
        let (_, claim) = try await fixture.session(allow: ["kb.*", "repo.read_file"], deny: ["kb.doc_1*"])
        let (client, _) = try await connect(fixture, claim: claim)

        let listed = Set(try await client.listTools().tools.map(\.name))
        let expected = Set(
            ["system.search_tools", "system.execute_tool", "repo.read_file"]
                + (0..<40).map { "kb.doc_\($0)" }
                .filter { !$0.hasPrefix("kb.doc_1") })
        #expect(listed == expected)

        let visible = try await client.callTool(name: "kb.doc_2", arguments: [:])
        #expect(visible.isError != true)
        #expect(visible.content.description.contains("executed\\\":\\\"kb.doc_2"))

        for hidden in ["kb.doc_12", "shell.run", "repo.write_file", "nope.tool", "KB.doc_2", "kb.doc_2 "] {
            await #expect(throws: MCPError.self, "\(hidden) must be refused") {
                _ = try await client.callTool(name: hidden, arguments: [:])
            }
        }

        await #expect(throws: MCPError.self, "execute_tool re-applies the target's scope") {
            _ = try await client.callTool(
                name: "system.execute_tool", arguments: ["name": "kb.doc_12", "arguments": [:]])
        }
        await #expect(throws: MCPError.self) {
            _ = try await client.callTool(name: "system.execute_tool", arguments: ["name": "shell.run"])
        }
        let allowedViaExecute = try await client.callTool(name: "system.execute_tool", arguments: ["name": "kb.doc_3"])
        #expect(allowedViaExecute.content.description.contains("executed\\\":\\\"kb.doc_3"))

        let search = try await client.callTool(
            name: "system.search_tools", arguments: ["query": "knowledge page", "limit": 100])
        let text = search.content.description
        #expect(text.contains("kb.doc_3"))
        #expect(!text.contains("kb.doc_12"))
    }

    @Test func claimInMetaIsHonouredAndClaimInArgumentsIgnored() async throws {
        let fixture = try await GatewayFixture(catalog: Self.catalog, policy: Self.policy)
        let (_, claim) = try await fixture.session()
        let (client, _) = try await connect(fixture, claim: nil)
        await #expect(throws: MCPError.self) { _ = try await client.listTools() }
        await #expect(throws: MCPError.self) {
            _ = try await client.callTool(
                name: "kb.doc_1",
                arguments: ["claim": .string(claim), "_meta": ["dev.leasehold/claim": .string(claim)]])
        }
        let meta = Metadata(additionalFields: ["dev.leasehold/claim": .string(claim)])
        let result = try await client.callTool(name: "kb.doc_1", arguments: [:], meta: meta)
        #expect(result.content.description.contains("executed\\\":\\\"kb.doc_1"))
    }

    @Test func patchThatChangesTheVisibleSetNotifiesTheClient() async throws {
        let fixture = try await GatewayFixture(catalog: Self.catalog, policy: Self.policy)
        let (session, claim) = try await fixture.session(allow: ["kb.*"])
        let (client, _) = try await connect(fixture, claim: claim)
        let (notifications, continuation) = AsyncStream<Void>.makeStream()
        await client.onNotification(ToolListChangedNotification.self) { _ in continuation.yield() }
        #expect(try await client.listTools().tools.count == 42)

        _ = try await fixture.admin.patchSession(
            id: session.id, patch: SessionPatch(deniedToolNames: .set(["kb.doc_3*"])), by: .operator)
        var iterator = notifications.makeAsyncIterator()
        _ = await iterator.next()
        let narrowed = try await client.listTools().tools.map(\.name)
        #expect(!narrowed.contains("kb.doc_3"))
        #expect(!narrowed.contains("kb.doc_35"))
        await #expect(throws: MCPError.self) { _ = try await client.callTool(name: "kb.doc_3", arguments: [:]) }

        _ = try await fixture.admin.patchSession(
            id: session.id, patch: SessionPatch(deniedToolNames: .cleared), by: .operator)
        _ = await iterator.next()
        #expect(try await client.listTools().tools.count == 42)
    }
}
