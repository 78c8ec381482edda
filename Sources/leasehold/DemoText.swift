import Runner

/// What `leasehold serve --demo` prints: a ready claim and copy-paste calls.
enum DemoText {
    static func render(base: String, session: Session, claim: String, operatorKeySource: String) -> String {
        """

        ── Leasehold demo ────────────────────────────────────────────────────────────
        Tenants acme and globex each have a workspace "demo". A session for acme/alice:
          session: \(session.id)   lease: \(session.lease.id)   (shell.* denied)

        Console (approvals inbox, live sessions, audit explorer, policy): open \(base)/ui
        and sign in with the operator key: \(operatorKeyHint(operatorKeySource))

        export CLAIM='\(claim)'

        # curl: initialize, then list tools (the claim binds to this MCP session)
        curl -si -X POST \(base)/mcp -H "Authorization: Bearer $CLAIM" \\
          -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \\
          -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}'
        # copy the Mcp-Session-Id header from the answer, then:
        curl -s -X POST \(base)/mcp -H "Authorization: Bearer $CLAIM" -H "Mcp-Session-Id: <id>" \\
          -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \\
          -d '{"jsonrpc":"2.0","id":2,"method":"tools/list"}'

        # Python (pip install "mcp>=1.24,<2"); each claim serves one connection, so mint a fresh
        # one per client: curl -s -X POST \(base)/api/v1/sessions/\(session.id)/claims \\
        #   -H "Authorization: Bearer $(cat \(operatorKeySource))"
        python3 -c '
        import asyncio, os
        from mcp import ClientSession
        from mcp.client.streamable_http import streamablehttp_client
        async def main():
            async with streamablehttp_client("\(base)/mcp", headers={"Authorization": "Bearer " + os.environ["CLAIM"]}) as (r, w, _):
                async with ClientSession(r, w) as s:
                    await s.initialize()
                    print([t.name for t in (await s.list_tools()).tools])
        asyncio.run(main())'
        ──────────────────────────────────────────────────────────────────────────────
        """
    }

    /// Where to read the operator key from, as a reader would type it.
    static func operatorKeyHint(_ source: String) -> String {
        source.hasPrefix("environment") ? "the value of $LEASEHOLD_OPERATOR_KEY" : "cat \(source)"
    }
}
